"""Idle sessions cannot lock everyone out (issue 11).

100 sessions sending NOOP held every slot and all other mail got 421 for as long as they
lasted. Now: a limit per client address (421 4.7.0 at connect), a limit on commands that do
not advance a mail transaction (421 4.7.0, then close), and a shorter idle timeout outside a
transaction than inside one (421 4.4.2). Each test drives the gateway over real SMTP; other
clients speak from other loopback addresses (127.0.0.2...), as Linux routes all of 127/8.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from gateway.smtp import client_key
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.raw_smtp import RawSmtp
from tests.helpers.smtp_sink import SmtpSink

ATTACKER, LEGITIMATE = "127.0.0.1", "127.0.0.2"
MESSAGE = b"From: a@example.com\r\nTo: user@example.lg.jp\r\nSubject: hi\r\n\r\nhello\r\n"


def send_message(port: int, source: str) -> tuple[int, float]:
    """One whole session (greeting to QUIT) from ``source``: DATA's reply code, seconds."""
    started = time.monotonic()
    with RawSmtp(port, source=source) as client:
        if client.greeting.code != 220:
            return client.greeting.code, time.monotonic() - started
        client.command(b"EHLO legitimate.example")
        client.command(b"MAIL FROM:<a@example.com>")
        client.command(b"RCPT TO:<user@example.lg.jp>")
        code = client.data(MESSAGE).code
        client.command(b"QUIT")
    return code, time.monotonic() - started


@contextlib.contextmanager
def noop_sessions(
    port: int, count: int, source: str = ATTACKER
) -> Iterator[tuple[list[RawSmtp], list[RawSmtp]]]:
    """``count`` sessions that EHLO and NOOP: the issue's attack. Yields (admitted, refused)."""
    admitted: list[RawSmtp] = []
    refused: list[RawSmtp] = []
    try:
        for _ in range(count):
            try:
                session = RawSmtp(port, source=source, timeout=10)
            except OSError:
                continue
            (admitted if session.greeting.code == 220 else refused).append(session)
        for session in admitted:
            assert session.command(b"EHLO attacker.example").code == 250
            assert session.command(b"NOOP").code == 250
        yield admitted, refused
    finally:
        for session in admitted + refused:
            session.close()


def test_noop_attack_from_one_address_leaves_room_for_other_clients(tmp_path, sink: SmtpSink):
    config = make_config(tmp_path, downstream=sink.address)  # the shipped limits
    with RunningGateway(config) as gateway, noop_sessions(gateway.port, 100) as (held, refused):
        code, seconds = send_message(gateway.port, LEGITIMATE)
        assert code == 250, f"the legitimate client got {code} during the attack"
        assert len(held) == config.smtp.max_sessions_per_client == 20
        assert {r.greeting.lines[0] for r in refused} == {
            b"421 4.7.0 Too many concurrent sessions from your address, try again later"
        }
        assert len(refused) == 80
    assert len(sink.messages) == 1
    assert seconds < 10


def test_sessions_per_client_limit_counts_open_sessions_only(tmp_path, sink: SmtpSink):
    config = make_config(tmp_path, downstream=sink.address, **{"smtp.max_sessions_per_client": 2})
    with RunningGateway(config) as gateway:
        first, second = RawSmtp(gateway.port), RawSmtp(gateway.port)
        with RawSmtp(gateway.port) as third:
            assert (third.greeting.code, third.greeting.text[:5]) == (421, b"4.7.0")
        with RawSmtp(gateway.port, source=LEGITIMATE) as other:
            assert other.greeting.code == 220
        first.command(b"QUIT")
        first.close()
        deadline = time.monotonic() + 5
        while gateway.server.handler.sessions_by_client[ATTACKER] > 1:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with RawSmtp(gateway.port) as again:
            assert again.greeting.code == 220
        second.close()
        assert gateway.metric("mugaika_smtp_sessions_refused_total") == 1


def test_commands_without_progress_end_the_session_with_421(tmp_path, sink: SmtpSink):
    config = make_config(
        tmp_path, downstream=sink.address, **{"smtp.max_commands_without_progress": 5}
    )
    with RunningGateway(config) as gateway, RawSmtp(gateway.port) as client:
        replies = [client.command(line).code for line in (b"EHLO x", b"NOOP", b"RSET")]
        replies += [client.command(line).code for line in (b"HELP", b"VRFY <a@example.com>")]
        assert replies == [250, 250, 250, 250, 252]
        answer = client.command(b"NOOP")
        assert answer.lines == (
            b"421 4.7.0 Too many commands without a completed message, closing connection",
        )
        assert client.read_reply().closed


