"""PDF: rebuilt with pikepdf without active content; optionally rendered to an image-only PDF.

Modes (``options.mode``):

``rebuild``
    pikepdf (qpdf) parses the file, repairing what it can, and ``pikepdf.sanitize`` (10.x)
    removes JavaScript, external-access actions (URI, Launch, GoToR, GoToE, SubmitForm,
    ImportData), attachments, multimedia and the portfolio view. Because that module
    deliberately leaves XFA, forms and annotations alone and walks only the known action
    slots, a second sweep of *every* object (direct ones inside annotations included) here
    removes what it leaves: ``/AA`` everywhere, ``/OpenAction`` actions, any action whose type
    is not on a short allow-list (GoTo, navigation ``Named``, Thread, ResetForm, Hide,
    SetOCGState, Trans), ``/JS`` keys, XFA and ``NeedsRendering``, RichMedia/3D/Movie/Sound/
    Screen/FileAttachment annotations, embedded-file streams and ``/EF`` entries, the
    ``/AlternatePresentations`` and ``/Renditions`` name trees, ``/URI`` base and ``/Perms``.
    Link annotations lose their action; with ``defang_urls`` their target survives only as a
    defanged tooltip (``hxxps://example[.]jp/``), and ``http://``/``https://`` in page text
    drawn with simple fonts becomes ``hxxp://``/``hxxps://`` (kerned so that nothing moves)
    so viewers that turn URL-like text into links (Acrobat does) find none. The copy is
    written afresh: one revision (no incremental updates), no object streams, no
    encryption, deterministic ``/ID``.

    The written copy is then reopened from its bytes and checked again for every kind of
    active content listed above, and for its page count; any survivor fails the part closed
    (``PDF_VERIFY_FAILED``).

``rasterize``
    Every page is rendered by PDFium (pypdfium2) at ``options.rasterize_dpi`` (lower for huge
    pages, so a page never exceeds ``max_image_pixels``) and the JPEGs are assembled with
    pikepdf into a new PDF with nothing but one image per page (the guideline's 画像化). The
    rebuilt copy is rendered when there is one; a file qpdf cannot repair is rendered as
    received, since PDFium runs no script.

``both``
    The rebuilt PDF and its image-only twin, side by side.

What this module does not do: it does not open encrypted PDFs that need a password
(``PDF_ENCRYPTED``: nothing can be inspected), does not remove forms (AcroForm fields stay,
only their actions go), metadata or fonts, and does not judge what the pages say.
"""

from __future__ import annotations

import functools
import io
import re
import unicodedata
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

import pikepdf
import pikepdf.sanitize
from pikepdf import Array, Dictionary, Name, Stream

from gateway.detect import extension_of, sanitize_filename
from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult
from gateway.sanitizers.urls import defang_untrusted

FINDING_CODES: tuple[str, ...] = (
    "PDF_JAVASCRIPT",  # JavaScript actions, /JS, the JavaScript name tree
    "PDF_ACTION",  # OpenAction and /AA triggers, and other actions not on the allow-list
    "PDF_LAUNCH",  # /Launch: runs a program or opens a file
    "PDF_REMOTE_ACTION",  # /GoToR, /GoToE: opens another (possibly embedded) document
    "PDF_FORM_SUBMIT",  # /SubmitForm, /ImportData: sends or loads form data
    "PDF_URI",  # URI actions (links); detail has the defanged targets
    "PDF_EMBEDDED_FILE",  # embedded files (attachments, associated files)
    "PDF_RICHMEDIA",  # RichMedia/Movie/Sound/Screen/Rendition (Flash, video)
    "PDF_3D",  # 3D annotations (U3D/PRC)
    "PDF_XFA",  # XFA forms (XML Forms Architecture; scripts and remote data)
    "PDF_ENCRYPTED",  # needs a password: cannot inspect, no output
    "PDF_ENCRYPTION_REMOVED",  # was encrypted with an empty user password; written clear
    "PDF_DAMAGED",  # qpdf cannot open it: no rebuilt output
    "PDF_REPAIRED",  # qpdf repaired structural damage while reading
    "PDF_INCREMENTAL_UPDATE",  # more than one revision; flattened into one
    "PDF_URI_TEXT_DEFANGED",  # http(s):// in page text rewritten as hxxp(s)://
    "PDF_TOO_MANY_PAGES",  # more pages than options.max_pages (rasterize)
    "PDF_RASTERIZED",  # the image-only twin was made
    "PDF_VERIFY_FAILED",  # active content survived the rebuild: no output
    "PDF_URL_TEXT_RASTERIZED",  # pages with text a viewer turns into links made images
    "PDF_URL_TEXT_HELD",  # such pages, and the policy holds them (pdf_url_text: quarantine)
    "PDF_TEXT_CHECK_FAILED",  # the page text could not be read to check it: no output
)

# Actions that only move inside the document or change its view. Anything else goes.
_ALLOWED_ACTIONS = frozenset(
    {"/GoTo", "/Thread", "/ResetForm", "/Hide", "/SetOCGState", "/Trans", "/Named"}
)
_SAFE_NAMED = frozenset({"/NextPage", "/PrevPage", "/FirstPage", "/LastPage"})
_ACTION_CODE = {
    "/JavaScript": "PDF_JAVASCRIPT",
    "/Launch": "PDF_LAUNCH",
    "/GoToR": "PDF_REMOTE_ACTION",
    "/GoToE": "PDF_REMOTE_ACTION",
    "/GoToDp": "PDF_REMOTE_ACTION",
    "/SubmitForm": "PDF_FORM_SUBMIT",
    "/ImportData": "PDF_FORM_SUBMIT",
    "/URI": "PDF_URI",
    "/Rendition": "PDF_RICHMEDIA",
    "/Movie": "PDF_RICHMEDIA",
    "/Sound": "PDF_RICHMEDIA",
    "/RichMediaExecute": "PDF_RICHMEDIA",
    "/GoTo3DView": "PDF_3D",
}
_DROPPED_ANNOTS = {
    "/RichMedia": "PDF_RICHMEDIA",
    "/Movie": "PDF_RICHMEDIA",
    "/Sound": "PDF_RICHMEDIA",
    "/Screen": "PDF_RICHMEDIA",
    "/3D": "PDF_3D",
    "/FileAttachment": "PDF_EMBEDDED_FILE",
}
_MAX_DEPTH = 64  # direct-object nesting we follow; deeper structures are not plausible PDFs
_MAX_EVIDENCE = 5

