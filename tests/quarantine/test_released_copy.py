"""A released message's ``X-Mugaika-*`` fields describe the released message (issue 12, item 7).

Before, a released sanitized copy still said ``X-Mugaika-Verdict: quarantine`` and
``stripped=0`` although its held attachment had been removed, and a released original carried
whatever ``X-Mugaika-*`` fields its sender wrote. Now every ``X-Mugaika-*`` field of the stored
bytes is dropped and the release writes its own: ``Verdict: released``, ``Released-Target``,
the counts of what was done to this copy (``stripped`` counts every attachment that is not in
it), the reference and the findings of the received message.

The real pipeline with the shipped default policy makes the held item; the release goes to a
real SMTP sink; the delivered bytes are parsed with Python's ``email`` and compared with the
original part by part.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
from email.message import Message

import pytest

from gateway.delivery import SmtpDownstream
from gateway.report import Verdict
from quarantine.release import release
from quarantine.sql import SqlStore
from quarantine.store import HoldRequest
from quarantine.users import Actor
from tests.helpers import pipeline
from tests.helpers.smtp_sink import SmtpSink

ADMIN = Actor("alice", "superadmin")
PROGRAM = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
MESSAGE = (
    (
        b"From: Sender <soumu@example.com>\r\n"
        b"To: tanaka@city.example.lg.jp\r\n"
        b"Subject: invoice\r\n"
        b"Message-ID: <released-copy@example.com>\r\n"
        b"X-Mugaika-Verdict: deliver\r\n"  # forged by the sender
        b"X-Mugaika-Actions: html=0; urls=0; rebuilt=0; rasterized=0; stripped=0\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>Please see <a href="https://evil.example/pay">the invoice</a>.</p>\r\n'
        b'--b\r\nContent-Type: application/pdf; name="invoice.pdf.exe"\r\n'
        b'Content-Disposition: attachment; filename="invoice.pdf.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    + base64.encodebytes(PROGRAM).replace(b"\n", b"\r\n")
    + b"--b--\r\n"
)


def attachments(message: Message) -> list[str]:
    return [p.get_filename() or "" for p in message.walk() if p.get_filename()]


def actions(message: Message) -> dict[str, int]:
    [value] = message.get_all("X-Mugaika-Actions")
    return {k.strip(): int(v) for k, v in (p.split("=") for p in value.split(";"))}


@pytest.fixture
def item(store: SqlStore) -> str:
    outcome = pipeline.run(MESSAGE, recipients=("tanaka@city.example.lg.jp",))
    assert outcome.verdict == Verdict.QUARANTINE
    assert outcome.message is not None
    stored = email.message_from_bytes(outcome.message, policy=email.policy.compat32)
    assert stored["X-Mugaika-Verdict"] == "quarantine"  # what the gateway decided on arrival
    store.hold(
        HoldRequest(
            outcome.report.reference_id,
            "quarantined",
            pipeline.envelope(("tanaka@city.example.lg.jp",)),
            MESSAGE,
            outcome.report,
            outcome.message,
        )
    )
    return outcome.report.reference_id


def delivered(store: SqlStore, item_id: str, target: str) -> Message:
    with SmtpSink() as sink:
        downstream = SmtpDownstream(sink.host, sink.port, "gateway.test", starttls="off")
        asyncio.run(release(store, downstream, item_id, ADMIN, "checked", target=target))
        [received] = sink.wait_for(1)
    return email.message_from_bytes(received.data, policy=email.policy.compat32)


def test_a_released_sanitized_copy_describes_itself(store: SqlStore, item: str) -> None:
    original = email.message_from_bytes(MESSAGE, policy=email.policy.compat32)
    copy = delivered(store, item, "sanitized")
    assert copy.get_all("X-Mugaika-Verdict") == ["released"]
    assert copy.get_all("X-Mugaika-Released-Target") == ["sanitized"]
    assert copy.get_all("X-Mugaika-Reference") == [item]
    assert copy["X-Mugaika-Findings"] not in (None, "", "None")
    # The counts are what was done to this copy: its one attachment is not in it.
    missing = set(attachments(original)) - set(attachments(copy))
    assert missing == {"invoice.pdf.exe"}
    counts = actions(copy)
    assert counts["stripped"] == len(missing) == 1
    assert counts["html"] == 1
    assert counts["urls"] >= 1
    assert b"https://evil.example" not in copy.as_bytes()
    assert base64.encodebytes(PROGRAM)[:40] not in copy.as_bytes()
    assert copy["X-Mugaika-Released-By"] == "alice"


def test_a_released_original_says_so_and_carries_no_forged_fields(
    store: SqlStore, item: str
) -> None:
    copy = delivered(store, item, "original")
    assert copy.get_all("X-Mugaika-Verdict") == ["released"]
    assert copy.get_all("X-Mugaika-Released-Target") == ["original"]
    # Nothing was changed in an original: every count is 0, and the sender's forged fields
    # (Verdict: deliver) are gone.
    assert set(actions(copy).values()) == {0}
    assert attachments(copy) == ["invoice.pdf.exe"]
    assert copy["X-Mugaika-Findings"]  # what the original still contains
    assert copy["Message-ID"] == "<released-copy@example.com>"
    forged = [v for k, v in copy.items() if k.lower() == "x-mugaika-verdict" and v != "released"]
    assert forged == []
