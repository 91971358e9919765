"""Issue 4: whole messages through the real pipeline with the shipped default policy.

Every assertion reads the output as a mail client would (``tests/helpers/pipeline.py``) and
checks URLs with the independent linkify oracle of ``tests/text/linkify.py``, never with the
code under test.
"""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.report import Verdict
from tests.helpers import hostile
from tests.helpers.pipeline import attachments, body_text, parse, pipeline_with, run, text_parts
from tests.text.linkify import live_links

CRLF = "\r\n"


def mail(
    body: str,
    subtype: str = "plain",
    charset: str = "utf-8",
    cte: str = "8bit",
    headers: dict[str, str] | None = None,
) -> bytes:
    head = {
        "From": "Sender <sender@sender.example>",
        "To": "user@city.example.lg.jp",
        "Subject": "test",
        "Message-ID": "<m1@sender.example>",
        "Date": "Wed, 25 Nov 2026 10:00:00 +0900",
        "MIME-Version": "1.0",
        "Content-Type": f'text/{subtype}; charset="{charset}"',
        "Content-Transfer-Encoding": cte,
        **(headers or {}),
    }
    lines = [f"{k}: {v}" for k, v in head.items()]
    data = CRLF.join(lines).encode() + b"\r\n\r\n"
    if cte == "base64":
        return data + base64.encodebytes(body.encode(charset)).replace(b"\n", b"\r\n")
    return data + body.replace("\n", CRLF).encode(charset, "surrogateescape")


URL_FORMS = [
    "http://example.com/path?q=1",
    "https://www.example.co.jp/ログイン",
    "HTTPS://EXAMPLE.COM/UPPER",
    "ftp://files.example.net/a.zip",
    "www.example.org",
    "example.com",
    "詳細はhttps://example.com/pathをご覧ください",
    "ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ／ｐａｔｈ",
    "https://xn--r8jz45g.jp/",
    "https://例え.jp/パス",
    "http://192.168.10.1/admin",
    "http://3232235777/",
    "https://user:pass@example.com/",
    "<https://example.com/in-angle-brackets>",
    "(https://example.com/in-parens)",
    "https%3A%2F%2Fexample.com%2Fpercent",
    "https&#58;//example.com/entity",
    "javascript:alert(1)",
    "\\\\fileserver\\share\\doc",
    "example。com",
]


@pytest.mark.parametrize("form", URL_FORMS)
def test_every_url_form_in_plain_text_is_made_unclickable(form):
    outcome = run(mail(f"前文 {form} 後文\n"))
    assert outcome.verdict == Verdict.DELIVER
    [(kind, text)] = list(text_parts(outcome.message))
    assert kind == "text/plain"
    assert live_links(text) == [], text
    assert not re.search(r"https?://|ftp://|www\.", text, re.IGNORECASE)


@pytest.mark.parametrize("form", URL_FORMS)
def test_every_url_form_in_html_is_made_unclickable(form):
    html = f'<html><body><p>前文 <a href="{form}">{form}</a> 後文</p></body></html>'
    outcome = run(mail(html, subtype="html"))
    assert outcome.verdict == Verdict.DELIVER
    for _, text in text_parts(outcome.message):
        assert live_links(text) == [], text
        assert "<a" not in text


def test_url_split_by_quoted_printable_soft_breaks_is_defanged():
    encoded = "Go to https://exa=\r\nmple.com/pa=\r\nth/login now\r\n"
    outcome = run(mail(encoded, cte="quoted-printable"))
    text = body_text(outcome.message)
    assert "hxxps://example[.]com/path/login" in text
    assert live_links(text) == []


def test_url_wrapped_by_format_flowed_is_whole_again_and_defanged():
    raw = mail(
        "Visit https://example.com/a/very/long/ \npath/here today\n",
        headers={"Content-Type": 'text/plain; charset="utf-8"; format=flowed; delsp=yes'},
    )
    text = body_text(run(raw).message)
    assert "hxxps://example[.]com/a/very/long/path/here" in text


