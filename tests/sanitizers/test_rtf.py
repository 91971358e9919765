"""The RTF sanitizer on hostile documents built here: objects, fields, hidden data, pictures,
header variants (RT-02). The text is read back by striprtf and the objects by oletools'
rtfobj, never by the code under test."""

from __future__ import annotations

import pytest
from oletools import rtfobj
from striprtf.striprtf import rtf_to_text

from gateway.errors import CannotSanitize
from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.rtf import RtfSanitizer
from tests.helpers import hostile

# An Equation Editor object as CVE-2017-11882 carriers write it (OLE 1.0 header of class
# Equation.3), with its shown picture in \result.
EQUATION = (
    rb"{\rtf1\ansi\ansicpg932 \'90\'bf\'8b\'81\'8f\'91 "
    rb"{\object\objemb\objupdate{\*\objclass Equation.3}\objw380\objh260"
    rb"{\*\objdata 01050000020000000b0000004571756174696f6e2e3300000000000000000000}"
    rb"{\result {\rtlch \'8e\'ae}}}\par}"
)


def _sanitize(data: bytes, name: str = "x.rtf"):
    return RtfSanitizer().sanitize(data, name, "1.2", SanitizeOptions())


def _text(data: bytes) -> str:
    return rtf_to_text(data.decode("latin-1"), encoding="cp932")


def _objects(data: bytes) -> int:
    parser = rtfobj.RtfObjParser(data)
    parser.parse()
    return len(parser.objects)


def test_equation_object_is_removed_and_its_shown_text_kept():
    assert _objects(EQUATION) == 1
    result = _sanitize(EQUATION)
    [output] = result.outputs
    assert _objects(output.data) == 0
    assert b"objdata" not in output.data
    assert b"objupdate" not in output.data
    assert "請求書" in _text(output.data)
    assert "式" in _text(output.data)  # the \result
    assert [(f.code, f.detail) for f in result.findings] == [
        ("RTF_OBJECT_REMOVED", "1 embedded objects")
    ]


@pytest.mark.parametrize(
    "instruction",
    [
        rb'DDEAUTO c:\\windows\\system32\\cmd.exe "/k calc.exe"',
        rb'INCLUDEPICTURE "http://evil.example/x.png" \\d',
        rb'HYPERLINK "https://evil.example/login"',
    ],
    ids=["dde", "includepicture", "hyperlink"],
)
def test_fields_become_their_shown_text(instruction: bytes):
    data = (
        rb"{\rtf1\ansi before {\field{\*\fldinst " + instruction + rb"}{\fldrslt shown}} after\par}"
    )
    result = _sanitize(data)
    out = result.outputs[0].data
    assert b"fldinst" not in out
    assert b"evil" not in out
    assert b"cmd.exe" not in out
    assert _text(out).split() == ["before", "shown", "after"]
    assert {f.code for f in result.findings} == {"RTF_FIELD_REMOVED"}


@pytest.mark.parametrize(
    "group",
    [
        rb"{\*\datastore 0105000002000000}",
        rb"{\*\themedata 504b030414}",
        rb"{\*\template \\\\10.0.0.5\\share\\t.dotm}",
        rb"{\*\mailmerge{\*\mmconnectstr x}}",
        rb"{\*\bin4 ABCD}",
    ],
    ids=["datastore", "themedata", "template", "mailmerge", "bin"],
)
def test_hidden_data_groups_are_dropped(group: bytes):
    data = rb"{\rtf1\ansi text " + group + rb" more\par}"
    out = _sanitize(data).outputs[0].data
    assert group not in out
    assert _text(out).split() == ["text", "more"]


def test_png_pictures_are_re_encoded_and_metafiles_dropped():
    png = hostile.png(16, 16).hex().encode()
    data = (
        rb"{\rtf1 a {\*\shppict{\pict{\*\picprop}\pngblip\picw16\pich16{\*\blipuid 0123abcd}"
        + png
        + rb"}}{\nonshppict{\pict\wmetafile8 0100090000}} b\par}"
    )
    result = _sanitize(data)
    out = result.outputs[0].data
    assert b"\\pngblip" in out
    assert b"wmetafile" not in out
    assert b"blipuid" not in out
    assert "RTF_PICTURE_REMOVED" in {f.code for f in result.findings}


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", b"\r\n", b" "])
def test_header_variants_are_rebuilt_from_the_brace_and_renamed_to_rtf(prefix: bytes):
    result = _sanitize(prefix + EQUATION.replace(rb"{\rtf1", rb"{\RTF1", 1), "請求書.doc")
    [output] = result.outputs
    assert output.data.startswith(rb"{\rtf1 ")
    assert output.filename == "請求書.rtf"
    assert _objects(output.data) == 0


def test_bytes_after_the_document_are_dropped():
    out = _sanitize(rb"{\rtf1 hello\par}" + b"PK\x03\x04 hidden zip").outputs[0].data
    assert out == rb"{\rtf1 hello\par}"


def test_what_cannot_be_made_harmless_is_refused():
    with pytest.raises(CannotSanitize, match="no RTF group") as raised:
        _sanitize(rb"plain text with {\object\objdata 0105} inside")
    assert raised.value.code == "RTF_NOT_HARMLESS"
