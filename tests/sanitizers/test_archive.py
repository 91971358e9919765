"""ZIP sanitizer: limits checked before expanding, encryption and traversal withhold the
archive, members go through detect and their own sanitizer, CP932 names survive."""

from __future__ import annotations

import io
import zipfile

import pytest

from gateway.sanitizers.archive import ArchiveSanitizer, decode_member_name
from gateway.sanitizers.base import SanitizeOptions
from gateway.workers import run_isolated
from tests.helpers import hostile, oracle

SANITIZER = ArchiveSanitizer()
MEMBERS = (
    ("archive", "rebuild"),
    ("pdf", "rebuild"),
    ("ooxml", "rebuild"),
    ("image", "rebuild"),
    ("text", "keep"),
)


def _sanitize(data: bytes, **options: object):  # type: ignore[no-untyped-def]
    settings = {"member_actions": MEMBERS, **options}
    return SANITIZER.sanitize(data, "files.zip", "2", SanitizeOptions(**settings))  # type: ignore[arg-type]


def _codes(result: object) -> list[str]:
    return [f.code for f in result.findings]  # type: ignore[attr-defined]


def test_members_are_sanitized_and_archive_rebuilt() -> None:
    data = hostile.simple_zip(
        {
            "docs/report.pdf": hostile.pdf_with_action("javascript"),
            "docs/macro.docm": hostile.docm(),
            "img/photo.jpg": hostile.polyglot_jpeg("zip"),
            "readme.txt": b"hello\n",
            "tool.exe": hostile.pe_bytes(),
        }
    )
    result = _sanitize(data)
    (output,) = result.outputs
    archive = zipfile.ZipFile(io.BytesIO(output.data))
    assert sorted(archive.namelist()) == [
        "docs/macro.docx",
        "docs/report.pdf",
        "img/photo.jpg",
        "readme.txt",
    ]
    assert oracle.pdf_active_content(archive.read("docs/report.pdf")) == []
    assert oracle.office_active_content(archive.read("docs/macro.docx"), ".docx") == []
    assert b"PK\x03\x04" not in archive.read("img/photo.jpg")
    assert archive.read("readme.txt") == b"hello\n"
    stripped = [f for f in result.findings if f.code == "ARCHIVE_MEMBER_STRIPPED"]
    assert [f.detail for f in stripped] == ["tool.exe (executable: strip)"]
    assert {"PDF_JAVASCRIPT", "OOXML_VBA_MACRO", "IMAGE_TRAILING_DATA", "EXECUTABLE"} <= set(
        _codes(result)
    )
    # Findings name the member they are about.
    assert next(f for f in result.findings if f.code == "EXECUTABLE").part_id == "2/5"


def test_nested_bomb_is_caught_from_the_central_directory() -> None:
    bomb = hostile.zip_bomb(expanded_mb=64, nested=True)
    assert len(bomb) < 200_000
    # 128 MiB of address space: expanding the 64 MiB member would not fit beside Python.
    result = run_isolated(
        SANITIZER.sanitize,
        bomb,
        "bomb.zip",
        "2",
        SanitizeOptions(member_actions=MEMBERS),
        timeout=30,
        memory_limit_mb=128 + 200,
    )
    assert result.outputs == ()
    bomb_finding = next(f for f in result.findings if f.code == "ARCHIVE_BOMB")
    assert bomb_finding.part_id == "2/1"
    assert "ratio" in bomb_finding.detail


def test_total_size_budget() -> None:
    data = hostile.simple_zip({f"f{i}.txt": b"x" * 100_000 for i in range(5)})
    result = _sanitize(data, archive_max_total_size=300_000)
    assert result.outputs == ()
    assert "over the 300000 left" in next(
        f.detail for f in result.findings if f.code == "ARCHIVE_BOMB"
    )


def test_overlapping_entries_bomb() -> None:
    result = _sanitize(hostile.zip_overlap_bomb())
    assert result.outputs == ()
    assert "overlapping entries share data" in [
        f.detail for f in result.findings if f.code == "ARCHIVE_BOMB"
    ]


def test_too_many_members() -> None:
    data = hostile.simple_zip({f"{i}.txt": b"x" for i in range(30)})
    result = _sanitize(data, archive_max_members=20)
    assert result.outputs == ()
    assert _codes(result) == ["ARCHIVE_TOO_MANY_MEMBERS"]


