"""One reading of a message's framing: is it unambiguous, and if not, one canonical form of it.

Mail readers disagree about malformed framing. Python's ``email`` ends the header block at
``Content-Type : multipart/mixed`` (space before the colon) and sees one text part; Node
mailparser, Thunderbird and Dovecot read the same line as the Content-Type and show an
attachment. Two Content-Type fields, a malformed type (``multipart/mixed/``), a line without a
colon among the fields, a bare CR, a NUL or an 8-bit byte in a field name, two ``boundary``
parameters, a ``boundary*`` (RFC 2231) beside a plain one: each is read one way by one parser
and another way by another (``tests/differential`` runs five of them). A gateway that inspects
one reading and delivers the bytes to a client that has another has inspected nothing.

``examine(raw)`` reads the message with a strict grammar, at every level of the MIME tree:

- header blocks (RFC 5322 section 2.2): a field name of printable ASCII up to the colon, no
  whitespace before the colon, continuation lines with content, no other line before the empty
  line that ends the block, no line over 998 octets;
- the structural fields (RFC 2045): at most one Content-Type, Content-Transfer-Encoding,
  Content-Disposition and MIME-Version per block; a Content-Type of ``type/subtype`` and
  well-formed parameters, no ``boundary`` or ``charset`` given twice (plain or RFC 2231
  forms), a valid boundary (RFC 2046 section 5.1.1) whose delimiter lines are exact; a known
  transfer encoding, and on a multipart or message only an identity one;
- the whole message: no bare CR, no NUL.

It returns a ``Framing``: every ``Ambiguity`` found (a finding code from ``FINDING_CODES``),
and ``canonical``: the message with every header block rewritten in one reading, the reading
that shows our inspection the most structure (a field with a space before its colon is that
field; of two Content-Type fields the one that makes parts; of two boundaries the one with
more delimiter lines), CRLF line ends throughout. The pipeline parses ``canonical`` instead of
the original when the original is ambiguous, so what is inspected is what is rebuilt, and the
rebuilt output is unambiguous by construction.

``Framing.verbatim`` is the proof the byte-for-byte paths need: the message is unambiguous
*and* in the form every transport and reader keeps as it is: CRLF lines of at most 998
octets, base64 and quoted-printable bodies that decode strictly (every decoder gives the same
bytes), text in a charset every reader decodes alike, and no file in a text part that a
client would decode out of it (uuencode, yEnc, BinHex: Thunderbird shows those as
attachments). ``Framing.not_verbatim`` says why not, for the log.

This module reads framing only: it does not decode charsets (``gateway.charsets``), judge
content (``gateway.detect``) or build output (``gateway.assemble``). It is bounded by the
same ``MimeLimits`` as ``gateway.mime`` and raises ``MimeLimitExceeded`` like it.
"""

from __future__ import annotations

import binascii
import bisect
import itertools
import re
from dataclasses import dataclass, field

from gateway.mime import MimeLimitExceeded, MimeLimits

# Finding codes (UPPER_SNAKE, stable): one per kind of ambiguity.
MIME_AMBIGUOUS_HEADER = "MIME_AMBIGUOUS_HEADER"
MIME_DUPLICATE_FIELD = "MIME_DUPLICATE_FIELD"
MIME_DUPLICATE_PARAMETER = "MIME_DUPLICATE_PARAMETER"
MIME_MALFORMED_TYPE = "MIME_MALFORMED_TYPE"
MIME_AMBIGUOUS_BOUNDARY = "MIME_AMBIGUOUS_BOUNDARY"
MIME_AMBIGUOUS_ENCODING = "MIME_AMBIGUOUS_ENCODING"
MIME_BARE_CR = "MIME_BARE_CR"
MIME_NUL = "MIME_NUL"

FINDING_CODES: tuple[str, ...] = (
    MIME_AMBIGUOUS_HEADER,
    MIME_DUPLICATE_FIELD,
    MIME_DUPLICATE_PARAMETER,
    MIME_MALFORMED_TYPE,
    MIME_AMBIGUOUS_BOUNDARY,
    MIME_AMBIGUOUS_ENCODING,
    MIME_BARE_CR,
    MIME_NUL,
)

