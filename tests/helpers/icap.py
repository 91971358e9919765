"""A private c-icap (Debian ``c-icap`` with ``libc-icap-mod-virus-scan``) for tests.

Its own configuration, pid file, command socket and logs in a temporary directory; the
``virus_scan`` service scans through ``clamd_mod`` with a ``PrivateClamd`` (so the same test
signatures), and the ``echo`` service is loaded too. c-icap cannot listen on port 0, so a
free loopback port is picked first (and picked again if another process took it meanwhile).
It starts in well under a second.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers.clamd import PrivateClamd, free_port

C_ICAP = shutil.which("c-icap") or "/usr/bin/c-icap"
C_ICAP_MISSING = (
    "c-icap (Debian c-icap, libc-icap-mod-virus-scan) is not installed; ./run-tests installs it"
)
_MODULES = Path("/usr/lib/x86_64-linux-gnu/c_icap")


def c_icap_installed() -> bool:
    return Path(C_ICAP).exists() and (_MODULES / "virus_scan.so").exists()


class PrivateCIcap:
    """``with PrivateCIcap(tmp, clamd) as icap: icap.url("avscan")``."""

    def __init__(self, directory: Path, clamd: PrivateClamd) -> None:
        self.directory = directory
        self.clamd = clamd
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, service: str) -> str:
        return f"icap://127.0.0.1:{self.port}/{service}"

    def _config(self) -> Path:
        d = self.directory
        config = d / "c-icap.conf"
        config.write_text(
            f"PidFile {d / 'c-icap.pid'}\nCommandsSocket {d / 'c-icap.ctl'}\n"
            "Timeout 30\nStartServers 1\nMaxServers 2\nMinSpareThreads 2\nMaxSpareThreads 4\n"
            f"ThreadsPerChild 4\nPort 127.0.0.1:{self.port}\nTmpDir {d}\n"
            "MaxMemObject 131072\nDebugLevel 1\n"
            f"ModulesDir {_MODULES}\nServicesDir {_MODULES}\n"
            "TemplateDir /usr/share/c_icap/templates/\nTemplateDefaultLanguage en\n"
            "LoadMagicFile /etc/c-icap/c-icap.magic\n"
            f"ServerLog {d / 'server.log'}\nAccessLog {d / 'access.log'}\n"
            "Service echo srv_echo.so\n"
            "Module common clamd_mod.so\n"
            f"clamd_mod.ClamdSocket {self.clamd.socket_path}\n"
            "Service antivirus_module virus_scan.so\n"
            "ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple\n"
            "virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE\n"
            "virus_scan.SendPercentData 0\nvirus_scan.MaxObjectSize 100M\n"
        )
        return config

    def start(self, timeout: float = 20.0) -> PrivateCIcap:
        self.directory.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [C_ICAP, "-N", "-f", str(self._config())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if self._answers():
                    return self
                time.sleep(0.05)
            self.stop()
        log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"c-icap did not start:\n{log}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                probe.sendall(
                    f"OPTIONS icap://127.0.0.1:{self.port}/echo ICAP/1.0\r\n"
                    "Host: 127.0.0.1\r\nEncapsulated: null-body=0\r\n\r\n".encode()
                )
                return probe.recv(64).startswith(b"ICAP/1.0 200")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # c-icap runs its children in our new session: end the whole group.
        import os

        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def __enter__(self) -> PrivateCIcap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
