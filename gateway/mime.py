"""Parse any real-world message into a tree of ``Part``s, within limits.

The parser is Python's ``email`` package with the lenient ``compat32`` policy (it accepts
missing boundaries, bad base64, 8-bit bytes without a charset and duplicate headers, recording
defects instead of failing). On top of it this module:

- numbers parts (``"1"``, ``"1.2"``, ...) so findings and actions can name them;
- decodes each leaf's transfer encoding once (base64, quoted-printable, x-uuencode);
- extracts uuencoded files hidden in text bodies (``begin 644 name`` ... ``end``) and the
  attachments inside TNEF ``winmail.dat``, as synthetic parts, so they are inspected like any
  other attachment instead of slipping through as "text" or "unknown";
- enforces limits on depth, part count and total decoded size (``MimeLimitExceeded``, whose
  code the pipeline turns into a quarantine);
- splits the raw top-level header block into fields whose bytes are kept exactly, so headers
  that are not content (Message-ID, Date, From, DKIM-Signature...) pass through unchanged.

It does not decode text charsets (``gateway.charsets``), does not judge content
(``gateway.detect``) and does not build output (``gateway.assemble``).
"""

from __future__ import annotations

import binascii
import email
import email.message
import email.policy
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from gateway import wire
from gateway.charsets import decode_filename, decode_header
from gateway.errors import CannotSanitize
from gateway.wire import Frame
from gateway.workers import run_isolated

CRLF = b"\r\n"
# RFC 3464 and RFC 6533: the machine-readable part of a delivery report (a bounce). Header-like
# fields in blocks; a leaf here, read as text.
DELIVERY_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})


@dataclass(frozen=True, slots=True)
class MimeLimits:
    max_depth: int = 20
    max_parts: int = 500
    max_decoded_size: int = 200 * 1024 * 1024


class MimeLimitExceeded(Exception):
    """The message exceeds a structural limit.

    ``code`` is the finding: LIMIT_DEPTH, LIMIT_PARTS or LIMIT_DECODED_SIZE.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Part:
    """One node of the MIME tree as received.

    ``payload`` is the transfer-decoded body of a leaf (empty for multiparts). For
    ``message/rfc822`` it is the enclosed message's bytes, parsed again by whoever recurses.
    ``origin`` says where the part came from: ``mime``, ``uuencode`` or ``tnef``.
    """

    part_id: str
    declared_type: str
    untrusted_filename: str = ""
    declared_charset: str | None = None
    disposition: str = ""
    content_id: str = ""
    payload: bytes = b""
    children: tuple[Part, ...] = ()
    defects: tuple[str, ...] = ()
    origin: str = "mime"
    params: tuple[tuple[str, str], ...] = ()

    @property
    def is_multipart(self) -> bool:
        return self.declared_type.startswith("multipart/")

    @property
    def subtype(self) -> str:
        return self.declared_type.partition("/")[2]

    @property
    def is_attachment(self) -> bool:
        """Meant as a file rather than as the text of the message."""
        return self.disposition == "attachment" or bool(self.untrusted_filename)

    def param(self, name: str) -> str:
        return next((v for k, v in self.params if k == name), "")

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One top-level header field exactly as received (``raw`` includes folding, no CRLF)."""

    name: str
    raw: bytes

    @property
    def untrusted_value(self) -> str:
        """The decoded value (RFC 2047 words, raw 8-bit CP932/EUC-JP/UTF-8)."""
        value = self.raw.split(b":", 1)[1] if b":" in self.raw else b""
        unfolded = re.sub(rb"\r?\n([ \t])", rb"\1", value).strip()
        return decode_header(unfolded.decode("utf-8", "surrogateescape"))


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    headers: tuple[HeaderField, ...]
    root: Part
    defects: tuple[str, ...] = ()
    body_offset: int = 0


_HEADER_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_LINE_END = re.compile(rb"\r\n|\r|\n")


def split_header_block(raw: bytes) -> tuple[list[HeaderField], int]:
    """Split the top-level header fields; return them and the offset where the body starts.

    Follows the same rule as ``email.feedparser``: the header block ends at the first empty
    line, or at the first line that is neither a field nor a continuation (that line then
    belongs to the body, a MissingHeaderBodySeparatorDefect).
    """
    fields: list[HeaderField] = []
    position = 0
    current: list[bytes] = []
    name = ""
    length = len(raw)
    while position < length:
        # CRLF, or a bare CR or LF, as the email parser reads them: a CR-only message must not
        # have its whole body taken for one header line (and copied through as a header).
        match = _LINE_END.search(raw, position)
        line_end = length if match is None else match.end()
        line = raw[position:line_end]
        stripped = line.rstrip(b"\r\n")
        if not stripped:
            position = line_end
            break
        if stripped[:1] in (b" ", b"\t") and current:
            current.append(stripped)
        else:
            match = _HEADER_NAME.match(stripped)
            if match is None:
                break
            if current:
                fields.append(HeaderField(name, CRLF.join(current)))
            name = match.group(1).decode("ascii")
            current = [stripped]
        position = line_end
    if current:
        fields.append(HeaderField(name, CRLF.join(current)))
    return fields, position


