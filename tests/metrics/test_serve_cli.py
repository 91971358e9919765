"""``mugaika serve --metrics-listen`` as an operator runs it: a real process, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.metrics.conftest import http_get, wait_until

MUGAIKA = Path(sys.executable).with_name("mugaika")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env() -> dict[str, str]:
    # Only flags configure these gateways: drop MUGAIKA_* variables of the test run.
    return {k: v for k, v in os.environ.items() if not k.startswith("MUGAIKA_")}


def _answers(url: str, path: str) -> bool:
    try:
        return http_get(url, path).status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_serve_exposes_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    smtp_port, metrics_port = _free_port(), _free_port()
    url = f"http://127.0.0.1:{metrics_port}"
    argv = [
        str(MUGAIKA),
        "serve",
        "--listen",
        f"127.0.0.1:{smtp_port}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    proc = subprocess.Popen(argv, env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: _answers(url, "/readyz"), timeout=60)
        metrics = http_get(url, "/metrics").text
        assert 'mugaika_build_info{python="' in metrics
        assert 'mugaika_readiness_up{check="downstream"} 1.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert f"metrics listening address=http://127.0.0.1:{metrics_port}" in stderr


@pytest.mark.slow
def test_metrics_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                str(MUGAIKA),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(tmp_path / "data"),
            ],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"metrics listener 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
