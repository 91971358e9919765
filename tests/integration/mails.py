"""The mails the deployment tests send: one to sanitize, one to hold, and how to send them.

``INTERNET_CLIENT`` is a loopback address other than 127.0.0.1 (Linux routes all of
127.0.0.0/8 to lo): the test client binds it, so the "internet client" every hop must name is
distinguishable from the hops themselves, which all talk from 127.0.0.1.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

from tests.helpers.hostile import pe_bytes

INTERNET_CLIENT = "127.0.0.5"
INTERNET_HELO = "sender-mta.example"
LINK = "https://example.com/docs/invoice"
DEFANGED = "hxxps://example[.]com/docs/invoice"


def link_mail(message_id: str, to: str = "user@example.lg.jp") -> bytes:
    """Plain text with a live link: delivered with the link defanged."""
    msg = EmailMessage()
    msg["From"] = "someone@internet.example"
    msg["To"] = to
    msg["Subject"] = "資料のご案内"
    msg["Message-ID"] = message_id
    msg.set_content(f"資料は {LINK} をご覧ください。\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def program_mail(message_id: str, to: str = "user@example.lg.jp") -> bytes:
    """A Windows program disguised as a PDF: the default policy holds it."""
    msg = EmailMessage()
    msg["From"] = "someone@internet.example"
    msg["To"] = to
    msg["Subject"] = "請求書"
    msg["Message-ID"] = message_id
    msg.set_content("請求書を添付します。\n")
    msg.add_attachment(
        pe_bytes(), maintype="application", subtype="pdf", filename="invoice.pdf.exe"
    )
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def submit(port: int, message: bytes, rcpt: str = "user@example.lg.jp") -> None:
    """Send from the internet client's address to a Postfix smtpd on ``port``."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(INTERNET_CLIENT, 0)) as c:
        c.ehlo(INTERNET_HELO)
        c.sendmail("someone@internet.example", [rcpt], message)


def mugaika(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ``mugaika`` command of this checkout, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
        cwd=Path(__file__).resolve().parents[2],
    )