# uuencode (POSIX): "begin <mode> <name>", lines of encoded data, "end"; "begin-base64" is
# its base64 form, ended by "====". Mail clients (Thunderbird, MIME-tools) decode a block whose
# end line is missing too, up to the last data line: so do we (issue 11, found by
# tests/differential: such a file used to pass as text and arrive decodable).
_UU_BEGIN = re.compile(rb"^begin(-base64)?[ \t]+[0-7]{1,4}[ \t]+([^\r\n]*?)[ \t]*\r?$", re.M)
_UU_LINE_END = re.compile(rb"\r\n|\r|\n")


def _uu_line(line: bytes) -> bytes | None:
    """One uuencoded line decoded, or None when the line is not one (a length character,
    then the characters of that many bytes; encoders differ in padding, and transports strip
    trailing spaces, which encode zero bits)."""
    if not line or any(c < 0x20 or c > 0x60 for c in line):
        return None
    count = (line[0] - 32) & 63
    needed = (count + 2) // 3 * 4
    if len(line) - 1 > needed + 2:
        return None
    line = line.ljust(needed + 1, b" ")
    try:
        return binascii.a2b_uu(line[: needed + 1])
    except binascii.Error:
        return None


def _uu_blocks(text: bytes) -> list[tuple[int, int, str, bytes]]:
    """(start, end, file name, decoded bytes) of every encoded file in ``text``."""
    blocks = []
    position = 0
    while (begin := _UU_BEGIN.search(text, position)) is not None:
        base64_form = begin.group(1) is not None
        cursor = begin.end()
        end = cursor
        data = bytearray()
        for match in _UU_LINE_END.finditer(text, cursor):
            line = text[cursor : match.start()]
            if cursor == begin.end():  # the begin line's own line end
                cursor = end = match.end()
                continue
            stripped = line.strip()
            if stripped in (b"end", b"===="):
                end = match.end()
                break
            if base64_form:
                try:
                    data += binascii.a2b_base64(stripped, strict_mode=True)
                except (binascii.Error, ValueError):
                    break
            else:
                decoded = _uu_line(line)
                if decoded is None:
                    break
                data += decoded
            cursor = end = match.end()
        name = begin.group(2).strip().decode("utf-8", "replace")
        blocks.append((begin.start(), end, name, bytes(data)))
        position = max(end, begin.end())
    return blocks


