"""The contract every sanitizer keeps (dangerzone's IsolationProviderTest, pikepdf's
test_sanitize): idempotent, no-op-ish on clean input, content kept, output reopens with an
independent library, fails closed on garbage and on truncated input.

Each sanitizer subclasses ``SanitizerContract`` and provides ``sanitizer_type`` (the class in
``REGISTRY``), the fixture ``clean`` (bytes and file name of a benign sample) and the static
method ``content`` (what must survive: page count and text, paragraphs, cells, pixels, member
names, characters), plus ``reopen`` (an independent library must open the output) and
``active`` (an independent oracle's findings). ``test_every_registered_sanitizer_has_a_contract``
fails when a sanitizer is registered without a subclass here.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from typing import Any, ClassVar

import pytest

from gateway.errors import CannotSanitize
from gateway.sanitizers import REGISTRY
from gateway.sanitizers.archive import ArchiveSanitizer
from gateway.sanitizers.base import SanitizeOptions, SanitizeResult
from gateway.sanitizers.htmlfile import HtmlFileSanitizer
from gateway.sanitizers.image import ImageSanitizer
from gateway.sanitizers.odf import OdfSanitizer
from gateway.sanitizers.ole import OleSanitizer
from gateway.sanitizers.ooxml import OoxmlSanitizer
from gateway.sanitizers.pdf import PdfSanitizer
from gateway.sanitizers.rtf import RtfSanitizer
from gateway.sanitizers.text import TextSanitizer
from tests.helpers import hostile, oracle
from tests.helpers.corpus import corpus_file
from tests.text.linkify import live_links

# Findings that only describe what was normal about a clean input; anything else on a clean
# sample means the sanitizer thought it removed something.
INFORMATIONAL = frozenset({"OLE_VERIFIED_CLEAN", "IMAGE_METADATA"})


class SanitizerContract:
    sanitizer_type: ClassVar[type]
    options: ClassVar[SanitizeOptions] = SanitizeOptions()
    # Findings that only describe what was normal about (or done to every) clean input.
    informational: ClassVar[frozenset[str]] = INFORMATIONAL

    @pytest.fixture
    def sanitizer(self) -> Any:
        return self.sanitizer_type()

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        raise NotImplementedError

    @staticmethod
    def content(data: bytes) -> Any:
        raise NotImplementedError

    @staticmethod
    def reopen(data: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def active(data: bytes) -> list[str]:
        return []

    def run(self, sanitizer: Any, data: bytes, name: str) -> SanitizeResult:
        return sanitizer.sanitize(data, name, "9", self.options)

    def test_is_registered(self, sanitizer: Any) -> None:
        assert any(type(s) is type(sanitizer) for s in REGISTRY)
        assert sanitizer.name == sanitizer.name.lower()
        assert " " not in sanitizer.name

    def test_clean_input_is_kept(self, sanitizer: Any, clean: tuple[bytes, str]) -> None:
        data, name = clean
        result = self.run(sanitizer, data, name)
        assert result.outputs, "a clean sample must come out"
        assert {f.code for f in result.findings} <= self.informational
        assert self.content(result.outputs[0].data) == self.content(data)

    def test_output_reopens_and_is_clean(self, sanitizer: Any, clean: tuple[bytes, str]) -> None:
        data, name = clean
        for output in self.run(sanitizer, data, name).outputs:
            self.reopen(output.data)
            assert self.active(output.data) == []

    def test_idempotent(self, sanitizer: Any, clean: tuple[bytes, str]) -> None:
        data, name = clean
        first = self.run(sanitizer, data, name).outputs[0]
        second = self.run(sanitizer, first.data, first.filename)
        # A second pass finds nothing to remove (not even metadata: the first pass took it).
        assert {f.code for f in second.findings} <= (self.informational - {"IMAGE_METADATA"})
        assert second.outputs[0].filename == first.filename
        assert self.content(second.outputs[0].data) == self.content(first.data)

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_garbage_fails_closed(self, sanitizer: Any, seed: int) -> None:
        garbage = hashlib.sha256(str(seed).encode()).digest() * 64 + os.urandom(64)
        self._assert_fails_closed(sanitizer, garbage)

    @pytest.mark.parametrize("fraction", [0.5, 0.9])
    def test_truncated_fails_closed(
        self, sanitizer: Any, clean: tuple[bytes, str], fraction: float
    ) -> None:
        data, _ = clean
        self._assert_fails_closed(sanitizer, data[: int(len(data) * fraction)])

    def _assert_fails_closed(self, sanitizer: Any, data: bytes) -> None:
        """Either no output at all, or outputs that are not the input and pass the oracle."""
        try:
            result = self.run(sanitizer, data, "input.bin")
        except CannotSanitize as exc:
            code = exc.code
        else:
            code = ""
        if code:
            assert code == code.upper()
            assert " " not in code
            return
        for output in result.outputs:
            assert output.data != data
            self.reopen(output.data)
            assert self.active(output.data) == []


class TestPdfContract(SanitizerContract):
    sanitizer_type = PdfSanitizer

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        return hostile.benign_pdf(4), "clean.pdf"

    @staticmethod
    def content(data: bytes) -> Any:
        return oracle.pdf_page_count(data), oracle.pdf_text(data)

    @staticmethod
    def reopen(data: bytes) -> None:
        assert oracle.magic_mime(data) == "application/pdf"
        assert oracle.pdf_page_count(data) > 0

    @staticmethod
    def active(data: bytes) -> list[str]:
        return oracle.pdf_active_content(data)


class TestPdfRasterizeContract(TestPdfContract):
    options: ClassVar[SanitizeOptions] = SanitizeOptions(mode="rasterize", rasterize_dpi=72)

    @staticmethod
    def content(data: bytes) -> Any:
        return oracle.pdf_page_count(data)  # text becomes pixels by design

    def test_clean_input_is_kept(self, sanitizer: Any, clean: tuple[bytes, str]) -> None:
        data, name = clean
        result = self.run(sanitizer, data, name)
        assert [f.code for f in result.findings] == ["PDF_RASTERIZED"]
        assert self.content(result.outputs[0].data) == self.content(data)

    def test_idempotent(self, sanitizer: Any, clean: tuple[bytes, str]) -> None:
        data, name = clean
        first = self.run(sanitizer, data, name).outputs[0]
        second = self.run(sanitizer, first.data, first.filename).outputs[0]
        assert self.content(second.data) == self.content(first.data)


class TestDocxContract(SanitizerContract):
    sanitizer_type = OoxmlSanitizer

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        return hostile.benign_docx(6), "clean.docx"

    @staticmethod
    def content(data: bytes) -> Any:
        import docx

        return [p.text for p in docx.Document(io.BytesIO(data)).paragraphs]

    @staticmethod
    def reopen(data: bytes) -> None:
        import docx

        docx.Document(io.BytesIO(data))

    @staticmethod
    def active(data: bytes) -> list[str]:
        return oracle.office_active_content(data, ".docx")


class TestXlsxContract(TestDocxContract):
    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        return hostile.benign_xlsx(8), "clean.xlsx"

    @staticmethod
    def content(data: bytes) -> Any:
        import openpyxl

        sheet = openpyxl.load_workbook(io.BytesIO(data)).active
        return [[cell.value for cell in row] for row in sheet.iter_rows()]

    @staticmethod
    def reopen(data: bytes) -> None:
        import openpyxl

        openpyxl.load_workbook(io.BytesIO(data))

    @staticmethod
    def active(data: bytes) -> list[str]:
        return oracle.office_active_content(data, ".xlsx")


class TestOleContract(SanitizerContract):
    sanitizer_type = OleSanitizer

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        return corpus_file("msoffcrypto-tool/inputs/plain.doc"), "plain.doc"

    @staticmethod
    def content(data: bytes) -> Any:
        import olefile

        with olefile.OleFileIO(data) as ole:
            return ole.openstream("WordDocument").read()

    @staticmethod
    def reopen(data: bytes) -> None:
        assert oracle.magic_mime(data) == "application/msword"

    @staticmethod
    def active(data: bytes) -> list[str]:
        return oracle.office_active_content(data, ".doc")


class TestJpegContract(SanitizerContract):
    sanitizer_type = ImageSanitizer

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        return hostile.jpeg(120, 80, quality=95), "photo.jpg"

    @staticmethod
    def content(data: bytes) -> Any:
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        # JPEG re-encoding is lossy: compare size and a coarse thumbnail, not exact bytes.
        small = image.convert("L").resize((8, 8))
        return image.size, image.format, [v // 32 for v in small.getdata()]

    @staticmethod
    def reopen(data: bytes) -> None:
        from PIL import Image

        Image.open(io.BytesIO(data)).load()
        assert oracle.magic_mime(data).startswith("image/")


class TestPngContract(TestJpegContract):
    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        return hostile.png(40, 30), "icon.png"

    @staticmethod
    def content(data: bytes) -> Any:
        from PIL import Image

        image = Image.open(io.BytesIO(data)).convert("RGBA")
        return image.size, list(image.getdata())


class TestArchiveContract(SanitizerContract):
    options: ClassVar[SanitizeOptions] = SanitizeOptions(
        member_actions=(("text", "keep"), ("pdf", "rebuild"), ("image", "rebuild"))
    )

    sanitizer_type = ArchiveSanitizer

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        data = hostile.simple_zip(
            {"notes.txt": b"meeting at 10\n" * 50, "doc/report.pdf": hostile.benign_pdf(2)}
        )
        return data, "files.zip"

    @staticmethod
    def content(data: bytes) -> Any:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = sorted(archive.namelist())
            return names, archive.read("notes.txt"), oracle.pdf_text(archive.read(names[0]))

    @staticmethod
    def reopen(data: bytes) -> None:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None


class TestTextContract(SanitizerContract):
    sanitizer_type = TextSanitizer

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        text = "番号,名称,金額\r\n1,㈱テスト①,1000\r\n2,髙橋商店,2500\r\n" * 20
        return text.encode("cp932"), "一覧.csv"

    @staticmethod
    def content(data: bytes) -> Any:
        return data  # a text file with nothing to change is delivered byte for byte

    @staticmethod
    def reopen(data: bytes) -> None:
        text = _text_of(data)
        assert not any(c < " " and c not in "\t\r\n\f\x1b" for c in text)

    @staticmethod
    def active(data: bytes) -> list[str]:
        return live_links(_text_of(data))

    def test_urls_are_defanged_and_the_rest_kept(self, sanitizer: Any) -> None:
        text = "名称,URL\r\n市役所,https://www.city.example.lg.jp/\r\n資料,www.example.co.jp/a\r\n"
        data = text.encode("cp932")
        assert self.active(data) != []  # the oracle sees the links in the input
        (output,) = self.run(sanitizer, data, "一覧.csv").outputs
        self.reopen(output.data)
        assert self.active(output.data) == []
        assert output.data.decode("cp932").startswith("名称,URL\r\n市役所,hxxps://")

    @pytest.mark.parametrize("fraction", [0.5, 0.9])
    def test_truncated_fails_closed(
        self, sanitizer: Any, clean: tuple[bytes, str], fraction: float
    ) -> None:
        """Replaces the base check (output differs from input): a prefix of a text file is a
        text file, so it comes out as it is (nothing to defang), or is refused when the cut
        split a character; never as anything else."""
        data, _ = clean
        for cut in (int(len(data) * fraction), int(len(data) * fraction) + 1):
            code = ""
            try:
                result = self.run(sanitizer, data[:cut], "input.csv")
            except CannotSanitize as exc:
                code = exc.code
            if code:
                assert code in ("TEXT_UNDECODABLE", "TEXT_BINARY")
                continue
            (output,) = result.outputs
            assert output.data == data[:cut]
            assert self.active(output.data) == []


class TestHtmlFileContract(SanitizerContract):
    sanitizer_type = HtmlFileSanitizer
    # Every HTML attachment is re-serialised, so this finding is said of clean input too.
    informational: ClassVar[frozenset[str]] = INFORMATIONAL | {"HTML_ATTACHMENT_REBUILT"}

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        page = (
            "<!DOCTYPE html><html><head><title>議事録</title></head><body>"
            "<h1>会議の議事録</h1><p>日時: 10時から</p>"
            "<table><tr><th>議題</th><th>担当</th></tr><tr><td>予算</td><td>髙橋</td></tr></table>"
            "<ul><li>資料A</li><li>資料B</li></ul></body></html>"
        )
        return page.encode("utf-8"), "議事録.html"

    @staticmethod
    def content(data: bytes) -> Any:
        import lxml.html

        body = lxml.html.document_fromstring(data.decode("utf-8")).find("body")
        assert body is not None
        return " ".join(body.text_content().split())

    @staticmethod
    def reopen(data: bytes) -> None:
        import lxml.html

        text = data.decode("utf-8")  # the output declares and is UTF-8
        assert '<meta charset="utf-8">' in text[:200]
        lxml.html.document_fromstring(text)

    @staticmethod
    def active(data: bytes) -> list[str]:
        return _active_html(data.decode("utf-8", "replace"))

    def test_hostile_page_comes_out_inert(self, sanitizer: Any) -> None:
        page = (
            b"<html><body onload='steal()'><script>alert(1)</script>"
            b"<iframe src='https://evil.example/'></iframe>"
            b"<form action='https://evil.example/login'><input name=p></form>"
            b"<a href='javascript:alert(1)'>x</a> <a href='https://evil.example/a'>link</a>"
            b"<img src='https://tracker.example/p.gif'><p>text stays</p></body></html>"
        )
        assert len(self.active(page)) >= 6  # the oracle sees what is there
        (output,) = self.run(sanitizer, page, "page.html").outputs
        self.reopen(output.data)
        assert self.active(output.data) == []
        assert "text stays" in self.content(output.data)


def _text_of(data: bytes) -> str:
    """Decode as a Japanese desktop would open a text file: UTF-8 (with or without BOM), else
    CP932. Raises on bytes that are neither."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp932")


