"""Every Japanese mail of the shared corpus decodes without mojibake or lost characters.

For each text part of each mail that MANIFEST/FLAGS mark with a Japanese charset: where
Python's own codec for the declared charset decodes the bytes strictly, ours must give the
same text (modulo the stated mapping table: CP932's U+FF5E for JIS's U+301C and so on) and no
U+FFFD. Known samples must show their expected strings. Over the whole corpus, our decoding
must never produce more U+FFFD than Python's ``errors="replace"`` decoding of the label.
"""

from __future__ import annotations

import email
import email.message
from pathlib import Path

import pytest

from gateway.charsets import decode_body, decode_filename, decode_header
from tests.text.conftest import find_corpus

# JIS-table characters and their Microsoft twins (same JIS code), plus JIS X 0201 Roman, which
# Python reads as ¥ and ‾ where CP50220 reads ASCII.
_SAME_CODE = str.maketrans(
    {
        "\u301c": "\uff5e",
        "\u2016": "\u2225",
        "\u2212": "\uff0d",
        "\u00a2": "\uffe0",
        "\u00a3": "\uffe1",
        "\u00ac": "\uffe2",
        "\u2014": "\u2015",
        "\u00a5": "\\",
        "\u203e": "~",
    }
)
_PYTHON_CODEC = {
    "iso-2022-jp": "iso2022_jp",
    "shift_jis": "shift_jis",
    "euc-jp": "euc_jp",
    "cp932": "cp932",
}


