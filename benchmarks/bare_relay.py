"""The bare Python relay `benchmarks/run` compares against: aiosmtpd in, aiosmtplib out.

    python benchmarks/bare_relay.py 127.0.0.1:LISTEN 127.0.0.1:DOWNSTREAM

One process, no content work: each message is sent on downstream over one connection per
inbound session (kept open while the session lasts) and 250 is given only after the
downstream's 250, as Mugaika does. What is left is the cost of Python's SMTP libraries.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session


class Relay:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.clients: dict[int, aiosmtplib.SMTP] = {}

    async def _client(self, session: Session) -> aiosmtplib.SMTP:
        client = self.clients.get(id(session))
        if client is None or not client.is_connected:
            client = aiosmtplib.SMTP(hostname=self.host, port=self.port, start_tls=False)
            await client.connect()
            self.clients[id(session)] = client
        return client

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        try:
            client = await self._client(session)
            await client.sendmail(envelope.mail_from or "", envelope.rcpt_tos, content)
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.clients.pop(id(session), None)
            return f"451 4.4.0 downstream: {exc}"
        return "250 2.0.0 OK"

    async def close(self, session: Session) -> None:
        client = self.clients.pop(id(session), None)
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


class RelaySMTP(SMTP):
    async def _handle_client(self) -> None:
        try:
            await super()._handle_client()
        finally:
            await self.event_handler.close(self.session)


async def main(listen: str, downstream: str) -> None:
    host, port = listen.rsplit(":", 1)
    down_host, down_port = downstream.rsplit(":", 1)
    relay = Relay(down_host, int(down_port))
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return RelaySMTP(relay, decode_data=False, data_size_limit=50 * 1024 * 1024)

    server = await loop.create_server(factory, host, int(port))
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    await stopped.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