# RFC 2045 section 6.1; anything else is read as identity by some decoders and not others.
TRANSFER_ENCODINGS = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})
IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
STRUCTURAL_FIELDS = (
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "mime-version",
)
# Parameters that decide structure or decoding; one value each (RFC 2045 section 5.1).
STRUCTURAL_PARAMETERS = ("boundary", "charset")
# Charsets every reader decodes alike, each with the standard codec that must decode the text
# strictly: the CP50220 extensions of ISO-2022-JP (circled numbers, half-width kana) and the
# carriers' emoji in Shift_JIS are read one way by one client and dropped or garbled by
# another. Text in another charset, or one that needs such an extension, may still be
# delivered, rebuilt as UTF-8 from our decoding, but never byte for byte.
VERBATIM_CHARSETS: dict[str, str] = {
    "": "ascii",  # RFC 2045 section 5.2: no charset means US-ASCII
    "us-ascii": "ascii",
    "ascii": "ascii",
    "utf-8": "utf-8",
    "iso-2022-jp": "iso2022_jp",
    "shift_jis": "shift_jis",
    "cp932": "cp932",
    "windows-31j": "cp932",
    "euc-jp": "euc_jp",
    **{f"iso-8859-{n}": f"iso8859_{n}" for n in (*range(1, 11), 13, 14, 15, 16)},
    **{f"windows-{n}": f"cp{n}" for n in range(1250, 1259)},
}
MAX_LINE = 998  # octets, without CRLF (RFC 5322 section 2.1.1)

_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")
_SPACED_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_TOKEN = rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_MEDIA_TYPE = re.compile(rb"[ \t]*(" + _TOKEN + rb")/(" + _TOKEN + rb")[ \t]*(;.*)?", re.DOTALL)
_LENIENT_TYPE = re.compile(rb"(" + _TOKEN + rb")[ \t]*/[ \t]*(" + _TOKEN + rb")")
_PARAMETER = re.compile(
    rb"[ \t]*;[ \t]*(?:(" + _TOKEN + rb')[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\x00-\x20\x7f;"()]+))?',
    re.DOTALL,
)
_TRAILING = re.compile(rb"[ \t;]*")
_STRICT_TOKEN = re.compile(_TOKEN)
_SECTION = re.compile(r"([^*]+)(?:\*([0-9]+))?(\*)?")
# RFC 2046 section 5.1.1: 1-70 bchars, the last one not a space.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# RFC 2045 section 6.7: printable ASCII but "=", space and tab literal, the rest encoded;
# mailparse drops a literal control character that Python's email keeps (found by tests/fuzz).
_QP_LINE = re.compile(rb"(?:[\t\x20-\x3c\x3e-\x7e]|=[0-9A-Fa-f]{2})*=?")
# Files a mail client decodes out of plain text (Thunderbird's "untyped text" reader):
# uuencode and its base64 variant, yEnc, BinHex 4.0.
_EMBEDDED_FILE = re.compile(
    rb"^(?:begin(?:-base64)?[ \t]+[0-7]{1,4}[ \t]+\S|=ybegin[ \t]"
    rb"|\(This file must be converted with BinHex)",
    re.MULTILINE,
)
_EMBEDDED_FILE_TEXT = re.compile(
    r"^(?=begin(?:-base64)?[ \t]+[0-7]{1,4}[ \t]|=ybegin[ \t]"
    r"|\(This file must be converted with BinHex)",
    re.MULTILINE,
)
_DASHES = re.compile(rb"--")
_BOM = b"\xef\xbb\xbf"
_MIME_LOOKING = re.compile(rb"content-(?:type|transfer-encoding|disposition)[ \t]*:", re.I)


@dataclass(frozen=True, slots=True)
class Ambiguity:
    """One place where readers may see different structure. ``part_id`` numbers parts as
    ``gateway.mime`` does ("1", "1.2"); ``detail`` is evidence, ASCII."""

    code: str
    part_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class Framing:
    """The outcome of ``examine``. See the module docstring."""

    ambiguities: tuple[Ambiguity, ...]
    canonical: bytes
    not_verbatim: str = ""

    @property
    def ambiguous(self) -> bool:
        return bool(self.ambiguities)

    @property
    def verbatim(self) -> bool:
        """The proof: these bytes are read as one structure by every reader and kept as they
        are by every transport, so they may be delivered as received."""
        return not self.ambiguities and not self.not_verbatim

    def codes(self) -> set[str]:
        return {a.code for a in self.ambiguities}


@dataclass(slots=True)
class _Field:
    name: bytes  # as written, without the colon
    lines: list[bytes]  # the first line (``name:value``) and its continuations

    @property
    def lower(self) -> str:
        return self.name.decode("ascii", "replace").lower()

    @property
    def value(self) -> bytes:
        """Unfolded value (RFC 5322 section 2.2.3: CRLF before WSP removed)."""
        first = self.lines[0]
        return b"".join([first[first.index(b":") + 1 :], *self.lines[1:]])

    @property
    def display(self) -> str:
        return self.name.decode("ascii", "replace")


