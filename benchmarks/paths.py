"""The relay paths `benchmarks/run` compares, each a process tree on loopback before a smtp-sink.

- ``direct``: smtp-source straight into smtp-sink (the machine's floor, no relay);
- ``amavis-pass`` / ``amavis-hardened``: Debian's amavisd-new with 2 servers, configured in a
  private directory (never /etc/amavis, never the system service): plain pass-through (no
  decoding, no banned or header checks), and hardened (parts decoded, banned file types and
  double extensions, bad headers checked, banned mail quarantined to a local directory);
- ``bare``: aiosmtpd → aiosmtplib in one process (``bare_relay.py``): what Python's SMTP
  libraries cost without any content work;
- ``mugaika``: ``serve_for_bench.py`` with the shipped default policy and default workers.

Every path forwards to a smtp-sink of its own, so the sink's counter per path is the
zero-loss check.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

PATH_LABELS = {
    "direct": "smtp-source → smtp-sink direct",
    "amavis-pass": "amavisd-new pass-through, 2 servers",
    "amavis-hardened": "amavisd-new hardened (banned types, decoders, quarantine)",
    "bare": "bare aiosmtpd → aiosmtplib relay, 1 process",
    "mugaika": "Mugaika, default policy",
    "mugaika-1w": "Mugaika, default policy, 1 worker",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if connection.recv(512).startswith(b"220"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not listening on {port} after {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-800:]
    except OSError:
        return ""


@dataclass
class Sink:
    """smtp-sink with its running counter (``-c``: updated as each "." is received)."""

    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        user = ["-u", "postfix"] if os.geteuid() == 0 else []
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                ["smtp-sink", "-c", *user, f"127.0.0.1:{self.port}", "512"],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_listening(self.port, self.process, 10, self.log)

    def count(self) -> int:
        counts = re.findall(rb"mesg=(\d+)", self.log.read_bytes())
        return max((int(c) for c in counts), default=0)

    def settled_count(self, expected: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while (count := self.count()) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return count

    def stop(self) -> None:
        stop(self.process)


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class RelayPath:
    """One relay path: where smtp-source connects and the processes to measure."""

    name: str
    work: Path
    sink: Sink
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        return PATH_LABELS[self.name]

    @property
    def root_pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.sink.start()
        if self.name == "direct":
            self.port = self.sink.port
            return
        self.port = free_port()
        self.work.mkdir(parents=True, exist_ok=True)
        log = self.work / "server.log"
        command, timeout = self._command()
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_listening(self.port, self.process, timeout, log)

    def _command(self) -> tuple[list[str], float]:
        downstream = f"127.0.0.1:{self.sink.port}"
        if self.name.startswith("amavis"):
            config = write_amavis_config(
                self.work, self.port, self.sink.port, hardened=self.name == "amavis-hardened"
            )
            return [amavisd_program(), "-c", str(config), "foreground"], 60
        if self.name == "bare":
            script = BENCHMARKS / "bare_relay.py"
            return [sys.executable, str(script), f"127.0.0.1:{self.port}", downstream], 20
        script = BENCHMARKS / "serve_for_bench.py"
        command = [sys.executable, str(script), "--listen", f"127.0.0.1:{self.port}"]
        command += ["--downstream", downstream, "--data-dir", str(self.work / "data")]
        if self.name == "mugaika-1w":
            command += ["--workers", "1"]
        return command, 60

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # amavisd's children and Mugaika's workers are in the session we started.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.sink.stop()


def amavisd_program() -> str:
    return shutil.which("amavisd") or shutil.which("amavisd-new") or "/usr/sbin/amavisd"


# amavisd.conf-default's banned names: executables, double extensions, Windows class ids.
BANNED = r"""
$banned_filename_re = new_RE(
  qr'^\.(exe-ms|dll)$',
  [ qr'^\.(rpm|cpio|tar)$' => 0 ],
  qr'.\.(pif|scr)$'i,
  qr'^application/x-msdownload$'i,
  qr'^application/x-msdos-program$'i,
  qr'^application/hta$'i,
  qr'^(?!cid:).*\.[^./]*[A-Za-z][^./]*\.\s*(exe|vbs|pif|scr|bat|cmd|com|cpl|dll)[.\s]*$'i,
  qr'\{[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\}?\s*$'i,
  qr'.\.(exe|vbs|pif|scr|cpl|bat|cmd|com|js|jse|hta|lnk|wsf|wsh|ps1|msi|iso|img)$'i,
);
"""


def write_amavis_config(work: Path, port: int, sink_port: int, hardened: bool) -> Path:
    """A private amavisd.conf: loopback only, its own home, no antivirus or spam scanner.

    amavisd refuses a configuration whose directory its user may write, so the file lives in
    a root-owned ``conf/`` beside the amavis-owned home.
    """
    home = work / "home"
    for directory in (home, home / "tmp", home / "db", home / "quarantine"):
        directory.mkdir(parents=True, exist_ok=True)
    conf = work / "conf"
    conf.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("amavis")
        for directory in (home, home / "tmp", home / "db", home / "quarantine"):
            os.chown(directory, user.pw_uid, user.pw_gid)
        work.chmod(0o711)  # mkdtemp's 0700 would keep the amavis user out of its home
    mode = (
        f"""
@bypass_banned_checks_maps = (0);
@bypass_header_checks_maps = (0);
$bypass_decode_parts = 0;
$final_banned_destiny = D_DISCARD;
$final_bad_header_destiny = D_PASS;
$banned_files_quarantine_method = 'local:banned-%m';
$QUARANTINEDIR = "$MYHOME/quarantine";
{BANNED}"""
        if hardened
        else """
@bypass_banned_checks_maps = (1);
@bypass_header_checks_maps = (1);
$bypass_decode_parts = 1;
"""
    )
    text = f"""use strict;
$MYHOME = '{home}';
$TEMPBASE = "$MYHOME/tmp";
$db_home = "$MYHOME/db";
$pid_file = "$MYHOME/amavisd.pid";
$lock_file = "$MYHOME/amavisd.lock";
$daemon_user = 'amavis'; $daemon_group = 'amavis';
$max_servers = 2;
$inet_socket_bind = '127.0.0.1';
$inet_socket_port = {port};
$unix_socketname = undef;
$forward_method = 'smtp:[127.0.0.1]:{sink_port}';
$notify_method = $forward_method;
@bypass_virus_checks_maps = (1);
@bypass_spam_checks_maps = (1);
@av_scanners = (); @av_scanners_backup = ();
$enable_db = 0;
$enable_dkim_verification = 0;
$do_syslog = 0; $LOGFILE = "$MYHOME/amavis.log"; $log_level = 0;
$mydomain = 'example.lg.jp'; $myhostname = 'bench.example.lg.jp';
@mynetworks = qw(127.0.0.0/8);
@local_domains_maps = (['.example.lg.jp']);
{mode}
1;
"""
    path = conf / "amavisd.conf"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    conf.chmod(0o755)
    return path


def install_debian_packages() -> list[str]:
    """postfix (smtp-source, smtp-sink) and amavisd-new, when root with apt-get; returns notes."""
    notes: list[str] = []
    missing = []
    if not shutil.which("smtp-source"):
        missing.append("postfix")
    if not (shutil.which("amavisd") or Path("/usr/sbin/amavisd").exists()):
        missing.append("amavisd-new")
    if not missing:
        return notes
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return [f"not root with apt-get: {' '.join(missing)} missing, those paths skipped"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=environment,
    )
    notes.append(f"installed from Debian: {' '.join(missing)}")
    return notes
