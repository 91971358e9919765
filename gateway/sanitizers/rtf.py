"""RTF: rebuilt without embedded objects, fields, hidden data and unverifiable pictures.

RTF carries exploits in OLE objects (``{\\object ... {\\*\\objdata <hex>}}``: Equation Editor
CVE-2017-11882 and CVE-2018-0802, OLE packages that drop files, ``\\objautlink`` /
``\\objupdate`` that load them on open), in ``\\*\\datastore`` and ``\\*\\themedata`` blobs
(the carriers of CVE-2017-0199-style chains), in fields (``DDEAUTO``, ``INCLUDEPICTURE`` and
``INCLUDETEXT`` fetching remote content, ``HYPERLINK``), in mail-merge data sources and in the
``\\*\\template`` a document attaches. What a reader sees is the text, its formatting and the
pictures, and that is what is kept.

How: the document is tokenized by oletools' ``rtfobj.RtfParser`` (maintained, and written to
read malformed, malicious RTF the way Word does: control words up to 250 letters, ``\\bin``
with bogus lengths, unbalanced braces closed at the end), which reports every group and
control word with its offset. Groups are cut out of the bytes by those offsets:

- an object group (``\\object``) is replaced by its ``\\result`` (the picture Word shows in
  its place), itself rebuilt the same way; a field group (``\\field``) by its ``\\fldrslt``
  (the text it showed), so the text stays and nothing is live;
- groups holding ``\\objdata``, ``\\datastore``, ``\\themedata``, ``\\mailmerge``,
  ``\\template``, form-field macros, ``\\bin`` data and the like are dropped;
- pictures in PNG or JPEG (``\\pngblip``, ``\\jpegblip``) are re-encoded by the image
  sanitizer; other picture formats (WMF, EMF, DIB, Mac PICT: metafiles are parsed by
  Word's graphics filters, a long line of CVEs) are dropped.

Everything else is copied byte for byte, so the text, its code page (``\\ansicpg932``, ``\\'8b``
escapes) and the formatting are unchanged. A file that starts with a byte-order mark,
blank lines or spaces before ``{\\rtf`` (Word is lenient there, RT-02) is written from the
``{``. The output is then checked fail-closed: re-read by ``rtfobj.RtfObjParser`` it must
hold no object, and no object, field-instruction, data-store or ``\\bin`` control word may
be left anywhere; otherwise ``CannotSanitize("RTF_NOT_HARMLESS")`` (the policy holds it).

Not done: rendering or converting the document, and keeping links (a field's target is
never kept; its shown text is).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

from oletools import rtfobj

from gateway.detect import extension_of, sanitize_filename
from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult
from gateway.sanitizers.image import ImageSanitizer

FINDING_CODES: tuple[str, ...] = (
    "RTF_OBJECT_REMOVED",  # an embedded OLE object or package (its shown picture kept)
    "RTF_FIELD_REMOVED",  # a field instruction (DDE, INCLUDEPICTURE, HYPERLINK...): text kept
    "RTF_DATA_REMOVED",  # hidden data (datastore, themedata, mail merge, template, \\bin)
    "RTF_PICTURE_REMOVED",  # a picture in a format that cannot be re-encoded (WMF, EMF...)
    "RTF_NOT_HARMLESS",  # the rebuilt file still held something active: no output
)

# Control words whose group is dropped whole, with the finding that says so.
_DROP = {
    b"objdata": "RTF_OBJECT_REMOVED",
    b"objclass": "RTF_OBJECT_REMOVED",
    b"objname": "RTF_OBJECT_REMOVED",
    b"objalias": "RTF_OBJECT_REMOVED",
    b"objsect": "RTF_OBJECT_REMOVED",
    b"oleclsid": "RTF_OBJECT_REMOVED",
    b"fldinst": "RTF_FIELD_REMOVED",
    b"datafield": "RTF_FIELD_REMOVED",
    b"ffentrymcr": "RTF_FIELD_REMOVED",
    b"ffexitmcr": "RTF_FIELD_REMOVED",
    b"hlinkbase": "RTF_FIELD_REMOVED",
    b"datastore": "RTF_DATA_REMOVED",
    b"themedata": "RTF_DATA_REMOVED",
    b"colorschememapping": "RTF_DATA_REMOVED",
    b"mailmerge": "RTF_DATA_REMOVED",
    b"template": "RTF_DATA_REMOVED",
    b"xmlopen": "RTF_DATA_REMOVED",
    b"xmlattrname": "RTF_DATA_REMOVED",
    b"bin": "RTF_DATA_REMOVED",
    b"nonshppict": "RTF_PICTURE_REMOVED",  # the metafile twin of a PNG/JPEG picture
}
_KEPT_PICTURES = {b"pngblip": "image/png", b"jpegblip": "image/jpeg"}
# What may not be left in the output anywhere, in any letter case (fail closed).
_ACTIVE = re.compile(
    rb"\\(object|objdata|objemb|objlink|objautlink|objupdate|objocx|objhtml|objclass|"
    rb"datastore|themedata|fldinst|ddeauto|template|mailmerge|bin)(?![a-z])",
    re.IGNORECASE,
)
_RTF_START = re.compile(rb"^(?:\xef\xbb\xbf)?[\x00-\x20]*\{", re.DOTALL)


@dataclass
class _Group:
    start: int
    drop: str = ""  # the finding code when the whole group goes
    kind: str = ""  # "object", "field", "pict"
    result: tuple[int, int] | None = None  # inner extent of \result / \fldrslt
    picture: str = ""  # MIME type of a picture kept after re-encoding


@dataclass
class _Cut:
    start: int
    end: int
    replacement: bytes
    code: str = ""  # what was cut ("" for a re-encoded picture)
    inner: dict[str, int] = field(default_factory=dict)  # cut inside a kept \result


class _Rewriter(rtfobj.RtfParser):
    """Collects the cuts: (start, end, replacement) of each group to drop or replace."""

    def __init__(self, data: bytes, depth: int) -> None:
        super().__init__(data)
        self.depth = depth
        self.stack: list[_Group] = []
        self.cuts: list[_Cut] = []
        self.document_end = 0  # just after the "}" that closes the document group
        self.unclosed = 0  # groups still open at the end (a truncated file)

    def _end_of_file(self) -> None:
        self.unclosed = self.group_level
        super()._end_of_file()

    def open_group(self) -> None:
        self.stack.append(_Group(self.index))

    def control_word(self, matchobject: re.Match[bytes], cword: bytes, param: bytes) -> None:
        if not self.stack:
            return
        group = self.stack[-1]
        word = cword.lower()
        if word in _DROP and not group.drop:
            group.drop = _DROP[word]
        elif word == b"object":
            group.kind = "object"
        elif word == b"field":
            group.kind = "field"
        elif word == b"pict":
            group.kind = "pict"
        elif word in _KEPT_PICTURES and group.kind == "pict":
            group.picture = _KEPT_PICTURES[word]

    def close_group(self) -> None:
        if not self.stack:
            return
        group = self.stack.pop()
        end = min(self.index + 1, self.size)
        if not self.stack and not self.document_end:
            self.document_end = end
        if self.stack and self.current_destination.cword in (b"result", b"fldrslt"):
            parent = self.stack[-1]
            if parent.kind in ("object", "field") and self.current_destination.start is not None:
                parent.result = (self.current_destination.start, self.index)
        if group.drop:
            self._cut(group.start, end, b"", group.drop)
        elif group.kind in ("object", "field"):
            code = "RTF_OBJECT_REMOVED" if group.kind == "object" else "RTF_FIELD_REMOVED"
            shown: bytes = b""
            found: dict[str, int] = {}
            if group.result is not None:
                inner = self.data[group.result[0] : group.result[1]]
                shown, found = _rewrite(inner, self.depth + 1)
            replacement = b"{" + shown + b"}" if shown.strip() else b""
            self.cuts.append(_Cut(group.start, end, replacement, code, found))
        elif group.kind == "pict":
            self._picture(group, end)

    def _picture(self, group: _Group, end: int) -> None:
        if not group.picture:
            self._cut(group.start, end, b"", "RTF_PICTURE_REMOVED")
            return
        body = self.data[group.start : end]
        # Word writes {\*\blipuid ...} inside the picture: nested groups are not its data.
        flat = b"{" + re.sub(rb"\{[^{}]*\}", b" ", body[1:-1]) + b"}"
        words = re.match(rb"\{(?:\\[a-zA-Z]+-?\d* ?|\s+)+", flat)
        hexdata = re.sub(rb"[^0-9a-fA-F]", b"", flat[words.end() if words else 1 : -1])
        try:
            image = binascii.unhexlify(hexdata[: len(hexdata) // 2 * 2])
            result = ImageSanitizer().sanitize(image, "picture", "", SanitizeOptions())
        except (binascii.Error, CannotSanitize):
            self._cut(group.start, end, b"", "RTF_PICTURE_REMOVED")
            return
        if not result.outputs or result.outputs[0].content_type not in _KEPT_PICTURES.values():
            self._cut(group.start, end, b"", "RTF_PICTURE_REMOVED")
            return
        output = result.outputs[0]
        blip = b"\\pngblip" if output.content_type == "image/png" else b"\\jpegblip"
        head = words.group() if words else b"{\\pict"
        head = re.sub(rb"\\(pngblip|jpegblip)", lambda _: blip, head)
        lines = [output.data[i : i + 64].hex().encode() for i in range(0, len(output.data), 64)]
        self.cuts.append(_Cut(group.start, end, head + b"\r\n" + b"\r\n".join(lines) + b"}"))

    def _cut(self, start: int, end: int, replacement: bytes, code: str) -> None:
        self.cuts.append(_Cut(start, end, replacement, code))


def _rewrite(data: bytes, depth: int = 0) -> tuple[bytes, dict[str, int]]:
    """``data`` without the cut groups, and how many of each kind were cut."""
    if depth > 20:
        raise CannotSanitize("RTF_NOT_HARMLESS", "objects nested more than 20 deep")
    parser = _Rewriter(data, depth)
    parser.parse()
    out: list[bytes] = []
    found: dict[str, int] = {}
    position = 0
    # Outermost cuts win: a cut inside one already made is part of what was dropped.
    for cut in sorted(parser.cuts, key=lambda c: (c.start, -c.end)):
        if cut.start < position:
            continue
        out.append(data[position : cut.start])
        out.append(cut.replacement)
        position = cut.end
        for code, count in [(cut.code, 1), *cut.inner.items()]:
            if code:
                found[code] = found.get(code, 0) + count
    out.append(data[position:])
    rebuilt = b"".join(out)
    return (_close_document(rebuilt) if depth == 0 else rebuilt), found


def _close_document(data: bytes) -> bytes:
    """Word stops reading where the document group closes: bytes after it (a polyglot's
    payload) are not part of the document and go; a truncated file gets its groups closed."""
    parser = _Rewriter(data, 0)
    parser.parse()
    if parser.unclosed:
        return data + b"}" * parser.unclosed
    return data[: parser.document_end]


def _header(data: bytes) -> bytes:
    """The document from its first ``{``, opening with ``{\\rtf1`` whatever variant it had
    (``{\\rt``, ``{\\RTF1``, a BOM or blank lines before it)."""
    if re.match(rb"\{\\rtf1(?![a-zA-Z0-9])", data):
        return data  # the usual header: nothing to change
    match = _RTF_START.match(data)
    if match is None:
        raise CannotSanitize("RTF_NOT_HARMLESS", "no RTF group at the start")
    body = data[match.end() :]
    first = re.match(rb"\\[a-zA-Z]+-?\d* ?", body)
    if first is None or not first.group().lower().startswith(b"\\rt"):
        raise CannotSanitize("RTF_NOT_HARMLESS", "not an RTF header")
    return b"{\\rtf1 " + body[first.end() :]


def _verify(output: bytes) -> None:
    active = _ACTIVE.search(output)
    if active:
        raise CannotSanitize("RTF_NOT_HARMLESS", f"{active.group().decode()} left after rebuild")
    check = rtfobj.RtfObjParser(output)
    check.parse()
    if check.objects:
        raise CannotSanitize("RTF_NOT_HARMLESS", f"{len(check.objects)} objects after rebuild")


_WORDS = {
    "RTF_OBJECT_REMOVED": "embedded objects",
    "RTF_FIELD_REMOVED": "fields",
    "RTF_DATA_REMOVED": "hidden data groups",
    "RTF_PICTURE_REMOVED": "pictures",
}


@dataclass
class RtfSanitizer:
    """See Sanitizer."""

    name: str = "rtf-rebuild"
    description: str = "RTF rebuilt without objects, fields, hidden data and metafile pictures"
    handles: frozenset[str] = field(default_factory=lambda: frozenset({"rtf"}))

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        """See Sanitizer."""
        try:
            rebuilt, found = _rewrite(_header(data))
        except CannotSanitize:
            raise
        except (RuntimeError, ValueError, RecursionError) as exc:
            raise CannotSanitize("RTF_NOT_HARMLESS", f"unreadable RTF: {exc}"[:200]) from None
        _verify(rebuilt)
        findings = tuple(
            Finding(code, part_id, f"{count} {_WORDS[code]}")
            for code, count in sorted(found.items())
        )
        name = filename or "document.rtf"
        if extension_of(name) != "rtf":
            name = sanitize_filename(name, new_extension="rtf")  # the true type: a .doc is RTF
        return SanitizeResult((OutputFile(rebuilt, name, "application/rtf"),), findings)
