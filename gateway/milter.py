"""Milter mode: the same pipeline, answering Postfix (or Sendmail) during the SMTP session.

``mugaika milter --listen inet:127.0.0.1:10029`` serves the Sendmail milter protocol
(version 6, as Postfix speaks it). Postfix's ``smtpd_milters`` hands us the connection, HELO,
envelope, headers and body; at the end of the message we run exactly what the SMTP relay
runs, ``Relay.handle`` (worker pipeline, policy, quarantine hold, retained originals,
metrics, the verdict log line), with a ``CapturedDelivery`` in place of the downstream
transaction: "delivering" means handing the sanitized message back to Postfix. Then:

==========================  ===========================================================
relay reply                 milter answer
==========================  ===========================================================
250, message captured       every original header deleted, the sanitized headers added in
                            order, the body replaced; ``continue`` (Postfix queues it)
250, held in quarantine     ``discard``: Postfix answers 250 and drops its copy; ours is
                            committed in the quarantine store (the same store as ``serve``)
4xx                         ``replycode 4xx`` (Postfix answers it; the sender retries)
5xx (policy reject)         ``replycode 5xx``
==========================  ===========================================================

Fail closed: if this process dies, hangs or cannot speak the protocol, Postfix applies
``milter_default_action``, which must be ``tempfail`` (deploy/postfix/milter.main.cf): the
sender keeps the message and retries; nothing passes unsanitized. While the pipeline runs we
send ``progress`` every ``PROGRESS_INTERVAL`` seconds so Postfix's ``milter_content_timeout``
measures our silence, not our work.

The wire format and the protocol state checks are ``kilter.protocol``'s (a sans-IO
implementation of the milter protocol, pinned); this module frames messages, drives the
asyncio server and maps verdicts. Content is never parsed here: the bytes go to a worker, as
in ``serve``.

Not done here: recipient checks at RCPT (Postfix's own ``smtpd_recipient_restrictions`` do
that before we are asked), and changing envelope recipients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from kilter.protocol.buffer import SimpleBuffer
from kilter.protocol.core import FilterProtocol
from kilter.protocol.exceptions import UnexpectedMessage, UnknownMessage
from kilter.protocol.messages import (
    Abort,
    ActionFlags,
    AddHeader,
    Body,
    ChangeHeader,
    Close,
    Connect,
    Continue,
    Data,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    EnvelopeFrom,
    EnvelopeRecipient,
    Header,
    Helo,
    Macro,
    Message,
    Negotiate,
    Progress,
    ProtocolFlags,
    ReplaceBody,
    ReplyCode,
    Unknown,
)

from gateway import logs, replies
from gateway.config import Config
from gateway.delivery import DeliveryResult
from gateway.logs import log_fields, smtp_log
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.replies import Reply
from gateway.server import GatewayServer
from gateway.smtp import new_queue_id, parse_path

DEFAULT_LISTEN = "inet:127.0.0.1:10029"
PROTOCOL_VERSION = 6  # what Postfix >= 2.6 and Sendmail 8.14 speak
ACTIONS = ActionFlags.ADD_HEADERS | ActionFlags.CHANGE_HEADERS | ActionFlags.CHANGE_BODY
# Largest frame we accept: Postfix sends headers up to header_size_limit (100 KiB) and body
# chunks of 64 KiB; anything bigger is not the milter protocol.
MAX_FRAME = 1 << 20
BODY_CHUNK = 65535  # libmilter's MILTER_CHUNK_SIZE: the largest replacement-body message
PROGRESS_INTERVAL = 10.0


class MilterProtocolError(Exception):
    """The peer sent something that is not the milter protocol; the connection is closed."""


def parse_listen(spec: str) -> tuple[str, str, int]:
    """``inet:HOST:PORT`` / ``inet6:[HOST]:PORT`` / ``unix:/path`` (Postfix's milter syntax)."""
    kind, _, rest = spec.partition(":")
    if kind in ("inet", "inet6") and rest:
        host, _, port = rest.rpartition(":")
        if host and port.isdigit() and int(port) < 65536:
            return kind, host.strip("[]"), int(port)
    if kind in ("unix", "local") and rest.startswith("/"):
        return "unix", rest, 0
    raise ValueError(f"{spec!r}: expected inet:HOST:PORT or unix:/PATH")


@dataclass
class CapturedDelivery:
    """The ``Transaction`` the relay delivers to in milter mode: it keeps the message.

    Postfix itself queues and delivers the message once we answer, so "accepted downstream"
    here means "handed back to the MTA that is holding the SMTP session open".
    """

    message: bytes | None = None

    async def add_recipient(self, recipient: Recipient) -> Reply:
        return replies.R250_RECIPIENT_OK

    async def send(self, message: bytes) -> DeliveryResult:
        self.message = message
        return DeliveryResult(replies.R250_DELIVERED.with_text("handed back to the MTA"), "MTA")

    async def abort(self) -> None:
        return None


@dataclass
class _Transaction:
    """What one SMTP transaction told us, event by event."""

    mail_from: str = ""
    mail_options: tuple[str, ...] = ()
    recipients: list[Recipient] = field(default_factory=list)
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    too_big: bool = False


def _text(value: bytes | memoryview | str) -> str:
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "surrogateescape")