# How every PDF we write is saved (and what benchmarks/bench_cdr.py's bare baseline uses):
# no object streams, no encryption, deterministic, the metadata left as it was.
SAVE_OPTIONS: dict[str, Any] = {
    "object_stream_mode": pikepdf.ObjectStreamMode.disable,
    "compress_streams": True,
    "encryption": False,
    "deterministic_id": True,
    "linearize": False,
    "fix_metadata_version": False,
}


def library_removals() -> pikepdf.sanitize.Sanitizer:
    """pikepdf's own removal of active content, the first step of our rebuild (also the
    bare-library baseline of ``benchmarks/bench_cdr.py``)."""
    return (
        pikepdf.sanitize.Sanitizer()
        .remove_javascript()
        .remove_external_access()
        .remove_attachments()
        .remove_multimedia()
        .remove_collection()
        .remove_web_capture()
        .remove_search_index()
    )


class _Hazards:
    """Findings collected while walking, merged to one finding per code with evidence."""

    def __init__(self, part_id: str) -> None:
        self.part_id = part_id
        self.items: dict[str, list[str]] = {}

    def add(self, code: str, evidence: str) -> None:
        self.items.setdefault(code, []).append(evidence)

    def __bool__(self) -> bool:
        return bool(self.items)

    def findings(self) -> list[Finding]:
        out = []
        for code, evidence in self.items.items():
            unique = list(dict.fromkeys(evidence))
            detail = "; ".join(unique[:_MAX_EVIDENCE])
            if len(unique) > _MAX_EVIDENCE:
                detail += f"; and {len(unique) - _MAX_EVIDENCE} more"
            if len(evidence) > 1:
                detail = f"{len(evidence)}x: {detail}"
            out.append(Finding(code, self.part_id, detail[:500]))
        return out


def defang_url(untrusted_url: str) -> str:
    """``https://evil.example/x`` -> ``hxxps://evil[.]example/x``: readable, never clickable.

    The one defanger of message bodies and notices (``urls.defang_untrusted``), so a link
    target quoted in an annotation or a finding detail is never live in any of its forms
    (UNC paths, ``javascript:``, ``file:``, nested ``mhtml:https://``); a target it leaves
    as it is (a name under a TLD no program links) still loses its dots. Cut to 300
    printable characters.
    """
    text = defang_untrusted(untrusted_url.strip())
    if text == untrusted_url.strip():
        text = text.replace(".", "[.]")
    return "".join(c if c.isprintable() else "\ufffd" for c in text)[:300]


def _text(value: Any) -> str:
    try:
        if isinstance(value, pikepdf.String):
            return str(value)
        if isinstance(value, Name):
            return str(value)
        if isinstance(value, Stream):
            return value.read_bytes()[:300].decode("latin-1")
    except Exception:  # evidence is best effort; the removal does not depend on it
        return "?"
    return "?"


def _where(obj: Any) -> str:
    try:
        if obj.is_indirect:
            return f"obj {obj.objgen[0]}"
    except Exception:  # objgen of a damaged object
        return "obj ?"
    return "direct"


def _walk(pdf: pikepdf.Pdf, unread: list[str] | None = None) -> Iterator[Dictionary | Stream]:
    """Every dictionary and stream of the file: each indirect object, and every direct
    dictionary nested inside one (annotations often carry their actions that way).

    What cannot be walked (a trailer or key qpdf cannot read, nesting deeper than
    ``_MAX_DEPTH``) is appended to ``unread``: ``inspect_pdf`` makes each a hazard, so the
    verification of our own output fails closed instead of trusting what it did not see."""
    problems = unread if unread is not None else []
    for obj in pdf.objects:
        yield from _walk_direct(obj, 0, problems)
    try:
        trailer = pdf.trailer
    except Exception as exc:  # recorded: see the docstring
        problems.append(f"trailer: {type(exc).__name__}")
        return
    yield from _walk_direct(trailer, 0, problems)


def _walk_direct(obj: Any, depth: int, unread: list[str]) -> Iterator[Dictionary | Stream]:
    if depth > _MAX_DEPTH:
        unread.append(f"direct objects nested deeper than {_MAX_DEPTH}")
        return
    if isinstance(obj, (Dictionary, Stream)):
        yield obj
        try:
            keys = list(obj.keys())
        except Exception as exc:  # recorded: see _walk
            unread.append(f"keys of {_where(obj)}: {type(exc).__name__}")
            return
        for key in keys:
            try:
                value = obj[key]
            except Exception as exc:  # recorded: see _walk
                unread.append(f"{key} of {_where(obj)}: {type(exc).__name__}")
                continue
            if isinstance(value, (Dictionary, Array)) and not value.is_indirect:
                yield from _walk_direct(value, depth + 1, unread)
    elif isinstance(obj, Array):
        for value in list(obj):
            if isinstance(value, (Dictionary, Array)) and not value.is_indirect:
                yield from _walk_direct(value, depth + 1, unread)


# Every action type of ISO 32000-2 (12.6.4). /S means other things elsewhere (structure
# element types, border styles, transparency groups, page-label styles), so a dictionary is
# an action only when /S names one of these or it says /Type /Action.
_ACTION_TYPES = frozenset(
    {
        "/GoTo",
        "/GoToR",
        "/GoToE",
        "/GoToDp",
        "/Launch",
        "/Thread",
        "/URI",
        "/Sound",
        "/Movie",
        "/Hide",
        "/Named",
        "/SubmitForm",
        "/ResetForm",
        "/ImportData",
        "/SetOCGState",
        "/Rendition",
        "/Trans",
        "/GoTo3DView",
        "/JavaScript",
        "/RichMediaExecute",
    }
)


