"""OpenDocument (odt/ods/odp and their templates): rebuilt without macros, event listeners,
external links and embedded objects; text and formatting kept.

An ODF package is a ZIP (ODF 1.3 part 2): ``mimetype`` first and stored, XML streams
(``content.xml``, ``styles.xml``, ``meta.xml``, ``settings.xml``), pictures, and a manifest.
What can act is known and removed:

- macros: Basic libraries (``Basic/``), scripts (``Scripts/``: BeanShell, JavaScript,
  Python), dialogs (``Dialogs/``) and the menus and toolbars that call them
  (``Configurations2/``); inline ``office:scripts``, ``text:execute-macro``;
- event listeners (``office:event-listeners``, ``script:event-listener``,
  ``presentation:event-listener``: "on open run ...", LibreOffice's macro-on-load path);
- embedded objects and applets (``Object N/``, ``ObjectReplacements/``, ``draw:object``,
  ``draw:object-ole``, ``draw:applet``, ``draw:plugin``, ``draw:floating-frame``);
- external links: every ``xlink:href`` that is not a path inside the package (hyperlinks
  keep their text and lose their target; linked images, sections, spreadsheet ranges,
  templates, auto-reload targets and DDE connections are removed), and DDE
  (``text:dde-connection-decls``, ``table:dde-links``, ``office:dde-source``).

The XML is parsed with lxml without network access, DTDs or entity expansion; everything
else (paragraphs, styles, tables, fonts, page layout, metadata) is written back as parsed.
Pictures are re-encoded by the image sanitizer (a picture it cannot decode is dropped with its
frame's reference). The package is written anew: ``mimetype`` first and stored, a manifest
naming exactly what is written, nothing else (signatures, thumbnails and unknown files
dropped). Encrypted documents (a manifest with ``encryption-data``) cannot be inspected:
``ENCRYPTED_DOCUMENT``, no output.

Not done: flat ODF (``.fodt``, one XML file; detected as unknown), and converting to another
format.
"""

from __future__ import annotations

import io
import posixpath
import zipfile

from lxml import etree

from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult

FINDING_CODES: tuple[str, ...] = (
    "ODF_MACRO",  # Basic/script libraries, dialogs, inline scripts, execute-macro: removed
    "ODF_EVENT_LISTENER",  # "on load run ..." and other event bindings: removed
    "ODF_EXTERNAL_LINK",  # hyperlinks (text kept), linked images/sections/templates, DDE
    "ODF_EMBEDDED_OBJECT",  # OLE and ODF objects, applets, plugins, frames: removed
    "ENCRYPTED_DOCUMENT",  # password-protected: cannot be inspected
    "ODF_DAMAGED",  # not a readable package or XML: no output
)

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "script": "urn:oasis:names:tc:opendocument:xmlns:script:1.0",
    "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
    "form": "urn:oasis:names:tc:opendocument:xmlns:form:1.0",
    "meta": "urn:oasis:names:tc:opendocument:xmlns:meta:1.0",
    "xlink": "http://www.w3.org/1999/xlink",
    "manifest": "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0",
}
_HREF = f"{{{_NS['xlink']}}}href"


def _q(prefix: str, name: str) -> str:
    return f"{{{_NS[prefix]}}}{name}"


