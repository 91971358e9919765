"""Private Postfix instances (``postfix -c DIR``) for integration tests.

Each instance has its own configuration directory, queue, data directory and log under one
temporary directory, listens on loopback ports only, and delivers its local recipients with
``virtual(8)`` into one Maildir (``mailbox``), so a test reads what a real LGWAN-side mail
server would have stored. The ``main.cf`` and ``master.cf`` parts that a deployment needs come
from ``deploy/postfix/`` verbatim (ports substituted), so the tests exercise exactly what the
docs tell operators; the rest (queue paths, fast retries, logging to a file) is test plumbing.

Runs as root (Postfix's master needs it). Postfix logs to ``maillog_file``.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "postfix"

# The daemons every instance runs; services that listen are added per instance.
BASE_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAILBOX_UID = 65534  # nobody: virtual(8) refuses uids below virtual_minimum_uid (100)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def deploy_snippet(name: str, **ports: int) -> str:
    """A file from deploy/postfix/ with its documented ports replaced by test ports.

    ``ports`` maps the documented port (``p2525=...``) to the port the test uses.
    """
    text = (DEPLOY / name).read_text()
    for documented, actual in ports.items():
        text = re.sub(rf"(?<=:){documented.removeprefix('p')}\b", str(actual), text)
    return text


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


class PostfixInstance:
    """One private Postfix: ``main_cf``/``master_cf`` are appended to the test base."""

    def __init__(
        self,
        name: str,
        main_cf: str = "",
        master_cf: str = "",
        mailbox_domains: str = "",
    ) -> None:
        # Postfix's own daemons run as the postfix user: its directory must be reachable for
        # it, which pytest's tmp_path (under a 0700 directory) is not.
        self.root = Path(tempfile.mkdtemp(prefix=f"mugaika-postfix-{name}-"))
        self.root.chmod(0o755)
        self.name = name
        self.etc = self.root / "etc"
        self.log = self.root / "maillog"
        self.mailbox = self.root / "mail" / "mailbox"
        self.main_cf = main_cf
        self.master_cf = master_cf
        self.mailbox_domains = mailbox_domains

    def _base_main_cf(self) -> str:
        mailbox = ""
        if self.mailbox_domains:
            # Every recipient of these domains lands in one Maildir (trailing slash).
            mailbox = f"""\
virtual_mailbox_domains = {self.mailbox_domains}
virtual_mailbox_base = {self.root}/mail
virtual_mailbox_maps = static:mailbox/
virtual_uid_maps = static:{MAILBOX_UID}
virtual_gid_maps = static:{MAILBOX_UID}
"""
        return f"""\
compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.name}.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {self.log}
maillog_file_prefixes = {self.root}
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
# Retry quickly in tests (the defaults wait minutes).
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
{mailbox}"""

    def start(self) -> PostfixInstance:
        for sub in ("etc", "queue", "data", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix")
        os.chown(self.root / "mail", MAILBOX_UID, MAILBOX_UID)
        (self.etc / "main.cf").write_text(self._base_main_cf() + self.main_cf)
        (self.etc / "master.cf").write_text(BASE_MASTER_CF + self.master_cf)
        self.postfix("check")
        started = self.maillog().count("daemon started")
        self.postfix("start")
        if not wait_until(lambda: self.maillog().count("daemon started") > started, 20):
            raise RuntimeError(f"postfix {self.name} did not start:\n{self.maillog()}")
        return self

    def postfix(self, command: str) -> None:
        result = subprocess.run(
            [POSTFIX, "-c", str(self.etc), command], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"postfix {command} failed: {result.stderr}\n{self.maillog()}")

    def flush(self) -> None:
        self.postfix("flush")

    def maillog(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def queue_is_empty(self) -> bool:
        result = subprocess.run(
            ["/usr/sbin/postqueue", "-c", str(self.etc), "-j"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.returncode == 0 and result.stdout.strip() == ""

    def delivered(self) -> list[EmailMessage]:
        """The messages in the Maildir, oldest first."""
        new = self.mailbox / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for path in files
        ]

    def delivered_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.delivered()]

    def stop(self) -> None:
        """``postfix stop``: the master and its daemons exit; the queue stays on disk."""
        subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], capture_output=True, timeout=60)
        wait_until(lambda: not self.running(), 10)

    def running(self) -> bool:
        status = subprocess.run(
            [POSTFIX, "-c", str(self.etc), "status"], capture_output=True, timeout=30
        )
        return status.returncode == 0

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostfixInstance:
        try:
            return self.start()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc: object) -> None:
        self.remove()


def is_root() -> bool:
    return os.geteuid() == 0


def have_postfix() -> bool:
    return Path(POSTFIX).exists()
