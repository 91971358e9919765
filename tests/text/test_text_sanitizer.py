"""The text attachment sanitizer: the sanitizer contract, charsets kept, fail closed."""

from __future__ import annotations

import codecs
import os

import pytest

from gateway.charsets import decode_body
from gateway.errors import CannotSanitize
from gateway.sanitizers.base import SanitizeOptions, Sanitizer
from gateway.sanitizers.text import TextSanitizer
from gateway.sanitizers.urls import UrlPolicy
from tests.text.linkify import live_links

OPTIONS = SanitizeOptions()
CSV = (
    "番号,名称,URL\r\n1,市役所,https://www.city.example.lg.jp/\r\n2,①㈱テスト,www.example.co.jp\r\n"
)
ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:説明会\r\n"
    "URL:https://evil.example/meet\r\nDESCRIPTION:詳細はhttps://exa\r\n mple.com/を参照\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)


@pytest.fixture
def sanitizer() -> TextSanitizer:
    return TextSanitizer()


def test_it_is_a_sanitizer(sanitizer: TextSanitizer) -> None:
    checked: Sanitizer = sanitizer
    assert checked.name == "text"
    assert checked.handles == frozenset({"text"})


@pytest.mark.parametrize("charset", ["cp932", "utf-8", "euc_jp"])
def test_csv_keeps_its_charset_and_defangs(sanitizer: TextSanitizer, charset: str) -> None:
    text = CSV if charset != "euc_jp" else CSV.replace("①㈱", "")
    result = sanitizer.sanitize(text.encode(charset), "一覧.csv", "2", OPTIONS)
    (output,) = result.outputs
    assert output.filename == "一覧.csv"
    assert output.content_type.startswith("text/csv; charset=")
    out_text = output.data.decode(charset)
    assert "hxxps://www[.]city[.]example[.]lg[.]jp/" in out_text
    assert "www[.]example[.]co[.]jp" in out_text
    assert live_links(out_text) == []
    assert result.notes == ("2 URLs defanged",)
    # Everything but the URLs is kept, character for character.
    assert out_text.replace("[", "").replace("]", "").replace("hxxps", "https") == text


def test_utf8_bom_is_kept(sanitizer: TextSanitizer) -> None:
    data = codecs.BOM_UTF8 + CSV.encode()
    (output,) = sanitizer.sanitize(data, "a.csv", "2", OPTIONS).outputs
    assert output.data.startswith(codecs.BOM_UTF8)
    assert output.data[3:].decode().startswith("番号")


def test_ics_folded_url_is_unfolded_and_defanged_whole(sanitizer: TextSanitizer) -> None:
    # The calendar sanitizer reads property by property (RFC 5545 unfolding), so a URL
    # folded across two lines is one URL to it, as it is to every calendar program.
    (output,) = sanitizer.sanitize(ICS.encode(), "invite.ics", "3", OPTIONS).outputs
    text = output.data.decode()
    assert output.content_type == "text/calendar; charset=utf-8"
    assert "URL:hxxps://evil[.]example/meet" in text
    assert "詳細はhxxps://example[.]com/を参照" in text
    assert live_links(text) == []


def test_iso2022jp_text_stays_iso2022jp(sanitizer: TextSanitizer) -> None:
    from gateway.charsets import encode_body

    source = encode_body("お知らせ①\nhttps://example.com/\n", "iso-2022-jp").data
    result = sanitizer.sanitize(source, "memo.txt", "2", OPTIONS)
    (output,) = result.outputs
    assert output.content_type == "text/plain; charset=iso-2022-jp"
    assert decode_body(output.data, "iso-2022-jp").text == "お知らせ①\nhxxps://example[.]com/\n"


def test_clean_input_is_returned_byte_for_byte(sanitizer: TextSanitizer) -> None:
    data = "会議は10時からです。\r\nよろしくお願いします。\r\n".encode("cp932")
    result = sanitizer.sanitize(data, "memo.txt", "2", OPTIONS)
    assert result.outputs[0].data == data
    assert result.findings == ()


def test_idempotent(sanitizer: TextSanitizer) -> None:
    once = sanitizer.sanitize(CSV.encode("cp932"), "a.csv", "2", OPTIONS).outputs[0].data
    twice = sanitizer.sanitize(once, "a.csv", "2", OPTIONS)
    assert twice.outputs[0].data == once
    assert twice.notes == ()


def test_findings_carry_the_part_id(sanitizer: TextSanitizer) -> None:
    data = b"run javascript:alert(1) or \\\\srv\\share\r\n"
    findings = sanitizer.sanitize(data, "a.txt", "1.4", OPTIONS).findings
    assert {(f.code, f.part_id) for f in findings} >= {
        ("URL_JAVASCRIPT", "1.4"),
        ("URL_UNC_PATH", "1.4"),
    }


def test_policy_comes_from_the_constructor_and_options() -> None:
    data = b"see https://example.com/ and https://evil.example/\n"
    allow = TextSanitizer(UrlPolicy(allow_domains=frozenset({"example.com"})))
    out = allow.sanitize(data, "a.txt", "2", OPTIONS).outputs[0].data
    assert out == b"see https://example.com/ and hxxps://evil[.]example/\n"
    off = TextSanitizer().sanitize(data, "a.txt", "2", SanitizeOptions(defang_urls=False))
    assert off.outputs[0].data == data
    removed = TextSanitizer(UrlPolicy(mode="remove")).sanitize(data, "a.txt", "2", OPTIONS)
    assert removed.outputs[0].data == b"see [URL removed] and [URL removed]\n"
    assert removed.notes == ("2 URLs removed",)


@pytest.mark.parametrize(
    "data",
    [
        os.urandom(0) + bytes(range(256)) * 4,
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nstream\n\x00\x01\x02\nendstream",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
    ],
    ids=["all-bytes", "pe", "pdf", "zip"],
)
def test_fails_closed_on_binary(sanitizer: TextSanitizer, data: bytes) -> None:
    with pytest.raises(CannotSanitize) as raised:
        sanitizer.sanitize(data, "a.txt", "2", OPTIONS)
    assert raised.value.code in ("TEXT_BINARY", "TEXT_UNDECODABLE")


def test_fails_closed_on_truncated_multibyte(sanitizer: TextSanitizer) -> None:
    data = "日本語のテキスト".encode()[:-1] + b"\xff"
    with pytest.raises(CannotSanitize) as raised:
        sanitizer.sanitize(data, "a.txt", "2", OPTIONS)
    assert raised.value.code == "TEXT_UNDECODABLE"