def test_allow_listed_domain_is_kept_clickable_but_lookalikes_are_not(tmp_path):
    (tmp_path / "allow.yaml").write_text(
        "extends: lgwan-base\nurls:\n  allow_domains: [city.example.lg.jp]\n"
    )
    config = load_config(
        environ={},
        overrides={"auth.enabled": False, "policy.dir": str(tmp_path), "policy.name": "allow"},
    )
    outcome = run(
        mail("https://www.city.example.lg.jp/info and https://city.example.lg.jp.evil.jp/x\n"),
        pipeline_with(config),
    )
    text = body_text(outcome.message)
    assert "https://www.city.example.lg.jp/info" in text
    assert "hxxps://city[.]example[.]lg[.]jp[.]evil[.]jp/x" in text


def test_html_is_converted_to_readable_text_with_link_targets():
    html = (
        "<html><head><style>p{color:red}</style><script>steal()</script></head><body>"
        "<h1>お知らせ</h1><p>詳しくは<a href='https://example.com/x'>こちら</a>。</p>"
        "<ul><li>項目1</li><li>項目2</li></ul>"
        "<table><tr><td>氏名</td><td>山田</td></tr></table>"
        "<img src='https://tracker.example/pixel.gif'><form action='https://x.example'>"
        "<input name=pw></form></body></html>"
    )
    outcome = run(mail(html, subtype="html"))
    [(kind, text)] = list(text_parts(outcome.message))
    assert kind == "text/plain"
    for expected in (
        "お知らせ",
        "詳しくはこちら",
        "hxxps://example[.]com/x",
        "項目1",
        "項目2",
        "氏名",
        "山田",
    ):
        assert expected in text
    assert "steal()" not in text
    assert "color:red" not in text
    assert "<" not in text.split("──")[-1]
    codes = outcome.report.finding_codes()
    assert {"HTML_SCRIPT", "HTML_FORM", "HTML_REMOTE_IMAGE"} <= codes


def test_alternative_collapses_to_the_plain_text_and_drops_the_html():
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@sender.example", "u@city.example.lg.jp", "alt"
    msg.set_content("プレーンテキスト本文 https://example.com/\n")
    msg.add_alternative("<p>HTML本文<script>x()</script></p>", subtype="html")
    outcome = run(msg.as_bytes())
    parts = list(text_parts(outcome.message))
    assert [k for k, _ in parts] == ["text/plain"]
    assert "プレーンテキスト本文 hxxps://example[.]com/" in parts[0][1]
    assert outcome.report.count_actions("alternative-collapsed") == 1


def test_sanitize_html_policy_keeps_safe_html_without_links(tmp_path):
    (tmp_path / "keep-html.yaml").write_text("extends: lgwan-base\nhtml: sanitize\n")
    config = load_config(
        environ={},
        overrides={"auth.enabled": False, "policy.dir": str(tmp_path), "policy.name": "keep-html"},
    )
    html = (
        '<p onclick="x()">本文 <a href="https://evil.example/">リンク</a>'
        '<img src="https://tracker.example/p.gif"><img src="data:image/png;base64,AAAA">'
        '<iframe src="https://x.example"></iframe><object data="x.swf"></object>'
        '<span style="background:url(https://x.example/a)">s</span></p>'
    )
    outcome = run(mail(html, subtype="html"), pipeline_with(config))
    kinds = dict(text_parts(outcome.message))
    assert set(kinds) == {"text/plain", "text/html"}
    cleaned = kinds["text/html"]
    for banned in ("href", "onclick", "<iframe", "<object", "tracker.example", "data:", "url("):
        assert banned not in cleaned.lower()
    assert "本文" in cleaned
    assert live_links(cleaned) == []


# A URL makes the gateway rebuild the text (in UTF-8), so decoding is what is tested here.
ISO_2022_JP_TEXT = "①㈱髙橋 ｶﾀｶﾅ 〜－∥ 株式会社 テスト https://example.com/\n"


def encode_cp50221(text: str) -> bytes:
    """ISO-2022-JP as Windows writes it (CP50221): JIS X 0208 plus the NEC/IBM rows that
    CP932 has, half-width katakana as ESC ( I. Written here from the Shift_JIS-to-JIS formula
    so the test does not use the decoder it checks."""
    out, mode = bytearray(), "ascii"
    for char in text:
        if ord(char) < 0x80:
            if mode != "ascii":
                out += b"\x1b(B"
                mode = "ascii"
            out += char.encode("ascii")
            continue
        sjis = char.encode("cp932")
        if len(sjis) == 1:  # half-width katakana 0xA1-0xDF
            if mode != "kana":
                out += b"\x1b(I"
                mode = "kana"
            out.append(sjis[0] - 0x80)
            continue
        if mode != "jis":
            out += b"\x1b$B"
            mode = "jis"
        s1, s2 = sjis
        row = (s1 - (0x70 if s1 < 0xA0 else 0xB0)) * 2 - (1 if s2 < 0x9F else 0)
        cell = s2 - (0x1F if s2 < 0x7F else 0x20 if s2 < 0x9F else 0x7E)
        out += bytes((row, cell))
    if mode != "ascii":
        out += b"\x1b(B"
    return bytes(out)


