"""Japanese (and other) text decoding and encoding, with samples built in code.

The mapping choice under test: JIS X 0208 codes decode with Microsoft's table in every form
(ISO-2022-JP as CP50220, Shift_JIS as CP932, EUC-JP as CP51932), so 0x2141 is U+FF5E, 0x215D
U+FF0D and 0x2142 U+2225; see the module docstring of gateway.charsets for why.
"""

from __future__ import annotations

import email
import email.policy
import unicodedata

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.charsets import (
    CHARSET_FALLBACK_UTF8,
    CHARSET_MISLABELED,
    CHARSET_UNDECLARED_8BIT,
    CHARSET_UNDECODABLE,
    CHARSET_UNKNOWN,
    canonical_charset,
    decode_body,
    decode_filename,
    decode_header,
    encode_body,
)

ESC_JIS = b"\x1b$B"
ESC_ASCII = b"\x1b(B"
ESC_KANA = b"\x1b(I"

# Characters only the Microsoft extensions have, and the ones whose mapping differs.
MACHINE_DEPENDENT = "①②⑳Ⅰⅱ㈱㍉№℡∮髙﨑德"
MAPPING_PAIRS = [  # (JIS X 0208 code, what we decode, what the JIS table would give)
    (b"\x21\x41", "\uff5e", "\u301c"),  # 〜 FULLWIDTH TILDE, not WAVE DASH
    (b"\x21\x5d", "\uff0d", "\u2212"),  # － FULLWIDTH HYPHEN-MINUS, not MINUS SIGN
    (b"\x21\x42", "\u2225", "\u2016"),  # ∥ PARALLEL TO, not DOUBLE VERTICAL LINE
    (b"\x21\x71", "\uffe0", "\u00a2"),  # ￠
    (b"\x21\x72", "\uffe1", "\u00a3"),  # ￡
    (b"\x22\x4c", "\uffe2", "\u00ac"),  # ￢
]


def jis(text: str) -> bytes:
    """ISO-2022-JP bytes for Japanese text, built independently through CP932."""
    out = bytearray()
    for char in text:
        if char.isascii():
            if _in_jis(out):
                out += ESC_ASCII
            out += char.encode()
            continue
        s1, s2 = char.encode("cp932")
        if s2 >= 0x9F:
            j1, j2 = (s1 - (0x70 if s1 < 0xA0 else 0xB0)) * 2, s2 - 0x7E
        else:
            j1, j2 = (
                (s1 - (0x70 if s1 < 0xA0 else 0xB0)) * 2 - 1,
                s2 - (0x1F if s2 < 0x7F else 0x20),
            )
        if not _in_jis(out):
            out += ESC_JIS
        out += bytes((j1, j2))
    if _in_jis(out):
        out += ESC_ASCII
    return bytes(out)


def _in_jis(out: bytearray) -> bool:
    return out.rfind(ESC_JIS) > out.rfind(ESC_ASCII)


# --- bodies ---------------------------------------------------------------------------------


def test_iso2022jp_reads_cp50220_extensions() -> None:
    data = jis("丸数字" + MACHINE_DEPENDENT + "です")
    result = decode_body(data, "ISO-2022-JP")
    assert result.text == "丸数字" + MACHINE_DEPENDENT + "です"
    assert result.charset_used == "iso-2022-jp"
    assert result.findings == ()


def test_iso2022jp_halfwidth_katakana_via_esc_paren_i_and_8bit() -> None:
    data = b"A" + ESC_KANA + b"6@6E" + ESC_ASCII + b"B"
    assert decode_body(data, "iso-2022-jp").text == "AｶﾀｶﾅB"
    # SO/SI (CP50221) and raw 8-bit katakana (CP50222) as some mailers send them.
    assert decode_body(b"x\x0e6@\x0fy", "iso-2022-jp").text == "xｶﾀy"


@pytest.mark.parametrize(("code", "ours", "jis_table"), MAPPING_PAIRS)
def test_mapping_choice_is_microsoft_in_every_form(code: bytes, ours: str, jis_table: str) -> None:
    iso = decode_body(ESC_JIS + code + ESC_ASCII, "iso-2022-jp").text
    sjis = decode_body(ours.encode("cp932"), "shift_jis").text
    euc = decode_body(bytes(b | 0x80 for b in code), "euc-jp").text
    assert iso == sjis == euc == ours
    assert ours != jis_table
    # Python's own codecs disagree with each other here, which is why we choose one table.
    assert (ESC_JIS + code + ESC_ASCII).decode("iso2022_jp") == jis_table