def _action_type(obj: Dictionary | Stream) -> str:
    subtype = obj.get(Name.S)
    if not isinstance(subtype, Name):
        return ""
    if str(subtype) in _ACTION_TYPES or obj.get(Name.Type) == Name("/Action"):
        return str(subtype)
    return ""


def _is_action(obj: Any) -> TypeGuard[Dictionary | Stream]:
    return isinstance(obj, (Dictionary, Stream)) and bool(_action_type(obj))


def _bad_action(obj: Dictionary | Stream) -> str:
    """The finding code if ``obj`` is an action we do not allow, else ""."""
    kind = _action_type(obj)
    if not kind:
        return ""
    if kind == "/Named":
        named = obj.get(Name.N)
        return "" if isinstance(named, Name) and str(named) in _SAFE_NAMED else "PDF_ACTION"
    if kind in _ALLOWED_ACTIONS:
        return ""
    return _ACTION_CODE.get(kind, "PDF_ACTION")


def inspect_pdf(pdf: pikepdf.Pdf, part_id: str) -> _Hazards:
    """Everything active in ``pdf``, as hazards. Used before (findings) and after (verify)."""
    hazards = _Hazards(part_id)
    root = pdf.Root
    open_action = root.get(Name.OpenAction)
    if _is_action(open_action) and _bad_action(open_action):
        # The action itself is reported by the object walk; this says it runs on opening.
        hazards.add("PDF_ACTION", f"OpenAction {_action_type(open_action)[1:]}")
    names = root.get(Name.Names)
    if isinstance(names, Dictionary):
        for key, code in (
            (Name.JavaScript, "PDF_JAVASCRIPT"),
            (Name.EmbeddedFiles, "PDF_EMBEDDED_FILE"),
            (Name("/AlternatePresentations"), "PDF_ACTION"),
            (Name.Renditions, "PDF_RICHMEDIA"),
        ):
            if key in names:
                hazards.add(code, f"Names{key}")
    acroform = root.get(Name.AcroForm)
    if isinstance(acroform, Dictionary) and Name.XFA in acroform:
        hazards.add("PDF_XFA", "AcroForm/XFA")
    if Name("/NeedsRendering") in root:
        hazards.add("PDF_XFA", "NeedsRendering")
    if Name.Collection in root:
        hazards.add("PDF_EMBEDDED_FILE", "portfolio (Collection)")

    unread: list[str] = []
    for obj in _walk(pdf, unread):
        try:
            _inspect_object(obj, hazards)
        except Exception as exc:  # a damaged object: fail closed by counting it as a hazard
            hazards.add("PDF_ACTION", f"unreadable object {_where(obj)}: {type(exc).__name__}")
    for problem in unread:  # what was not seen cannot be vouched for
        hazards.add("PDF_ACTION", f"not inspected: {problem}")
    return hazards


def _action_evidence(obj: Dictionary | Stream) -> str:
    kind = _action_type(obj)
    if kind == "/URI":
        return defang_url(_text(obj.get(Name.URI)))
    if kind == "/JavaScript":
        return " ".join(_text(obj.get(Name.JS)).split())[:80]
    if kind == "/Launch":
        target = obj.get(Name.F) or obj.get(Name.Win)
        if isinstance(target, Dictionary):
            target = target.get(Name.F) or target.get(Name.UF)
        return f"Launch {_text(target)[:80]}"
    if kind in ("/GoToR", "/GoToE", "/SubmitForm", "/ImportData"):
        target = obj.get(Name.F)
        if isinstance(target, Dictionary):
            target = target.get(Name.F) or target.get(Name.UF)
        return f"{kind[1:]} {_text(target)[:80]}"
    return kind[1:]


# Every key _inspect_object looks at: an object with none of them has nothing to report.
# Keys are read once as a set of strings: each ``Name.X in obj`` and ``obj.get`` is a call
# into qpdf through pybind11 (about 17 µs an object for a dozen of them, three walks of every
# object per PDF), and qpdf's key list, like ``in``, leaves out keys whose value is null.
_INSPECTED_KEYS = frozenset(
    {"/S", "/JS", "/AA", "/Type", "/Subtype", "/EF", "/3DD", "/RichMediaContent", "/XFA"}
)
_U3D, _PRC = Name("/U3D"), Name("/PRC")


def _inspect_object(obj: Dictionary | Stream, hazards: _Hazards) -> None:
    keys = set(obj.keys())
    if keys.isdisjoint(_INSPECTED_KEYS):
        return
    # _action_type needs /S to be a name: without the key there is no action.
    code = _bad_action(obj) if "/S" in keys else ""
    if code:
        hazards.add(code, _action_evidence(obj))
    if "/JS" in keys:
        hazards.add("PDF_JAVASCRIPT", f"/JS in {_where(obj)}")
    if "/AA" in keys:
        aa = obj.get(Name.AA)
        triggers = ",".join(str(k)[1:] for k in aa) if isinstance(aa, Dictionary) else "?"
        hazards.add("PDF_ACTION", f"/AA {triggers} in {_where(obj)}")
    kind = obj.get(Name.Type) if "/Type" in keys else None
    subtype = obj.get(Name.Subtype) if "/Subtype" in keys else None
    if kind == Name.EmbeddedFile:
        hazards.add("PDF_EMBEDDED_FILE", f"embedded file stream {_where(obj)}")
    if "/EF" in keys:
        name = obj.get(Name.UF) or obj.get(Name.F)
        hazards.add("PDF_EMBEDDED_FILE", _text(name)[:80] if name is not None else _where(obj))
    if (
        isinstance(subtype, Name)
        and str(subtype) in _DROPPED_ANNOTS
        and kind in (None, Name.Annot)
        and "/Rect" in keys  # an annotation, not e.g. a /Subtype /3D stream
    ):
        hazards.add(_DROPPED_ANNOTS[str(subtype)], f"{str(subtype)[1:]} annotation {_where(obj)}")
    if subtype in (_U3D, _PRC) or "/3DD" in keys:
        hazards.add("PDF_3D", f"3D data {_where(obj)}")
    if "/RichMediaContent" in keys:
        hazards.add("PDF_RICHMEDIA", f"RichMediaContent {_where(obj)}")
    if "/XFA" in keys and "/Fields" in keys:
        hazards.add("PDF_XFA", _where(obj))


