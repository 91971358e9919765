"""Run ``mugaika serve`` as a real subprocess and find the port it bound."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_LISTENING = re.compile(r"listening address=([\d.]+):(\d+)")


class GatewayProcess:
    """``mugaika serve`` in its own process group, listening on a free port."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        # The admin and metrics listeners default to fixed ports (8025, 9125): tests running in
        # parallel (or beside a real gateway) must never collide on them, so they are off
        # unless a test asks for them.
        defaults = [
            option
            for flag in ("--admin-listen", "--metrics-listen")
            if flag not in args
            for option in (flag, "off")
        ]
        self.args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--listen",
            "127.0.0.1:0",
            *defaults,
            *args,
        ]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._bound = threading.Event()

    def start(self, timeout: float = 60) -> GatewayProcess:
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._bound.wait(timeout) or not self.port:
            self.kill()
            raise RuntimeError("gateway did not start:\n" + "\n".join(self.lines))
        return self

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
                self._bound.set()
        self._bound.set()  # exited: stop waiting; start() sees port 0

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the whole process group (gateway and workers), as a power cut would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
