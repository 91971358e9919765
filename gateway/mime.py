"""Parse any real-world message into a tree of ``Part``s, within limits.

The parser is Python's ``email`` package with the lenient ``compat32`` policy (it accepts
missing boundaries, bad base64, 8-bit bytes without a charset and duplicate headers, recording
defects instead of failing). On top of it this module:

- numbers parts (``"1"``, ``"1.2"``, ...) so findings and actions can name them;
- decodes each leaf's transfer encoding once (base64, quoted-printable, x-uuencode);
- extracts files encoded in text bodies (uuencode ``begin 644 name`` ... ``end``, BinHex 4.0,
  yEnc: what Thunderbird and Outlook show as attachments of plain text) and the
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
    ``origin`` says where the part came from: ``mime``, ``hidden``, ``tnef``, ``embedded``
    (a text with encoded files in it) or ``uuencode``, ``binhex``, ``yenc`` (such a file).
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


# BinHex 4.0 (RFC 1741): a line "(This file must be converted with BinHex 4.0)", then the
# file between two colons in 64 characters of 6 bits each, run-length encoded with 0x90, made
# of a header (name, Mac type and creator, fork lengths), the data fork and the resource fork,
# each with a CRC. Thunderbird's untyped-text reader makes an attachment of it (RT-07).
_BINHEX_BEGIN = re.compile(rb"^\(This file must be converted with BinHex[^\n]*$", re.M)
_BINHEX_ALPHABET = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
_BINHEX_TEXT = re.compile(rb"[" + re.escape(_BINHEX_ALPHABET) + rb"\s]*")
_BINHEX_AS_BASE64 = bytes.maketrans(
    _BINHEX_ALPHABET, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)
_BINHEX_RUN = 0x90


def _binhex_blocks(text: bytes, limit: int) -> list[tuple[int, int, str, bytes]]:
    """(start, end, file name, data fork) of every BinHex 4.0 file in ``text`` that decodes
    as far as its header. Read as leniently as a client does: a CRC that does not match, a
    missing closing colon or a short data fork still give what is there. ``limit`` bounds
    the run-length expansion (a few bytes of text can claim megabytes)."""
    blocks = []
    position = 0
    while (begin := _BINHEX_BEGIN.search(text, position)) is not None:
        position = begin.end()
        colon = text.find(b":", begin.end())
        if colon < 0 or text[begin.end() : colon].strip():
            continue
        body = _BINHEX_TEXT.match(text, colon + 1)
        assert body is not None  # the pattern matches the empty string
        end = body.end()
        if text[end : end + 1] == b":":
            end += 1
        line_end = _UU_LINE_END.search(text, end)
        if line_end is not None and not text[end : line_end.start()].strip():
            end = line_end.end()
        decoded = _binhex_file(body.group(), limit)
        if decoded is not None:
            name, data = decoded
            blocks.append((begin.start(), end, name, data))
        position = max(end, position)
    return blocks


def _binhex_file(encoded: bytes, limit: int) -> tuple[str, bytes] | None:
    """(name, data fork) of one BinHex body (the characters between the colons), or None
    when it is too short to hold a header."""
    symbols = encoded.translate(None, b" \t\r\n\f\v").translate(_BINHEX_AS_BASE64)
    usable = len(symbols) * 6 // 8
    symbols += b"A" * (-len(symbols) % 4)
    packed = binascii.a2b_base64(symbols)[:usable]
    raw = _unrun(packed, limit)
    if not raw:
        return None
    name_length = raw[0]
    header_length = 1 + name_length + 21  # version, type, creator, flags, two lengths, CRC
    if len(raw) < header_length:
        return None
    name = bytes(raw[1 : 1 + name_length]).decode("mac_roman")
    data_length = int.from_bytes(raw[name_length + 12 : name_length + 16], "big")
    if len(raw) > limit and header_length + data_length > limit:
        # Cut at the limit: what was cut is part of the file a client would write.
        raise MimeLimitExceeded(
            "LIMIT_DECODED_SIZE", "a BinHex file in the text expands beyond the decoded size limit"
        )
    return name, bytes(raw[header_length : header_length + data_length])


def _unrun(packed: bytes, limit: int) -> bytearray:
    """BinHex run-length decoding: 0x90 n repeats the previous byte n-1 more times, 0x90 0
    is a literal 0x90. Stops once ``limit`` bytes are out."""
    out = bytearray()
    position = 0
    while len(out) <= limit:
        marker = packed.find(_BINHEX_RUN, position)
        if marker < 0 or marker + 1 >= len(packed):
            out += packed[position : marker if marker >= 0 else len(packed)]
            break
        out += packed[position:marker]
        count = packed[marker + 1]
        if count == 0:
            out.append(_BINHEX_RUN)
        elif out:
            out += bytes(out[-1:]) * min(count - 1, limit + 1 - len(out))
        position = marker + 2
    return out[: limit + 1]


# yEnc (yenc.org 1.3): "=ybegin ... name=<rest of the line>", an optional "=ypart" line,
# lines of bytes each shifted by 42 ("=" escapes a critical one, shifted by 64 more), and
# "=yend". Thunderbird decodes it out of untyped text too; read to the end of the text when
# "=yend" is missing, and whatever "size" says.
_YENC_BEGIN = re.compile(rb"^=ybegin[ \t]([^\r\n]*)[^\n]*$", re.M)
_YENC_NAME = re.compile(rb"(?:^|[ \t])name=(.*)")
_YENC_ESCAPED = re.compile(rb"=(.)", re.DOTALL)
_YENC_SHIFT = bytes.maketrans(bytes(range(256)), bytes((b - 42) % 256 for b in range(256)))


def _yenc_blocks(text: bytes) -> list[tuple[int, int, str, bytes]]:
    """(start, end, file name, decoded bytes) of every yEnc file in ``text``."""
    blocks = []
    position = 0
    while (begin := _YENC_BEGIN.search(text, position)) is not None:
        name_match = _YENC_NAME.search(begin.group(1))
        name = name_match.group(1).strip().decode("utf-8", "replace") if name_match else ""
        cursor = end = begin.end()
        lines: list[bytes] = []
        first = True
        for match in _UU_LINE_END.finditer(text, cursor):
            line = text[cursor : match.start()]
            cursor = end = match.end()
            if first:  # the begin line's own line end
                first = False
                continue
            if line.startswith(b"=yend"):
                break
            if line.startswith(b"=ypart") and not lines:
                continue
            lines.append(line)
        else:
            if cursor < len(text):
                lines.append(text[cursor:])
                end = len(text)
        encoded = b"".join(lines)
        unescaped = _YENC_ESCAPED.sub(lambda m: bytes([(m.group(1)[0] - 64) % 256]), encoded)
        blocks.append((begin.start(), end, name, unescaped.translate(_YENC_SHIFT)))
        position = max(end, begin.end())
    return blocks


def _embedded_blocks(text: bytes, limit: int) -> list[tuple[int, int, str, str, bytes]]:
    """(start, end, kind, file name, decoded bytes) of every file a mail client would decode
    out of ``text`` (``uuencode``, ``binhex``, ``yenc``), in order; where two overlap, the
    one that starts first is the one a reader sees."""
    found = [(start, end, "uuencode", name, data) for start, end, name, data in _uu_blocks(text)]
    if b"BinHex" in text:
        found += [(s, e, "binhex", name, data) for s, e, name, data in _binhex_blocks(text, limit)]
    if b"=ybegin" in text:
        found += [(s, e, "yenc", name, data) for s, e, name, data in _yenc_blocks(text)]
    found.sort(key=lambda block: block[0])
    kept: list[tuple[int, int, str, str, bytes]] = []
    for block in found:
        if not kept or block[0] >= kept[-1][1]:
            kept.append(block)
    return kept


# Part ids of the files taken out of a text, by how they were encoded ("1.uu1", "1.hqx1").
_EMBEDDED_ID = {"uuencode": "uu", "binhex": "hqx", "yenc": "yenc"}
EMBEDDED_ORIGINS = tuple(_EMBEDDED_ID)


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
        # A leaf: delivery-status fields and attached messages are final as they are; any other
        # leaf may still be a winmail.dat or a text carrying encoded files.
        final = True
        if declared in DELIVERY_STATUS_TYPES:
            content_type, data = declared, _delivery_status_bytes(msg)
        elif declared == "message/rfc822" or msg.is_multipart():
            content_type, charset, data = "message/rfc822", None, _message_bytes(msg.get_payload())
        else:
            content_type, data, final = declared, _leaf_payload(msg), False
        self._count(len(data))
        leaf = Part(
            part_id,
            content_type,
            filename,
            charset,
            disposition,
            content_id,
            data,
            (),
            defects,
            params=params,
        )
        if final:
            return leaf
        if declared in ("application/ms-tnef", "application/vnd.ms-tnef") or (
            filename.lower() == "winmail.dat"
        ):
            return self._tnef(leaf)
        if (
            declared.startswith("text/")
            and not leaf.is_attachment
            and (b"begin" in data or b"BinHex" in data)
        ):
            return self._embedded(leaf)
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

    def _embedded(self, leaf: Part) -> Part:
        """The text without its encoded files, and each file as a part of its own (origin
        ``uuencode``, ``binhex`` or ``yenc``) under a ``multipart/mixed`` of origin
        ``embedded``."""
        files: list[Part] = []
        kept: list[bytes] = []
        position = 0
        numbers = dict.fromkeys(_EMBEDDED_ID, 0)
        budget = max(0, self.limits.max_decoded_size - self.decoded)
        for start, end, kind, name, decoded in _embedded_blocks(leaf.payload, budget):
            kept.append(leaf.payload[position:start])
            position = end
            self._count(len(decoded))
            numbers[kind] += 1
            files.append(
                Part(
                    f"{leaf.part_id}.{_EMBEDDED_ID[kind]}{numbers[kind]}",
                    "application/octet-stream",
                    name,
                    disposition="attachment",
                    payload=decoded,
                    origin=kind,
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
        return Part(leaf.part_id, "multipart/mixed", children=(body, *files), origin="embedded")

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
