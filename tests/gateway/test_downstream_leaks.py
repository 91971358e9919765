"""Downstream connections never leak (issue 11): every failure path closes or returns one.

A byte that is not UTF-8 in the EHLO name, or in MAIL FROM with SMTPUTF8, made
``delivery.begin`` raise UnicodeEncodeError after taking a connection: every RCPT leaked one
(one session left 50 open; with 256 descriptors mail, ``/login`` and ``/readyz`` failed). The
evidence here is the real downstream's own count of open connections, against what the pool
holds: after any failure, every connection still open is one the pool can reuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.delivery import SmtpDownstream
from gateway.errors import DownstreamRefused
from gateway.message import ClientInfo, Recipient
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.raw_smtp import RawSmtp
from tests.helpers.smtp_sink import SmtpSink

ATTACK_RCPTS = 50


@pytest.fixture
def gateway(tmp_path: Path, sink: SmtpSink) -> Iterator[RunningGateway]:
    # The attack's 50 refused RCPTs would meet the limit on commands without progress first;
    # this test is about the connections, so that limit is out of the way here.
    config = make_config(
        tmp_path, downstream=sink.address, **{"smtp.max_commands_without_progress": 1000}
    )
    with RunningGateway(config) as running:
        yield running


def pooled(gateway: RunningGateway) -> int:
    downstream = gateway.server.downstream
    assert isinstance(downstream, SmtpDownstream)
    return downstream.pooled


@pytest.mark.parametrize(
    ("ehlo", "mail"),
    [
        (b"EHLO mx\xff.example.com", b"MAIL FROM:<sender@example.com>"),
        (b"EHLO client.example", b"MAIL FROM:<s\xffender@example.com> SMTPUTF8"),
        (b"EHLO client.example", b"MAIL FROM:<sender@example.com> ENVID=a\xffb SMTPUTF8"),
    ],
    ids=["ehlo-not-utf8", "mail-from-not-utf8", "envid-not-utf8"],
)
def test_non_utf8_session_with_many_rcpts_leaves_no_downstream_connection_open(
    gateway, sink, ehlo, mail
):
    with RawSmtp(gateway.port) as client:
        client.command(ehlo)
        client.command(mail)
        rcpt_replies = [
            client.command(f"RCPT TO:<user{i}@example.lg.jp>".encode()) for i in range(ATTACK_RCPTS)
        ]
        assert client.command(b"QUIT").code == 221
    open_now = sink.wait_open_at_most(pooled(gateway))
    assert open_now <= pooled(gateway) <= 1, f"{open_now} downstream connections left open"
    assert {r.code for r in rcpt_replies} == {503}  # no transaction, and no 451 "internal"


# --- the delivery layer itself, given values the SMTP layer would refuse ----------------------


def run(coroutine):
    return asyncio.run(coroutine)


def downstream_for(sink: SmtpSink) -> SmtpDownstream:
    return SmtpDownstream(sink.host, sink.port, "gateway.test", pool_size=4)


@pytest.mark.parametrize(
    ("mail_from", "options", "expected"),
    [
        ("s\udcffender@example.com", [], (553, "5.1.7")),
        ("send\rer@example.com", [], (553, "5.1.7")),
        ("sender@example.com", ["ENVID=a\udcffb"], (501, "5.5.4")),
        ("sender@example.com", ["ENVID=a\rb"], (501, "5.5.4")),
    ],
    ids=["mail-not-utf8", "mail-CR", "param-not-utf8", "param-CR"],
)
def test_begin_refuses_unwritable_values_without_taking_a_connection(
    sink, mail_from, options, expected
):
    async def scenario() -> tuple[set[tuple[int, str]], int]:
        downstream = downstream_for(sink)
        refused = set()
        for _ in range(ATTACK_RCPTS):
            with pytest.raises(DownstreamRefused) as caught:
                await downstream.begin(mail_from, options, None, smtputf8=True)
            refused.add((caught.value.reply.code, caught.value.reply.enhanced))
        pooled_now = downstream.pooled
        await downstream.close()
        return refused, pooled_now

    refused, pooled_now = run(scenario())
    assert refused == {expected}
    assert pooled_now == 0
    assert sink.connections == 0  # refused before a connection was taken
    assert sink.wait_open_at_most(0) == 0


@pytest.mark.parametrize("helo", ["mx\udcff.example", "mx\r.example", "mx\x00.example"])
def test_unwritable_xforward_value_is_sent_as_unavailable_and_the_connection_returns(sink, helo):
    async def scenario() -> int:
        downstream = downstream_for(sink)
        client = ClientInfo(address="203.0.113.7", helo=helo, name="mx.example", forwarded=True)
        for _ in range(ATTACK_RCPTS):
            transaction = await downstream.begin("sender@example.com", [], client, False)
            await transaction.abort()
        pooled_now = downstream.pooled
        await downstream.close()
        return pooled_now

    pooled_now = run(scenario())
    xforwards = [c for c in sink.state.commands if c.startswith("XFORWARD")]
    assert len(xforwards) == ATTACK_RCPTS
    assert all("HELO=[UNAVAILABLE]" in c for c in xforwards), xforwards[:2]
    assert sink.connections == 1  # one connection, reused for all fifty
    assert pooled_now == 1


def test_unwritable_recipient_is_refused_and_the_transaction_goes_on(sink):
    async def scenario() -> tuple[list[int], int]:
        downstream = downstream_for(sink)
        transaction = await downstream.begin("sender@example.com", [], None, True)
        codes = [
            (await transaction.add_recipient(Recipient("u\udcffser@example.lg.jp"))).code,
            (await transaction.add_recipient(Recipient("us\rer@example.lg.jp"))).code,
            (await transaction.add_recipient(Recipient("a@example.lg.jp", ("ORCPT=x\r",)))).code,
            (await transaction.add_recipient(Recipient("user@example.lg.jp"))).code,
        ]
        result = await transaction.send(b"Subject: x\r\n\r\nbody\r\n")
        codes.append(result.reply.code)
        pooled_now = downstream.pooled
        await downstream.close()
        return codes, pooled_now

    codes, pooled_now = run(scenario())
    assert codes == [553, 553, 501, 250, 250]
    assert [m.rcpt_tos for m in sink.messages] == [["user@example.lg.jp"]]
    assert pooled_now == 1


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_cancelled_command_closes_its_connection(sink, stage):
    """A session that ends while a downstream command waits (client gone, shutdown) cancels
    it: the connection, in an unknown protocol state, is closed, never pooled or leaked."""
    sink.delay_next(stage, 5.0)

    async def scenario() -> int:
        downstream = downstream_for(sink)

        async def steps() -> None:
            transaction = await downstream.begin("sender@example.com", [], None, False)
            await transaction.add_recipient(Recipient("user@example.lg.jp"))
            await transaction.send(b"Subject: x\r\n\r\nbody\r\n")

        task = asyncio.create_task(steps())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pooled_now = downstream.pooled
        await downstream.close()
        return pooled_now

    assert run(scenario()) == 0
    assert sink.wait_open_at_most(0) == 0


def test_cancelled_probe_closes_its_connection(sink):
    async def scenario() -> int:
        downstream = downstream_for(sink)
        await downstream.probe()  # one pooled connection
        sink.delay_next("noop", 5.0)
        task = asyncio.create_task(downstream.probe())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return downstream.pooled

    assert run(scenario()) == 0
    assert sink.wait_open_at_most(0) == 0