def test_depth_limit() -> None:
    data = b"innermost\n"
    data = hostile.simple_zip({"a.txt": data})
    for level in range(4):
        data = hostile.simple_zip({f"level{level}.zip": data})
    result = _sanitize(data, archive_max_depth=3)
    assert result.outputs == ()
    assert "ARCHIVE_TOO_DEEP" in _codes(result)
    shallow = _sanitize(hostile.simple_zip({"in.zip": hostile.simple_zip({"a.txt": b"ok"})}))
    inner = zipfile.ZipFile(io.BytesIO(shallow.outputs[0].data)).read("in.zip")
    assert zipfile.ZipFile(io.BytesIO(inner)).read("a.txt") == b"ok"


@pytest.mark.parametrize(
    ("builder", "method"), [("zipcrypto_zip", "ZipCrypto"), ("aes_zip", "AES")]
)
def test_encrypted_archives_are_withheld(builder: str, method: str) -> None:
    result = _sanitize(getattr(hostile, builder)())
    assert result.outputs == ()
    (finding,) = result.findings
    assert finding.code == "ARCHIVE_ENCRYPTED"
    assert method in finding.detail


def test_encrypted_zip_nested_in_plain_zip() -> None:
    result = _sanitize(hostile.simple_zip({"inner.zip": hostile.aes_zip()}))
    assert result.outputs == ()
    assert "ARCHIVE_ENCRYPTED" in _codes(result)


def test_path_traversal_rejects_the_archive() -> None:
    result = _sanitize(hostile.zip_traversal())
    assert result.outputs == ()
    assert "../../etc/cron.d/evil" in [
        f.detail for f in result.findings if f.code == "ARCHIVE_PATH_TRAVERSAL"
    ]


def test_member_quarantine_withholds_the_archive() -> None:
    data = hostile.simple_zip({"a.pdf": hostile.benign_pdf(1)})
    result = _sanitize(data, member_actions=(("pdf", "quarantine"),))
    assert result.outputs == ()
    assert "ARCHIVE_MEMBER_QUARANTINE" in _codes(result)


def test_cp932_names_survive() -> None:
    data = hostile.zip_cp932_names()
    result = _sanitize(data)
    archive = zipfile.ZipFile(io.BytesIO(result.outputs[0].data))
    infos = archive.infolist()
    assert [decode_member_name(i)[0] for i in infos] == ["資料/見積書.txt", "報告書.txt"]
    assert all(not i.flag_bits & 0x800 for i in infos)
    assert infos[1].filename.encode("cp437") == "報告書.txt".encode("cp932")


def test_all_members_stripped_means_no_output() -> None:
    result = _sanitize(hostile.simple_zip({"a.exe": hostile.pe_bytes()}))
    assert result.outputs == ()
    assert "ARCHIVE_EMPTY" in _codes(result)


@pytest.mark.parametrize("data", [b"PK\x03\x04broken", b"PK\x05\x06" + b"\x00" * 18 + b"junk"])
def test_malformed_zip(data: bytes) -> None:
    result = _sanitize(data)
    assert result.outputs == ()
    assert result.findings


def test_bidi_controls_removed_from_member_names() -> None:
    data = hostile.simple_zip({"docs/報告\u202etxt.pdf": hostile.benign_pdf(1)})
    result = _sanitize(data)
    names = zipfile.ZipFile(io.BytesIO(result.outputs[0].data)).namelist()
    assert names == ["docs/報告txt.pdf"]
    assert "FILENAME_BIDI_CONTROL" in _codes(result)


def test_message_member_is_stripped_not_kept_as_text() -> None:
    """RT-01: an .eml member is a message to whoever opens it; the archive sanitizer cannot
    recurse into messages, so it goes, with a finding, instead of arriving byte for byte."""
    forwarded = (
        b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream; name=a.exe\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n"
    )
    result = _sanitize(hostile.simple_zip({"fwd.eml": forwarded, "readme.txt": b"hello\n"}))
    (output,) = result.outputs
    assert zipfile.ZipFile(io.BytesIO(output.data)).namelist() == ["readme.txt"]
    assert "MESSAGE_FILE" in _codes(result)
    stripped = [f.detail for f in result.findings if f.code == "ARCHIVE_MEMBER_STRIPPED"]
    assert stripped == ["fwd.eml (message: strip)"]


def test_member_windows_acts_on_withholds_the_archive() -> None:
    """RT-05: an .scf fetches its icon from a UNC path as soon as Explorer shows the folder."""
    scf = b"[Shell]\r\nCommand=2\r\nIconFile=\\\\10.0.0.5\\s\\i.ico\r\n"
    result = _sanitize(
        hostile.simple_zip({"desktop.scf": scf}),
        member_actions=(*MEMBERS, ("script", "quarantine")),
    )
    assert result.outputs == ()
    assert {"ACTIVE_FILE_TYPE", "ARCHIVE_MEMBER_QUARANTINE"} <= set(_codes(result))
