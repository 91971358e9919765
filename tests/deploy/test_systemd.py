"""The systemd units parse, are hardened, and drain longer than the gateway's grace period.

``mugaika.service`` runs ``serve``; ``mugaika-milter.service`` runs ``milter`` with the same
sandbox and no capability at all (its port is unprivileged).

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

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = SYSTEMD / "mugaika.service"
MILTER_UNIT = SYSTEMD / "mugaika-milter.service"
both_units = pytest.mark.parametrize("unit", [UNIT, MILTER_UNIT], ids=["serve", "milter"])
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _service(unit: Path = UNIT) -> dict[str, list[str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    # Repeated keys (SystemCallFilter twice) are legal in unit files: collect every value.
    values: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
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


def _copy_with_local_binary(tmp_path: Path, unit: Path = UNIT) -> Path:
    mugaika = Path(sys.executable).with_name("mugaika")
    assert mugaika.exists(), "the mugaika console script of this checkout"
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/mugaika/venv/bin/mugaika", str(mugaika)))
    return copy


@both_units
def test_hardening_settings(unit: Path) -> None:
    service = _service(unit)
    capabilities = "CAP_NET_BIND_SERVICE" if unit == UNIT else ""
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/mugaika",
        "KillSignal": "SIGTERM",
        "KillMode": "mixed",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "User": "mugaika",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": capabilities,
        "AmbientCapabilities": capabilities,
        "ProtectHome": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert "--data-dir /var/lib/mugaika" in service["ExecStart"][0]


def test_milter_unit_runs_the_milter_the_postfix_snippet_names() -> None:
    exec_start = _service(MILTER_UNIT)["ExecStart"][0].split()
    assert exec_start[1] == "milter"
    listen = exec_start[exec_start.index("--listen") + 1]
    snippet = (SYSTEMD.parent / "postfix" / "milter.main.cf").read_text()
    assert f"smtpd_milters = {listen}" in snippet
    # Both units on one host: the milter's metrics port must not collide with serve's.
    assert exec_start[exec_start.index("--metrics-listen") + 1] != "127.0.0.1:9125"


@both_units
def test_stop_timeout_exceeds_the_drain_grace(unit: Path) -> None:
    timeout = _service(unit)["TimeoutStopSec"][0]
    assert timeout.isdigit()
    # Drain (DEFAULT_GRACE) plus worker and side-service shutdown must fit before SIGKILL.
    assert int(timeout) >= DEFAULT_GRACE + 15


@needs_analyze
@both_units
def test_systemd_analyze_verify(tmp_path: Path, unit: Path) -> None:
    copy = _copy_with_local_binary(tmp_path, unit)
    result = subprocess.run(
        [ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert str(copy) not in result.stderr, result.stderr  # no warning about any line


@needs_analyze
@both_units
def test_exposure_level_is_low(tmp_path: Path, unit: Path) -> None:
    copy = _copy_with_local_binary(tmp_path, unit)
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
    assert f"Overall exposure level for {unit.name}: 1." in result.stdout
