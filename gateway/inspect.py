"""The inspect stage: what every part of a message is, and a harmless candidate for each.

Input: a ``ParsedMessage`` and the policy's ``PolicySettings``. Output: a ``Plan`` that mirrors
what will be delivered, in the original order: text bodies (already decoded from their
charset, HTML converted or sanitized, URLs defanged), files (detected by content, with the
rebuilt copies their sanitizer produced in an isolated process), nested messages (planned
recursively), plus every finding and attachment record appended to the ``Report``.

Why sanitizing happens here and not after the decision: the findings that rules decide on
(macro found, JavaScript found, encrypted archive) come out of the same pass over the
document that rebuilds it; doing it once halves the work on hostile documents. The decision
(``rules``) may still veto: quarantine or reject the whole message, or let an authenticated,
allow-listed sender keep the original of some classes (``Decision.skip_classes``);
``gateway.assemble`` applies it.

Fail closed: a part whose sanitizer fails, times out or crashes is stripped or makes the
message quarantined (``on_sanitize_failure``); an unknown class is stripped by default; a part
is never passed through unless the policy's action for its class is ``keep`` (text only) or
the decision trusts the sender for that class.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import antivirus, ppap
from gateway import detect as detection
from gateway.charsets import DecodedText, decode_body
from gateway.errors import CannotSanitize
from gateway.framing import Framing, examine
from gateway.mime import (
    DELIVERY_STATUS_TYPES,
    EMBEDDED_ORIGINS,
    MimeLimitExceeded,
    MimeLimits,
    ParsedMessage,
    Part,
    parse_message,
)
from gateway.report import AttachmentRecord, Report, Verdict
from gateway.sanitizers import sanitizer_for
from gateway.sanitizers.base import (
    CHECK_FAILED_CODES,
    POLICY_HOLD_CODES,
    OutputFile,
    SanitizeOptions,
    SanitizeResult,
)
from gateway.sanitizers.html import html_to_text, sanitize_html
from gateway.sanitizers.urls import UrlPolicy, defang_text
from gateway.workers import run_isolated

# A MIME parameter value we write back unquoted (RFC 2045 token characters we allow).
_TOKEN = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")

# Classes whose payload a recipient may read as the message text when sent inline.
BODY_TYPES = ("text/plain", "text/html")


@dataclass
class TextBody:
    """Text a recipient reads: ``text`` always, ``html`` too in ``html: sanitize`` mode."""

    part_id: str
    text: str
    html: str | None = None


@dataclass
class FilePlan:
    """One attachment: what it is, what the policy does, and the harmless copies made."""

    part_id: str
    content_class: str
    action: str
    original: bytes
    original_name: str
    declared_type: str
    record: AttachmentRecord
    outputs: tuple[OutputFile, ...] = ()
    failure: str = ""
    # A calendar sent inline (a meeting request): delivered inline as text/calendar with its
    # ``method`` (RFC 5546 section 2.4; clients show Accept/Decline only then), not as a file.
    inline_method: str = ""


@dataclass
class MessagePlan:
    """An attached message (message/rfc822), planned recursively as a whole message."""

    part_id: str
    record: AttachmentRecord
    action: str
    inner: Plan | None = None
    original: bytes = b""


@dataclass
class DeliveryStatus:
    """The machine-readable part of a bounce (RFC 3464 ``message/delivery-status``, RFC 6533
    ``message/global-delivery-status``): plain fields (``Final-Recipient``, ``Status``,
    ``Diagnostic-Code``...), kept as text with URLs treated as in any text, so that clients
    show the bounce and bounce handling can read it (RT-21)."""

    part_id: str
    media_type: str
    text: str


Node = TextBody | FilePlan | MessagePlan | DeliveryStatus


@dataclass
class Plan:
    """``framing`` is the strict reading of the bytes (``gateway.framing``): the proof the
    byte-for-byte paths require, and the record of what was ambiguous."""

    parsed: ParsedMessage
    nodes: list[Node] = field(default_factory=list)
    signed: bool = False
    framing: Framing | None = None
    # The ``report-type`` of a top-level multipart/report (RFC 6522), kept for the rebuilt one.
    report_type: str = ""

    def files(self) -> list[FilePlan]:
        out: list[FilePlan] = []
        for node in self.nodes:
            if isinstance(node, FilePlan):
                out.append(node)
            elif isinstance(node, MessagePlan) and node.inner is not None:
                out.extend(node.inner.files())
        return out


@dataclass(frozen=True, slots=True)
class IsolationLimits:
    """Per-document limits for ``run_isolated`` and the message's overall deadline."""

    document_timeout: float = 30.0
    document_memory_mb: int = 1024
    deadline: float = 0.0  # time.monotonic() by which the message must be done; 0 = none