# --- rebuild -------------------------------------------------------------------------------


def _neutralize(pdf: pikepdf.Pdf, defang: bool) -> list[str]:
    """Remove everything ``inspect_pdf`` reports, in place. Returns defanged URI targets."""
    uris: list[str] = []
    # Collect link targets before pikepdf.sanitize drops the URI actions.
    for page in pdf.pages:
        annots = page.obj.get(Name.Annots)
        if not isinstance(annots, Array):
            continue
        for annot in annots:
            if not isinstance(annot, Dictionary):
                continue
            action = annot.get(Name.A)
            if _is_action(action) and _action_type(action) == "/URI":
                target = defang_url(_text(action.get(Name.URI)))
                uris.append(target)
                if defang:
                    annot[Name.Contents] = pikepdf.String(target)

    library_removals().apply(pdf)

    root = pdf.Root
    if _is_action(root.get(Name.OpenAction)):
        del root[Name.OpenAction]
    for key in (Name("/NeedsRendering"), Name.URI, Name.Perms, Name.Collection):
        if key in root:
            del root[key]
    acroform = root.get(Name.AcroForm)
    if isinstance(acroform, Dictionary) and Name.XFA in acroform:
        del acroform[Name.XFA]
    names = root.get(Name.Names)
    if isinstance(names, Dictionary):
        for key in (
            Name.JavaScript,
            Name.EmbeddedFiles,
            Name("/AlternatePresentations"),
            Name.Renditions,
        ):
            if key in names:
                del names[key]

    for page in pdf.pages:
        annots = page.obj.get(Name.Annots)
        if isinstance(annots, Array):
            kept = [
                a
                for a in annots
                if not (
                    isinstance(a, Dictionary)
                    and isinstance(a.get(Name.Subtype), Name)
                    and str(a.get(Name.Subtype)) in _DROPPED_ANNOTS
                )
            ]
            if len(kept) != len(annots):
                page.obj[Name.Annots] = Array(kept)

    for obj in list(_walk(pdf)):
        _neutralize_object(obj)
    return uris


# Every key _neutralize_object looks at (read as a set first: see _INSPECTED_KEYS).
_REMOVED_KEYS = ("/AA", "/JS", "/EF", "/RichMediaContent", "/3DD")
_NEUTRALIZED_KEYS = frozenset({*_REMOVED_KEYS, "/S", "/Type", "/XFA", "/A", "/Next", "/OpenAction"})


def _neutralize_object(obj: Dictionary | Stream) -> None:
    keys = set(obj.keys())
    if keys.isdisjoint(_NEUTRALIZED_KEYS):
        return
    for key in _REMOVED_KEYS:
        if key in keys:
            del obj[key]
            keys.discard(key)
    if "/S" in keys and _bad_action(obj):
        # The action object may be shared; emptying it disarms every reference at once.
        for field in list(obj.keys()):
            if isinstance(obj, Stream) and field in ("/Length", "/Filter", "/DecodeParms"):
                continue
            del obj[field]
        keys = set(obj.keys())
    if "/Type" in keys and obj.get(Name.Type) == Name.EmbeddedFile and isinstance(obj, Stream):
        obj.write(b"")
        for field in list(obj.keys()):
            if field not in ("/Length",):
                del obj[field]
        keys = set(obj.keys())
    if "/XFA" in keys and "/Fields" in keys:
        del obj[Name.XFA]
    for key in ("/A", "/Next", "/OpenAction"):
        if key not in keys:
            continue
        value = obj.get(key)
        if isinstance(value, Dictionary) and not _action_type(value):
            del obj[key]  # an action we emptied: drop the dangling slot too


_SIMPLE_FONT_TYPES = {"/Type1", "/TrueType", "/MMType1"}
_URL_SCHEME = re.compile(rb"(?i)(h)(tt)(ps?)(?=://)")
_WWW_DOT = re.compile(rb"(?i)(?<![a-z0-9])www\d{0,3}(\.)(?=[a-z0-9])")


# Widths of the glyphs we swap in and out (t, x, T, X, the full stop, and byte 0xB7, the
# bullet in the standard fonts' built-in StandardEncoding) in the standard 14 fonts (Adobe
# AFM files), which may come without /Widths.
def _base14(t: int, x: int, upper_t: int, upper_x: int, stop: int) -> dict[int, float]:
    return {ord("t"): t, ord("x"): x, ord("T"): upper_t, ord("X"): upper_x, 0x2E: stop, 0xB7: 350}


_BASE14_WIDTHS = {
    "Helvetica": _base14(278, 500, 611, 667, 278),
    "Helvetica-Oblique": _base14(278, 500, 611, 667, 278),
    "Helvetica-Bold": _base14(333, 556, 611, 667, 278),
    "Helvetica-BoldOblique": _base14(333, 556, 611, 667, 278),
    "Times-Roman": _base14(278, 500, 611, 722, 250),
    "Times-Italic": _base14(278, 444, 556, 611, 250),
    "Times-Bold": _base14(333, 500, 667, 722, 250),
    "Times-BoldItalic": _base14(278, 500, 611, 667, 250),
    **{
        name: {**_base14(600, 600, 600, 600, 600), 0xB7: 600}
        for name in ("Courier", "Courier-Oblique", "Courier-Bold", "Courier-BoldOblique")
    },
}


