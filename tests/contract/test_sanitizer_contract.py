"""The contract every sanitizer keeps (dangerzone's IsolationProviderTest, pikepdf's
test_sanitize): idempotent, no-op-ish on clean input, content kept, output reopens with an
independent library, fails closed on garbage and on truncated input.

Each sanitizer subclasses ``SanitizerContract`` and provides fixtures: ``sanitizer``, ``clean``
(bytes and file name of a benign sample) and the static method ``content`` (what must survive:
page count and text, paragraphs, cells, pixels, member names), plus ``reopen`` (an independent
library must open the output) and ``active`` (an independent oracle's findings).
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
from gateway.sanitizers.image import ImageSanitizer
from gateway.sanitizers.ole import OleSanitizer
from gateway.sanitizers.ooxml import OoxmlSanitizer
from gateway.sanitizers.pdf import PdfSanitizer
from tests.helpers import hostile, oracle
from tests.helpers.corpus import corpus_file

# Findings that only describe what was normal about a clean input; anything else on a clean
# sample means the sanitizer thought it removed something.
INFORMATIONAL = frozenset({"OLE_VERIFIED_CLEAN", "IMAGE_METADATA"})


class SanitizerContract:
    options: ClassVar[SanitizeOptions] = SanitizeOptions()

    @pytest.fixture
    def sanitizer(self) -> Any:
        raise NotImplementedError

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
        assert {f.code for f in result.findings} <= INFORMATIONAL
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
        assert {f.code for f in second.findings} <= {"OLE_VERIFIED_CLEAN"}
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
    @pytest.fixture
    def sanitizer(self) -> PdfSanitizer:
        return PdfSanitizer()

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
    @pytest.fixture
    def sanitizer(self) -> OoxmlSanitizer:
        return OoxmlSanitizer()

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
    @pytest.fixture
    def sanitizer(self) -> OleSanitizer:
        return OleSanitizer()

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
    @pytest.fixture
    def sanitizer(self) -> ImageSanitizer:
        return ImageSanitizer()

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

    @pytest.fixture
    def sanitizer(self) -> ArchiveSanitizer:
        return ArchiveSanitizer()

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