def test_iso_2022_jp_with_cp50220_extensions_survives_every_character():
    body = encode_cp50221(ISO_2022_JP_TEXT).replace(b"\n", b"\r\n")
    raw = mail("", charset="iso-2022-jp", cte="7bit").rstrip(b"\r\n") + b"\r\n\r\n" + body
    outcome = run(raw)
    text = body_text(outcome.message)
    assert "①㈱髙橋" in text
    assert "株式会社 テスト" in text
    assert "ｶﾀｶﾅ" in text or "カタカナ" in text


def test_shift_jis_cp932_body_decodes_without_mojibake():
    text = "①お問い合わせ～ ㈱テスト －∥ https://example.com/\n"
    raw = mail("", charset="shift_jis", cte="8bit").rstrip(b"\r\n") + b"\r\n\r\n"
    raw += text.encode("cp932").replace(b"\n", b"\r\n")
    out = body_text(run(raw).message)
    assert "①お問い合わせ" in out
    assert "㈱テスト" in out


def test_iso_2022_jp_output_when_the_policy_asks(tmp_path):
    (tmp_path / "jis.yaml").write_text("extends: lgwan-base\nnotice:\n  charset: iso-2022-jp\n")
    config = load_config(
        environ={},
        overrides={"auth.enabled": False, "policy.dir": str(tmp_path), "policy.name": "jis"},
    )
    outcome = run(mail("こんにちは https://example.com/\n"), pipeline_with(config))
    part = parse(outcome.message)
    assert part.get_content_charset() == "iso-2022-jp"
    assert "こんにちは" in body_text(outcome.message)


def test_notice_is_japanese_by_default_and_lists_what_changed():
    html = '<p>見て <a href="https://example.com">リンク</a></p>'
    text = body_text(run(mail(html, subtype="html")).message)
    notice, _, rest = text.partition("──────")
    assert "【無害化処理のお知らせ】" in notice
    assert "HTML形式の本文をテキストに変換しました" in notice
    assert "URL 1件" in notice
    assert "20261125-TESTREF1" in notice
    assert "見て" in rest


def test_notice_in_english_when_the_policy_says_so(tmp_path):
    (tmp_path / "en.yaml").write_text("extends: lgwan-base\nnotice:\n  language: en\n")
    config = load_config(
        environ={},
        overrides={"auth.enabled": False, "policy.dir": str(tmp_path), "policy.name": "en"},
    )
    text = body_text(run(mail("see https://example.com\n"), pipeline_with(config)).message)
    assert "[Made harmless by the mail gateway]" in text
    assert "1 URL(s) were made unclickable" in text
    assert "20261125-TESTREF1" in text


def test_summary_headers_are_ours_and_forged_ones_are_removed():
    raw = mail(
        "hello https://example.com\n",
        headers={"X-Mugaika-Verdict": "deliver", "X-Mugaika-Reference": "FORGED"},
    )
    message = parse(run(raw).message)
    assert message.get_all("X-Mugaika-Verdict") == ["deliver"]
    assert message.get_all("X-Mugaika-Reference") == ["20261125-TESTREF1"]
    assert message["X-Mugaika-Actions"] == "html=0; urls=1; rebuilt=0; rasterized=0; stripped=0"


def test_headers_that_are_not_content_are_kept_byte_for_byte():
    raw = mail(
        "body https://example.com\n",
        headers={
            "Subject": "=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=",
            "References": "<a@x> <b@x>",
            "In-Reply-To": "<b@x>",
            "List-Id": "<list.example.org>",
            "DKIM-Signature": "v=1; a=rsa-sha256; d=sender.example; s=s1; b=abc",
        },
    )
    out = run(raw).message
    for field in (
        b"Message-ID: <m1@sender.example>",
        b"Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=",
        b"References: <a@x> <b@x>",
        b"In-Reply-To: <b@x>",
        b"List-Id: <list.example.org>",
        b"Date: Wed, 25 Nov 2026 10:00:00 +0900",
        b"DKIM-Signature: v=1;",
    ):
        assert b"\r\n" + field in out


