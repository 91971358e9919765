"""The stage order for one message, run inside a worker process.

receive → parse → verify sender → inspect → decide (rules) → sanitize → notice → (back in the
main process) deliver or quarantine → metrics.

``Pipeline.process(Job) -> Outcome`` is a function of its inputs and the configuration the
worker was started with: no delivery, no store, no state between messages (DNS answers are
cached per worker). It never raises for content reasons: what it cannot understand becomes a
finding and a verdict (fail closed). An unexpected exception escapes to the worker, which
reports it as a code; the main process then tempfails or quarantines by configuration.

Each stage is its own module with a typed input and output:

=========  ============================  =====================================================
stage      module                        in → out
=========  ============================  =====================================================
parse      ``gateway.mime``              bytes → ParsedMessage (headers kept byte-exact)
verify     ``gateway.auth``              bytes, Envelope → AuthResults (SPF/DKIM/DMARC/ARC)
inspect    ``gateway.inspect``           ParsedMessage → Plan (+ findings, attachment records)
decide     ``rules.engine``              Report, Envelope, headers → Decision
sanitize   ``gateway.assemble``          Plan, Decision → message bytes
notice     ``gateway.notice``            Report → notice text, X-Mugaika-* fields
=========  ============================  =====================================================
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import Field

from gateway import antivirus, auth, ppap, wire
from gateway.assemble import Assembler
from gateway.charsets import decode_body
from gateway.config import Config
from gateway.errors import CannotSanitize
from gateway.inspect import FilePlan, Inspector, IsolationLimits, MessagePlan, Plan
from gateway.message import Envelope
from gateway.mime import (
    HeaderField,
    MimeLimitExceeded,
    MimeLimits,
    parse_message,
    split_header_block,
)
from gateway.notice import Notice, summary_headers
from gateway.replies import Reply
from gateway.report import Report, Verdict
from gateway.sanitizers import preload_libraries
from gateway.sanitizers.html import html_to_text
from gateway.sanitizers.urls import UrlPolicy
from quarantine.summary import NestedMessages, Summary, summarize_headers, summarize_parsed
from rules.engine import Decision, Policy, PolicySet
from rules.loader import reload_policies

log = logging.getLogger("mugaika.pipeline")

# The header fields rules may test (decoded); others are reachable through ``header`` rules.
RULE_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Message-ID", "Sender", "Date")
# Bookkeeping actions that do not change what a recipient reads.
_UNCHANGED_OK = frozenset({"received-added", "parsed"})
# A signed message is "clean" when removing its signature was the only change to make.
_SIGNED_CLEAN_OK = _UNCHANGED_OK | {"signature-removed"}


@dataclass(frozen=True, slots=True)
class Job:
    """What the main process hands a worker: the envelope, the bytes as received, and the
    reference id under which the original will be kept (quoted in the notice). It crosses
    into the worker pickled: it comes from the main process (see ``gateway.workers``)."""

    envelope: Envelope
    raw: bytes
    reference_id: str
    # The password mail paired with a held PPAP archive (gateway.ppap, issue 17):
    # ``mask_passwords``: deliver it with its password lines masked, and keep no original
    # (the original holds the password); ``paired_original``: the held message to open with
    # the passwords in ``raw`` (the outcome is then that message's, unlocked and sanitized).
    mask_passwords: bool = False
    paired_original: bytes | None = None
    # Set by ``Pipeline._unlock`` for the unlocked message: the archives opened (notice), and
    # the bytes the sender signed (authentication reads the held original, not our rebuild).
    unlocked: tuple[str, ...] = ()
    auth_raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker hands back. ``message`` is what to deliver (None unless delivering);
    ``reply`` carries the text of a policy reject. ``summary`` is what the quarantine shows
    of the message (headers, text preview), computed here from this worker's parse so that
    the main process never parses the message. ``rebuilt``: the delivered content is not the
    received one (then the main process has it DKIM-signed, ``auth.dkim_sign``).
    ``keep_original``: the original must be stored under the report's reference id before
    ``message`` is delivered, because ``message`` names it (see ``Pipeline._build``);
    ``gateway.relay`` stores it or tempfails.

    It crosses back to the main process as a ``gateway.wire`` frame (``to_frame``), never
    pickled, and ``from_frame`` checks all of it there: the worker parsed hostile input."""

    verdict: Verdict
    report: Report
    message: bytes | None = None
    reply: Reply | None = None
    summary: Summary = dataclasses.field(default_factory=Summary)
    rebuilt: bool = False
    keep_original: bool = False

    def to_frame(self) -> wire.Frame:
        reply = self.reply
        header = {
            "verdict": self.verdict.label,
            "report": self.report.to_dict(),
            "reply": None
            if reply is None
            else {"code": reply.code, "enhanced": reply.enhanced, "text": reply.text},
            "summary": self.summary.to_dict(),
            "rebuilt": self.rebuilt,
            "keep_original": self.keep_original,
            "message": self.message is not None,
        }
        return wire.Frame(header, () if self.message is None else (self.message,))

    @classmethod
    def from_frame(cls, frame: wire.Frame) -> Outcome:
        """Read back ``to_frame``, checking types, sizes and what may go together: a reply
        only with a reject and only a 5xx one (a worker must not answer the sender 250 for
        a message nobody keeps), a message only with a verdict that delivers or holds it.
        Raises ``wire.WireError``."""
        checked = wire.check(_WireOutcome, frame.header, "outcome")
        verdict = Verdict[checked.verdict.upper()]
        if len(frame.blobs) != (1 if checked.message else 0):
            raise wire.WireError("outcome: the message flag does not match the byte strings")
        if checked.message and verdict not in (Verdict.DELIVER, Verdict.TAG, Verdict.QUARANTINE):
            raise wire.WireError(f"outcome: a message with verdict {verdict.label}")
        reply = None
        if checked.reply is not None:
            if verdict != Verdict.REJECT:
                raise wire.WireError(f"outcome: a reply with verdict {verdict.label}")
            reply = Reply(checked.reply.code, checked.reply.enhanced, checked.reply.text)
        return cls(
            verdict,
            Report.from_dict(checked.report),
            frame.blobs[0] if checked.message else None,
            reply,
            Summary.from_dict(checked.summary),
            checked.rebuilt,
            checked.keep_original,
        )


