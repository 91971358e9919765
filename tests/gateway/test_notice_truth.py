"""What a recipient reads is true: the notice and the ``X-Mugaika-*`` fields of mail relayed
over real SMTP, parsed from what the downstream server received.

- every finding is shown in words for people (``gateway/findings.py``), never as its code,
  the most serious first, in Japanese by default and in English by policy;
- counts say what happened: URLs defanged anywhere (bodies and text or HTML attachments) are
  counted, and an attachment whose URLs were changed is not described as untouched;
- the literal ``None`` never appears in a header or a notice.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message

import pytest

from gateway import findings
from tests.helpers import hostile
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

ISO_9660 = b"\x00" * 0x8001 + b"CD001\x01" + b"\x00" * 2042
CSV = "名前,URL\n見積,https://evil.example/quote\n資料,http://files.example/a.zip\n".encode()
# Anything shaped like an internal code: UPPER_SNAKE with at least one underscore.
CODE_LIKE = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")


def _mail(body: str, *files: tuple[bytes, str, str, str]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "user@example.lg.jp"
    msg["Subject"] = "notice test"
    msg.set_content(body)
    for data, maintype, subtype, name in files:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Message]]:
    """One gateway for the module. Mail to ``en.example.lg.jp`` gets a policy whose notices
    are in English; ``relay(raw, language)`` returns the message the downstream received."""
    root = tmp_path_factory.mktemp("notice")
    policies = root / "policies"
    policies.mkdir()
    # Disk images are held whole by the shipped policy; these tests read the words a notice
    # gives for one that an operator's policy strips instead.
    strip_images = "rules: [{name: disk-image-or-notebook, enabled: false}]\n"
    (policies / "stripping.yaml").write_text("extends: lgwan-base\n" + strip_images)
    (policies / "english.yaml").write_text(
        "extends: lgwan-base\nnotice: {language: en}\n" + strip_images
    )
    sent = iter(range(1_000_000))
    with SmtpSink() as sink:
        config = make_config(
            root / "data",
            downstream=sink.address,
            **{
                "policy.dir": str(policies),
                "policy.name": "stripping",
                "tenants": {"en.example.lg.jp": {"policy": "english"}},
            },
        )
        with RunningGateway(config) as gateway:

            def send(raw: bytes, language: str = "ja") -> Message:
                domain = "en.example.lg.jp" if language == "en" else "example.lg.jp"
                rcpt = f"user{next(sent)}@{domain}"
                with gateway.smtp() as client:
                    assert client.sendmail("sender@example.com", [rcpt], raw) == {}
                [received] = [m for m in sink.messages if m.rcpt_tos == [rcpt]]
                return email.message_from_bytes(received.data, policy=email.policy.compat32)

            yield send


def _texts(message: Message) -> Iterator[str]:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and part.get_filename() is None:
            payload = part.get_payload(decode=True) or b""
            yield payload.decode(part.get_content_charset() or "utf-8")


def _notice(message: Message) -> str:
    text = next(_texts(message))
    title = "【無害化処理のお知らせ】" if "【" in text else "[Made harmless by the mail gateway]"
    assert text.startswith(title), text[:200]
    notice, rule, _ = text.partition("─" * 30 if "【" in text else "-" * 40)
    assert rule, text
    return notice


def _our_fields(message: Message) -> dict[str, str]:
    return {k: str(v) for k, v in message.items() if k.lower().startswith("x-mugaika-")}


def _assert_no_internal_words(message: Message, notice: str) -> None:
    assert CODE_LIKE.findall(notice) == []
    for code in findings.CODES:
        if "_" in code:
            assert code not in notice
    assert "None" not in notice
    for name, value in _our_fields(message).items():
        assert "None" not in value, name


def test_findings_are_words_for_people_most_serious_first(relay: Callable[..., Message]):
    raw = _mail(
        "資料をお送りします。",
        (hostile.docm(), "application", "vnd.ms-word.document.macroEnabled.12", "見積書.docm"),
        (ISO_9660, "application", "octet-stream", "disk.iso"),
        (hostile.jpeg(exif=True), "image", "jpeg", "photo.jpg"),
    )
    message = relay(raw)
    notice = _notice(message)
    _assert_no_internal_words(message, notice)
    assert (
        "・添付ファイル「見積書.docm」を無害化して再作成しました"
        "（マクロを除去、マクロ有効形式を通常の形式に変更）。" in notice
    )
    assert "・添付ファイル「見積書.docm」の名前を「見積書.docx」に変更しました。" in notice
    assert (
        "・添付ファイル「disk.iso」を削除しました"
        "（開くと中のプログラムが動くディスクイメージ等）。" in notice
    )
    assert (
        "・添付ファイル「photo.jpg」を無害化して再作成しました（撮影情報などのメタデータを除去）。"
        in (notice)
    )
    # The machine-readable field keeps the codes, for filters and scripts.
    assert message["X-Mugaika-Findings"] == (
        "DANGEROUS_CONTAINER, IMAGE_METADATA, OOXML_MACRO_ENABLED_TYPE, OOXML_VBA_MACRO"
    )


def test_english_words_by_policy(relay: Callable[..., Message]):
    raw = _mail(
        "See attached.",
        (hostile.docm(), "application", "vnd.ms-word.document.macroEnabled.12", "quote.docm"),
        (ISO_9660, "application", "octet-stream", "disk.iso"),
    )
    message = relay(raw, "en")
    notice = _notice(message)
    _assert_no_internal_words(message, notice)
    assert (
        '- Attachment "quote.docm" was rebuilt without active content (macros removed, '
        "changed from a macro-enabled type to the ordinary one)." in notice
    )
    assert (
        '- Attachment "disk.iso" was removed '
        "(a disk image or similar that can run programs when opened)." in notice
    )


def test_urls_defanged_in_a_text_attachment_are_counted(relay: Callable[..., Message]):
    message = relay(_mail("一覧を添付します。", (CSV, "text", "csv", "list.csv")))
    notice = _notice(message)
    _assert_no_internal_words(message, notice)
    assert "・URL 2件をクリックできない形に変更しました" in notice
    assert (
        "・添付ファイル「list.csv」を無害化して再作成しました"
        "（URLをクリックできない形に変更）。" in notice
    )
    assert "危険な要素" not in notice
    assert message["X-Mugaika-Actions"] == "html=0; urls=2; rebuilt=1; rasterized=0; stripped=0"
    assert message["X-Mugaika-Findings"] == "URL_DEFANGED"
    attachment = next(p for p in message.walk() if p.get_filename() == "list.csv")
    assert b"hxxps://evil[.]example/quote" in attachment.get_payload(decode=True)


def test_urls_of_body_text_and_html_attachments_add_up(relay: Callable[..., Message]):
    html = b"<html><body><a href='https://a.example/x'>link</a> https://b.example/y</body></html>"
    raw = _mail(
        "詳細は https://body.example/info をご覧ください。",
        (CSV, "text", "csv", "list.csv"),
        (html, "text", "html", "page.html"),
    )
    message = relay(raw)
    notice = _notice(message)
    _assert_no_internal_words(message, notice)
    actions = dict(
        pair.split("=") for pair in message["X-Mugaika-Actions"].replace(" ", "").split(";")
    )
    assert actions["urls"] == str(1 + 2 + 2)  # body, CSV, the HTML file's link and text URL
    assert f"・URL {actions['urls']}件をクリックできない形に変更しました" in notice
    assert "URL_DEFANGED" in message["X-Mugaika-Findings"]


def test_unchanged_mail_says_so_in_words_not_none(relay: Callable[..., Message]):
    message = relay(_mail("こんにちは。\n"))
    fields = _our_fields(message)
    assert fields["X-Mugaika-Findings"] == "none"
    assert fields["X-Mugaika-Actions"] == "html=0; urls=0; rebuilt=0; rasterized=0; stripped=0"
    assert all("None" not in value for value in fields.values())
    assert "【無害化処理のお知らせ】" not in next(_texts(message))


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_registered_code_reads_as_words(language: str):
    from gateway.notice import reason_text

    for code in findings.CODES:
        text = reason_text(code, language)
        assert text == findings.words(code, language)
        assert code not in text or "_" not in code


def test_a_file_passed_on_as_received_is_not_called_rebuilt(relay: Callable[..., Message]):
    """A legacy Office file oletools finds clean, and a text file with nothing to change, are
    delivered byte for byte: the notice says they were checked, never "re-created"."""
    from tests.helpers.corpus import corpus_file

    doc = corpus_file("msoffcrypto-tool/inputs/plain.doc")
    memo = "会議は10時からです。\n".encode()
    message = relay(
        _mail(
            "資料です。",
            (doc, "application", "msword", "議事録.doc"),
            (memo, "text", "plain", "memo.txt"),
        )
    )
    notice = _notice(message)
    _assert_no_internal_words(message, notice)
    for name in ("議事録.doc", "memo.txt"):
        assert f"・添付ファイル「{name}」を検査しました。" in notice
        assert f"「{name}」を無害化して再作成しました" not in notice
    assert "受信したまま添付しています（検査の結果、危険な要素なし）。" in notice
    delivered = {part.get_filename(): part.get_payload(decode=True) for part in message.walk()}
    assert delivered["議事録.doc"] == doc
    assert delivered["memo.txt"] == memo
    assert message["X-Mugaika-Actions"].endswith("rebuilt=0; rasterized=0; stripped=0")
