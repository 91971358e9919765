"""What the quarantine shows about a message without rendering it: headers and a text preview.

Computed **in the worker**, from the parse the pipeline already made (``summarize_parsed``),
and handed to the main process as plain data with the worker's result (``Summary.to_dict``,
checked again by ``Summary.from_dict``). The main process and the admin UI never parse a held
message: issue 11 measured 73 s of main-process CPU and 465 MB for summarising a 9 MB
message of 900,000 empty parts there, and the web preview used to parse the original on
every page view. The store keeps the summary and the preview; the UI shows what was stored.

Text is decoded with the gateway's own charset layer (``gateway.charsets``), the one the
sanitizers and the notice use: ISO-2022-JP with the CP50220 extensions (丸数字, ㈱, half-width
kana), Shift_JIS read as CP932, EUC-JP, mislabelled and undeclared charsets, RFC 2047 words
split across encoded words. One decoder, so the preview reads like the delivered copy.

Everything here reads hostile bytes and must never raise: a header that cannot be decoded is
shown with replacement characters, a part that cannot be decoded is skipped with a note.
Values are plain ``str`` without NULs or lone surrogates (PostgreSQL refuses both); control
and bidi characters are replaced for display by the caller
(``gateway.logs.replace_control_chars``), and HTML is escaped by Jinja's autoescape.

Deliberately not done: rendering HTML, following links, decoding attachments other than text.
The preview of an HTML part is its source text, not a rendering.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field as Bounded

from gateway import wire
from gateway.charsets import decode_body
from gateway.mime import (
    HeaderField,
    MimeLimitExceeded,
    MimeLimits,
    ParsedMessage,
    Part,
    parse_message,
    split_header_block,
)

MAX_HEADERS = 200
MAX_HEADER_NAME = 200
MAX_HEADER_VALUE = 4000
MAX_FIELD = 1000  # subject, From, Message-ID
MAX_PREVIEW_CHARS = 200_000
MAX_PARTS = 500
MAX_FILENAME = 1000
MAX_NOTE = 200
# Bytes decoded for a preview of N characters: no charset takes more than 4 bytes a character
# (ISO-2022-JP's escape sequences aside, which a little slack covers).
_BYTES_PER_CHAR = 4


_ESCAPED_BYTE_RE = re.compile("[\udc80-\udcff]")


def clean_text(value: str) -> str:
    """Valid UTF-8 text for the database: 8-bit bytes carried as surrogates (Python's
    ``surrogateescape``) decoded with the gateway's charset layer, lone surrogates replaced,
    NUL dropped."""
    if _ESCAPED_BYTE_RE.search(value):
        value = decode_body(value.encode("utf-8", "surrogateescape"), None).text
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "\ufffd")


@dataclass(frozen=True, slots=True)
class PreviewPart:
    """One leaf of the MIME tree: its decoded text if it is a text body, else only a line."""

    part_id: str
    content_type: str
    filename: str
    size: int
    text: str | None  # None: not text; shown as an attachment line only
    note: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """Subject, From, Message-ID, the first ``MAX_HEADERS`` header fields (decoded) and the
    preview parts. ``note`` says why there is no preview, when there is none."""

    subject: str = ""
    header_from: str = ""
    message_id: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    parts: tuple[PreviewPart, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "header_from": self.header_from,
            "message_id": self.message_id,
            "headers": [{"name": name, "value": value} for name, value in self.headers],
            "parts": [preview_part_to_dict(p) for p in self.parts],
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: object) -> Summary:
        """Read back ``to_dict``: strict types, every string, list and number bounded, the
        preview's characters counted; strings cleaned for the database. Raises
        ``wire.WireError`` (``data`` comes from a worker that parsed the message)."""
        checked = wire.check(_WireSummary, data, "summary")
        total = sum(len(p.text or "") for p in checked.parts)
        if total > MAX_PREVIEW_CHARS:
            raise wire.WireError(f"summary: preview of {total} characters")
        return cls(
            subject=clean_text(checked.subject),
            header_from=clean_text(checked.header_from),
            message_id=clean_text(checked.message_id),
            headers=tuple((clean_text(h.name), clean_text(h.value)) for h in checked.headers),
            parts=tuple(
                PreviewPart(
                    clean_text(p.part_id),
                    clean_text(p.content_type),
                    clean_text(p.filename),
                    p.size,
                    None if p.text is None else clean_text(p.text),
                    clean_text(p.note),
                )
                for p in checked.parts
            ),
            note=clean_text(checked.note),
        )


def preview_part_to_dict(part: PreviewPart) -> dict[str, Any]:
    return {
        "part_id": part.part_id,
        "content_type": part.content_type,
        "filename": part.filename,
        "size": part.size,
        "text": part.text,
        "note": part.note,
    }


def preview_parts_from_dict(data: object) -> tuple[PreviewPart, ...]:
    """The ``parts`` of a stored summary (the store keeps them as JSON)."""
    empty = Summary().to_dict()
    return Summary.from_dict({**empty, "parts": data}).parts


class _WirePart(wire.WireModel):
    part_id: Annotated[str, Bounded(max_length=MAX_NOTE)]
    content_type: Annotated[str, Bounded(max_length=MAX_NOTE)]
    filename: Annotated[str, Bounded(max_length=MAX_FILENAME)]
    size: wire.Size
    text: Annotated[str, Bounded(max_length=MAX_PREVIEW_CHARS)] | None
    note: Annotated[str, Bounded(max_length=MAX_NOTE)]


class _WireHeader(wire.WireModel):
    name: Annotated[str, Bounded(max_length=MAX_HEADER_NAME)]
    value: Annotated[str, Bounded(max_length=MAX_HEADER_VALUE)]


class _WireSummary(wire.WireModel):
    subject: Annotated[str, Bounded(max_length=MAX_FIELD)]
    header_from: Annotated[str, Bounded(max_length=MAX_FIELD)]
    message_id: Annotated[str, Bounded(max_length=MAX_FIELD)]
    headers: Annotated[list[_WireHeader], Bounded(max_length=MAX_HEADERS)]
    parts: Annotated[list[_WirePart], Bounded(max_length=MAX_PARTS)]
    note: Annotated[str, Bounded(max_length=MAX_NOTE)]


# --- computing a summary (in a worker) -------------------------------------------------------

# An attached message's own parse, and those of the messages attached to it, by part id.
NestedMessages = Mapping[str, tuple[ParsedMessage, "NestedMessages"]]


def _field_value(header: HeaderField) -> str:
    try:
        return clean_text(header.untrusted_value)
    except Exception:  # a malformed field must not stop the quarantine
        return clean_text(header.raw.decode("utf-8", "replace"))


def _header_summary(headers: tuple[HeaderField, ...] | list[HeaderField]) -> dict[str, Any]:
    decoded = [
        (clean_text(h.name)[:MAX_HEADER_NAME], _field_value(h)[:MAX_HEADER_VALUE])
        for h in itertools.islice(headers, MAX_HEADERS)
    ]

    def first(name: str) -> str:
        for header in headers:
            if header.name.lower() == name:
                return _field_value(header)[:MAX_FIELD]
        return ""

    return {
        "subject": first("subject"),
        "header_from": first("from"),
        "message_id": first("message-id"),
        "headers": tuple(decoded),
    }


def summarize_headers(raw: bytes, note: str) -> Summary:
    """Only the header block (no MIME parse), for a message whose parts could not be read
    (``note`` says why, e.g. ``LIMIT_PARTS``)."""
    headers, _ = split_header_block(raw)
    return Summary(**_header_summary(headers), note=note[:MAX_NOTE])


def summarize_parsed(parsed: ParsedMessage, nested: NestedMessages | None = None) -> Summary:
    """The summary of a message the pipeline parsed. ``nested`` gives the parses of attached
    messages (``message/rfc822`` parts), whose leaves are listed as ``outer/inner`` ids."""
    walker = _PreviewWalker()
    walker.walk(parsed.root, "", nested or {})
    return Summary(**_header_summary(parsed.headers), parts=tuple(walker.parts))


def summarize(raw: bytes, limits: MimeLimits | None = None) -> Summary:
    """Parse ``raw`` and summarise it: for tests, the CLI and a worker without a parse.

    This is content work on hostile bytes: never call it in the main process."""
    try:
        parsed = parse_message(raw, limits or MimeLimits(max_parts=MAX_PARTS))
    except MimeLimitExceeded as exc:
        return summarize_headers(raw, exc.code)
    except Exception as exc:  # the parser records defects; this is belt and braces
        return summarize_headers(raw, f"unparseable: {type(exc).__name__}")
    return summarize_parsed(parsed)


class _PreviewWalker:
    def __init__(self) -> None:
        self.parts: list[PreviewPart] = []
        self.budget = MAX_PREVIEW_CHARS

    def walk(self, part: Part, prefix: str, nested: NestedMessages) -> None:
        if len(self.parts) >= MAX_PARTS:
            return
        if part.is_multipart:
            for child in part.children:
                self.walk(child, prefix, nested)
            return
        part_id = f"{prefix}{part.part_id}"
        filename = clean_text(part.untrusted_filename)[:MAX_FILENAME]
        content_type = clean_text(part.declared_type)[:MAX_NOTE]
        note = "" if part.origin == "mime" else part.origin  # uuencode, tnef, hidden
        text: str | None = None
        if part.declared_type.startswith("text/") and not part.is_attachment:
            text, truncated = self._text(part)
            note = "truncated" if truncated else note
        self.parts.append(
            PreviewPart(part_id, content_type, filename, len(part.payload), text, note)
        )
        inner = nested.get(part.part_id)
        if part.declared_type == "message/rfc822" and inner is not None:
            parsed, deeper = inner
            self.walk(parsed.root, f"{part_id}/", deeper)

    def _text(self, part: Part) -> tuple[str, bool]:
        limit = self.budget * _BYTES_PER_CHAR + 16
        payload = part.payload[:limit]
        try:
            text = clean_text(decode_body(payload, part.declared_charset).text)
        except Exception:  # decode_body never raises; belt and braces for the quarantine
            text = clean_text(payload.decode("utf-8", "replace"))
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        truncated = len(part.payload) > limit or len(text) > self.budget
        text = text[: self.budget]
        self.budget -= len(text)
        return text, truncated
