"""Handing messages on: to the downstream SMTP server, or to the embedded Maildir.

Semantics follow Postfix's before-queue proxy (``smtpd_proxy_filter``): the downstream
transaction is opened when the first recipient arrives, each RCPT is passed on at once, and the
sender sees the downstream's own answer for each recipient. So a recipient that the downstream
refuses is refused to the sender at RCPT time with the downstream's code and text, and stays
the sender's responsibility (its MTA retries a 4xx and bounces a 5xx): no recipient is dropped
and no DSN has to be invented here. The message is sent downstream only after sanitizing, and
the sender gets 250 only after the downstream's 250 to DATA.

Passed through unchanged when the downstream offers the extension: DSN parameters (RET,
ENVID, NOTIFY, ORCPT; RFC 3461), SMTPUTF8 (RFC 6531), BODY=8BITMIME (RFC 6152), and the
original client: XFORWARD by default (Postfix logs it as ``orig_client=`` but, by design, its
own ``Received:`` header names the gateway: smtpd.c ``data_cmd`` writes ``state->name``, never
the XFORWARD name), or XCLIENT with ``delivery.forward_client: xclient``, which makes the
downstream treat the session as the original client's (its ``Received:``, log and access
checks name the internet client; Postfix allows one XCLIENT per connection, so such a
connection is never reused). Connections are kept in a small pool and reused with RSET;
every command has a timeout. On every failure path (a refusal, an error, a timeout, a session
cancelled mid-command) a connection is returned to the pool or closed, never left open;
values that cannot be written on a command line (controls, bytes that are not UTF-8) are
refused before a connection is taken (issue 11).

Not done here: queueing and retrying. The gateway has no queue of its own by design (the
sending MTA has one); what cannot be delivered now is answered 4xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import socket
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosmtplib

from gateway import replies, smtpdata
from gateway.errors import DownstreamRefused, DownstreamUnavailable
from gateway.logs import delivery_log, log_fields
from gateway.message import ClientInfo, Recipient
from gateway.replies import Reply, downstream_reply

smtpdata.install()  # aiosmtplib's DATA without two whole-message regexes (gateway/smtpdata.py)

MAIL_PARAMS_PASSED = {"RET": "DSN", "ENVID": "DSN", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8"}
RCPT_PARAMS_PASSED = {"NOTIFY": "DSN", "ORCPT": "DSN"}

# What cannot go into a command line or a header field we write: C0 controls, DEL, and lone
# surrogates (bytes that were not UTF-8, kept by aiosmtpd's surrogateescape decoding). The SMTP
# layer refuses such values already; here they are refused again before a connection is taken,
# so that no caller can make us leak one (issue 11) or write a bare CR downstream.
_UNWRITABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
R553_SENDER_UNWRITABLE = replies.R553_BAD_SENDER.with_text(
    "Sender address cannot be passed on (control character or not UTF-8)"
)
R553_RECIPIENT_UNWRITABLE = replies.R553_BAD_RECIPIENT.with_text(
    "Recipient address cannot be passed on (control character or not UTF-8)"
)
R501_PARAM_UNWRITABLE = replies.R501_SYNTAX_PARAMS.with_text(
    "Parameter cannot be passed on (control character or not UTF-8)"
)


def wire(value: str) -> bytes | None:
    """``value`` as UTF-8 for a command line, or None when it holds what cannot go there."""
    if _UNWRITABLE.search(value):
        return None
    return value.encode("utf-8")


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What the downstream answered to the message: its reply, and its queue id if it gave one."""

    reply: Reply
    queue_id: str = ""


class Transaction(Protocol):
    """One downstream mail transaction, opened by ``Downstream.begin``."""

    async def add_recipient(self, recipient: Recipient) -> Reply: ...

    async def send(self, message: bytes) -> DeliveryResult: ...

    async def abort(self) -> None: ...


class Downstream(Protocol):
    """Where accepted mail goes. ``begin`` raises DownstreamUnavailable or DownstreamRefused."""

    description: str

    async def begin(
        self,
        mail_from: str,
        mail_options: Sequence[str],
        client: ClientInfo | None,
        smtputf8: bool,
    ) -> Transaction: ...

    async def probe(self) -> bool: ...

    async def close(self) -> None: ...