def _ascii_frame(frame: bytes) -> bytes:
    """kilter decodes HELO and client names as IDNA (ASCII); an 8-bit HELO would break the
    connection (and tempfail every message of that client), so such bytes become '?'."""
    return bytes(b if b < 0x80 else 0x3F for b in frame)


class MilterSession:
    """One connection from the MTA: possibly several SMTP transactions."""

    def __init__(
        self,
        server: MilterServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.protocol = FilterProtocol()
        self.leading_space = False
        self.client = ClientInfo(address="")
        self.macros: dict[str, str] = {}
        self.transaction = _Transaction()

    # -- framing --------------------------------------------------------------------------

    async def _frame(self) -> bytes | None:
        try:
            head = await self.reader.readexactly(4)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise MilterProtocolError("truncated frame length") from None
            return None
        length = int.from_bytes(head, "big")
        if not 1 <= length <= MAX_FRAME:
            raise MilterProtocolError(f"frame length {length} out of range")
        try:
            payload = await self.reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise MilterProtocolError("connection closed inside a frame") from None
        if payload[:1] in (b"C", b"H"):
            payload = payload[:1] + _ascii_frame(payload[1:])
        return head + payload

    def _messages(self, frame: bytes) -> list[Message]:
        buffer = SimpleBuffer(len(frame))
        buffer[:] = frame
        out: list[Message] = []
        try:
            for message in self.protocol.read_from(buffer):
                message.freeze()  # keep the bytes after kilter releases its buffer views
                out.append(message)
        except (UnknownMessage, UnexpectedMessage, ValueError, UnicodeError) as exc:
            raise MilterProtocolError(f"{type(exc).__name__}: {exc}") from None
        return out

    async def send(self, message: Message) -> None:
        size = len(getattr(message, "content", b"") or b"") + 1024
        if isinstance(message, AddHeader | ChangeHeader):
            size += len(message.value) + len(message.name)
        buffer = SimpleBuffer(size)
        self.protocol.write_to(buffer, message)  # type: ignore[arg-type]
        self.writer.write(buffer[:].tobytes())
        await self.writer.drain()

    # -- the session ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while not self.server.closing:
                frame = await self._frame()
                if frame is None:
                    return
                for message in self._messages(frame):
                    if isinstance(message, Close):
                        return
                    await self.dispatch(message)
        except MilterProtocolError as exc:
            log_fields(smtp_log, 30, "milter protocol error; closing", error=str(exc))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def dispatch(self, message: Message) -> None:
        match message:
            case Negotiate():
                await self._negotiate(message)
            case Macro():
                self.macros.update(message.macros)
            case Connect():
                self._connect(message)
                await self.send(Continue())
            case Helo():
                self.client = _replace(self.client, helo=message.hostname)
                await self.send(Continue())
            case EnvelopeFrom():
                self._mail(message)
                await self.send(Continue())
            case EnvelopeRecipient():
                parsed = parse_path(_text(message.recipient), allow_null=False)
                address = parsed[0] if parsed else _text(message.recipient).strip("<>")
                options = tuple(_text(a) for a in message.arguments)
                self.transaction.recipients.append(Recipient(address, options))
                await self.send(Continue())
            case Data() | EndOfHeaders() | Unknown():
                await self.send(Continue())
            case Header():
                self.transaction.headers.append((message.name, bytes(message.value)))
                await self.send(Continue())
            case Body():
                self._body(bytes(message.content))
                await self.send(Continue())
            case EndOfMessage():
                self._body(bytes(message.content))
                await self._end_of_message()
            case Abort():
                self.transaction = _Transaction()

    async def _negotiate(self, offer: Negotiate) -> None:
        if offer.version < 2 or (offer.action_flags & ACTIONS) != ACTIONS:
            raise MilterProtocolError(
                f"the MTA does not offer header and body changes (version {offer.version})"
            )
        flags = ProtocolFlags.NONE
        if ProtocolFlags.HEADER_LEADING_SPACE in offer.protocol_flags:
            # Header values arrive with their leading space: the message is rebuilt byte
            # for byte, and our replacement values are used as given.
            flags |= ProtocolFlags.HEADER_LEADING_SPACE
            self.leading_space = True
        version = min(offer.version, PROTOCOL_VERSION)
        await self.send(Negotiate(version, ACTIONS, flags))

    def _connect(self, message: Connect) -> None:
        address = message.address
        name = message.hostname
        if name.startswith("[") or name == "unknown":
            name = ""  # no verified reverse name
        self.client = ClientInfo(
            address=str(address) if isinstance(address, IPv4Address | IPv6Address) else "",
            port=message.port,
            name=name,
            proto="ESMTP",
            forwarded=True,  # the MTA's account of its client, like XFORWARD
        )

    def _mail(self, message: EnvelopeFrom) -> None:
        parsed = parse_path(_text(message.sender), allow_null=True)
        sender = parsed[0] if parsed else _text(message.sender).strip("<>")
        options = tuple(_text(a) for a in message.arguments)
        self.transaction = _Transaction(mail_from=sender, mail_options=options)

    def _body(self, chunk: bytes) -> None:
        transaction = self.transaction
        if transaction.too_big:
            return
        transaction.body += chunk
        size = len(transaction.body) + sum(len(v) for _, v in transaction.headers)
        if size > self.server.config.smtp.max_message_size:
            transaction.too_big = True
            transaction.body.clear()

    # -- end of message: the pipeline ------------------------------------------------------

    def _raw(self, transaction: _Transaction) -> bytes:
        lines = []
        for name, value in transaction.headers:
            if not self.leading_space:
                value = b" " + value
            # Postfix hands folded values with bare LF between the lines.
            lines.append(name.encode("ascii") + b":" + value.replace(b"\r\n", b"\n"))
        head = b"\r\n".join(line.replace(b"\n", b"\r\n") for line in lines)
        return head + b"\r\n\r\n" + bytes(transaction.body)

    def _envelope(self, transaction: _Transaction) -> Envelope:
        body = next(
            (
                o.partition("=")[2].upper()
                for o in transaction.mail_options
                if o.upper().startswith("BODY=")
            ),
            "7BIT",
        )
        return Envelope(
            queue_id=new_queue_id(),
            mail_from=transaction.mail_from,
            recipients=tuple(transaction.recipients),
            mail_options=tuple(
                o for o in transaction.mail_options if not o.upper().startswith("SIZE=")
            ),
            client=self.client,
            peer=self.client,
            received_at=time.time(),
            smtputf8=any(o.upper() == "SMTPUTF8" for o in transaction.mail_options),
            body=body,
        )

    async def _end_of_message(self) -> None:
        transaction, self.transaction = self.transaction, _Transaction()
        if transaction.too_big:
            await self._reply(replies.R552_MESSAGE_TOO_BIG)
            return
        handler = self.server.handler
        assert handler is not None
        if handler.closing:
            # As the SMTP server does: what is in flight is finished, nothing new is started.
            # 451, not 421: for a milter 421 also makes the MTA drop its client's session.
            await self._reply(replies.R451_SHUTTING_DOWN)
            return
        raw = self._raw(transaction)
        envelope = self._envelope(transaction)
        captured = CapturedDelivery()
        task = asyncio.ensure_future(handler.relay.handle(envelope, raw, captured))
        handler.in_flight.add(task)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=PROGRESS_INTERVAL)
                if done:
                    break
                await self.send(Progress())
            reply = task.result()
        finally:
            handler.in_flight.discard(task)
        log_fields(
            smtp_log,
            20,
            "milter verdict",
            queue_id=envelope.queue_id,
            mta_queue_id=self.macros.get("i", ""),
            reply=str(reply),
        )
        if reply.is_success and captured.message is not None:
            await self._replace_message(transaction, captured.message)
            await self.send(Continue())
        elif reply.is_success:
            await self.send(Discard())  # held: our quarantine committed it before the 250
        else:
            await self._reply(reply)

    async def _reply(self, reply: Reply) -> None:
        text = "".join(c if " " <= c <= "~" else "?" for c in reply.text).replace("%", "%%")
        await self.send(ReplyCode(f"{reply.code} {reply.enhanced} {text}".encode() + b"\0"))

    async def _replace_message(self, original: _Transaction, message: bytes) -> None:
        """Delete every original header, add the sanitized ones in order, replace the body.

        Deleting from the last occurrence of each name backwards keeps the 1-based
        occurrence indexes of the ones still to delete valid whatever the MTA does with
        deleted fields.
        """
        seen: dict[str, int] = {}
        deletions = []
        for name, _ in original.headers:
            seen[name.lower()] = seen.get(name.lower(), 0) + 1
            deletions.append(ChangeHeader(seen[name.lower()], name, b""))
        for deletion in reversed(deletions):
            await self.send(deletion)
        head, _, body = message.partition(b"\r\n\r\n")
        for name, value in _fields(head):
            if self.leading_space and not value.startswith((b" ", b"\t")):
                value = b" " + value
            elif not self.leading_space:
                value = value.lstrip(b" \t")
            await self.send(AddHeader(name, value.replace(b"\r\n", b"\n")))
        for start in range(0, max(len(body), 1), BODY_CHUNK):
            await self.send(ReplaceBody(body[start : start + BODY_CHUNK]))