def test_shift_jis_label_reads_cp932() -> None:
    text = "㈱テスト〜" + MACHINE_DEPENDENT
    data = text.replace("〜", "～").encode("cp932")
    with pytest.raises(UnicodeDecodeError):
        data.decode("shift_jis")
    result = decode_body(data, "Shift_JIS")
    assert result.text == text.replace("〜", "～")
    assert result.charset_used == "cp932"


def test_eucjp_with_nec_row13() -> None:
    data = "①㈱日本語".encode("cp932")
    euc = decode_body(_sjis_to_euc(data), "EUC-JP")
    assert euc.text == "①㈱日本語"
    assert euc.charset_used == "euc-jp"


def _sjis_to_euc(data: bytes) -> bytes:
    jis_bytes = jis(data.decode("cp932"))
    out = bytearray()
    in_jis = False
    i = 0
    while i < len(jis_bytes):
        if jis_bytes[i] == 0x1B:
            in_jis = jis_bytes[i : i + 3] == ESC_JIS
            i += 3
            continue
        out.append(jis_bytes[i] | 0x80 if in_jis else jis_bytes[i])
        i += 1
    return bytes(out)


@pytest.mark.parametrize(
    ("data", "declared", "expected_charset", "finding"),
    [
        ("日本語のメール本文です。".encode("cp932"), "iso-2022-jp", "cp932", CHARSET_MISLABELED),
        ("日本語のメール本文です。".encode("euc_jp"), "iso-2022-jp", "euc-jp", CHARSET_MISLABELED),
        ("日本語のメール本文です。".encode(), "iso-2022-jp", "utf-8", CHARSET_MISLABELED),
        ("日本語のメール本文です。".encode("cp932"), None, "cp932", CHARSET_UNDECLARED_8BIT),
        ("日本語のメール本文です。".encode("euc_jp"), None, "euc-jp", CHARSET_UNDECLARED_8BIT),
        ("日本語のメール本文です。".encode(), "us-ascii", "utf-8", CHARSET_MISLABELED),
        ("日本語のメール本文です。".encode("cp932"), "us-ascii", "cp932", CHARSET_MISLABELED),
        ("日本語のメール本文です。".encode("cp932"), "iso-8859-1", "cp932", CHARSET_MISLABELED),
        (jis("日本語のメール本文です。"), "us-ascii", "iso-2022-jp", CHARSET_MISLABELED),
        (jis("日本語のメール本文です。"), None, "iso-2022-jp", None),
        ("日本語のメール本文です。".encode("euc_jp"), "shift_jis", "euc-jp", CHARSET_MISLABELED),
    ],
)
def test_mislabelled_and_undeclared_charsets_are_detected(
    data: bytes, declared: str | None, expected_charset: str, finding: str | None
) -> None:
    result = decode_body(data, declared)
    assert result.text == "日本語のメール本文です。"
    assert result.charset_used == expected_charset
    assert [f.code for f in result.findings] == ([finding] if finding else [])


def test_latin1_text_stays_latin1() -> None:
    result = decode_body("Grüße aus Köln, café".encode("latin-1"), "iso-8859-1")
    assert result.text == "Grüße aus Köln, café"
    assert result.findings == ()


def test_other_charsets_use_supersets() -> None:
    assert decode_body("中文邮件".encode("gbk"), "gb2312").text == "中文邮件"
    assert decode_body("한국어".encode("cp949"), "ks_c_5601-1987").text == "한국어"
    assert decode_body("Привет".encode("koi8-r"), "koi8-r").text == "Привет"


def test_unknown_label_is_reported_and_text_still_decoded() -> None:
    result = decode_body("こんにちは".encode(), "x-no-such-charset")
    assert result.text == "こんにちは"
    assert CHARSET_UNKNOWN in [f.code for f in result.findings]


def test_undecodable_bytes_become_replacement_with_a_finding() -> None:
    result = decode_body(b"ok \xff\xfe\xfd\x80\x80 end", "utf-8")
    assert "ok " in result.text
    assert "\ufffd" in result.text
    assert CHARSET_UNDECODABLE in [f.code for f in result.findings]


def test_broken_iso2022jp_keeps_the_rest() -> None:
    data = ESC_JIS + b"F|K\\\x1b" + ESC_ASCII + b" tail"
    result = decode_body(data, "iso-2022-jp")
    assert result.text.startswith("日本")
    assert result.text.endswith(" tail")
    assert CHARSET_UNDECODABLE in [f.code for f in result.findings]


def test_rows_85_to_94_go_to_the_private_use_area() -> None:
    # au carrier emoji are sent in these rows; CP50221 maps them to the PUA.
    assert decode_body(ESC_JIS + b"\x75\x21" + ESC_ASCII, "iso-2022-jp").text == "\ue000"