class _Walker:
    def __init__(self, limits: MimeLimits) -> None:
        self.limits = limits
        self.parts = 0
        self.decoded = 0

    def _count(self, size: int) -> None:
        self.parts += 1
        self.decoded += size
        if self.parts > self.limits.max_parts:
            raise MimeLimitExceeded("LIMIT_PARTS", f"more than {self.limits.max_parts} parts")
        if self.decoded > self.limits.max_decoded_size:
            raise MimeLimitExceeded(
                "LIMIT_DECODED_SIZE", f"decoded size over {self.limits.max_decoded_size} bytes"
            )

    def part(self, msg: email.message.Message, part_id: str, depth: int) -> Part:
        if depth > self.limits.max_depth:
            raise MimeLimitExceeded("LIMIT_DEPTH", f"nesting deeper than {self.limits.max_depth}")
        declared = (msg.get_content_type() or "text/plain").lower()
        defects = tuple(type(d).__name__ for d in msg.defects)
        filename = _safe(decode_filename, msg)
        disposition = (msg.get_content_disposition() or "").lower()
        params = tuple(
            (str(k).lower(), str(v)) for k, v in (_safe_params(msg) or []) if isinstance(v, str)
        )
        content_id = str(msg.get("Content-ID", "") or "").strip()
        charset = msg.get_content_charset()
        if msg.is_multipart() and declared.startswith("multipart/"):
            self._count(0)
            payload = msg.get_payload()
            children = tuple(
                self.part(child, f"{part_id}.{index}", depth + 1)
                for index, child in enumerate(payload if isinstance(payload, list) else [], 1)
                if isinstance(child, email.message.Message)
            ) + self._hidden_parts(msg, part_id, depth)
            return Part(
                part_id,
                declared,
                filename,
                charset,
                disposition,
                content_id,
                b"",
                children,
                defects,
                params=params,
            )
        if declared in DELIVERY_STATUS_TYPES:
            data = _delivery_status_bytes(msg)
            self._count(len(data))
            return Part(
                part_id,
                declared,
                filename,
                charset,
                disposition,
                content_id,
                data,
                (),
                defects,
                params=params,
            )
        if declared == "message/rfc822" or msg.is_multipart():
            inner = msg.get_payload()
            data = _message_bytes(inner)
            self._count(len(data))
            return Part(
                part_id,
                "message/rfc822",
                filename,
                None,
                disposition,
                content_id,
                data,
                (),
                defects,
                params=params,
            )
        data = _leaf_payload(msg)
        self._count(len(data))
        leaf = Part(
            part_id,
            declared,
            filename,
            charset,
            disposition,
            content_id,
            data,
            (),
            defects,
            params=params,
        )
        if declared in ("application/ms-tnef", "application/vnd.ms-tnef") or (
            filename.lower() == "winmail.dat"
        ):
            return self._tnef(leaf)
        if declared.startswith("text/") and not leaf.is_attachment and b"begin" in data:
            return self._uuencoded(leaf)
        return leaf

    def _hidden_parts(
        self, msg: email.message.Message, part_id: str, depth: int
    ) -> tuple[Part, ...]:
        """Body parts in a multipart's preamble or epilogue.

        Python's parser puts there what follows a premature close delimiter, e.g. when a
        nested multipart reuses its parent's boundary (real malspam does this to hide a ZIP
        from gateways while mail clients still show it). Each such chunk that starts with a
        MIME header is parsed as a part, with origin ``hidden``.
        """
        found: list[Part] = []
        boundary = msg.get_boundary() or ""
        for text in (msg.preamble, msg.epilogue):
            if not text or not _CONTENT_HEADER.search(text):
                continue
            delimiter = re.compile(rf"^--{re.escape(boundary)}(?:--)?[ \t]*\r?$", re.MULTILINE)
            for chunk in delimiter.split(text) if boundary else [text]:
                chunk = chunk.lstrip("\r\n")
                if not _CONTENT_HEADER.match(chunk):
                    continue
                data = chunk.encode("utf-8", "surrogateescape")
                inner = email.message_from_bytes(data, policy=email.policy.compat32)
                index = len(found) + 1
                parsed = self.part(inner, f"{part_id}.hidden{index}", depth + 1)
                found.append(_with_origin(parsed, "hidden"))
        return tuple(found)

    def _uuencoded(self, leaf: Part) -> Part:
        files: list[Part] = []
        kept: list[bytes] = []
        position = 0
        for index, (start, end, name, decoded) in enumerate(_uu_blocks(leaf.payload), 1):
            kept.append(leaf.payload[position:start])
            position = end
            self._count(len(decoded))
            files.append(
                Part(
                    f"{leaf.part_id}.uu{index}",
                    "application/octet-stream",
                    name,
                    disposition="attachment",
                    payload=decoded,
                    origin="uuencode",
                )
            )
        if not files:
            return leaf
        text = b"".join([*kept, leaf.payload[position:]])
        body = Part(
            f"{leaf.part_id}.0",
            leaf.declared_type,
            "",
            leaf.declared_charset,
            leaf.disposition,
            leaf.content_id,
            text,
            (),
            leaf.defects,
            params=leaf.params,
        )
        return Part(leaf.part_id, "multipart/mixed", children=(body, *files), origin="uuencode")

    def _tnef(self, leaf: Part) -> Part:
        """Unpack winmail.dat in an isolated child; on failure keep the opaque leaf (it is
        then stripped, or held, like any file that cannot be made harmless)."""
        try:
            contents: TnefContents = run_isolated(
                _unpack_tnef,
                leaf.payload,
                timeout=TNEF_TIMEOUT,
                memory_limit_mb=TNEF_MEMORY_MB,
                decode=TnefContents.from_frame,
            )
        except CannotSanitize:
            return leaf
        files, html = contents.files, contents.html
        members: list[Part] = []
        if html:
            members.append(
                Part(
                    f"{leaf.part_id}.t0",
                    "text/html",
                    "",
                    None,
                    "attachment",
                    "",
                    html,
                    origin="tnef",
                )
            )
        for index, (name, data) in enumerate(files, 1):
            self._count(len(data))
            members.append(
                Part(
                    f"{leaf.part_id}.t{index}",
                    "application/octet-stream",
                    name,
                    disposition="attachment",
                    payload=data,
                    origin="tnef",
                )
            )
        if not members:
            return leaf
        return Part(
            leaf.part_id,
            "multipart/mixed",
            leaf.untrusted_filename,
            children=tuple(members),
            origin="tnef",
        )


# tnefparse trusts the counts in the file: a multi-valued property claiming four billion values
# makes it loop and allocate for minutes (an 8 KB winmail.dat took 84 s and 2 GB; found by
# tests/fuzz). So it runs in its own child with these limits, as sanitizers do.
TNEF_TIMEOUT = 5.0
TNEF_MEMORY_MB = 256


