"""The gateway's block DATA reader frames a message exactly as aiosmtpd's line reader does.

``GatewaySMTP.smtp_DATA`` reads DATA in blocks (issue 13: aiosmtpd's line-by-line loop was
most of the event loop's time for a 2 MB message). Where a message ends decides what is
inspected and what a smuggled second message would be, so the reading is checked against
aiosmtpd's own ``smtp_DATA`` over real loopback connections: the same byte stream (commands,
a body full of dots, bare CRs and LFs, long lines, whatever follows the first <CRLF>.<CRLF>)
must give the same transcript and the same content. Small limits make the reader's buffer
limit and both refusals (500 line too long, 552 too much data) come up often. One documented
difference: a message both too long in a line and too large gets 552 (aiosmtpd answers
whichever it met first).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smtp import GatewaySMTP, _longest_line_exceeds

RESET = b"(connection reset)"
LINE_LIMIT = 40
SIZE_LIMIT = 400


class _Capture:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.contents.append(envelope.original_content or b"")
        return "250 OK stored"


class _Stock(SMTP):
    pass


class _Block(SMTP):
    # The gateway's reader on a plain aiosmtpd session (the rest of GatewaySMTP needs a relay).
    smtp_DATA = GatewaySMTP.smtp_DATA  # noqa: N815
    _read_data = GatewaySMTP._read_data


async def _transcript(cls: type[SMTP], stream: bytes, pieces: int) -> tuple[bytes, list[bytes]]:
    capture = _Capture()
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        smtp = cls(capture, data_size_limit=SIZE_LIMIT, decode_data=False, hostname="test")
        return smtp

    _Stock.line_length_limit = LINE_LIMIT
    _Block.line_length_limit = LINE_LIMIT
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readuntil(b"\r\n")  # greeting
        step = max(1, len(stream) // pieces)
        try:
            for start in range(0, len(stream), step):
                writer.write(stream[start : start + step])
                await writer.drain()
                await asyncio.sleep(0)
            replies = await asyncio.wait_for(reader.read(), 10)
        except (ConnectionResetError, BrokenPipeError):
            # aiosmtpd hangs up after too many unknown commands (what follows an early end
            # of data); what was answered before the reset is not reliably readable.
            replies = RESET
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
    return replies, capture.contents


def _run(stream: bytes, pieces: int) -> dict[str, Any]:
    async def both() -> dict[str, Any]:
        stock = await _transcript(_Stock, stream, pieces)
        block = await _transcript(_Block, stream, pieces)
        return {"stock": stock, "block": block}

    return asyncio.run(both())


_PIECES = [
    b".", b"..", b"\r\n", b"\r", b"\n", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"\r\n..\r\n", b".\r\n",
    b"x" * 15, b"y" * 39, b"z" * 60, b"=2E", b"\x00", b"\xe3\x81\x82", b" ", b"QUIT\r\n",
    b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"DATA\r\n",
]  # fmt: skip
_HEAD = b"EHLO client\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.jp>\r\nDATA\r\n"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(st.lists(st.sampled_from(_PIECES), max_size=30), st.integers(min_value=1, max_value=7))
def test_block_reader_frames_as_aiosmtpd(body: list[bytes], pieces: int) -> None:
    stream = _HEAD + b"".join(body) + b"\r\n.\r\nQUIT\r\n"
    result = _run(stream, pieces)
    stock_replies, stock_contents = result["stock"]
    block_replies, block_contents = result["block"]
    assert block_contents == stock_contents
    if RESET in (stock_replies, block_replies):
        return
    if stock_replies != block_replies and b"500 Line too long" in stock_replies:
        # The one documented difference: too long a line AND too much data gives 552.
        assert (
            stock_replies.replace(
                b"500 Line too long (see RFC5321 4.5.3.1.6)", b"552 Error: Too much mail data", 1
            )
            == block_replies
        )
        return
    assert block_replies == stock_replies
    assert block_contents == stock_contents


def test_a_message_and_what_the_client_pipelined_after_it() -> None:
    body = b"..leading dot\r\nline.\r\n.\r\n"
    stream = _HEAD + body + b"MAIL FROM:<x@example.com>\r\nQUIT\r\n"
    result = _run(stream, 1)
    assert result["block"] == result["stock"]
    replies, contents = result["block"]
    assert contents == [b".leading dot\r\nline.\r\n"]
    assert replies.count(b"250 OK stored") == 1
    assert replies.endswith(b"250 2.1.0 OK\r\n221 Bye\r\n") or b"221" in replies


def test_smuggling_forms_do_not_end_the_message() -> None:
    # A bare LF or CR around the dot is content (aiosmtpd 1.4.5's smuggling fix).
    for fake_end in (b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"):
        stream = _HEAD + b"a" + fake_end + b"MAIL FROM:<evil@example.com>" + b"\r\n.\r\nQUIT\r\n"
        result = _run(stream, 2)
        assert result["block"] == result["stock"], fake_end
        assert len(result["block"][1]) == 1
        assert b"evil" in result["block"][1][0]


def test_limits_are_refused_after_the_whole_message() -> None:
    long_line = _HEAD + b"a" * (LINE_LIMIT + 5) + b"\r\n.\r\nQUIT\r\n"
    result = _run(long_line, 3)
    assert result["block"] == result["stock"]
    assert b"500 Line too long" in result["block"][0]
    too_much = _HEAD + (b"b" * 30 + b"\r\n") * 20 + b".\r\nQUIT\r\n"
    result = _run(too_much, 3)
    assert result["block"] == result["stock"]
    assert b"552 Error: Too much mail data" in result["block"][0]


def test_longest_line_check() -> None:
    assert not _longest_line_exceeds(b"", 10)
    assert not _longest_line_exceeds(b"12345678\r\n" * 100, 10)
    assert _longest_line_exceeds(b"12345678\r\n" * 50 + b"123456789\r\n" + b"1\r\n", 10)
    assert _longest_line_exceeds(b"12345678\r\n" * 50 + b"1234567\r8\r\n", 10)
    assert not _longest_line_exceeds(b"1234567\r8\r\n", 11)