def test_a_plain_message_that_needs_no_change_is_delivered_as_sent():
    raw = mail("Hello, no links here.\n", headers={"DKIM-Signature": "v=1; d=sender.example"})
    outcome = run(raw)
    assert outcome.message.endswith(raw)
    assert outcome.message.startswith(b"Received: from mx.sender.example")


def test_signed_mail_is_delivered_modified_and_the_notice_says_the_signature_is_gone():
    raw = (
        b"From: a@sender.example\r\nTo: u@city.example.lg.jp\r\nSubject: signed\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol="application/pkcs7-'
        b'signature"; micalg=sha-256; boundary="s"\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\n'
        b"see https://example.com\r\n--s\r\nContent-Type: application/pkcs7-signature; "
        b'name="smime.p7s"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        b"MIIBogYJKoZIhvcNAQcC\r\n--s--\r\n"
    )
    outcome = run(raw)
    assert outcome.verdict == Verdict.DELIVER
    text = body_text(outcome.message)
    assert "電子署名" in text
    assert "hxxps://example[.]com" in text
    assert attachments(outcome.message) == []


@pytest.mark.parametrize(
    ("content_type", "code"),
    [
        (
            'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="e"',
            "ENCRYPTED_MESSAGE",
        ),
        ('application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"', "SMIME_OPAQUE"),
    ],
)
def test_encrypted_mail_cannot_be_inspected_and_is_quarantined(content_type, code):
    raw = (
        f"From: a@sender.example\r\nTo: u@city.example.lg.jp\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\n\r\n--e\r\nContent-Type: application/pgp-encrypted\r\n"
        "\r\nVersion: 1\r\n--e\r\nContent-Type: application/octet-stream\r\n\r\n"
        "-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n--e--\r\n"
    ).encode()
    outcome = run(raw)
    assert outcome.verdict == Verdict.QUARANTINE
    assert code in outcome.report.finding_codes()
    # The copy kept beside the original holds none of what could not be inspected.
    assert b"PGP MESSAGE" not in outcome.message
    assert b"hQEMA" not in outcome.message


def test_too_deep_nesting_is_quarantined_with_a_limit_finding():
    inner = "Content-Type: text/plain\r\n\r\nbottom\r\n"
    for depth in range(40):
        inner = (
            f'Content-Type: multipart/mixed; boundary="b{depth}"\r\n\r\n--b{depth}\r\n'
            f"{inner}--b{depth}--\r\n"
        )
    raw = (
        "From: a@sender.example\r\nTo: u@city.example.lg.jp\r\nMIME-Version: 1.0\r\n" + inner
    ).encode()
    outcome = run(raw)
    assert outcome.verdict == Verdict.QUARANTINE
    assert "LIMIT_DEPTH" in outcome.report.finding_codes()


