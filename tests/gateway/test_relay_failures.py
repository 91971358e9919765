"""The sender never gets 250 unless the message was delivered: every failure path, for real.

Each test drives the gateway over real SMTP and makes the downstream sink or a worker fail,
then asserts both the reply the sender saw and what the sink holds (counts, not just codes).
"""

from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path

import pytest

from quarantine.sql import ItemQuery
from tests.gateway.test_relay_basics import message
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

MISBEHAVING = "tests.helpers.worker_targets:init_misbehaving"


@pytest.fixture
def gateway(tmp_path: Path, sink: SmtpSink):
    config = make_config(tmp_path, downstream=sink.address)
    with RunningGateway(config) as running:
        yield running


def send_one(gateway: RunningGateway, data: bytes, rcpts=("user@example.lg.jp",)):
    """MAIL/RCPT/DATA by hand; returns the RCPT replies and the DATA reply."""
    with gateway.smtp() as client:
        client.ehlo("client.example")
        assert client.docmd("MAIL FROM:<sender@example.com>")[0] == 250
        rcpt_replies = [client.docmd(f"RCPT TO:<{r}>") for r in rcpts]
        if not any(code == 250 for code, _ in rcpt_replies):
            return rcpt_replies, None
        return rcpt_replies, client.data(data)


def test_downstream_4xx_at_data_gives_451_and_nothing_delivered(gateway, sink):
    sink.fail_next("data", 452, "4.3.1 Insufficient system storage")
    _, (code, text) = send_one(gateway, message())
    assert code == 451
    assert text.startswith(b"4.3.1 ")
    assert sink.messages == []
    assert (
        gateway.metric("mugaika_messages_total", {"verdict": "tempfailed", "tenant": "other"}) == 1
    )


def test_downstream_5xx_at_data_is_passed_back_unchanged(gateway, sink):
    sink.fail_next("data", 554, "5.7.1 Content refused downstream")
    _, (code, text) = send_one(gateway, message())
    assert (code, text) == (554, b"5.7.1 Content refused downstream")
    assert sink.messages == []


def test_downstream_dropping_connection_mid_data_gives_451(gateway, sink):
    sink.drop_next("data")
    _, (code, text) = send_one(gateway, message())
    assert code == 451
    assert text.startswith(b"4.4.1 ")
    assert sink.messages == []
    # The broken connection is not reused: the next message goes through.
    _, (code, _) = send_one(gateway, message())
    assert code == 250
    assert len(sink.messages) == 1


def test_downstream_down_gives_451_at_rcpt(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        unused = probe.getsockname()[1]
    config = make_config(
        tmp_path, downstream=f"127.0.0.1:{unused}", **{"delivery.connect_timeout": 2.0}
    )
    with RunningGateway(config) as gateway:
        [(code, text)], data_reply = send_one(gateway, message())
    assert (code, text[:6]) == (451, b"4.4.1 ")
    assert data_reply is None


def test_partial_recipient_acceptance_refuses_each_recipient_with_the_downstream_reply(
    gateway, sink
):
    sink.fail_next("rcpt", 550, "5.1.1 <gone@example.lg.jp>: Recipient address rejected")
    rcpt_replies, (code, _) = send_one(
        gateway, message(), rcpts=("gone@example.lg.jp", "user@example.lg.jp")
    )
    assert rcpt_replies == [
        (550, b"5.1.1 <gone@example.lg.jp>: Recipient address rejected"),
        (250, b"2.1.5 Recipient OK"),
    ]
    assert code == 250
    [received] = sink.messages
    assert received.rcpt_tos == ["user@example.lg.jp"]


def test_downstream_4xx_for_one_recipient_is_451_for_that_recipient_only(gateway, sink):
    sink.fail_next("rcpt", 450, "4.2.1 Mailbox busy")
    rcpt_replies, (code, _) = send_one(gateway, message(), rcpts=("busy@x.lg.jp", "ok@x.lg.jp"))
    assert rcpt_replies[0] == (451, b"4.2.1 Mailbox busy")
    assert code == 250
    assert sink.messages[0].rcpt_tos == ["ok@x.lg.jp"]


def test_downstream_refusing_mail_from_is_reported_at_rcpt(gateway, sink):
    sink.fail_next("mail", 553, "5.7.1 Sender blocked")
    [(code, text)], _ = send_one(gateway, message())
    assert (code, text) == (553, b"5.7.1 Sender blocked")


def test_downstream_connections_are_reused(gateway, sink):
    for _ in range(3):
        _, (code, _) = send_one(gateway, message())
        assert code == 250
    assert len(sink.messages) == 3
    assert sink.connections == 1


def test_oversize_message_is_refused_with_552(tmp_path, sink):
    config = make_config(tmp_path, downstream=sink.address, **{"smtp.max_message_size": 2048})
    with RunningGateway(config) as gateway, gateway.smtp() as client:
        client.ehlo("client.example")
        assert client.docmd("MAIL FROM:<a@example.com> SIZE=4096") == (
            552,
            b"5.3.4 Message size exceeds fixed maximum message size",
        )
        assert client.docmd("MAIL FROM:<a@example.com>")[0] == 250
        assert client.docmd("RCPT TO:<b@example.lg.jp>")[0] == 250
        code, text = client.data(message(body="x" * 80 + "\n") * 40)
    assert (code, text[:5]) == (552, b"5.3.4")
    assert sink.messages == []


def test_too_many_recipients_get_452(tmp_path, sink):
    config = make_config(tmp_path, downstream=sink.address, **{"smtp.max_recipients": 2})
    with RunningGateway(config) as gateway:
        rcpt_replies, (code, _) = send_one(
            gateway, message(), rcpts=("a@x.lg.jp", "b@x.lg.jp", "c@x.lg.jp")
        )
    assert [c for c, _ in rcpt_replies] == [250, 250, 452]
    assert rcpt_replies[2][1] == b"4.5.3 Too many recipients"
    assert code == 250
    assert sink.messages[0].rcpt_tos == ["a@x.lg.jp", "b@x.lg.jp"]


def test_line_longer_than_the_configured_limit_gets_500_552(tmp_path, sink):
    config = make_config(tmp_path, downstream=sink.address, **{"smtp.max_line_length": 1000})
    with RunningGateway(config) as gateway:
        _, (code, text) = send_one(gateway, b"Subject: long\r\n\r\n" + b"a" * 1200 + b"\r\n")
        assert (code, text[:5]) == (500, b"5.5.2")
        _, (code, text) = send_one(gateway, b"Subject: ok\r\n\r\n" + b"a" * 998 + b"\r\n")
        assert code == 250
    assert len(sink.messages) == 1


def test_relay_is_denied_to_clients_outside_permitted_networks(tmp_path, sink):
    config = make_config(
        tmp_path,
        downstream=sink.address,
        **{"smtp.permitted_networks": ["127.0.0.1/32"], "smtp.accepted_domains": ["city.lg.jp"]},
    )
    with RunningGateway(config) as gateway:
        client = smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0))
        client.connect("127.0.0.1", gateway.port)
        client.ehlo("outside.example")
        client.docmd("MAIL FROM:<a@example.com>")
        assert client.docmd("RCPT TO:<user@elsewhere.example>") == (
            554,
            b"5.7.1 <user@elsewhere.example>: Relay access denied",
        )
        assert client.docmd("RCPT TO:<user@city.lg.jp>")[0] == 250
        assert client.docmd("RCPT TO:<user@sub.city.lg.jp>")[0] == 554
        client.quit()