def _widths(font: Any) -> tuple[int, list[float]] | None:
    """(FirstChar, Widths) of a simple font, in 1/1000 text space units; None if unknown."""
    try:
        first = int(font.get(Name.FirstChar))
        return first, [float(w) for w in font.get(Name.Widths)]
    except (TypeError, ValueError, pikepdf.PdfError):
        pass
    base = str(font.get(Name.BaseFont, "")).lstrip("/")
    if base in _BASE14_WIDTHS and Name.Encoding not in font:
        widths = [0.0] * 256
        for code, width in _BASE14_WIDTHS[base].items():
            widths[code] = width
        return 0, widths
    return None


def _defanged_items(items: list[Any], metrics: tuple[int, list[float]]) -> list[Any] | None:
    """The elements of one TJ array (strings and kerning numbers) with ``http(s)://`` ->
    ``hxxp(s)://`` and ``www.`` -> ``www•``, also where they are split over several strings
    (``[(htt) -15 (ps://…)]``), and a kerning number after each swapped glyph that gives
    back exactly the width difference, so nothing after it moves. None when there is
    nothing to change or a width is unknown (a glyph the font lacks has width 0)."""
    first, widths = metrics

    def width(code: int) -> float:
        index = code - first
        found = widths[index] if 0 <= index < len(widths) else 0.0
        return found if found > 0 else -1e9  # unknown: the sum goes negative, refused below

    # Each string's bytes, read once (None for the kerning numbers between them).
    texts = [bytes(i) if isinstance(i, pikepdf.String) else None for i in items]
    joined = b"".join(t for t in texts if t is not None)
    swaps: dict[int, int] = {}  # offset in ``joined`` -> new byte
    for match in _URL_SCHEME.finditer(joined):
        for offset in range(match.start(2), match.end(2)):
            swaps[offset] = ord("X") if joined[offset : offset + 1].isupper() else ord("x")
    for match in _WWW_DOT.finditer(joined):
        # "www." -> "www•" (the byte 0xB7: a bullet or a middle dot, as the encoding has it).
        swaps[match.start(1)] = 0xB7
    if not swaps or any(width(joined[o]) < 0 or width(new) < 0 for o, new in swaps.items()):
        return None
    out: list[Any] = []
    offset = 0
    for item, raw in zip(items, texts, strict=True):
        if raw is None:
            out.append(item)
            continue
        start = 0
        for position in sorted(o - offset for o in swaps if offset <= o < offset + len(raw)):
            old, new = raw[position], swaps[offset + position]
            out.append(pikepdf.String(raw[start:position] + bytes([new])))
            out.append(width(new) - width(old))  # positive TJ numbers move the next glyph left
            start = position + 1
        if start < len(raw):
            out.append(pikepdf.String(raw[start:]))
        offset += len(raw)
    return out


def _font_metrics(resources: Any) -> dict[str, tuple[int, list[float]]]:
    metrics: dict[str, tuple[int, list[float]]] = {}
    fonts = resources.get(Name.Font) if isinstance(resources, Dictionary) else None
    if not isinstance(fonts, Dictionary):
        return metrics
    for key, font in fonts.items():
        if isinstance(font, Dictionary) and str(font.get(Name.Subtype, "")) in _SIMPLE_FONT_TYPES:
            found = _widths(font)
            if found is not None:
                metrics[str(key)] = found
    return metrics


_FORM_NESTING = 8  # Form XObjects inside Form XObjects that we follow


# The operators _defang_content acts on; every other instruction is kept as it is.
_DEFANG_OPERATORS = frozenset({"q", "Q", "Tf", "Do", "Tj", "TJ", "'", '"'})


def _instruction(operator: str, *operands: Any) -> Any:
    return pikepdf.ContentStreamInstruction(list(operands), pikepdf.Operator(operator))


def _defang_content(
    pdf: pikepdf.Pdf, holder: Any, resources: Any, seen: set[tuple[int, int]], depth: int
) -> tuple[int, bytes | None]:
    """Rewrite the schemes in one content stream (a page's, or a Form XObject's), and in the
    forms it paints. Returns (strings changed, the new content or None if unchanged)."""
    metrics = _font_metrics(resources)
    xobjects = resources.get(Name.XObject) if isinstance(resources, Dictionary) else None
    try:
        instructions = pikepdf.parse_content_stream(holder)
    except Exception:  # unparseable content stays as qpdf wrote it; the page check decides
        return 0, None
    changed = 0
    font = ""
    fonts_saved: list[str] = []
    rewritten: list[Any] = []
    for instruction in instructions:
        if isinstance(instruction, pikepdf.ContentStreamInlineImage):
            rewritten.append(instruction)
            continue
        op = str(instruction.operator)
        if op not in _DEFANG_OPERATORS:
            rewritten.append(instruction)
            continue
        # Only now: the operands of the instructions kept as they are (positions, matrices)
        # need not become Python objects.
        operands = list(instruction.operands)
        if op == "q":
            fonts_saved.append(font)
        elif op == "Q" and fonts_saved:
            font = fonts_saved.pop()
        elif op == "Tf" and operands and isinstance(operands[0], Name):
            font = str(operands[0])
        elif op == "Do" and operands and isinstance(xobjects, Dictionary) and depth < _FORM_NESTING:
            form = xobjects.get(str(operands[0]))
            if isinstance(form, Stream) and form.get(Name.Subtype) == Name.Form:
                key = form.objgen
                if key == (0, 0) or key not in seen:
                    seen.add(key)
                    inner = form.get(Name.Resources, resources)
                    count, data = _defang_content(pdf, form, inner, seen, depth + 1)
                    if data is not None:
                        form.write(data)
                        changed += count
        elif op in ("Tj", "TJ", "'", '"') and font in metrics and operands:
            shown = operands[-1]
            items = list(shown) if op == "TJ" and isinstance(shown, Array) else [shown]
            new_items = _defanged_items(items, metrics[font])
            if new_items is not None:
                changed += 1
                if op == "'":  # next line, then show
                    rewritten.append(_instruction("T*"))
                elif op == '"':  # word and character spacing, next line, then show
                    rewritten += [
                        _instruction("Tw", operands[0]),
                        _instruction("Tc", operands[1]),
                        _instruction("T*"),
                    ]
                instruction = pikepdf.ContentStreamInstruction(
                    [Array(new_items)], pikepdf.Operator("TJ")
                )
        rewritten.append(instruction)
    if not changed:
        return changed, None
    return changed, pikepdf.unparse_content_stream(rewritten)


