"""The monitoring endpoint alone: formats, negotiation, health, readiness, hostile HTTP.

A real ``MetricsEndpoint`` on a free loopback port in an event loop of its own; requests are
real HTTP (``http.client`` and raw sockets). Readiness probes here are plain coroutines that
answer what each test needs: they stand for ``Downstream.probe`` and ``QuarantineStore.ping``,
whose real behaviour is exercised in test_gateway_metrics.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.http_metrics import MAX_CONNECTIONS, MetricsEndpoint, Probe, Readiness
from gateway.metrics import Metrics, QuarantineBacklog
from gateway.report import AttachmentRecord, Report
from tests.metrics.conftest import http_get, wait_until

# What Prometheus 2.42 sends when it scrapes (scrape/scrape.go, scrapeAcceptHeader).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class EndpointThread:
    """A started ``MetricsEndpoint`` in its own event loop thread."""

    def __init__(self, endpoint: MetricsEndpoint) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def __enter__(self) -> EndpointThread:
        self.thread.start()
        self.call(self.endpoint.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.endpoint.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def address(self) -> tuple[str, int]:
        assert self.endpoint.bound is not None
        return self.endpoint.bound


def answer(value: bool) -> Probe:
    async def probe() -> bool:
        return value

    return probe


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(tenants=["a.lg.jp", "b.lg.jp"])


@pytest.fixture
def running(metrics: Metrics) -> Iterator[EndpointThread]:
    checks = {"smtp-listener": answer(True), "downstream": answer(True)}
    with EndpointThread(MetricsEndpoint(metrics, "127.0.0.1:0", lambda: checks)) as server:
        yield server


def _raw(address: tuple[str, int], data: bytes, read_timeout: float = 10.0) -> bytes:
    """Send raw bytes, then read until the server closes the connection."""
    with socket.create_connection(address, timeout=read_timeout) as conn:
        conn.sendall(data)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


# -- formats ---------------------------------------------------------------------------------


def test_text_format_by_default(running: EndpointThread, metrics: Metrics) -> None:
    metrics.messages.labels("delivered", "a.lg.jp").inc(3)
    reply = http_get(running.url, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    delivered = [
        s
        for s in families["mugaika_messages"].samples
        if s.labels == {"verdict": "delivered", "tenant": "a.lg.jp"}
    ]
    assert [s.value for s in delivered] == [3.0]
    assert families["mugaika_messages"].type == "counter"
    assert families["mugaika_message_processing_seconds"].type == "histogram"
    assert "# EOF" not in reply.text


def test_openmetrics_when_prometheus_asks(running: EndpointThread, metrics: Metrics) -> None:
    metrics.findings.labels("PDF_JAVASCRIPT").inc(2)
    reply = http_get(running.url, "/metrics", {"Accept": PROMETHEUS_ACCEPT})
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert reply.text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(reply.text)}
    findings = {
        s.labels["code"]: s.value
        for s in families["mugaika_findings"].samples
        if s.name == "mugaika_findings_total"
    }
    assert findings["PDF_JAVASCRIPT"] == 2
    assert findings["OOXML_VBA_MACRO"] == 0
    assert families["mugaika_build"].type == "info"
    assert reply.headers["vary"] == "Accept, Accept-Encoding"


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=abc",  # prometheus_client raises TypeError here
        "application/openmetrics-text; version=1.0.0<script>",
        "text/html",
        "",
    ],
)
def test_odd_accept_headers_fall_back_to_text(running: EndpointThread, accept: str) -> None:
    reply = http_get(running.url, "/metrics", {"Accept": accept})
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "mugaika_messages_total" in reply.text


def test_gzip_when_accepted(running: EndpointThread) -> None:
    reply = http_get(running.url, "/metrics", {"Accept-Encoding": "gzip"})
    assert reply.headers["content-encoding"] == "gzip"
    text = gzip.decompress(reply.body).decode()
    assert "mugaika_smtp_sessions_total 0.0" in text
    plain = http_get(running.url, "/metrics")
    assert "content-encoding" not in plain.headers


def test_every_metric_of_issue_8_is_exported(running: EndpointThread) -> None:
    text = http_get(running.url, "/metrics").text
    names = {f.name for f in text_string_to_metric_families(text)}
    for family in (
        "mugaika_smtp_sessions",
        "mugaika_smtp_commands",
        "mugaika_messages",
        "mugaika_attachments",
        "mugaika_urls_defanged",
        "mugaika_html_conversions",
        "mugaika_findings",
        "mugaika_auth_results",
        "mugaika_downstream_delivery_seconds",
        "mugaika_downstream_failures",
        "mugaika_message_processing_seconds",
        "mugaika_message_size_bytes",
        "mugaika_workers_busy",
        "mugaika_workers",
        "mugaika_worker_busy_seconds",
        "mugaika_worker_restarts",
        "mugaika_quarantine_items",
        "mugaika_quarantine_oldest_age_seconds",
        "mugaika_quarantine_releases",
        "mugaika_config_reloads",
        "mugaika_config_last_reload_successful",
        "mugaika_build_info",
        "mugaika_readiness_up",
        "process_start_time_seconds",
    ):
        assert family in names, family


# -- health and readiness --------------------------------------------------------------------


def test_healthz_and_head(running: EndpointThread) -> None:
    reply = http_get(running.url, "/healthz")
    assert (reply.status, reply.text) == (200, "ok\n")
    conn = http.client.HTTPConnection(*running.address, timeout=10)
    conn.request("HEAD", "/healthz")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Length") == "3"
    assert response.read() == b""
    conn.close()


def _endpoint_with(
    metrics: Metrics, checks: Mapping[str, Probe], timeout: float = 3.0
) -> EndpointThread:
    return EndpointThread(
        MetricsEndpoint(metrics, "127.0.0.1:0", lambda: checks, check_timeout=timeout)
    )


def test_readyz_ready(running: EndpointThread, metrics: Metrics) -> None:
    reply = http_get(running.url, "/readyz")
    assert reply.status == 200
    body = json.loads(reply.body)
    assert body["status"] == "ready"
    assert body["failed"] == []
    assert set(body["checks"]) == {"smtp-listener", "downstream"}
    assert all(check["ok"] for check in body["checks"].values())
    assert metrics.registry.get_sample_value("mugaika_readiness_up", {"check": "downstream"}) == 1


def test_readyz_names_the_failed_check(metrics: Metrics) -> None:
    async def broken() -> bool:
        raise ConnectionRefusedError(111, "Connection refused")

    checks = {
        "smtp-listener": answer(True),
        "downstream": answer(False),
        "quarantine-store": broken,
    }
    with _endpoint_with(metrics, checks) as server:
        reply = http_get(server.url, "/readyz")
    assert reply.status == 503
    body = json.loads(reply.body)
    assert body["status"] == "unready"
    assert body["failed"] == ["downstream", "quarantine-store"]
    assert body["checks"]["downstream"]["error"] == "check answered not ready"
    assert body["checks"]["quarantine-store"]["error"].startswith("ConnectionRefusedError")
    assert body["checks"]["smtp-listener"] == {"ok": True, "seconds": pytest.approx(0, abs=1)}
    value = metrics.registry.get_sample_value
    assert value("mugaika_readiness_up", {"check": "quarantine-store"}) == 0
    assert value("mugaika_readiness_up", {"check": "smtp-listener"}) == 1


def test_a_hung_check_times_out_and_is_not_started_again(metrics: Metrics) -> None:
    calls = 0
    release = asyncio.Event()

    async def hung() -> bool:
        nonlocal calls
        calls += 1
        await release.wait()
        return True

    readiness = Readiness(lambda: {"quarantine-store": hung}, metrics, 0.2, cache_seconds=0)

    async def scenario() -> list[dict]:
        first = await readiness.run()
        second = await readiness.run()
        release.set()
        await asyncio.sleep(0.05)
        third = await readiness.run()
        return [first, second, third]

    first, second, third = asyncio.run(scenario())
    assert first["quarantine-store"].ok is False
    assert first["quarantine-store"].error == "no answer within 0.2s"
    assert second["quarantine-store"].ok is False
    assert second["quarantine-store"].error.startswith("previous check still running")
    assert third["quarantine-store"].ok is True
    assert calls == 2  # the second run did not start another call while one was hung


def test_readiness_runs_at_most_once_per_cache_period(metrics: Metrics) -> None:
    calls = 0

    async def counted() -> bool:
        nonlocal calls
        calls += 1
        return True

    readiness = Readiness(lambda: {"downstream": counted}, metrics, 1.0, cache_seconds=3600)

    async def many() -> None:
        await asyncio.gather(*(readiness.run() for _ in range(20)))
        for _ in range(20):
            await readiness.run()

    asyncio.run(many())
    assert calls == 1


def test_blocking_check_runs_off_the_event_loop(metrics: Metrics) -> None:
    from gateway.http_metrics import in_thread

    loop_threads: list[int] = []
    ping_threads: list[int] = []

    def ping() -> bool:
        ping_threads.append(threading.get_ident())
        time.sleep(0.2)  # a slow database round trip
        return True

    async def scenario() -> bool:
        loop_threads.append(threading.get_ident())
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        result = await in_thread(ping, "ping")()
        task.cancel()
        return result and ticks > 3  # the loop kept running while ping slept

    assert asyncio.run(scenario()) is True
    assert ping_threads
    assert ping_threads[0] != loop_threads[0]


# -- quarantine backlog hook -----------------------------------------------------------------


def test_backlog_hook_feeds_the_quarantine_gauges(metrics: Metrics) -> None:
    now = time.time()
    calls = 0

    def backlog() -> list[QuarantineBacklog]:
        nonlocal calls
        calls += 1
        return [
            QuarantineBacklog("a.lg.jp", 5, now - 3600),
            QuarantineBacklog("A.LG.JP", 1, now - 7200),  # same tenant, other case
            QuarantineBacklog("unknown.example", 2, now - 60),
            QuarantineBacklog("other.example", 1, now - 120),
        ]

    endpoint = MetricsEndpoint(metrics, "127.0.0.1:0", backlog=backlog)
    with EndpointThread(endpoint) as server:
        http_get(server.url, "/metrics")
        text = http_get(server.url, "/metrics").text
    assert calls == 1  # polled at most every 10 s, not at every scrape
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("mugaika_quarantine_items", (("tenant", "a.lg.jp"),))] == 6
    assert samples[("mugaika_quarantine_items", (("tenant", "b.lg.jp"),))] == 0
    assert samples[("mugaika_quarantine_items", (("tenant", "other"),))] == 3
    age = samples[("mugaika_quarantine_oldest_age_seconds", (("tenant", "a.lg.jp"),))]
    assert 7200 <= age < 7200 + 60
    assert samples[("mugaika_quarantine_oldest_age_seconds", (("tenant", "b.lg.jp"),))] == 0
    assert ("mugaika_quarantine_items", (("tenant", "unknown.example"),)) not in samples


def test_backlog_failure_keeps_values_and_is_counted(metrics: Metrics) -> None:
    metrics.set_quarantine_backlog([QuarantineBacklog("a.lg.jp", 4, time.time())])

    def backlog() -> list[QuarantineBacklog]:
        raise OSError("database is locked")

    with EndpointThread(MetricsEndpoint(metrics, "127.0.0.1:0", backlog=backlog)) as server:
        reply = http_get(server.url, "/metrics")
    assert reply.status == 200
    value = metrics.registry.get_sample_value
    assert value("mugaika_quarantine_backlog_poll_failures_total") == 1
    assert value("mugaika_quarantine_items", {"tenant": "a.lg.jp"}) == 4


# -- HTTP edge cases -------------------------------------------------------------------------


def test_unknown_path_and_method(running: EndpointThread) -> None:
    assert http_get(running.url, "/metrics/../etc/passwd").status == 404
    conn = http.client.HTTPConnection(*running.address, timeout=10)
    conn.request("POST", "/metrics", body=b"x=1")
    response = conn.getresponse()
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"
    response.read()
    conn.close()


def test_keep_alive_serves_several_requests(running: EndpointThread) -> None:
    conn = http.client.HTTPConnection(*running.address, timeout=10)
    statuses = []
    for path in ("/metrics", "/healthz", "/nope", "/readyz"):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    conn.close()
    assert statuses == [200, 200, 404, 200]


def test_garbage_gets_400_and_close(running: EndpointThread) -> None:
    data = _raw(running.address, b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")


def test_oversized_head_is_refused(running: EndpointThread) -> None:
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    data = _raw(running.address, request)
    assert data.startswith(b"HTTP/1.1 431 ")


def test_request_body_is_refused(running: EndpointThread) -> None:
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"b" * 5000
    data = _raw(running.address, request)
    assert data.startswith(b"HTTP/1.1 413 ")


def test_connection_limit(running: EndpointThread) -> None:
    idle = [socket.create_connection(running.address, timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        # Wait until the server holds them all, then one more is closed at once, unanswered.
        assert wait_until(lambda: len(running.endpoint._connections) == MAX_CONNECTIONS)
        with socket.create_connection(running.address, timeout=10) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            # Closed unanswered; a reset (our request left unread) is unanswered too.
            with contextlib.suppress(ConnectionResetError):
                assert extra.recv(65536) == b""
    finally:
        for conn in idle:
            conn.close()
    assert wait_until(lambda: http_get(running.url, "/healthz").status == 200)


def test_port_in_use_names_the_metrics_listener(running: EndpointThread) -> None:
    host, port = running.address
    other = EndpointThread(MetricsEndpoint(Metrics(), f"{host}:{port}"))
    other.thread.start()
    try:
        with pytest.raises(OSError, match=rf"metrics listener {host}:{port}"):
            other.call(other.endpoint.start())
    finally:
        other.loop.call_soon_threadsafe(other.loop.stop)
        other.thread.join(10)


# -- bounded labels --------------------------------------------------------------------------


def test_labels_stay_bounded(metrics: Metrics) -> None:
    report = Report(queue_id="Q1")
    report.add_finding("SOMETHING_NEW", "1")
    report.auth.update({"spf": "PASS", "dkim": "weird-result", "x-custom": "pass"})
    report.attachments.append(
        AttachmentRecord("2", "a.bin", "x/y", "application/x-unknown", "0" * 64, 1, "Kept As Is!")
    )
    metrics.record_report(report)
    value = metrics.registry.get_sample_value
    assert value("mugaika_findings_total", {"code": "other"}) == 1
    assert value("mugaika_findings_total", {"code": "SOMETHING_NEW"}) is None
    assert value("mugaika_auth_results_total", {"method": "spf", "result": "pass"}) == 1
    assert value("mugaika_auth_results_total", {"method": "dkim", "result": "other"}) == 1
    assert value("mugaika_auth_results_total", {"method": "x-custom", "result": "pass"}) is None
    assert value("mugaika_attachments_total", {"detected_type": "other", "action": "other"}) == 1


def test_tenants_follow_reload(metrics: Metrics) -> None:
    metrics.set_quarantine_backlog([QuarantineBacklog("b.lg.jp", 2, time.time())])
    metrics.set_tenants(["a.lg.jp", "c.lg.jp"])
    value = metrics.registry.get_sample_value
    assert value("mugaika_messages_total", {"verdict": "delivered", "tenant": "c.lg.jp"}) == 0
    assert value("mugaika_quarantine_items", {"tenant": "b.lg.jp"}) is None
    metrics.record_message("delivered", ["C.LG.JP", "b.lg.jp"], 100)
    assert value("mugaika_messages_total", {"verdict": "delivered", "tenant": "c.lg.jp"}) == 1
    assert value("mugaika_messages_total", {"verdict": "delivered", "tenant": "other"}) == 1


def test_checks_factory_is_called_per_run(metrics: Metrics) -> None:
    """Probes are looked up at each run, so a downstream created after start() is used."""
    current: dict[str, Callable[[], Any]] = {}
    readiness = Readiness(lambda: current, metrics, 1.0, cache_seconds=0)
    first = asyncio.run(readiness.run())
    current["downstream"] = answer(True)
    second = asyncio.run(readiness.run())
    assert first == {}
    assert second["downstream"].ok is True
