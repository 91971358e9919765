"""ClamAV through a private clamd (``tests/helpers/clamd.py``), over real SMTP.

The database is ours (EICAR as body and hash signatures, and a test-only marker), so every
detection here can only come from the gateway sending the decoded part, or the archive
member, to clamd. A hit holds the whole message with the signature name as the reason; an
engine that dies mid-scan makes the message tempfail (the sender keeps it) or be held, as
configured: never delivered unscanned, never lost.
"""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest

from gateway import antivirus
from gateway.sanitizers.archive import ArchiveSanitizer
from gateway.sanitizers.base import SanitizeOptions
from tests.antivirus.conftest import ScanningChain
from tests.helpers import hostile
from tests.helpers.clamd import (
    CLAMD_MISSING,
    EICAR,
    EICAR_NAME,
    MARKER_NAME,
    TEST_MARKER,
    KillOnData,
    PrivateClamd,
    clamd_installed,
)
from tests.helpers.redteam import leaves, plain, with_attachment

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not clamd_installed(), reason=CLAMD_MISSING),
]


def _scanning(clamd_address: str, **more: object) -> dict[str, object]:
    return {"antivirus.enabled": True, "antivirus.clamd": clamd_address, **more}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, clamd_server: PrivateClamd):
    with ScanningChain(
        tmp_path_factory.mktemp("clamd-chain"), _scanning(clamd_server.unix_address)
    ) as running:
        yield running


def _zip(members: dict[str, bytes]) -> bytes:
    return hostile.simple_zip(members)


def _virus_findings(report: dict[str, object]) -> list[dict[str, str]]:
    return [f for f in report["findings"] if f["code"] == "VIRUS_FOUND"]  # type: ignore[union-attr, index]


def _assert_held_for(chain: ScanningChain, outcome, signature: str) -> dict[str, object]:
    assert outcome.code == 250, outcome.reply
    assert outcome.delivered == [], "a message with known malware was delivered"
    [item] = outcome.held
    report = chain.report_of(item)
    assert any(signature in f["detail"] for f in _virus_findings(report)), report["findings"]
    assert any("VIRUS_FOUND" in reason and signature in reason for reason in item.reasons)
    return report


def test_eicar_in_a_text_attachment_holds_the_message_with_its_name(chain: ScanningChain):
    outcome = chain.send(with_attachment("readme.txt", EICAR, content_type="text/plain"))
    _assert_held_for(chain, outcome, EICAR_NAME)
    [item] = outcome.held
    # The sanitized copy an admin could release carries neither the file nor its bytes, and
    # its notice says why in words, with the signature's name.
    sanitized = chain.sanitized_of(item)
    assert not any(EICAR in payload for _, payload in leaves(sanitized))
    text = sanitized.decode("utf-8", "replace")
    body = b"".join(payload for _, payload in leaves(sanitized)).decode("utf-8", "replace")
    assert "既知のウイルス" in body, text[:2000]
    assert EICAR_NAME in body
    assert chain.gateway.metric("mugaika_findings_total", {"code": "VIRUS_FOUND"}) >= 1


def test_marker_inside_a_zip_inside_a_zip_is_found(chain: ScanningChain):
    inner = _zip({"docs/payload.bin": b"padding " * 100 + TEST_MARKER})
    outer = _zip({"readme.txt": "説明\n".encode(), "inner.zip": inner})
    outcome = chain.send(with_attachment("資料.zip", outer, content_type="application/zip"))
    _assert_held_for(chain, outcome, MARKER_NAME)


def test_marker_inside_a_docx_is_found(chain: ScanningChain):
    docx = _rezip(hostile.benign_docx(), {"word/media/image9.bin": b"\x00\x01" * 50 + TEST_MARKER})
    outcome = chain.send(
        with_attachment(
            "見積書.docx",
            docx,
            content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        )
    )
    _assert_held_for(chain, outcome, MARKER_NAME)