@dataclass(slots=True)
class _MediaType:
    maintype: str
    subtype: str
    params: list[tuple[str, bytes]] = field(default_factory=list)
    well_formed: bool = True

    @property
    def full(self) -> str:
        return f"{self.maintype}/{self.subtype}"

    def plain(self, name: str) -> list[bytes]:
        """Values of the plain (non-RFC 2231) parameter ``name``, unquoted."""
        return [_unquote(v) for k, v in self.params if k == name]


def _unquote(value: bytes) -> bytes:
    if len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
        return re.sub(rb"\\(.)", rb"\1", value[1:-1], flags=re.DOTALL)
    return value


def parse_media_type(value: bytes) -> _MediaType:
    """``type/subtype *(; attribute=value)`` read strictly (RFC 2045 section 5.1, no comments);
    ``well_formed`` is False when it is not, and then the fields hold the lenient reading
    (RFC 2045 section 5.2: text/plain when no type can be found at all)."""
    strict = _MEDIA_TYPE.fullmatch(value)
    if strict is not None:
        params, rest_ok = _parameters(strict.group(3) or b"")
        return _MediaType(
            strict.group(1).decode().lower(),
            strict.group(2).decode().lower(),
            params,
            well_formed=rest_ok,
        )
    head, _, tail = value.partition(b";")
    params, _ = _parameters(b";" + tail if tail else b"")
    lenient = _LENIENT_TYPE.search(head)
    if re.search(rb"multipart", head, re.I) and any(k == "boundary" for k, _ in params):
        # What mailparser, MIME-tools and mailparse make of "multipart/mixed/" or
        # "multipart mixed": parts. Read it so, and every part is inspected.
        subtype = "mixed"
        if lenient is not None and lenient.group(1).lower() == b"multipart":
            subtype = lenient.group(2).decode().lower()
        return _MediaType("multipart", subtype, params, well_formed=False)
    if lenient is not None:
        return _MediaType(
            lenient.group(1).decode().lower(),
            lenient.group(2).decode().lower(),
            params,
            well_formed=False,
        )
    return _MediaType("text", "plain", params, well_formed=False)


def _parameters(text: bytes) -> tuple[list[tuple[str, bytes]], bool]:
    """``; a=b; c="d"`` → ([("a", b"b"), ("c", b'"d"')], all well-formed?)."""
    params: list[tuple[str, bytes]] = []
    position = 0
    ok = True
    while position < len(text):
        match = _PARAMETER.match(text, position)
        if match is None or match.end() == position:
            break
        if match.group(1) is not None:
            params.append((match.group(1).decode().lower(), match.group(2)))
        position = match.end()
    if _TRAILING.fullmatch(text, position) is None:
        ok = False
    return params, ok


def _parameter_problems(params: list[tuple[str, bytes]]) -> list[tuple[str, str, str]]:
    """Duplicated structural parameters and broken RFC 2231 sections, as (parameter name,
    code, detail)."""
    problems: list[tuple[str, str, str]] = []
    forms: dict[str, list[tuple[int | None, bool]]] = {}
    for attribute, _ in params:
        match = _SECTION.fullmatch(attribute)
        if match is None:
            continue
        section = int(match.group(2)) if match.group(2) is not None else None
        forms.setdefault(match.group(1), []).append((section, bool(match.group(3))))
    for name, seen in forms.items():
        plain = [s for s in seen if s == (None, False)]
        extended = [s for s in seen if s != (None, False)]
        if name in STRUCTURAL_PARAMETERS and (len(plain) > 1 or (plain and extended)):
            problems.append((name, MIME_DUPLICATE_PARAMETER, f"{name} given {len(seen)} times"))
            continue
        sections = sorted(s for s, _ in extended if s is not None)
        whole = [s for s, _ in extended if s is None]
        if (whole and sections) or len(whole) > 1 or sections != list(range(len(sections))):
            code = (
                MIME_DUPLICATE_PARAMETER if name in STRUCTURAL_PARAMETERS else (MIME_MALFORMED_TYPE)
            )
            problems.append((name, code, f"{name}: RFC 2231 sections {sorted(seen, key=str)}"))
    return problems


def _choice_rank(media: _MediaType) -> int:
    """Of several Content-Type fields, the one that shows inspection the most structure."""
    if media.maintype == "multipart" and media.plain("boundary"):
        return 3
    if media.maintype == "message":
        return 2
    return 0 if media.maintype == "text" else 1