def _defang_page_text(pdf: pikepdf.Pdf) -> int:
    """Rewrite ``http(s)://`` as ``hxxp(s)://`` and ``www.`` as ``www•`` in text drawn with
    simple (one-byte) fonts that carry their glyph widths, compensating the width so the
    layout does not move: in Tj, TJ (also when split over the array's strings), ' and "
    operators, in page content and in the Form XObjects it paints. What this cannot rewrite
    exactly (CID fonts, whose bytes are glyph numbers; text split over operators; mail
    addresses; fonts without the glyph) is left to ``linkable_pages``, which finds it in the
    written file. Returns how many strings changed."""
    changed = 0
    seen: set[tuple[int, int]] = set()
    for page in pdf.pages:
        resources = page.obj.get(Name.Resources, Dictionary())
        count, data = _defang_content(pdf, page, resources, seen, 0)
        if data is not None:
            page.obj[Name.Contents] = pdf.make_stream(data)
            changed += count
    return changed


def _open(data: bytes) -> pikepdf.Pdf:
    try:
        return pikepdf.open(io.BytesIO(data))
    except pikepdf.PasswordError:
        raise CannotSanitize("PDF_ENCRYPTED", "a password is needed to open it") from None
    except (pikepdf.PdfError, ValueError, RuntimeError, OverflowError) as exc:
        raise CannotSanitize("PDF_DAMAGED", f"{type(exc).__name__}: {exc}"[:300]) from None


def _rebuild(
    data: bytes, part_id: str, options: SanitizeOptions
) -> tuple[bytes, list[Finding], int]:
    findings: list[Finding] = []
    pdf = _open(data)
    with pdf:
        if pdf.is_encrypted:
            findings.append(
                Finding("PDF_ENCRYPTION_REMOVED", part_id, "empty user password; written clear")
            )
        if data.count(b"%%EOF") > 1:
            findings.append(
                Finding(
                    "PDF_INCREMENTAL_UPDATE", part_id, f"{data.count(b'%%EOF')} end-of-file marks"
                )
            )
        try:
            page_count = len(pdf.pages)
            hazards = inspect_pdf(pdf, part_id)
            findings.extend(hazards.findings())
            _neutralize(pdf, options.defang_urls)
            if options.defang_urls:
                rewritten = _defang_page_text(pdf)
                if rewritten:
                    findings.append(
                        Finding("PDF_URI_TEXT_DEFANGED", part_id, f"{rewritten} text strings")
                    )
            out = io.BytesIO()
            with warnings.catch_warnings():
                # pikepdf warns about widgets unreachable from AcroForm: not our concern here.
                warnings.simplefilter("ignore")
                pdf.save(out, **SAVE_OPTIONS)
        except CannotSanitize:
            raise
        except (pikepdf.PdfError, ValueError, RuntimeError, TypeError, KeyError) as exc:
            raise CannotSanitize("PDF_DAMAGED", f"{type(exc).__name__}: {exc}"[:300]) from None
        try:  # qpdf warns while resolving objects, so only after the whole file was written
            repaired = [
                re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "input", str(w))
                for w in pdf.get_warnings()
            ]
        except Exception:
            repaired = []
        if repaired:
            findings.append(Finding("PDF_REPAIRED", part_id, "; ".join(repaired[:3])[:300]))
    rebuilt = out.getvalue()
    _verify(rebuilt, page_count, part_id)
    return rebuilt, findings, page_count


def _verify(rebuilt: bytes, page_count: int, part_id: str) -> None:
    """Reopen our own output from its bytes and look again; anything left fails closed."""
    try:
        with pikepdf.open(io.BytesIO(rebuilt)) as check:
            if len(check.pages) != page_count:
                raise CannotSanitize(
                    "PDF_VERIFY_FAILED", f"{len(check.pages)} pages after rebuild, {page_count}"
                )
            left = inspect_pdf(check, part_id)
    except pikepdf.PdfError as exc:
        raise CannotSanitize("PDF_VERIFY_FAILED", f"rebuilt copy does not reopen: {exc}") from None
    if left:
        detail = "; ".join(f"{f.code} {f.detail}" for f in left.findings())
        raise CannotSanitize("PDF_VERIFY_FAILED", detail[:400])


# --- rasterize -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PageImage:
    """One page rendered by PDFium: a JPEG, its pixel size, and the page's size in points as
    a viewer shows it (rotation applied)."""

    jpeg: bytes
    width_px: int
    height_px: int
    width_pt: float
    height_pt: float

    def stream(self, pdf: pikepdf.Pdf) -> Stream:
        return pdf.make_stream(
            self.jpeg,
            Type=Name.XObject,
            Subtype=Name.Image,
            Width=self.width_px,
            Height=self.height_px,
            ColorSpace=Name.DeviceRGB,
            BitsPerComponent=8,
            Filter=Name.DCTDecode,
        )

    def content(self) -> bytes:
        return f"q {self.width_pt:.4f} 0 0 {self.height_pt:.4f} 0 0 cm /Im0 Do Q".encode("ascii")


def _render(document: Any, index: int, options: SanitizeOptions) -> _PageImage:
    """Page ``index`` as a JPEG at ``options.rasterize_dpi`` (less for huge pages, so that no
    image exceeds ``options.max_image_pixels``), annotations and form fields drawn in."""
    from PIL import Image

    page = document[index]
    try:
        # PDFium's page size is already the shown one: crop box, rotation applied (a page with
        # /Rotate 90 is wider than high here, and so is its rendering).
        width_pt, height_pt = page.get_size()
        if width_pt <= 0 or height_pt <= 0:
            raise CannotSanitize("PDF_DAMAGED", f"page {index + 1} has no size")
        scale = options.rasterize_dpi / 72.0
        pixels = width_pt * height_pt * scale * scale
        if pixels > options.max_image_pixels:
            scale *= (options.max_image_pixels / pixels) ** 0.5
        bitmap = page.render(scale=scale, may_draw_forms=True, draw_annots=True)
        image: Image.Image = bitmap.to_pil().convert("RGB")
    finally:
        page.close()
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, subsampling=0)
    return _PageImage(buffer.getvalue(), image.width, image.height, width_pt, height_pt)