def _rezip(data: bytes, extra: dict[str, bytes]) -> bytes:
    """The package with ``extra`` members added, all deflated."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
        for name, content in extra.items():
            target.writestr(name, content)
    assert TEST_MARKER not in out.getvalue()  # only an engine that inflates can see it
    return out.getvalue()


def test_eicar_in_a_base64_body_is_found_and_not_in_the_sanitized_copy(chain: ScanningChain):
    raw = (
        "From: a@partner.example\nTo: {RCPT}\nSubject: body\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(b"see below\n" + EICAR + b"\n").decode()
    )
    assert EICAR not in raw.encode()
    outcome = chain.send(raw)
    _assert_held_for(chain, outcome, EICAR_NAME)
    [item] = outcome.held
    assert EICAR not in chain.sanitized_of(item)
    assert (
        chain.original_of(item)
        .replace(b"\r\n", b"\n")
        .endswith(base64.encodebytes(b"see below\n" + EICAR + b"\n"))
    )


def test_clean_mail_is_delivered_without_scan_findings(chain: ScanningChain):
    outcome = chain.send(with_attachment("memo.txt", "会議は10時です。\n".encode()))
    assert outcome.code == 250
    assert not outcome.was_held
    [copy] = outcome.delivered
    assert b"VIRUS" not in copy.split(b"\r\n\r\n", 1)[0]


def test_the_archive_sanitizer_scans_each_member_it_extracts(clamd_server: PrivateClamd):
    """Members are scanned as extracted, before any rebuild: the finding names the member."""
    target = antivirus.ScanTarget(clamd=clamd_server.tcp_address)
    archive = _zip({"a.txt": b"fine\n", "b.txt": TEST_MARKER})
    result = ArchiveSanitizer().sanitize(archive, "x.zip", "1.2", SanitizeOptions(antivirus=target))
    assert result.outputs == ()
    found = [(f.part_id, f.detail) for f in result.findings if f.code == "VIRUS_FOUND"]
    assert found == [("1.2/2", f"clamd: {MARKER_NAME}")]


def test_tcp_and_unix_sockets_answer_alike(clamd_server: PrivateClamd):
    for address in (clamd_server.unix_address, clamd_server.tcp_address):
        target = antivirus.ScanTarget(clamd=address)
        assert antivirus.scan(target, EICAR, "1").signatures == (f"clamd: {EICAR_NAME}",)
        assert antivirus.scan(target, b"nothing here", "1") == antivirus.ScanResult()


def test_objects_over_max_size_are_skipped_with_a_finding(clamd_server: PrivateClamd):
    target = antivirus.ScanTarget(clamd=clamd_server.unix_address, max_size=16)
    result = antivirus.scan(target, EICAR, "1")
    assert not result.infected
    assert "68 bytes > antivirus.max_size 16" in result.skipped


@pytest.mark.parametrize("on_unavailable", ["tempfail", "hold"])
def test_clamd_killed_mid_scan_loses_nothing(tmp_path: Path, on_unavailable: str):
    """clamd SIGKILLed while the part streams to it: tempfail answers 451 (the sender keeps
    the message and delivers it once clamd is back), hold stores it, original intact."""
    if not clamd_installed():
        pytest.skip(CLAMD_MISSING)
    attachment = b"A" * 200_000 + TEST_MARKER
    with (
        PrivateClamd(tmp_path / "clamd") as clamd,
        KillOnData(clamd, tmp_path / "relay.sock", after_bytes=64 * 1024) as relay,
        ScanningChain(
            tmp_path / "gw",
            _scanning(relay.address, **{"antivirus.on_unavailable": on_unavailable}),
        ) as chain,
    ):
        sent = with_attachment("data.txt", attachment, content_type="text/plain")
        outcome = chain.send(sent)
        assert relay.killed.is_set(), "clamd was not killed mid-scan"
        assert outcome.delivered == []
        if on_unavailable == "tempfail":
            assert outcome.code == 451, outcome.reply
            assert outcome.held == []
            # clamd back (a new one on the same database): the sender's retry is scanned.
            clamd.start()
            with ScanningChain(tmp_path / "gw2", _scanning(clamd.unix_address)) as again:
                retried = again.send(sent)
            _assert_held_for(again, retried, MARKER_NAME)
        else:
            assert outcome.code == 250, outcome.reply
            [item] = outcome.held
            report = chain.report_of(item)
            codes = {f["code"] for f in report["findings"]}
            assert "VIRUS_SCAN_UNAVAILABLE" in codes
            assert any("VIRUS_SCAN_UNAVAILABLE" in r for r in item.reasons)
            original = chain.original_of(item)
            assert base64.encodebytes(attachment).replace(b"\n", b"\r\n")[:5000] in original


def test_clamd_down_tempfails_by_default(tmp_path: Path):
    missing = f"unix:{tmp_path / 'no-clamd.sock'}"
    with ScanningChain(tmp_path / "gw", _scanning(missing)) as chain:
        outcome = chain.send(plain("本文です。"))
    assert outcome.code == 451, outcome.reply
    assert outcome.delivered == []
    assert outcome.held == []