def _encoding_rank(value: str) -> int:
    return {"base64": 2, "quoted-printable": 1}.get(value, 0)


class _Reader:
    """Walks the lines of one message; collects ambiguities and the canonical lines.

    Header blocks and delimiter lines are written anew; the bodies of leaves, preambles and
    epilogues are copied with their line ends as received (``verbatim``), because Python's
    parser keeps those inside a payload and the inspection must read what it always read."""

    def __init__(self, raw: bytes, limits: MimeLimits) -> None:
        self.raw = raw
        # bytes.splitlines ends lines at CRLF, CR and LF: Python's email parser's rule.
        self.lines = raw.splitlines()
        # Offset of each line (and of its end, the line end excluded), for verbatim copies.
        self.starts = [0, *itertools.accumulate(map(len, raw.splitlines(keepends=True)))]
        self.ends = [
            start + len(line) for start, line in zip(self.starts, self.lines, strict=False)
        ]
        self.limits = limits
        self.found: list[Ambiguity] = []
        self.not_verbatim: list[str] = []
        self.out: list[bytes] = []
        self.parts = 0

    def note(self, code: str, part_id: str, detail: str) -> None:
        if len(self.found) < 200:  # evidence enough; a hostile message may repeat one trick
            self.found.append(Ambiguity(code, part_id, detail[:200]))

    def verbatim(self, start: int, end: int) -> None:
        """Copy ``lines[start:end]`` into the canonical form with their own line ends."""
        if end > start:
            self.out.append(self.raw[self.starts[start] : self.ends[end - 1]])

    def refuse(self, reason: str) -> None:
        if reason not in self.not_verbatim:
            self.not_verbatim.append(reason)

    # -- header blocks ---------------------------------------------------------------------

    def header_block(
        self, start: int, end: int, part_id: str, top: bool
    ) -> tuple[list[_Field], int]:
        """The fields of the block at ``start`` (repaired) and the index where its body
        starts (after the empty line, or at the first line that ends the block)."""
        lines = self.lines
        fields: list[_Field] = []
        index = start
        while index < end:
            line = lines[index]
            if not line:
                return fields, index + 1
            if len(line) > MAX_LINE:
                self.note(MIME_AMBIGUOUS_HEADER, part_id, f"header line of {len(line)} octets")
            if line[:1] in (b" ", b"\t"):
                if not line.strip(b" \t"):
                    # Python continues the field, some readers end the block here.
                    self.note(MIME_AMBIGUOUS_HEADER, part_id, "whitespace-only line in header")
                elif not fields:
                    self.note(MIME_AMBIGUOUS_HEADER, part_id, "continuation before any field")
                else:
                    fields[-1].lines.append(line)
                index += 1
                continue
            match = _FIELD.match(line)
            if match is not None:
                fields.append(_Field(match.group(1), [line]))
                index += 1
                continue
            spaced = _SPACED_FIELD.match(line)
            if spaced is not None:
                name = spaced.group(1)
                self.note(
                    MIME_AMBIGUOUS_HEADER,
                    part_id,
                    f"whitespace before the colon of {name.decode('ascii', 'replace')}",
                )
                # Clients read it as that field: so do we (and inspect what it declares).
                fields.append(_Field(name, [name + b":" + line[spaced.end() :]]))
                index += 1
                continue
            if top and index == start and line.startswith(b"From "):
                self.note(MIME_AMBIGUOUS_HEADER, part_id, "mbox From_ line before the fields")
                index += 1
                continue
            marked = _FIELD.match(line, 3) if top and index == start else None
            if marked is not None and line.startswith(_BOM):
                # Windows tools save .eml files with a UTF-8 byte order mark. Python's email
                # then reads no header at all; mailparser and MIME-tools skip that line.
                self.note(MIME_AMBIGUOUS_HEADER, part_id, "byte order mark before the fields")
                fields.append(_Field(marked.group(1), [line[3:]]))
                index += 1
                continue
            self.note(MIME_AMBIGUOUS_HEADER, part_id, f"not a header field: {_show(line)}")
            following = lines[index + 1] if index + 1 < end else b""
            if _FIELD.match(following) or _SPACED_FIELD.match(following):
                # Python's email ends the header block here; mailparser and MIME-tools skip
                # the line and read the fields after it. Read them (they may be MIME fields).
                index += 1
                continue
            return fields, index
        return fields, end

    def structural(self, fields: list[_Field], part_id: str) -> dict[str, _Field]:
        """One field of each structural name (the chosen one of duplicates), and the
        ambiguities of their values."""
        chosen: dict[str, _Field] = {}
        for name in STRUCTURAL_FIELDS:
            found = [f for f in fields if f.lower == name]
            if not found:
                continue
            if len(found) > 1:
                self.note(MIME_DUPLICATE_FIELD, part_id, f"{found[0].display} x{len(found)}")
            if name == "content-type":
                # Highest rank wins; among equals the first (Python's choice).
                ranks = [_choice_rank(parse_media_type(f.value)) for f in found]
                chosen[name] = found[ranks.index(max(ranks))]
            elif name == "content-transfer-encoding":
                ranks = [_encoding_rank(_encoding(f)) for f in found]
                chosen[name] = found[ranks.index(max(ranks))]
            elif name == "content-disposition":
                attachment = [f for f in found if f.value.strip().lower().startswith(b"attachment")]
                chosen[name] = (attachment or found)[0]
            else:
                chosen[name] = found[0]
        return chosen

    def emit_fields(
        self,
        fields: list[_Field],
        chosen: dict[str, _Field],
        rewritten: dict[str, list[bytes]],
    ) -> None:
        """The canonical header block: one field per structural name (``rewritten`` in place
        of the chosen one where its value had to be repaired), control characters dropped
        from the others, lines folded to at most 998 octets, and the empty line."""
        for item in fields:
            if item.lower in chosen and chosen[item.lower] is not item:
                continue  # the other reading of a duplicated structural field
            structural = item.lower in STRUCTURAL_FIELDS
            for line in rewritten.get(item.lower, item.lines):
                if not structural:
                    # Control characters go (these fields may be copied into the output);
                    # in a structural field they are part of what was read (a boundary with
                    # a NUL is that boundary), and such a field never reaches the output.
                    line = _CONTROL.sub(b"", line)
                    if not line.strip(b" \t"):
                        continue  # a continuation of control characters only (tests/fuzz)
                while len(line) > MAX_LINE:
                    cut = line.rfind(b" ", 1, MAX_LINE)
                    cut = cut if cut > 0 else MAX_LINE - 1
                    self.out.append(line[:cut])
                    line = b" " + line[cut:].lstrip(b" ")
                self.out.append(line)
        self.out.append(b"")

    # -- entities --------------------------------------------------------------------------

    def entity(
        self,
        start: int,
        end: int,
        part_id: str,
        depth: int,
        default: str,
        top: bool = False,
        enclosing: tuple[bytes, ...] = (),
    ) -> None:
        """Read the entity in ``lines[start:end]``; append its canonical form to ``out``."""
        if depth > self.limits.max_depth:
            raise MimeLimitExceeded("LIMIT_DEPTH", f"nesting deeper than {self.limits.max_depth}")
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise MimeLimitExceeded("LIMIT_PARTS", f"more than {self.limits.max_parts} parts")
        fields, body = self.header_block(start, end, part_id, top)
        chosen = self.structural(fields, part_id)
        noted = len(self.found)
        media = self.media(chosen.get("content-type"), part_id, default)
        encoding = (
            _encoding(chosen["content-transfer-encoding"])
            if ("content-transfer-encoding" in chosen)
            else "7bit"
        )
        if encoding not in TRANSFER_ENCODINGS:
            self.note(MIME_AMBIGUOUS_ENCODING, part_id, f"transfer encoding {encoding[:40]!r}")
        boundary = None
        if media.maintype == "multipart":
            boundary = self.boundary(media, body, end, part_id, enclosing)
        rewritten: dict[str, list[bytes]] = {}
        if "content-type" in chosen and len(self.found) > noted:
            # The value was malformed or said two things: write the reading we inspect.
            rewritten["content-type"] = _render_media_type(media, boundary)
        message = media.full in ("message/rfc822", "message/global")
        composite = boundary is not None or message
        if composite and encoding not in IDENTITY_ENCODINGS:
            # RFC 2045 section 6.4: a composite is never encoded; readers differ on whether
            # to decode it before looking for parts.
            self.note(MIME_AMBIGUOUS_ENCODING, part_id, f"{encoding[:40]} on {media.full}")
            decoded = _decoded(self.lines[body:end], encoding) if message else None
            if decoded is not None:
                # Decode it, as the readers that do, and inspect the message inside.
                rewritten["content-transfer-encoding"] = [b"Content-Transfer-Encoding: 8bit"]
                self.emit_fields(fields, chosen, rewritten)
                self.encoded_message(decoded, part_id, depth)
                return
            composite = False
        self.emit_fields(fields, chosen, rewritten)
        if boundary is not None and composite:
            self.multipart(body, end, boundary, part_id, depth, media.subtype, enclosing)
        elif composite:
            self.entity(body, end, part_id, depth + 1, "text/plain", enclosing=enclosing)
        else:
            self.leaf(body, end, part_id, media, encoding)

    def encoded_message(self, decoded: bytes, part_id: str, depth: int) -> None:
        """A message/rfc822 sent base64 or quoted-printable: read the message it decodes to
        with the same rules and limits, and put that in the canonical form."""
        inner = _Reader(decoded, self.limits)
        inner.parts = self.parts
        inner.entity(0, len(inner.lines), part_id, depth + 1, "text/plain")
        self.parts = inner.parts
        for item in inner.found:
            self.note(item.code, item.part_id, item.detail)
        self.out.extend(inner.out)

    def media(self, content_type: _Field | None, part_id: str, default: str) -> _MediaType:
        if content_type is None:
            maintype, _, subtype = default.partition("/")
            return _MediaType(maintype, subtype)
        media = parse_media_type(content_type.value)
        if not media.well_formed:
            self.note(MIME_MALFORMED_TYPE, part_id, _show(content_type.value.strip()))
        for _, code, detail in _parameter_problems(media.params):
            self.note(code, part_id, detail)
        return media

    def boundary(
        self, media: _MediaType, body: int, end: int, part_id: str, enclosing: tuple[bytes, ...]
    ) -> bytes | None:
        """The boundary this multipart is read with, or None (then it is read as a leaf)."""
        candidates = media.plain("boundary")
        extended = _extended_value(media.params, "boundary")
        if not candidates and extended is None:
            self.note(MIME_AMBIGUOUS_BOUNDARY, part_id, "multipart without boundary")
            return None
        if not candidates:
            # Readers that know RFC 2231 split by it, the others find no boundary at all.
            self.note(MIME_AMBIGUOUS_BOUNDARY, part_id, "boundary only in RFC 2231 form")
        if extended is not None and extended not in candidates:
            candidates.append(extended)  # beside a plain one: MIME_DUPLICATE_PARAMETER
        if len(candidates) > 1:
            # Read with the one that makes the most parts, so all of them are inspected.
            counts = [self.delimiters(b, body, end) for b in candidates]
            candidate = candidates[counts.index(max(counts))]
        else:
            candidate = candidates[0]
        if _BOUNDARY.fullmatch(candidate) is None:
            self.note(MIME_AMBIGUOUS_BOUNDARY, part_id, f"invalid boundary {_show(candidate)}")
        # Python's email and mailparser drop trailing white space from a boundary.
        candidate = candidate.rstrip(b" \t")
        if not candidate:
            return None
        if any(candidate.startswith(outer) or outer.startswith(candidate) for outer in enclosing):
            # RFC 2046 section 5.1.1 forbids it; malspam does it to hide a part from gateways
            # (Python reads the rest as the parent's epilogue, mailparser as parts).
            self.note(MIME_AMBIGUOUS_BOUNDARY, part_id, "boundary of an enclosing multipart")
        return candidate

    def delimiters(self, boundary: bytes, start: int, end: int) -> int:
        delimiter = b"--" + boundary
        return sum(
            1
            for line in self.lines[start:end]
            if line.rstrip(b" \t") in (delimiter, delimiter + b"--")
        )

    def multipart(
        self,
        start: int,
        end: int,
        boundary: bytes,
        part_id: str,
        depth: int,
        subtype: str,
        enclosing: tuple[bytes, ...],
    ) -> None:
        delimiter = b"--" + boundary
        close = delimiter + b"--"
        folded = delimiter.lower()
        bounds: list[int] = []  # indexes of delimiter lines
        closed_at: int | None = None
        for index in self.dash_lines(start, end):
            line = self.lines[index]
            if line[: len(folded)].lower() != folded:
                continue
            # Trailing whitespace is transport padding (RFC 2046 section 5.1.1): every reader
            # we test accepts it.
            bare = line.rstrip(b" \t")
            if bare in (delimiter, close):
                if closed_at is not None:
                    self.note(MIME_AMBIGUOUS_BOUNDARY, part_id, "delimiter after the close")
                    continue
                if bare == close:
                    closed_at = index
                else:
                    bounds.append(index)
            else:
                # "--XXY" for boundary "XX", or another case: some readers take it for the
                # delimiter (prefix or case-insensitive match), others for content.
                self.note(MIME_AMBIGUOUS_BOUNDARY, part_id, f"near-delimiter {_show(line)}")
        if not bounds:
            self.note(MIME_AMBIGUOUS_BOUNDARY, part_id, "multipart without a part")
            self.verbatim(start, end)
            return
        stop = closed_at if closed_at is not None else end
        self.outside(start, bounds[0], part_id, "preamble")
        if closed_at is not None:
            self.outside(closed_at + 1, end, part_id, "epilogue")
        self.verbatim(start, bounds[0])
        default = "message/rfc822" if subtype == "digest" else "text/plain"
        edges = [*bounds, stop]
        for number, (first, last) in enumerate(itertools.pairwise(edges), 1):
            self.out.append(delimiter)
            self.entity(
                first + 1,
                last,
                f"{part_id}.{number}",
                depth + 1,
                default,
                enclosing=(*enclosing, boundary),
            )
        self.out.append(close)
        if closed_at is not None:
            self.verbatim(closed_at + 1, end)

    def dash_lines(self, start: int, end: int) -> list[int]:
        """Indexes of the lines in ``[start, end)`` that begin with ``--`` (found by the regex
        engine: a 20 MB attachment is 370,000 lines)."""
        if end <= start:
            return []
        raw, first = self.raw, self.starts[start]
        indexes = []
        # A plain "--" search: a match at a line start is never hidden by one just before
        # it, since that character would be a line end.
        for match in _DASHES.finditer(raw, first, self.ends[end - 1]):
            offset = match.start()
            if offset != first and raw[offset - 1] not in b"\r\n":
                continue
            index = bisect.bisect_left(self.starts, offset, start, end)
            if index < end and self.starts[index] == offset:
                indexes.append(index)
        return indexes

    def outside(self, start: int, end: int, part_id: str, where: str) -> None:
        """Preamble and epilogue are not shown by readers that follow RFC 2046, but some
        show MIME-looking content there as parts (``gateway.mime`` inspects it as hidden
        parts)."""
        for line in self.lines[start:end]:
            if _MIME_LOOKING.match(line) or (line.startswith(b"--") and len(line) > 2):
                self.note(MIME_AMBIGUOUS_BOUNDARY, part_id, f"MIME-looking {where}")
                return

    def leaf(self, start: int, end: int, part_id: str, media: _MediaType, encoding: str) -> None:
        body = self.lines[start:end]
        self.verbatim(start, end)
        if encoding == "base64":
            encoded = b"".join(body)
            try:
                data = binascii.a2b_base64(encoded, strict_mode=True)
            except (binascii.Error, ValueError):
                data = None
            # Python's strict mode still takes a stray "=" after whole quads, which mailparse
            # refuses (found by tests/fuzz), and bits set in the last symbol's padding: only
            # the canonical encoding of the bytes it gives is read alike by every decoder.
            if data is None or binascii.b2a_base64(data, newline=False) != encoded:
                self.refuse(f"part {part_id}: base64 that decoders read differently")
                return
        elif encoding == "quoted-printable":
            # A soft break on the last line ("=" with nothing after it): Python's two
            # policies already disagree about the final line end (found by tests/fuzz).
            # Unencoded white space at a line end must be deleted by decoders (RFC 2045
            # section 6.7, rule 3); mailparse and Python's email keep different amounts.
            final_soft_break = bool(body) and body[-1].endswith(b"=")
            padded = any(line.endswith((b" ", b"\t")) for line in body)
            if final_soft_break or padded or not all(_QP_LINE.fullmatch(line) for line in body):
                self.refuse(f"part {part_id}: quoted-printable that decoders read differently")
                return
            data = binascii.a2b_qp(b"\r\n".join(body))
        else:
            data = b"\r\n".join(body)
        if media.maintype != "text":
            return
        charsets = media.plain("charset")
        charset = charsets[0].decode("ascii", "replace").strip().lower() if charsets else ""
        codec = VERBATIM_CHARSETS.get(charset)
        if codec is None:
            self.refuse(f"part {part_id}: charset {charset[:40]!r}")
        else:
            try:
                data.decode(codec)
            except UnicodeDecodeError:
                self.refuse(f"part {part_id}: text that {charset or 'us-ascii'} does not decode")
        if _EMBEDDED_FILE.search(data):
            self.refuse(f"part {part_id}: a file encoded in the text (uuencode/yEnc/BinHex)")


