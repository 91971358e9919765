"""STARTTLS (optional and required), `mugaika scan` exit codes and output, JSON log lines."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.logs import StructuredFormatter, replace_control_chars
from tests.gateway.test_relay_basics import message
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.pipeline import body_text
from tests.helpers.smtp_sink import SmtpSink

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a self-signed test certificate
    return context


def test_starttls_is_offered_and_used(tmp_path, sink: SmtpSink, certificate):
    cert, key = certificate
    config = make_config(
        tmp_path, downstream=sink.address, **{"smtp.tls.cert": str(cert), "smtp.tls.key": str(key)}
    )
    with RunningGateway(config) as gateway, gateway.smtp() as client:
        client.ehlo("client.example")
        assert client.has_extn("starttls")
        assert client.starttls(context=_client_context())[0] == 220
        client.ehlo("client.example")
        assert client.sendmail("a@partner.example", ["u@city.example.lg.jp"], message()) == {}
    [received] = sink.messages
    assert b"with ESMTPS id " in received.data.split(b"\r\n\r\n")[0]


def test_required_tls_refuses_mail_before_starttls(tmp_path, sink: SmtpSink, certificate):
    cert, key = certificate
    config = make_config(
        tmp_path,
        downstream=sink.address,
        **{"smtp.tls.cert": str(cert), "smtp.tls.key": str(key), "smtp.tls.required": True},
    )
    with RunningGateway(config) as gateway, gateway.smtp() as client:
        client.ehlo("client.example")
        assert client.docmd("MAIL FROM:<a@partner.example>") == (
            530,
            b"5.7.0 Must issue a STARTTLS command first",
        )
        client.starttls(context=_client_context())
        client.ehlo("client.example")
        assert client.docmd("MAIL FROM:<a@partner.example>")[0] == 250
    assert sink.messages == []


def _scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "scan", "--no-auth", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_scan_prints_the_report_writes_the_output_and_sets_the_exit_code(tmp_path):
    clean = tmp_path / "clean.eml"
    clean.write_bytes(message(body="see https://example.com/x\n"))
    out = tmp_path / "out.eml"
    result = _scan(str(clean), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "verdict: deliver" in result.stdout
    assert "action: urls-defanged part=1" in result.stdout
    assert "hxxps://example[.]com/x" in body_text(out.read_bytes())
    assert b"X-Mugaika-Verdict: deliver" in out.read_bytes()

    program = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 100
    held = tmp_path / "held.eml"
    held.write_bytes(
        b"From: a@partner.example\r\nTo: u@city.example.lg.jp\r\nSubject: x\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: application/octet-stream; name="a.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(program)
    )
    result = _scan(str(held), "--json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "quarantine"
    assert report["attachments"][0]["detected_type"] == "application/x-dosexec"


def test_scan_usage_errors_exit_2_and_missing_files_exit_1(tmp_path):
    result = _scan(str(tmp_path / "nope.eml"))
    assert result.returncode == 1
    assert "nope.eml" in result.stderr
    assert "Traceback" not in result.stderr
    result = _scan()
    assert result.returncode == 2


def test_json_log_lines_carry_fields_with_control_characters_replaced():
    formatter = StructuredFormatter(json_lines=True)
    record = logging.LogRecord("mugaika.verdict", logging.INFO, __file__, 1, "", (), None)
    record.fields = {"queue_id": "Q1", "subject": "evil\u202egnp.exe\r\nInjected: yes"}
    data = json.loads(formatter.format(record))
    assert data["logger"] == "mugaika.verdict"
    assert data["queue_id"] == "Q1"
    assert "\u202e" not in data["subject"]
    assert "\r" not in data["subject"]
    assert "\n" not in data["subject"]
    assert replace_control_chars("a\u202eb") == "a\ufffdb"
    text = StructuredFormatter(json_lines=False).format(record)
    assert "\n" not in text
    assert "queue_id=Q1" in text