@dataclass(frozen=True, slots=True)
class TnefContents:
    """What ``_unpack_tnef`` found: files (untrusted name, bytes) and the HTML body. It comes
    back from the child that parsed the stream as a ``gateway.wire`` frame, checked here."""

    files: tuple[tuple[str, bytes], ...]
    html: bytes | None

    def to_frame(self) -> Frame:
        header = {"names": [name for name, _ in self.files], "html": self.html is not None}
        blobs = [data for _, data in self.files]
        if self.html is not None:
            blobs.append(self.html)
        return Frame(header, tuple(blobs))

    @classmethod
    def from_frame(cls, frame: Frame) -> TnefContents:
        checked = wire.check(_WireTnef, frame.header, "tnef")
        expected = len(checked.names) + (1 if checked.html else 0)
        if len(frame.blobs) != expected:
            raise wire.WireError("tnef: the names do not match the byte strings")
        files = tuple(zip(checked.names, frame.blobs[: len(checked.names)], strict=True))
        return cls(files, frame.blobs[-1] if checked.html else None)


class _WireTnef(wire.WireModel):
    names: Annotated[list[wire.Detail], Field(max_length=10_000)]
    html: bool


def _unpack_tnef(data: bytes) -> TnefContents:
    """The files (name, bytes) and the HTML body of a TNEF stream. Runs in an isolated child:
    returns plain data only."""
    import tnefparse  # imported here: only TNEF mail needs it

    tnef = tnefparse.TNEF(data)
    files: list[tuple[str, bytes]] = []
    for index, attachment in enumerate(tnef.attachments, 1):
        name = attachment.long_filename() or attachment.name or f"attachment-{index}"
        if isinstance(name, bytes):
            name = name.decode("cp1252", "replace")
        files.append((str(name).strip("\x00"), bytes(attachment.data or b"")))
    html = tnef.htmlbody if isinstance(tnef.htmlbody, bytes | str) else None
    if isinstance(html, str):
        html = html.encode("utf-8")
    return TnefContents(tuple(files), html or None)


_CONTENT_HEADER = re.compile(r"^content-(?:type|transfer-encoding|disposition):", re.I | re.M)


def _with_origin(part: Part, origin: str) -> Part:
    from dataclasses import replace

    return replace(part, origin=origin)


def _safe(function, msg: email.message.Message) -> str:
    try:
        return function(msg) or ""
    except Exception:
        return ""


def _safe_params(msg: email.message.Message) -> list[tuple[str, object]] | None:
    try:
        return msg.get_params()  # type: ignore[return-value]
    except Exception:
        return None


def _leaf_payload(msg: email.message.Message) -> bytes:
    try:
        data = msg.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    raw = msg.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _delivery_status_bytes(msg: email.message.Message) -> bytes:
    """The fields of a delivery-status part, block after block (Python's parser reads each
    block as a message of its own), lines as they were (no refolding)."""
    blocks = msg.get_payload()
    if not isinstance(blocks, list):
        return _leaf_payload(msg)
    unfolded = email.policy.compat32.clone(linesep="\r\n", max_line_length=0)
    out = []
    for block in blocks:
        if isinstance(block, email.message.Message):
            try:
                out.append(block.as_bytes(policy=unfolded))
            except Exception:
                out.append(block.as_string().encode("utf-8", "surrogateescape"))
    return b"".join(out)


def _message_bytes(inner: object) -> bytes:
    if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
        inner = inner[0]
    if isinstance(inner, email.message.Message):
        try:
            return inner.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
        except Exception:
            try:
                return inner.as_string().encode("utf-8", "surrogateescape")
            except Exception:
                return b""
    if isinstance(inner, str):
        return inner.encode("utf-8", "surrogateescape")
    if isinstance(inner, bytes):
        return inner
    return b""


def parse_message(raw: bytes, limits: MimeLimits | None = None) -> ParsedMessage:
    """Parse ``raw`` (bytes as received) into headers and a part tree.

    Never raises for malformed input (the email package records defects instead); raises
    ``MimeLimitExceeded`` when a structural limit is hit.
    """
    limits = limits or MimeLimits()
    headers, body_offset = split_header_block(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    root = _Walker(limits).part(msg, "1", 0)
    return ParsedMessage(
        headers=tuple(headers),
        root=root,
        defects=tuple(type(d).__name__ for d in msg.defects),
        body_offset=body_offset,
    )


__all__ = [
    "HeaderField",
    "MimeLimitExceeded",
    "MimeLimits",
    "ParsedMessage",
    "Part",
    "parse_message",
    "split_header_block",
]