# C0 controls a header value must not carry (ESC stays: raw ISO-2022-JP in old Japanese mail).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f]")


def _extended_value(params: list[tuple[str, bytes]], name: str) -> bytes | None:
    """The RFC 2231 value of parameter ``name`` (``name*=``, or ``name*0``, ``name*1``...
    sections, each possibly ``*``-encoded), as readers that implement RFC 2231 read it."""
    sections: dict[int, tuple[bytes, bool]] = {}
    for attribute, value in params:
        match = _SECTION.fullmatch(attribute)
        if match is None or match.group(1) != name or attribute == name:
            continue
        number = int(match.group(2)) if match.group(2) is not None else 0
        sections.setdefault(number, (_unquote(value), bool(match.group(3))))
    if not sections:
        return None
    out = b""
    for number in sorted(sections):
        value, encoded = sections[number]
        if encoded:
            if number == 0 and value.count(b"'") >= 2:
                value = value.split(b"'", 2)[2]  # charset'language'
            value = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), value)
        out += value
    return out


def _render_media_type(media: _MediaType, boundary: bytes | None) -> list[bytes]:
    """``Content-Type`` lines for the reading chosen: one boundary (the one read with), one
    charset, other parameters as they were (RFC 2231 forms of those two dropped, and any
    parameter whose RFC 2231 sections are broken: readers assemble those differently)."""
    broken = {name for name, _, _ in _parameter_problems(media.params)}
    params: list[bytes] = []
    if boundary is not None:
        params.append(b'boundary="' + re.sub(rb'(["\\])', rb"\\\1", boundary) + b'"')
    charsets = media.plain("charset")
    if charsets:
        params.append(b"charset=" + _quoted(charsets[0]))
    for attribute, value in media.params:
        name = attribute.split("*")[0]
        if name in STRUCTURAL_PARAMETERS or name in broken:
            continue
        params.append(attribute.encode() + b"=" + value)
    head = b"Content-Type: " + media.full.encode()
    if not params:
        return [head]
    return [head + b";", *(b"\t" + p + b";" for p in params[:-1]), b"\t" + params[-1]]