def test_a_completed_message_restarts_the_count(tmp_path, sink: SmtpSink):
    config = make_config(
        tmp_path, downstream=sink.address, **{"smtp.max_commands_without_progress": 5}
    )
    with RunningGateway(config) as gateway, RawSmtp(gateway.port) as client:
        for _ in range(3):
            for line in (b"EHLO x", b"NOOP", b"RSET", b"NOOP"):  # four each round
                assert client.command(line).code == 250
            assert client.command(b"MAIL FROM:<a@example.com>").code == 250
            assert client.command(b"RCPT TO:<user@example.lg.jp>").code == 250
            assert client.data(MESSAGE).code == 250
    assert len(sink.messages) == 3


def test_recipients_the_downstream_refuses_are_not_idling(tmp_path, sink: SmtpSink):
    """Postfix relays a batch with unknown users: the downstream's 550s are answers, not
    junk; counting them would cut the batch and make Postfix retry it forever."""
    config = make_config(
        tmp_path, downstream=sink.address, **{"smtp.max_commands_without_progress": 5}
    )
    for _ in range(10):
        sink.fail_next("rcpt", 550, "5.1.1 User unknown")
    with RunningGateway(config) as gateway, RawSmtp(gateway.port) as client:
        client.command(b"EHLO postfix.example")
        assert client.command(b"MAIL FROM:<a@example.com>").code == 250
        codes = [client.command(f"RCPT TO:<u{i}@example.lg.jp>".encode()).code for i in range(11)]
        assert codes == [550] * 10 + [250]
        assert client.data(MESSAGE).code == 250


def test_refused_commands_count_as_without_progress(tmp_path, sink: SmtpSink):
    config = make_config(
        tmp_path, downstream=sink.address, **{"smtp.max_commands_without_progress": 5}
    )
    with RunningGateway(config) as gateway, RawSmtp(gateway.port) as client:
        client.command(b"EHLO x")
        codes = [client.command(b"MAIL FROM:<not an address").code for _ in range(4)]
        assert codes == [553] * 4
        assert client.command(b"MAIL FROM:<a@example.com>").lines[0].startswith(b"421 4.7.0 ")


def test_idle_timeout_before_mail_is_shorter_than_inside_a_transaction(tmp_path, sink):
    config = make_config(
        tmp_path,
        downstream=sink.address,
        **{"smtp.idle_timeout_before_mail": 0.5, "smtp.idle_timeout": 5.0},
    )
    with RunningGateway(config) as gateway:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as conn:
            conn.recv(200)  # greeting
            started = time.monotonic()
            rest = conn.recv(200)
            waited = time.monotonic() - started
        assert rest == b"421 4.4.2 Idle timeout before MAIL, closing connection\r\n"
        assert 0.3 < waited < 3
        with RawSmtp(gateway.port) as client:
            client.command(b"EHLO x")
            assert client.command(b"MAIL FROM:<a@example.com>").code == 250
            time.sleep(1.5)  # three times the before-MAIL timeout, inside the transaction
            assert client.command(b"RCPT TO:<user@example.lg.jp>").code == 250
            time.sleep(1.5)
            assert client.data(MESSAGE).code == 250
            started = time.monotonic()
            answer = client.read_reply()  # after the message: before MAIL again
            waited = time.monotonic() - started
        assert answer.lines == (b"421 4.4.2 Idle timeout before MAIL, closing connection",)
        assert waited < 3


def test_idle_timeout_inside_a_transaction_says_so(tmp_path, sink):
    config = make_config(
        tmp_path,
        downstream=sink.address,
        **{"smtp.idle_timeout_before_mail": 5.0, "smtp.idle_timeout": 0.5},
    )
    with RunningGateway(config) as gateway, RawSmtp(gateway.port) as client:
        client.command(b"EHLO x")
        assert client.command(b"MAIL FROM:<a@example.com>").code == 250
        answer = client.read_reply()
    assert answer.lines == (b"421 4.4.2 Idle timeout, closing connection",)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("", ""),
    ],
)
def test_client_key_is_the_address_or_the_ipv6_64(address, key):
    assert client_key(address) == key
