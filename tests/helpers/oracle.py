"""Independent checks of sanitizer output: pikepdf, oletools and libmagic, not our code.

Each ``*_active_content`` function returns a list of what it found (empty means clean). They
deliberately do not import anything from ``gateway``: the point is a second opinion.

- PDF: every indirect object is serialised by qpdf (``unparse``, stream dictionaries only,
  never stream data) and searched for the name tokens of active content. A text search over
  qpdf's canonical serialisation is a different method from the sanitizer's structured walk.
- Office: oletools' ``VBA_Parser`` (VBA and XLM), ``msodde`` (DDE fields and links),
  ``oleobj`` (embedded OLE objects, external relationships, customUI callbacks).
- Types: libmagic (python-magic).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path

import magic
import pikepdf

_PDF_TOKENS = re.compile(
    rb"/S\s*/(JavaScript|Launch|GoToR|GoToE|SubmitForm|ImportData|URI|Rendition|Movie|Sound|"
    rb"RichMediaExecute|GoTo3DView)\b|/JS\b|/AA\b|/EmbeddedFile\b|/EF\b|/XFA\b|/RichMediaContent\b|"
    rb"/3DD\b|/Subtype\s*/(RichMedia|3D|Movie|Sound|Screen|FileAttachment)\b|/JavaScript\b"
)


def _without_strings(text: bytes) -> bytes:
    """PDF syntax with literal and hex strings blanked, so ``(…/wiki/JavaScript)`` in a
    tooltip is not mistaken for a name token."""
    out = bytearray()
    depth = 0
    index = 0
    while index < len(text):
        char = text[index]
        if depth:
            if char == 0x5C:  # backslash escapes the next byte
                index += 2
                continue
            if char == 0x28:
                depth += 1
            elif char == 0x29:
                depth -= 1
            index += 1
            continue
        if char == 0x28:
            depth = 1
            out += b"()"
        elif (
            char == 0x3C
            and text[index + 1 : index + 2] != b"<"
            and (index == 0 or text[index - 1] != 0x3C)
        ):
            end = text.find(b">", index)
            if end < 0:
                break
            out += b"<>"
            index = end
        else:
            out.append(char)
        index += 1
    return bytes(out)


def pdf_active_content(data: bytes) -> list[str]:
    found: list[str] = []
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for obj in pdf.objects:
            try:
                if isinstance(obj, pikepdf.Stream):
                    text = obj.stream_dict.unparse(resolved=True)
                elif isinstance(obj, (pikepdf.Dictionary, pikepdf.Array)):
                    text = obj.unparse(resolved=True)
                else:
                    continue
            except Exception as exc:  # the oracle fails closed too
                found.append(f"unserialisable object: {type(exc).__name__}")
                continue
            for match in _PDF_TOKENS.finditer(_without_strings(text)):
                found.append(match.group().decode("latin-1"))
        trailer = pdf.trailer.unparse(resolved=True)
        for match in _PDF_TOKENS.finditer(_without_strings(trailer)):
            found.append(match.group().decode("latin-1"))
        open_action = pdf.Root.get("/OpenAction")
        if (
            isinstance(open_action, pikepdf.Dictionary)
            and "/S" in open_action
            and pikepdf.Name.GoTo != open_action.S
        ):
            found.append(f"OpenAction {open_action.S}")
    return found


def pdf_page_count(data: bytes) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return len(pdf.pages)


class OracleFailed(RuntimeError):
    """An oracle program could not give its opinion (missing, or it exited with an error).

    Never swallowed here: a comparison that silently becomes ``"" == ""`` proves nothing
    (issue 12, item 8). ``exit_status`` lets a caller accept one documented status, e.g.
    pdftotext's 1 ("error opening a PDF file") for an input that is known to be damaged."""

    def __init__(self, program: str, exit_status: int | None, detail: str) -> None:
        super().__init__(f"{program}: {detail}")
        self.program = program
        self.exit_status = exit_status


