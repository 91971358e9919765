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
- Limits with precise replies: sessions (421 4.3.2 at connect), sessions per client address
  (421 4.7.0 at connect), commands per session and commands without a completed message
  (421 4.7.0), recipients (452 4.5.3), idle timeouts (421 4.4.2 before closing), shorter
  outside a mail transaction than inside one. Together they keep idle sessions (a client
  holding every slot with NOOPs, issue 11) from locking other clients out.
- Every reply carries an RFC 3463 enhanced code, including aiosmtpd's own stock replies, and
  never a control character (aiosmtpd echoes some arguments).
- Nothing with a control character (CR, LF, NUL, other C0 and C1 controls, DEL) or a byte
  that is not UTF-8 reaches a header field we write or the downstream: HELO/EHLO names, the
  sender and recipient addresses and every ESMTP parameter (ENVID and ORCPT also after xtext
  decoding) are refused with a 501 or 553 that names the field; an XFORWARD attribute with
  such a value becomes ``[UNAVAILABLE]`` (issue 11).
- Each RCPT is passed to the downstream at once (see ``gateway.delivery``), so the sender
  gets the downstream's own verdict per recipient.

What happens to a received message is ``gateway.relay``'s business, not this module's.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, Session, syntax
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
_XFORWARD_UNAVAILABLE = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
_XTEXT_HEX = re.compile(rb"\+([0-9A-F]{2})")
_ENVID_MAX = 100  # RFC 3461 section 4.4
_NOTIFY_VALUES = {"SUCCESS", "FAILURE", "DELAY"}

# What may never reach a header field we write (Received:, Authentication-Results:) or a
# command we send downstream: C0 controls (CR, LF, NUL, TAB...), DEL, C1 controls (U+0085 NEL
# ends a line for some readers) and the Unicode line and paragraph separators. aiosmtpd ends a
# command line at LF only, so a bare CR arrives inside an argument (issue 11: an EHLO name
# with bare CRs forged MIME header fields, From: and Authentication-Results downstream).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# aiosmtpd decodes arguments as UTF-8 with surrogateescape: a byte that is not UTF-8 arrives
# as a lone surrogate, which no encoder will write (UnicodeEncodeError downstream).
_NOT_UTF8 = re.compile(r"[\ud800-\udfff]")
_TLS_TOKEN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def control_character(untrusted: str) -> str | None:
    """``"contains a control character (U+000D)"`` for the first one in ``untrusted``, or None."""
    found = _CONTROL.search(untrusted)
    if found is None:
        return None
    return f"contains a control character (U+{ord(found.group()):04X})"


def value_problem(untrusted: str) -> str | None:
    """Why ``untrusted`` may not go into a header field or downstream, or None if it may."""
    problem = control_character(untrusted)
    if problem is None and _NOT_UTF8.search(untrusted):
        problem = "is not valid UTF-8"
    return problem


def printable(untrusted: str, limit: int = 40) -> str:
    """``untrusted`` shortened, with controls and undecodable bytes as "?", to quote in a reply."""
    return _NOT_UTF8.sub("?", _CONTROL.sub("?", untrusted[:limit]))


def xtext_decode(value: str) -> bytes:
    """RFC 3461 section 4 xtext to the bytes it stands for (``+0D`` is a CR, ``+E4`` a byte)."""
    raw = value.encode("utf-8", "surrogateescape")
    return _XTEXT_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


# RFC 3461 section 4: xchar is any printable ASCII except "+" and "="; "+XX" is a hexchar.
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+")
# RFC 3461 section 4.2: addr-type is an atom (RFC 5322 atext).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+")


def _is_xtext(value: str) -> bool:
    return _XTEXT.fullmatch(value) is not None


def dsn_xtext_problem(untrusted: str) -> str | None:
    """ENVID and ORCPT: xtext whose decoded value is printable US-ASCII (RFC 3461 sections 4.2,
    4.4), because the downstream writes it into a DSN header field; None when it is."""
    if not _is_xtext(untrusted):
        return "must be xtext (RFC 3461 section 4)"
    decoded = xtext_decode(untrusted)
    problem = control_character(decoded.decode("latin-1"))
    if problem is None and not decoded.isascii():
        problem = "must be printable US-ASCII (RFC 3461 section 4)"
    return problem