def _pdfium_open(data: bytes) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = "PDF_ENCRYPTED" if "password" in str(exc).lower() else "PDF_DAMAGED"
        raise CannotSanitize(code, f"PDFium: {exc}"[:300]) from None


def rasterize_pdf(data: bytes, options: SanitizeOptions) -> tuple[bytes, int]:
    """Render every page with PDFium and assemble an image-only PDF; returns (pdf, pages).

    Bounded: at most ``options.max_pages`` pages, each at most ``options.max_image_pixels``.
    """
    document = _pdfium_open(data)
    try:
        pages = len(document)
        if pages == 0:
            raise CannotSanitize("PDF_DAMAGED", "no pages to render")
        if pages > options.max_pages:
            raise CannotSanitize("PDF_TOO_MANY_PAGES", f"{pages} pages > {options.max_pages}")
        out = pikepdf.new()
        for index in range(pages):
            image = _render(document, index, options)
            new_page = out.add_blank_page(page_size=(image.width_pt, image.height_pt))
            new_page.obj[Name.Resources] = Dictionary(XObject=Dictionary(Im0=image.stream(out)))
            new_page.obj[Name.Contents] = out.make_stream(image.content())
        buffer = io.BytesIO()
        out.save(buffer, deterministic_id=True)
        return buffer.getvalue(), pages
    finally:
        document.close()


# --- text on the pages that a viewer turns into links ---------------------------------------

# What PDF viewers make links of in page text: PDFium (Chrome, Edge) and pdf.js look for
# http://, https://, www. and mail addresses; Acrobat's "Create links from URLs" (on by
# default) much the same. Matched on NFKC-folded text, so full-width ｈｔｔｐｓ：／／ counts too,
# and any "scheme://" except our own defanged hxxp(s)/fxp. Bare domains (example.com) are
# not linkified by these viewers and are left alone.
_VIEWER_LINK_PARTS = (
    # (a string every match contains, or "" where there is none to look for; the pattern)
    ("://", r"(?<![a-z0-9+.-])(?!hxxps?://|fxp://)[a-z][a-z0-9+.-]{1,24}://[^\s]+"),
    ("", r"(?<![a-z0-9])mailto:[^\s]+"),
    ("", r"(?<![a-z0-9])www\d{0,3}\.[a-z0-9][^\s]*"),
    # A local part is at most 64 octets (RFC 5321 4.5.3.1.1). Unbounded, every position of a
    # long run of letters rescanned the run to its end: quadratic (a page of 20,000 letters
    # took 2.4 s). A longer one still matches, from its last 64 characters.
    ("@", r"[a-z0-9._%+-]{1,64}@[a-z0-9-]+(?:\.[a-z0-9-]+)+"),
)
_VIEWER_LINK = re.compile("|".join(p for _, p in _VIEWER_LINK_PARTS), re.IGNORECASE)


@functools.cache
def _viewer_link(present: tuple[bool, ...]) -> re.Pattern[str]:
    return re.compile(
        "|".join(p for (_, p), on in zip(_VIEWER_LINK_PARTS, present, strict=True) if on),
        re.IGNORECASE,
    )


def viewer_links(text: str) -> list[str]:
    """``_VIEWER_LINK``'s matches in ``text``: the same list, from a pattern without the
    alternatives whose required string (``://``, ``@``: punctuation, which no case folding
    changes) is not in the text, since those cannot match anywhere. Trying the address
    pattern at every letter of a page that has no "@" was most of the page check's regex
    time."""
    present = tuple(not anchor or anchor in text for anchor, _ in _VIEWER_LINK_PARTS)
    return [match.group() for match in _viewer_link(present).finditer(text)]


