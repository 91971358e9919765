"""Office Open XML (docx/xlsx/pptx and their macro variants): a rebuilt package, minus code.

The package is read member by member (bounded sizes, no encrypted members), and a new ZIP is
written with only what a document needs to show its content:

- parts removed by content type or path: ``vbaProject.bin`` and ``vbaData.xml`` (VBA),
  Excel 4.0 macro sheets and dialog sheets (XLM), ActiveX controls and their binaries, OLE
  objects and embedded packages (``embeddings/``), ``customUI`` ribbons (their ``onLoad``
  callbacks run macros), external links and data connections and query tables, Word
  ``altChunk`` imports, key-map and toolbar customizations, printer settings, and any
  non-XML part that is not an image or a font;
- relationships removed: every ``TargetMode="External"`` one (remote templates and the
  Follina ``oleObject`` pattern, CVE-2022-30190; hyperlinks; linked images), and every one
  whose target part was removed or whose type is code-bearing (attachedTemplate, oleObject,
  control, vbaProject, ui/extensibility, externalLink, aFChunk, subDocument, frame);
- XML that pointed at removed relationships loses the reference: hyperlink elements keep
  their text, ``a:blip`` keeps its embedded picture, OLE/ActiveX placeholders go (a Word
  object keeps its preview picture), PowerPoint OLE frames go with their graphic frame;
- Word fields not on an allow-list of layout and reference fields (PAGE, TOC, REF, DATE,
  MERGEFIELD...) are unlinked: the instruction goes, the last displayed result stays. That
  covers DDE/DDEAUTO, INCLUDETEXT/INCLUDEPICTURE, LINK, IMPORT, MACROBUTTON, HYPERLINK and
  QUOTE (used to spell DDE out of character codes); nested fields inside an instruction
  make that field suspect too. Mail-merge data sources are removed;
- Excel formulas that reach outside (DDE ``cmd|' /c calc'!A0``, CALL/REGISTER/EXEC,
  WEBSERVICE, FILTERXML, IMAGE, RTD, SQL.REQUEST, and HYPERLINK when URLs are defanged) or
  refer to another workbook (``'\\\\host\\share\\[book.xlsx]Sheet1'!A1``, a URL, an index into
  a removed external link) lose the formula and keep their cached value as a constant
  (followers of a shared formula with it); defined names that do so, and Auto_Open-style
  ones, go; PowerPoint click/hover actions that run a macro, a program or an OLE verb go;
- evidence (targets, instructions, formulas) is defanged before it becomes a finding's
  detail, which logs and the admin UI show;
- macro-enabled content types become their plain ones, so ``.docm`` becomes ``.docx``
  (``.xlsm``/``.xlam`` -> ``.xlsx``, ``.pptm``/``.ppam`` -> ``.pptx``, templates alike).

The output is checked before it is returned: oletools' ``VBA_Parser`` must find neither VBA
nor XLM macros in it, and a re-scan must find no removed part type, external relationship or
non-allow-listed field. Otherwise the part fails closed (``OOXML_VERIFY_FAILED``).

Modes ``rasterize`` and ``both`` additionally render the *rebuilt* package through
LibreOffice (``soffice``, optional, as for legacy OLE) into an image-only PDF; without
LibreOffice ``rasterize`` gives no output and ``both`` only the rebuilt package, each with
the finding ``OOXML_RASTERIZE_UNAVAILABLE``.

What this module does not do: it does not open binary workbooks (``.xlsb``: BIFF12 records,
not XML; ``OOXML_BINARY``), encrypted packages (they are OLE files: ``gateway.sanitizers.ole``),
or judge images and fonts inside the package (they are kept as they are).
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from gateway.detect import extension_of, sanitize_filename
from gateway.errors import CannotSanitize
from gateway.logs import replace_control_chars
from gateway.report import Finding
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult
from gateway.sanitizers.urls import defang_untrusted
from gateway.sanitizers.zipcopy import RawMember, ZipCopier, inflate_exactly, raw_member

FINDING_CODES: tuple[str, ...] = (
    "OOXML_VBA_MACRO",  # vbaProject.bin (detail: olevba's auto-exec/suspicious keywords)
    "OOXML_XLM_MACRO",  # Excel 4.0 macro sheets
    "OOXML_ACTIVEX",  # ActiveX controls
    "OOXML_OLE_OBJECT",  # embedded OLE objects and packages
    "OOXML_EXTERNAL_RELATIONSHIP",  # remote template, Follina, external OLE/link targets
    "OOXML_HYPERLINK",  # external hyperlinks made inert (text kept)
    "OOXML_CUSTOM_UI",  # customUI ribbon (onLoad callbacks)
    "OOXML_DATA_CONNECTION",  # data connections, query tables, external workbook links
    "OOXML_ALT_CHUNK",  # Word altChunk imports (HTML/RTF/MHT inside the docx)
    "DDE_FIELD",  # DDE/DDEAUTO field or DDE formula or ddeLink
    "OOXML_FIELD_REMOVED",  # other fields not on the allow-list (INCLUDEPICTURE, LINK...)
    "OOXML_FORMULA_REMOVED",  # formulas that call out (CALL, WEBSERVICE, IMAGE, HYPERLINK...)
    "OOXML_EXTERNAL_REFERENCE",  # formulas and names that refer to another workbook by path/URL
    "OOXML_ACTION_REMOVED",  # PowerPoint actions running macros/programs, Auto_Open names
    "OOXML_MACRO_ENABLED_TYPE",  # macro-enabled content type converted to the plain one
    "OOXML_PART_REMOVED",  # other parts dropped (printer settings, unknown binaries)
    "OOXML_BINARY",  # xlsb: binary workbook, cannot be rebuilt
    "OOXML_DAMAGED",  # not a readable package
    "OOXML_VERIFY_FAILED",  # macros or removed content found in our own output
    "OOXML_RASTERIZED",  # rendered through LibreOffice into an image-only PDF
    "OOXML_RASTERIZE_UNAVAILABLE",  # rasterize asked for, LibreOffice not installed
)

_NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_NS_CT = "http://schemas.openxmlformats.org/package/2006/content-types"
_NS_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

_MACRO_TYPES = {
    "application/vnd.ms-word.document.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        "docx",
    ),
    "application/vnd.ms-word.template.macroenabledtemplate.main+xml": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
        "dotx",
    ),
    "application/vnd.ms-excel.sheet.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "xlsx",
    ),
    "application/vnd.ms-excel.template.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
        "xltx",
    ),
    "application/vnd.ms-excel.addin.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "xlsx",
    ),
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        "pptx",
    ),
    "application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
        "ppsx",
    ),
    "application/vnd.ms-powerpoint.template.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
        "potx",
    ),
    "application/vnd.ms-powerpoint.addin.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        "pptx",
    ),
}
_PLAIN_MAIN_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": "docx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml": "dotx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": "xlsx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml": "xltx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": "pptx",
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml": "ppsx",
    "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml": "potx",
}
_OUTPUT_MIME = {
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "dotx": "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xltx": "application/vnd.openxmlformats-officedocument.spreadsheetml.template",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "ppsx": "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
    "potx": "application/vnd.openxmlformats-officedocument.presentationml.template",
}

# (pattern on the lower-case content type or path, finding code). Order matters: first wins.
_DROP_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), code)
    for p, code in (
        (r"vbaproject|vbadata|\.bin$.*vba|/vba", "OOXML_VBA_MACRO"),
        (r"macrosheet|intlmacrosheet|dialogsheet|/macrosheets/|/dialogsheets/", "OOXML_XLM_MACRO"),
        (r"activex|/ctrlprops/|ctrlprop\+xml", "OOXML_ACTIVEX"),
        (r"oleobject|/embeddings/|\.package$", "OOXML_OLE_OBJECT"),
        (r"customui|/customui/|ui/extensibility", "OOXML_CUSTOM_UI"),
        (
            r"externallink|/externallinks/|connections\+xml|/connections\.xml|querytable|"
            r"/querytables/",
            "OOXML_DATA_CONNECTION",
        ),
        (r"afchunk|/afchunk", "OOXML_ALT_CHUNK"),
        (r"keymapcustomizations|attachedtoolbars", "OOXML_VBA_MACRO"),
        (r"printersettings|/printersettings/", "OOXML_PART_REMOVED"),
    )
)
# Relationship types (last path segment, lower case) that carry code or fetch content.
_DROP_REL_TYPES = {
    "vbaproject": "OOXML_VBA_MACRO",
    "wordvbadata": "OOXML_VBA_MACRO",
    "keymapcustomizations": "OOXML_VBA_MACRO",
    "attachedtoolbars": "OOXML_VBA_MACRO",
    "attachedtemplate": "OOXML_EXTERNAL_RELATIONSHIP",
    "oleobject": "OOXML_OLE_OBJECT",
    "package": "OOXML_OLE_OBJECT",
    "control": "OOXML_ACTIVEX",
    "activexcontrol": "OOXML_ACTIVEX",
    "activexcontrolbinary": "OOXML_ACTIVEX",
    "extensibility": "OOXML_CUSTOM_UI",
    "externallink": "OOXML_DATA_CONNECTION",
    "externallinkpath": "OOXML_DATA_CONNECTION",
    "connections": "OOXML_DATA_CONNECTION",
    "querytable": "OOXML_DATA_CONNECTION",
    "afchunk": "OOXML_ALT_CHUNK",
    "subdocument": "OOXML_EXTERNAL_RELATIONSHIP",
    "frame": "OOXML_EXTERNAL_RELATIONSHIP",
    "macrosheet": "OOXML_XLM_MACRO",
    "intlmacrosheet": "OOXML_XLM_MACRO",
    "dialogsheet": "OOXML_XLM_MACRO",
    "ctrlprop": "OOXML_ACTIVEX",
    "printersettings": "OOXML_PART_REMOVED",
    "thumbnail": "OOXML_PART_REMOVED",
}

# Word fields that only lay out or refer inside the document (ECMA-376 Part 1, 17.16.5).
SAFE_FIELDS = frozenset(
    _word
    for _line in (
        "PAGE NUMPAGES SECTIONPAGES SECTION DATE TIME CREATEDATE SAVEDATE PRINTDATE EDITTIME",
        "AUTHOR TITLE SUBJECT KEYWORDS COMMENTS LASTSAVEDBY FILENAME FILESIZE NUMWORDS",
        "NUMCHARS DOCPROPERTY DOCVARIABLE TOC TOA TC TA XE INDEX REF PAGEREF NOTEREF STYLEREF",
        "SEQ LISTNUM AUTONUM AUTONUMLGL AUTONUMOUT BIDIOUTLINE SYMBOL EQ ADVANCE FORMTEXT",
        "FORMCHECKBOX FORMDROPDOWN MERGEFIELD MERGEREC MERGESEQ NEXT NEXTIF SKIPIF SET ASK",
        "FILLIN IF COMPARE = GOTOBUTTON BARCODE DISPLAYBARCODE USERNAME USERINITIALS",
        "USERADDRESS INFO TEMPLATE BIBLIOGRAPHY CITATION ADDRESSBLOCK GREETINGLINE",
        "AUTOTEXT AUTOTEXTLIST PRIVATE RD",
    )
    for _word in _line.split()
)
_DDE_KEYWORDS = {"DDE", "DDEAUTO"}
# Excel formulas that reach outside the workbook or run code.
# IMAGE (Excel 365, stored as _xlfn.IMAGE) fetches its URL on every recalculation.
_BAD_FORMULA = re.compile(
    r"(?i)(\b(CALL|REGISTER(\.ID)?|EXEC|WEBSERVICE|FILTERXML|RTD|DDE|IMPORTXML|IMAGE|"
    r"SQL\.REQUEST)\s*\()|"
    r"([A-Za-z0-9_.\-]+\|['\"]?[^!]*['\"]?!)"
)
# A reference into another workbook: "'\\host\share\[book.xlsx]Sheet 1'!A1" or
# "'https://host/[book.xlsx]Sheet1'!A1" (a sheet name may not contain brackets, so brackets in
# a quoted reference name a workbook), and unquoted "[book.xlsx]Sheet1!A1", "[1]Sheet1!A1"
# (an index into an externalLink part, which is removed). Excel opens the path when links are
# updated: SMB to a UNC host sends the user's NTLM hash. Table references ("Table1[Col]",
# "[@Col]") are never followed by "!".
_EXTERNAL_REFERENCE = re.compile(
    r"'(?:[^']|'')*\[(?:[^'\]]|'')+\](?:[^']|'')*'!|(?<![\w\]])\[[^\[\]'\"!]+\][\w.]*!"
)
_HYPERLINK_FORMULA = re.compile(r"(?i)\bHYPERLINK\s*\(")
_AUTO_NAMES = re.compile(r"(?i)^(_xlnm\.)?auto_(open|close|activate|deactivate)")
_BAD_PPT_ACTION = re.compile(r"(?i)ppaction://(macro|program|ole|customshow\?.*return)")
_MAX_MEMBERS = 10_000
_MAX_XML_BYTES = 64 * 1024 * 1024  # one XML part
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass
class _Package:
    parts: dict[str, bytes]  # name -> bytes, in the original order
    content_types: etree._Element
    removed: dict[str, str] = field(default_factory=dict)  # part name -> finding code
    # part name -> (the bytes read, their compressed stream in the input): a part still
    # holding those very bytes is written with that stream (gateway.sanitizers.zipcopy).
    raw: dict[str, tuple[bytes, RawMember]] = field(default_factory=dict)
    findings: dict[str, list[str]] = field(default_factory=dict)
    # (overrides by part name, defaults by extension) of ``content_types``, made on first use
    # (the parts' types were looked up by walking [Content_Types].xml once for every part).
    # ``_rewrite_content_types``, the one place that changes it, drops it.
    type_maps: tuple[dict[str, str], dict[str, str]] | None = None

    def note(self, code: str, evidence: str) -> None:
        # Evidence quotes the document (targets, field instructions, formulas) and is shown
        # in logs and the admin UI: no link may survive there (an "mhtml:https://" target).
        self.findings.setdefault(code, []).append(defang_untrusted(replace_control_chars(evidence)))


def _xml_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False
    )


def _parse(name: str, data: bytes) -> etree._Element:
    try:
        root = etree.fromstring(data, parser=_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise CannotSanitize("OOXML_DAMAGED", f"{name}: {exc}"[:300]) from None
    if root is None:
        raise CannotSanitize("OOXML_DAMAGED", f"{name}: empty XML")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        # Office never writes a DTD into a package part (ECMA-376 Part 2, 8.1.4 forbids
        # them); one here is an entity-expansion or XXE attempt.
        raise CannotSanitize("OOXML_DAMAGED", f"{name}: DOCTYPE in a package part")
    return root


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _read_package(data: bytes, options: SanitizeOptions) -> _Package:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise CannotSanitize("OOXML_DAMAGED", f"not a readable ZIP: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise CannotSanitize("OOXML_DAMAGED", f"{len(infos)} parts")
        total = sum(i.file_size for i in infos)
        if total > options.archive_max_total_size:
            raise CannotSanitize("OOXML_DAMAGED", f"expands to {total} bytes")
        parts: dict[str, bytes] = {}
        raw: dict[str, tuple[bytes, RawMember]] = {}
        budget = options.archive_max_total_size
        for info in infos:
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise CannotSanitize("OOXML_DAMAGED", "encrypted package member")
            name = info.filename.lstrip("/")
            if name in parts:
                raise CannotSanitize("OOXML_DAMAGED", f"duplicate part {name}")
            stream = raw_member(data, info)
            try:
                with archive.open(info) as member:  # zipfile's checks of the local header
                    # A well-formed member is decompressed once, by us, with the proof that
                    # lets the writer copy its stream; anything else the ordinary way.
                    if stream is not None and info.file_size <= budget:
                        stream = inflate_exactly(stream, info.file_size, info.CRC) or stream
                    if stream is not None and stream.content is not None:
                        content = stream.content
                    else:
                        content = member.read(min(info.file_size, budget) + 1)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
                raise CannotSanitize("OOXML_DAMAGED", f"{name}: {exc}"[:300]) from None
            if len(content) > info.file_size or len(content) > budget:
                raise CannotSanitize("OOXML_DAMAGED", f"{name} is larger than declared")
            budget -= len(content)
            parts[name] = content
            if stream is not None:
                raw[name] = (content, stream)
    ct_name = next((n for n in parts if n.lower() == "[content_types].xml"), None)
    if ct_name is None:
        raise CannotSanitize("OOXML_DAMAGED", "no [Content_Types].xml")
    content_types = _parse(ct_name, parts.pop(ct_name))
    return _Package(parts=parts, content_types=content_types, raw=raw)


def _content_type_of(package: _Package, name: str) -> str:
    if package.type_maps is None:
        package.type_maps = (
            {
                el.get("PartName", "").lstrip("/").lower(): el.get("ContentType", "")
                for el in package.content_types
                if _local(el.tag) == "Override"
            },
            {
                el.get("Extension", "").lower(): el.get("ContentType", "")
                for el in package.content_types
                if _local(el.tag) == "Default"
            },
        )
    overrides, defaults = package.type_maps
    found = overrides.get(name.lower())
    if found:
        return found.lower()
    return defaults.get(posixpath.splitext(name)[1].lstrip(".").lower(), "").lower()


def _main_type(package: _Package) -> str:
    for el in package.content_types:
        content_type = el.get("ContentType", "").lower()
        if content_type.endswith(".main+xml") or content_type.endswith(".main"):
            return content_type
    return ""


def _is_xml_type(content_type: str, name: str) -> bool:
    return (
        content_type.endswith("+xml")
        or content_type in ("application/xml", "text/xml")
        or name.lower().endswith((".xml", ".rels", ".vml"))
    )


def _kept_binary(content_type: str) -> bool:
    return content_type.startswith("image/") or "font" in content_type


def _vba_evidence(data: bytes) -> str:
    """olevba's view of the input's macros: auto-exec and suspicious keywords."""
    try:
        from oletools.olevba import VBA_Parser

        parser = VBA_Parser("input", data=data)
        try:
            keywords = [
                keyword
                for kind, keyword, _ in parser.analyze_macros()
                if kind in ("AutoExec", "Suspicious")
            ]
        finally:
            parser.close()
        return ", ".join(dict.fromkeys(keywords))[:200]
    except Exception:  # evidence only; the macro part is removed either way
        return ""


def _drop_parts(package: _Package, original: bytes) -> None:
    vba_noted = False
    for name in list(package.parts):
        lowered = "/" + name.lower()
        if lowered.endswith(".rels"):
            continue
        content_type = _content_type_of(package, name)
        code = ""
        for pattern, rule_code in _DROP_RULES:
            if pattern.search(content_type) or pattern.search(lowered):
                code = rule_code
                break
        if not code and not _is_xml_type(content_type, name) and not _kept_binary(content_type):
            code = "OOXML_PART_REMOVED"
        if not code:
            continue
        if code == "OOXML_DATA_CONNECTION" and b"ddeLink" in package.parts[name]:
            service = re.search(
                rb'ddeService="([^"]*)"[^>]*ddeTopic="([^"]*)"', package.parts[name]
            )
            detail = (
                " ".join(x.decode("utf-8", "replace") for x in service.groups())
                if service
                else name
            )
            package.note("DDE_FIELD", f"ddeLink {detail}"[:200])
        if code == "OOXML_VBA_MACRO" and not vba_noted and "vbaproject" in lowered:
            vba_noted = True
            evidence = _vba_evidence(original)
            package.note(code, name + (f" ({evidence})" if evidence else ""))
        else:
            package.note(code, name)
        package.removed[name] = code
        del package.parts[name]


def _rels_source(rels_name: str) -> str:
    """``word/_rels/document.xml.rels`` -> ``word/document.xml``; root rels -> ``""``."""
    directory, base = posixpath.split(rels_name)
    parent = posixpath.dirname(directory)
    return posixpath.join(parent, base[: -len(".rels")]) if base != ".rels" else ""


def _resolve(source: str, target: str) -> str:
    if target.startswith("/"):
        return posixpath.normpath(target.lstrip("/"))
    return posixpath.normpath(posixpath.join(posixpath.dirname(source), target))


def _clean_relationships(package: _Package, options: SanitizeOptions) -> dict[str, set[str]]:
    """Drop risky relationships; return removed relationship ids per source part."""
    removed_ids: dict[str, set[str]] = {}
    for rels_name in [n for n in package.parts if n.lower().endswith(".rels")]:
        source = _rels_source(rels_name)
        if source and source not in package.parts:
            package.removed[rels_name] = "OOXML_PART_REMOVED"
            del package.parts[rels_name]
            continue
        root = _parse(rels_name, package.parts[rels_name])
        changed = False
        for rel in list(root):
            if _local(rel.tag) != "Relationship":
                continue
            rel_type = rel.get("Type", "").rsplit("/", 1)[-1].lower()
            target = rel.get("Target", "")
            external = rel.get("TargetMode", "").lower() == "external"
            code = ""
            if external:
                code = (
                    "OOXML_HYPERLINK" if rel_type == "hyperlink" else "OOXML_EXTERNAL_RELATIONSHIP"
                )
                evidence = f"{rel_type} -> {target[:300]}"
            elif rel_type in _DROP_REL_TYPES:
                code = _DROP_REL_TYPES[rel_type]
                evidence = f"{rel_type} -> {target[:100]}"
            else:
                resolved = _resolve(source, target.split("#", 1)[0]) if target else ""
                if resolved and resolved in package.removed:
                    code = package.removed[resolved]
                    evidence = f"{rel_type} -> {target[:100]}"
            if not code:
                continue
            if external or (rel_type in _DROP_REL_TYPES and code != "OOXML_PART_REMOVED"):
                package.note(code, evidence)  # removed parts were noted when they went
            removed_ids.setdefault(source, set()).add(rel.get("Id", ""))
            root.remove(rel)
            changed = True
        if changed:
            package.parts[rels_name] = _serialize(root)
    return removed_ids


# --- XML parts --------------------------------------------------------------------------------

_LINK_ELEMENTS = {"hyperlink"}  # keep the element (and its text), drop the r:id
_KEEP_ELEMENT_ATTRS = {"link", "href", "pict", "dm", "lo", "qs", "cs"}  # a:blip r:link etc.
_CLICK_ELEMENTS = {"hlinkClick", "hlinkHover", "hlinkMouseOver"}
_EMPTY_CONTAINERS = {"oleObjects", "controls", "externalReferences", "definedNames"}
_EMPTY_CONTAINER_TAGS = tuple("{*}" + name for name in sorted(_EMPTY_CONTAINERS))  # any namespace
_R_ATTRIBUTE_PREFIX = "{" + _NS_R + "}"


def _clean_references(root: etree._Element, dropped: set[str]) -> int:
    """Remove references to dropped relationship ids. Returns how many were removed."""
    count = 0
    # Most parts reference nothing that was dropped: no walk over every attribute of every
    # element then (it was a third of a docx's sanitizing time).
    for element in list(root.iter(etree.Element)) if dropped else ():
        for attribute in list(element.attrib):
            if not attribute.startswith(_R_ATTRIBUTE_PREFIX):
                continue
            if element.attrib[attribute] not in dropped:
                continue
            count += 1
            local = _local(element.tag)
            attr = _local(attribute)
            if local in _LINK_ELEMENTS or (attr in _KEEP_ELEMENT_ATTRS and local == "blip"):
                del element.attrib[attribute]
                continue
            _remove_element(element)
            break
    for element in list(root.iter(*_EMPTY_CONTAINER_TAGS)):
        parent = element.getparent()
        if len(element) == 0 and parent is not None:
            parent.remove(element)
    return count


def _remove_element(element: etree._Element) -> None:
    target = element
    local = _local(element.tag)
    if local == "oleObj":  # PowerPoint: the whole graphic frame, with its AlternateContent
        node = element.getparent()
        while node is not None and _local(node.tag) != "graphicFrame":
            node = node.getparent()
        if node is not None:
            target = node
    parent = target.getparent()
    while parent is not None and _local(parent.tag) in ("Choice", "Fallback"):
        # mc:AlternateContent offers alternatives of the same object: remove them all.
        target = parent.getparent()
        parent = target.getparent() if target is not None else None
    if target is not None and target.getparent() is not None:
        target.getparent().remove(target)


@dataclass
class _Field:
    begin: etree._Element | None
    instr: list[str] = field(default_factory=list)
    elements: list[etree._Element] = field(default_factory=list)  # fldChars and instrTexts
    nested_text: list[etree._Element] = field(default_factory=list)  # w:t in the instruction
    separate: bool = False
    has_nested: bool = False


def field_keyword(instruction: str) -> str:
    text = instruction.strip()
    if text.startswith("="):
        return "="
    return text.split(None, 1)[0].upper() if text else ""


def _clean_fields(root: etree._Element, package: _Package, name: str) -> int:
    """Unlink Word fields whose keyword is not in SAFE_FIELDS; keep their displayed result."""
    w = "{" + _NS_W + "}"
    removed = 0
    stack: list[_Field] = []
    doomed: list[_Field] = []
    for element in list(root.iter(w + "fldChar", w + "instrText", w + "delInstrText", w + "t")):
        local = _local(element.tag)
        if local == "fldChar":
            kind = element.get(w + "fldCharType", "")
            if kind == "begin":
                if stack and not stack[-1].separate:
                    stack[-1].has_nested = True
                    stack[-1].instr.append(" \x00 ")
                stack.append(_Field(begin=element, elements=[element]))
            elif kind == "separate" and stack:
                stack[-1].separate = True
                stack[-1].elements.append(element)
            elif kind == "end" and stack:
                current = stack.pop()
                current.elements.append(element)
                if _judge(current, package, name):
                    doomed.append(current)
                    if stack and not stack[-1].separate:
                        stack[-1].has_nested = True
            elif kind in ("separate", "end"):
                _detach(element)  # a stray field character with no field: meaningless
        elif local in ("instrText", "delInstrText"):
            if stack:
                stack[-1].instr.append(element.text or "")
                stack[-1].elements.append(element)
            else:
                _detach(element)
        elif local == "t" and stack and not stack[-1].separate:
            stack[-1].nested_text.append(element)
    for unfinished in stack:  # a field with no end: treat as hostile (fail closed)
        unfinished.instr.insert(0, "\x00")
        if _judge(unfinished, package, name):
            doomed.append(unfinished)
    for doomed_field in doomed:
        for element in doomed_field.elements + doomed_field.nested_text:
            _detach(element)
        removed += 1
    for simple in list(root.iter(w + "fldSimple")):
        instruction = simple.get(w + "instr", "")
        probe = _Field(begin=None, instr=[instruction])
        if _judge(probe, package, name):
            parent = simple.getparent()
            if parent is not None:
                index = parent.index(simple)
                for child in list(simple):
                    parent.insert(index, child)
                    index += 1
                parent.remove(simple)
            removed += 1
    return removed


def _judge(candidate: _Field, package: _Package, name: str) -> bool:
    """True if the field must go; records the finding."""
    instruction = "".join(candidate.instr)
    keyword = field_keyword(instruction.replace("\x00", ""))
    starts_nested = instruction.lstrip().startswith("\x00")
    if keyword in SAFE_FIELDS and not starts_nested:
        return False
    shown = " ".join(instruction.replace("\x00", "{…}").split())[:120]
    if keyword in _DDE_KEYWORDS or re.search(r"(?i)\bdde(auto)?\b", instruction):
        package.note("DDE_FIELD", f"{name}: {shown}")
    else:
        package.note("OOXML_FIELD_REMOVED", f"{name}: {shown}")
    return True


def _detach(element: etree._Element) -> None:
    parent = element.getparent()
    if parent is not None:
        parent.remove(element)


def _clean_spreadsheet(root: etree._Element, package: _Package, name: str, defang: bool) -> int:
    changed = 0
    removed_shared: set[str] = set()
    for formula in list(root.iter()):
        if _local(formula.tag) != "f" or not formula.text:
            continue
        code = _formula_code(formula.text, defang)
        if code:
            cell = formula.getparent()
            where = cell.get("r", "") if cell is not None else ""
            package.note(code, f"{name} {where}: ={formula.text[:100]}")
            if formula.get("t") == "shared" and formula.get("si") is not None:
                removed_shared.add(formula.get("si", ""))
            _keep_cached_value(formula)
            changed += 1
    for follower in list(root.iter()):
        # Cells that share a removed formula hold only its index: they go with it.
        if (
            _local(follower.tag) == "f"
            and follower.get("t") == "shared"
            and follower.get("si") in removed_shared
        ):
            _keep_cached_value(follower)
            changed += 1
    for defined in list(root.iter()):
        if _local(defined.tag) != "definedName":
            continue
        if _AUTO_NAMES.match(defined.get("name", "")):
            package.note("OOXML_ACTION_REMOVED", f"{name}: defined name {defined.get('name')}")
            _detach(defined)
            changed += 1
            continue
        code = _formula_code(defined.text or "", defang=False)
        if code:
            package.note(code, f"{name}: {defined.get('name')} ={(defined.text or '')[:100]}")
            _detach(defined)
            changed += 1
    for names in list(root.iter()):
        if _local(names.tag) == "definedNames" and len(names) == 0:
            _detach(names)  # an empty container is not valid SpreadsheetML
    return changed


def _formula_code(text: str, defang: bool) -> str:
    """The finding code a formula (or a defined name's value) is removed for, or ""."""
    bad = _BAD_FORMULA.search(text)
    if bad:
        return "DDE_FIELD" if "|" in bad.group(0) else "OOXML_FORMULA_REMOVED"
    if _EXTERNAL_REFERENCE.search(text):
        return "OOXML_EXTERNAL_REFERENCE"
    if defang and _HYPERLINK_FORMULA.search(text):
        return "OOXML_FORMULA_REMOVED"
    return ""


def _keep_cached_value(formula: etree._Element) -> None:
    """Drop a cell's formula; the value Excel last computed stays as a constant. A text value
    of a formula (``t="str"``) becomes an inline string, the type of a constant text cell."""
    cell = formula.getparent()
    _detach(formula)
    if cell is None or cell.get("t") != "str":
        return
    namespace = cell.tag[: -len(_local(cell.tag))]
    value = cell.find(namespace + "v")
    text = value.text if value is not None else ""
    if value is not None:
        cell.remove(value)
    cell.set("t", "inlineStr")
    inline = etree.SubElement(cell, namespace + "is")
    etree.SubElement(inline, namespace + "t").text = text or ""


def _clean_presentation(root: etree._Element, package: _Package, name: str) -> int:
    changed = 0
    for element in list(root.iter()):
        if _local(element.tag) in _CLICK_ELEMENTS and _BAD_PPT_ACTION.search(
            element.get("action", "")
        ):
            package.note("OOXML_ACTION_REMOVED", f"{name}: {element.get('action', '')[:80]}")
            _detach(element)
            changed += 1
    return changed


def _clean_settings(root: etree._Element, package: _Package, name: str) -> int:
    changed = 0
    for element in list(root.iter()):
        if _local(element.tag) in ("mailMerge", "attachedTemplate", "docVars"):
            if _local(element.tag) != "docVars":
                package.note("OOXML_DATA_CONNECTION", f"{name}: {_local(element.tag)}")
            _detach(element)
            changed += 1
    return changed


def _clean_xml_parts(package: _Package, removed_ids: dict[str, set[str]], defang: bool) -> None:
    for name in list(package.parts):
        content_type = _content_type_of(package, name)
        if name.lower().endswith(".rels") or not _is_xml_type(content_type, name):
            continue
        data = package.parts[name]
        if len(data) > _MAX_XML_BYTES:
            raise CannotSanitize("OOXML_DAMAGED", f"{name}: {len(data)} bytes of XML")
        root = _parse(name, data)
        changed = _clean_references(root, removed_ids.get(name, set()))
        if "wordprocessingml" in content_type or name.lower().startswith("word/"):
            changed += _clean_fields(root, package, name)
            if name.lower().endswith("settings.xml"):
                changed += _clean_settings(root, package, name)
        if "spreadsheetml" in content_type or name.lower().startswith("xl/"):
            changed += _clean_spreadsheet(root, package, name, defang)
        if "presentationml" in content_type or name.lower().startswith("ppt/"):
            changed += _clean_presentation(root, package, name)
        if changed:
            package.parts[name] = _serialize(root)


def _rewrite_content_types(package: _Package) -> str:
    """Drop entries of removed parts, turn macro-enabled main types into plain ones.
    Returns the output extension."""
    extension = ""
    package.type_maps = None
    used_extensions = {posixpath.splitext(n)[1].lstrip(".").lower() for n in package.parts}
    lowered_parts = {p.lower() for p in package.parts}
    for element in list(package.content_types):
        local = _local(element.tag)
        content_type = element.get("ContentType", "")
        lowered = content_type.lower()
        if local == "Override":
            part = element.get("PartName", "").lstrip("/")
            if part not in package.parts and part.lower() not in lowered_parts:
                package.content_types.remove(element)
                continue
            if lowered in _MACRO_TYPES:
                plain, extension = _MACRO_TYPES[lowered]
                element.set("ContentType", plain)
                package.note("OOXML_MACRO_ENABLED_TYPE", f"{content_type} -> {plain}")
            elif lowered in _PLAIN_MAIN_TYPES:
                extension = _PLAIN_MAIN_TYPES[lowered]
        elif local == "Default":
            ext = element.get("Extension", "").lower()
            if ext not in used_extensions or any(p.search(lowered) for p, _ in _DROP_RULES):
                package.content_types.remove(element)
    return extension


def _write_package(package: _Package) -> bytes:
    writer = ZipCopier(_FIXED_DATE)
    try:
        writer.add("[Content_Types].xml", _serialize(package.content_types))
        for name, content in package.parts.items():
            read, stream = package.raw.get(name, (None, None))
            writer.add(name, content, stream if read is content else None)
    except ValueError as exc:  # over 4 GiB: the input's own limits stop far earlier
        raise CannotSanitize("OOXML_DAMAGED", str(exc)) from None
    return writer.getvalue()


def verify_ooxml(data: bytes) -> list[str]:
    """Problems left in a package: macros per oletools, removed part types, external
    relationships, non-allow-listed Word fields. Empty means clean."""
    problems: list[str] = []
    try:
        from oletools.olevba import VBA_Parser

        parser = VBA_Parser("output", data=data)
        try:
            if parser.detect_vba_macros():
                problems.append("olevba: VBA macros")
            if parser.detect_xlm_macros():
                problems.append("olevba: XLM macros")
        finally:
            parser.close()
    except Exception as exc:
        problems.append(f"olevba failed: {type(exc).__name__}")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            lowered = "/" + info.filename.lower()
            if any(p.search(lowered) for p, _ in _DROP_RULES):
                problems.append(f"part {info.filename}")
            if lowered.endswith(".rels"):
                text = archive.read(info)
                if re.search(rb'TargetMode\s*=\s*"External"', text, re.IGNORECASE):
                    problems.append(f"external relationship in {info.filename}")
            elif lowered.endswith(".xml") and lowered.startswith("/word/"):
                text = archive.read(info)
                for match in re.finditer(rb"<w:instrText[^>]*>([^<]*)<", text):
                    keyword = field_keyword(match.group(1).decode("utf-8", "replace"))
                    if keyword and keyword not in SAFE_FIELDS:
                        problems.append(f"field {keyword} in {info.filename}")
                for match in re.finditer(rb'w:instr="([^"]*)"', text):
                    keyword = field_keyword(match.group(1).decode("utf-8", "replace"))
                    if keyword not in SAFE_FIELDS:
                        problems.append(f"field {keyword} in {info.filename}")
    return problems


def _findings_of(package: _Package, part_id: str) -> list[Finding]:
    findings = []
    for code, evidence in package.findings.items():
        unique = list(dict.fromkeys(evidence))
        detail = "; ".join(unique[:5])
        if len(unique) > 5:
            detail += f"; and {len(unique) - 5} more"
        findings.append(Finding(code, part_id, detail[:500]))
    return findings


def _with_image_twin(
    rebuilt: bytes,
    name: str,
    extension: str,
    part_id: str,
    options: SanitizeOptions,
    package: _Package,
) -> SanitizeResult:
    """Modes rasterize/both: the rebuilt package rendered by LibreOffice, then to images.
    Without LibreOffice there is no image copy, and for ``rasterize`` no output at all."""
    import tempfile
    from pathlib import Path

    from gateway.sanitizers.ole import office_to_pdf
    from gateway.sanitizers.pdf import rasterize_pdf

    findings = _findings_of(package, part_id)
    outputs = []
    if options.mode == "both":
        outputs.append(OutputFile(rebuilt, name, _OUTPUT_MIME[extension]))
    with tempfile.TemporaryDirectory(prefix="mugaika-ooxml-") as tmp:
        path = Path(tmp, f"input.{extension}")
        path.write_bytes(rebuilt)
        try:
            pdf = office_to_pdf(path, Path(tmp))
        except CannotSanitize as exc:
            code = "OOXML_RASTERIZE_UNAVAILABLE" if "UNAVAILABLE" in exc.code else exc.code
            findings.append(Finding(code, part_id, str(exc)[:200]))
            return SanitizeResult(outputs=tuple(outputs), findings=tuple(findings))
    image_pdf, pages = rasterize_pdf(pdf, options)
    findings.append(Finding("OOXML_RASTERIZED", part_id, f"{pages} pages"))
    stem = name.rsplit(".", 1)[0]
    suffix = "_画像化" if options.mode == "both" else ""
    outputs.append(
        OutputFile(image_pdf, sanitize_filename(f"{stem}{suffix}.pdf"), "application/pdf")
    )
    return SanitizeResult(outputs=tuple(outputs), findings=tuple(findings))


class OoxmlSanitizer:
    """See Sanitizer."""

    name = "ooxml-rebuild"
    description = "Rebuild docx/xlsx/pptx packages without macros, ActiveX, OLE, external links"
    handles = frozenset({"ooxml"})

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        """See Sanitizer."""
        package = _read_package(data, options)
        main = _main_type(package)
        if "binary" in main or "xl/workbook.bin" in {n.lower() for n in package.parts}:
            raise CannotSanitize("OOXML_BINARY", f"binary workbook ({main or 'xlsb'})")
        if main not in _MACRO_TYPES and main not in _PLAIN_MAIN_TYPES:
            raise CannotSanitize("OOXML_DAMAGED", f"not a Word/Excel/PowerPoint package: {main}")
        _drop_parts(package, data)
        removed_ids = _clean_relationships(package, options)
        _clean_xml_parts(package, removed_ids, options.defang_urls)
        extension = _rewrite_content_types(package)
        rebuilt = _write_package(package)
        problems = verify_ooxml(rebuilt)
        if problems:
            raise CannotSanitize("OOXML_VERIFY_FAILED", "; ".join(problems)[:400])
        current = extension_of(filename)
        name = sanitize_filename(
            filename or f"document.{extension}",
            new_extension=None if current == extension else extension,
        )
        if options.mode in ("rasterize", "both"):
            return _with_image_twin(rebuilt, name, extension, part_id, options, package)
        findings = _findings_of(package, part_id)
        return SanitizeResult(
            outputs=(OutputFile(rebuilt, name, _OUTPUT_MIME[extension]),),
            findings=tuple(findings),
        )