def _japanese_mails() -> list[Path]:
    corpus = find_corpus()
    if corpus is None:
        return []
    flags = {}
    for row in (corpus / "FLAGS.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        path, _, value = row.partition("\t")
        flags[path] = value
    rows = (corpus / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [
        corpus / row.split("\t")[0]
        for row in rows
        if row.split("\t")[4] == "eml" and "japanese-charset" in flags.get(row.split("\t")[0], "")
    ]


def _all_mails() -> list[Path]:
    corpus = find_corpus()
    if corpus is None:
        return []
    rows = (corpus / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [corpus / row.split("\t")[0] for row in rows if row.split("\t")[4] == "eml"]


JAPANESE = _japanese_mails()
ALL = _all_mails()


def _text_parts(message: email.message.Message) -> list[email.message.Message]:
    return [
        part
        for part in message.walk()
        if not part.is_multipart() and part.get_content_maintype() == "text"
    ]


def _name(path: Path) -> str:
    return "/".join(path.parts[-3:])


@pytest.mark.skipif(not JAPANESE, reason="the shared corpus (../shared/corpus) is not present")
@pytest.mark.parametrize("path", JAPANESE, ids=[_name(p) for p in JAPANESE])
def test_japanese_mail_decodes_like_python_where_python_can(path: Path) -> None:
    message = email.message_from_bytes(path.read_bytes())
    for part in _text_parts(message):
        payload = part.get_payload(decode=True) or b""
        declared = part.get_content_charset()
        ours = decode_body(payload, declared)
        codec = _PYTHON_CODEC.get(declared or "")
        if codec is None:
            continue
        try:
            theirs = payload.decode(codec)
        except UnicodeDecodeError:
            # Python cannot read it (NEC row 13, IBM extensions, mislabelled): ours must.
            assert "\ufffd" not in ours.text or "\ufffd".encode() in payload, ours.findings
            continue
        if "\ufffd" in theirs:
            continue
        assert "\ufffd" not in ours.text
        assert ours.text.translate(_SAME_CODE) == theirs.translate(_SAME_CODE)


@pytest.mark.skipif(not JAPANESE, reason="the shared corpus (../shared/corpus) is not present")
@pytest.mark.parametrize("path", JAPANESE, ids=[_name(p) for p in JAPANESE])
def test_japanese_mail_headers_and_names_decode(path: Path) -> None:
    message = email.message_from_bytes(path.read_bytes())
    for key, raw in message.raw_items():
        if key.lower() in ("subject", "from", "to"):
            decoded = decode_header(raw)
            # Python's decoder, for comparison: it fails or leaves U+FFFD on what we read.
            assert "\ufffd" not in decoded or "\ufffd" in raw, (key, raw, decoded)
    for part in message.walk():
        name = decode_filename(part)
        assert "\ufffd" not in name


# Expected strings of known samples: (mail, where, text).
KNOWN = [
    ("jpmobile/email-fixtures/iphone-circled-numbers-in-jis.eml", "subject", "テスト①"),
    ("jpmobile/email-fixtures/iphone-circled-numbers-in-jis.eml", "body", "丸数字のテストです②ⅱ"),
    ("jpmobile/email-fixtures/iphone-cp932.eml", "body", "テストです。㈱"),
    ("jpmobile/email-fixtures/docomo-jis.eml", "body", "テスト本文"),
    ("jpmobile/email-fixtures/au-kigou.eml", "body", "∥｜…‥‘’“”（）〔〕"),
    ("jpmobile/email-fixtures/au-kigou.eml", "body", "＋－±×÷＝≠"),
    ("mail-gem/emails/multi_charset/japanese_iso_2022.eml", "subject", "まみむめも"),
    ("mail-gem/emails/multi_charset/japanese_iso_2022.eml", "body", "すみません。"),
    (
        "mail-gem/emails/multi_charset/japanese_shift_jis.eml",
        "body",
        "このメールはテスト用のメールです。",
    ),
    (
        "mail-gem/emails/multi_charset/japanese_shift_jis.eml",
        "body",
        "今後ともよろしくお願い申し上げます！",
    ),
    (
        "milter-manager-test-mails/normal/machine-dependent/au-iso-2022-jp-extra-7bit.eml",
        "body",
        "丸数字①",
    ),
    (
        "milter-manager-test-mails/normal/machine-dependent/docomo-shift-jis-extra-8bit.eml",
        "body",
        "丸数字⑩",
    ),
    ("milter-manager-test-mails/normal/headers/subject/raw-cp932.eml", "subject", "①②③"),
    ("milter-manager-test-mails/normal/headers/subject/raw-euc-jp.eml", "subject", "テスト"),
    ("milter-manager-test-mails/normal/headers/subject/raw-iso-2022-jp.eml", "subject", "テスト"),
    (
        "milter-manager-test-mails/normal/headers/subject/folded-base64-iso-2022-jp.eml",
        "subject",
        "テストテスト",
    ),
    (
        "milter-manager-test-mails/normal/headers/subject/folded-raw-iso-2022-jp.eml",
        "subject",
        "テスト",
    ),
    ("milter-manager-test-mails/normal/headers/subject/include-null.eml", "subject", "test"),
    (
        "milter-manager-test-mails/normal/attachments/filename/content-disposition-encoded-filename-without-lang.eml",
        "filename",
        "アイテム.csv",
    ),
    (
        "milter-manager-test-mails/normal/attachments/filename/content-disposition-encoded-filename-without-lang.eml",
        "body",
        "1,ポーション,10000,2000",
    ),
    ("mimekit/messages/japanese.txt", "subject", "日本語メールテスト (testing Japanese emails)"),
    ("mimekit/messages/japanese.txt", "body", "送れているか"),
    ("stalwart-mail-parser/thirdparty/005.eml", "body", "『世界人権宣言』"),
]


@pytest.mark.skipif(not JAPANESE, reason="the shared corpus (../shared/corpus) is not present")
@pytest.mark.parametrize(
    ("name", "where", "expected"),
    KNOWN,
    ids=[f"{k[0].split('/')[-1]}-{k[1]}-{k[2][:6]}" for k in KNOWN],
)
def test_known_samples_show_expected_strings(name: str, where: str, expected: str) -> None:
    corpus = find_corpus()
    assert corpus is not None
    message = email.message_from_bytes((corpus / name).read_bytes())
    if where == "subject":
        found = [decode_header(v) for k, v in message.raw_items() if k.lower() == "subject"]
    elif where == "filename":
        found = [decode_filename(part) for part in message.walk()]
    else:
        found = [
            decode_body(part.get_payload(decode=True) or b"", part.get_content_charset()).text
            for part in _text_parts(message)
        ]
    assert any(expected in text for text in found), found


def test_sisimai_iso2022jp_bounces_decode_cleanly() -> None:
    sisimai = [p for p in JAPANESE if "sisimai" in str(p)]
    if not sisimai:
        pytest.skip("the shared corpus (../shared/corpus) is not present")
    clean = 0
    for path in sisimai:
        message = email.message_from_bytes(path.read_bytes())
        texts = [
            decode_body(part.get_payload(decode=True) or b"", part.get_content_charset()).text
            for part in _text_parts(message)
        ]
        if all("\ufffd" not in t for t in texts):
            clean += 1
    assert len(sisimai) >= 140
    assert clean == len(sisimai)


@pytest.mark.skipif(not ALL, reason="the shared corpus (../shared/corpus) is not present")
def test_whole_corpus_never_worse_than_python() -> None:
    """Our decoding leaves no more U+FFFD than Python's decoding of the declared label."""
    ours_bad = theirs_bad = parts = 0
    worse: list[str] = []
    for path in ALL:
        message = email.message_from_bytes(path.read_bytes())
        for part in _text_parts(message):
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            parts += 1
            declared = part.get_content_charset()
            ours = decode_body(payload, declared).text.count("\ufffd")
            try:
                theirs = payload.decode(declared or "ascii", errors="replace").count("\ufffd")
            except LookupError:
                theirs = payload.decode("utf-8", errors="replace").count("\ufffd")
            ours_bad += ours > 0
            theirs_bad += theirs > 0
            if ours > theirs:
                worse.append(f"{_name(path)}: {ours} > {theirs}")
    assert parts > 1000
    assert worse == []
    assert ours_bad < theirs_bad
