"""Every PDF, Office file, ZIP and image of the shared corpus through detect + its sanitizer,
each inside ``gateway.workers.run_isolated`` with time and memory limits.

Asserted for every file: the test process survives (a crash, hang or memory blow-up of the
sanitizer is contained and comes back as ``CannotSanitize``); detection gives a known class;
and every output the sanitizer produced is clean by an independent oracle (pikepdf's
serialisation for PDF, oletools for Office, libmagic for types: never the code under test).
For PDFs, and for the python-docx and XlsxWriter controls, the output also keeps the page
count and the text (pdftotext, python-docx, openpyxl).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

from gateway.detect import detect
from gateway.errors import CannotSanitize
from gateway.sanitizers import sanitizer_for
from gateway.sanitizers.base import CONTENT_CLASSES, SanitizeOptions
from gateway.workers import run_isolated
from tests.corpus import output_rates
from tests.helpers import oracle
from tests.helpers.corpus import corpus_root, manifest

DOCUMENT_KINDS = frozenset(
    [
        "pdf",
        "pdf-fuzz",
        "zip",
        "zip-encrypted-sample",
        "office-xml",
        "rtf",
        "slk",
        "xps",
        "odt",
        "ods",
        "odp",
        "doc",
        "dot",
        "docx",
        "docm",
        "dotx",
        "dotm",
        "xls",
        "xlt",
        "xla",
        "xlsx",
        "xlsm",
        "xlsb",
        "xltx",
        "xltm",
        "xlam",
        "ppt",
        "pot",
        "pps",
        "pptx",
        "pptm",
        "potx",
        "potm",
        "ppsx",
        "ppsm",
        "png",
        "jpeg",
        "gif",
        "tiff",
        "bmp",
        "webp",
        "pbm",
        "pgm",
        "ppm",
        "sgi",
        "ras",
        "xbm",
        "exr",
    ]
)
OPTIONS = SanitizeOptions(
    mode="rebuild",
    member_actions=(
        ("archive", "rebuild"),
        ("pdf", "rebuild"),
        ("ooxml", "rebuild"),
        ("ole", "rebuild"),
        ("image", "rebuild"),
        ("text", "keep"),
    ),
)
EXECUTABLE_MIMES = {
    "application/x-dosexec",
    "application/x-executable",
    "application/x-sharedlib",
    "application/x-mach-binary",
    "application/x-msi",
    "application/java-archive",
}

CASES = [
    (path, kind) for path, kind in manifest() if kind.removesuffix("-encrypted") in DOCUMENT_KINDS
]


# Where poppler and qpdf read a damaged or multi-revision file differently, the rebuilt
# copy is qpdf's reading; and removed multimedia annotations take their captions along.
TEXT_MAY_CHANGE = frozenset({"PDF_REPAIRED", "PDF_INCREMENTAL_UPDATE", "PDF_RICHMEDIA", "PDF_3D"})


def _check_output(data: bytes, content_class: str) -> None:
    mime = oracle.magic_mime(data)
    assert mime not in EXECUTABLE_MIMES
    if mime == "application/pdf":
        assert oracle.pdf_active_content(data) == []
    elif content_class in ("ooxml", "ole") or mime.startswith(
        ("application/vnd.openxmlformats", "application/msword", "application/vnd.ms-")
    ):
        assert oracle.office_active_content(data, ".bin") == []
    elif mime == "application/zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                assert not info.flag_bits & 0x1
                assert ".." not in info.filename.replace("\\", "/").split("/")
                _check_output(archive.read(info), "")
    expected = {
        "pdf": ("application/pdf",),
        "image": ("image/",),
        "svg": ("image/png",),
        "archive": ("application/zip",),
        "ooxml": ("application/vnd.openxmlformats", "application/zip", "application/octet"),
    }.get(content_class)
    if expected:
        assert mime.startswith(expected), mime


def _unswapped(text: str) -> str:
    """Undo the glyph swaps of the exact rewrite (hxxp(s)://, www•) and normalise spaces."""
    for swapped, original in (("hxxp", "http"), ("HxxP", "HTTP"), ("HXXP", "HTTP")):
        text = text.replace(swapped, original)
    for dot in ("•", "·"):
        text = text.replace(f"www{dot}", "www.").replace(f"WWW{dot}", "WWW.")
    return " ".join(text.split())


def _text(data: bytes) -> str:
    return _unswapped(oracle.pdf_text(data))


def _check_pages(original: bytes, rebuilt: bytes) -> None:
    """Page by page: a page is either the same text as before, or (made an image because a
    viewer would have given it links) no text at all, and then it had link-like text."""
    before = oracle.pdf_page_texts(original)
    after = oracle.pdf_page_texts(rebuilt)
    assert len(after) == len(before)
    for number, (old, new) in enumerate(zip(before, after, strict=True), 1):
        if new.strip():
            assert _unswapped(new) == _unswapped(old), f"page {number}"
        else:
            assert any(mark in old.lower() for mark in ("://", "www", "@", "mailto:")), number


@pytest.mark.slow
@pytest.mark.skipif(not CASES, reason="the shared corpus (../shared/corpus) is not present")
@pytest.mark.parametrize(("path", "kind"), CASES, ids=[p for p, _ in CASES])
def test_document(path: str, kind: str, record_property: Any) -> None:
    root = corpus_root()
    assert root is not None
    data = (root / path).read_bytes()
    name = path.rsplit("/", 1)[-1]
    detection = detect(data, name, "application/octet-stream", "1")
    assert detection.content_class in CONTENT_CLASSES
    sanitizer = sanitizer_for(detection.content_class)
    if sanitizer is None:
        record_property(output_rates.PROPERTY, f"{detection.content_class}:none")
        return  # no sanitizer: the policy strips or quarantines this class
    try:
        result: Any = run_isolated(
            sanitizer.sanitize, data, name, "1", OPTIONS, timeout=60, memory_limit_mb=1536
        )
    except CannotSanitize as exc:
        failure = exc.code
    else:
        failure = ""
    # One refusal is fine (a damaged or encrypted file); refusing most of a class is not:
    # tests/corpus/output_rates.py holds a floor per class over all the cases.
    outcome = "refused" if failure else "output" if result.outputs else "empty"
    record_property(output_rates.PROPERTY, f"{detection.content_class}:{outcome}")
    if failure:
        assert failure == failure.upper()  # a stable code, never a traceback
        return
    for output in result.outputs:
        _check_output(output.data, detection.content_class)
    if detection.content_class == "pdf" and result.outputs:
        out = result.outputs[0].data
        try:
            pages_in = oracle.pdf_page_count(data)
        except Exception:
            pages_in = None  # qpdf cannot open the original at all; nothing to compare
        assert oracle.pdf_linkable_text(out) == [], "no page may carry text a viewer links"
        if pages_in is not None:
            assert oracle.pdf_page_count(out) == pages_in
            codes = {f.code for f in result.findings}
            # Our output must always be readable by poppler (a PDF of no page has no text:
            # pdftotext refuses its page range).
            text_out = _text(out) if pages_in else ""
            try:
                text_in: str | None = _text(data)
            except oracle.OracleFailed as exc:
                # 1: cannot open, 99: other error (no page tree it can read, syntax errors):
                # poppler cannot read this damaged input, so there is nothing to compare with.
                if exc.exit_status not in (1, 99):
                    raise
                text_in = None
            if text_in is not None and not codes & TEXT_MAY_CHANGE:
                if "PDF_URL_TEXT_RASTERIZED" in codes:
                    _check_pages(data, out)
                else:
                    assert text_out == text_in
    if path.startswith("python-docx/") and result.outputs:
        import docx

        def paragraphs(blob: bytes) -> list[str]:
            return [p.text for p in docx.Document(io.BytesIO(blob)).paragraphs]

        assert paragraphs(result.outputs[0].data) == paragraphs(data)
    if path.startswith("xlsxwriter/") and result.outputs:
        import openpyxl

        def cells(blob: bytes) -> list[list[object]]:
            book = openpyxl.load_workbook(io.BytesIO(blob))
            return [[c.value for c in row] for s in book.worksheets for row in s.iter_rows()]

        assert cells(result.outputs[0].data) == cells(data)
