"""Recipients help themselves by mail (issue 17): original requests and PPAP passwords.

Staff on LGWAN terminals cannot reach a web portal on the internet side, so the gateway reads
mail sent to one address, ``requests.address``, which every notice names with the reference id
(``gateway.notice``, the digest). Such mail is consumed here and never relayed:

- the SMTP handler (``gateway.smtp``) accepts the address only from ``requests.internal_networks``
  (else 550 5.7.1 at RCPT) and only alone in its transaction (else 452 4.5.3, so the client
  sends the other recipients separately), and hands the whole mail to ``RequestDesk.handle``;
- the requester is the envelope sender, and it is believed only when the mail's one From:
  address is the same, in a tenant domain, from an internal network; it must be one of the
  original recipients of the item named by the reference id (Subject, or the first lines).
  Anything else gets the same polite reply that says nothing about any item (``unknown``);
- DKIM (``_dkim_standing``): with ``requests.require_dkim`` a signature that verifies and whose
  ``d=`` is aligned with the From: domain (DMARC relaxed alignment, ``gateway.auth.aligned``)
  is needed too; with or without it, a signature aligned with the From: domain that fails
  makes the mail ``unverified``. Checked before the item is looked up; the reply is the same
  as ``unknown``'s;
- requests per requester address are limited (``requests.max_per_address`` in
  ``requests.window_seconds``): more are consumed with no action and no reply, so a replay
  or a loop ends here;
- a mail whose text holds a password line ("パスワード：…", ``gateway.ppap``) is a password for
  a held encrypted archive: it goes the partner's password mail's way (``gateway.pairing``,
  ``PasswordMails.open_item``): opened in a worker, every member through the whole pipeline,
  what passes delivered sanitized to the original recipients, a wrong one counted and locked
  at ``requests.max_wrong_passwords``. Only items held for nothing but an encrypted archive;
- any other mail is an original request: its first line is the reason, and it enters the
  approval queue (``quarantine.release.request_release``; an approver other than the requester
  decides in the admin UI or with ``mugaika quarantine approve``, and ``decide_request`` mails
  the result here, ``mail_decision``). The release then goes the normal path to the requester.

Every reply goes back through the gateway's own downstream (the internal side) from the null
sender (RFC 3834: ``Auto-Submitted: auto-replied``), so replies never loop. A mail that is
itself auto-submitted, or from the null sender, gets no reply. Each request is in the audit
log (actor ``mail:<address>``) and in ``mugaika_requests_total{kind,result}``. Passwords are
never stored, logged or counted: only the number of candidates leaves the worker.
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.errors
import email.header
import email.policy
import email.utils
import re
import time
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from gateway import auth, ppap, replies
from gateway.charsets import decode_body
from gateway.delivery import Downstream, deliver
from gateway.errors import DownstreamRefused, DownstreamUnavailable
from gateway.logs import log_fields, replace_control_chars, verdict_log
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.metrics import REQUEST_RESULTS
from gateway.mime import MimeLimitExceeded, MimeLimits, parse_message
from gateway.pairing import (
    FAILED,
    HELD,
    HELD_FOR_ENCRYPTED_ARCHIVE,
    LOCKED,
    NO_PASSWORD,
    WRONG,
    PasswordMails,
)
from gateway.replies import Reply
from gateway.smtp import in_networks

if TYPE_CHECKING:
    from gateway.config import Config, RequestsConfig
    from gateway.metrics import Metrics

MAIL_ACTOR_PREFIX = "mail:"
# Request mails are a few lines; anything larger is not read (552 at DATA).
MAX_REQUEST_SIZE = 256 * 1024
# Where the reference id may stand: the Subject, or these first lines of the text.
REFERENCE_LINES = 5
MAX_REASON = 200
_REFERENCE = re.compile(r"(?<![0-9A-Za-z])(\d{8}-[0-9A-HJKMNP-TV-Z]{8})(?![0-9A-Za-z])", re.I)
_LIMITS = MimeLimits(10, 50, 1024 * 1024)

# Reply texts. ``unknown`` names nothing: no reference id, no subject, no status.
REPLIES: dict[str, dict[str, tuple[str, str]]] = {
    "ja": {
        "queued": (
            "【受付】原本の請求 {reference}",
            "参照番号 {reference} の原本の請求を受け付けました（受付番号 {request}）。\n"
            "承認者が判断すると、結果をこの宛先にメールでお知らせします。\n"
            "承認された場合、原本はあなた宛てに届きます。",
        ),
        "pending": (
            "【受付済み】原本の請求 {reference}",
            "参照番号 {reference} の請求はすでに受け付けており、承認待ちです"
            "（受付番号 {request}）。",
        ),
        "no-reason": (
            "【要再送】原本の請求 {reference}",
            "請求の理由が書かれていませんでした。\n"
            "本文の1行目に理由を書いて、もう一度送ってください。",
        ),
        "delivered": (
            "【解凍完了】{reference}",
            "参照番号 {reference} のパスワード付き圧縮ファイルを開き、中のファイルを一つずつ"
            "検査しました。\n安全な形に処理したものを別のメールで宛先の皆様にお届けしました。",
        ),
        "held": (
            "【保留継続】{reference}",
            "参照番号 {reference} のパスワード付き圧縮ファイルは開けましたが、中に保留の対象となる"
            "ファイルが含まれていたため、引き続き保留しています。\n"
            "必要な場合は、本文の1行目に理由を書いて原本の請求を送ってください。",
        ),
        "wrong-password": (
            "【パスワード不一致】{reference}",
            "参照番号 {reference} のパスワード付き圧縮ファイルは、お送りいただいたパスワードでは"
            "開けませんでした。\nあと {left} 回まで試せます。"
            "本文に「パスワード：（パスワード）」と書いて、もう一度送ってください。",
        ),
        "locked": (
            "【受付停止】{reference}",
            "参照番号 {reference} のパスワード付き圧縮ファイルは、パスワードの誤りが続いたため、"
            "メールでは開けなくなりました。\nシステム管理者にお問い合わせください。",
        ),
        "not-held": (
            "【ご依頼について】{reference}",
            "参照番号 {reference} のメールは、現在この依頼の対象ではありません"
            "（すでにお届け済みか、削除されています）。",
        ),
        "needs-person": (
            "【ご依頼について】{reference}",
            "参照番号 {reference} のメールは、パスワード付き圧縮ファイル以外の理由でも保留されて"
            "いるため、メールのパスワードでは開けません。\n"
            "必要な場合は、本文の1行目に理由を書いて原本の請求を送ってください。",
        ),
        "failed": (
            "【一時的な失敗】{reference}",
            "参照番号 {reference} のご依頼を処理できませんでした。しばらくしてから、"
            "もう一度送ってください。",
        ),
        "unknown": (
            "【ご依頼について】",
            "このご依頼にはお応えできませんでした。\n"
            "件名に参照番号が書かれているか、その番号が、あなた宛てに届いたメールのお知らせに"
            "書かれたものかをご確認ください。\nご不明な点はシステム管理者にお問い合わせください。",
        ),
        "approved": (
            "【承認】原本の請求 {reference}",
            "参照番号 {reference} の原本の請求（受付番号 {request}）は承認され、"
            "原本をあなた宛てにお届けしました。",
        ),
        "refused": (
            "【不承認】原本の請求 {reference}",
            "参照番号 {reference} の原本の請求（受付番号 {request}）は承認されませんでした。\n"
            "承認者のコメント: {comment}",
        ),
        "release-failed": (
            "【お届け失敗】原本の請求 {reference}",
            "参照番号 {reference} の原本の請求（受付番号 {request}）は承認されましたが、"
            "お届けに失敗しました。システム管理者にお問い合わせください。",
        ),
    },
    "en": {
        "queued": (
            "Received: request for the original {reference}",
            "Your request for the original of {reference} was received (request {request}).\n"
            "You will get a mail here when an approver decides; if approved, the original is "
            "delivered to you.",
        ),
        "pending": (
            "Already received: request for the original {reference}",
            "A request for {reference} was already received and awaits approval "
            "(request {request}).",
        ),
        "no-reason": (
            "Please resend: request for the original {reference}",
            "No reason was given. Write your reason on the first line and send it again.",
        ),
        "delivered": (
            "Opened: {reference}",
            "The password-protected archive of {reference} was opened and each file inside "
            "checked. What is safe was delivered to the recipients in a separate mail.",
        ),
        "held": (
            "Still held: {reference}",
            "The password-protected archive of {reference} opened, but it holds files the "
            "policy holds, so it stays held. To ask for it, send a request with your reason "
            "on the first line.",
        ),
        "wrong-password": (
            "Wrong password: {reference}",
            "The password you sent did not open the archive of {reference}. {left} more "
            'tries remain. Send "Password: (the password)" in the text again.',
        ),
        "locked": (
            "Locked: {reference}",
            "After repeated wrong passwords the archive of {reference} can no longer be "
            "opened by mail. Please contact your administrator.",
        ),
        "not-held": (
            "About your request: {reference}",
            "The mail {reference} cannot be requested now (it was delivered or deleted).",
        ),
        "needs-person": (
            "About your request: {reference}",
            "The mail {reference} is held for more than a password-protected archive, so a "
            "password by mail cannot open it. To ask for it, send a request with your reason "
            "on the first line.",
        ),
        "failed": (
            "Temporary failure: {reference}",
            "Your request for {reference} could not be processed. Please send it again later.",
        ),
        "unknown": (
            "About your request",
            "We could not act on your request. Check that the subject holds the reference id "
            "from a notice of mail addressed to you. Your administrator can help.",
        ),
        "approved": (
            "Approved: request for the original {reference}",
            "Your request for the original of {reference} (request {request}) was approved; "
            "the original was delivered to you.",
        ),
        "refused": (
            "Refused: request for the original {reference}",
            "Your request for the original of {reference} (request {request}) was refused.\n"
            "The approver's comment: {comment}",
        ),
        "release-failed": (
            "Not delivered: request for the original {reference}",
            "Your request for the original of {reference} (request {request}) was approved, "
            "but the delivery failed. Please contact your administrator.",
        ),
    },
}
FOOTERS = {
    "ja": "このメールはメールゲートウェイ（無害化）が自動で送信しています。",
    "en": "This mail was sent automatically by the mail gateway.",
}


def reply_message(
    settings: RequestsConfig,
    to: str,
    kind: str,
    in_reply_to: str = "",
    **fields: object,
) -> bytes:
    """A short UTF-8 text reply from ``requests.address`` (RFC 3834 auto-reply)."""
    texts = REPLIES[settings.language]
    subject, body = texts[kind]
    values = {k: replace_control_chars(str(v)) for k, v in fields.items()}
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = settings.address or ""
    msg["To"] = to
    msg["Subject"] = subject.format(**values)
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=(settings.address or "").rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-replied"
    if in_reply_to and len(in_reply_to) < 500 and in_reply_to.isascii():
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(f"{body.format(**values)}\n\n{FOOTERS[settings.language]}\n", charset="utf-8")
    return msg.as_bytes()


async def send_reply(downstream: Downstream, to: str, message: bytes) -> None:
    """Deliver a reply to ``to`` (internal side) from the null sender: no bounce, no loop."""
    await deliver(downstream, "", [Recipient(to)], message)


async def mail_decision(
    settings: RequestsConfig | None,
    downstream: Downstream,
    requested_by: str,
    reference: str,
    request_id: int,
    result: str,
    comment: str = "",
) -> bool:
    """Tell a requester by mail how an approver decided (``approved``, ``refused``,
    ``release-failed``); False when the request did not come by mail or the mail failed
    (the decision stands either way: the audit log has it)."""
    if settings is None or not settings.address or not requested_by.startswith(MAIL_ACTOR_PREFIX):
        return False
    to = requested_by[len(MAIL_ACTOR_PREFIX) :]
    message = reply_message(
        settings, to, result, reference=reference, request=request_id, comment=comment[:300]
    )
    try:
        await send_reply(downstream, to, message)
    except (DownstreamUnavailable, DownstreamRefused, OSError) as exc:
        log_fields(verdict_log, 30, "request result mail failed", ref=reference, error=str(exc))
        return False
    return True


class _ParsedRequest:
    """What a request mail says, read from at most ``MAX_REQUEST_SIZE`` bytes."""

    def __init__(self, raw: bytes) -> None:
        head = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.from_addresses = [
            a.lower() for _, a in email.utils.getaddresses(head.get_all("From", [])) if a
        ]
        self.subject = _header_text(head.get("Subject", ""))
        self.message_id = str(head.get("Message-ID", "")).strip()
        self.auto_submitted = str(head.get("Auto-Submitted", "no")).strip().lower() != "no"
        self.texts = _body_texts(raw)
        lines = [line.strip() for text in self.texts for line in text.split("\n")]
        self.lines = [line for line in lines if line]
        self.reference = _find_reference([self.subject, *self.lines[:REFERENCE_LINES]])
        self.passwords = ppap.password_candidates(self.texts)

    def reason(self) -> str:
        """The first line of the text that is not only the reference id."""
        for line in self.lines:
            if _REFERENCE.fullmatch(line.strip("<>[]()【】 ")):
                continue
            return replace_control_chars(line)[:MAX_REASON]
        return ""


def _header_text(value: object) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return str(value)


def _find_reference(texts: list[str]) -> str | None:
    for text in texts:
        found = _REFERENCE.search(text)
        if found:
            return found.group(1).upper()
    return None


def _body_texts(raw: bytes) -> list[str]:
    try:
        parsed = parse_message(raw, _LIMITS)
    except MimeLimitExceeded:
        return []
    texts = []
    for part in parsed.root.walk():
        if part.is_multipart or part.is_attachment or part.declared_type != "text/plain":
            continue
        text = decode_body(part.payload, part.declared_charset).text
        texts.append(text.replace("\r\n", "\n").replace("\r", "\n"))
    return texts


def _item_envelope(item: Any) -> Envelope:
    """The envelope the held message arrived with (the policy and authentication read it)."""
    client = item.client or {}
    port = str(client.get("port", "0"))
    return Envelope(
        queue_id=item.queue_id,
        mail_from=item.summary.envelope_from,
        recipients=tuple(
            Recipient(r["address"], tuple(r.get("options", ()))) for r in item.recipient_options
        ),
        mail_options=tuple(item.mail_options),
        client=ClientInfo(
            address=str(client.get("address", "")),
            port=int(port) if port.isdigit() else 0,
            helo=str(client.get("helo", "")),
            name=str(client.get("name", "")),
            proto=str(client.get("proto", "")),
            forwarded=str(client.get("forwarded", "")) == "True",
        ),
        received_at=item.summary.received_at.timestamp(),
        smtputf8=any(o.upper() == "SMTPUTF8" for o in item.mail_options),
    )


class RequestDesk:
    """See module docstring. Store, downstream and password mails are the relay's."""

    def __init__(
        self,
        config: Config,
        store: object,
        metrics: Metrics,
        downstream: Downstream | None,
        password_mails: PasswordMails,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.downstream = downstream
        self.password_mails = password_mails
        self._recent: dict[str, collections.deque[float]] = {}
        self._resolver: auth.DnsResolver | None = None
        self._resolver_config: Config | None = None

    @property
    def settings(self) -> RequestsConfig:
        return self.config.requests

    def is_request_address(self, address: str) -> bool:
        configured = self.settings.address
        return bool(configured) and address.strip().lower() == configured

    def from_internal(self, client: ClientInfo) -> bool:
        return in_networks(client.address, self.settings.internal_networks)

    def _rate_limited(self, requester: str) -> bool:
        now = time.monotonic()
        recent = self._recent.setdefault(requester, collections.deque())
        while recent and now - recent[0] > self.settings.window_seconds:
            recent.popleft()
        if len(self._recent) > 10_000:  # forget idle addresses; the limit is per window
            for address in [a for a, d in self._recent.items() if not d and a != requester]:
                del self._recent[address]
        if len(recent) >= self.settings.max_per_address:
            return True
        recent.append(now)
        return False

    async def handle(self, envelope: Envelope, raw: bytes) -> Reply:
        """Consume one request mail: act, reply, account. 250 once the reply is accepted
        downstream (or none is due); 451 when it could not be sent, so the client retries."""
        if len(raw) > MAX_REQUEST_SIZE:
            return replies.R552_MESSAGE_TOO_BIG.with_text("Request mails are limited to 256 KiB")
        if self.store is None or self.downstream is None or not self.from_internal(envelope.client):
            return replies.R451_INTERNAL  # not expected: RCPT refuses the address then
        requester = envelope.mail_from.strip().lower()
        parsed = await asyncio.to_thread(_ParsedRequest, raw)
        kind = "password" if parsed.passwords else ("original" if parsed.reference else "none")
        if requester and self._rate_limited(requester):
            await self._account(kind, "rate-limited", requester, parsed.reference, {})
            return replies.R250_OK.with_text("Request received")
        try:
            result, fields = await self._act(envelope, raw, requester, parsed, kind)
        except Exception as exc:  # a bug here must not leave the client without a reply
            verdict_log.exception("request mail failed queue_id=%s", envelope.queue_id)
            result, fields = (
                FAILED,
                {"reference": parsed.reference or "", "error": type(exc).__name__},
            )
        await self._account(kind, result, requester, parsed.reference, fields)
        if not requester or parsed.auto_submitted:
            return replies.R250_OK.with_text("Request received")
        if not self._may_reply_to(requester):
            return replies.R250_OK.with_text("Request received")
        reply_kind = result if result in REPLIES["ja"] else "unknown"
        message = reply_message(
            self.settings,
            requester,
            reply_kind,
            parsed.message_id,
            reference=fields.get("reference", ""),
            request=fields.get("request", ""),
            left=fields.get("left", ""),
        )
        try:
            await send_reply(self.downstream, requester, message)
        except (DownstreamUnavailable, DownstreamRefused) as exc:
            log_fields(verdict_log, 30, "request reply failed", error=str(exc))
            return replies.R451_DOWNSTREAM_UNAVAILABLE
        return replies.R250_OK.with_text("Request received")

    def _may_reply_to(self, address: str) -> bool:
        """Replies go to tenant addresses only: never a relay to the internet."""
        return address.rpartition("@")[2] in self.config.tenants

    def _verified(self, envelope: Envelope, requester: str, parsed: _ParsedRequest) -> bool:
        """Internal mail: envelope sender == the one From:, a tenant domain, internal client."""
        return (
            bool(requester)
            and parsed.from_addresses == [requester]
            and requester.rpartition("@")[2] in self.config.tenants
            and self.from_internal(envelope.client)
        )

    def _dkim_resolver(self) -> auth.DnsResolver:
        """One resolver (and cache) per configuration: a reload may change the name servers."""
        if self._resolver is None or self._resolver_config is not self.config:
            self._resolver = auth.make_resolver(self.config)
            self._resolver_config = self.config
        return self._resolver

    async def _dkim_standing(self, raw: bytes, from_domain: str) -> str:
        """What the DKIM signatures say about the From: domain: ``pass`` (one verified with
        ``d=`` aligned), else ``fail``, ``temperror``, ``permerror`` (the strongest result of
        the aligned ones), ``unaligned`` (signed by other domains only) or ``none``."""
        results = await asyncio.to_thread(
            auth.check_dkim, raw, self._dkim_resolver(), auth.auth_settings(self.config)
        )
        claimed = {
            r.result
            for r in results
            if auth.aligned(auth.normalise_domain(r.prop("header.d")), from_domain, "r")
        }
        for result in ("pass", "fail", "temperror", "permerror"):
            if result in claimed:
                return result
        return "unaligned" if results else "none"

    async def _authenticated(
        self, raw: bytes, requester: str, reference: str
    ) -> tuple[str, dict[str, Any]] | None:
        """None when DKIM lets the request through; else the result and fields to answer."""
        standing = await self._dkim_standing(
            raw, auth.normalise_domain(requester.rpartition("@")[2])
        )
        if standing == "pass":
            return None
        if standing == "fail":
            # Refused even without require_dkim. A signature of the sender's own domain that
            # does not verify says the mail is not what that domain's server signed: edited
            # after signing (a replayed request with another reference id or password) or
            # forged. Believing it while the mail carries evidence against itself would not be
            # failing closed. It is a tripwire, not a barrier (whoever strips the signature
            # gets the unsigned treatment; require_dkim closes that), and it costs little: an
            # internal relay that breaks signatures shows up as `unverified` in the audit log
            # and metrics, and must be fixed before require_dkim can be turned on anyway.
            # Only ``fail`` counts: ``permerror``/``temperror`` (no key in the DNS the gateway
            # asks, a malformed tag) say nothing about the mail itself.
            return "unverified", {"dkim": standing}
        if not self.settings.require_dkim:
            return None
        if standing == "temperror":  # the key could not be fetched: say "try again later"
            return FAILED, {"reference": reference, "error": "dkim-temperror"}
        return "unverified", {"dkim": standing}

    async def _act(
        self, envelope: Envelope, raw: bytes, requester: str, parsed: _ParsedRequest, kind: str
    ) -> tuple[str, dict[str, Any]]:
        from quarantine.errors import ItemNotFound

        store: Any = self.store
        reference = parsed.reference
        if reference is None or not self._verified(envelope, requester, parsed):
            return "unknown", {}
        refused = await self._authenticated(raw, requester, reference)
        if refused is not None:
            return refused
        try:
            item = await asyncio.to_thread(store.get, reference)
        except ItemNotFound:
            return "unknown", {}
        if requester not in {r.lower() for r in item.summary.recipients}:
            # Said exactly as for an id that does not exist: nothing about the item leaks.
            return "unknown", {"item": item.id}
        fields: dict[str, Any] = {"reference": item.id, "item": item.id}
        if item.summary.status != "held":
            return "not-held", fields
        if kind == "password":
            return await self._password(item, raw, fields)
        return await self._original(item, requester, envelope, parsed, fields)

    async def _original(
        self,
        item: Any,
        requester: str,
        envelope: Envelope,
        parsed: _ParsedRequest,
        fields: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        from quarantine.errors import ReleaseRefused
        from quarantine.release import request_release

        reason = parsed.reason()
        if not reason:
            return "no-reason", fields
        actor = self._actor(requester, envelope)
        try:
            request = await asyncio.to_thread(
                request_release,
                self.store,  # type: ignore[arg-type]
                item.id,
                actor,
                f"by mail: {reason}",
                [requester],
                "original",
            )
        except ReleaseRefused as exc:
            if exc.key == "request_pending":
                return "pending", {**fields, "request": exc.values.get("request", "")}
            return "not-held", fields
        return "queued", {**fields, "request": request}

    async def _password(
        self, item: Any, raw: bytes, fields: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        if (
            item.summary.kind != "quarantined"
            or not item.summary.reasons
            or any(r != HELD_FOR_ENCRYPTED_ARCHIVE for r in item.summary.reasons)
        ):
            # Held for more than a password-protected archive: a person decides.
            return "needs-person", fields
        store: Any = self.store
        limit = self.settings.max_wrong_passwords
        wait = await asyncio.to_thread(store.ensure_password_wait, item.id)
        if wait["status"] == "locked":
            return LOCKED, fields
        if wait["status"] == "held":
            return HELD, fields  # opened before; what is inside is held
        if wait["status"] not in ("waiting", "requested"):
            return "not-held", fields
        result = await self.password_mails.open_item(
            _item_envelope(item), raw, item.id, limit, time.monotonic(), password_mail=False
        )
        if result == WRONG:
            wrong = (await asyncio.to_thread(store.password_wait, item.id) or {}).get("wrong", 0)
            return WRONG, {**fields, "left": max(limit - int(wrong), 0)}
        if result == NO_PASSWORD:
            return "unknown", fields
        return result, fields

    def _actor(self, requester: str, envelope: Envelope) -> Any:
        from quarantine.users import Actor

        return Actor(
            f"{MAIL_ACTOR_PREFIX}{requester}",
            "requester",
            domains=frozenset({requester.rpartition("@")[2]}),
            remote=envelope.client.address,
        )

    async def _account(
        self,
        kind: str,
        result: str,
        requester: str,
        reference: str | None,
        fields: dict[str, Any],
    ) -> None:
        self.metrics.requests.labels(kind, result if result in REQUEST_RESULTS else FAILED).inc()
        log_fields(
            verdict_log,
            20,
            "request mail",
            kind=kind,
            result=result,
            requester=requester,
            ref=reference or "",
        )
        store: Any = self.store
        if store is None:
            return
        detail = {k: v for k, v in fields.items() if k in ("request", "left", "error", "dkim")}
        try:
            await asyncio.to_thread(
                store.audit,
                self._actor(requester or "unknown", Envelope("", requester, ())),
                f"request-mail-{result}",
                fields.get("item"),
                None,
                kind=kind,
                **detail,
            )
        except Exception:
            verdict_log.warning("could not write audit entry for a request mail")
