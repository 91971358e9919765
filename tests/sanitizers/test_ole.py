"""Legacy OLE documents: findings per oletools, output only when verified clean; LibreOffice
rasterizing tested where installed."""

from __future__ import annotations

import struct

import pytest

from gateway.errors import CannotSanitize
from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.ole import OleSanitizer, soffice_path
from tests.helpers import oracle
from tests.helpers.corpus import corpus_file

SANITIZER = OleSanitizer()
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def test_clean_doc_is_delivered_as_verified() -> None:
    data = corpus_file("msoffcrypto-tool/inputs/plain.doc")
    result = SANITIZER.sanitize(data, "plain.doc", "1", SanitizeOptions())
    assert [f.code for f in result.findings] == ["OLE_VERIFIED_CLEAN"]
    assert result.outputs[0].data == data
    assert oracle.office_active_content(result.outputs[0].data, ".doc") == []


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("oletools/excel4-macros/excel4_sample_macro.xls", "OLE_XLM_MACRO"),
        ("oletools/olevba/sample_with_vba.ppt", "OLE_VBA_MACRO"),
        ("oletools/oleobj/sample_with_lnk_file.doc", "OLE_EMBEDDED_OBJECT"),
        ("oletools/oleobj/sample_with_calc_embedded.doc", "OLE_EMBEDDED_OBJECT"),
        ("oletools/oleobj/embedded-simple-2007.xls", "OLE_EMBEDDED_OBJECT"),
    ],
)
def test_active_content_gives_findings_and_no_output(path: str, code: str) -> None:
    data = corpus_file(path)
    held = SanitizeOptions(legacy_office="quarantine")
    result = SANITIZER.sanitize(data, path.rsplit("/", 1)[1], "1", held)
    assert result.outputs == ()
    assert {code, "OLE_HELD_BY_POLICY"} <= {f.code for f in result.findings}


def test_encrypted_office_fails_closed() -> None:
    data = corpus_file("msoffcrypto-tool/inputs/rc4cryptoapi_password.doc")
    with pytest.raises(CannotSanitize) as caught:
        SANITIZER.sanitize(data, "x.doc", "1", SanitizeOptions())
    assert caught.value.code == "OFFICE_ENCRYPTED"


def test_outlook_msg_is_not_vouched_for() -> None:
    data = corpus_file("spamscope-mail-parser/mail_outlook_1")
    with pytest.raises(CannotSanitize) as caught:
        SANITIZER.sanitize(data, "mail.msg", "1", SanitizeOptions())
    assert caught.value.code == "OLE_UNSUPPORTED_TYPE"


@pytest.mark.parametrize("data", [b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, b"junk"])
def test_garbage_fails_closed(data: bytes) -> None:
    with pytest.raises(CannotSanitize) as caught:
        SANITIZER.sanitize(data, "x.doc", "1", SanitizeOptions())
    assert caught.value.code == "OLE_DAMAGED"


@pytest.mark.skipif(soffice_path() is not None, reason="LibreOffice is installed here")
def test_rasterize_without_libreoffice_says_so() -> None:
    data = corpus_file("oletools/oleobj/sample_with_lnk_file.doc")
    result = SANITIZER.sanitize(data, "x.doc", "1", SanitizeOptions(mode="rasterize"))
    assert result.outputs == ()
    assert "OLE_RASTERIZE_UNAVAILABLE" in {f.code for f in result.findings}


@pytest.mark.skipif(soffice_path() is None, reason="LibreOffice (soffice) is not installed")
def test_rasterize_with_libreoffice() -> None:
    data = corpus_file("oletools/oleobj/sample_with_lnk_file.doc")
    result = SANITIZER.sanitize(data, "x.doc", "1", SanitizeOptions(mode="rasterize"))
    (output,) = result.outputs
    assert output.filename == "x.pdf"
    assert oracle.pdf_active_content(output.data) == []
    assert oracle.pdf_text(output.data) == ""


