"""The ODF sanitizer: a hostile document loses every active part and keeps its text; the
output is read by odfpy (an independent reader), never by the code under test; documents of
the shared corpus come out readable."""

from __future__ import annotations

import io
import zipfile

import pytest
from odf import teletype
from odf.opendocument import load

from gateway.errors import CannotSanitize
from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.odf import OdfSanitizer
from tests.helpers.corpus import corpus_file
from tests.helpers.odf import benign_odt, hostile_odt


def _sanitize(data: bytes, name: str = "議事録.odt"):
    return OdfSanitizer().sanitize(data, name, "1.2", SanitizeOptions())


def _text(data: bytes) -> str:
    return teletype.extractText(load(io.BytesIO(data)).body)


def test_hostile_document_loses_every_active_part_and_keeps_its_text():
    result = _sanitize(hostile_odt())
    [output] = result.outputs
    with zipfile.ZipFile(io.BytesIO(output.data)) as package:
        names = package.namelist()
        xml = b"".join(package.read(n) for n in names if n.endswith(".xml"))
    assert names[0] == "mimetype"
    assert not [n for n in names if n.startswith(("Basic/", "Scripts/", "Object", "Config"))]
    for needle in (
        b"event-listener",
        b"vnd.sun.star.script",
        b"evil.example",
        b"execute-macro",
        b"dde-connection",
        b"draw:object",
        b"10.0.0.5",
        b"office:scripts",
    ):
        assert needle not in xml, needle
    assert _text(output.data) == "本文 ログイン 終わり押す"
    codes = {f.code for f in result.findings}
    assert codes == {"ODF_MACRO", "ODF_EVENT_LISTENER", "ODF_EXTERNAL_LINK", "ODF_EMBEDDED_OBJECT"}


def test_benign_document_keeps_text_styles_and_picture():
    result = _sanitize(benign_odt())
    [output] = result.outputs
    assert result.findings == ()
    assert "議事録" in _text(output.data)
    assert "10時" in _text(output.data)
    with zipfile.ZipFile(io.BytesIO(output.data)) as package:
        assert package.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
        assert "Pictures/1.png" in package.namelist()
        assert b'style:name="B"' in package.read("content.xml")
        assert b"Pictures/1.png" in package.read("META-INF/manifest.xml")


def test_encrypted_document_is_refused():
    data = benign_odt().replace(b"manifest:version", b"manifest:version", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "META-INF/manifest.xml":
                content = content.replace(
                    b"</manifest:manifest>", b"<manifest:encryption-data/></manifest:manifest>"
                )
            target.writestr(info, content)
    with pytest.raises(CannotSanitize, match="password") as raised:
        _sanitize(out.getvalue())
    assert raised.value.code == "ENCRYPTED_DOCUMENT"


@pytest.mark.parametrize(
    "name", ["embedded-simple-2007.odt", "embedded-simple-2007.ods", "embedded-simple-2007.odp"]
)
def test_corpus_documents_come_out_readable_without_their_objects(name: str):
    data = corpus_file(f"oletools/oleobj/{name}")
    result = _sanitize(data, name)
    [output] = result.outputs
    assert "embedded" in _text(output.data).lower()
    with zipfile.ZipFile(io.BytesIO(output.data)) as package:
        assert not [n for n in package.namelist() if n.startswith(("Object", "ObjectReplacements"))]
    assert "ODF_EMBEDDED_OBJECT" in {f.code for f in result.findings}
