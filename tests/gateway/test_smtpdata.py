"""gateway/smtpdata.py prepares DATA exactly as aiosmtplib does, only faster.

The gateway installs exact equivalents of aiosmtplib's line-ending normaliser and dot-stuffing
regex (issue 13). What goes downstream must be byte for byte what aiosmtplib would have sent:
these compare both on arbitrary bytes, and fail if aiosmtplib no longer has what is replaced.
"""

from __future__ import annotations

import asyncio

import aiosmtplib.protocol
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.delivery  # noqa: F401  (installs the replacements)
from gateway import smtpdata

_BYTES = st.lists(
    st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"a", b"\r\r\n", b"\n\r", b"\x00", b" "]),
    max_size=40,
).map(b"".join) | st.binary(max_size=200)


def test_the_replacements_are_installed_where_aiosmtplib_looks() -> None:
    assert (
        aiosmtplib.protocol.normalize_message_line_endings
        is smtpdata.normalize_message_line_endings
    )
    assert isinstance(aiosmtplib.protocol.PERIOD_REGEX, smtpdata.PeriodStuffer)
    # What execute_data_command uses, by name: a rename upstream must fail here.
    source = aiosmtplib.protocol.SMTPProtocol.execute_data_command.__code__.co_names
    assert "normalize_message_line_endings" in source
    assert "PERIOD_REGEX" in source


@settings(max_examples=2000)
@given(_BYTES)
def test_same_bytes_as_aiosmtplib(message: bytes) -> None:
    normalized = smtpdata.normalize_message_line_endings(message)
    assert normalized == smtpdata.ORIGINAL_NORMALIZE(message)
    assert smtpdata.PeriodStuffer().sub(b"..", normalized) == smtpdata.ORIGINAL_PERIOD_REGEX.sub(
        b"..", normalized
    )
    assert smtpdata.PeriodStuffer().sub(b"..", message) == smtpdata.ORIGINAL_PERIOD_REGEX.sub(
        b"..", message
    )


def test_a_message_arrives_intact_over_smtp() -> None:
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
            received.append(envelope.original_content or b"")
            return "250 OK"

    message = b"Subject: dots\r\n\r\n.leading\r\n..two\r\nmiddle.\r\n.\r\nlast"

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        await client.sendmail("a@example.com", ["b@example.jp"], message)
        await client.quit()
        server.close()
        await server.wait_closed()

    asyncio.run(run())
    assert received == [message + b"\r\n"]