def _quoted(value: bytes) -> bytes:
    if _STRICT_TOKEN.fullmatch(value):
        return value
    return b'"' + re.sub(rb'(["\\])', rb"\\\1", value) + b'"'


def _decoded(lines: list[bytes], encoding: str) -> bytes | None:
    """The body a base64 or quoted-printable encoding gives, or None (another encoding, or
    one that does not decode)."""
    encoded = b"\r\n".join(lines)
    try:
        if encoding == "base64":
            return binascii.a2b_base64(encoded)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(encoded)
    except (binascii.Error, ValueError):
        return None
    return None


def _encoding(content_transfer_encoding: _Field) -> str:
    return content_transfer_encoding.value.strip().decode("ascii", "replace").lower()


def defuse_embedded_files(text: str) -> str:
    """``text`` with a space before each line that would start a file a mail client decodes
    out of plain text (uuencode, yEnc, BinHex), so that no client makes a file of text the
    gateway writes. ``gateway.mime`` extracts uuencoded, BinHex and yEnc files for inspection;
    what it could not decode stays text, and this makes sure no client decodes it either."""
    return _EMBEDDED_FILE_TEXT.sub(" ", text)


def _show(value: bytes) -> str:
    """Evidence for a finding: ASCII, control characters and 8-bit bytes escaped, short."""
    return repr(value[:60])[2:-1]


