"""``mugaika rules check`` and ``mugaika rules test`` as an operator runs them (subprocess)."""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def mugaika(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_shipped_policies() -> None:
    result = mugaika("rules", "check")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout
        == "shipped policies: OK (3 policies: internet-light, lgwan-base, strip-all)\n"
    )


def test_check_reports_one_line_per_error_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "city-a.yaml").write_text(
        "extends: lgwan-base\nattachments:\n  pdf: rebiuld\nrules:\n"
        "  - name: x\n    when: {subject: {contains: [a]}}\n    action: quarantin\n"
    )
    (tmp_path / "city-b.yaml").write_text("extends: city-c\n")
    result = mugaika("rules", "check", tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines == [
        f"mugaika: {tmp_path / 'city-a.yaml'}:3: attachments.pdf: 'rebiuld': Input should be "
        "'rebuild', 'rasterize', 'both', 'strip' or 'quarantine'",
        f"mugaika: {tmp_path / 'city-a.yaml'}:7: rules[0].action: 'quarantin': Input should be "
        "'deliver', 'quarantine', 'reject', 'tag' or 'skip-sanitizer'",
        f"mugaika: {tmp_path / 'city-b.yaml'}:1: extends: 'city-c': no such policy "
        "(known: city-a, city-b, internet-light, lgwan-base, strip-all)",
    ]
    assert "Traceback" not in result.stderr


def test_check_with_config_verifies_tenant_policy_names(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "city-a.yaml").write_text("extends: strip-all\n")
    config = tmp_path / "mugaika.yaml"
    config.write_text(
        f"policy: {{dir: {tmp_path / 'policies'}}}\n"
        "tenants:\n  a.example.lg.jp: {policy: city-a}\n  b.example.lg.jp: {policy: city-b}\n"
    )
    result = mugaika("rules", "check", "--config", config)
    assert result.returncode == 2
    assert "tenants.b.example.lg.jp.policy: 'city-b': no such policy" in result.stderr
    config.write_text(f"policy: {{dir: {tmp_path / 'policies'}}}\n")
    assert mugaika("rules", "check", "--config", config).returncode == 0


# A minimal PE header: libmagic calls it an executable whatever the part claims to be.
PE = (
    b"MZ"
    + b"\x90\x00" * 29
    + struct.pack("<I", 0x40)
    + b"PE\x00\x00"
    + struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x102)
    + b"\x0b\x01"
    + b"\x00" * 300
)
EML = (
    "From: =?UTF-8?B?57eP5YuZ6Kqy?= <soumu@city.examp1e.lg.jp>\r\n"
    "To: user@city.example.lg.jp\r\n"
    "Subject: =?ISO-2022-JP?B?GyRCO2o1XhsoQg==?= payment\r\n"  # 至急
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n"
    "--b\r\nContent-Type: application/pdf\r\n"
    'Content-Disposition: attachment; filename="=?UTF-8?B?6KuL5rGC5pu4LmV4ZQ==?="\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PE).decode().replace("\n", "\r\n")
    + "--b--\r\n"
)


def test_test_shows_hits_misses_verdict_and_attachments(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(EML.encode())
    result = mugaika(
        "rules", "test", "-", eml, "--tenant", "city.example.lg.jp", "--auth", "dmarc=none"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "policy: lgwan-base" in out
    assert "  HIT   lookalike-sender-domain" in out
    assert "  miss  limits-exceeded" in out
    assert "urgent-payment-subject" in out  # 至急 in ISO-2022-JP: a monitor hit
    assert "tag (monitor: not enforced)" in out
    assert "verdict: quarantine" in out
    # The "PDF" is an MZ executable by content, whatever its declared type and name say.
    assert "'請求書.exe' application/" in out
    assert "(executable): quarantine" in out


def test_test_with_a_named_policy_and_findings(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(
        b"From: a@partner.example\r\nTo: u@city.example.lg.jp\r\nSubject: hi\r\n\r\nx\r\n"
    )
    result = mugaika("rules", "test", "-", eml, "--policy", "strip-all", "--finding", "LIMIT_DEPTH")
    assert result.returncode == 0, result.stderr
    assert "policy: strip-all" in result.stdout
    assert "HIT   limits-exceeded" in result.stdout
    assert "verdict: quarantine" in result.stdout
    bad = mugaika("rules", "test", "-", eml, "--policy", "nope")
    assert bad.returncode == 2
    assert "--policy 'nope': no such policy" in bad.stderr


def test_test_unreadable_message_is_exit_1(tmp_path: Path) -> None:
    result = mugaika("rules", "test", "-", tmp_path / "missing.eml")
    assert result.returncode == 1
    assert "missing.eml" in result.stderr


@pytest.mark.parametrize("name", ["spamscope-mail-parser/mail_test_15", "cpython-email/msg_02.txt"])
def test_test_on_corpus_messages(corpus: Path, name: str) -> None:
    path = corpus / name
    if not path.exists():
        pytest.skip(f"{name} not in this corpus")
    result = mugaika("rules", "test", "-", path)
    assert result.returncode == 0, result.stderr
    assert "verdict: " in result.stdout
