"""iCalendar and vCard files through the text sanitizer: URLs in folded lines and every
property defanged, HTML descriptions as text, inline files removed, calendar addresses kept.
Read back with Python's own line handling and the independent linkifier."""

from __future__ import annotations

from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.text import TextSanitizer
from tests.text.linkify import live_links

INVITE = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
    'ORGANIZER;CN=山田;SENT-BY="mailto:hisho@partner.example":mailto:yamada@partner.example\r\n'
    "ATTENDEE;RSVP=TRUE:mailto:taro@city.example.lg.jp\r\n"
    "UID:1\r\nSUMMARY:説明会\r\n"
    "DESCRIPTION:資料は https://evil.exa\r\n mple/x?a=1\\, と www.partner.example を"
    "ご覧ください\r\n"
    "URL:https://partner.example/event\r\n"
    "ATTACH:https://files.example/agenda.pdf\r\n"
    "ATTACH;VALUE=BINARY;ENCODING=BASE64;FMTTYPE=application/x-msdownload:TVqQAAMAAAA=\r\n"
    "X-ALT-DESC;FMTTYPE=text/html:<html><body><a href='https://evil.example/login'>ログイン"
    "</a><form action='https://evil.example/x'><input type=password></form></body></html>\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def _run(text: str, name: str = "invite.ics") -> tuple[str, set[str]]:
    result = TextSanitizer().sanitize(text.encode(), name, "1.2", SanitizeOptions())
    return result.outputs[0].data.decode(), {f.code for f in result.findings}


def _unfolded(text: str) -> str:
    return text.replace("\r\n ", "").replace("\r\n\t", "")


def test_every_url_is_defanged_also_across_a_folded_line():
    flat = _unfolded(_run(INVITE)[0])
    addresses = ("ORGANIZER", "ATTENDEE")  # kept on purpose: see the next test
    shown = "\n".join(line for line in flat.split("\r\n") if not line.startswith(addresses))
    assert live_links(shown) == []
    assert "hxxps://evil[.]example/x?a=1\\," in flat
    assert "hxxps://partner[.]example/event" in flat
    assert "hxxps://files[.]example/agenda.pdf" in flat


def test_calendar_addresses_are_kept_for_replies():
    flat = _unfolded(_run(INVITE)[0])
    assert 'SENT-BY="mailto:hisho@partner.example":mailto:yamada@partner.example' in flat
    assert "ATTENDEE;RSVP=TRUE:mailto:taro@city.example.lg.jp" in flat


def test_html_description_becomes_text_and_inline_files_go():
    out, codes = _run(INVITE)
    flat = _unfolded(out)
    assert "X-ALT-DESC" not in flat
    assert "<" not in flat
    assert "TVqQ" not in flat
    assert "CALENDAR_HTML_CONVERTED" in codes
    assert "CALENDAR_BINARY_REMOVED" in codes


def test_lines_are_folded_at_75_octets():
    out, _ = _run(INVITE)
    assert all(len(line.encode()) <= 75 for line in out.split("\r\n"))


def test_html_alone_becomes_the_description():
    calendar = (
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:2\r\n"
        "X-ALT-DESC;FMTTYPE=text/html:<p>会場は<b>本庁舎</b>です</p>\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    flat = _unfolded(_run(calendar)[0])
    assert "DESCRIPTION:会場は本庁舎です" in flat.replace(" ", "").replace("\\n", "")


def test_vcard_keeps_its_address_and_defangs_its_urls():
    card = (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:山田太郎\r\nEMAIL;TYPE=work:yamada@partner.example\r\n"
        "URL:https://partner.example/\r\nPHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRg==\r\nEND:VCARD\r\n"
    )
    out, codes = _run(card, "yamada.vcf")
    assert "EMAIL;TYPE=work:yamada@partner.example" in out
    assert "hxxps://partner[.]example/" in out
    assert "/9j/" not in out
    assert "CALENDAR_BINARY_REMOVED" in codes
