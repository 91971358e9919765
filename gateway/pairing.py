"""The partner's own password mail (PPAP, issue 17): the main process's half.

When a message is held only for a password-protected ZIP and its recipients' policy pairs
password mails (``password_mail.pair``), the store remembers its envelope sender, recipients
and arrival (``HoldRequest.awaits_password``, table ``password_waits``). For every later
message that its own pipeline delivers (a mail the rules hold or reject, e.g. a spoofed
sender, never opens anything), ``PasswordMails.try_pair`` runs before it is sent:

1. the held items waiting for a mail from exactly this envelope sender to exactly these
   recipients, held within ``password_mail.window`` seconds (newest first);
2. for each, a worker (never this event loop) reads the new mail's password lines and opens
   the held message's archives with them, then runs the unlocked message through the whole
   pipeline (``Pipeline._unlock``, ``gateway.ppap``);
3. members the policy delivers: the item is claimed like an admin release (exactly once,
   ``SqlStore.claim``), the sanitized copy is sent to the recipients (signed like any
   delivery; its notice quotes the held item's reference, which keeps the original as
   received), and the item becomes ``released``;
   members the policy holds: the item stays held and stops waiting; no password opens it:
   it counts a wrong try, and after ``password_mail.max_wrong`` it stops waiting (locked);
4. the caller delivers the password mail itself, with its password masked when the archive
   was opened (``Job.mask_passwords``: that copy keeps no original, since the original holds
   the password).

Every step is in the audit log (actor ``system:password-mail``) and in metrics
(``mugaika_password_unlocks_total{result}``, ``mugaika_password_unlock_delivery_seconds``).
No password leaves the worker: what comes back is a report (codes, counts, file names) and
the sanitized message. A failure here never costs the password mail its delivery: it is then
handled as if nothing had been paired.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import TYPE_CHECKING

from gateway.delivery import Downstream, deliver
from gateway.errors import DownstreamRefused, DownstreamUnavailable, MugaikaError
from gateway.logs import log_fields, verdict_log
from gateway.message import Envelope
from gateway.metrics import Metrics
from gateway.pipeline import Job, Outcome
from gateway.report import Verdict
from rules.engine import PasswordMail, PolicySet

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.signer import Signer
    from gateway.workers import WorkerPool

ACTOR_NAME = "system:password-mail"
# What ``PasswordMails.open_item`` did.
DELIVERED, HELD, WRONG, LOCKED, NO_PASSWORD, FAILED = (
    "delivered",
    "held",
    "wrong-password",
    "locked",
    "no-password",
    "failed",
)
HELD_FOR_ENCRYPTED_ARCHIVE = "attachment policy: encrypted_archive is quarantined"


def password_settings(
    policies: PolicySet | None, config: Config, envelope: Envelope
) -> PasswordMail | None:
    """The recipients' ``password_mail`` settings (the strictest when policies differ)."""
    if policies is None:
        return None
    domains = [r.domain for r in envelope.recipients]
    return policies.for_recipients(domains, config.tenants).settings.password_mail


def awaits_password(settings: PasswordMail | None, outcome: Outcome) -> bool:
    """A held message waits for a password mail when pairing is on and the only reason it is
    held is an encrypted archive: anything else still needs a person."""
    report = outcome.report
    if settings is None or not settings.pair or report.verdict != Verdict.QUARANTINE:
        return False
    if not any(f.code == "ARCHIVE_ENCRYPTED" for f in report.findings):
        return False
    return bool(report.reasons) and all(r == HELD_FOR_ENCRYPTED_ARCHIVE for r in report.reasons)