def _page_links(text_page: Any) -> list[str]:
    """What a viewer would linkify on one page: PDFium's own web-link finder (the one Chrome's
    viewer uses) and ``_VIEWER_LINK`` over the page's text."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    found: list[str] = []
    links = pdfium_c.FPDFLink_LoadWebLinks(text_page.raw)
    try:
        for index in range(pdfium_c.FPDFLink_CountWebLinks(links)):
            size = pdfium_c.FPDFLink_GetURL(links, index, None, 0)
            buffer = (ctypes.c_ushort * max(size, 1))()
            pdfium_c.FPDFLink_GetURL(links, index, buffer, size)
            found.append(bytes(buffer).decode("utf-16-le", "replace").rstrip("\x00"))
    finally:
        pdfium_c.FPDFLink_CloseWebLinks(links)
    text = unicodedata.normalize("NFKC", text_page.get_text_range())
    found += viewer_links(text)
    return list(dict.fromkeys(found))


def linkable_pages(data: bytes) -> dict[int, list[str]]:
    """{page index: link-like text} for every page of ``data`` a viewer would give links.

    The text of annotations drawn on the page (a FreeText "typewriter" box, a stamp) counts
    as page text: each page with annotations is flattened first (PDFium's
    ``FPDFPage_Flatten``, in this private copy only); a page whose annotations cannot be
    flattened counts as affected. Raises CannotSanitize ``PDF_TEXT_CHECK_FAILED`` when
    PDFium cannot read the text of a page that qpdf wrote: a page whose text was not seen is
    not vouched for."""
    import pypdfium2.raw as pdfium_c

    document = _pdfium_open(data)
    found: dict[int, list[str]] = {}
    try:
        for index in range(len(document)):
            page = document[index]
            try:
                if pdfium_c.FPDFPage_GetAnnotCount(page.raw) > 0:
                    flattened = pdfium_c.FPDFPage_Flatten(page.raw, pdfium_c.FLAT_NORMALDISPLAY)
                    if flattened == pdfium_c.FLATTEN_FAIL:
                        found[index] = ["annotations that could not be read"]
                        continue
                    page.close()  # PDFium shows the flattened content to a page loaded anew
                    page = document[index]
                text_page = page.get_textpage()
                try:
                    links = _page_links(text_page)
                finally:
                    text_page.close()
            except CannotSanitize:
                raise
            except Exception as exc:  # turned into a finding that holds or strips the part
                raise CannotSanitize(
                    "PDF_TEXT_CHECK_FAILED", f"page {index + 1}: {type(exc).__name__}: {exc}"
                ) from None
            finally:
                page.close()
            if links:
                found[index] = links
    finally:
        document.close()
    return found


# What a rasterized page no longer has: its annotations (drawn into the image), boxes and
# user unit (the image is the page), transparency group, structure, thumbnail, beads.
_RASTERIZED_PAGE_DROPS = (
    "/Annots", "/BleedBox", "/TrimBox", "/ArtBox", "/UserUnit", "/Group", "/StructParents",
    "/Thumb", "/PieceInfo", "/B", "/VP", "/Tabs",
)  # fmt: skip


def _rasterize_pages(data: bytes, pages: list[int], options: SanitizeOptions) -> bytes:
    """``data`` with the given pages (0-based) replaced by images of themselves: same page
    objects (outlines and links to them keep working), with only an image as content, no
    annotations, no inherited rotation or boxes. The other pages are untouched vector
    pages. Bounded by ``options.max_pages`` pages rendered."""
    if len(pages) > options.max_pages:
        raise CannotSanitize("PDF_TOO_MANY_PAGES", f"{len(pages)} pages to rasterize")
    document = _pdfium_open(data)
    try:
        images = {index: _render(document, index, options) for index in pages}
    finally:
        document.close()
    pdf = _open(data)
    with pdf:
        for index, image in images.items():
            page = pdf.pages[index].obj
            box = Array([0, 0, image.width_pt, image.height_pt])
            # Set, not deleted: MediaBox, CropBox, Rotate and Resources are inherited from
            # the page tree when a page lacks them (ISO 32000-2, 7.7.3.4).
            page[Name.MediaBox] = box
            page[Name.CropBox] = box
            page[Name.Rotate] = 0
            for key in _RASTERIZED_PAGE_DROPS:
                if key in page:
                    del page[key]
            page[Name.Resources] = Dictionary(XObject=Dictionary(Im0=image.stream(pdf)))
            page[Name.Contents] = pdf.make_stream(image.content())
        out = io.BytesIO()
        pdf.save(out, **SAVE_OPTIONS)
    return out.getvalue()


def _without_link_text(
    rebuilt: bytes, page_count: int, part_id: str, options: SanitizeOptions
) -> tuple[bytes | None, list[Finding]]:
    """The rebuilt PDF with no page a viewer would give links to: such pages rasterized
    (``pdf_url_text: rasterize-pages``), or None and a ``PDF_URL_TEXT_HELD`` finding
    (``quarantine``). Our own output is checked again; anything left fails closed."""
    pages = linkable_pages(rebuilt)
    if not pages:
        return rebuilt, []
    shown = "; ".join(
        f"page {index + 1}: {', '.join(defang_url(link)[:60] for link in links[:2])}"
        for index, links in list(pages.items())[:5]
    )
    detail = f"{len(pages)} of {page_count} pages ({shown})"[:400]
    if options.pdf_url_text == "quarantine":
        return None, [Finding("PDF_URL_TEXT_HELD", part_id, detail)]
    result = _rasterize_pages(rebuilt, sorted(pages), options)
    _verify(result, page_count, part_id)
    left = linkable_pages(result)
    if left:
        raise CannotSanitize("PDF_VERIFY_FAILED", f"link text left on pages {sorted(left)}")
    return result, [Finding("PDF_URL_TEXT_RASTERIZED", part_id, detail)]


# --- the sanitizer -------------------------------------------------------------------------


class PdfSanitizer:
    """See Sanitizer."""

    name = "pdf-rebuild"
    description = "Rebuild PDFs without active content (pikepdf); optionally image-only PDFs"
    handles = frozenset({"pdf"})

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        """See Sanitizer."""
        mode = options.mode if options.mode in ("rebuild", "rasterize", "both") else "rebuild"
        name = sanitize_filename(
            filename or "document.pdf",
            new_extension=None if extension_of(filename) == "pdf" else "pdf",
        )
        findings: list[Finding] = []
        outputs: list[OutputFile] = []
        rebuilt: bytes | None = None
        try:
            rebuilt, found, page_count = _rebuild(data, part_id, options)
            findings.extend(found)
        except CannotSanitize as exc:
            if mode != "rasterize" or exc.code in ("PDF_VERIFY_FAILED", "PDF_ENCRYPTED"):
                raise
            findings.append(Finding(exc.code, part_id, str(exc)[:300]))
        if mode in ("rebuild", "both") and rebuilt is not None:
            delivered = rebuilt
            if options.defang_urls:
                checked, found = _without_link_text(rebuilt, page_count, part_id, options)
                findings.extend(found)
                if checked is None:  # the policy holds it (gateway.inspect sees the finding)
                    return SanitizeResult(findings=tuple(findings))
                delivered = checked
            outputs.append(OutputFile(delivered, name, "application/pdf"))
        if mode in ("rasterize", "both"):
            image_pdf, pages = rasterize_pdf(rebuilt if rebuilt is not None else data, options)
            _verify(image_pdf, pages, part_id)
            twin = name if mode == "rasterize" else _twin_name(name)
            outputs.append(OutputFile(image_pdf, twin, "application/pdf"))
            findings.append(
                Finding("PDF_RASTERIZED", part_id, f"{pages} pages at {options.rasterize_dpi} dpi")
            )
        return SanitizeResult(outputs=tuple(outputs), findings=tuple(findings))


def _twin_name(name: str) -> str:
    stem = name[:-4] if name.lower().endswith(".pdf") else name
    return sanitize_filename(f"{stem}_画像化.pdf")