def xforward_value(untrusted: str) -> tuple[str, str | None]:
    """An XFORWARD attribute value decoded (xtext, then UTF-8), and why it cannot be used.

    Postfix xtext-encodes each byte, so a UTF-8 HELO name arrives as ``+E4+BE+8B...``: the
    bytes are read as UTF-8. ``[UNAVAILABLE]`` and ``[TEMPUNAVAIL]`` become "".
    """
    problem = control_character(untrusted)
    if problem is not None:
        return "", problem
    value = xtext_decode(untrusted).decode("utf-8", "surrogateescape")
    problem = value_problem(value)
    if problem is not None or value in _XFORWARD_UNAVAILABLE:
        return "", problem
    return value, None


def tls_summary(ssl_info: dict[str, Any]) -> str:
    """``TLSv1.3:TLS_AES_256_GCM_SHA384`` from aiosmtpd's ``session.ssl``, or just ``TLS`` when
    either name is not a plain token (it would be quoted in logs and trace fields)."""
    cipher = ssl_info.get("cipher")
    if isinstance(cipher, tuple) and len(cipher) >= 2:
        name, version = str(cipher[0]), str(cipher[1])
        if _TLS_TOKEN.fullmatch(name) and _TLS_TOKEN.fullmatch(version):
            return f"{version}:{name}"
    return "TLS"


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


def split_path(untrusted_arg: str) -> tuple[str, str]:
    """Split ``<mailbox> params`` into the path (brackets kept) and the rest, judging neither.

    The path ends at the first ``>`` outside a quoted string; an unterminated ``<`` takes the
    whole text. A bare mailbox without brackets ends at the first space.
    """
    text = untrusted_arg.lstrip(" ")
    if not text.startswith("<"):
        path, space, rest = text.partition(" ")
        return path, space + rest
    end, quoted = 1, False
    while end < len(text):
        char = text[end]
        if char == "\\" and quoted:
            end += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return text[: end + 1], text[end + 1 :]
        end += 1
    return text, ""


def parse_path(untrusted_arg: str, allow_null: bool) -> tuple[str, str] | None:
    """Split ``<mailbox> params`` (RFC 5321 Path) into (mailbox, params); None if malformed.

    Strict where aiosmtpd is lenient (it accepts ``<not an address``): a missing ``>``, spaces
    outside quotes or a missing domain are errors. A bare mailbox without brackets is accepted
    as Postfix does by default. ``<>`` yields "" when ``allow_null``; ``<postmaster>`` is
    allowed (RFC 5321 section 4.5.1), the caller decides where.
    """
    path, rest = split_path(untrusted_arg.strip())
    if rest and not rest.startswith(" "):
        return None
    inner = path
    if path.startswith("<"):
        if len(path) < 2 or not path.endswith(">"):
            return None
        inner = path[1:-1]
        route = _SOURCE_ROUTE.match(inner)
        if route:
            inner = inner[route.end() :]
    if inner == "":
        return ("", rest.strip()) if allow_null else None
    if inner.lower() == "postmaster" or _MAILBOX.fullmatch(inner):
        return inner, rest.strip()
    return None


def esmtp_params(untrusted_rest: str) -> list[str]:
    """The parameters after a path: separated by SP only (RFC 5321 section 4.1.2), so a TAB
    or CR stays inside the parameter it was written in and is refused with it."""
    return [param for param in untrusted_rest.split(" ") if param]


def params_problem(command: str, params: list[str]) -> Reply | None:
    """501 naming the first parameter with a control character or a byte that is not UTF-8."""
    for param in params:
        problem = value_problem(param)
        if problem is not None:
            keyword = printable(param.partition("=")[0].upper())
            return replies.R501_SYNTAX_PARAMS.with_text(f"{command} parameter {keyword} {problem}")
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
        # Addressed to requests.address (gateway.requests): consumed, never relayed.
        self.request_mail = False


