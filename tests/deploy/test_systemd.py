"""The systemd unit parses, is hardened, and drains longer than the gateway's grace period.

``systemd-analyze verify`` and ``systemd-analyze security --offline`` (systemd >= 250) read a
copy whose ExecStart points at this checkout's ``mugaika`` (verify requires the executable).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.server import DEFAULT_GRACE

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "mugaika.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _service() -> dict[str, list[str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    # Repeated keys (SystemCallFilter twice) are legal in unit files: collect every value.
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def _copy_with_local_binary(tmp_path: Path) -> Path:
    mugaika = Path(sys.executable).with_name("mugaika")
    assert mugaika.exists(), "the mugaika console script of this checkout"
    copy = tmp_path / "mugaika.service"
    copy.write_text(UNIT.read_text().replace("/opt/mugaika/venv/bin/mugaika", str(mugaika)))
    return copy


def test_hardening_settings() -> None:
    service = _service()
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/mugaika",
        "KillSignal": "SIGTERM",
        "KillMode": "mixed",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "User": "mugaika",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert "--data-dir /var/lib/mugaika" in service["ExecStart"][0]


def test_stop_timeout_exceeds_the_drain_grace() -> None:
    timeout = _service()["TimeoutStopSec"][0]
    assert timeout.isdigit()
    # Drain (DEFAULT_GRACE) plus worker and side-service shutdown must fit before SIGKILL.
    assert int(timeout) >= DEFAULT_GRACE + 15


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    copy = _copy_with_local_binary(tmp_path)
    result = subprocess.run(
        [ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert str(copy) not in result.stderr, result.stderr  # no warning about any line


@needs_analyze
def test_exposure_level_is_low(tmp_path: Path) -> None:
    copy = _copy_with_local_binary(tmp_path)
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--threshold=25", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "unrecognized option" in result.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level for mugaika.service: 1." in result.stdout