def test_canonical_charset_names() -> None:
    assert canonical_charset("Windows-31J") == "cp932"
    assert canonical_charset('"iso-2022-jp"') == "iso-2022-jp"
    assert canonical_charset("CP50220") == "iso-2022-jp"
    assert canonical_charset("x-euc-jp") == "euc-jp"
    assert canonical_charset("UTF8") == "utf-8"
    assert canonical_charset("base64") == ""
    assert canonical_charset(None) == ""


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300),
    st.sampled_from([None, "iso-2022-jp", "shift_jis", "euc-jp", "utf-8", "x-junk"]),
)
def test_property_any_bytes_decode_without_raising(data: bytes, declared: str | None) -> None:
    result = decode_body(data, declared)
    assert isinstance(result.text, str)
    assert (
        "\ufffd" not in result.text
        or CHARSET_UNDECODABLE in [f.code for f in result.findings]
        or "\ufffd".encode() in data
    )


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="cp932", exclude_characters="¢£¬‖−〜"), max_size=60))
def test_property_cp932_text_round_trips_through_all_three_forms(text: str) -> None:
    text = text.replace("\r", "")
    raw = text.encode("cp932")
    # Labelled CP932 bytes that also read as plausible UTF-8 are ambiguous by nature; the
    # decoder trusts the label unless UTF-8 gives 3+ non-ASCII characters that read better.
    assume(_utf8_or_none(raw) is None or sum(ord(c) > 0x7F for c in raw.decode("utf-8")) < 3)
    # Python's own CP932 round trip is the oracle: it folds the JIS-style twins (U+00AC ¬ and
    # U+FFE2 ￢ share one code) exactly as a Shift_JIS mail would.
    expected = text.encode("cp932").decode("cp932")
    assert decode_body(text.encode("cp932"), "shift_jis").text == expected
    encoded = encode_body(text, "iso-2022-jp")
    if encoded.charset == "utf-8":
        # Only user-defined characters outside rows 85-94 lack an ISO-2022-JP code; SO, SI
        # and ESC would be read as shifts. Either way: UTF-8, and said so.
        assert encoded.charset == "utf-8"
        assert [f.code for f in encoded.findings] == [CHARSET_FALLBACK_UTF8]
        assert any(unicodedata.category(c) in ("Co", "Cc") for c in text)
        return
    assert encoded.charset == "iso-2022-jp"
    assert decode_body(encoded.data, "iso-2022-jp").text == _widened(expected)


def _utf8_or_none(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _widened(text: str) -> str:
    return "".join(
        unicodedata.normalize("NFKC", c) if "\uff61" <= c <= "\uff9f" else c for c in text
    )


# --- encoding -------------------------------------------------------------------------------


def test_encode_utf8_is_the_default() -> None:
    assert encode_body("日本語①") == encode_body("日本語①", "utf-8")
    assert encode_body("日本語①").data == "日本語①".encode()


def test_encode_iso2022jp_keeps_machine_dependent_characters() -> None:
    text = "お世話になります。" + MACHINE_DEPENDENT + "〜～\nabc\n"
    encoded = encode_body(text, "ISO-2022-JP")
    assert encoded.charset == "iso-2022-jp"
    assert encoded.findings == ()
    assert encoded.data.isascii()
    assert decode_body(encoded.data, "iso-2022-jp").text == text.replace("〜", "～")


def test_encode_iso2022jp_falls_back_to_utf8_and_says_so() -> None:
    encoded = encode_body("絵文字😀と한국어", "iso-2022-jp")
    assert encoded.charset == "utf-8"
    assert encoded.data.decode("utf-8") == "絵文字😀と한국어"
    assert [f.code for f in encoded.findings] == [CHARSET_FALLBACK_UTF8]
    assert "U+1F600" in encoded.findings[0].detail


def test_encode_iso2022jp_widens_halfwidth_katakana() -> None:
    encoded = encode_body("ｶﾞｲﾄﾞ", "iso-2022-jp")
    assert decode_body(encoded.data, "iso-2022-jp").text == "ガイド"


# --- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "テスト"),
        ("=?iso-2022-jp?B?GyRCJUYlOSVILSEbKEI=?=", "テスト①"),
        # one ISO-2022-JP run split across two words (escape state carries over)
        ("=?ISO-2022-JP?B?GyRCJUYlOQ==?= =?ISO-2022-JP?B?JUgbKEI=?=", "テスト"),
        # UTF-8 split in the middle of a character
        ("=?UTF-8?B?44OG44K5?= =?UTF-8?B?44OI?=", "テスト"),
        ("=?UTF-8?B?4w==?= =?UTF-8?B?g4bjgrnjg4g=?=", "テスト"),
        ("=?UTF-8?Q?=E3=83=86=E3=82=B9=E3=83=88_abc?=", "テスト abc"),
        ("Re: =?UTF-8?B?44OG44K544OI?= and more", "Re: テスト and more"),
        ("=?UTF-8?B?44OG44K544OI?=tail", "テストtail"),
        ("=?Shift_JIS?B?g2WDWINn?=", "テスト"),
        ("=?EUC-JP?B?pcaluaXI?=", "テスト"),
        ("=?ISO-2022-JP?B?GyRCJUYlOSVI?=", "テスト"),  # no ESC ( B at the end
        ("=?UTF-8?B?44OG44K544OI?=\r\n =?UTF-8?B?44OG44K544OI?=", "テストテスト"),
        ("=?ISO-2022-JP?B?GyRCJUYlOSVI\r\n JUYlOSVIGyhC?=", "テストテスト"),  # folded inside
        ("=?UTF-8?B?44OG44K544OI", "=?UTF-8?B?44OG44K544OI"),  # unterminated: kept as is
        ("plain ascii subject", "plain ascii subject"),
        ("with\x00nul", "withnul"),
        ("=?UTF-8*ja?B?44OG44K544OI?=", "テスト"),  # RFC 2231 language in a word
        ("=?x-unknown?B?44OG44K544OI?=", "テスト"),
    ],
)
def test_decode_header(raw: str, expected: str) -> None:
    assert decode_header(raw) == expected