def _fields(head: bytes) -> list[tuple[str, bytes]]:
    """(name, value) of each header field; the value keeps its folds and leading space."""
    out: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            name, value = out[-1]
            out[-1] = (name, value + b"\r\n" + line)
            continue
        raw_name, colon, value = line.partition(b":")
        if colon:
            out.append((raw_name.decode("ascii", "replace").strip(), value))
    return out


def _replace(client: ClientInfo, **changes: Any) -> ClientInfo:
    from dataclasses import replace

    return replace(client, **changes)


class MilterServer(GatewayServer):
    """``mugaika serve`` with the milter listener in place of the SMTP listener.

    Everything else is the gateway's: worker pool, policies, quarantine store, metrics
    endpoint, admin UI, SIGHUP reload and SIGTERM drain (messages at end-of-data finish).
    """

    def __init__(self, config: Config, listen: str, **options: Any) -> None:
        super().__init__(config, **options)
        self.listen = listen
        self.sessions: set[asyncio.Task[None]] = set()

    @property
    def closing(self) -> bool:
        return self.handler is None or self.handler.closing

    async def start(self) -> None:
        # The gateway's own start-up, then swap the SMTP listener for ours: the SMTP
        # listener must not stay open, so it is closed before the milter port opens.
        await super().start()
        assert self.smtp_server is not None
        self.smtp_server.close()
        await self.smtp_server.wait_closed()
        kind, host, port = parse_listen(self.listen)
        if kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(host)
            self.smtp_server = await asyncio.start_unix_server(self._session, host)
            address = f"unix:{host}"
        else:
            self.smtp_server = await asyncio.start_server(self._session, host, port)
            sockname = self.smtp_server.sockets[0].getsockname()
            self.bound = (sockname[0], sockname[1])
            address = f"inet:{sockname[0]}:{sockname[1]}"
        log_fields(smtp_log, 20, "milter listening", address=address)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            await MilterSession(self, reader, writer).run()
        finally:
            self.sessions.discard(task)

    async def shutdown(self, grace: float = 60.0) -> None:
        await super().shutdown(grace)
        for task in list(self.sessions):
            task.cancel()


