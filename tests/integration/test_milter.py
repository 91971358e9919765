"""``mugaika milter`` behind a real Postfix's ``smtpd_milters`` (deploy/postfix/milter.main.cf).

internet client (127.0.0.5) → Postfix smtpd ⇄ mugaika milter (a real process) → queue →
virtual(8) → Maildir

The sender gets the verdict in the SMTP session: sanitized mail is queued by Postfix with the
milter's headers and body, held mail is accepted and dropped by Postfix (the quarantine has
it), a policy reject is Postfix's 5xx, and a gateway that dies mid-message makes Postfix
tempfail (``milter_default_action = tempfail``): nothing lost, nothing unsanitized.
"""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.postfix import PostfixInstance, deploy_snippet, free_port, is_root, wait_until
from tests.integration.mails import (
    DEFANGED,
    INTERNET_CLIENT,
    INTERNET_HELO,
    LINK,
    link_mail,
    mugaika,
    program_mail,
)

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.slow,
    pytest.mark.skipif(not is_root(), reason="a private Postfix master must run as root"),
]

ROOT = Path(__file__).resolve().parents[2]


class MilterProcess:
    """``mugaika milter`` in its own process group (the gateway and its workers)."""

    def __init__(self, port: int, data_dir: Path, config: Path) -> None:
        self.port = port
        self.args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "milter",
            "--listen",
            f"inet:127.0.0.1:{port}",
            "--config",
            str(config),
            "--data-dir",
            str(data_dir),
            "--admin-listen",
            "off",
            "--metrics-listen",
            "off",
        ]
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> MilterProcess:
        self.lines = []
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            cwd=ROOT,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.process is not None
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                if "milter listening" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or self.process.poll() is not None:
            raise RuntimeError("milter did not start:\n" + "\n".join(self.lines))
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or a power cut would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class Setup:
    def __init__(self, postfix: PostfixInstance, port: int, milter: MilterProcess, data: Path):
        self.postfix = postfix
        self.port = port
        self.milter = milter
        self.data_dir = data

    def delivered(self, message_id: str) -> list:
        return [m for m in self.postfix.delivered() if m["Message-ID"] == message_id]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    smtpd_port, milter_port = free_port(), free_port()
    data_dir = tmp_path_factory.mktemp("milter")
    config = data_dir / "mugaika.yaml"
    # A sender the policy rejects outright (a deliberate 5xx during the session).
    policies = data_dir / "policies"
    policies.mkdir()
    (policies / "site.yaml").write_text(
        "extends: lgwan-base\n"
        "rules:\n"
        "  - name: known-bad-sender\n"
        "    when: {envelope_from: {domains: [blocked.example]}}\n"
        "    reject_text: Mail from this sender is refused\n"
        "    action: reject\n"
    )
    config.write_text(f"workers: {{count: 1}}\npolicy: {{name: site, dir: {policies}}}\n")
    milter = MilterProcess(milter_port, data_dir, config).start()
    postfix = PostfixInstance(
        "milter",
        main_cf=deploy_snippet("milter.main.cf", p10029=milter_port),
        master_cf=f"127.0.0.1:{smtpd_port} inet n - n - - smtpd\n",
        mailbox_domains="example.lg.jp",
    )
    try:
        with postfix:
            yield Setup(postfix, smtpd_port, milter, data_dir)
    finally:
        milter.kill()


def _send(port: int, message: bytes, sender: str = "someone@internet.example") -> tuple:
    with smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(INTERNET_CLIENT, 0)) as c:
        c.ehlo(INTERNET_HELO)
        c.mail(sender)
        c.rcpt("user@example.lg.jp")
        return c.data(message)


def test_sanitized_message_replaces_the_original(setup: Setup) -> None:
    code, text = _send(setup.port, link_mail("<milter-1@internet.example>"))
    assert code == 250, text
    assert wait_until(lambda: setup.delivered("<milter-1@internet.example>")), (
        setup.postfix.maillog()
    )
    [delivered] = setup.delivered("<milter-1@internet.example>")
    assert DEFANGED in delivered.get_body(("plain",)).get_content()
    raw = delivered.as_bytes()
    assert LINK.encode() not in raw
    assert delivered["X-Mugaika-Verdict"] in ("deliver", "tag")
    assert delivered["Subject"] == "資料のご案内"
    # Our Received names the internet client the MTA reported in the milter connect event.
    assert any(
        r.startswith(f"from {INTERNET_HELO} (unknown [{INTERNET_CLIENT}])") and "Mugaika" in r
        for r in delivered.get_all("Received")
    )


def test_held_message_is_accepted_dropped_and_listed(setup: Setup) -> None:
    code, text = _send(setup.port, program_mail("<milter-held@internet.example>"))
    assert code == 250, text
    assert wait_until(lambda: "milter-discard" in setup.postfix.maillog()), setup.postfix.maillog()
    listed = mugaika(
        "quarantine",
        "list",
        "--json",
        "--data-dir",
        str(setup.data_dir),
        "--search",
        "milter-held@internet.example",
    )
    [item] = json.loads(listed.stdout)
    assert item["status"] == "held"
    time.sleep(1)
    assert setup.delivered("<milter-held@internet.example>") == []


def test_policy_reject_is_answered_in_the_session(setup: Setup) -> None:
    code, text = _send(
        setup.port, link_mail("<milter-rej@internet.example>"), sender="x@blocked.example"
    )
    assert (code, text) == (550, b"5.7.1 Mail from this sender is refused")
    assert setup.delivered("<milter-rej@internet.example>") == []


def test_gateway_killed_mid_message_tempfails_and_nothing_is_lost(setup: Setup) -> None:
    message = link_mail("<milter-kill@internet.example>")
    head, _, _ = message.partition(b"\r\n\r\n")
    body = b"\r\n".join(b"line %d of a long message" % n for n in range(20000)) + b"\r\n"
    message = head + b"\r\n\r\n" + body
    with socket.create_connection(
        ("127.0.0.1", setup.port), source_address=(INTERNET_CLIENT, 0)
    ) as raw:
        smtp = raw.makefile("rwb")

        def command(line: bytes) -> bytes:
            smtp.write(line + b"\r\n")
            smtp.flush()
            reply = b""
            while True:
                part = smtp.readline()
                reply += part
                if part[3:4] != b"-":
                    return reply

        smtp.readline()
        command(b"EHLO " + INTERNET_HELO.encode())
        assert command(b"MAIL FROM:<someone@internet.example>").startswith(b"250")
        assert command(b"RCPT TO:<user@example.lg.jp>").startswith(b"250")
        assert command(b"DATA").startswith(b"354")
        half = len(message) // 2
        smtp.write(message[:half])
        smtp.flush()
        setup.milter.kill()  # mid-message: Postfix is holding the session open
        smtp.write(message[half:] + b".\r\n")
        smtp.flush()
        final = smtp.readline()
    assert final.startswith(b"451 4."), final  # milter_default_action = tempfail
    assert re.search(rb"4\.\d\.\d", final)
    time.sleep(1)
    assert setup.delivered("<milter-kill@internet.example>") == []
    assert setup.postfix.queue_is_empty()
    # The sender retries once the gateway is back: it arrives, sanitized, once.
    setup.milter.start()
    code, text = _send(setup.port, link_mail("<milter-kill@internet.example>"))
    assert code == 250, text
    assert wait_until(lambda: setup.delivered("<milter-kill@internet.example>"))
    [delivered] = setup.delivered("<milter-kill@internet.example>")
    assert DEFANGED in delivered.get_body(("plain",)).get_content()
