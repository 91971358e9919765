"""The inbound SMTP protocol: aiosmtpd, extended for a transparent, closed relay.

What aiosmtpd gives us: RFC 5321 parsing, the SMTP-smuggling fix (only <CRLF>.<CRLF> ends
DATA, 1.4.5+), STARTTLS without command injection (1.4.6), size and line limits.

What this module adds, each as a small override:

- ESMTP parameters passed through with their original case: RET, ENVID (MAIL) and NOTIFY,
  ORCPT (RCPT) from RFC 3461, besides SIZE, BODY and SMTPUTF8. aiosmtpd upper-cases and then
  refuses them (555).
- XFORWARD (Postfix XFORWARD_README) from ``smtp.xforward_hosts`` only.
- Relay control with Postfix's semantics: ``permitted_networks`` may relay anywhere, other
  clients only to ``accepted_domains``; everything else gets 554 5.7.1 at RCPT.
- Limits with precise replies: sessions (421 4.3.2 at connect), commands per session
  (421 4.7.0), recipients (452 4.5.3), idle timeout (421 4.4.2 before closing).
- Every reply carries an RFC 3463 enhanced code, including aiosmtpd's own stock replies.
- Each RCPT is passed to the downstream at once (see ``gateway.delivery``), so the sender
  gets the downstream's own verdict per recipient.

What happens to a received message is ``gateway.relay``'s business, not this module's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as AiosmtpdEnvelope

from gateway import replies
from gateway.config import Config
from gateway.errors import DownstreamRefused, DownstreamUnavailable
from gateway.logs import log_fields, smtp_log
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.metrics import reply_class
from gateway.replies import AIOSMTPD_REPLACEMENTS, Reply

if TYPE_CHECKING:
    from gateway.delivery import Downstream, Transaction
    from gateway.metrics import Metrics
    from gateway.relay import Relay

XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
_ENVID_MAX = 100  # RFC 3461 section 4.4
_NOTIFY_VALUES = {"SUCCESS", "FAILURE", "DELAY"}


def xtext_decode(value: str) -> str:
    return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)


# RFC 3461 section 4: xchar is any printable ASCII except "+" and "="; "+XX" is a hexchar.
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+")


def _is_xtext(value: str) -> bool:
    return _XTEXT.fullmatch(value) is not None


# RFC 5321 section 4.1.2, with RFC 6531 UTF-8 (any non-ASCII character) in atext and labels.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
_LABEL = (
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
)
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX = re.compile(rf"(?:{_DOT_STRING}|{_QUOTED_STRING})@(?:{_DOMAIN}|{_ADDRESS_LITERAL})")
_SOURCE_ROUTE = re.compile(rf"@{_DOMAIN}(?:,@{_DOMAIN})*:")


def parse_path(untrusted_arg: str, allow_null: bool) -> tuple[str, str] | None:
    """Split ``<mailbox> params`` (RFC 5321 Path) into (mailbox, params); None if malformed.

    Strict where aiosmtpd is lenient (it accepts ``<not an address``): a missing ``>``, spaces
    outside quotes or a missing domain are errors. A bare mailbox without brackets is accepted
    as Postfix does by default. ``<>`` yields "" when ``allow_null``; ``<postmaster>`` is
    allowed (RFC 5321 section 4.5.1), the caller decides where.
    """
    text = untrusted_arg.strip()
    if text.startswith("<"):
        end, quoted = 1, False
        while end < len(text):
            char = text[end]
            if char == "\\" and quoted:
                end += 2
                continue
            if char == '"':
                quoted = not quoted
            elif char == ">" and not quoted:
                break
            end += 1
        else:
            return None
        inner, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(" "):
            return None
        route = _SOURCE_ROUTE.match(inner)
        if route:
            inner = inner[route.end() :]
    else:
        inner, _, rest = text.partition(" ")
    if inner == "":
        return ("", rest.strip()) if allow_null else None
    if inner.lower() == "postmaster" or _MAILBOX.fullmatch(inner):
        return inner, rest.strip()
    return None


def new_queue_id() -> str:
    """A short, unique, log-friendly id for one received message (like Postfix's queue ids)."""
    return secrets.token_hex(6).upper()


class GatewaySession(Session):
    """aiosmtpd's session plus the XFORWARD attributes received for the next transaction."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.xforward: dict[str, str] = {}


class GatewayEnvelope(AiosmtpdEnvelope):
    """aiosmtpd's per-transaction state plus ours: parsed recipients and the downstream."""

    def __init__(self) -> None:
        super().__init__()
        self.recipients: list[Recipient] = []
        self.params: list[str] = []
        self.transaction: Transaction | None = None


def _hook_names(cls: type) -> list[str]:
    """The attribute names aiosmtpd looks for by introspection (auth_*, smtp_*, handle_*)."""
    prefixes = ("auth_", "smtp_", "handle_")
    return [name for klass in cls.__mro__ for name in vars(klass) if name.startswith(prefixes)]


class GatewaySMTP(SMTP):
    """One inbound SMTP session."""

    # aiosmtpd's __init__ runs inspect.getmembers() and dir() over the session and the handler
    # to find its hooks: a third of the event loop's time at one message per session. dir()
    # answering only the hook names (computed once per class) keeps that cost negligible.
    _dir_cache: list[str] | None = None

    def __dir__(self) -> list[str]:
        cls = type(self)
        if cls._dir_cache is None:
            cls._dir_cache = sorted(set(_hook_names(cls)))
        return cls._dir_cache

    def __init__(self, handler: GatewayHandler, **kwargs: Any) -> None:
        config = handler.config.smtp
        # +1 for the transparency dot (RFC 5321 section 4.5.2) that aiosmtpd counts.
        self.line_length_limit = config.max_line_length + 1
        super().__init__(handler, **kwargs)
        self.gateway_handler = handler
        self._refused = False
        self._commands_left = config.max_commands
        self._last_code = 0
        self._smtp_methods = {
            name: self._limited(name, method) for name, method in self._smtp_methods.items()
        }

    # -- session admission and limits --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls_reentry = self._original_transport is not None
        if not starttls_reentry and not self.gateway_handler.admit(self):
            self._refused = True
            transport.write(f"{self.gateway_handler.refusal_reply()}\r\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self.gateway_handler.session_closed(self)
        self._abort_transaction()
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"{replies.R421_IDLE_TIMEOUT}\r\n".encode())  # type: ignore[attr-defined]
        super()._timeout_cb()

    def extend_timeout(self, seconds: float) -> None:
        """Keep the session open while a message is being processed (not idle)."""
        self._reset_timeout(seconds)

    def _limited(
        self, name: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        async def limited(arg: str | None) -> None:
            self._commands_left -= 1
            if self._commands_left < 0:
                await self.push(str(replies.R421_TOO_MANY_COMMANDS))
                if self.transport is not None:
                    self.transport.close()
                return
            await method(arg)
            self.gateway_handler.count_command(name, self._last_code)

        return limited

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            replacement = AIOSMTPD_REPLACEMENTS.get(status)
            if replacement is not None:
                status = str(replacement)
            elif status.startswith("503 Error: send"):
                status = str(replies.R503_BAD_SEQUENCE.with_text("Send HELO/EHLO first"))
            if status[:3].isdigit() and status[3:4] == " ":
                self._last_code = int(status[:3])
        await super().push(status)

    # -- transaction state -----------------------------------------------------------------

    def _create_session(self) -> GatewaySession:
        return GatewaySession(self.loop)

    def _create_envelope(self) -> GatewayEnvelope:
        return GatewayEnvelope()

    def _set_post_data_state(self) -> None:
        self._abort_transaction()
        super()._set_post_data_state()

    def _abort_transaction(self) -> None:
        envelope = self.envelope
        if isinstance(envelope, GatewayEnvelope) and envelope.transaction is not None:
            transaction, envelope.transaction = envelope.transaction, None
            self.gateway_handler.spawn(transaction.abort())

    @property
    def peer_address(self) -> str:
        peer = self.session.peer if self.session else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else ""

    # -- commands --------------------------------------------------------------------------

    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802
        if await self.check_helo_needed():
            return
        assert self.session is not None
        assert isinstance(self.envelope, GatewayEnvelope)
        syntax = replies.R501_SYNTAX_PARAMS.with_text("Syntax: MAIL FROM:<address> [parameters]")
        address_part = self._strip_command_keyword("FROM:", arg) if arg else None
        if address_part is None:
            await self.push(str(syntax))
            return
        if self.envelope.mail_from is not None:
            await self.push(str(replies.R503_BAD_SEQUENCE.with_text("Nested MAIL command")))
            return
        parsed = parse_path(address_part, allow_null=True)
        if parsed is None or parsed[0].lower() == "postmaster":
            await self.push("553 5.1.7 Malformed sender address")
            return
        address, params_text = parsed
        params = params_text.split()
        if params and not self.session.extended_smtp:
            await self.push(str(syntax))
            return
        problem, smtputf8 = self._check_mail_params(params)
        if problem is not None:
            await self.push(str(problem))
            return
        if not smtputf8 and not address.isascii():
            await self.push(str(replies.R553_SMTPUTF8_REQUIRED))
            return
        self.envelope.mail_from = address
        self.envelope.smtp_utf8 = smtputf8
        self.envelope.params = [p for p in params if p.partition("=")[0].upper() != "SIZE"]
        self.envelope.mail_options = list(self.envelope.params)
        await self.push(str(replies.R250_SENDER_OK))

    def _check_mail_params(self, params: list[str]) -> tuple[Reply | None, bool]:
        smtputf8 = False
        seen = set()
        for param in params:
            keyword, eq, value = param.partition("=")
            keyword = keyword.upper()
            if keyword in seen or not keyword.isalnum() or (eq and not value):
                return replies.R501_SYNTAX_PARAMS, False
            seen.add(keyword)
            if keyword == "SIZE":
                if not value.isdigit():
                    return replies.R501_SYNTAX_PARAMS.with_text("SIZE needs a number"), False
                if self.data_size_limit and int(value) > self.data_size_limit:
                    return replies.R552_MESSAGE_TOO_BIG, False
            elif keyword == "BODY":
                if value.upper() not in ("7BIT", "8BITMIME"):
                    return replies.R501_SYNTAX_PARAMS.with_text(
                        "BODY must be 7BIT or 8BITMIME"
                    ), False
            elif keyword == "SMTPUTF8":
                if eq:
                    return replies.R501_SYNTAX_PARAMS.with_text("SMTPUTF8 takes no value"), False
                smtputf8 = True
            elif keyword == "RET":
                if value.upper() not in ("FULL", "HDRS"):
                    return replies.R501_SYNTAX_PARAMS.with_text("RET must be FULL or HDRS"), False
            elif keyword == "ENVID":
                if len(value) > _ENVID_MAX or not _is_xtext(value):
                    return replies.R501_SYNTAX_PARAMS.with_text("ENVID must be xtext"), False
            else:
                return replies.R555_PARAM_NOT_RECOGNIZED.with_text(
                    f"MAIL parameter {keyword} not recognized"
                ), False
        return None, smtputf8

    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802
        if await self.check_helo_needed():
            return
        assert self.session is not None
        assert isinstance(self.envelope, GatewayEnvelope)
        if self.envelope.mail_from is None:
            await self.push(str(replies.R503_BAD_SEQUENCE.with_text("Need MAIL command")))
            return
        syntax = replies.R501_SYNTAX_PARAMS.with_text("Syntax: RCPT TO:<address> [parameters]")
        address_part = self._strip_command_keyword("TO:", arg) if arg else None
        if address_part is None:
            await self.push(str(syntax))
            return
        parsed = parse_path(address_part, allow_null=False)
        if parsed is None:
            await self.push("553 5.1.3 Malformed recipient address")
            return
        address, params_text = parsed
        params = params_text.split()
        if params and not self.session.extended_smtp:
            await self.push(str(syntax))
            return
        problem = self._check_rcpt_params(params)
        if problem is not None:
            await self.push(str(problem))
            return
        if not self.envelope.smtp_utf8 and not address.isascii():
            await self.push(str(replies.R553_SMTPUTF8_REQUIRED))
            return
        reply = await self.gateway_handler.add_recipient(self, Recipient(address, tuple(params)))
        await self.push(str(reply))

    def _check_rcpt_params(self, params: list[str]) -> Reply | None:
        seen = set()
        for param in params:
            keyword, eq, value = param.partition("=")
            keyword = keyword.upper()
            if keyword in seen or not eq or not value:
                return replies.R501_SYNTAX_PARAMS
            seen.add(keyword)
            if keyword == "NOTIFY":
                values = {v.upper() for v in value.split(",")}
                if not (values == {"NEVER"} or values <= _NOTIFY_VALUES):
                    return replies.R501_SYNTAX_PARAMS.with_text(
                        "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY"
                    )
            elif keyword == "ORCPT":
                addr_type, semi, original = value.partition(";")
                if not semi or not addr_type or not _is_xtext(original):
                    return replies.R501_SYNTAX_PARAMS.with_text("ORCPT must be addr-type;xtext")
            else:
                return replies.R555_PARAM_NOT_RECOGNIZED.with_text(
                    f"RCPT parameter {keyword} not recognized"
                )
        return None

    async def smtp_XFORWARD(self, arg: str | None) -> None:  # noqa: N802
        if await self.check_helo_needed():
            return
        assert self.session is not None
        assert isinstance(self.envelope, GatewayEnvelope)
        if not self.gateway_handler.may_xforward(self.peer_address):
            await self.push(str(replies.R550_XFORWARD_DENIED))
            return
        if self.envelope.mail_from is not None:
            await self.push(
                str(replies.R503_BAD_SEQUENCE.with_text("XFORWARD inside a transaction"))
            )
            return
        if not arg:
            await self.push(str(replies.R501_BAD_XFORWARD))
            return
        attributes: dict[str, str] = {}
        for item in arg.split():
            name, eq, value = item.partition("=")
            name = name.upper()
            if not eq or name not in XFORWARD_ATTRIBUTES:
                await self.push(
                    str(replies.R501_BAD_XFORWARD.with_text(f"Bad XFORWARD attribute {name}"))
                )
                return
            decoded = xtext_decode(value)
            attributes[name] = "" if decoded in ("[UNAVAILABLE]", "[TEMPUNAVAIL]") else decoded
        if attributes.get("ADDR"):
            candidate = attributes["ADDR"].removeprefix("IPv6:").removeprefix("IPV6:")
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                await self.push(str(replies.R501_BAD_XFORWARD.with_text("Bad XFORWARD ADDR")))
                return
            attributes["ADDR"] = candidate
        assert isinstance(self.session, GatewaySession)
        self.session.xforward.update(attributes)
        await self.push(str(replies.R250_XFORWARD_OK))


class GatewayHandler:
    """aiosmtpd handler hooks: admission, recipients, and handing DATA to the relay."""

    _dir_cache: list[str] | None = None

    def __dir__(self) -> list[str]:  # see GatewaySMTP.__dir__
        cls = type(self)
        if cls._dir_cache is None:
            cls._dir_cache = sorted(set(_hook_names(cls)))
        return cls._dir_cache

    def __init__(
        self,
        config: Config,
        downstream: Downstream,
        relay: Relay,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.downstream = downstream
        self.relay = relay
        self.metrics = metrics
        self.sessions: set[GatewaySMTP] = set()
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()
        self.closing = False

    # -- admission ---------------------------------------------------------------------------

    def admit(self, session: GatewaySMTP) -> bool:
        if self.closing or len(self.sessions) >= self.config.smtp.max_sessions:
            self.metrics.sessions_refused.inc()
            return False
        self.sessions.add(session)
        self.metrics.sessions.inc()
        self.metrics.sessions_active.set(len(self.sessions))
        return True

    def refusal_reply(self) -> Reply:
        return replies.R421_SHUTTING_DOWN if self.closing else replies.R421_TOO_MANY_SESSIONS

    def session_closed(self, session: GatewaySMTP) -> None:
        self.sessions.discard(session)
        self.metrics.sessions_active.set(len(self.sessions))

    def may_xforward(self, address: str) -> bool:
        return _in_networks(address, self.config.smtp.xforward_hosts)

    def may_relay_to(self, peer_address: str, recipient: str) -> bool:
        if _in_networks(peer_address, self.config.smtp.permitted_networks):
            return True
        domain = recipient.rpartition("@")[2].lower().rstrip(".")
        return domain in self.config.smtp.accepted_domains

    def count_command(self, command: str, code: int) -> None:
        if code:
            self.metrics.commands.labels(command, reply_class(code)).inc()

    def spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- aiosmtpd hooks ------------------------------------------------------------------------

    async def handle_EHLO(  # noqa: N802
        self,
        server: GatewaySMTP,
        session: Session,
        envelope: GatewayEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        _reset_xforward(session)
        keep = [r for r in responses[:-1] if not r.startswith("250-AUTH")]
        keep += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-DSN"]
        if self.may_xforward(server.peer_address):
            keep.append("250-XFORWARD " + " ".join(XFORWARD_ATTRIBUTES))
        keep[-1] = "250 " + keep[-1][4:]
        return keep

    async def handle_HELO(  # noqa: N802
        self, server: GatewaySMTP, session: Session, envelope: GatewayEnvelope, hostname: str
    ) -> str:
        session.host_name = hostname
        _reset_xforward(session)
        return f"250 {server.hostname}"

    async def handle_RSET(  # noqa: N802
        self, server: GatewaySMTP, session: Session, envelope: GatewayEnvelope
    ) -> str:
        _reset_xforward(session)
        return str(replies.R250_OK)

    async def handle_NOOP(  # noqa: N802
        self, server: GatewaySMTP, session: Session, envelope: GatewayEnvelope, arg: str
    ) -> str:
        return str(replies.R250_OK)

    async def handle_VRFY(  # noqa: N802
        self, server: GatewaySMTP, session: Session, envelope: GatewayEnvelope, address: str
    ) -> str:
        return "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"

    async def handle_QUIT(  # noqa: N802
        self, server: GatewaySMTP, session: Session, envelope: GatewayEnvelope
    ) -> str:
        return str(replies.R221_BYE)

    async def handle_exception(self, error: Exception) -> str:
        smtp_log.error("session error: %s: %s", type(error).__name__, error, exc_info=error)
        return str(replies.R451_INTERNAL)

    # -- recipients ----------------------------------------------------------------------------

    async def add_recipient(self, server: GatewaySMTP, recipient: Recipient) -> Reply:
        envelope = server.envelope
        assert isinstance(envelope, GatewayEnvelope)
        if self.closing:
            return replies.R421_SHUTTING_DOWN
        if len(envelope.recipients) >= self.config.smtp.max_recipients:
            return replies.R452_TOO_MANY_RECIPIENTS
        if not self.may_relay_to(server.peer_address, recipient.address):
            return replies.R554_RELAY_DENIED.with_text(
                f"<{recipient.address}>: Relay access denied"
            )
        if envelope.transaction is None:
            client = self._client_info(server)
            try:
                envelope.transaction = await self.downstream.begin(
                    envelope.mail_from or "", envelope.params, client, bool(envelope.smtp_utf8)
                )
            except DownstreamUnavailable as exc:
                log_fields(smtp_log, 30, "downstream unavailable at RCPT", error=str(exc))
                self.metrics.downstream_failures.labels("unavailable").inc()
                return replies.R451_DOWNSTREAM_UNAVAILABLE
            except DownstreamRefused as exc:
                return _as_sender_reply(exc.reply)
        try:
            reply = await envelope.transaction.add_recipient(recipient)
        except DownstreamUnavailable as exc:
            log_fields(smtp_log, 30, "downstream lost at RCPT", error=str(exc))
            envelope.transaction = None
            self.metrics.downstream_failures.labels("unavailable").inc()
            return replies.R451_DOWNSTREAM_UNAVAILABLE
        if reply.is_success:
            envelope.recipients.append(recipient)
            envelope.rcpt_tos.append(recipient.address)
            envelope.rcpt_options.extend(recipient.options)
            return reply
        return _as_sender_reply(reply)

    # -- DATA ----------------------------------------------------------------------------------

    async def handle_DATA(  # noqa: N802
        self, server: GatewaySMTP, session: Session, envelope: GatewayEnvelope
    ) -> str:
        frozen = self._freeze(server, envelope)
        transaction, envelope.transaction = envelope.transaction, None
        budget = self.config.workers.message_timeout + self.config.delivery.command_timeout + 60
        server.extend_timeout(budget)
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            reply = await self.relay.handle(frozen, envelope.original_content or b"", transaction)
        finally:
            if task is not None:
                self.in_flight.discard(task)
            _reset_xforward(session)  # XFORWARD applies to one transaction (XFORWARD_README)
            server.extend_timeout(self.config.smtp.idle_timeout)
        return str(reply)

    def _client_info(self, server: GatewaySMTP) -> ClientInfo:
        session = server.session
        assert session is not None
        xforward = session.xforward if isinstance(session, GatewaySession) else {}
        if xforward:
            return ClientInfo(
                address=xforward.get("ADDR", ""),
                port=int(xforward["PORT"]) if xforward.get("PORT", "").isdigit() else 0,
                helo=xforward.get("HELO", ""),
                name=xforward.get("NAME", ""),
                proto=xforward.get("PROTO", ""),
                ident=xforward.get("IDENT", ""),
                forwarded=True,
            )
        return self._peer_info(server)

    def _peer_info(self, server: GatewaySMTP) -> ClientInfo:
        session = server.session
        assert session is not None
        peer = session.peer if isinstance(session.peer, tuple) else ("", 0)
        tls = ""
        if session.ssl:
            cipher = session.ssl.get("cipher")
            tls = f"{cipher[1]}:{cipher[0]}" if cipher else "TLS"
        proto = "ESMTP" if session.extended_smtp else "SMTP"
        if session.extended_smtp and server.envelope is not None and server.envelope.smtp_utf8:
            proto = "UTF8SMTP"
        if tls:
            proto += "S"
        return ClientInfo(
            address=str(peer[0]),
            port=int(peer[1]) if len(peer) > 1 else 0,
            helo=session.host_name or "",
            name="",
            proto=proto,
            tls=tls,
        )

    def _freeze(self, server: GatewaySMTP, envelope: GatewayEnvelope) -> Envelope:
        body = next(
            (p.partition("=")[2].upper() for p in envelope.params if p.upper().startswith("BODY=")),
            "7BIT",
        )
        return Envelope(
            queue_id=new_queue_id(),
            mail_from=envelope.mail_from or "",
            recipients=tuple(envelope.recipients),
            mail_options=tuple(envelope.params),
            client=self._client_info(server),
            peer=self._peer_info(server),
            received_at=time.time(),
            smtputf8=bool(envelope.smtp_utf8),
            body=body,
        )


def _reset_xforward(session: Session) -> None:
    if isinstance(session, GatewaySession):
        session.xforward = {}


def _as_sender_reply(reply: Reply) -> Reply:
    """A downstream refusal as we pass it on: 5xx unchanged, 4xx as 451 (the sender retries)."""
    if reply.is_transient:
        return Reply(
            451, reply.enhanced if reply.enhanced.startswith("4.") else "4.0.0", reply.text
        )
    return reply


def _in_networks(
    address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def make_tls_context(config: Config) -> ssl.SSLContext | None:
    """Server-side TLS for STARTTLS, or None when no certificate is configured."""
    tls = config.smtp.tls
    if tls.cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    return context
