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

Spreadsheet formula injection (``=cmd|'/k calc.exe'!A0``, ``=HYPERLINK(…)``): in files a
spreadsheet opens (``.csv``, and ``.tsv``/``.tab``), every cell Excel would evaluate gets a
``'`` in front (``gateway.sanitizers.csvcells``; finding ``CSV_FORMULA_NEUTRALIZED`` with the
cells), or, with the policy's ``sanitize.csv_formulas: quarantine``, the file gets no output
and the finding ``CSV_FORMULA_HELD`` (``gateway.inspect`` holds the message). The charset and
the line endings are kept like for URLs. Other names (``.txt``) open in a text editor and are
not touched.

iCalendar and vCard files are handled property by property (``gateway.sanitizers.calendar``):
folded lines are unfolded first, HTML descriptions become text, inline files are removed and
meeting requests keep their ORGANIZER/ATTENDEE addresses.
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
from gateway.detect import extension_of
from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers import calendar
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult
from gateway.sanitizers.calendar import is_calendar, sanitize_calendar
from gateway.sanitizers.csvcells import neutralize
from gateway.sanitizers.urls import DefangResult, UrlPolicy, defang_text

FINDING_CODES: tuple[str, ...] = (
    "TEXT_UNDECODABLE",  # not text in any charset: no output
    "TEXT_BINARY",  # control characters of binary data: no output
    "CSV_FORMULA_NEUTRALIZED",  # cells a spreadsheet would run as formulas, prefixed with '
    "CSV_FORMULA_HELD",  # such cells, and the policy holds them (csv_formulas: quarantine)
    *calendar.FINDING_CODES,  # iCalendar/vCard: HTML descriptions, inline files
)

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
# Files a spreadsheet opens on a double click, and the delimiter Excel (Japanese locale)
# splits them on.
_SPREADSHEET_DELIMITERS = {"csv": ",", "tsv": "\t", "tab": "\t"}


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
        rewritten = False  # changed for another reason than URLs (calendar HTML, inline files)
        if is_calendar(decoded.text):
            # Property by property (gateway.sanitizers.calendar): folded URLs, X-ALT-DESC HTML,
            # inline files; meeting requests keep their ORGANIZER/ATTENDEE addresses.
            calendar = sanitize_calendar(decoded.text, policy)
            findings.extend(Finding(flag, part_id, "") for flag in calendar.flags)
            findings.extend(Finding(code, part_id, detail) for code, detail in calendar.findings)
            result = DefangResult(calendar.text, calendar.urls, (), ())
            rewritten = bool(calendar.findings)
        else:
            result = defang_text(decoded.text, policy)
            findings.extend(Finding(flag, part_id, "") for flag in result.flags)
        text = result.text
        formulas: tuple[str, ...] = ()
        delimiter = _SPREADSHEET_DELIMITERS.get(extension_of(filename))
        if delimiter is not None:
            neutralized = neutralize(text, delimiter)
            text, formulas = neutralized.text, neutralized.cells
        if formulas:
            more = f"; and {len(formulas) - 5} more" if len(formulas) > 5 else ""
            detail = f"{len(formulas)} cells: {'; '.join(formulas[:5])}{more}"[:300]
            if options.csv_formulas == "quarantine":
                findings.append(Finding("CSV_FORMULA_HELD", part_id, detail))
                return SanitizeResult(findings=tuple(findings))
            findings.append(Finding("CSV_FORMULA_NEUTRALIZED", part_id, detail))
        content_type = _content_type(filename)
        if result.count == 0 and not formulas and not rewritten:
            output = OutputFile(data, filename, f"{content_type}; charset={decoded.charset_used}")
            return SanitizeResult((output,), tuple(findings))
        encoded, charset, fallback = _encode_like(text, decoded.charset_used)
        if fallback:
            findings.append(Finding(CHARSET_FALLBACK_UTF8, part_id, decoded.charset_used))
        if bom and charset == "utf-8":
            encoded = codecs.BOM_UTF8 + encoded
        output = OutputFile(encoded, filename, f"{content_type}; charset={charset}")
        note = f"{result.count} URLs defanged" if policy.mode == "defang" else ""
        note = f"{result.count} URLs removed" if policy.mode == "remove" else note
        if formulas:
            note = f"{note}; {len(formulas)} formula cells neutralized".lstrip("; ")
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
