"""A rebuilt Office package keeps the compressed bytes of the parts it did not change, and
only when those bytes are exactly the inspected content (``gateway.sanitizers.zipcopy``)."""

from __future__ import annotations

import io
import os
import zipfile
import zlib

import docx

from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.ooxml import OoxmlSanitizer
from gateway.sanitizers.zipcopy import RawMember, ZipCopier, inflate_exactly, raw_member
from tests.helpers import hostile

DATE = (1980, 1, 1, 0, 0, 0)


def _raw_deflate(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _streams(package: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        found = {i.filename: raw_member(package, i) for i in archive.infolist()}
    return {name: bytes(raw.data) for name, raw in found.items() if raw is not None}


def _recompressed(package: bytes, level: int) -> bytes:
    """``package`` with every member deflated at ``level`` (not the level we write)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info), zipfile.ZIP_DEFLATED, level)
    return out.getvalue()


def test_unchanged_parts_keep_their_compressed_bytes_and_changed_ones_are_rebuilt():
    package = _recompressed(hostile.benign_docx(paragraphs=5, link=True), level=1)
    result = OoxmlSanitizer().sanitize(package, "a.docx", "1", SanitizeOptions())
    before, after = _streams(package), _streams(result.outputs[0].data)
    assert after["word/styles.xml"] == before["word/styles.xml"]  # untouched: copied
    # The hyperlink's relationship was removed: that part is new, compressed by us.
    assert after["word/_rels/document.xml.rels"] != before["word/_rels/document.xml.rels"]
    texts = [p.text for p in docx.Document(io.BytesIO(result.outputs[0].data)).paragraphs]
    assert any(texts)


def test_a_stream_with_bytes_after_its_end_is_compressed_again():
    content = b"<w:document>" + b"x" * 5000 + b"</w:document>"
    hidden = _raw_deflate(content, 9) + b"HIDDEN-PAYLOAD"
    writer = ZipCopier(DATE)
    writer.add("word/document.xml", content, RawMember(zipfile.ZIP_DEFLATED, memoryview(hidden)))
    output = writer.getvalue()
    assert writer.copied == 0
    assert b"HIDDEN-PAYLOAD" not in output
    with zipfile.ZipFile(io.BytesIO(output)) as archive:
        assert archive.read("word/document.xml") == content


def test_a_stream_of_other_content_or_cut_short_is_compressed_again():
    content = os.urandom(2000)
    writer = ZipCopier(DATE)
    other = _raw_deflate(content[:-1] + b"!", 6)
    writer.add("a.bin", content, RawMember(zipfile.ZIP_DEFLATED, memoryview(other)))
    cut = _raw_deflate(content, 6)[:-3]
    writer.add("b.bin", content, RawMember(zipfile.ZIP_DEFLATED, memoryview(cut)))
    writer.add("c.bin", content, RawMember(zipfile.ZIP_STORED, memoryview(content + b"!")))
    assert writer.copied == 0
    with zipfile.ZipFile(io.BytesIO(writer.getvalue())) as archive:
        assert archive.testzip() is None
        assert [archive.read(n) for n in ("a.bin", "b.bin", "c.bin")] == [content] * 3


def test_an_exact_stream_is_copied_and_the_archive_reads_back():
    content = "資料".encode() * 300
    stream = _raw_deflate(content, 9)
    writer = ZipCopier(DATE)
    writer.add("word/media/画像.png", content, RawMember(zipfile.ZIP_DEFLATED, memoryview(stream)))
    writer.add("stored.txt", b"plain", RawMember(zipfile.ZIP_STORED, memoryview(b"plain")))
    output = writer.getvalue()
    assert writer.copied == 2
    assert _streams(output)["word/media/画像.png"] == stream
    with zipfile.ZipFile(io.BytesIO(output)) as archive:
        assert archive.testzip() is None
        assert archive.read("word/media/画像.png") == content
        assert archive.getinfo("stored.txt").compress_type == zipfile.ZIP_STORED


def test_inflate_exactly_proves_only_a_complete_stream_of_the_declared_size_and_crc():
    content = "通知".encode() * 500
    stream = _raw_deflate(content, 6)
    crc = zlib.crc32(content)

    def deflated(data: bytes) -> RawMember:
        return RawMember(zipfile.ZIP_DEFLATED, memoryview(data))

    proven = inflate_exactly(deflated(stream), len(content), crc)
    assert proven is not None
    assert proven.content == content
    assert inflate_exactly(deflated(stream + b"HIDDEN"), len(content), crc) is None
    assert inflate_exactly(deflated(stream[:-2]), len(content), crc) is None
    assert inflate_exactly(deflated(stream), len(content) - 1, crc) is None  # longer than said
    assert inflate_exactly(deflated(stream), len(content), crc ^ 1) is None
    assert inflate_exactly(deflated(b"not deflate \xff" * 3), len(content), crc) is None
    stored = RawMember(zipfile.ZIP_STORED, memoryview(content))
    assert inflate_exactly(stored, len(content), crc) == RawMember(
        zipfile.ZIP_STORED, stored.data, content
    )
    assert inflate_exactly(stored, len(content) + 1, crc) is None


def test_a_package_member_with_hidden_bytes_is_read_and_compressed_again():
    package = hostile.benign_docx(paragraphs=3)
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        members = [(i.filename, archive.read(i)) for i in archive.infolist()]
    # styles.xml's stream is followed, inside its member, by bytes no reader shows (written
    # by claiming the proof ZipCopier would not have made: it is how a hostile sender's tool
    # would write it).
    writer = ZipCopier(DATE)
    for name, content in members:
        hidden = b"HIDDEN-PAYLOAD" if name == "word/styles.xml" else b""
        stream = _raw_deflate(content, 6) + hidden
        writer.add(name, content, RawMember(zipfile.ZIP_DEFLATED, memoryview(stream), content))
    smuggled = writer.getvalue()
    assert b"HIDDEN-PAYLOAD" in smuggled
    with zipfile.ZipFile(io.BytesIO(smuggled)) as archive:
        assert archive.read("word/styles.xml") == dict(members)["word/styles.xml"]
    result = OoxmlSanitizer().sanitize(smuggled, "a.docx", "1", SanitizeOptions())
    output = result.outputs[0].data
    assert b"HIDDEN-PAYLOAD" not in output
    assert _streams(output)["word/document.xml"] == _streams(smuggled)["word/document.xml"]
    with zipfile.ZipFile(io.BytesIO(output)) as archive:
        assert archive.read("word/styles.xml") == dict(members)["word/styles.xml"]
