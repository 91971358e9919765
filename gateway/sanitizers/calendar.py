"""iCalendar (RFC 5545) and vCard (RFC 6350) text: URLs defanged property by property.

A calendar or contact file is read as its content lines, unfolded first (a URL folded over
two lines is one URL again, RFC 5545 section 3.1), then each property is treated by what it
is:

- text and URI values (``DESCRIPTION``, ``SUMMARY``, ``LOCATION``, ``COMMENT``, ``URL``,
  ``ATTACH``, ``CONTACT``, ``X-*``...) have every URL defanged, with the same defanger as
  message text (``gateway.sanitizers.urls``);
- ``X-ALT-DESC;FMTTYPE=text/html`` (Outlook shows it as the event's description) is
  converted to text like an HTML body (``html_to_text``: no markup, links written out and
  defanged) and removed; its text becomes the ``DESCRIPTION`` when there is none (RT-19);
- inline binary values (``ATTACH;VALUE=BINARY``, vCard ``PHOTO``/``LOGO``/``SOUND``/``KEY``
  with ``ENCODING=b``) are files hidden in text, never inspected here: removed
  (``CALENDAR_BINARY_REMOVED``);
- calendar addresses are kept as written when they are a plain ``mailto:`` address:
  ``ORGANIZER``, ``ATTENDEE`` and their ``SENT-BY``, ``DELEGATED-TO``, ``DELEGATED-FROM``
  and ``MEMBER`` parameters, and vCard ``EMAIL``. They are protocol fields, not links:
  Outlook and Thunderbird send the reply to a meeting request to the ``ORGANIZER`` and
  find the recipient among the ``ATTENDEE`` lines, so a defanged one breaks every outside
  invitation (RT-12). A mail address fetches nothing when shown; the rule that defangs
  mail addresses in text exists for addresses a person would click in prose, and those in
  ``DESCRIPTION`` still are. Anything else in those fields (another scheme, a display
  trick) is defanged like text.

Lines are written back folded at 75 octets without splitting a UTF-8 sequence, CRLF-ended.
Not done: checking that the calendar is valid (a client that rejects it rejects the copy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.sanitizers.html import html_to_text
from gateway.sanitizers.urls import UrlPolicy, defang_text

FINDING_CODES: tuple[str, ...] = (
    "CALENDAR_HTML_CONVERTED",  # X-ALT-DESC HTML turned into text (the DESCRIPTION)
    "CALENDAR_BINARY_REMOVED",  # an inline file (ATTACH;VALUE=BINARY, PHOTO;ENCODING=b) removed
)

_START = re.compile(r"^\ufeff?\s*BEGIN:(VCALENDAR|VCARD)\s*$", re.IGNORECASE | re.MULTILINE)
_ADDRESS_PROPERTIES = frozenset({"ORGANIZER", "ATTENDEE"})
_ADDRESS_PARAMETERS = frozenset({"SENT-BY", "DELEGATED-TO", "DELEGATED-FROM", "MEMBER"})
_BINARY_PROPERTIES = frozenset({"ATTACH", "PHOTO", "LOGO", "SOUND", "KEY"})
# A mail address as calendars write it: mailto:local@domain, nothing else around it.
_MAILTO = re.compile(r"(?i)mailto:[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}")
_CONTENT_LINE = re.compile(
    r'^([A-Za-z0-9-]+)((?:;[^:;"]+=(?:"[^"]*"|[^:;"]*)(?:,(?:"[^"]*"|[^:;,"]*))*)*):'
)
# Markup in a text value (any tag or comment start): shown as HTML by some clients.
_MARKUP = re.compile(r"<\s*[A-Za-z!/?]")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}")


@dataclass(frozen=True, slots=True)
class CalendarResult:
    text: str
    urls: int  # URLs changed
    flags: tuple[str, ...]  # URL_* flags of the defanger
    findings: tuple[tuple[str, str], ...]  # (code, detail)


def is_calendar(text: str) -> bool:
    """Whether ``text`` is an iCalendar or vCard object (its first content line says so)."""
    return _START.match(text[:200]) is not None


def _unfold(text: str) -> list[str]:
    return re.sub(r"\r?\n[ \t]", "", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")


def _fold(line: str) -> str:
    """RFC 5545 3.1: lines of at most 75 octets, continued with CRLF and a space."""
    out: list[str] = []
    current, size = "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        limit = 75 if not out else 74
        if size + width > limit:
            out.append(current)
            current, size = "", 0
        current += char
        size += width
    out.append(current)
    return "\r\n ".join(out)


def _split(line: str) -> tuple[str, list[str], str] | None:
    """(name, parameters, value) of a content line; None for a line that is not one."""
    match = re.match(
        r'^([A-Za-z0-9-]+)((?:;[^:;"]+=(?:"[^"]*"|[^:;"]*)(?:,(?:"[^"]*"|[^:;,"]*))*)*):', line
    )
    if match is None:
        return None
    params = re.findall(r';([^;:"]+=(?:"[^"]*"|[^:;"]*)(?:,(?:"[^"]*"|[^:;,"]*))*)', match.group(2))
    return match.group(1), params, line[match.end() :]


def _param_value(params: list[str], name: str) -> str:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().upper() == name:
            return value.strip('"')
    return ""


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


class _Defanger:
    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self.count = 0
        self.flags: list[str] = []

    def text(self, value: str) -> str:
        result = defang_text(value, self.policy)
        self.count += result.count
        self.flags.extend(result.flags)
        return result.text


def sanitize_calendar(text: str, policy: UrlPolicy) -> CalendarResult:
    """See module docstring. Pure; bounded by the size of ``text``."""
    defang = _Defanger(policy)
    findings: list[tuple[str, str]] = []
    out: list[str] = []
    html_texts: list[tuple[int, str]] = []  # (index in out of the component start, text)
    component_starts: list[int] = []
    has_description: list[bool] = []
    for line in _unfold(text):
        if not line:
            continue
        parsed = _split(line)
        if parsed is None:
            out.append(_fold(defang.text(line)))
            continue
        name, params, value = parsed
        upper = name.upper()
        if upper == "BEGIN":
            component_starts.append(len(out) + 1)
            has_description.append(False)
        if upper == "END" and component_starts:
            start = component_starts.pop()
            described = has_description.pop()
            for index, html_text in html_texts:
                if index == start and not described and html_text:
                    out.append(_fold(f"DESCRIPTION:{_escape(html_text)}"))
            html_texts = [(i, h) for i, h in html_texts if i != start]
        if upper == "DESCRIPTION" and has_description:
            has_description[-1] = True
        binary = _param_value(params, "VALUE").upper() == "BINARY" or _param_value(
            params, "ENCODING"
        ).upper() in ("B", "BASE64")
        if upper in _BINARY_PROPERTIES and binary:
            findings.append(("CALENDAR_BINARY_REMOVED", f"{upper} ({len(value)} characters)"))
            continue
        if upper == "X-ALT-DESC" or (
            upper.startswith("X-") and "html" in _param_value(params, "FMTTYPE").lower()
        ):
            converted = html_to_text(_unescape(value), defang.policy)
            defang.count += getattr(converted, "urls_defanged", 0)
            html_texts.append((component_starts[-1] if component_starts else 0, converted.text))
            findings.append(("CALENDAR_HTML_CONVERTED", upper))
            continue
        kept_params = [_param(p, defang) for p in params]
        address = (upper in _ADDRESS_PROPERTIES and _MAILTO.fullmatch(value.strip())) or (
            upper == "EMAIL" and _PLAIN_ADDRESS.fullmatch(value.strip())
        )
        if address:
            new_value = value
        elif _MARKUP.search(_unescape(value)):
            converted = html_to_text(_unescape(value), defang.policy)
            defang.count += getattr(converted, "urls_defanged", 0)
            findings.append(("CALENDAR_HTML_CONVERTED", upper))
            new_value = _escape(converted.text.strip())
        else:
            new_value = _escape_like(value, defang)
        head = ";".join([name, *kept_params])
        out.append(_fold(f"{head}:{new_value}"))
    text_out = "\r\n".join(out) + "\r\n"
    return CalendarResult(text_out, defang.count, tuple(defang.flags), tuple(findings))


def _param(param: str, defang: _Defanger) -> str:
    key, _, value = param.partition("=")
    if key.strip().upper() in _ADDRESS_PARAMETERS:
        addresses = [v.strip('"') for v in value.split(",")]
        if all(_MAILTO.fullmatch(a) for a in addresses):
            return param
    if key.strip().upper() in ("CN", "ALTREP", "DIR") or "://" in value or "." in value:
        return f"{key}={defang.text(value)}"
    return param


def _escape_like(value: str, defang: _Defanger) -> str:
    """Defang the unescaped text, escape it again (so ``\\,`` and ``\\n`` stay as written)."""
    changed = defang.text(_unescape(value))
    if changed == _unescape(value):
        return value
    return _escape(changed)
