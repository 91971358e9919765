"""The one small interface every content sanitizer implements.

A sanitizer is a pure function of bytes: ``sanitize(data, options) -> SanitizeResult``. It
reads untrusted input, writes a harmless rebuilt copy (or none), and reports findings with
evidence. It does no I/O besides its argument, keeps no state between calls, and is safe to run
in a forked child (``gateway.workers.run_isolated``) with a memory and time limit; the pipeline
always runs document sanitizers that way.

Fail closed: a sanitizer that cannot make its input harmless raises ``CannotSanitize(code)``
(or returns ``output=None`` with a finding saying why). It never returns the input unchanged
unless it verified that the input holds no active content.

Content classes name what the policy decides about (``attachments.<class>: <action>`` in
policy YAML). ``gateway.detect`` maps a part's true type to one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, Protocol

from pydantic import Field as Bounded

from gateway import wire
from gateway.antivirus import ScanTarget
from gateway.report import Finding

# What a part is, by its content (never by its name alone). Policies set an action per class.
CONTENT_CLASSES = (
    "pdf",  # application/pdf
    "ooxml",  # docx/xlsx/pptx and their macro-enabled variants
    "ole",  # legacy doc/xls/ppt (CDFV2), also .msg
    "rtf",  # Rich Text Format (can carry OLE objects and exploits)
    "opendocument",  # odt/ods/odp
    "image",  # JPEG, PNG, GIF, BMP, TIFF, WebP
    "svg",  # active content: script, external references
    "archive",  # ZIP (inspectable)
    "encrypted_archive",  # ZIP with encrypted members (PPAP); cannot be inspected
    "other_archive",  # 7z, RAR, tar, gzip, ISO/IMG, CAB...
    "executable",  # PE, ELF, Mach-O, LNK, MSI, Java class/JAR
    "script",  # js, vbs, hta, ps1, bat/cmd, wsf, html with script as an attachment...
    "text",  # plain text attachments: txt, csv, ics, vcf
    "html",  # HTML attachments (not the body)
    "message",  # message/rfc822 attachments: sanitized recursively as a message
    "unknown",  # anything else: stripped by default (fail closed)
)

# Findings that say a check did not finish. A result carrying one delivers no output at all
# (``gateway.inspect`` and the archive sanitizer enforce it, whatever the sanitizer returned):
# a check that failed proves nothing, so the part is stripped or held like any hazard.
CHECK_FAILED_CODES = frozenset({"OLE_CHECK_FAILED", "PDF_TEXT_CHECK_FAILED", "PDF_VERIFY_FAILED"})

# Findings by which a sanitizer says "the policy asks to hold this part" (e.g. ``csv_formulas:
# quarantine``). The part is held and the message quarantined, whatever
# ``on_sanitize_failure`` says: nothing failed, the policy decided. A member of an archive
# carrying one holds the whole archive.
POLICY_HOLD_CODES = frozenset({"CSV_FORMULA_HELD", "PDF_URL_TEXT_HELD", "OLE_HELD_BY_POLICY"})

Action = Literal["rebuild", "rasterize", "both", "strip", "quarantine", "keep"]
ACTIONS: tuple[str, ...] = ("rebuild", "rasterize", "both", "strip", "quarantine", "keep")


@dataclass(frozen=True, slots=True)
class SanitizeOptions:
    """Knobs a policy sets for sanitizers. Plain data: it crosses into worker processes.

    ``member_actions`` applies to members of archives, by content class, as
    ``attachments`` does for top-level parts.
    """

    mode: Action = "rebuild"
    defang_urls: bool = True
    rasterize_dpi: int = 150
    max_pages: int = 300
    max_image_pixels: int = 64_000_000
    archive_max_depth: int = 3
    archive_max_members: int = 1000
    archive_max_total_size: int = 256 * 1024 * 1024
    archive_max_ratio: int = 200
    member_actions: tuple[tuple[str, Action], ...] = ()
    csv_formulas: str = "neutralize"  # neutralize | quarantine (see sanitizers/text.py)
    pdf_url_text: str = "rasterize-pages"  # rasterize-pages | quarantine (see sanitizers/pdf.py)
    # Legacy doc/xls/ppt with active content (see sanitizers/ole.py): convert (to OOXML by
    # LibreOffice, then rebuilt; withheld as before without LibreOffice) | quarantine.
    legacy_office: str = "convert"
    # Seconds this sanitizer run may take (gateway.inspect sets the child's timeout): what
    # starts a program of its own (LibreOffice) stops it before the child is killed.
    time_limit: float = 120.0
    # Where archive members are scanned for known malware (gateway.antivirus); None: off.
    antivirus: ScanTarget | None = None

    def member_action(self, content_class: str, default: Action = "strip") -> Action:
        return dict(self.member_actions).get(content_class, default)


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file a sanitizer produced: the rebuilt copy, or a twin (the image-only PDF)."""

    data: bytes
    filename: str
    content_type: str


