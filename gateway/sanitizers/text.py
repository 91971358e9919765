"""Text attachments (txt, csv, ics, vcf): decode, defang every URL, encode back.

The output keeps the input's character set where it can (a CP932 CSV stays CP932, because
Excel on Japanese Windows opens CSV files as CP932; a UTF-8 file keeps its BOM), so the only
change a reader sees is the defanged URLs. A file with no URL to change is returned byte for
byte. Defanging only ever adds ASCII (``[``, ``]``, ``x``), so re-encoding in the original
charset cannot fail except for charsets Python cannot write the way we read them (EUC-JP with
NEC extensions); those come out as UTF-8, with a ``CHARSET_FALLBACK_UTF8`` finding.

Fail closed: bytes that do not decode as text (U+FFFD needed), NUL bytes or other binary
control characters raise ``CannotSanitize`` (``TEXT_UNDECODABLE``, ``TEXT_BINARY``); the policy
then strips or quarantines the part.

Not done here: parsing CSV/iCalendar/vCard structure (a URL in any field is defanged the same
way; an iCalendar line folded inside a URL is defanged piece by piece, each piece unclickable),
and spreadsheet formula injection in CSV (``=HYPERLINK(...)``, ``=cmd|...``), which is a
finding for the rules engine to add if we decide to.
"""

from __future__ import annotations

import codecs
import re

from gateway.charsets import (
    CHARSET_FALLBACK_UTF8,
    CHARSET_UNDECLARED_8BIT,
    decode_body,
    encode_body,
)
from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult
from gateway.sanitizers.urls import UrlPolicy, defang_text

_CONTENT_TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".ics": "text/calendar",
    ".vcs": "text/calendar",
    ".vcf": "text/vcard",
}
# C0 controls other than tab, LF, FF, CR and ESC (ISO-2022-JP escapes), and DEL.
_BINARY_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_PYTHON_CODECS = {"cp932": "cp932", "euc-jp": "euc_jp", "utf-8": "utf-8", "us-ascii": "ascii"}


class TextSanitizer:
    """See Sanitizer."""

    name = "text"
    description = "Text attachments (txt, csv, ics, vcf): URLs defanged, charset kept"
    handles = frozenset({"text"})

    def __init__(self, url_policy: UrlPolicy | None = None) -> None:
        self.url_policy = url_policy or UrlPolicy()

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        policy = self.url_policy if options.defang_urls else UrlPolicy(mode="keep")
        bom = data.startswith(codecs.BOM_UTF8)
        body = data[len(codecs.BOM_UTF8) :] if bom else data
        decoded = decode_body(body, "utf-8" if bom else None)
        # A file has no charset label to be wrong about: "undeclared" is no news here.
        findings = [
            Finding(f.code, part_id, f.detail)
            for f in decoded.findings
            if f.code != CHARSET_UNDECLARED_8BIT
        ]
        if "\ufffd" in decoded.text and b"\xef\xbf\xbd" not in body:
            raise CannotSanitize("TEXT_UNDECODABLE", f"{filename}: not text in any charset")
        binary = _BINARY_RE.search(decoded.text)
        if binary:
            raise CannotSanitize("TEXT_BINARY", f"{filename}: control character {binary.group()!r}")
        result = defang_text(decoded.text, policy)
        findings.extend(Finding(flag, part_id, "") for flag in result.flags)
        content_type = _content_type(filename)
        if result.count == 0:
            output = OutputFile(data, filename, f"{content_type}; charset={decoded.charset_used}")
            return SanitizeResult((output,), tuple(findings))
        encoded, charset, fallback = _encode_like(result.text, decoded.charset_used)
        if fallback:
            findings.append(Finding(CHARSET_FALLBACK_UTF8, part_id, decoded.charset_used))
        if bom and charset == "utf-8":
            encoded = codecs.BOM_UTF8 + encoded
        output = OutputFile(encoded, filename, f"{content_type}; charset={charset}")
        note = f"{result.count} URLs defanged" if policy.mode == "defang" else ""
        note = f"{result.count} URLs removed" if policy.mode == "remove" else note
        return SanitizeResult((output,), tuple(findings), (note,))


def _encode_like(text: str, charset: str) -> tuple[bytes, str, bool]:
    """Encode in ``charset`` if it can hold every character, else UTF-8 (third item True)."""
    if charset == "iso-2022-jp":
        encoded = encode_body(text, "iso-2022-jp")
        return encoded.data, encoded.charset, encoded.charset != "iso-2022-jp"
    codec = _PYTHON_CODECS.get(charset, charset)
    try:
        return text.encode(codec), charset, False
    except (UnicodeEncodeError, LookupError):
        return text.encode("utf-8"), "utf-8", charset != "utf-8"


def _content_type(filename: str) -> str:
    lowered = filename.lower()
    for suffix, content_type in _CONTENT_TYPES.items():
        if lowered.endswith(suffix):
            return content_type
    return "text/plain"
