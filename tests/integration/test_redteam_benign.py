"""Red team, benign mail: ordinary business mail that is held without cause or arrives broken.

Over real SMTP with the default policy. Every message here is what a Japanese municipality
receives every day; the gateway must deliver it usable (possibly rebuilt), never hold it for
want of a sanitizer, and its notice must be accurate. See
``tests/integration/test_redteam_attachments.py`` for the conventions.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator

import pytest

from tests.helpers.redteam import (
    HEIC_PHOTO,
    RedTeamChain,
    leaves,
    minimal_odt,
    notice_of,
    with_attachment,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedTeamChain]:
    with RedTeamChain(tmp_path_factory.mktemp("redteam-benign")) as running:
        yield running


# An Outlook/Exchange meeting request as sent (multipart/alternative with the calendar part
# inline, ``method=REQUEST``): Outlook and Thunderbird show Accept/Decline only for that.
_INVITATION = """From: yamada@partner.example
To: {RCPT}
Subject: =?UTF-8?B?5a6a5L6L5Lya6K2w?=
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="_000_"

--_000_
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 8bit

定例会議のご案内です。
--_000_
Content-Type: text/calendar; charset="utf-8"; method=REQUEST
Content-Transfer-Encoding: 8bit

BEGIN:VCALENDAR
METHOD:REQUEST
PRODID:Microsoft Exchange Server 2010
VERSION:2.0
BEGIN:VEVENT
ORGANIZER;CN=山田:mailto:yamada@partner.example
ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{RCPT}
UID:040000008200E00074C5B7101A82E00800000000
SUMMARY;LANGUAGE=ja-JP:定例会議
DTSTART;TZID=Tokyo Standard Time:20261210T100000
DTEND;TZID=Tokyo Standard Time:20261210T110000
LOCATION;LANGUAGE=ja-JP:会議室A
END:VEVENT
END:VCALENDAR
--_000_--
"""


def _calendar_parts(data: bytes) -> list[email.message.Message]:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    return [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]


def test_meeting_request_stays_a_meeting_request(chain: RedTeamChain):
    """RT-12a. The calendar part arrives as an attachment ``part-1.3.ics`` without
    ``method=REQUEST``: Outlook shows no meeting request, Thunderbird no Accept button."""
    outcome = chain.send(_INVITATION)
    [part] = _calendar_parts(outcome.message)
    assert part.get_param("method") == "REQUEST"
    assert part.get_content_disposition() != "attachment"


def test_meeting_request_keeps_its_calendar_addresses(chain: RedTeamChain):
    """RT-12b. ``ORGANIZER:mailto:…`` and ``ATTENDEE:mailto:…`` become ``mailto[:]…@city[.]…``:
    they are protocol fields, not links; the reply cannot reach the organizer and the client
    cannot find the recipient among the attendees."""
    outcome = chain.send(_INVITATION)
    [part] = _calendar_parts(outcome.message)
    calendar = part.get_content()
    assert "ORGANIZER;CN=山田:mailto:yamada@partner.example" in calendar
    assert "mailto:rt" in calendar  # the ATTENDEE line names the recipient


@pytest.mark.parametrize(
    ("filename", "data", "content_type"),
    [
        ("議事録.odt", minimal_odt(), "application/vnd.oasis.opendocument.text"),
        (
            "議事録.rtf",
            rb"{\rtf1\ansi\ansicpg932{\fonttbl{\f0\fcharset128 MS Gothic;}}"
            rb"\f0 \'8b\'63\'8e\'96\par}",
            "application/rtf",
        ),
    ],
    ids=["odt", "rtf"],
)
def test_opendocument_and_rtf_are_not_held_for_want_of_a_sanitizer(
    chain: RedTeamChain, filename: str, data: bytes, content_type: str
):
    """RT-13. The policy says ``opendocument: rebuild`` and ``rtf: rebuild`` but no sanitizer
    handles either class, so every LibreOffice document and every RTF is held
    (``SANITIZE_FAILED: UNKNOWN_TYPE: no sanitizer for …``)."""
    outcome = chain.send(with_attachment(filename, data, content_type=content_type))
    assert not outcome.was_held


def test_iphone_heic_photo_is_not_held(chain: RedTeamChain):
    """RT-14. libmagic names it image/heic, the image sanitizer cannot decode it
    (``IMAGE_DECODE_ERROR``), and a failed sanitizer holds the whole message."""
    outcome = chain.send(with_attachment("IMG_0412.HEIC", HEIC_PHOTO, content_type="image/heic"))
    assert not outcome.was_held


def test_html_page_that_shows_code_as_text_is_not_held(chain: RedTeamChain):
    """RT-15. The active-HTML check also runs on the raw bytes, so escaped text such as
    ``&lt;img src=x onerror=alert(1)&gt;`` (a security bulletin) counts as an event handler."""
    page = (
        "<html><head><meta charset='utf-8'><title>注意喚起</title></head><body>"
        "<p>次のような文字列を含むメールに注意してください。</p>"
        "<pre>&lt;img src=x onerror=alert(1)&gt;</pre></body></html>"
    ).encode()
    outcome = chain.send(with_attachment("注意喚起.html", page, content_type="text/html"))
    assert not outcome.was_held


def test_forwarded_message_with_base64_transfer_encoding_stays_readable(chain: RedTeamChain):
    """RT-16. A ``message/rfc822`` part with ``Content-Transfer-Encoding: base64`` (forbidden
    by RFC 2046 but sent by some clients, decoded by Outlook and Thunderbird) is taken as a
    message without headers whose body is the base64 text: the recipient gets a blob."""
    inner = (
        "From: tanaka@partner.example\r\nSubject: =?UTF-8?B?6LOH5paZ?=\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n資料を送ります。\r\n"
    ).encode()
    raw = (
        "From: a@partner.example\nTo: {RCPT}\nSubject: Fw\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\nfw\n'
        "--B\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(inner).decode()
        + "--B--\n"
    )
    outcome = chain.send(raw)
    texts = [payload.decode("utf-8", "replace") for _, payload in leaves(outcome.message)]
    assert any("資料を送ります" in t for t in texts), texts


def test_benign_pdf_arrives_with_an_accurate_notice(chain: RedTeamChain):
    """Control (passes today)."""
    from tests.helpers import hostile

    outcome = chain.send(with_attachment("報告書.pdf", hostile.benign_pdf(pages=2)))
    assert "報告書.pdf" in notice_of(outcome.message)


def test_notice_speaks_words_not_finding_codes(chain: RedTeamChain):
    """RT-18. A macro-enabled document is rebuilt as .docx and the notice says so, but in
    parentheses it names ``OOXML_MACRO_ENABLED_TYPE``: recipients read codes, not words."""
    import re

    from tests.helpers import hostile

    outcome = chain.send(with_attachment("見積書.docm", hostile.docm()))
    notice = notice_of(outcome.message)
    assert "見積書" in notice
    assert re.findall(r"\b[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+\b", notice) == [], notice


_BOUNCE = """From: MAILER-DAEMON@mx.partner.example
To: {RCPT}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="R"

--R
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.partner.example.
--R
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.partner.example

Final-Recipient: rfc822; nobody@partner.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <nobody@partner.example>: Recipient address rejected
--R
Content-Type: text/rfc822-headers

From: user@city.example.lg.jp
To: nobody@partner.example
Subject: test
--R--
"""


def test_bounce_keeps_its_delivery_status(chain: RedTeamChain):
    """RT-21. A DSN (RFC 3464) arrives as multipart/mixed; its ``message/delivery-status``
    part is turned into a ``message/rfc822`` whose only "headers" are the per-message fields:
    ``Final-Recipient``, ``Action``, ``Status`` and ``Diagnostic-Code`` are gone. Clients show
    no bounce, the user cannot see why, automated bounce handling breaks."""
    outcome = chain.send(_BOUNCE)
    parsed = email.message_from_bytes(outcome.message, policy=email.policy.default)
    types = [part.get_content_type() for part in parsed.walk()]
    assert "message/delivery-status" in types, types
    assert b"Status: 5.1.1" in outcome.message
