"""A real SMTP server for tests: records what it receives, can be told to fail.

After GNU Mailman's ``src/mailman/testing/mta.py``: an aiosmtpd server on a loopback port
chosen by the kernel (port 0), running in its own thread and event loop so that both
synchronous tests and tests with their own loop can use it::

    with SmtpSink() as sink:
        ... deliver to sink.host:sink.port ...
        sink.fail_next("rcpt", 451)       # the next RCPT gets 451
        message = sink.wait_for(1)[0]     # SinkMessage(mail_from, rcpt_tos, data)

Stages for ``fail_next``: ``mail``, ``rcpt``, ``data``. Each scripted failure is used once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class SinkMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    def _failure(self, stage: str) -> str | None:
        with self.sink._lock:
            queue = self.sink._failures.get(stage)
            if queue:
                code, text = queue.popleft()
                enhanced = f"{str(code)[0]}.0.0"
                return f"{code} {enhanced} {text or 'scripted failure'}"
        return None

    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        failure = self._failure("mail")
        if failure:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        failure = self._failure("rcpt")
        if failure:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        failure = self._failure("data")
        if failure:
            return failure
        data = envelope.original_content or b""
        with self.sink._lock:
            self.sink.messages.append(
                SinkMessage(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(data))
            )
            number = len(self.sink.messages)
        return f"250 2.0.0 OK queued as SINK{number}"


class SmtpSink:
    """See module docstring."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.messages: list[SinkMessage] = []
        self._failures: dict[str, deque[tuple[int, str]]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def fail_next(self, stage: str, code: int, text: str = "") -> None:
        if stage not in ("mail", "rcpt", "data"):
            raise ValueError(f"unknown stage {stage!r}")
        with self._lock:
            self._failures.setdefault(stage, deque()).append((code, text))

    def wait_for(self, count: int, timeout: float = 10.0) -> list[SinkMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} messages at the sink, got {len(self.messages)}")

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        handler = _Handler(self)

        async def start() -> asyncio.AbstractServer:
            return await self._loop.create_server(
                lambda: SMTP(handler, decode_data=False, enable_SMTPUTF8=True),
                self.host,
                0,
            )

        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
