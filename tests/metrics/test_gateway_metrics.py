"""A real gateway, real SMTP on both sides, and exact counter values read over HTTP.

Each test starts ``GatewayServer`` in process (SMTP and metrics on free loopback ports), sends
a known mix of messages with ``smtplib``, then reads ``/metrics`` with ``http.client`` and
parses it with prometheus_client's own parser. The Maildir and the SMTP sink are the
independent record of what really arrived.
"""

from __future__ import annotations

import json
import smtplib
import socket
from pathlib import Path

import pytest

from gateway import __version__
from tests.helpers.smtp_sink import SmtpSink
from tests.metrics.conftest import GatewayThread, http_get, make_config, sample, scrape, wait_until

TENANTS = {"a.lg.jp": {"name": "A市"}, "b.lg.jp": {"name": "B町"}}


def _message(subject: str, to: str) -> bytes:
    # CRLF line ends and a final CRLF: what aiosmtpd hands the relay is exactly these bytes,
    # so the size histogram's sum can be checked to the byte.
    return (
        f"From: sender@example.com\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.com>\r\n\r\n"
        "本文です。\r\n".encode("iso-2022-jp").decode("latin-1")
        + "\r\n"
    ).encode("latin-1")


def _send(gw: GatewayThread, recipients: list[str], subject: str) -> bytes:
    raw = _message(subject, ", ".join(recipients))
    with gw.smtp() as client:
        client.ehlo("client.example")
        client.sendmail("sender@example.com", recipients, raw)
    return raw


def _sessions_closed(gw: GatewayThread) -> bool:
    return gw.metrics.registry.get_sample_value("mugaika_smtp_sessions_active") == 0


def _other_verdicts_zero(samples: dict, tenant: str, except_verdicts: set[str]) -> None:
    for verdict in ("delivered", "quarantined", "rejected", "tempfailed", "tagged"):
        if verdict not in except_verdicts:
            value = sample(samples, "mugaika_messages_total", verdict=verdict, tenant=tenant)
            assert value == 0, (verdict, tenant)


def test_delivered_to_maildir_counted_exactly(tmp_path: Path) -> None:
    config = make_config(tmp_path, tenants=TENANTS)
    plan = [
        (["u1@a.lg.jp"], "one"),
        (["u2@a.lg.jp"], "two"),
        (["u1@a.lg.jp"], "three"),
        (["x@b.lg.jp"], "four"),
        (["y@b.lg.jp"], "five"),
        (["u1@a.lg.jp", "x@b.lg.jp"], "six"),  # one message, counted once for each tenant
        (["someone@example.org"], "seven"),  # not a configured tenant: "other"
    ]
    with GatewayThread(config) as gw:
        sizes = [len(_send(gw, recipients, subject)) for recipients, subject in plan]
        assert wait_until(lambda: _sessions_closed(gw))
        samples = scrape(gw.metrics_url)

    def value(name: str, **labels: str) -> float | None:
        return sample(samples, name, **labels)

    assert value("mugaika_messages_total", verdict="delivered", tenant="a.lg.jp") == 4
    assert value("mugaika_messages_total", verdict="delivered", tenant="b.lg.jp") == 3
    assert value("mugaika_messages_total", verdict="delivered", tenant="other") == 1
    for tenant in ("a.lg.jp", "b.lg.jp", "other"):
        _other_verdicts_zero(samples, tenant, {"delivered"})
    # No label for a domain that is not configured (bounded cardinality).
    assert value("mugaika_messages_total", verdict="delivered", tenant="example.org") is None

    assert value("mugaika_smtp_sessions_total") == 7
    assert value("mugaika_smtp_sessions_refused_total") == 0
    assert value("mugaika_smtp_sessions_active") == 0
    assert value("mugaika_smtp_commands_total", command="EHLO", reply_class="2xx") == 7
    assert value("mugaika_smtp_commands_total", command="MAIL", reply_class="2xx") == 7
    assert value("mugaika_smtp_commands_total", command="RCPT", reply_class="2xx") == 8
    assert value("mugaika_smtp_commands_total", command="DATA", reply_class="2xx") == 7
    assert value("mugaika_smtp_commands_total", command="RCPT", reply_class="4xx") is None

    assert value("mugaika_message_size_bytes_count") == 7
    assert value("mugaika_message_size_bytes_sum") == sum(sizes)
    assert value("mugaika_message_processing_seconds_count") == 7
    assert value("mugaika_downstream_delivery_seconds_count") == 7
    for kind in ("unavailable", "tempfail", "permfail"):
        assert value("mugaika_downstream_failures_total", kind=kind) == 0

    assert value("mugaika_workers") == 1
    assert value("mugaika_workers_busy") == 0
    assert value("mugaika_messages_in_pipeline") == 0
    busy = value("mugaika_worker_busy_seconds_total")
    assert busy is not None
    assert 0 < busy <= value("mugaika_message_processing_seconds_sum")
    assert value("mugaika_worker_restarts_total", reason="crash") == 0
    assert value("mugaika_readiness_up", check="downstream") == 1
    assert value("mugaika_readiness_up", check="smtp-listener") == 1
    # The embedded SQLite store is opened by default, so it is checked too.
    assert value("mugaika_readiness_up", check="quarantine-store") == 1
    build = [k for k in samples if k[0] == "mugaika_build_info"]
    assert len(build) == 1
    assert ("version", __version__) in build[0][1]

    # The Maildir is the independent record: one file per recipient of each message.
    files = list((tmp_path / "maildir").glob("*/new/*"))
    assert len(files) == 8