async def deliver(
    downstream: Downstream,
    mail_from: str,
    recipients: Sequence[Recipient],
    message: bytes,
    mail_options: Sequence[str] = (),
    client: ClientInfo | None = None,
    smtputf8: bool = False,
) -> tuple[DeliveryResult, dict[str, Reply]]:
    """Deliver a whole message outside an SMTP session (quarantine release, tools).

    Returns the DATA result and the refused recipients with their replies. Raises
    DownstreamRefused when no recipient was accepted or DATA was refused, and
    DownstreamUnavailable when the server cannot be reached.
    """
    transaction = await downstream.begin(mail_from, mail_options, client, smtputf8)
    refused: dict[str, Reply] = {}
    try:
        for recipient in recipients:
            reply = await transaction.add_recipient(recipient)
            if not reply.is_success:
                refused[recipient.address] = reply
        if len(refused) == len(recipients):
            first = next(iter(refused.values()))
            raise DownstreamRefused(first, "RCPT")
        result = await transaction.send(message)
    except BaseException:
        await transaction.abort()
        raise
    return result, refused


# --- SMTP downstream ----------------------------------------------------------------------


def xtext(value: str) -> str:
    """RFC 3461 section 4 xtext: '+', '=', controls and non-ASCII as +XX."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def _queue_id_from(text: str) -> str:
    # Postfix: "2.0.0 Ok: queued as 4ABCD1234"; others: "OK id=1abc-..."; Maildir: ours.
    for marker in ("queued as ", "id=", "queued as: "):
        if marker in text:
            return text.split(marker, 1)[1].split()[0].strip("<>;,.")
    return ""


class _Connection:
    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.uses = 0
        self.idle_since = time.monotonic()
        # Set after XCLIENT: the session now belongs to another client; never reuse it.
        self.impersonating = False

    def supports(self, extension: str) -> bool:
        return self.client.supports_extension(extension)


class SmtpDownstream:
    """The downstream MTA over SMTP, with a small pool of reusable connections."""

    def __init__(
        self,
        host: str,
        port: int,
        helo_name: str,
        connect_timeout: float = 30.0,
        command_timeout: float = 300.0,
        pool_size: int = 4,
        max_reuse: int = 100,
        starttls: str = "opportunistic",
        idle_limit: float = 60.0,
        forward_client: str = "xforward",
    ) -> None:
        self.host = host
        self.port = port
        self.helo_name = helo_name
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.pool_size = pool_size
        self.max_reuse = max_reuse
        self.starttls = starttls
        self.idle_limit = idle_limit
        self.forward_client = forward_client
        self.description = f"smtp://{host}:{port}"
        self._idle: list[_Connection] = []

    async def _open(self) -> _Connection:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.command_timeout,
            local_hostname=self.helo_name,
            start_tls=False,
            use_tls=False,
        )
        try:
            await client.connect(timeout=self.connect_timeout)
            await client.ehlo()
            if self.starttls != "off" and client.supports_extension("starttls"):
                context = ssl.create_default_context()
                if self.starttls == "opportunistic":
                    # Opportunistic TLS (RFC 7435): encrypt without authenticating the peer,
                    # as Postfix's "may" level does; "required" verifies the certificate.
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                await client.starttls(tls_context=context)
                await client.ehlo()
            elif self.starttls == "required":
                client.close()
                raise DownstreamUnavailable(f"{self.description} does not offer STARTTLS")
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            if 400 <= exc.code < 600:
                raise DownstreamRefused(downstream_reply(exc.code, exc.message), "EHLO") from None
            raise DownstreamUnavailable(f"{self.description}: {exc}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise DownstreamUnavailable(f"{self.description}: {exc}") from None
        except BaseException:
            client.close()  # cancelled (session gone, shutdown) or unforeseen: never leak it
            raise
        return _Connection(client)

    @property
    def pooled(self) -> int:
        """Idle connections kept for reuse: after any failure, the only ones left open."""
        return len(self._idle)

    async def _checkout(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            fresh = time.monotonic() - connection.idle_since < self.idle_limit
            if connection.client.is_connected and fresh:
                return connection, True
            connection.client.close()
        return await self._open(), False

    def _checkin(self, connection: _Connection) -> None:
        connection.uses += 1
        connection.idle_since = time.monotonic()
        if (
            connection.client.is_connected
            and not connection.impersonating
            and connection.uses < self.max_reuse
            and len(self._idle) < self.pool_size
        ):
            self._idle.append(connection)
        else:
            asyncio.get_running_loop().create_task(_quit(connection.client))

    async def begin(
        self,
        mail_from: str,
        mail_options: Sequence[str],
        client: ClientInfo | None,
        smtputf8: bool,
    ) -> SmtpTransaction:
        # Everything is encoded before a connection is taken: a value that cannot be written is
        # refused without touching the pool.
        sender = wire(mail_from)
        if sender is None:
            raise DownstreamRefused(R553_SENDER_UNWRITABLE, "MAIL")
        options = [(option, wire(option)) for option in mail_options]
        if any(encoded is None for _, encoded in options):
            raise DownstreamRefused(R501_PARAM_UNWRITABLE, "MAIL")
        # A pooled connection may have been closed by the server since; retry once on a new one.
        for attempt in (1, 2):
            connection, reused = await self._checkout()
            try:
                return await self._mail(connection, sender, mail_options, client, smtputf8)
            except _StaleConnection as exc:
                if reused and attempt == 1:
                    continue
                raise DownstreamUnavailable(f"{self.description}: {exc}") from None
        raise DownstreamUnavailable(self.description)  # pragma: no cover - loop always returns

    async def _mail(
        self,
        connection: _Connection,
        sender: bytes,
        mail_options: Sequence[str],
        client: ClientInfo | None,
        smtputf8: bool,
    ) -> SmtpTransaction:
        """XFORWARD and MAIL FROM on ``connection``. On every path the connection is handed to
        the returned transaction, returned to the pool, or closed: never left behind."""
        if smtputf8 and not connection.supports("smtputf8"):
            self._checkin(connection)
            raise DownstreamRefused(replies.R554_SMTPUTF8_UNSUPPORTED, "MAIL")
        try:
            impersonated = (
                client is not None
                and self.forward_client == "xclient"
                and connection.supports("xclient")
                and await _send_xclient(connection, client, self.helo_name)
            )
            if client is not None and not impersonated and connection.supports("xforward"):
                await _send_xforward(connection, client)
            params = _pass_params(mail_options, MAIL_PARAMS_PASSED, connection)
            response = await connection.client.execute_command(
                b"MAIL", b"FROM:<" + sender + b">", *params
            )
        except (aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            connection.client.close()
            raise _StaleConnection(str(exc)) from None
        except (aiosmtplib.SMTPException, TimeoutError) as exc:
            connection.client.close()
            raise DownstreamUnavailable(f"{self.description}: {exc}") from None
        except BaseException:
            connection.client.close()  # cancelled mid-command: the protocol state is unknown
            raise
        if response.code != 250:
            await _reset_and_return(self, connection)
            raise DownstreamRefused(downstream_reply(response.code, response.message), "MAIL")
        return SmtpTransaction(self, connection)

    async def probe(self) -> bool:
        try:
            connection, _ = await self._checkout()
        except (DownstreamUnavailable, DownstreamRefused):
            return False
        try:
            response = await connection.client.noop()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            connection.client.close()
            return False
        except BaseException:
            connection.client.close()
            raise
        self._checkin(connection)
        return response.code == 250

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(c.client) for c in idle), return_exceptions=True)


class _StaleConnection(Exception):
    """The server closed the connection (a pooled one may have timed out): try a new one."""


async def _quit(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        await client.quit(timeout=5)
    client.close()


async def _reset_and_return(downstream: SmtpDownstream, connection: _Connection) -> None:
    try:
        response = await connection.client.rset(timeout=10)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        connection.client.close()
        return
    except BaseException:
        connection.client.close()
        raise
    if response.code == 250:
        downstream._checkin(connection)
    else:
        connection.client.close()


def _pass_params(options: Sequence[str], table: dict[str, str], conn: _Connection) -> list[bytes]:
    """The parameters the downstream supports; callers have checked ``wire`` for each."""
    out = []
    for option in options:
        keyword = option.partition("=")[0].upper()
        extension = table.get(keyword)
        encoded = wire(option)
        if extension and encoded is not None and conn.supports(extension.lower()):
            out.append(encoded)
    return out


async def _send_xforward(connection: _Connection, client: ClientInfo) -> None:
    """XFORWARD (Postfix XFORWARD_README): the original client, a few attributes per command."""
    offered = set()
    for line in connection.client.esmtp_extensions.get("xforward", "").split():
        offered.add(line.upper())
    attributes = {
        "NAME": client.name,
        "ADDR": client.address,
        "PORT": str(client.port) if client.port else "",
        "PROTO": client.proto,
        "HELO": client.helo,
        "IDENT": client.ident,
        "SOURCE": "REMOTE",
    }
    # The downstream decodes the xtext and writes the value into its own Received: field, so
    # a value that is not clean UTF-8 text is not sent at all (Postfix's own convention).
    pairs = [
        f"{k}={xtext(v) if v and wire(v) is not None else '[UNAVAILABLE]'}"
        for k, v in attributes.items()
        if not offered or k in offered
    ]
    # As few commands as fit in an SMTP command line (512 octets, RFC 5321 4.5.3.1.4): each
    # is a round trip per message.
    chunks: list[list[str]] = [[]]
    for pair in pairs:
        if chunks[-1] and len(" ".join([*chunks[-1], pair])) > 480:
            chunks.append([])
        chunks[-1].append(pair)
    for chunk in chunks:
        response = await connection.client.execute_command(b"XFORWARD", " ".join(chunk).encode())
        if response.code != 250:
            log_fields(delivery_log, 30, "XFORWARD refused", reply=f"{response.code}")
            return


_EHLO_ARGUMENT = re.compile(r"[\x21-\x7e]{1,255}")


async def _send_xclient(connection: _Connection, client: ClientInfo, helo_name: str) -> bool:
    """XCLIENT (Postfix XCLIENT_README): the downstream session becomes the original client's.

    Postfix answers 220 and forgets the HELO name at the next EHLO, so the EHLO that must
    follow repeats the client's own HELO name (as nginx's mail proxy does). Postfix
    re-evaluates ``smtpd_authorized_xclient_hosts`` for the new client, so a second XCLIENT
    on this connection would be refused: the connection is marked and never pooled again.
    A refusal (5xx) is logged and False returned: the message goes on with XFORWARD.
    """
    offered = {
        word.upper() for word in connection.client.esmtp_extensions.get("xclient", "").split()
    }
    address = client.address
    if address and ":" in address:
        address = f"IPV6:{address}"  # XCLIENT_README: IPv6 addresses carry the prefix
    attributes = {
        "NAME": client.name or "[UNAVAILABLE]",
        "ADDR": address or "[UNAVAILABLE]",
        "PORT": str(client.port) if client.port else "[UNAVAILABLE]",
        "HELO": client.helo or "[UNAVAILABLE]",
    }
    # As for XFORWARD: a value that is not clean UTF-8 text is not sent at all.
    pairs = [
        f"{k}={xtext(v) if wire(v) is not None else '[UNAVAILABLE]'}"
        for k, v in attributes.items()
        if k in offered
    ]
    connection.impersonating = True
    response = await connection.client.execute_command(b"XCLIENT", " ".join(pairs).encode())
    if response.code != 220:
        log_fields(delivery_log, 30, "XCLIENT refused", reply=f"{response.code}")
        connection.impersonating = False
        return False
    helo = client.helo if _EHLO_ARGUMENT.fullmatch(client.helo or "") else helo_name
    await connection.client.ehlo(hostname=helo)
    return True


class SmtpTransaction:
    def __init__(self, downstream: SmtpDownstream, connection: _Connection) -> None:
        self.downstream = downstream
        self.connection = connection
        self.accepted = 0
        self.done = False

    async def add_recipient(self, recipient: Recipient) -> Reply:
        address = wire(recipient.address)
        if address is None:
            return R553_RECIPIENT_UNWRITABLE
        if any(wire(option) is None for option in recipient.options):
            return R501_PARAM_UNWRITABLE
        params = _pass_params(recipient.options, RCPT_PARAMS_PASSED, self.connection)
        try:
            response = await self.connection.client.execute_command(
                b"RCPT", b"TO:<" + address + b">", *params
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self.connection.client.close()
            self.done = True
            raise DownstreamUnavailable(f"{self.downstream.description}: {exc}") from None
        except BaseException:
            self.connection.client.close()  # cancelled mid-command: state unknown
            self.done = True
            raise
        if response.code in (250, 251):
            self.accepted += 1
            return replies.R250_RECIPIENT_OK
        return downstream_reply(response.code, response.message)

    async def send(self, message: bytes) -> DeliveryResult:
        client = self.connection.client
        self.done = True
        try:
            response = await client.data(message)
        except aiosmtplib.SMTPDataError as exc:
            await _reset_and_return(self.downstream, self.connection)
            raise DownstreamRefused(downstream_reply(exc.code, exc.message), "DATA") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Lost mid-DATA: we cannot know whether the server kept it; the sender retries,
            # which may duplicate but never loses (RFC 5321 section 6.1).
            client.close()
            raise DownstreamUnavailable(f"{self.downstream.description}: {exc}") from None
        except BaseException:
            client.close()
            raise
        self.downstream._checkin(self.connection)
        return DeliveryResult(
            replies.R250_DELIVERED.with_text(response.message), _queue_id_from(response.message)
        )

    async def abort(self) -> None:
        if self.done:
            return
        self.done = True
        await _reset_and_return(self.downstream, self.connection)


# --- embedded Maildir ----------------------------------------------------------------------


def _safe_mailbox_name(address: str) -> str:
    name = address.lower().replace("/", "_").replace("\x00", "_").strip(".") or "postmaster"
    return name[:200]


class MaildirDownstream:
    """The embedded default: one Maildir per recipient under ``root`` (``root/<rcpt>/new``).

    Each file is written to ``tmp``, fsynced, renamed into ``new``, and the directory fsynced,
    before the transaction reports success (the Maildir protocol, plus fsync for durability).
    """

    def __init__(self, root: Path, hostname: str) -> None:
        self.root = root
        self.hostname = hostname.replace("/", "_").replace(":", "_")
        self.description = f"maildir:{root}"

    async def begin(
        self,
        mail_from: str,
        mail_options: Sequence[str],
        client: ClientInfo | None,
        smtputf8: bool,
    ) -> MaildirTransaction:
        if wire(mail_from) is None:  # it becomes the Return-Path: field
            raise DownstreamRefused(R553_SENDER_UNWRITABLE, "MAIL")
        return MaildirTransaction(self, mail_from)

    async def probe(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self.root, os.W_OK)

    async def close(self) -> None:
        return None

    def write(self, mail_from: str, recipients: Sequence[str], message: bytes) -> str:
        queue_id = uuid.uuid4().hex[:16].upper()
        unique = f"{time.time():.6f}.M{queue_id}.{self.hostname}"
        for address in recipients:
            box = self.root / _safe_mailbox_name(address)
            for sub in ("tmp", "new", "cur"):
                (box / sub).mkdir(parents=True, exist_ok=True)
            header = f"Return-Path: <{mail_from}>\r\nDelivered-To: {address}\r\n".encode()
            tmp_path = box / "tmp" / unique
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(header + message)
                    handle.flush()
                    os.fsync(handle.fileno())
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp_path.unlink()
                raise
            os.rename(tmp_path, box / "new" / unique)
            dir_fd = os.open(box / "new", os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return queue_id


class MaildirTransaction:
    def __init__(self, downstream: MaildirDownstream, mail_from: str) -> None:
        self.downstream = downstream
        self.mail_from = mail_from
        self.recipients: list[str] = []

    async def add_recipient(self, recipient: Recipient) -> Reply:
        if wire(recipient.address) is None:  # it becomes the Delivered-To: field
            return R553_RECIPIENT_UNWRITABLE
        self.recipients.append(recipient.address)
        return replies.R250_RECIPIENT_OK

    async def send(self, message: bytes) -> DeliveryResult:
        loop = asyncio.get_running_loop()
        try:
            queue_id = await loop.run_in_executor(
                None, self.downstream.write, self.mail_from, self.recipients, message
            )
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DownstreamRefused(
                    Reply(452, "4.3.1", "Insufficient system storage"), "DATA"
                ) from None
            raise DownstreamUnavailable(f"{self.downstream.description}: {exc}") from None
        return DeliveryResult(replies.R250_DELIVERED.with_text(f"queued as {queue_id}"), queue_id)

    async def abort(self) -> None:
        self.recipients.clear()


def make_downstream(
    address: str | None, maildir: Path, helo_name: str, **options: object
) -> Downstream:
    """``host:port`` → SmtpDownstream; None → the embedded Maildir."""
    if address is None:
        return MaildirDownstream(maildir, helo_name)
    from gateway.config import parse_host_port

    host, port = parse_host_port(address)
    return SmtpDownstream(host, port, helo_name, **options)  # type: ignore[arg-type]


__all__ = [
    "DeliveryResult",
    "Downstream",
    "MaildirDownstream",
    "SmtpDownstream",
    "Transaction",
    "deliver",
    "make_downstream",
    "socket",
]
