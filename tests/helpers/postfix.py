"""A private Postfix instance (``postfix -c DIR``) for integration tests.

It plays the internet-side MTA of a real deployment: it accepts mail for the relay domains on
its own port and hands it to Mugaika through a dedicated ``smtp`` transport with XFORWARD, the
configuration documented in ``deploy/postfix/README.md``. Runs as root (Postfix's master needs
it); queue, data and log live in a temporary directory. Postfix logs to ``maillog_file``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"

MASTER_CF = """\
{listen} inet n - n - - smtpd
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
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{mugaika_master_cf}
"""


def deploy_snippet(name: str) -> str:
    """A file from deploy/postfix/, so the tests exercise exactly what the docs tell users."""
    return (Path(__file__).resolve().parents[2] / "deploy" / "postfix" / name).read_text()


class PostfixInstance:
    def __init__(self, root: Path, listen_port: int, gateway_port: int, relay_domains: str) -> None:
        self.root = root
        self.listen_port = listen_port
        self.etc = root / "etc"
        self.log = root / "maillog"
        self.gateway_port = gateway_port
        self.relay_domains = relay_domains

    def _main_cf(self) -> str:
        snippet = deploy_snippet("main.cf.snippet").replace("2525", str(self.gateway_port))
        snippet = snippet.replace("city-a.example.lg.jp city-b.example.lg.jp", self.relay_domains)
        return f"""\
compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.internet.test
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
{snippet}"""

    def start(self) -> PostfixInstance:
        for sub in ("etc", "queue", "data"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix")
        (self.etc / "main.cf").write_text(self._main_cf())
        master = MASTER_CF.format(
            listen=f"127.0.0.1:{self.listen_port}",
            mugaika_master_cf=deploy_snippet("master.cf.snippet"),
        )
        (self.etc / "master.cf").write_text(master)
        self._postfix("check")
        self._postfix("start")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.log.exists() and "daemon started" in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not start:\n{self.maillog()}")

    def _postfix(self, command: str) -> None:
        result = subprocess.run(
            [POSTFIX, "-c", str(self.etc), command], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"postfix {command} failed: {result.stderr}\n{self.maillog()}")

    def flush(self) -> None:
        self._postfix("flush")

    def maillog(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], capture_output=True, timeout=60)

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_root() -> bool:
    return os.geteuid() == 0