# Commands that check the parts of their argument themselves, so that the reply names the part
# (sender address, a parameter, an XFORWARD attribute); every other argument is one value.
_CHECKS_OWN_ARGUMENT = frozenset({"MAIL", "RCPT", "XFORWARD"})
# RFC 2034 section 3: the greeting and the replies to HELO/EHLO carry no enhanced code, nor do
# intermediate replies (354, 334).
_NO_ENHANCED_CODE = frozenset({"220", "334", "354"})
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3} ")
# RFC 3463 codes for aiosmtpd's own replies that carry none (syntax, sequence, TLS).
_DEFAULT_ENHANCED = {
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "454": "4.7.0",
}


def _hook_names(cls: type) -> list[str]:
    """The attribute names aiosmtpd looks for by introspection (auth_*, smtp_*, handle_*)."""
    prefixes = ("auth_", "smtp_", "handle_")
    return [name for klass in cls.__mro__ for name in vars(klass) if name.startswith(prefixes)]


def _longest_line_exceeds(data: bytes, limit: int) -> bool:
    """Whether a line of ``data`` (CRLF-terminated, as SMTP counts) is longer than ``limit``
    octets with its CRLF. Jumps from the last CRLF within each ``limit`` octets to the next:
    every line between two such jumps fits, so a 2 MB message takes a few dozen searches."""
    start = 0
    end = len(data)
    while start < end:
        last = data.rfind(b"\r\n", start, start + limit)
        if last == -1:
            return True
        start = last + 2
    return False


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
        self.client_key = ""
        self._commands_left = config.max_commands
        # Commands since the last completed message that did not advance a transaction.
        self._without_progress = 0
        self._data_accepted = False
        self._downstream_answered = False
        self._last_code = 0
        self._command: str | None = None
        # Set from the end of a message's DATA until its reply is written (or the connection
        # is gone): a graceful stop waits for it (GatewayHandler.in_flight).
        self.reply_owed: asyncio.Future[None] | None = None
        self._smtp_methods = {
            name: self._limited(name, method) for name, method in self._smtp_methods.items()
        }

    # -- session admission and limits --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls_reentry = self._original_transport is not None
        if not starttls_reentry:
            peer = transport.get_extra_info("peername")
            address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            refusal = self.gateway_handler.admit(self, address)
            if refusal is not None:
                self._refused = True
                transport.write(f"{refusal}\r\n".encode())  # type: ignore[attr-defined]
                transport.close()
                return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self.gateway_handler.session_closed(self)
        self._abort_transaction()
        self.settle_reply()
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def _timeout_cb(self) -> None:
        if self.transport is None:  # the connection is already gone
            return
        if not self.transport.is_closing():
            reply = replies.R421_IDLE_TIMEOUT
            if not self._in_transaction:
                reply = replies.R421_IDLE_TIMEOUT_BEFORE_MAIL
            self.transport.write(f"{reply}\r\n".encode())  # type: ignore[attr-defined]
        super()._timeout_cb()

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd calls this with no duration at connect and before each command; we call it
        # again after each command, when the transaction state is known.
        if duration is None:
            config = self.gateway_handler.config.smtp
            duration = config.idle_timeout
            if not self._in_transaction:
                duration = min(duration, config.idle_timeout_before_mail)
        super()._reset_timeout(duration)

    @property
    def _in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None

    def extend_timeout(self, seconds: float) -> None:
        """Keep the session open while a message is being processed (not idle)."""
        self._reset_timeout(seconds)

    def _limited(
        self, name: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        async def limited(arg: str | None) -> None:
            self._commands_left -= 1
            if self._commands_left < 0:
                await self._close_with(replies.R421_TOO_MANY_COMMANDS)
                return
            limit = self.gateway_handler.config.smtp.max_commands_without_progress
            if self._without_progress >= limit:
                await self._close_with(replies.R421_NO_PROGRESS)
                return
            self._command = name
            self._data_accepted = self._downstream_answered = False
            problem = None
            if arg is not None and name not in _CHECKS_OWN_ARGUMENT:
                problem = value_problem(arg)
            if problem is None:
                await method(arg)
            else:
                # Not passed to aiosmtpd at all: a refused EHLO leaves the session as it was
                # (RFC 5321 section 4.1.4), and no handler ever sees the value.
                field = f"{name} name" if name in ("HELO", "EHLO") else f"{name} argument"
                await self.push(str(replies.R501_BAD_ARGUMENT.with_text(f"{field} {problem}")))
            self.gateway_handler.count_command(name, self._last_code)
            self._count_progress(name)
            self._reset_timeout()

        # Keep aiosmtpd's @syntax attributes: HELP reads them (without, HELP answered
        # "501 Supported commands:" with an empty list; found by tests/fuzz).
        return functools.update_wrapper(limited, method)

    def _count_progress(self, name: str) -> None:
        """A completed message (DATA answered after its 354) restarts the count; an accepted
        MAIL or RCPT, or a RCPT the downstream itself refused (its verdict on a recipient, not
        idling), does not count; anything else counts as a command without progress."""
        accepted = name in ("MAIL", "RCPT") and 200 <= self._last_code < 300
        if name == "DATA" and self._data_accepted:
            self._without_progress = 0
        elif not accepted and not (name == "RCPT" and self._downstream_answered):
            self._without_progress += 1

    async def _close_with(self, reply: Reply) -> None:
        await self.push(str(reply))
        if self.transport is not None:
            self.transport.close()

    def downstream_answered(self) -> None:
        """The reply to the current RCPT is the downstream's own (see ``_count_progress``)."""
        self._downstream_answered = True

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = self._well_formed(status)
            if status[:3].isdigit() and status[3:4] == " ":
                self._last_code = int(status[:3])
                self._data_accepted |= self._last_code == 354
            await super().push(status)
        else:
            await super().push(status)
        if self.reply_owed is not None and status[:3].isdigit() and status[3:4] == " ":
            self.settle_reply()  # the message's reply is written: it is no longer in flight

    def owe_reply(self) -> asyncio.Future[None]:
        """Mark a message as in flight until its final reply is pushed (see ``push``)."""
        self.settle_reply()
        self.reply_owed = asyncio.get_running_loop().create_future()
        self.gateway_handler.in_flight.add(self.reply_owed)
        return self.reply_owed

    def settle_reply(self) -> None:
        owed, self.reply_owed = self.reply_owed, None
        if owed is not None:
            self.gateway_handler.in_flight.discard(owed)
            if not owed.done():
                owed.set_result(None)

    def _well_formed(self, status: str) -> str:
        """Every reply line as RFC 5321 and RFC 2034 want it: aiosmtpd's stock texts replaced
        by ours, an enhanced code on every final line but the greeting and HELO/EHLO's 2xx,
        and never a control character or an undecodable byte (aiosmtpd echoes arguments)."""
        replacement = AIOSMTPD_REPLACEMENTS.get(status)
        if replacement is not None:
            return str(replacement)
        if status.startswith("503 Error: send"):
            return str(replies.R503_BAD_SEQUENCE.with_text("Send HELO/EHLO first"))
        if status.startswith('500 Error: command "'):
            return str(replies.R500_UNKNOWN_COMMAND)
        status = _NOT_UTF8.sub("?", _CONTROL.sub("?", status))
        code, separator, text = status[:3], status[3:4], status[4:]
        if (
            separator == " "
            and code.isdigit()
            and code not in _NO_ENHANCED_CODE
            and not (self._command in ("HELO", "EHLO") and code[0] == "2")
            and not _ENHANCED.match(text)
        ):
            enhanced = _DEFAULT_ENHANCED.get(code, f"{code[0]}.0.0")
            return f"{code} {enhanced} {text}"
        return status

    # -- transaction state -----------------------------------------------------------------

    def _create_session(self) -> GatewaySession:
        return GatewaySession(self.loop)

    def _create_envelope(self) -> GatewayEnvelope:
        return GatewayEnvelope()

    def _set_post_data_state(self) -> None:
        self._abort_transaction()
        super()._set_post_data_state()

    # -- DATA: read in blocks ------------------------------------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        """aiosmtpd's DATA with its content read in blocks instead of line by line.

        aiosmtpd reads DATA one line at a time and keeps one object per line: most of the
        event loop's time for a 2 MB message, and about 400 MB of memory for a message of
        900,000 short lines (issue 13). The framing is the same (``_read_data``): only
        <CRLF>.<CRLF> ends the data (the SMTP-smuggling fix of aiosmtpd 1.4.5: a bare LF or
        CR around the dot does not), a line is what ends in CRLF, a line over
        ``line_length_limit`` octets with its CRLF gets 500 and a message over
        ``data_size_limit`` octets gets 552, both after the whole message was read (RFC 5321
        section 4.2.5); a leading transparency dot is removed from every line."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, refusal = await self._read_data()
        except asyncio.CancelledError:
            # The connection went away during DATA (aiosmtpd cancels this coroutine on EOF).
            self._writer.close()
            raise
        except asyncio.IncompleteReadError:
            self._writer.close()
            return
        if refusal is not None:
            await self.push(refusal)
            self._set_post_data_state()
            return
        if self._decode_data:
            # Not how the gateway runs (decode_data=False); kept as aiosmtpd has it.
            self.envelope.content = content.decode("utf-8", errors="surrogateescape")
        else:
            self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes, str | None]:
        """The message up to <CRLF>.<CRLF>, dot-unstuffed, or a refusal to send once it ended.

        Reads up to each ".<CRLF>" in the stream (``readuntil``; the reader's buffer keeps
        whatever the client pipelined after the message) and checks whether that dot starts a
        line. Bytes past ``data_size_limit`` are read and dropped."""
        reader = self._reader
        size_limit = self.data_size_limit
        chunks: list[bytes] = []
        size = 0
        tail = b""  # the last two octets read so far: is the next octet at a line start?
        started = False
        while True:
            try:
                chunk = await reader.readuntil(b".\r\n")
                found = True
            except asyncio.LimitOverrunError as exc:
                # No ".<CRLF>" within the reader's limit: take what cannot hold its start.
                chunk = await reader.readexactly(exc.consumed)
                found = False
            if found:
                length = len(chunk)
                before = chunk[length - 5 : length - 3] if length >= 5 else (tail + chunk[:-3])[-2:]
                if before == b"\r\n" or (not started and length == 3):
                    chunk = chunk[:-3]
                    size += len(chunk)
                    if not size_limit or size <= size_limit:
                        chunks.append(chunk)
                    break
            started = True
            size += len(chunk)
            if not size_limit or size <= size_limit:
                chunks.append(chunk)
            else:
                chunks.clear()  # refused anyway: do not hold what the sender pushes on
            tail = chunk[-2:] if len(chunk) >= 2 else (tail + chunk)[-2:]
        if size_limit and size > size_limit:
            return b"", "552 Error: Too much mail data"
        raw = b"".join(chunks)
        chunks.clear()
        if _longest_line_exceeds(raw, self.line_length_limit):
            return b"", "500 Line too long (see RFC5321 4.5.3.1.6)"
        # RFC 5321 section 4.5.2: the first dot of a line that starts with one is removed.
        if raw.startswith(b"."):
            raw = raw[1:]
        return raw.replace(b"\r\n.", b"\r\n"), None

    def _abort_transaction(self) -> None:
        envelope = self.envelope
        if isinstance(envelope, GatewayEnvelope) and envelope.transaction is not None:
            transaction, envelope.transaction = envelope.transaction, None
            self.gateway_handler.spawn(transaction.abort())

    @property
    def xforward_allowed(self) -> bool:
        """Whether this client may send XFORWARD (HELP lists it only then)."""
        return self.gateway_handler.may_xforward(self.peer_address)

    @property
    def peer_address(self) -> str:
        peer = self.session.peer if self.session else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else ""

    # -- commands --------------------------------------------------------------------------

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
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
        path, rest = split_path(address_part)
        problem = control_character(path)
        if problem is not None:
            await self.push(str(replies.R501_BAD_SENDER.with_text(f"Sender address {problem}")))
            return
        params = esmtp_params(rest)
        refused = params_problem("MAIL", params)
        if refused is not None:
            await self.push(str(refused))
            return
        parsed = parse_path(address_part, allow_null=True)
        if parsed is None or parsed[0].lower() == "postmaster":
            await self.push(str(replies.R553_BAD_SENDER))
            return
        address = parsed[0]
        if params and not self.session.extended_smtp:
            await self.push(str(syntax))
            return
        problem_reply, smtputf8 = self._check_mail_params(params)
        if problem_reply is not None:
            await self.push(str(problem_reply))
            return
        if not smtputf8 and not address.isascii():
            await self.push(str(replies.R553_SMTPUTF8_REQUIRED))
            return
        if _NOT_UTF8.search(address):
            # RFC 6531 section 3.3: with SMTPUTF8 the mailbox is UTF-8, and this is not.
            await self.push(
                str(replies.R553_BAD_SENDER.with_text("Sender address is not valid UTF-8"))
            )
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
                if not (value.isascii() and value.isdigit()):
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
                problem = dsn_xtext_problem(value)
                if len(value) > _ENVID_MAX:
                    problem = f"is longer than {_ENVID_MAX} characters (RFC 3461 section 4.4)"
                if problem is not None:
                    return replies.R501_SYNTAX_PARAMS.with_text(
                        f"MAIL parameter ENVID {problem}"
                    ), False
            else:
                return replies.R555_PARAM_NOT_RECOGNIZED.with_text(
                    f"MAIL parameter {printable(keyword)} not recognized"
                ), False
        return None, smtputf8

    @syntax("RCPT TO: <address>", extended=" [SP <rcpt-parameters>]")
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
        path, rest = split_path(address_part)
        problem = control_character(path)
        if problem is not None:
            await self.push(
                str(replies.R501_BAD_RECIPIENT.with_text(f"Recipient address {problem}"))
            )
            return
        params = esmtp_params(rest)
        refused = params_problem("RCPT", params)
        if refused is not None:
            await self.push(str(refused))
            return
        parsed = parse_path(address_part, allow_null=False)
        if parsed is None:
            await self.push(str(replies.R553_BAD_RECIPIENT))
            return
        address = parsed[0]
        if params and not self.session.extended_smtp:
            await self.push(str(syntax))
            return
        problem_reply = self._check_rcpt_params(params)
        if problem_reply is not None:
            await self.push(str(problem_reply))
            return
        if not self.envelope.smtp_utf8 and not address.isascii():
            await self.push(str(replies.R553_SMTPUTF8_REQUIRED))
            return
        if _NOT_UTF8.search(address):
            await self.push(
                str(replies.R553_BAD_RECIPIENT.with_text("Recipient address is not valid UTF-8"))
            )
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
                if not semi or not _ATOM.fullmatch(addr_type):
                    return replies.R501_SYNTAX_PARAMS.with_text("ORCPT must be addr-type;xtext")
                problem = dsn_xtext_problem(original)
                if problem is not None:
                    return replies.R501_SYNTAX_PARAMS.with_text(f"RCPT parameter ORCPT {problem}")
            else:
                return replies.R555_PARAM_NOT_RECOGNIZED.with_text(
                    f"RCPT parameter {printable(keyword)} not recognized"
                )
        return None

    @syntax("XFORWARD attribute=value ...", when="xforward_allowed")
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
        unavailable: list[str] = []
        for item in esmtp_params(arg):
            name, eq, untrusted_value = item.partition("=")
            name = name.upper()
            if not eq or name not in XFORWARD_ATTRIBUTES:
                await self.push(
                    str(
                        replies.R501_BAD_XFORWARD.with_text(
                            f"Bad XFORWARD attribute {printable(name)}"
                        )
                    )
                )
                return
            # A value that cannot be used is "[UNAVAILABLE]", as Postfix itself sends for a
            # value it does not know, rather than a refusal: the mail still flows, and nothing
            # from the value reaches our Received: field or the downstream.
            value, problem = xforward_value(untrusted_value)
            if problem is not None:
                unavailable.append(f"{name} is [UNAVAILABLE]: it {problem}")
            attributes[name] = value
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
        if unavailable:
            log_fields(
                smtp_log,
                30,
                "XFORWARD attribute unusable",
                peer=self.peer_address,
                problems="; ".join(unavailable),
            )
            await self.push(
                str(replies.R250_XFORWARD_OK.with_text("; ".join(["XFORWARD OK", *unavailable])))
            )
            return
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
        self.sessions_by_client: Counter[str] = Counter()
        # One future per message between the end of its DATA and our reply to it being
        # written (GatewaySMTP.owe_reply / settle_reply).
        self.in_flight: set[asyncio.Future[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()
        self.closing = False

    # -- admission ---------------------------------------------------------------------------

    def admit(self, session: GatewaySMTP, peer_address: str) -> Reply | None:
        """None when ``session`` may start, else the 421 to send before closing it."""
        key = client_key(peer_address)
        refusal = None
        if self.closing:
            refusal = replies.R421_SHUTTING_DOWN
        elif len(self.sessions) >= self.config.smtp.max_sessions:
            refusal = replies.R421_TOO_MANY_SESSIONS
        elif self.sessions_by_client[key] >= self.config.smtp.max_sessions_per_client:
            refusal = replies.R421_TOO_MANY_CLIENT_SESSIONS
        if refusal is not None:
            self.metrics.sessions_refused.inc()
            return refusal
        session.client_key = key
        self.sessions.add(session)
        self.sessions_by_client[key] += 1
        self.metrics.sessions.inc()
        self.metrics.sessions_active.set(len(self.sessions))
        return None

    def session_closed(self, session: GatewaySMTP) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.sessions_by_client[session.client_key] -= 1
            if self.sessions_by_client[session.client_key] <= 0:
                del self.sessions_by_client[session.client_key]
        self.metrics.sessions_active.set(len(self.sessions))

    def may_xforward(self, address: str) -> bool:
        return in_networks(address, self.config.smtp.xforward_hosts)

    def may_relay_to(self, peer_address: str, recipient: str) -> bool:
        if in_networks(peer_address, self.config.smtp.permitted_networks):
            return True
        domain = recipient.rpartition("@")[2].lower().rstrip(".")
        return domain in self.config.smtp.accepted_domains

    def count_command(self, command: str, code: int) -> None:
        if code:
            self.metrics.commands.labels(command, reply_class(code)).inc()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
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
        desk = self.relay.requests
        if desk.is_request_address(recipient.address):
            # Never relayed: only from the internal side, and alone in its transaction (the
            # client sends the other recipients in another one after 452, RFC 5321 3.3).
            if not desk.from_internal(self._client_info(server)):
                return replies.R550_REQUESTS_INTERNAL_ONLY
            if envelope.recipients:
                return replies.R452_TOO_MANY_RECIPIENTS
            envelope.request_mail = True
            envelope.recipients.append(recipient)
            envelope.rcpt_tos.append(recipient.address)
            return replies.R250_RECIPIENT_OK
        if envelope.request_mail:
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
        server.downstream_answered()
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
        transaction, envelope.transaction = envelope.transaction, None
        if self.closing:
            # Stopping: the messages already in flight are finished (GatewayServer.shutdown
            # waits for exactly those); a message whose DATA ends now is not started, so no
            # session is ever closed under a message the downstream may already have.
            if transaction is not None:
                await transaction.abort()
            _reset_xforward(session)
            return str(replies.R421_SHUTTING_DOWN)
        frozen = self._freeze(server, envelope)
        budget = self.config.workers.message_timeout + self.config.delivery.command_timeout + 60
        server.extend_timeout(budget)
        # In flight until aiosmtpd has written the reply we return (GatewaySMTP.push), not
        # just until we return it: a stop that closed the session in between would leave a
        # delivered message unanswered, and the sender would send it again.
        server.owe_reply()
        try:
            raw = envelope.original_content or b""
            if envelope.request_mail:
                reply = await self.relay.requests.handle(frozen, raw)
            else:
                reply = await self.relay.handle(frozen, raw, transaction)
        finally:
            _reset_xforward(session)  # XFORWARD applies to one transaction (XFORWARD_README)
        return str(reply)

    def _client_info(self, server: GatewaySMTP) -> ClientInfo:
        session = server.session
        assert session is not None
        xforward = session.xforward if isinstance(session, GatewaySession) else {}
        if xforward:
            return ClientInfo(
                address=xforward.get("ADDR", ""),
                port=int(xforward["PORT"]) if _is_port(xforward.get("PORT", "")) else 0,
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
        tls = tls_summary(session.ssl) if session.ssl else ""
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


def client_key(address: str) -> str:
    """Whose session this is, for ``max_sessions_per_client``: the IPv4 address, or the /64
    of an IPv6 address (one subscriber's usual allocation, RFC 6177), IPv4-mapped as IPv4."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _is_port(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 5


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


def in_networks(
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