class PasswordMails:
    """See module docstring. Store, downstream and signer are the relay's."""

    def __init__(
        self,
        config: Config,
        pool: WorkerPool,
        store: object,
        metrics: Metrics,
        downstream: Downstream | None,
        signer: Signer | None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.store = store
        self.metrics = metrics
        self.downstream = downstream
        self.signer = signer

    async def try_pair(
        self,
        envelope: Envelope,
        raw: bytes,
        settings: PasswordMail | None,
    ) -> bool:
        """Pair ``raw`` with a waiting held archive; True when one was opened with it (its
        members delivered or held), so the caller masks the password in ``raw``."""
        store = self.store
        if settings is None or not settings.pair or self.downstream is None:
            return False
        if store is None or not hasattr(store, "awaiting_password"):
            return False
        arrived = time.monotonic()
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=settings.window)
        try:
            waiting = await asyncio.to_thread(
                store.awaiting_password, envelope.mail_from, envelope.rcpt_tos, since
            )
            for item_id in waiting:
                result = await self.open_item(
                    envelope, raw, item_id, settings.max_wrong, arrived, password_mail=True
                )
                if result == NO_PASSWORD:
                    return False  # no password line: not a password mail
                if result in (DELIVERED, HELD):
                    return True
        except Exception as exc:
            # The password mail itself must still be delivered: pairing just did not happen.
            verdict_log.exception("password mail pairing failed queue_id=%s", envelope.queue_id)
            self.metrics.password_unlocks.labels("failed").inc()
            log_fields(verdict_log, 40, "pairing failed", error=type(exc).__name__)
        return False

    async def open_item(
        self,
        envelope: Envelope,
        raw: bytes,
        item_id: str,
        max_wrong: int,
        arrived: float,
        *,
        password_mail: bool,
    ) -> str:
        """Open held ``item_id`` with the password lines of ``raw`` and deliver what the
        policy passes: ``DELIVERED``, ``HELD`` (opened, content held), ``WRONG``, ``LOCKED``,
        ``NO_PASSWORD`` or ``FAILED``. ``envelope`` is the one the held message arrived with
        (the policy and authentication read it); ``password_mail``: the partner's own mail
        (else a recipient's request mail, ``gateway.requests``), for the audit log."""
        store = self.store
        item = await asyncio.to_thread(store.get, item_id)  # type: ignore[attr-defined]
        original = await asyncio.to_thread(store.original, item_id)  # type: ignore[attr-defined]
        tenant = item.summary.tenant
        try:
            # The unlocked copy's notice names the held item: it keeps the original as received.
            outcome = await self.pool.run(Job(envelope, raw, item_id, paired_original=original))
        except MugaikaError as exc:
            self.metrics.password_unlocks.labels("failed").inc()
            await self._audit("password-unlock-failed", item_id, tenant, error=exc.code)
            return FAILED
        codes = {f.code for f in outcome.report.findings}
        if "PASSWORD_NOT_FOUND" in codes:
            return NO_PASSWORD
        detail = {"by": "password-mail" if password_mail else "request-mail"}
        if "ARCHIVE_UNLOCKED" not in codes:
            wrong = await asyncio.to_thread(
                store.password_wrong,  # type: ignore[attr-defined]
                item_id,
                max_wrong,
            )
            locked = wrong >= max_wrong
            self.metrics.password_unlocks.labels("locked" if locked else "wrong-password").inc()
            await self._audit(
                "password-locked" if locked else "password-wrong",
                item_id,
                tenant,
                wrong=wrong,
                **detail,
            )
            return LOCKED if locked else WRONG
        if outcome.verdict not in (Verdict.DELIVER, Verdict.TAG) or outcome.message is None:
            # Opened, and what is inside is held: the item stays in quarantine.
            await asyncio.to_thread(store.password_settled, item_id, "held")  # type: ignore[attr-defined]
            self.metrics.password_unlocks.labels("held").inc()
            await self._audit(
                "password-unlocked-held",
                item_id,
                tenant,
                reasons=list(outcome.report.reasons),
                findings=sorted(codes),
                **detail,
            )
            return HELD
        delivered = await self._deliver(envelope, item_id, outcome)
        if not delivered:
            return FAILED
        await asyncio.to_thread(store.password_settled, item_id, "unlocked")  # type: ignore[attr-defined]
        self.metrics.password_unlocks.labels("delivered").inc()
        since = "password-mail" if password_mail else "request-mail"
        self.metrics.password_unlock_seconds.labels(since).observe(time.monotonic() - arrived)
        held_at = item.summary.received_at
        if held_at is not None:
            waited = datetime.datetime.now(datetime.UTC) - held_at
            self.metrics.password_unlock_seconds.labels("archive").observe(
                max(waited.total_seconds(), 0.0)
            )
        await self._audit(
            "password-unlocked",
            item_id,
            tenant,
            archives=[a.detail for a in outcome.report.actions if a.kind == "archive-unlocked"],
            members=[a.untrusted_filename for a in outcome.report.attachments],
            **detail,
        )
        return DELIVERED

    async def _deliver(self, envelope: Envelope, item_id: str, outcome: Outcome) -> bool:
        """Claim the item (exactly once, like a release), keep the unlocked original, send the
        sanitized copy; on any failure give the claim back: the item stays held."""
        from quarantine.users import Actor

        store = self.store
        actor = Actor(ACTOR_NAME, "superadmin", remote="local")
        assert outcome.message is not None
        assert self.downstream is not None
        try:
            claim = await asyncio.to_thread(store.claim, item_id, actor)  # type: ignore[attr-defined]
        except Exception:
            return False  # released or claimed meanwhile (an admin, another node)
        try:
            message = outcome.message
            if self.signer is not None:
                message = await self.signer.sign(
                    message, (r.domain for r in envelope.recipients), True, envelope.queue_id
                )
            options = [o for o in envelope.mail_options if o.upper().startswith(("BODY=",))]
            await deliver(
                self.downstream,
                envelope.mail_from,
                envelope.recipients,
                message,
                mail_options=options,
                client=envelope.client,
                smtputf8=envelope.smtputf8,
            )
        except (DownstreamUnavailable, DownstreamRefused, MugaikaError, OSError) as exc:
            await asyncio.to_thread(store.undo_claim, claim, actor, "password mail: send failed")  # type: ignore[attr-defined]
            self.metrics.password_unlocks.labels("failed").inc()
            await self._audit(
                "password-unlock-failed",
                item_id,
                None,
                error=getattr(exc, "code", type(exc).__name__),
            )
            return False
        except BaseException:
            await asyncio.shield(
                asyncio.to_thread(store.undo_claim, claim, actor, "password mail: aborted")  # type: ignore[attr-defined]
            )
            raise
        await asyncio.to_thread(
            store.finish_release,  # type: ignore[attr-defined]
            claim,
            actor,
            "opened with the password the sender mailed; members delivered sanitized",
        )
        return True

    async def _audit(self, action: str, item_id: str, tenant: str | None, **detail: object) -> None:
        from quarantine.users import Actor

        actor = Actor(ACTOR_NAME, "superadmin", remote="local")
        try:
            await asyncio.to_thread(self.store.audit, actor, action, item_id, tenant, **detail)  # type: ignore[attr-defined]
        except Exception:
            verdict_log.warning("could not write audit entry %s for %s", action, item_id)
