"""Policies are validated in the main process: at start (exit 2) and on SIGHUP (old kept)."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway.test_relay_basics import message
from tests.helpers.process import GatewayProcess
from tests.helpers.smtp_sink import SmtpSink

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_a_broken_policy_stops_the_start_with_one_line_and_exit_2(tmp_path: Path):
    policies = tmp_path / "policies"
    policies.mkdir()
    write(policies / "city.yaml", "extends: lgwan-base\nattachments:\n  pdf: shred\n")
    config = tmp_path / "mugaika.yaml"
    write(config, f"policy:\n  name: city\n  dir: {policies}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            "--data-dir",
            str(tmp_path / "data"),
            "--admin-listen",
            "off",
            "--metrics-listen",
            "off",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"mugaika: {policies / 'city.yaml'}:3: attachments.pdf: 'shred'")


@pytest.mark.slow
def test_sighup_with_a_broken_policy_keeps_the_working_one(tmp_path: Path, sink: SmtpSink):
    policies = tmp_path / "policies"
    policies.mkdir()
    write(policies / "city.yaml", "extends: lgwan-base\n")
    config = tmp_path / "mugaika.yaml"
    write(config, f"downstream: '{sink.address}'\npolicy:\n  name: city\n  dir: {policies}\n")
    with GatewayProcess(
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "data"),
        "--admin-listen",
        "off",
        "--metrics-listen",
        "off",
    ) as gateway:
        write(policies / "city.yaml", "extends: lgwan-base\nrules:\n  - name: Bad Name\n")
        gateway.signal(signal.SIGHUP)
        assert gateway.wait_for_output("reload failed; keeping the running configuration")
        assert "city.yaml:3" in gateway.output()
        # Workers still run the working policy: mail flows, with URLs defanged.
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=60) as client:
            client.sendmail(
                "a@partner.example",
                ["u@city.example.lg.jp"],
                message(body="see https://example.com/x\n"),
            )
        [received] = sink.wait_for(1)
        assert b"X-Mugaika-Policy: city" in received.data
