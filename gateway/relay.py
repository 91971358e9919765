"""What the gateway does with one received message, after DATA and before the reply.

``Relay.handle`` runs the pipeline in a worker, then delivers or holds the result, and returns
the one reply the sender gets. The rule it keeps: **250 only after the downstream server
accepted the message or the store committed it**; every other path is a 4xx (retry) or a
deliberate 5xx (policy reject, or the downstream's own 5xx).

Failure paths, each tested in ``tests/gateway/test_relay_failures.py``:

=================================  ===========================================================
worker crashed / timed out / OOM   ``workers.on_failure``: 451, or hold the original (250)
store cannot commit                451 4.3.0 (nothing was delivered)
downstream unreachable / drops     451 4.4.1 (the retained original is discarded again)
downstream 4xx to DATA             451 with the downstream's text
downstream 5xx to DATA             the same 5xx
=================================  ===========================================================
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import time

from gateway import replies
from gateway.config import Config
from gateway.delivery import Downstream, Transaction
from gateway.errors import (
    DownstreamRefused,
    DownstreamUnavailable,
    MugaikaError,
    StoreUnavailable,
    WorkerCrashed,
    WorkerTimeout,
)
from gateway.logs import log_fields, verdict_log
from gateway.message import Envelope
from gateway.metrics import Metrics, verdict_label
from gateway.pairing import PasswordMails, awaits_password, password_settings
from gateway.pipeline import Job, Outcome
from gateway.replies import Reply
from gateway.report import Report, Verdict
from gateway.requests import RequestDesk
from gateway.signer import Signer
from gateway.workers import WorkerPool
from quarantine.store import HoldRequest, QuarantineStore
from quarantine.summary import Summary
from rules.engine import PasswordMail, PolicySet

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference_id(now: float | None = None) -> str:
    """``20261125-7K3QM9XD``: the date for humans, 40 random bits, no 0/O or 1/I confusion."""
    day = datetime.datetime.fromtimestamp(now or time.time(), tz=datetime.UTC).strftime("%Y%m%d")
    return f"{day}-{''.join(secrets.choice(_CROCKFORD) for _ in range(8))}"


class Relay:
    """Runs the pipeline for a message and routes the outcome."""

    def __init__(
        self,
        config: Config,
        pool: WorkerPool,
        store: QuarantineStore | None,
        metrics: Metrics,
        signer: Signer | None = None,
        *,
        downstream: Downstream | None = None,
        policies: PolicySet | None = None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.store = store
        self.metrics = metrics
        self.signer = signer  # None: nothing to sign (no auth.arc_seal, no auth.dkim_sign)
        # The recipients' password_mail settings are read here (gateway.pairing); without
        # policies or a downstream of its own the relay pairs no password mails.
        self.policies = policies
        self.password_mails = PasswordMails(config, pool, store, metrics, downstream, signer)
        # Mail to requests.address (gateway.requests): consumed here, never relayed.
        self.requests = RequestDesk(config, store, metrics, downstream, self.password_mails)

    async def handle(
        self, envelope: Envelope, raw: bytes, transaction: Transaction | None
    ) -> Reply:
        started = time.monotonic()
        reference_id = new_reference_id(envelope.received_at)
        settings = password_settings(self.policies, self.config, envelope)
        outcome = await self._run_pipeline(Job(envelope, raw, reference_id))
        # A password mail opens a held archive only when the rules pass the mail itself: a
        # spoofed or otherwise held "password mail" must not release anything (issue 17).
        if outcome.verdict in (Verdict.DELIVER, Verdict.TAG) and await self.password_mails.try_pair(
            envelope, raw, settings
        ):
            # Opened with it: deliver the mail with its password lines masked instead.
            outcome = await self._run_pipeline(
                Job(envelope, raw, reference_id, mask_passwords=True)
            )
        try:
            reply = await self._route(envelope, raw, outcome, transaction, settings)
        except StoreUnavailable as exc:
            outcome.report.raise_verdict(Verdict.TEMPFAIL, exc.code)
            reply = exc.reply
        except Exception as exc:
            # Last resort: whatever went wrong, the sender keeps the message (451).
            verdict_log.exception("relay error queue_id=%s", envelope.queue_id)
            outcome.report.raise_verdict(Verdict.TEMPFAIL, f"INTERNAL_ERROR: {type(exc).__name__}")
            reply = replies.R451_INTERNAL
        finally:
            if transaction is not None:
                await transaction.abort()  # no-op after a successful send
        self._account(envelope, raw, outcome.report, reply, time.monotonic() - started)
        return reply

    async def _run_pipeline(self, job: Job) -> Outcome:
        self.metrics.messages_in_pipeline.inc()
        try:
            return await self.pool.run(job)
        except (WorkerCrashed, WorkerTimeout, MugaikaError) as exc:
            report = Report(queue_id=job.envelope.queue_id, reference_id=job.reference_id)
            report.add_finding("SANITIZE_FAILED", "", f"{exc.code}: {exc}")
            verdict = (
                Verdict.QUARANTINE
                if self.config.workers.on_failure == "quarantine"
                else Verdict.TEMPFAIL
            )
            report.raise_verdict(verdict, exc.code)
            # The main process does not parse the message to summarise it (issue 11): the
            # quarantine shows the envelope and says why there is no more.
            summary = Summary(note=f"not inspected: {exc.code}")
            return Outcome(verdict, report, None, exc.reply, summary=summary)
        finally:
            self.metrics.messages_in_pipeline.dec()

    async def _route(
        self,
        envelope: Envelope,
        raw: bytes,
        outcome: Outcome,
        transaction: Transaction | None,
        settings: PasswordMail | None = None,
    ) -> Reply:
        report = outcome.report
        verdict = outcome.verdict
        if verdict in (Verdict.DELIVER, Verdict.TAG):
            if outcome.message is None or transaction is None:
                report.raise_verdict(Verdict.TEMPFAIL, "NOTHING_TO_DELIVER")
                return replies.R451_INTERNAL
            return await self._deliver(envelope, raw, outcome, transaction)
        if verdict == Verdict.QUARANTINE:
            await self._hold(
                HoldRequest(
                    report.reference_id,
                    "quarantined",
                    envelope,
                    raw,
                    report,
                    outcome.message,
                    outcome.summary,
                    awaits_password=awaits_password(settings, outcome),
                )
            )
            return replies.R250_QUARANTINED.with_text(
                f"Held for review as {report.reference_id} (queue id {envelope.queue_id})"
            )
        if verdict == Verdict.REJECT:
            return outcome.reply or replies.R550_POLICY_REJECT
        return (
            outcome.reply if outcome.reply and outcome.reply.is_transient else replies.R451_INTERNAL
        )

    async def _deliver(
        self, envelope: Envelope, raw: bytes, outcome: Outcome, transaction: Transaction
    ) -> Reply:
        report = outcome.report
        assert outcome.message is not None
        # The worker decided from the bytes (gateway.pipeline.Pipeline._build) that the
        # delivered copy differs from the original and names it (notice, X-Mugaika-Reference):
        # commit the original first. If it cannot be stored (or there is no store), _hold
        # raises StoreUnavailable and the sender gets 451: never a delivery with a false promise.
        retained = False
        if outcome.keep_original:
            await self._hold(
                HoldRequest(
                    report.reference_id,
                    "retained",
                    envelope,
                    raw,
                    report,
                    outcome.message,
                    outcome.summary,
                )
            )
            retained = True
        message = outcome.message
        if self.signer is not None:
            # In the signer process: the only one with the keys (gateway/signer.py).
            message = await self.signer.sign(
                message, (r.domain for r in envelope.recipients), outcome.rebuilt, envelope.queue_id
            )
        sent = time.monotonic()
        try:
            result = await transaction.send(message)
        except DownstreamUnavailable as exc:
            self.metrics.downstream_failures.labels("unavailable").inc()
            report.raise_verdict(Verdict.TEMPFAIL, f"{exc.code}: {exc}")
            await self._forget(report.reference_id, retained, exc.code)
            return replies.R451_DOWNSTREAM_UNAVAILABLE
        except DownstreamRefused as exc:
            kind = "tempfail" if exc.reply.is_transient else "permfail"
            self.metrics.downstream_failures.labels(kind).inc()
            await self._forget(report.reference_id, retained, exc.code)
            if exc.reply.is_transient:
                report.raise_verdict(Verdict.TEMPFAIL, f"DOWNSTREAM_TEMPFAIL: {exc.reply}")
                return Reply(
                    451,
                    exc.reply.enhanced if exc.reply.enhanced[0] == "4" else "4.4.0",
                    f"Downstream deferred: {exc.reply.text}",
                )
            report.raise_verdict(Verdict.REJECT, f"DOWNSTREAM_REJECT: {exc.reply}")
            return exc.reply
        self.metrics.downstream_seconds.observe(time.monotonic() - sent)
        downstream_id = result.queue_id or "unknown"
        return replies.R250_DELIVERED.with_text(
            f"Delivered, queued as {downstream_id} downstream (queue id {envelope.queue_id})"
        )

    async def _hold(self, request: HoldRequest) -> None:
        if self.store is None:
            raise StoreUnavailable("no quarantine store configured")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.store.hold, request)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _forget(self, reference_id: str, retained: bool, reason: str) -> None:
        if not retained or self.store is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.store.discard, reference_id, reason)
        except Exception:
            # Keeping an extra copy of an original is harmless; losing the reply is not.
            verdict_log.warning("could not discard retained original %s", reference_id)

    def _account(
        self, envelope: Envelope, raw: bytes, report: Report, reply: Reply, seconds: float
    ) -> None:
        if reply.is_success:
            final = Verdict.QUARANTINE if report.verdict == Verdict.QUARANTINE else report.verdict
        elif reply.is_transient:
            final = Verdict.TEMPFAIL
        else:
            final = Verdict.REJECT
        label = verdict_label(final)
        self.metrics.record_message(label, (r.domain for r in envelope.recipients), len(raw))
        self.metrics.record_report(report)
        self.metrics.processing_seconds.observe(seconds)
        log_fields(
            verdict_log,
            20,
            "",
            queue_id=envelope.queue_id,
            ref=report.reference_id,
            client=envelope.client.address,
            helo=envelope.client.helo,
            mail_from=envelope.mail_from,
            rcpt=",".join(envelope.rcpt_tos),
            size=len(raw),
            verdict=label,
            reasons=";".join(report.reasons),
            reply=str(reply),
            seconds=round(seconds, 3),
        )