def test_downstream_refusals_counted_exactly(tmp_path: Path) -> None:
    """Delivered, tempfailed (sink says 451 to DATA), rejected (550 to DATA), RCPT refused."""
    with SmtpSink() as sink:
        config = make_config(
            tmp_path,
            tenants=TENANTS,
            downstream=f"{sink.host}:{sink.port}",
            **{"delivery.pool_size": 0, "delivery.starttls": "off"},
        )
        with GatewayThread(config) as gw:
            _send(gw, ["u1@a.lg.jp"], "accepted one")
            sink.fail_next("data", 451, "4.3.0 Sink busy, try later")
            with pytest.raises(smtplib.SMTPDataError, match="Sink busy") as deferred:
                _send(gw, ["u1@a.lg.jp"], "deferred")
            sink.fail_next("data", 550, "5.7.1 Sink refuses this")
            with pytest.raises(smtplib.SMTPDataError, match="Sink refuses") as refused:
                _send(gw, ["x@b.lg.jp"], "refused")
            sink.fail_next("rcpt", 550, "5.1.1 No such user")
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                _send(gw, ["nobody@a.lg.jp"], "unknown user")
            _send(gw, ["x@b.lg.jp"], "accepted two")
            assert wait_until(lambda: _sessions_closed(gw))
            samples = scrape(gw.metrics_url)
        received = sink.messages

    assert deferred.value.smtp_code == 451
    assert refused.value.smtp_code == 550
    assert len(received) == 2  # only the two accepted messages reached the sink

    def value(name: str, **labels: str) -> float | None:
        return sample(samples, name, **labels)

    assert value("mugaika_messages_total", verdict="delivered", tenant="a.lg.jp") == 1
    assert value("mugaika_messages_total", verdict="delivered", tenant="b.lg.jp") == 1
    assert value("mugaika_messages_total", verdict="tempfailed", tenant="a.lg.jp") == 1
    assert value("mugaika_messages_total", verdict="rejected", tenant="b.lg.jp") == 1
    _other_verdicts_zero(samples, "a.lg.jp", {"delivered", "tempfailed"})
    _other_verdicts_zero(samples, "b.lg.jp", {"delivered", "rejected"})
    _other_verdicts_zero(samples, "other", set())

    assert value("mugaika_downstream_failures_total", kind="tempfail") == 1
    assert value("mugaika_downstream_failures_total", kind="permfail") == 1
    assert value("mugaika_downstream_failures_total", kind="unavailable") == 0
    assert value("mugaika_downstream_delivery_seconds_count") == 2
    assert value("mugaika_message_processing_seconds_count") == 4
    assert value("mugaika_smtp_commands_total", command="DATA", reply_class="2xx") == 2
    assert value("mugaika_smtp_commands_total", command="DATA", reply_class="4xx") == 1
    assert value("mugaika_smtp_commands_total", command="DATA", reply_class="5xx") == 1
    assert value("mugaika_smtp_commands_total", command="RCPT", reply_class="2xx") == 4
    assert value("mugaika_smtp_commands_total", command="RCPT", reply_class="5xx") == 1
    assert value("mugaika_smtp_sessions_total") == 5


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_downstream_down_tempfails_and_readyz_says_why(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        tenants=TENANTS,
        downstream=f"127.0.0.1:{_closed_port()}",
        **{"delivery.pool_size": 0, "delivery.connect_timeout": 5.0},
    )
    with GatewayThread(config) as gw:
        ready = http_get(gw.metrics_url, "/readyz")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            _send(gw, ["u1@a.lg.jp"], "nowhere to go")
        samples = scrape(gw.metrics_url)
        health = http_get(gw.metrics_url, "/healthz")

    assert ready.status == 503
    assert ready.headers["content-type"] == "application/json"
    body = json.loads(ready.body)
    assert body["status"] == "unready"
    assert body["failed"] == ["downstream"]
    assert body["checks"]["downstream"]["ok"] is False
    assert body["checks"]["downstream"]["error"] == f"no answer from smtp://{config.downstream}"
    assert body["checks"]["smtp-listener"]["ok"] is True
    # Liveness does not depend on the downstream: a supervisor must not restart the gateway.
    assert health.status == 200

    code, text = refused.value.recipients["u1@a.lg.jp"]
    assert code == 451, text
    assert sample(samples, "mugaika_downstream_failures_total", kind="unavailable") == 1
    assert sample(samples, "mugaika_smtp_commands_total", command="RCPT", reply_class="4xx") == 1
    # Refused at RCPT: no message was received, so none is counted under any verdict.
    for tenant in ("a.lg.jp", "b.lg.jp", "other"):
        _other_verdicts_zero(samples, tenant, set())
    assert sample(samples, "mugaika_readiness_up", check="downstream") == 0