@pytest.mark.parametrize(
    ("raw_bytes", "expected"),
    [
        ("件名テスト①".encode("cp932"), "件名テスト①"),
        ("件名テスト".encode("euc_jp"), "件名テスト"),
        ("件名テスト①".encode(), "件名テスト①"),
        (jis("件名テスト"), "件名テスト"),
    ],
)
def test_decode_header_raw_8bit_from_the_parser(raw_bytes: bytes, expected: str) -> None:
    message = email.message_from_bytes(b"Subject: " + raw_bytes + b"\r\n\r\nbody\r\n")
    raw = next(v for k, v in message.raw_items() if k == "Subject")
    assert decode_header(raw) == expected
    # compat32's own accessor gives a Header object for 8-bit values: accepted too.
    assert decode_header(message["Subject"]) == expected
    modern = email.message_from_bytes(
        b"Subject: " + raw_bytes + b"\r\n\r\nbody\r\n", policy=email.policy.default
    )
    assert decode_header(next(v for k, v in modern.raw_items() if k == "Subject")) == expected


# --- file names -----------------------------------------------------------------------------


def _message(header_lines: bytes) -> email.message.Message:
    return email.message_from_bytes(header_lines + b"\r\n\r\ndata\r\n")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (b"Content-Disposition: attachment; filename*=UTF-8''%E8%B3%87%E6%96%99.pdf", "資料.pdf"),
        (b"Content-Disposition: attachment; filename*=utf-8'ja'%E8%B3%87%E6%96%99.pdf", "資料.pdf"),
        (
            b"Content-Disposition: attachment;\r\n filename*0*=ISO-2022-JP''%1B%24B%3BqNA;\r\n"
            b" filename*1*=%1B%28B.pdf",
            "資料.pdf",
        ),
        (
            b"Content-Disposition: attachment;\r\n filename*0*=UTF-8''%E8%B3%87;\r\n"
            b' filename*1*=%E6%96%99;\r\n filename*2=".xlsx"',
            "資料.xlsx",
        ),
        (
            b'Content-Type: application/pdf; name="=?ISO-2022-JP?B?GyRCO3FOQRsoQi5wZGY=?="',
            "資料.pdf",
        ),
        (
            b'Content-Disposition: attachment;\r\n filename="=?ISO-2022-JP?B?GyRCO3FOQRsoQg==?=\r\n'
            b' =?ISO-2022-JP?B?LnBkZg==?="',
            "資料.pdf",
        ),
        (
            b'Content-Disposition: attachment; filename="' + "資料.pdf".encode("cp932") + b'"',
            "資料.pdf",
        ),
        (b'Content-Disposition: attachment; filename="' + "資料.pdf".encode() + b'"', "資料.pdf"),
        (b"Content-Disposition: attachment; filename*=Shift_JIS''%8E%91%97%BF.pdf", "資料.pdf"),
        (
            b"Content-Type: application/pdf; name=a.pdf\r\n"
            b"Content-Disposition: attachment; filename=b.pdf",
            "b.pdf",
        ),
        (b"Content-Type: application/pdf; name=only-type.pdf", "only-type.pdf"),
        (b"Content-Type: text/plain", ""),
    ],
)
def test_decode_filename(headers: bytes, expected: str) -> None:
    assert decode_filename(_message(headers)) == expected
