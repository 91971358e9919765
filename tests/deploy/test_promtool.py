"""Prometheus validates the shipped rules and configuration, and runs the alert unit tests.

Uses the real ``promtool`` (Debian package ``prometheus``); skipped with the reason when it is
not installed. Runs on copies in a temporary directory so nothing is written beside the files.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)"
)


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for name in ("alerts.yml", "alerts.test.yml", "scrape.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    return tmp_path


def test_check_rules(copy: Path) -> None:
    result = _promtool("check", "rules", "alerts.yml", cwd=copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_check_config(copy: Path) -> None:
    result = _promtool("check", "config", "scrape.yml", cwd=copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: scrape.yml is valid prometheus config file syntax" in result.stdout


def test_alert_unit_tests(copy: Path) -> None:
    result = _promtool("test", "rules", "alerts.test.yml", cwd=copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_fail_when_a_rule_is_wrong(copy: Path) -> None:
    """The unit tests can fail: planned worker replacements counted as crashes are caught."""
    alerts = copy / "alerts.yml"
    text = alerts.read_text()
    assert 'reason=~"crash|timeout|memory"' in text
    alerts.write_text(text.replace('reason=~"crash|timeout|memory"', 'reason=~".+"'))
    result = _promtool("test", "rules", "alerts.test.yml", cwd=copy)
    assert result.returncode != 0
    assert "alertname: MugaikaWorkerRestarts" in result.stdout + result.stderr


def test_a_broken_rule_is_refused(copy: Path) -> None:
    alerts = copy / "alerts.yml"
    alerts.write_text(alerts.read_text().replace('up{job="mugaika"} == 0', "up{job=} == 0"))
    result = _promtool("check", "rules", "alerts.yml", cwd=copy)
    assert result.returncode != 0
