"""A private ClamAV daemon for tests: its own configuration, socket and signature database.

Signatures cannot be downloaded here (no freshclam), and a test must not depend on the
machine's clamd anyway. ``PrivateClamd`` writes a database of its own into a temporary
directory and starts Debian's ``clamd`` in the foreground on a Unix socket there (and on a
free loopback TCP port):

- ``Mugaika.Test.EICAR``: the EICAR test file as a body signature (``.ndb``, anywhere in the
  object), and ``Mugaika.Test.EICAR-Hash`` as an MD5 hash signature (``.hdb``) of the file;
- ``Mugaika.Test.Marker``: a test-only string that no real file contains (``TEST_MARKER``),
  so a detection cannot come from anything but this database.

clamd names unofficial signatures with a ``.UNOFFICIAL`` suffix. Loading this database takes
about 0.2 s and 16 MB (the official ones take a minute and a gigabyte), so each xdist worker
starts its own (``clamd_server`` in ``tests/antivirus/conftest.py``), and a test that kills
clamd starts one for itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
CLAMD_MISSING = "clamd (Debian clamav-daemon) is not installed; ./run-tests installs it as root"

# The EICAR anti-virus test file (https://www.eicar.org): 68 printable bytes every engine
# detects; harmless. Written split so that no scanner flags this source file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
TEST_MARKER = b"MUGAIKA-TEST-ONLY-MALWARE-MARKER-6b1f0e2c"
EICAR_NAME = "Mugaika.Test.EICAR.UNOFFICIAL"
MARKER_NAME = "Mugaika.Test.Marker.UNOFFICIAL"


def clamd_installed() -> bool:
    return Path(CLAMD).exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateClamd:
    """``with PrivateClamd(tmp) as clamd: clamd.unix_address ...``; stopped on exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket_path = directory / "clamd.sock"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def unix_address(self) -> str:
        return f"unix:{self.socket_path}"

    @property
    def tcp_address(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def _write_database(self) -> Path:
        database = self.directory / "db"
        database.mkdir(parents=True, exist_ok=True)
        (database / "mugaika-test.ndb").write_text(
            f"Mugaika.Test.EICAR:0:*:{EICAR.hex()}\nMugaika.Test.Marker:0:*:{TEST_MARKER.hex()}\n"
        )
        (database / "mugaika-test.hdb").write_text(
            f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Mugaika.Test.EICAR-Hash\n"
        )
        return database

    def start(self, timeout: float = 30.0) -> PrivateClamd:
        self.directory.mkdir(parents=True, exist_ok=True)
        database = self._write_database()
        self.port = free_port()
        config = self.directory / "clamd.conf"
        config.write_text(
            f"LocalSocket {self.socket_path}\n"
            f"TCPSocket {self.port}\nTCPAddr 127.0.0.1\n"
            f"DatabaseDirectory {database}\n"
            f"TemporaryDirectory {self.directory}\n"
            f"LogFile {self.directory / 'clamd.log'}\n"
            "Foreground yes\nStreamMaxLength 30M\nSelfCheck 3600\n"
        )
        self.process = subprocess.Popen(
            [CLAMD, f"--config-file={config}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "clamd.log").read_text(errors="replace")
                raise RuntimeError(f"clamd exited with {self.process.returncode}:\n{log}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("clamd did not answer PING in time")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(1)
                probe.connect(str(self.socket_path))
                probe.sendall(b"zPING\0")
                return probe.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: what an OOM kill or a crash does to clamd mid-scan."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> PrivateClamd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KillOnData:
    """A Unix-socket relay in front of a ``PrivateClamd`` that SIGKILLs clamd as soon as the
    first scan has sent this many bytes: clamd dies mid-scan, deterministically."""

    def __init__(self, clamd: PrivateClamd, path: Path, after_bytes: int = 1) -> None:
        self.clamd = clamd
        self.path = path
        self.after_bytes = after_bytes
        self.killed = threading.Event()
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"unix:{self.path}"

    def __enter__(self) -> KillOnData:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX) as upstream:
            try:
                upstream.connect(str(self.clamd.socket_path))
            except OSError:
                return  # clamd is dead already: the client sees the connection close
            threading.Thread(target=self._back, args=(upstream, client), daemon=True).start()
            seen = 0
            client.settimeout(10)
            while True:
                try:
                    data = client.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                seen += len(data)
                try:
                    upstream.sendall(data)
                except OSError:
                    return
                if seen >= self.after_bytes and not self.killed.is_set():
                    self.clamd.kill()
                    self.killed.set()
                    return

    @staticmethod
    def _back(upstream: socket.socket, client: socket.socket) -> None:
        """clamd's replies to the client, until either side closes."""
        while True:
            try:
                data = upstream.recv(65536)
                if not data:
                    return
                client.sendall(data)
            except OSError:
                return