class _WireReply(wire.WireModel):
    """A policy reject: 5xx, an RFC 3463 5.x.x code, one line of printable text (it is sent
    to the SMTP client as is)."""

    code: Annotated[int, Field(ge=500, le=599)]
    enhanced: Annotated[str, Field(pattern=r"^5\.\d{1,3}\.\d{1,3}$")]
    text: Annotated[str, Field(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]


class _WireOutcome(wire.WireModel):
    verdict: Annotated[str, Field(pattern="^(deliver|tag|quarantine|reject|tempfail)$")]
    report: dict[str, Any]
    reply: _WireReply | None
    summary: dict[str, Any]
    rebuilt: bool
    keep_original: bool
    message: bool


def received_header(envelope: Envelope, hostname: str) -> bytes:
    """RFC 5321 section 4.4 trace header for this hop.

    ``from`` names the original client (from XFORWARD when Postfix forwarded it); ``with`` is
    the protocol of our own session. ``for`` is given only for a single recipient, as Postfix
    does, so a Bcc recipient list is not disclosed.

    Never emits a control character, whatever it is given: each value has CR, LF, NUL, other
    controls, undecodable bytes and non-printable separators replaced by "?". The SMTP layer
    refuses such values already (``gateway.smtp``); this keeps the trace field from ever
    being a way to write header lines (issue 11: bare CRs in an EHLO name forged MIME fields).
    """

    def printable(untrusted: str) -> str:
        return "".join(char if char.isprintable() else "?" for char in untrusted)

    client = envelope.client
    helo = printable(client.helo or "unknown")
    name = printable(client.name or "unknown")
    address = printable(client.address or "unknown")
    if ":" in address and not address.startswith("IPv6:"):
        address = f"IPv6:{address}"
    protocol = printable(envelope.peer.proto or "SMTP")
    lines = [
        f"Received: from {helo} ({name} [{address}])",
        f"\tby {printable(hostname)} (Mugaika) with {protocol} id {printable(envelope.queue_id)}",
    ]
    when = datetime.datetime.fromtimestamp(envelope.received_at, tz=datetime.UTC)
    stamp = email.utils.format_datetime(email.utils.localtime(when))
    if len(envelope.recipients) == 1:
        lines.append(f"\tfor <{printable(envelope.recipients[0].address)}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    text = "\r\n".join(lines) + "\r\n"
    return text.encode("utf-8", "surrogateescape")


def rule_headers(raw: bytes, fields: Sequence[HeaderField] | None = None) -> dict[str, str]:
    """Decoded header fields the rules read (first of each), from ``fields`` when the message
    was already parsed, else from the raw header block."""
    if fields is None:
        fields, _ = split_header_block(raw)
    wanted = {name.lower(): name for name in RULE_HEADERS}
    out: dict[str, str] = {}
    for field in fields:
        key = wanted.get(field.name.lower())
        if key and key not in out:
            try:
                out[key] = field.untrusted_value
            except Exception:
                out[key] = ""
    return out


def _signed_and_clean(plan: Plan, report: Report, settings: object) -> bool:
    """``signed: deliver-unmodified-if-clean``: the original, signature intact, is delivered
    only with the proof that every reader sees what was inspected (``_one_reading``) and when
    nothing in the signed content needed a change (no URL, no HTML, no attachment, no
    finding), so it is as harmless as its sanitized copy would be."""
    if not plan.signed or getattr(settings, "signed", "") != "deliver-unmodified-if-clean":
        return False
    if not _one_reading(plan):
        return False
    if report.findings or report.attachments:
        return False
    return all(action.kind in _SIGNED_CLEAN_OK for action in report.actions)


def _one_reading(plan: Plan) -> bool:
    """The proof the byte-for-byte paths need, from ``gateway.framing``: the strict reading of
    exactly these bytes found no ambiguity at any level (header grammar, duplicated structural
    fields and parameters, media types, boundaries, bare CR, NUL) and the bytes are in the
    form every transport keeps (CRLF lines of at most 998 octets, strict transfer encodings,
    a charset every reader decodes alike, no file encoded in the text). Without it a client
    may read another message than the one inspected (issue 11), so the message is rebuilt."""
    framing = plan.framing
    # ``plan_bytes`` examined exactly the bytes received; an ambiguous message never is.
    return framing is not None and framing.verbatim and not framing.ambiguous


def _unchanged(plan: Plan | None, report: Report) -> bool:
    """True when the bytes as received may be delivered: the framing proof holds
    (``_one_reading``) and the message is one plain-text part that needed no change at all.

    Then the original bytes are delivered (with our trace and summary fields on top), so DKIM
    and S/MIME-free plain mail arrives exactly as sent."""
    if plan is None or plan.parsed.root.is_multipart or plan.signed:
        return False
    if not _one_reading(plan):
        return False
    root = plan.parsed.root
    if root.declared_type != "text/plain" or root.is_attachment or root.origin != "mime":
        return False
    if report.findings or report.attachments:
        return False
    return all(action.kind in _UNCHANGED_OK for action in report.actions)


class Pipeline:
    """All stages, configured once per worker from ``Config``."""

    def __init__(self, config: Config, policies: PolicySet | None = None) -> None:
        self.config = config
        self.hostname = config.hostname
        self.policies = policies if policies is not None else reload_policies(config)
        self.auth_settings = auth.auth_settings(config) if config.auth.enabled else None
        self.resolver = auth.make_resolver(config) if config.auth.enabled else None
        self.scanner = antivirus_target(config)
        preload_libraries()  # once here, not in every per-document child

    def policy_for(self, envelope: Envelope) -> Policy:
        """The recipients' policy. "Internal" domains (for the spoofing rules) are those the
        operator named: the configured tenants and the accepted domains.

        Not the recipients' own domains: test and newsletter mail between addresses of one
        domain is common (a quarter of the corpus), and without the domain's DMARC record an
        honest sender could not be told from a spoof; configure ``tenants`` instead."""
        domains = [r.domain for r in envelope.recipients]
        policy = self.policies.for_recipients(domains, self.config.tenants)
        internal = policy.internal_domains | frozenset(self.config.smtp.accepted_domains)
        return replace(policy, internal_domains=internal)

    def _authenticate(self, job: Job, report: Report) -> auth.AuthResults | None:
        if self.auth_settings is None or self.resolver is None:
            return None
        try:
            signed = job.auth_raw if job.auth_raw is not None else job.raw
            results = auth.authenticate(signed, job.envelope, self.auth_settings, self.resolver)
        except Exception as exc:  # a bug here must not stop mail: results are just absent
            log.warning("authentication failed queue_id=%s: %s", job.envelope.queue_id, exc)
            return None
        report.auth.update(results.summary())
        return results

    def process(self, job: Job) -> Outcome:
        if job.paired_original is not None:
            return self._unlock(job)
        started = time.monotonic()
        envelope = job.envelope
        report = Report(queue_id=envelope.queue_id, reference_id=job.reference_id)
        for name in job.unlocked:
            report.add_action("archive-unlocked", detail=name)
            report.add_finding("ARCHIVE_UNLOCKED", "", name)
        results = self._authenticate(job, report)
        policy = self.policy_for(envelope)
        settings = policy.settings
        report.policy = policy.name
        limits = IsolationLimits(
            document_timeout=self.config.workers.document_timeout,
            document_memory_mb=self.config.workers.document_memory_limit_mb,
            deadline=started + self.config.workers.message_timeout * 0.8,
        )
        plan = Inspector(
            settings,
            report,
            limits,
            scanner=self.scanner,
            on_scan_unavailable=self.config.antivirus.on_unavailable,
            mask_passwords=job.mask_passwords,
        ).plan_bytes(job.raw)
        decision = policy.decide(
            report,
            envelope,
            rule_headers(job.raw, plan.parsed.headers if plan is not None else None),
            auth=results,
            message_size=len(job.raw),
        )
        decision.record(report)
        verdict = report.verdict
        if verdict == Verdict.TEMPFAIL:
            # A malware engine could not answer (antivirus.on_unavailable: tempfail): 451, the
            # sender keeps the message and retries; nothing unscanned is delivered or stored.
            return Outcome(verdict, report)
        if verdict == Verdict.REJECT:
            text = decision.reject_text or "Message rejected by content policy"
            return Outcome(verdict, report, None, Reply(550, "5.7.1", text))
        if plan is None:
            report.raise_verdict(Verdict.QUARANTINE, "message could not be rebuilt")
            limit = next((f.code for f in report.findings if f.code.startswith("LIMIT_")), "")
            return Outcome(report.verdict, report, summary=summarize_headers(job.raw, limit))
        message, keep_original, changed = self._build(
            job, plan, decision, report, settings, results
        )
        # The summary is what the quarantine shows of a stored message; one delivered without
        # keeping its original is stored nowhere (issue 13: it cost both processes time).
        stored = keep_original or report.verdict == Verdict.QUARANTINE
        # A held message keeps its sanitized copy too (what the held parts were replaced by is
        # said in its notice): an admin can release that copy without exposing the original.
        return Outcome(
            report.verdict,
            report,
            message,
            summary=summarize_parsed(plan.parsed, _nested_messages(plan)) if stored else Summary(),
            rebuilt=changed,
            keep_original=keep_original,
        )

    def _unlock(self, job: Job) -> Outcome:
        """Open the held message ``job.paired_original`` with the password lines of the mail
        ``job.raw`` (``gateway.ppap``) and run the result through ``process`` as a message of
        its own: the outcome is the unlocked message's. When nothing opens, the outcome is a
        QUARANTINE without a message whose finding says why (``PASSWORD_NOT_FOUND``,
        ``ARCHIVE_PASSWORD_WRONG``); an archive that opens beyond the archive limits is not
        extracted (``ARCHIVE_UNLOCKED`` with the limit's code, held)."""
        assert job.paired_original is not None
        envelope = job.envelope
        report = Report(queue_id=envelope.queue_id, reference_id=job.reference_id)
        settings = self.policy_for(envelope).settings
        candidates = ppap.password_candidates(_body_texts(job.raw, settings))
        if not candidates:
            report.add_finding("PASSWORD_NOT_FOUND", "", "no password line")
            report.raise_verdict(Verdict.QUARANTINE, "PASSWORD_NOT_FOUND")
            return Outcome(report.verdict, report)
        limits = ppap.ArchiveLimits(
            settings.archive_max_members,
            settings.archive_max_total_size,
            settings.archive_max_ratio,
        )
        try:
            unlocked = ppap.unlock(job.paired_original, candidates, limits)
        except ppap.UnlockRefused as exc:
            report.add_finding("ARCHIVE_UNLOCKED", "", "not extracted")
            report.add_finding(exc.code, "", str(exc))
            report.raise_verdict(Verdict.QUARANTINE, f"{exc.code}: {exc}")
            return Outcome(report.verdict, report)
        if unlocked.message is None:
            detail = f"{unlocked.tried} candidates, {unlocked.encrypted} encrypted archives"
            report.add_finding("ARCHIVE_PASSWORD_WRONG", "", detail)
            report.raise_verdict(Verdict.QUARANTINE, "ARCHIVE_PASSWORD_WRONG")
            return Outcome(report.verdict, report)
        return self.process(
            Job(
                envelope,
                unlocked.message,
                job.reference_id,
                unlocked=unlocked.archives,
                auth_raw=job.paired_original,
            )
        )

    def _build(
        self,
        job: Job,
        plan: Plan,
        decision: Decision,
        report: Report,
        settings: object,
        results: auth.AuthResults | None,
    ) -> tuple[bytes, bool, bool]:
        """The message to deliver, whether its original must be kept first, and whether its
        content differs from the received one.

        Retention is decided from one fact: the delivered content differs from the received
        bytes beyond the fields we prepend (trace, authentication results, ARC, ``X-Mugaika-*``).
        Then the original is kept (``quarantine.retain_originals``), and only then do the
        notice and ``X-Mugaika-Reference`` name it. A held message is stored anyway, so its
        sanitized copy (released later) may name it too."""
        trace = received_header(job.envelope, self.hostname)
        report.add_action("received-added")
        for node in plan.files():
            trusted = isinstance(node, FilePlan) and node.content_class in decision.skip_classes
            if trusted and node.record.action != "held":
                node.record.action, node.record.reason = "kept", "TRUSTED_SENDER"
        extra = [*decision.tag_headers]
        held = report.verdict == Verdict.QUARANTINE
        # A masked password mail's original holds the password: it is not kept (issue 17).
        retain = self.config.quarantine.retain_originals and not job.mask_passwords
        original = _without_our_fields(job.raw)
        promised = False
        if _signed_and_clean(plan, report, settings):
            report.add_action(
                "signed-delivered-unmodified", reason="signature kept: nothing to change"
            )
            body = original
        elif _unchanged(plan, report):
            body = original
        else:
            notice = Notice(
                settings.notice.language,  # type: ignore[attr-defined]
                dict(settings.notice.templates),  # type: ignore[attr-defined]
                self.config.requests.address,
            )
            # A notice always changes the body, so the original it names will be kept.
            text = notice.render(report, original_kept=retain or held)
            promised = bool(text) and (retain or held)
            assembler = Assembler(
                settings.notice.charset,  # type: ignore[attr-defined]
                text,
                decision.skip_classes,
            )
            body = assembler.message(plan, report)
        changed = body != original or any(
            not name.lower().startswith("x-mugaika-") for name, _ in extra
        )
        keep_original = held or promised or (retain and changed)
        head = b"".join(
            f"{name}: {value}\r\n".encode("ascii", "replace")
            for name, value in [*summary_headers(report, original_kept=keep_original), *extra]
        )
        message = head + body
        if results is not None:
            # ARC sealing and DKIM signing happen outside this process (``gateway.signer``):
            # a worker parses hostile content and never holds a private key.
            message = auth.add_authentication_results(message, results)
        # Our Received: is the topmost trace field (RFC 5321 section 4.4), above the results.
        return trace + message, keep_original, changed


def antivirus_target(config: Config) -> antivirus.ScanTarget | None:
    """Where the workers send parts for malware scanning, or None (``antivirus.enabled``)."""
    settings = config.antivirus
    if not settings.enabled or not (settings.clamd or settings.icap):
        return None
    return antivirus.ScanTarget(
        clamd=settings.clamd,
        icap=settings.icap,
        timeout=settings.timeout,
        max_size=settings.max_size,
        icap_preview=settings.icap_preview,
    )


def _body_texts(raw: bytes, settings: Any) -> list[str]:
    """The decoded text of every body part (not attachments), HTML as its text with URLs
    as written: where the password lines of a password mail are looked for."""
    limits = settings.limits
    try:
        parsed = parse_message(
            raw, MimeLimits(limits.max_depth, limits.max_parts, limits.max_decoded_size)
        )
    except MimeLimitExceeded:
        return []
    texts: list[str] = []
    for part in parsed.root.walk():
        if part.is_multipart or part.is_attachment:
            continue
        if part.declared_type not in ("text/plain", "text/html"):
            continue
        text = decode_body(part.payload, part.declared_charset).text
        if part.declared_type == "text/html":
            try:
                text = html_to_text(text, UrlPolicy(mode="keep")).text
            except CannotSanitize:
                continue
        texts.append(text.replace("\r\n", "\n").replace("\r", "\n"))
    return texts


def _nested_messages(plan: Plan) -> NestedMessages:
    """The parses of the attached messages the inspector planned, by part id (recursively),
    so that the quarantine preview lists their parts without parsing them again."""
    return {
        node.part_id: (node.inner.parsed, _nested_messages(node.inner))
        for node in plan.nodes
        if isinstance(node, MessagePlan) and node.inner is not None
    }


def _without_our_fields(message: bytes) -> bytes:
    """Drop ``X-Mugaika-*`` fields a sender put in the original (they would forge ours)."""
    fields, offset = split_header_block(message)
    if not any(f.name.lower().startswith("x-mugaika-") for f in fields):
        return message
    kept = b"".join(f.raw + b"\r\n" for f in fields if not f.name.lower().startswith("x-mugaika-"))
    rest = message[offset:]
    return kept + b"\r\n" + rest


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What every worker starts from: the configuration and the policies, both validated in
    the main process (so a broken policy file can never reach, let alone stop, a worker).
    Pickled into the worker from the main process. It names signing key files but a worker
    never reads them (``auth.auth_settings(config)`` loads no key): signing is
    ``gateway.signer``'s."""

    config: Config
    policies: PolicySet


def init_worker(setup: WorkerSetup) -> Callable[[Job], Outcome]:
    """Worker entry point (``WorkerPool`` target): build the pipeline once per process.
    Its results are read with ``Outcome.from_frame`` (the pool's ``decode``)."""
    return Pipeline(setup.config, setup.policies).process