def test_readyz_goes_unready_when_the_downstream_stops(tmp_path: Path) -> None:
    sink = SmtpSink().start()
    stopped = False
    try:
        config = make_config(
            tmp_path,
            downstream=f"{sink.host}:{sink.port}",
            **{"delivery.pool_size": 0, "delivery.starttls": "off"},
        )
        with GatewayThread(config) as gw:
            before = http_get(gw.metrics_url, "/readyz")
            sink.stop()
            stopped = True
            # Readiness results are cached for a second; poll until the change shows.
            assert wait_until(lambda: http_get(gw.metrics_url, "/readyz").status == 503)
            after = http_get(gw.metrics_url, "/readyz")
            samples = scrape(gw.metrics_url)
    finally:
        if not stopped:
            sink.stop()
    assert before.status == 200
    assert json.loads(before.body)["status"] == "ready"
    assert json.loads(after.body)["failed"] == ["downstream"]
    assert sample(samples, "mugaika_readiness_up", check="downstream") == 0


def test_readyz_unready_while_draining(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with GatewayThread(config) as gw:
        assert http_get(gw.metrics_url, "/readyz").status == 200
        assert gw.server.handler is not None
        gw.server.handler.closing = True  # what shutdown() sets first: stop taking new mail
        assert wait_until(lambda: http_get(gw.metrics_url, "/readyz").status == 503)
        body = http_get(gw.metrics_url, "/readyz").body
        gw.server.handler.closing = False
    assert json.loads(body)["failed"] == ["smtp-listener"]
    assert json.loads(body)["checks"]["smtp-listener"]["error"] == (
        "not listening, or draining for shutdown"
    )