# Elements removed with everything inside them, and the finding each removal reports.
_REMOVE = {
    _q("office", "scripts"): "ODF_MACRO",
    _q("office", "script"): "ODF_MACRO",
    _q("text", "script"): "ODF_MACRO",
    _q("office", "event-listeners"): "ODF_EVENT_LISTENER",
    _q("script", "event-listener"): "ODF_EVENT_LISTENER",
    _q("presentation", "event-listener"): "ODF_EVENT_LISTENER",
    _q("draw", "object"): "ODF_EMBEDDED_OBJECT",
    _q("draw", "object-ole"): "ODF_EMBEDDED_OBJECT",
    _q("draw", "applet"): "ODF_EMBEDDED_OBJECT",
    _q("draw", "plugin"): "ODF_EMBEDDED_OBJECT",
    _q("draw", "floating-frame"): "ODF_EMBEDDED_OBJECT",
    _q("text", "dde-connection-decls"): "ODF_EXTERNAL_LINK",
    _q("text", "dde-connection"): "ODF_EXTERNAL_LINK",
    _q("table", "dde-links"): "ODF_EXTERNAL_LINK",
    _q("office", "dde-source"): "ODF_EXTERNAL_LINK",
    _q("text", "section-source"): "ODF_EXTERNAL_LINK",
    _q("table", "table-source"): "ODF_EXTERNAL_LINK",
    _q("table", "cell-range-source"): "ODF_EXTERNAL_LINK",
    _q("meta", "template"): "ODF_EXTERNAL_LINK",
    _q("meta", "auto-reload"): "ODF_EXTERNAL_LINK",
}
# Elements replaced by their content (the text stays, what it did goes).
_UNWRAP = {
    _q("text", "a"): "ODF_EXTERNAL_LINK",
    _q("draw", "a"): "ODF_EXTERNAL_LINK",
    _q("text", "execute-macro"): "ODF_MACRO",
}
# Package folders that are code or objects, never document content.
_CODE_FOLDERS = {
    "basic/": "ODF_MACRO",
    "scripts/": "ODF_MACRO",
    "dialogs/": "ODF_MACRO",
    "configurations2/": "ODF_MACRO",
    "object ": "ODF_EMBEDDED_OBJECT",
    "objectreplacements/": "ODF_EMBEDDED_OBJECT",
}
_XML_STREAMS = ("content.xml", "styles.xml", "meta.xml", "settings.xml")
_MAX_MEMBER = 64 * 1024 * 1024
_MAX_TOTAL = 256 * 1024 * 1024
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
)


class _Found:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, code: str, count: int = 1) -> None:
        self.counts[code] = self.counts.get(code, 0) + count


def _inside_package(href: str) -> str:
    """The package path an ``xlink:href`` names ("" when it points outside the package)."""
    value = href.strip()
    if not value or ":" in value.split("/", 1)[0] or value.startswith(("/", "\\", "#")):
        return ""
    path = posixpath.normpath(value.removeprefix("./"))
    return "" if path.startswith("..") else path