def _milter(args: argparse.Namespace) -> int:
    from gateway.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, given
    from gateway.config import load_config

    try:
        parse_listen(args.listen)
    except ValueError as exc:
        print(f"mugaika milter: --listen {exc}", file=sys.stderr)
        return EXIT_USAGE
    overrides = given(
        data_dir=args.data_dir,
        downstream=args.downstream,
        # The SMTP listener is opened and closed by the gateway's start-up: any free port.
        listen="127.0.0.1:0",
        **{"admin.listen": args.admin_listen, "metrics.listen": args.metrics_listen},
    )
    config = load_config(args.config, overrides=overrides)
    logs.configure(config.logging.level, config.logging.json_lines)

    async def run() -> None:
        server = MilterServer(config, args.listen, config_path=args.config, overrides=overrides)
        server.install_signal_handlers()
        await server.start()
        await server.wait_stopped()

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"mugaika milter: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    milter = sub.add_parser(
        "milter",
        parents=[common],
        help="run the gateway as a milter (Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER)",
        description="The same pipeline as serve, answering the MTA during the SMTP session.",
    )
    milter.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="SOCKET",
        help=f"inet:HOST:PORT or unix:/PATH ({DEFAULT_LISTEN})",
    )
    milter.add_argument(
        "--downstream", metavar="HOST:PORT", help="where quarantine releases are sent"
    )
    milter.add_argument("--admin-listen", metavar="HOST:PORT", help="admin UI (off disables)")
    milter.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="/metrics, /healthz (off disables)"
    )
    milter.set_defaults(func=_milter)


__all__ = ["CapturedDelivery", "MilterServer", "add_commands", "parse_listen"]