def _active_html(page: str) -> list[str]:
    """What in ``page`` a browser would run, submit, fetch or follow (an independent reading
    with the standard library's parser and the linkify oracle, not the code under test)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Reader(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            refresh = tag == "meta" and any(k == "http-equiv" for k, _ in attrs)
            if refresh or tag in ("script", "iframe", "frame", "object", "embed", "form", "base"):
                found.append(f"<{tag}>")
            for name, value in attrs:
                value = (value or "").strip().lower()
                if name.startswith("on"):
                    found.append(f"{tag} {name}")
                fetches = name in ("href", "src", "action", "formaction", "background", "srcset")
                if fetches and value and not value.startswith(("#", "cid:", "mailto:")):
                    found.append(f"{tag} {name}={value[:40]}")

        def handle_data(self, data: str) -> None:
            found.extend(live_links(data))

    reader = Reader(convert_charrefs=True)
    reader.feed(page)
    reader.close()
    return found


class TestRtfContract(SanitizerContract):
    sanitizer_type = RtfSanitizer

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        return rtf_sample(), "議事録.rtf"

    @staticmethod
    def content(data: bytes) -> Any:
        from striprtf.striprtf import rtf_to_text

        return rtf_to_text(data.decode("latin-1"), encoding="cp932").split()

    @staticmethod
    def reopen(data: bytes) -> None:
        assert data.startswith(b"{\\rtf1")
        TestRtfContract.content(data)

    @staticmethod
    def active(data: bytes) -> list[str]:
        from oletools import rtfobj

        parser = rtfobj.RtfObjParser(data)
        parser.parse()
        return [f"object at {o.start}" for o in parser.objects]


class TestOdfContract(SanitizerContract):
    sanitizer_type = OdfSanitizer

    @pytest.fixture
    def clean(self) -> tuple[bytes, str]:
        from tests.helpers.odf import benign_odt

        return benign_odt(), "議事録.odt"

    @staticmethod
    def content(data: bytes) -> Any:
        from odf import teletype
        from odf.opendocument import load

        return teletype.extractText(load(io.BytesIO(data)).body)

    @staticmethod
    def reopen(data: bytes) -> None:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            assert package.namelist()[0] == "mimetype"
        TestOdfContract.content(data)

    @staticmethod
    def active(data: bytes) -> list[str]:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            names = package.namelist()
            xml = b"".join(package.read(n) for n in names if n.endswith(".xml"))
        found = [n for n in names if n.lower().startswith(("basic/", "scripts/", "object"))]
        found += [w.decode() for w in (b"event-listener", b"<script:", b"<draw:object") if w in xml]
        return found


def rtf_sample() -> bytes:
    """A Word-style RTF in CP932: fonts, colours, bold, a table row, a PNG picture."""
    picture = hostile.png(8, 8).hex().encode()
    return (
        rb"{\rtf1\ansi\ansicpg932\deff0{\fonttbl{\f0\fnil\fcharset128 \'82\'6c\'82\'72 "
        rb"\'96\'be\'92\'a9;}}{\colortbl;\red255\green0\blue0;}"
        rb"\f0\fs24 \'8b\'63\'8e\'96\'98\'5e {\b\cf1 \'8f\'64\'97\'76}\par "
        rb"\trowd\cellx2000\cellx4000 \'97\'5c\'8e\'5a\cell 100\cell\row "
        rb"{\*\shppict{\pict\pngblip\picw8\pich8 " + picture + rb"}}\par}"
    )


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def test_every_registered_sanitizer_has_a_contract() -> None:
    covered = {sub.sanitizer_type for sub in _subclasses(SanitizerContract)}
    registered = {type(s) for s in REGISTRY}
    assert registered - covered == set(), "add a SanitizerContract subclass for each"
    assert covered <= registered