def test_too_many_parts_are_quarantined():
    parts = "".join("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(600))
    raw = (
        "From: a@sender.example\r\nTo: u@city.example.lg.jp\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + "--b--\r\n"
    ).encode()
    outcome = run(raw)
    assert outcome.verdict == Verdict.QUARANTINE
    assert "LIMIT_PARTS" in outcome.report.finding_codes()


def test_uuencoded_program_hidden_in_the_text_is_found_and_held():
    import binascii

    program = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
    lines = [
        binascii.b2a_uu(program[i : i + 45]).decode().rstrip("\n")
        for i in range(0, len(program), 45)
    ]
    body = "Please see the file.\nbegin 644 invoice.pdf.exe\n" + "\n".join(lines) + "\n`\nend\n"
    outcome = run(mail(body))
    assert outcome.verdict == Verdict.QUARANTINE
    assert outcome.report.count_actions("uuencode-extracted") == 1
    [record] = outcome.report.attachments
    assert record.untrusted_filename == "invoice.pdf.exe"
    assert "EXECUTABLE" in outcome.report.finding_codes()


@pytest.mark.parametrize("runs", [False, True], ids=["plain", "run-length-encoded"])
def test_binhex_program_in_the_text_is_decoded_and_held(runs: bool):
    """RT-07: Thunderbird makes an attachment of a BinHex 4.0 block in plain text."""
    program = hostile.pe_bytes()
    encoded = hostile.binhex(b"invoice.exe", program, runs).decode().replace("\r\n", "\n")
    body = "Please see the file.\n" + encoded
    outcome = run(mail(body))
    assert outcome.verdict == Verdict.QUARANTINE
    assert outcome.report.count_actions("binhex-extracted") == 1
    [record] = outcome.report.attachments
    assert record.untrusted_filename == "invoice.exe"
    assert record.size == len(program)
    assert "EXECUTABLE" in outcome.report.finding_codes()


@pytest.mark.parametrize("end", [True, False], ids=["with-yend", "without-yend"])
def test_yenc_program_in_the_text_is_decoded_and_held(end: bool):
    program = hostile.pe_bytes()
    encoded = hostile.yenc(b"invoice.exe", program, end).replace(b"\r\n", b"\n")
    body = "See attached.\n" + encoded.decode("latin-1")
    outcome = run(mail(body, charset="iso-8859-1"))
    assert outcome.verdict == Verdict.QUARANTINE
    assert outcome.report.count_actions("yenc-extracted") == 1
    [record] = outcome.report.attachments
    assert record.untrusted_filename == "invoice.exe"
    assert record.size == len(program)


def test_encoded_text_file_is_extracted_and_the_text_kept_without_it():
    """A harmless file encoded in the text arrives as an attachment, the block gone from the
    text, and the notice says what was taken out."""
    body = (
        b"Before.\n"
        + hostile.binhex(b"memo.txt", "議事録です\n".encode())
        + b"Between.\n"
        + hostile.yenc(b"list.txt", b"a,b\n1,2\n")
        + b"After.\n"
    )
    outcome = run(mail(body.replace(b"\r\n", b"\n").decode("latin-1"), charset="iso-8859-1"))
    assert outcome.verdict == Verdict.DELIVER
    assert outcome.message is not None
    text = body_text(outcome.message)
    for sent in ("Before.", "Between.", "After."):
        assert sent in text
    for marker in ("This file must be converted", "=ybegin"):
        assert marker not in text
    for notice in ("（BinHex）を取り出しました", "（yEnc）を取り出しました"):
        assert notice in text
    files = {name: data for name, _, data in attachments(outcome.message)}
    assert files == {"memo.txt": "議事録です\n".encode(), "list.txt": b"a,b\n1,2\n"}


def test_binhex_that_does_not_decode_stays_text_no_client_decodes():
    body = "Look:\n(This file must be converted with BinHex 4.0)\n:!!!!!!!!!!!!!:\n"
    outcome = run(mail(body))
    assert outcome.report.attachments == []
    assert outcome.message is not None
    text = body_text(outcome.message)
    assert "\n (This file must be converted with BinHex 4.0)" in text


def test_binhex_runs_cannot_expand_past_the_decoded_size_limit():
    """Two characters of run-length code claim 255 bytes: a bomb is cut at the limit."""
    from gateway.mime import MimeLimitExceeded, MimeLimits, parse_message

    header = b"\x01x" + b"\0APPL????\0\0" + (10**9).to_bytes(4, "big") + b"\0" * 6
    runs = header + b"A" + b"\x90\xff" * 200_000  # 200,000 runs of 255 bytes: 51 MB
    marker = b"(This file must be converted with BinHex 4.0)\r\n"
    limits = MimeLimits(max_decoded_size=4 * 1024 * 1024)
    message = b"From: a@sender.example\r\n\r\n" + marker + _binhex_text(runs)
    with pytest.raises(MimeLimitExceeded) as caught:
        parse_message(message, limits)
    assert caught.value.code == "LIMIT_DECODED_SIZE"


def _binhex_text(raw: bytes) -> bytes:
    alphabet = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
    raw += b"\0" * (-len(raw) % 3)
    encoded = bytearray()
    for i in range(0, len(raw), 3):
        value = int.from_bytes(raw[i : i + 3], "big")
        encoded += bytes(alphabet[(value >> shift) & 63] for shift in (18, 12, 6, 0))
    text = b":" + bytes(encoded) + b":"
    return b"\r\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + b"\r\n"


@pytest.mark.parametrize("name", ["fwd.eml", "fwd.txt"])
def test_attached_message_libmagic_calls_text_is_sanitized_as_a_message(name: str):
    """RT-01: recursed into like message/rfc822, the program inside held."""
    inner = (
        b"MIME-Version: 1.0\r\nSubject: fwd\r\n"
        b'Content-Type: application/octet-stream; name="invoice.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(hostile.pe_bytes()).replace(b"\n", b"\r\n")
    )
    message = EmailMessage()
    message["From"] = "a@sender.example"
    message["To"] = "user@city.example.lg.jp"
    message["Subject"] = "fwd"
    message.set_content("see attached")
    message.add_attachment(inner, maintype="application", subtype="octet-stream", filename=name)
    outcome = run(message.as_bytes())
    assert outcome.verdict == Verdict.QUARANTINE
    assert "MESSAGE_FILE" in outcome.report.finding_codes()
    records = {r.part_id: r for r in outcome.report.attachments}
    assert records["1.2"].untrusted_filename == name
    assert records["1.2"].reason == "MESSAGE"
    assert any(
        r.untrusted_filename == "invoice.exe" and r.action == "held" for r in records.values()
    )


def test_tnef_winmail_dat_attachments_are_unpacked_and_sanitized(corpus: Path):
    raw = (corpus / "mimekit/tnef/rich-text.eml").read_bytes()
    outcome = run(raw)
    assert outcome.report.count_actions("tnef-unpacked") >= 1
    assert outcome.report.attachments, "the TNEF members were not inspected"
    assert all(r.action for r in outcome.report.attachments)


def test_japanese_attachment_names_survive_in_rfc2231_and_rfc2047():
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@sender.example", "u@city.example.lg.jp", "名前"
    msg.set_content("添付します。")
    msg.add_attachment(
        "メモ https://example.com\n".encode(),
        maintype="text",
        subtype="plain",
        filename="議事録（案）.txt",
    )
    outcome = run(msg.as_bytes())
    [(name, _kind, data)] = attachments(outcome.message)
    assert name == "議事録（案）.txt"
    assert b"hxxps://example[.]com" in data
    part = next(p for p in parse(outcome.message).walk() if p.get_filename())
    assert str(part.get_param("name")).lower().startswith("=?utf-8?b?")
    assert "filename*=utf-8''" in part["Content-Disposition"]


def test_hidden_attachment_after_a_reused_boundary_is_found(corpus: Path):
    raw = (corpus / "spamscope-mail-parser/mail_malformed_1").read_bytes()
    outcome = run(raw)
    assert outcome.verdict == Verdict.QUARANTINE
    assert {"MIME_HIDDEN_PART", "EXECUTABLE"} <= outcome.report.finding_codes()


def test_empty_and_garbage_input_never_crash_and_never_pass_unsanitized():
    for raw in (
        b"",
        b"\x00\xff" * 100,
        b"no headers at all http://example.com",
        b"Subject: x\r\n\r\n" + bytes(range(256)) * 4,
    ):
        outcome = run(raw)
        assert outcome.verdict in (Verdict.DELIVER, Verdict.QUARANTINE)
        if outcome.message is not None:
            for _, text in text_parts(outcome.message):
                assert live_links(text) == []


def test_a_held_message_keeps_a_sanitized_copy_without_the_held_attachment():
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@sender.example", "u@city.example.lg.jp", "x"
    msg.set_content("請求書を送ります https://example.com/pay")
    program = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
    msg.add_attachment(
        program, maintype="application", subtype="octet-stream", filename="請求書.exe"
    )
    outcome = run(msg.as_bytes())
    assert outcome.verdict == Verdict.QUARANTINE
    assert attachments(outcome.message) == []
    assert program not in outcome.message
    text = body_text(outcome.message)
    assert "添付ファイル「請求書.exe」は隔離され" in text
    assert "hxxps://example[.]com/pay" in text
    assert parse(outcome.message)["X-Mugaika-Verdict"] == "quarantine"


def _signed(body: str) -> bytes:
    return (
        "From: a@sender.example\r\nTo: u@city.example.lg.jp\r\nSubject: signed\r\n"
        "Message-ID: <signed@sender.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        'micalg=sha-256; boundary="s"\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\n'
        f'{body}\r\n--s\r\nContent-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nMIIBogYJKoZIhvcNAQcC\r\n--s--\r\n"
    ).encode()


def _policy(tmp_path: Path, name: str, text: str):
    (tmp_path / f"{name}.yaml").write_text(f"extends: lgwan-base\n{text}")
    config = load_config(
        environ={},
        overrides={"auth.enabled": False, "policy.dir": str(tmp_path), "policy.name": name},
    )
    return pipeline_with(config)


def test_signed_mail_is_held_when_the_policy_says_quarantine(tmp_path):
    pipeline = _policy(tmp_path, "hold-signed", "signed: quarantine\n")
    outcome = run(_signed("plain words"), pipeline)
    assert outcome.verdict == Verdict.QUARANTINE
    assert "SIGNED_MESSAGE" in outcome.report.finding_codes()


def test_clean_signed_mail_keeps_its_signature_when_the_policy_allows(tmp_path):
    pipeline = _policy(tmp_path, "keep-clean", "signed: deliver-unmodified-if-clean\n")
    raw = _signed("plain words, nothing active")
    outcome = run(raw, pipeline)
    assert outcome.verdict == Verdict.DELIVER
    assert outcome.message.endswith(raw)  # signature part and signed bytes untouched
    # With something to change, the signature cannot survive: sanitized as usual.
    outcome = run(_signed("see https://example.com"), pipeline)
    assert b"application/pkcs7-signature" not in outcome.message
    assert "hxxps://example[.]com" in body_text(outcome.message)


def test_notice_templates_can_be_overridden_by_policy(tmp_path):
    pipeline = _policy(
        tmp_path,
        "own-words",
        "notice:\n  templates:\n    title: '【〇〇市 情報政策課より】'\n"
        "    urls-defanged: '・リンク{count}件を無効化しました。'\n",
    )
    text = body_text(run(mail("https://example.com/a https://example.com/b\n"), pipeline).message)
    assert text.startswith("【〇〇市 情報政策課より】")
    assert "・リンク2件を無効化しました。" in text


# --- RT-21: a bounce stays a delivery report ------------------------------------------------


def _bounce(status_fields: str, report_type: str = "delivery-status") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.partner.example\r\nTo: user@city.example.lg.jp\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.partner.example.\r\n"
        f"--R\r\nContent-Type: message/delivery-status\r\n\r\n{status_fields}"
        "--R\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: user@city.example.lg.jp\r\nTo: nobody@partner.example\r\nSubject: test\r\n"
        "--R--\r\n"
    ).encode()