# --- issue 11: a check that fails is a finding, never "verified clean" ----------------------


def test_ppt_object_unseen_by_oletools_is_found_and_withheld() -> None:
    from tests.helpers import hostile

    data = hostile.ppt_object_oletools_cannot_parse()
    held = SanitizeOptions(legacy_office="quarantine")  # inspection only: no conversion
    result = SANITIZER.sanitize(data, "slides.ppt", "1", held)
    assert result.outputs == ()
    [finding] = [f for f in result.findings if f.code == "OLE_EMBEDDED_OBJECT"]
    assert "ExOleObjStg (compressed) at offset 4277" in finding.detail
    assert "OLE_VERIFIED_CLEAN" not in {f.code for f in result.findings}


def test_object_record_hidden_inside_another_atom_is_found() -> None:
    from gateway.sanitizers.ole import ppt_object_records

    hidden = b"\x10\x00\x11\x10" + struct.pack("<I", 12) + b"\x00" * 12
    # An atom (recVer 0) PowerPoint does not descend into, holding the object record at an
    # odd offset: only a persist-directory offset would reach it, and a signature scan does.
    atom = b"\x00\x00\xf0\x0f" + struct.pack("<I", 3 + len(hidden)) + b"abc" + hidden
    assert ppt_object_records(atom) == ["ExOleObjStg (compressed) at offset 11"]
    assert ppt_object_records(atom[:-1]) == []  # a length past the stream's end is no record
    assert ppt_object_records(b"x" + OLE_MAGIC) == ["compound file inside the stream at offset 1"]


@pytest.mark.parametrize("check", ["_embedded_objects", "_macros", "_dde"])
def test_each_failing_check_withholds_the_file(monkeypatch: pytest.MonkeyPatch, check: str) -> None:
    """A clean document whose inspection raises midway is not delivered as received."""
    import gateway.sanitizers.ole as ole_module

    def broken(*args: object) -> object:
        raise ValueError("parser gave up")

    monkeypatch.setattr(ole_module, check, broken)
    data = corpus_file("msoffcrypto-tool/inputs/plain.doc")
    result = SANITIZER.sanitize(data, "plain.doc", "1", SanitizeOptions())
    assert result.outputs == ()
    [failed] = [f for f in result.findings if f.code == "OLE_CHECK_FAILED"]
    assert failed.detail.endswith("ValueError: parser gave up")
    assert "OLE_VERIFIED_CLEAN" not in {f.code for f in result.findings}


# --- issue 15: legacy Office with active content converted to OOXML ------------------------


@pytest.mark.skipif(soffice_path() is None, reason="LibreOffice (soffice) is not installed")
def test_active_doc_is_converted_and_rebuilt() -> None:
    data = corpus_file("oletools/oleobj/embedded-simple-2007.doc")
    result = SANITIZER.sanitize(data, "報告書.doc", "1", SanitizeOptions())
    (output,) = result.outputs
    assert output.filename == "報告書.docx"
    assert oracle.office_active_content(output.data, ".docx") == []
    codes = {f.code for f in result.findings}
    assert {"OLE_CONVERTED", "OOXML_OLE_OBJECT"} <= codes
    assert "OLE_EMBEDDED_OBJECT" not in codes  # the words would say it "contains" one


@pytest.mark.skipif(soffice_path() is None, reason="LibreOffice (soffice) is not installed")
def test_conversion_out_of_time_gives_no_output() -> None:
    data = corpus_file("oletools/excel4-macros/excel4_sample_macro.xls")
    result = SANITIZER.sanitize(data, "x.xls", "1", SanitizeOptions(time_limit=0.5))
    assert result.outputs == ()
    [failed] = [f for f in result.findings if f.code == "OLE_CONVERT_FAILED"]
    assert "did not finish" in failed.detail
    assert "OLE_XLM_MACRO" in {f.code for f in result.findings}