def examine(raw: bytes, limits: MimeLimits | None = None) -> Framing:
    """Read ``raw`` strictly; see the module docstring. Bounded by ``limits`` (raises
    ``MimeLimitExceeded``); never raises for malformed input."""
    limits = limits or MimeLimits()
    reader = _Reader(raw, limits)
    crlf = raw.count(b"\r\n")
    bare_cr = raw.count(b"\r") - crlf
    if bare_cr:
        reader.note(MIME_BARE_CR, "1", f"{bare_cr} bare CR")
    nul = raw.count(b"\x00")
    if nul:
        reader.note(MIME_NUL, "1", f"{nul} NUL")
    if raw.count(b"\n") != crlf:
        reader.refuse("line ends other than CRLF")
    reader.entity(0, len(reader.lines), "1", 0, "text/plain", top=True)
    if max(map(len, reader.lines), default=0) > MAX_LINE:
        reader.refuse(f"a line longer than {MAX_LINE} octets")
    canonical = b"\r\n".join(reader.out) + b"\r\n"
    return Framing(tuple(reader.found), canonical, "; ".join(reader.not_verbatim))


__all__ = [
    "FINDING_CODES",
    "Ambiguity",
    "Framing",
    "defuse_embedded_files",
    "examine",
    "parse_media_type",
]