_STATUS = (
    "Reporting-MTA: dns; mx.partner.example\r\n\r\n"
    "Final-Recipient: rfc822; nobody@partner.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 see https://help.partner.example/bounce for help\r\n"
)


def test_bounce_keeps_its_report_structure_and_delivery_status_fields():
    outcome = run(_bounce(_STATUS))
    assert outcome.verdict == Verdict.DELIVER
    message = parse(outcome.message)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    kinds = [part.get_content_type() for part in message.get_payload()]
    assert kinds[:2] == ["text/plain", "message/delivery-status"], kinds
    status = message.get_payload()[1]
    blocks = status.get_payload()  # the per-message and the per-recipient fields
    recipients = [block["Final-Recipient"] for block in blocks]
    assert recipients == [None, "rfc822; nobody@partner.example"]
    assert blocks[1]["Status"] == "5.1.1"
    assert blocks[1]["Action"] == "failed"
    # The URL in the diagnostic is defanged like any URL in text, and the notice counts it.
    assert live_links(status.as_string()) == []
    assert "help[.]partner[.]example" in status.as_string()
    assert "URL 1件" in body_text(outcome.message)
    assert "This is the mail system" in body_text(outcome.message)


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        (_STATUS + "Diagnostic-Code: smtp; " + "x" * 2000 + "\r\n", "x" * 2000),
        ("This Message was undeliverable.\r\n\r\n<u@ci.example> is full\r\n", "undeliverable"),
    ],
    ids=["line-over-998", "prose-not-fields"],
)
def test_delivery_status_that_cannot_be_written_as_fields_is_text(status: str, shown: str):
    """Readers disagree on what a delivery-status part shows besides fields."""
    outcome = run(_bounce(status))
    kinds = [part.get_content_type() for part in parse(outcome.message).walk()]
    assert "message/delivery-status" not in kinds
    assert any(shown in text for _, text in text_parts(outcome.message))