def pdf_text(data: bytes) -> str:
    """Text per poppler's pdftotext (a third implementation), whitespace-normalised.

    Raises OracleFailed when pdftotext is missing or exits non-zero (1: cannot open the PDF,
    3: copying text not permitted, 99: other; see pdftotext(1))."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "in.pdf")
        path.write_bytes(data)
        try:
            result = subprocess.run(
                ["pdftotext", "-q", str(path), "-"], capture_output=True, timeout=60, check=False
            )
        except FileNotFoundError:
            raise OracleFailed(
                "pdftotext",
                None,
                "not installed (Debian package poppler-utils; ./run-tests installs it)",
            ) from None
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()[:200]
        raise OracleFailed(
            "pdftotext", result.returncode, f"exit status {result.returncode} {stderr}"
        )
    return " ".join(result.stdout.decode("utf-8", "replace").split())


def office_active_content(data: bytes, suffix: str = ".bin") -> list[str]:
    from oletools import msodde, oleobj
    from oletools.olevba import VBA_Parser

    found: list[str] = []
    parser = VBA_Parser("oracle", data=data)
    try:
        if parser.detect_vba_macros():
            found.append("VBA macros (olevba)")
        if parser.detect_xlm_macros():
            found.append("XLM macros (olevba)")
    finally:
        parser.close()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "doc" + suffix)
        path.write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                dde = msodde.process_file(str(path), msodde.FIELD_FILTER_DDE)
            except Exception as exc:
                dde = f"msodde failed: {type(exc).__name__}"
        if dde and dde.strip():
            found.append(f"DDE (msodde): {dde.strip()[:80]}")
    for ole in oleobj.find_ole("oracle", data):
        if ole is None:
            continue
        for path in ole.listdir():
            if path[-1].lower() in ("\x01ole10native", "package", "equation native") or path[
                0
            ].lower() in ("objectpool",):
                found.append("embedded object (oleobj): " + "/".join(path))
        if data[:4] == b"PK\x03\x04":
            found.append("OLE stream inside the package (oleobj)")
    if data[:4] == b"PK\x03\x04":
        # No exception is swallowed here: a package oleobj cannot read is an oracle failure,
        # not a clean result.
        xml_parser = oleobj.XmlParser(io.BytesIO(data))
        for _ in xml_parser.iter_xml():
            pass
        for rel_type, target in oleobj.find_external_relationships(xml_parser):
            found.append(f"external relationship (oleobj): {rel_type} {target[:60]}")
        for callback in oleobj.find_customUI(xml_parser):
            found.append(f"customUI callback (oleobj): {callback}")
    return found


def magic_mime(data: bytes) -> str:
    return magic.from_buffer(data[: 4 * 1024 * 1024], mime=True)


# --- markup: what a browser would run ------------------------------------------------------

_ACTIVE_ELEMENTS = frozenset(
    [
        "script",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "form",
        "base",
        "portal",
        "foreignobject",
        "handler",
        "listener",
    ]
)
_SCRIPT_URL = re.compile(r"^(javascript|vbscript|livescript|data\s*:\s*text/html)", re.IGNORECASE)
_ACTIVE_NAMESPACES = (
    "http://www.w3.org/1999/xhtml",
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/XSL/Transform",
)


def markup_active_content(data: bytes) -> list[str]:
    """Active markup in ``data`` read as HTML (html5lib, as browsers parse) and as XML (lxml:
    stylesheets, entity declarations, XHTML/SVG/XSLT namespaces with script). Empty: a
    browser opening the file, whatever it takes it for, runs nothing."""
    from bleach._vendor import html5lib
    from lxml import etree

    found: list[str] = []
    document = html5lib.parse(data, namespaceHTMLElements=False)
    for element in document.iter():
        tag = element.tag.rpartition("}")[2].lower() if isinstance(element.tag, str) else ""
        if tag in _ACTIVE_ELEMENTS:
            found.append(f"html <{tag}>")
        if tag == "meta" and "refresh" in element.get("http-equiv", "").lower():
            found.append("html meta refresh")
        for name, value in element.attrib.items():
            local = name.rpartition("}")[2].lower() if isinstance(name, str) else ""
            if local.startswith("on"):
                found.append(f"html {tag} {local}=")
            if _SCRIPT_URL.match("".join(value.split())):
                found.append(f"html {tag} {local}={value[:40]}")
    parser = etree.XMLParser(
        recover=True, resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        root = None
    if root is not None:
        tree = root.getroottree()
        if tree.docinfo.internalDTD is not None and tree.docinfo.internalDTD.entities():
            found.append("xml entity declarations")
        for node in tree.iter():
            if isinstance(node, etree._ProcessingInstruction):
                if node.target == "xml-stylesheet":
                    found.append(f"xml-stylesheet {node.text}")
                continue
            if not isinstance(node.tag, str):
                continue
            namespace, _, local = (
                node.tag[1:].rpartition("}")
                if node.tag[:1] == "{"
                else (
                    "",
                    "",
                    node.tag.rpartition(":")[2],
                )
            )
            local = local.lower()
            if namespace in _ACTIVE_NAMESPACES and (
                local in _ACTIVE_ELEMENTS or namespace.endswith("Transform")
            ):
                found.append(f"xml {namespace} {local}")
            for name in node.attrib:
                if name.rpartition("}")[2].rpartition(":")[2].lower().startswith("on"):
                    found.append(f"xml {local} {name}=")
        for node in root.itersiblings(preceding=True):
            if isinstance(node, etree._ProcessingInstruction) and node.target == "xml-stylesheet":
                found.append(f"xml-stylesheet {node.text}")
    return list(dict.fromkeys(found))


# --- PDF page text a viewer would turn into links -----------------------------------------

# What PDF viewers linkify in page text (pdf.js' autolinker, PDFium's CPDF_LinkExtract,
# Acrobat's "Create links from URLs"): a web scheme, mailto:, www., a mail address. Written
# here independently of the sanitizer, matched on NFKC-folded text (full-width forms too).
_PDF_LINK = re.compile(
    r"(?:https?|ftp|file)://\S|mailto:\S|(?<![0-9a-z])www\d{0,3}\.[0-9a-z]"
    r"|[0-9a-z._%+-]+@[0-9a-z-]+(?:\.[0-9a-z-]+)+",
    re.IGNORECASE,
)


def pdf_page_texts(data: bytes) -> list[str]:
    """Text of each page per poppler's pdftotext (pages end with a form feed)."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "in.pdf")
        path.write_bytes(data)
        result = subprocess.run(
            ["pdftotext", "-q", "-enc", "UTF-8", str(path), "-"],
            capture_output=True,
            timeout=60,
            check=True,
        )
    pages = result.stdout.decode("utf-8", "replace").split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def pdf_linkable_text(data: bytes) -> list[tuple[int, str]]:
    """(page number, text) of everything on the pages a viewer would make a link of."""
    import unicodedata

    found = []
    for number, text in enumerate(pdf_page_texts(data), 1):
        folded = unicodedata.normalize("NFKC", text)
        found += [(number, match.group()) for match in _PDF_LINK.finditer(folded)]
    return found