Runner = Callable[..., Any]


def url_policy(settings: Any) -> UrlPolicy:
    """The text sanitizers' URL policy from the policy's ``urls`` settings.

    ``urls.mailto: true`` in a policy keeps mail addresses clickable; the URL defanger's
    ``mailto`` flag means the opposite ("treat mail addresses like URLs").
    """
    urls = settings.urls
    return UrlPolicy(
        mode=urls.mode, allow_domains=frozenset(urls.allow_domains), mailto=not urls.mailto
    )


class Inspector:
    """Plans one message (and, recursively, the messages attached to it)."""

    def __init__(
        self,
        settings: Any,
        report: Report,
        limits: IsolationLimits,
        runner: Runner = run_isolated,
        depth: int = 0,
        scanner: antivirus.ScanTarget | None = None,
        on_scan_unavailable: str = "tempfail",
        mask_passwords: bool = False,
    ) -> None:
        self.settings = settings
        # A paired password mail (gateway.ppap): its password lines are masked in every body.
        self.mask_passwords = mask_passwords
        self.report = report
        self.limits = limits
        self.runner = runner
        self.depth = depth
        self.urls = url_policy(settings)
        self.scanner = scanner
        self.on_scan_unavailable = on_scan_unavailable
        # Parts a malware engine named, by part id, with the signature (gateway.antivirus).
        self.infected: dict[str, str] = {}

    # -- entry points ----------------------------------------------------------------------

    def plan_bytes(self, raw: bytes) -> Plan | None:
        """Read the framing strictly, parse and plan; None (with a LIMIT_* finding and a
        quarantine verdict) when the message exceeds a structural limit.

        An ambiguous message (readers disagree about its framing) is parsed in its canonical
        form, the reading that shows the most structure, so every part any reader would show
        is inspected; it is then always rebuilt (or held, ``ambiguous_mime: quarantine``)."""
        limits = self.settings.limits
        mime_limits = MimeLimits(limits.max_depth, limits.max_parts, limits.max_decoded_size)
        try:
            framing = examine(raw, mime_limits)
            if not framing.ambiguous:
                # Parsed as received: the canonical copy, as large as the message, would only
                # be carried along with the plan (issue 13: worker memory per message).
                framing = dataclasses.replace(framing, canonical=b"")
            parsed = parse_message(framing.canonical if framing.ambiguous else raw, mime_limits)
        except MimeLimitExceeded as exc:
            self.report.add_finding(exc.code, "", exc.detail)
            self.report.raise_verdict(Verdict.QUARANTINE, f"{exc.code}: {exc.detail}")
            return None
        self._framing(framing)
        plan = self.plan(parsed)
        plan.framing = framing
        return plan

    def _framing(self, framing: Framing) -> None:
        if not framing.ambiguous:
            return
        seen = {(f.code, f.part_id, f.detail) for f in self.report.findings}
        for item in framing.ambiguities:
            if (item.code, item.part_id, item.detail) not in seen:
                self.report.add_finding(item.code, item.part_id, item.detail)
        codes = ",".join(sorted(framing.codes()))
        self.report.add_action("mime-canonicalized", "1", codes)
        if getattr(self.settings, "ambiguous_mime", "rebuild") == "quarantine":
            self.report.raise_verdict(
                Verdict.QUARANTINE, f"mail programs would read the structure differently ({codes})"
            )

    def plan(self, parsed: ParsedMessage) -> Plan:
        plan = Plan(parsed)
        self._scan(parsed)
        if self.report.verdict == Verdict.TEMPFAIL:
            return plan  # an engine could not answer: nothing is delivered, the sender retries
        self._visit(parsed.root, plan, in_alternative=False)
        return plan

    # -- known malware ---------------------------------------------------------------------

    def _scan(self, parsed: ParsedMessage) -> None:
        """Every leaf's original bytes (transfer encoding undone, nothing rebuilt yet) to the
        malware engines. A hit holds the message with the signature as the reason, and the
        part is left out of the sanitized copy; an engine that cannot answer tempfails or
        holds the message (``antivirus.on_unavailable``). Attached messages are scanned
        part by part when the inspector recurses into them; ZIP members by the archive
        sanitizer (``SanitizeOptions.antivirus``)."""
        if self.scanner is None:
            return
        for part in parsed.root.walk():
            if part.is_multipart or part.declared_type == "message/rfc822" or not part.payload:
                continue
            result = antivirus.scan(self.scanner, part.payload, part.part_id, self.limits.deadline)
            if not self._scan_result(result, part.part_id):
                return

    def _scan_result(self, result: antivirus.ScanResult, part_id: str) -> bool:
        """Record one scan; False when the message cannot go on (an engine failed)."""
        for finding in antivirus.result_findings(result, part_id):
            self.report.findings.append(finding)
        if result.infected:
            names = ", ".join(result.signatures)
            self.infected[part_id] = names
            self.report.raise_verdict(Verdict.QUARANTINE, f"VIRUS_FOUND: {names} in {part_id}")
        if result.unavailable:
            self._scan_unavailable(result.unavailable)
            return False
        return True

    def _scan_unavailable(self, why: str) -> None:
        verdict = Verdict.QUARANTINE if self.on_scan_unavailable == "hold" else Verdict.TEMPFAIL
        self.report.raise_verdict(verdict, f"VIRUS_SCAN_UNAVAILABLE: {why}")

    # -- structure -------------------------------------------------------------------------

    def _visit(self, part: Part, plan: Plan, in_alternative: bool) -> None:
        if part.origin == "hidden" and not part.is_multipart:
            # Outside the MIME tree (see gateway.mime._hidden_parts). Text is shown as text
            # (sanitized like any body); a file there is how malspam hides attachments.
            if not part.payload.strip():
                return
            if self._is_body(part):
                self.report.add_finding("MIME_HIDDEN_TEXT", part.part_id, part.declared_type)
            else:
                self.report.add_finding(
                    "MIME_HIDDEN_PART", part.part_id, f"{part.declared_type} outside the MIME tree"
                )
                self._file(part, plan)
                return
        if part.origin == "tnef" and part.is_multipart:
            self.report.add_action("tnef-unpacked", part.part_id)
        if part.origin == "embedded" and part.is_multipart:
            # A text with files encoded in it (gateway.mime): one action per encoding found.
            for kind in dict.fromkeys(c.origin for c in part.children):
                if kind in EMBEDDED_ORIGINS:
                    self.report.add_action(f"{kind}-extracted", part.part_id)
        if part.is_multipart:
            self._multipart(part, plan)
        elif part.declared_type == "message/rfc822":
            self._nested(part, plan)
        elif part.declared_type in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            self._opaque_crypto(part, "SMIME_OPAQUE")
        elif part.declared_type == "message/partial":
            # A fragment (RFC 2046 section 5.2.2): the whole is never seen here, so it cannot
            # be inspected; reassembly in the client would bypass every check.
            self._opaque_crypto(part, "MIME_PARTIAL")
        elif part.declared_type in DELIVERY_STATUS_TYPES and not part.is_attachment:
            self._delivery_status(part, plan)
        elif part.declared_type == "message/external-body":
            # A pointer the client may fetch (URL, FTP, mail-server): nothing to sanitize.
            self.report.add_finding("MIME_EXTERNAL_BODY", part.part_id, part.param("access-type"))
            self.report.add_action("external-body-removed", part.part_id)
        elif self._is_body(part):
            body = self._body(part)
            if body is not None:
                plan.nodes.append(body)
        else:
            self._file(part, plan)

    def _multipart(self, part: Part, plan: Plan) -> None:
        subtype = part.subtype
        children = list(part.children)
        if subtype == "alternative":
            self._alternative(part, plan)
            return
        if subtype == "signed" and children:
            plan.signed = True
            if self.settings.signed == "quarantine":
                self.report.add_finding("SIGNED_MESSAGE", part.part_id, "multipart/signed")
                self.report.raise_verdict(Verdict.QUARANTINE, "signed mail held by policy")
            self.report.add_action(
                "signature-removed", part.part_id, "the signature cannot verify after sanitizing"
            )
            self._visit(children[0], plan, in_alternative=False)
            return
        if subtype == "encrypted":
            self._opaque_crypto(part, "ENCRYPTED_MESSAGE")
            return
        if subtype == "report" and part is plan.parsed.root:
            report_type = part.param("report-type").lower()
            plan.report_type = report_type if _TOKEN.fullmatch(report_type) else "unknown"
        if subtype == "related" and children:
            start = part.param("start")
            root = next((c for c in children if start and c.content_id == start), children[0])
            self._visit(root, plan, in_alternative=False)
            for child in children:
                if child is not root:
                    self._visit(child, plan, in_alternative=False)
            return
        for child in children:
            self._visit(child, plan, in_alternative=False)

    def _alternative(self, part: Part, plan: Plan) -> None:
        """Collapse to the one text a recipient should read.

        The other text alternatives are dropped (counted in the report). Anything else found
        under the alternative (calendar invitations, images of a related branch, and files a
        malformed or hostile message hides there, e.g. by reusing the parent's boundary) is
        handled as an attachment: never silently dropped, never passed unexamined.
        """
        children = list(part.children)
        plains = [c for c in children if _is_text_body(c, "text/plain")]
        htmls = [c for c in children if _is_text_body(c, "text/html")]
        nested = [c for c in children if c.is_multipart]
        chosen: TextBody | None = None
        visited: Part | None = None
        if self.settings.html == "sanitize" and htmls:
            chosen = self._body(htmls[-1])
            if chosen is not None and plains:
                plain = self._body(plains[0], count_urls=False)
                if plain is not None and plain.text.strip():
                    chosen.text = plain.text
        else:
            for candidate in plains:
                body = self._body(candidate)
                if body is not None and body.text.strip():
                    chosen = body
                    break
            if chosen is None and htmls:
                chosen = self._body(htmls[-1])
        if chosen is None and nested:
            # e.g. alternative(plain, related(html, images)): read the richest branch.
            visited = nested[-1]
            self._visit(visited, plan, in_alternative=True)
        elif chosen is not None:
            plan.nodes.append(chosen)
        dropped = 0
        for child in children:
            if child is visited:
                continue
            for leaf in child.walk():
                if leaf.is_multipart:
                    continue
                if _is_text_body(leaf, "text/plain") or _is_text_body(leaf, "text/html"):
                    dropped += 1
                else:
                    self._visit(leaf, plan, in_alternative=False)
        dropped -= 1 if chosen is not None else 0
        if dropped > 0:
            self.report.add_action(
                "alternative-collapsed", part.part_id, "one alternative delivered", count=dropped
            )

    def _opaque_crypto(self, part: Part, code: str) -> None:
        """Encrypted or opaque-signed content cannot be inspected: fail closed."""
        self.report.add_finding(code, part.part_id, part.declared_type)
        self.report.raise_verdict(Verdict.QUARANTINE, f"{code}: content cannot be inspected")

    # -- text bodies -----------------------------------------------------------------------

    def _is_body(self, part: Part) -> bool:
        if part.declared_type not in BODY_TYPES or part.is_attachment:
            return False
        # A "text/plain" body that is really a program or an archive is a file (fail closed).
        if part.payload[:2] == b"MZ" or part.payload[:4] in (b"PK\x03\x04", b"\x7fELF", b"%PDF"):
            return False
        # NUL bytes mean binary, except in the text encodings made of 16- or 32-bit units.
        wide = (part.declared_charset or "").lower().startswith(("utf-16", "utf-32", "ucs-"))
        return wide or b"\x00" not in part.payload[:4096]

    def _body(self, part: Part, count_urls: bool = True) -> TextBody | None:
        if part.part_id in self.infected:
            self.report.add_action("virus-removed", part.part_id, self.infected[part.part_id])
            return None
        try:
            return self._convert_body(part, count_urls)
        except CannotSanitize as exc:
            # e.g. HTML_TOO_LARGE: the text cannot be made harmless within limits.
            self.report.add_finding(exc.code, part.part_id, str(exc))
            self.report.raise_verdict(Verdict.QUARANTINE, f"{exc.code}: body not sanitized")
            return None

    def _decoded(self, part: Part, charset: str | None) -> DecodedText:
        """The part's text (``decode_body``), its charset findings recorded."""
        decoded = decode_body(part.payload, charset)
        for finding in decoded.findings:
            self.report.add_finding(finding.code, part.part_id, finding.detail)
        return decoded

    def _convert_body(self, part: Part, count_urls: bool) -> TextBody:
        decoded = self._decoded(part, part.declared_charset)
        if part.declared_type == "text/html":
            if self.mask_passwords:
                # Masking works on lines of text: the HTML is delivered as its text only.
                converted = html_to_text(decoded.text, self.urls)
                self._record_html(part, converted, "html-to-text", count_urls)
                return TextBody(part.part_id, self._masked(part.part_id, converted.text))
            if self.settings.html == "sanitize":
                clean = sanitize_html(decoded.text, self.urls)
                as_text = html_to_text(decoded.text, self.urls)
                self._record_html(part, clean, "html-sanitized", count_urls)
                return TextBody(part.part_id, as_text.text, clean.text)
            converted = html_to_text(decoded.text, self.urls)
            self._record_html(part, converted, "html-to-text", count_urls)
            return TextBody(part.part_id, converted.text)
        text = decoded.text.replace("\r\n", "\n").replace("\r", "\n")
        if part.param("format").lower() == "flowed":
            text = _unflow(text, delete_space=part.param("delsp").lower() == "yes")
        if self.mask_passwords:
            text = self._masked(part.part_id, text)  # before defanging: "a.b" stays one value
        result = defang_text(text, self.urls)
        if count_urls:
            self._record_urls(part.part_id, result.count)
        return TextBody(part.part_id, result.text)

    def _masked(self, part_id: str, text: str) -> str:
        masked, count = ppap.mask_passwords(text)
        if count:
            self.report.add_action("password-masked", part_id, count=count)
            self.report.add_finding("PASSWORD_MASKED", part_id, f"{count} password lines")
        return masked

    def _delivery_status(self, part: Part, plan: Plan) -> None:
        if part.part_id in self.infected:
            self.report.add_action("virus-removed", part.part_id, self.infected[part.part_id])
            return
        decoded = self._decoded(part, part.declared_charset or "utf-8")
        text = decoded.text.replace("\r\n", "\n").replace("\r", "\n")
        result = defang_text(text, self.urls)
        self._record_urls(part.part_id, result.count)
        self.report.add_action("delivery-status-kept", part.part_id)
        plan.nodes.append(DeliveryStatus(part.part_id, part.declared_type, result.text))

    def _record_html(self, part: Part, result: Any, kind: str, count_urls: bool) -> None:
        self.report.add_action(kind, part.part_id)
        for finding in getattr(result, "findings", ()):
            self.report.add_finding(finding.code, part.part_id, finding.detail)
        if count_urls:
            self._record_urls(part.part_id, getattr(result, "urls_defanged", 0))

    def _record_urls(self, part_id: str, count: int, removed: bool | None = None) -> str:
        """Count changed URLs (the notice and ``X-Mugaika-Actions`` say how many) and record
        the finding; returns its code ("" when nothing changed)."""
        if not count:
            return ""
        if removed is None:
            removed = self.urls.mode == "remove"
        kind, code = (
            ("urls-removed", "URL_REMOVED") if removed else ("urls-defanged", "URL_DEFANGED")
        )
        self.report.add_action(kind, part_id, count=count)
        self.report.add_finding(code, part_id, f"{count} URLs")
        return code

    # -- files -----------------------------------------------------------------------------

    def _file(self, part: Part, plan: Plan) -> None:
        data = part.payload
        found = detection.detect(data, part.untrusted_filename, part.declared_type, part.part_id)
        self.report.findings.extend(found.findings)
        content_class = found.content_class
        if content_class == "message":
            # An .eml sent as application/octet-stream is still a message: recurse into it.
            self._nested(part, plan)
            return
        action = self.settings.action_for(content_class)
        name = part.untrusted_filename or _default_name(part, found.mime)
        record = AttachmentRecord(
            part_id=part.part_id,
            untrusted_filename=part.untrusted_filename,
            declared_type=part.declared_type,
            detected_type=found.mime,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        self.report.attachments.append(record)
        node = FilePlan(part.part_id, content_class, action, data, name, part.declared_type, record)
        if part.declared_type == "text/calendar" and not part.is_attachment:
            method = part.param("method").upper()
            node.inline_method = method if re.fullmatch(r"[A-Z-]{1,32}", method) else "PUBLISH"
        plan.nodes.append(node)
        reasons = ",".join(sorted(found.codes()))
        if part.part_id in self.infected:
            record.action, record.reason = "held", "VIRUS_FOUND"
            return
        if action == "quarantine":
            record.action, record.reason = "held", reasons or content_class.upper()
            self.report.raise_verdict(
                Verdict.QUARANTINE, f"attachment policy: {content_class} is quarantined"
            )
        elif action == "strip":
            record.action, record.reason = "stripped", reasons or "POLICY"
        else:
            self._sanitize(node, part, reasons)

    def _sanitize(self, plan: FilePlan, part: Part, reasons: str) -> None:
        sanitizer = sanitizer_for(plan.content_class)
        record = plan.record
        if sanitizer is None:
            self._failed(plan, "UNKNOWN_TYPE", f"no sanitizer for {plan.content_class}")
            return
        options: SanitizeOptions = self.settings.sanitize_options(plan.content_class)
        if self.scanner is not None:
            options = dataclasses.replace(options, antivirus=self.scanner)
        timeout = self.limits.document_timeout
        if self.limits.deadline:
            timeout = min(timeout, self.limits.deadline - time.monotonic())
        if timeout < 1:
            self._failed(plan, "WORKER_TIMEOUT", "the message's time budget is spent")
            return
        options = dataclasses.replace(options, time_limit=timeout)
        try:
            result = self.runner(
                sanitizer.sanitize,
                plan.original,
                plan.original_name,
                part.part_id,
                options,
                timeout=timeout,
                memory_limit_mb=self.limits.document_memory_mb,
            )
        except CannotSanitize as exc:
            self._failed(plan, exc.code, str(exc))
            return
        self.report.findings.extend(result.findings)
        codes_found = {f.code for f in result.findings}
        if "VIRUS_FOUND" in codes_found or "VIRUS_SCAN_UNAVAILABLE" in codes_found:
            # A member of an archive (the archive sanitizer scanned it): the same as a part.
            viruses = [f.detail for f in result.findings if f.code == "VIRUS_FOUND"]
            if viruses:
                self.infected[part.part_id] = ", ".join(viruses)
                self.report.raise_verdict(
                    Verdict.QUARANTINE, f"VIRUS_FOUND: {', '.join(viruses)} in {part.part_id}"
                )
            else:
                failed = next(f for f in result.findings if f.code == "VIRUS_SCAN_UNAVAILABLE")
                self._scan_unavailable(failed.detail)
            record.action = "held"
            record.reason = "VIRUS_FOUND" if viruses else "VIRUS_SCAN_UNAVAILABLE"
            return
        held = sorted(codes_found & POLICY_HOLD_CODES)
        if held:
            # The policy asked for this (e.g. csv_formulas: quarantine): hold, not "failed".
            record.action, record.reason = "held", ",".join(held)
            self.report.raise_verdict(
                Verdict.QUARANTINE, f"attachment policy: {','.join(held)} is held"
            )
            return
        failed_checks = sorted(codes_found & CHECK_FAILED_CODES)
        if failed_checks:
            # Whatever the sanitizer returned: a check that did not finish proves nothing.
            self._failed(plan, ",".join(failed_checks), "a check did not finish")
            return
        if not result.outputs:
            codes = ",".join(sorted(codes_found)) or "SANITIZE_FAILED"
            self._failed(plan, codes, "nothing harmless could be made")
            return
        plan.outputs = tuple(result.outputs)
        changed_urls = self._record_urls(part.part_id, *_urls_changed(result))
        found = sorted(
            {f.code for f in result.findings}
            | set(filter(None, reasons.split(",")))
            | ({changed_urls} if changed_urls else set())
        )
        record.reason = ",".join(found)
        record.action = {"rasterize": "rasterized", "both": "both"}.get(options.mode, "rebuilt")
        first = result.outputs[0]
        if len(result.outputs) == 1 and first.data == plan.original:
            # Inspected and passed on as received (a legacy Office file oletools found clean, a
            # text file with nothing to change): the notice must not say "rebuilt".
            record.action = "checked"
        record.output_filename = first.filename
        record.output_sha256 = hashlib.sha256(first.data).hexdigest()
        record.output_size = len(first.data)

    def _failed(self, plan: FilePlan, code: str, detail: str) -> None:
        record = plan.record
        self.report.add_finding("SANITIZE_FAILED", plan.part_id, f"{code}: {detail}"[:300])
        plan.failure = code
        if self.settings.on_sanitize_failure == "quarantine":
            record.action, record.reason = "held", code
            self.report.raise_verdict(
                Verdict.QUARANTINE, f"attachment could not be made harmless ({code})"
            )
        else:
            record.action, record.reason = "stripped", code

    # -- nested messages -------------------------------------------------------------------

    def _nested(self, part: Part, plan: Plan) -> None:
        record = AttachmentRecord(
            part_id=part.part_id,
            untrusted_filename=part.untrusted_filename,
            declared_type="message/rfc822",
            detected_type="message/rfc822",
            sha256=hashlib.sha256(part.payload).hexdigest(),
            size=len(part.payload),
        )
        self.report.attachments.append(record)
        action = self.settings.action_for("message")
        node = MessagePlan(part.part_id, record, action, original=part.payload)
        plan.nodes.append(node)
        if action == "quarantine":
            record.action, record.reason = "held", "POLICY"
            self.report.raise_verdict(Verdict.QUARANTINE, "attachment policy: message")
            return
        if action == "strip":
            record.action, record.reason = "stripped", "POLICY"
            return
        if self.depth + 1 > self.settings.limits.max_depth:
            self.report.add_finding("LIMIT_DEPTH", part.part_id, "messages nested too deep")
            self.report.raise_verdict(Verdict.QUARANTINE, "LIMIT_DEPTH: nested messages")
            return
        inner = Inspector(
            self.settings,
            self.report,
            self.limits,
            self.runner,
            self.depth + 1,
            self.scanner,
            self.on_scan_unavailable,
            self.mask_passwords,
        )
        node.inner = inner.plan_bytes(part.payload)
        record.action = "rebuilt"
        record.reason = "MESSAGE"


# How the text and HTML-file sanitizers say how many URLs they changed (a note "2 URLs
# defanged", a finding HTML_ATTACHMENT_REBUILT "2 URLs"): read here so that URLs changed in
# attachments are counted like those of the body. tests/gateway/test_notice_truth.py fails if
# either wording changes.
_URL_NOTE = re.compile(r"(\d+) URLs (defanged|removed)")
_URL_DETAIL = re.compile(r"(\d+) URLs")


def _urls_changed(result: SanitizeResult) -> tuple[int, bool]:
    """(URLs a sanitizer changed in an attachment, True if removed rather than defanged)."""
    for note in result.notes:
        match = _URL_NOTE.fullmatch(note)
        if match:
            return int(match.group(1)), match.group(2) == "removed"
    for finding in result.findings:
        if finding.code == "HTML_ATTACHMENT_REBUILT":
            match = _URL_DETAIL.fullmatch(finding.detail)
            if match:
                return int(match.group(1)), False
    return 0, False


def _is_text_body(part: Part, declared_type: str) -> bool:
    return part.declared_type == declared_type and not part.is_attachment


def _unflow(text: str, delete_space: bool = False) -> str:
    """RFC 3676 format=flowed to plain lines, so a URL wrapped by the sender is whole again.

    A flowed line (ending in a space) joins the next one only at the same quote depth
    (section 4.5); the continuation's quote marks are not content. ``delete_space`` is
    DelSp=yes (section 4.2): the soft break's space is not content either."""
    out: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for raw_line in text.split("\n"):
        depth = len(raw_line) - len(raw_line.lstrip(">"))
        line = raw_line[depth:]
        if line.startswith(" "):
            line = line[1:]  # space-stuffing (section 4.4)
        if pending is not None and depth != pending_depth:
            out.append(_quoted(pending, pending_depth))
            pending = None
        content = line if pending is None else pending + line
        if line.endswith(" ") and line.rstrip() != "--":
            pending = content[:-1] if delete_space else content
            pending_depth = depth
        else:
            out.append(_quoted(content, depth))
            pending = None
    if pending is not None:
        out.append(_quoted(pending, pending_depth))
    return "\n".join(out)


def _quoted(line: str, depth: int) -> str:
    return (">" * depth + " " + line) if depth else line


_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/tiff": "tif",
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "text/html": "html",
    "text/calendar": "ics",
    "application/zip": "zip",
}


def _default_name(part: Part, detected_mime: str) -> str:
    extension = _EXTENSIONS.get(detected_mime) or _EXTENSIONS.get(part.declared_type, "bin")
    return f"part-{part.part_id}.{extension}"