def test_sessions_over_the_limit_get_421_at_connect(tmp_path, sink):
    config = make_config(tmp_path, downstream=sink.address, **{"smtp.max_sessions": 1})
    with RunningGateway(config) as gateway:
        first = gateway.smtp()
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as second:
            greeting = second.recv(200)
        assert greeting.startswith(b"421 4.3.2 ")
        first.quit()
        assert gateway.metric("mugaika_smtp_sessions_refused_total") == 1


def test_too_many_commands_end_the_session_with_421(tmp_path, sink):
    config = make_config(tmp_path, downstream=sink.address, **{"smtp.max_commands": 10})
    with RunningGateway(config) as gateway, gateway.smtp() as client:
        replies = [client.docmd("NOOP")[0] for _ in range(10)]
        assert replies == [250] * 10
        code, text = client.docmd("NOOP")
        assert (code, text[:5]) == (421, b"4.7.0")


def test_idle_session_gets_421_before_close(tmp_path, sink):
    config = make_config(tmp_path, downstream=sink.address, **{"smtp.idle_timeout": 0.5})
    with (
        RunningGateway(config) as gateway,
        socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as conn,
    ):
        conn.recv(200)  # greeting
        time.sleep(1.0)
        rest = conn.recv(200)
    assert rest.startswith(b"421 4.4.2 ")


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [("crash", b"4.3.0"), ("exit", b"4.3.0"), ("raise", b"4.3.0"), ("memory", b"4.3.0")],
)
def test_worker_failure_gives_451_and_the_pool_recovers(tmp_path, sink, behaviour, expected):
    config = make_config(
        tmp_path,
        downstream=sink.address,
        **{"workers.memory_limit_mb": 256, "workers.on_failure": "tempfail"},
    )
    with RunningGateway(config, pipeline_target=MISBEHAVING) as gateway:
        _, (code, text) = send_one(gateway, message(X_Test_Behaviour=behaviour))
        assert (code, text[:5]) == (451, expected)
        assert sink.messages == []
        _, (code, _) = send_one(gateway, message())
        assert code == 250
        assert len(sink.messages) == 1


def test_worker_timeout_gives_451_and_kills_the_worker(tmp_path, sink):
    config = make_config(
        tmp_path,
        downstream=sink.address,
        **{"workers.message_timeout": 3.0, "workers.on_failure": "tempfail"},
    )
    with RunningGateway(config, pipeline_target=MISBEHAVING) as gateway:
        _, (code, text) = send_one(gateway, message(X_Test_Behaviour="sleep=30"))
        assert (code, text[:5]) == (451, b"4.4.7")
        assert gateway.metric("mugaika_worker_restarts_total", {"reason": "timeout"}) == 1
        _, (code, _) = send_one(gateway, message())
        assert code == 250
    assert len(sink.messages) == 1


def test_by_default_a_message_that_kills_its_worker_is_held_not_retried_forever(tmp_path, sink):
    config = make_config(tmp_path, downstream=sink.address)
    with RunningGateway(config, pipeline_target=MISBEHAVING) as gateway:
        _, (code, text) = send_one(gateway, message(X_Test_Behaviour="crash"))
        assert code == 250
        assert b"Held for review as " in text
        store = gateway.server.store
        [item] = store.list(ItemQuery()).items
        assert item.status == "held"
        assert "WORKER_CRASHED" in item.reasons
        assert store.original(item.id).endswith(b"body text\r\n")
    assert sink.messages == []
