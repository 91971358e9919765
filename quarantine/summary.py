"""What the quarantine shows about a message without rendering it: headers and a text preview.

Everything here reads hostile bytes and must never raise: a header that cannot be decoded is
shown as its raw text with replacement characters, a part that cannot be decoded is skipped
with a note. Values are plain ``str`` without NULs or lone surrogates (PostgreSQL refuses
both); control and bidi characters are replaced for display by the caller
(``gateway.logs.replace_control_chars``), and HTML is escaped by Jinja's autoescape.

Deliberately not done: rendering HTML, following links, decoding attachments other than text.
The preview of an HTML part is its source text, not a rendering.
"""

from __future__ import annotations

import email
import email.policy
import itertools
from dataclasses import dataclass, field
from email.message import Message

MAX_HEADERS = 200
MAX_HEADER_VALUE = 4000
MAX_PREVIEW_CHARS = 200_000
MAX_PARTS = 500
_FALLBACK_CHARSETS = ("utf-8", "cp932", "euc_jp", "iso2022_jp_ext", "cp1252")


def clean_text(value: str) -> str:
    """Valid UTF-8 text for the database: undo surrogateescape with a charset guess, drop NUL."""
    if any("\udc80" <= c <= "\udcff" for c in value):
        raw = value.encode("utf-8", "surrogateescape")
        for charset in _FALLBACK_CHARSETS:
            try:
                value = raw.decode(charset)
                break
            except (UnicodeDecodeError, LookupError):
                continue
        else:  # pragma: no cover - cp1252 fallback below always decodes
            value = raw.decode("utf-8", "replace")
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "\ufffd")


def _decode_header(message: Message, name: str, raw_value: str) -> str:
    if any("\udc80" <= c <= "\udcff" for c in raw_value):
        # Raw 8-bit in a header (RFC 6532 allows UTF-8; Japanese senders also send Shift_JIS):
        # email's policy would turn every byte into U+FFFD, so guess the charset ourselves.
        return clean_text(" ".join(raw_value.split()))
    try:
        return clean_text(str(message.policy.header_fetch_parse(name, raw_value)))
    except Exception:  # a malformed header must not stop the quarantine
        return clean_text(str(raw_value))


def _header_value(message: Message, name: str) -> str:
    for key, raw_value in message.raw_items():
        if key.lower() == name:
            return _decode_header(message, key, raw_value)
    return ""


@dataclass(frozen=True, slots=True)
class Summary:
    subject: str = ""
    header_from: str = ""
    message_id: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def summarize(raw: bytes) -> Summary:
    """Subject, From, Message-ID and the first ``MAX_HEADERS`` headers, decoded (RFC 2047)."""
    try:
        message = parse(raw)
    except Exception:  # email's parser is lenient; this is belt and braces
        return Summary()
    headers = []
    for name, raw_value in itertools.islice(message.raw_items(), MAX_HEADERS):
        value = _decode_header(message, name, raw_value)
        headers.append((clean_text(name)[:200], value[:MAX_HEADER_VALUE]))
    return Summary(
        subject=_header_value(message, "subject")[:1000],
        header_from=_header_value(message, "from")[:1000],
        message_id=_header_value(message, "message-id")[:1000],
        headers=headers,
    )


@dataclass(frozen=True, slots=True)
class PreviewPart:
    part_id: str
    content_type: str
    filename: str
    size: int
    text: str | None  # None: not text; shown as an attachment line only
    note: str = ""


def _decode_part(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    # Japanese mail declares iso-2022-jp but often uses CP50220 extensions (NEC/IBM rows).
    candidates = [charset]
    if charset.lower() in ("iso-2022-jp", "iso2022_jp"):
        candidates.insert(0, "iso2022_jp_ext")
    if charset.lower() in ("shift_jis", "shift-jis", "sjis", "x-sjis"):
        candidates.insert(0, "cp932")
    candidates += list(_FALLBACK_CHARSETS)
    for candidate in candidates:
        try:
            return clean_text(payload.decode(candidate))
        except (UnicodeDecodeError, LookupError):
            continue
    return clean_text(payload.decode("utf-8", "replace"))  # pragma: no cover


def preview(raw: bytes) -> list[PreviewPart]:
    """Each MIME leaf with its decoded text if it is text/*; bounded in parts and characters."""
    try:
        message = parse(raw)
    except Exception:
        return [PreviewPart("1", "?", "", len(raw), None, "unparseable")]
    out: list[PreviewPart] = []
    budget = MAX_PREVIEW_CHARS

    def walk(part: Message, part_id: str) -> None:
        nonlocal budget
        if len(out) >= MAX_PARTS:
            return
        try:
            content_type = part.get_content_type()
        except Exception:
            content_type = "application/octet-stream"
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                for number, child in enumerate(payload, 1):
                    walk(child, f"{part_id}.{number}" if part_id else str(number))
            return
        try:
            filename = clean_text(part.get_filename() or "")
        except Exception:
            filename = ""
        try:
            body = part.get_payload(decode=True)
            size = len(body) if isinstance(body, bytes) else 0
        except Exception:
            size = 0
        is_attachment = bool(filename) or (part.get_content_disposition() == "attachment")
        text: str | None = None
        note = ""
        if content_type.startswith("text/") and not is_attachment:
            try:
                text = _decode_part(part)
            except Exception:
                text, note = None, "undecodable"
            if text is not None:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
                if len(text) > budget:
                    text, note = text[:budget], "truncated"
                budget -= len(text)
        out.append(PreviewPart(part_id or "1", content_type, filename, size, text, note))

    walk(message, "")
    return out