@dataclass(frozen=True, slots=True)
class SanitizeResult:
    """``outputs`` are the harmless files to deliver in place of the input (usually one;
    two for PDF mode ``both``; none when nothing harmless could be made). ``findings`` say
    what was found and removed, with evidence."""

    outputs: tuple[OutputFile, ...] = ()
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def output(self) -> bytes | None:
        return self.outputs[0].data if self.outputs else None

    def to_frame(self) -> wire.Frame:
        """What the sanitizer child sends its worker (``gateway.workers.run_isolated``): the
        outputs' names and sizes and the findings as JSON, the outputs' bytes beside it."""
        header = {
            "outputs": [
                {"filename": o.filename, "content_type": o.content_type, "size": len(o.data)}
                for o in self.outputs
            ],
            "findings": [
                {"code": f.code, "part_id": f.part_id, "detail": f.detail} for f in self.findings
            ],
            "notes": list(self.notes),
        }
        return wire.Frame(header, tuple(o.data for o in self.outputs))

    @classmethod
    def from_frame(cls, frame: wire.Frame) -> SanitizeResult:
        """Read back ``to_frame``, checking every type, size and count (the child parsed a
        hostile document). Raises ``wire.WireError``."""
        checked = wire.check(_WireSanitizeResult, frame.header, "sanitize result")
        wire.blob_sizes_match(frame.blobs, [o.size for o in checked.outputs], "sanitize result")
        return cls(
            outputs=tuple(
                OutputFile(data, o.filename, o.content_type)
                for o, data in zip(checked.outputs, frame.blobs, strict=True)
            ),
            findings=tuple(Finding(f.code, f.part_id, f.detail) for f in checked.findings),
            notes=tuple(checked.notes),
        )


class _WireOutput(wire.WireModel):
    # Both end up in the delivered message's part headers: no control character (a CR or LF
    # would let a compromised child write header fields, even MIME structure, of its own).
    filename: Annotated[str, Bounded(max_length=1_000, pattern=r"^[^\x00-\x1f\x7f]*$")]
    content_type: Annotated[
        str,
        Bounded(max_length=255, pattern=r"^[!#-'*+.0-9A-Z^-~-]+/[!#-'*+.0-9A-Z^-~-]+(;[ -~]*)?$"),
    ]
    size: wire.Size


class _WireFinding(wire.WireModel):
    code: wire.Name
    part_id: wire.Name
    detail: wire.Detail = ""


class _WireSanitizeResult(wire.WireModel):
    # A PDF in mode "both" has two outputs; no sanitizer makes more than a few.
    outputs: Annotated[list[_WireOutput], Bounded(max_length=16)]
    findings: Annotated[list[_WireFinding], Bounded(max_length=100_000)]
    notes: Annotated[list[wire.Detail], Bounded(max_length=1_000)]


class Sanitizer(Protocol):
    """See module docstring. ``name`` is kebab-case and unique in ``REGISTRY``."""

    name: str
    description: str
    handles: frozenset[str]  # content classes (see CONTENT_CLASSES)

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult: ...