def _clean_xml(data: bytes, kept: set[str], found: _Found) -> bytes:
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise CannotSanitize("ODF_DAMAGED", f"unreadable XML: {exc}"[:200]) from None
    for element in list(root.iter()):
        if not isinstance(element.tag, str):
            continue
        code = _REMOVE.get(element.tag)
        if code is not None and element.getparent() is not None:
            found.add(code)
            _drop(element)
    for element in list(root.iter()):
        if not isinstance(element.tag, str):
            continue
        code = _UNWRAP.get(element.tag)
        if code is not None:
            found.add(code)
            _unwrap(element)
            continue
        href = element.get(_HREF)
        if href is None:
            continue
        path = _inside_package(href)
        if path and path in kept:
            continue
        # Outside the package (a URL, a UNC path, a macro URL), or a member not kept.
        found.add("ODF_EXTERNAL_LINK" if not path else "ODF_EMBEDDED_OBJECT")
        if element.tag == _q("draw", "image") or element.tag.endswith("}fill-image"):
            _drop(element)
        else:
            del element.attrib[_HREF]
    for element in list(root.iter()):
        if isinstance(element.tag, str) and element.tag.startswith(f"{{{_NS['script']}}}"):
            found.add("ODF_MACRO")
            _drop(element)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _drop(element: etree._Element) -> None:
    """Remove ``element`` and what is inside it, keeping the text that followed it."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    previous = element.getprevious()
    parent.remove(element)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail


def _unwrap(element: etree._Element) -> None:
    """Replace ``element`` by its children and text (a link's words stay where they were)."""
    parent = element.getparent()
    if parent is None:
        return
    index = parent.index(element)
    previous = element.getprevious()
    text = element.text or ""
    if previous is not None:
        previous.tail = (previous.tail or "") + text
    else:
        parent.text = (parent.text or "") + text
    children = list(element)
    for offset, child in enumerate(children):
        parent.insert(index + offset, child)
    tail = element.tail or ""
    if children:
        children[-1].tail = (children[-1].tail or "") + tail
    elif previous is not None:
        previous.tail = (previous.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(element)


def _manifest(mimetype: str, entries: dict[str, str]) -> bytes:
    ns = _NS["manifest"]
    root = etree.Element(f"{{{ns}}}manifest", nsmap={"manifest": ns})
    root.set(f"{{{ns}}}version", "1.2")
    for path, media in [("/", mimetype), *sorted(entries.items())]:
        entry = etree.SubElement(root, f"{{{ns}}}file-entry")
        entry.set(f"{{{ns}}}full-path", path)
        entry.set(f"{{{ns}}}media-type", media)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _read_package(data: bytes) -> tuple[dict[str, bytes], str]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CannotSanitize("ODF_DAMAGED", f"not a ZIP package: {exc}"[:200]) from None
    members: dict[str, bytes] = {}
    total = 0
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise CannotSanitize("ENCRYPTED_DOCUMENT", "ZIP-encrypted ODF member")
            if info.file_size > _MAX_MEMBER or total + info.file_size > _MAX_TOTAL:
                raise CannotSanitize("ARCHIVE_BOMB", f"{info.filename!r} too large")
            try:
                with archive.open(info) as member:
                    content = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise CannotSanitize("ODF_DAMAGED", f"{exc}"[:200]) from None
            if len(content) > info.file_size:
                raise CannotSanitize("ARCHIVE_BOMB", f"{info.filename!r} larger than declared")
            total += len(content)
            members[info.filename] = content
    mimetype = members.get("mimetype", b"").decode("ascii", "replace").strip()
    if not mimetype.startswith("application/vnd.oasis.opendocument."):
        raise CannotSanitize("ODF_DAMAGED", "no OpenDocument mimetype")
    manifest = members.get("META-INF/manifest.xml", b"")
    if b"encryption-data" in manifest:
        raise CannotSanitize("ENCRYPTED_DOCUMENT", "password-protected OpenDocument")
    return members, mimetype


class OdfSanitizer:
    """See Sanitizer."""

    name = "odf-rebuild"
    description = "OpenDocument rebuilt without macros, event listeners, links and objects"
    handles = frozenset({"opendocument"})

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        """See Sanitizer."""
        from gateway.sanitizers.image import ImageSanitizer

        members, mimetype = _read_package(data)
        found = _Found()
        written: dict[str, bytes] = {}
        media: dict[str, str] = {}
        for name, content in members.items():
            lowered = name.lower()
            if name in ("mimetype", "META-INF/manifest.xml") or name in _XML_STREAMS:
                continue
            code = next(
                (c for prefix, c in _CODE_FOLDERS.items() if lowered.startswith(prefix)), ""
            )
            if code:
                found.add(code)
                continue
            if lowered.startswith("pictures/") or lowered.startswith("media/"):
                try:
                    result = ImageSanitizer().sanitize(content, name, part_id, options)
                except CannotSanitize:
                    continue  # a picture we cannot re-encode: its frames lose it below
                if (
                    result.outputs
                    and result.outputs[0].filename.rsplit(".", 1)[-1] == (name.rsplit(".", 1)[-1])
                ):
                    written[name] = result.outputs[0].data
                    media[name] = result.outputs[0].content_type
                continue
            # Thumbnails, signatures, unknown files: not needed to read the document.
        kept = set(written)
        for name in _XML_STREAMS:
            if name in members:
                written[name] = _clean_xml(members[name], kept, found)
                media[name] = "text/xml"
        if "content.xml" not in written:
            raise CannotSanitize("ODF_DAMAGED", "no content.xml")
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
            package.writestr(zipfile.ZipInfo("mimetype"), mimetype, zipfile.ZIP_STORED)
            package.writestr("META-INF/manifest.xml", _manifest(mimetype, media))
            for name in sorted(written):
                package.writestr(name, written[name])
        findings = tuple(
            Finding(code, part_id, f"{count} removed")
            for code, count in sorted(found.counts.items())
        )
        name = filename or "document.odt"
        return SanitizeResult((OutputFile(out.getvalue(), name, mimetype),), findings)
