"""A real SMTP server for tests: records what it receives and fails when told to.

After Mailman's ``src/mailman/testing/mta.py``: an aiosmtpd server on a free loopback port, in
its own thread, so tests drive the gateway with real SMTP on both sides. It advertises DSN,
SMTPUTF8 and XFORWARD (configurable) and records every parameter it is given, so tests can
assert pass-through.

    with SmtpSink() as sink:
        sink.fail_next("rcpt", 550, "5.1.1 No such user")
        ...
        assert sink.messages[0].rcpt_tos == [...]
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    rcpt_options: list[list[str]]
    data: bytes
    xforward: dict[str, str]
    queue_id: str


@dataclass
class _Failure:
    stage: str
    code: int
    text: str
    # "reply", "drop" (close the connection), "delay" (then act normally), "commit-then-delay"
    # (record the message, then wait before the 250: as a real MTA that has queued it)
    action: str = "reply"
    seconds: float = 0.0


@dataclass
class _State:
    messages: list[ReceivedMessage] = field(default_factory=list)
    failures: deque[_Failure] = field(default_factory=deque)
    connections: int = 0
    open_connections: int = 0  # connected now (a leak shows here, not in ``connections``)
    commands: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _SinkSMTP(SMTP):
    """aiosmtpd with DSN/XFORWARD parameters accepted and recorded verbatim."""

    # Lenient like Postfix (which accepts and splits long lines), unlike aiosmtpd's 1001.
    line_length_limit = 1 << 20

    def __init__(self, handler: _SinkHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink_handler = handler
        self.xforward: dict[str, str] = {}
        self.rcpt_params: list[list[str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:
            with self.sink_handler.state.lock:
                self.sink_handler.state.connections += 1
                self.sink_handler.state.open_connections += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        with self.sink_handler.state.lock:
            self.sink_handler.state.open_connections -= 1
        super().connection_lost(error)

    async def smtp_XFORWARD(self, arg: str) -> None:  # noqa: N802
        self.sink_handler.state.commands.append(f"XFORWARD {arg}")
        for item in (arg or "").split():
            key, _, value = item.partition("=")
            self.xforward[key.upper()] = value
        await self.push("250 2.0.0 Ok")

    async def smtp_MAIL(self, arg: str) -> None:  # noqa: N802
        self.sink_handler.state.commands.append(f"MAIL {arg}")
        if await self._scripted("mail"):
            return
        assert self.envelope is not None
        address_part = self._strip_command_keyword("FROM:", arg or "")
        address, params = self._getaddr(address_part or "")
        if address is None:
            await self.push("501 5.5.4 Syntax")
            return
        self.envelope.mail_from = "" if address == "<>" else address
        self.envelope.mail_options = (params or "").split()
        self.envelope.smtp_utf8 = any(p.upper() == "SMTPUTF8" for p in self.envelope.mail_options)
        self.rcpt_params = []
        await self.push("250 2.1.0 Ok")

    async def smtp_RCPT(self, arg: str) -> None:  # noqa: N802
        self.sink_handler.state.commands.append(f"RCPT {arg}")
        if await self._scripted("rcpt"):
            return
        assert self.envelope is not None
        address_part = self._strip_command_keyword("TO:", arg or "")
        address, params = self._getaddr(address_part or "")
        if address is None:
            await self.push("501 5.5.4 Syntax")
            return
        self.envelope.rcpt_tos.append(address)
        self.rcpt_params.append((params or "").split())
        await self.push("250 2.1.5 Ok")

    async def smtp_NOOP(self, arg: str) -> None:  # noqa: N802
        self.sink_handler.state.commands.append("NOOP")
        if await self._scripted("noop"):
            return
        await super().smtp_NOOP(arg)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        self.sink_handler.state.commands.append("DATA")
        self.sink_handler.pending_data_failure = self._pop("data")
        await super().smtp_DATA(arg)

    def _pop(self, stage: str) -> _Failure | None:
        state = self.sink_handler.state
        with state.lock:
            if state.failures and state.failures[0].stage == stage:
                return state.failures.popleft()
        return None

    async def _scripted(self, stage: str) -> bool:
        failure = self._pop(stage)
        if failure is None:
            return False
        if failure.action == "drop":
            assert self.transport is not None
            self.transport.close()
            return True
        if failure.action == "delay":
            await asyncio.sleep(failure.seconds)
            return False
        await self.push(f"{failure.code} {failure.text}")
        return True


class _SinkHandler:
    def __init__(self, state: _State) -> None:
        self.state = state
        self.pending_data_failure: _Failure | None = None
        self._counter = 0

    async def handle_EHLO(  # noqa: N802
        self,
        server: _SinkSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        extra = ["250-DSN", "250-ENHANCEDSTATUSCODES"]
        if self.advertise_xforward:
            extra.append("250-XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE")
        return [*responses[:-1], *extra, "250 HELP"]

    advertise_xforward = True

    async def handle_DATA(  # noqa: N802
        self, server: _SinkSMTP, session: Session, envelope: Envelope
    ) -> str:
        failure, self.pending_data_failure = self.pending_data_failure, None
        if failure is not None:
            if failure.action == "drop":
                assert server.transport is not None
                server.transport.close()
                return "451 4.3.0 dropped"  # never seen by the client
            if failure.action == "delay":
                await asyncio.sleep(failure.seconds)
            elif failure.action != "commit-then-delay":
                return f"{failure.code} {failure.text}"
        with self.state.lock:
            self._counter += 1
            queue_id = f"SINK{self._counter:06d}"
            self.state.messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    mail_options=list(envelope.mail_options),
                    rcpt_options=list(server.rcpt_params),
                    data=envelope.original_content or b"",
                    xforward=dict(server.xforward),
                    queue_id=queue_id,
                )
            )
        server.xforward = {}
        if failure is not None and failure.action == "commit-then-delay":
            # Shielded: a client that hangs up now does not undo the queued message.
            await asyncio.shield(asyncio.sleep(failure.seconds))
        return f"250 2.0.0 Ok: queued as {queue_id}"


class SmtpSink:
    """A recording, scriptable SMTP server on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, *, smtputf8: bool = True, xforward: bool = True) -> None:
        self.state = _State()
        self.handler = _SinkHandler(self.state)
        self.handler.advertise_xforward = xforward
        self.smtputf8 = smtputf8
        self.host = "127.0.0.1"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- scripting ---------------------------------------------------------------------------

    def fail_next(self, stage: str, code: int = 451, text: str = "4.3.0 Try again later") -> None:
        """Answer the next ``stage`` command ("mail", "rcpt", "data", "noop") with ``code text``."""
        with self.state.lock:
            self.state.failures.append(_Failure(stage, code, text))

    def drop_next(self, stage: str) -> None:
        """Close the connection at the next ``stage`` (for "data": after the whole message)."""
        with self.state.lock:
            self.state.failures.append(_Failure(stage, 0, "", action="drop"))

    def delay_next(self, stage: str, seconds: float) -> None:
        with self.state.lock:
            self.state.failures.append(_Failure(stage, 0, "", action="delay", seconds=seconds))

    def commit_then_delay_next(self, seconds: float) -> None:
        """Queue the next message at once but answer its DATA only ``seconds`` later: a client
        that gives up meanwhile has delivered it without knowing."""
        with self.state.lock:
            self.state.failures.append(
                _Failure("data", 0, "", action="commit-then-delay", seconds=seconds)
            )

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self.state.lock:
            return list(self.state.messages)

    @property
    def connections(self) -> int:
        return self.state.connections

    @property
    def open_connections(self) -> int:
        """Connections open right now (``connections`` counts every one ever made)."""
        with self.state.lock:
            return self.state.open_connections

    def wait_open_at_most(self, count: int, timeout: float = 5.0) -> int:
        """Wait until at most ``count`` connections are open; return how many are."""
        deadline = time.monotonic() + timeout
        while self.open_connections > count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.open_connections

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.02)
        return self.messages

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        def factory() -> _SinkSMTP:
            return _SinkSMTP(self.handler, enable_SMTPUTF8=self.smtputf8, hostname="sink.test")

        self._server = loop.run_until_complete(loop.create_server(factory, self.host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        self._server.close()
        with contextlib.suppress(Exception):
            loop.run_until_complete(self._server.wait_closed())
        loop.close()

    def start(self) -> SmtpSink:
        self._thread = threading.Thread(target=self._run, name="smtp-sink", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
