"""Disk images and OneNote notebooks hold the whole message under the shipped policy (issue 15).

Stripping only the part would deliver the rest of a lure ("open the attached disk image") and
throw away what an administrator needs to judge it; these containers have mostly carried
executables past filters since 2022, so the default keeps the message with its original.
"""

from __future__ import annotations

import email
import email.policy
import io
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from quarantine.sql import ItemQuery
from quarantine.words import reason_words
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

ISO_9660 = b"\x00" * 0x8001 + b"CD001\x01" + b"\x00" * 2042
ONENOTE = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3") + b"\x00" * 4096
VHDX = b"vhdxfile" + b"\x00" * 4096
SEVEN_ZIP = b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(range(256)) * 4


def _zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _mail(rcpt: str, name: str, data: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = rcpt
    msg["Subject"] = "請求書の送付"
    msg["Message-ID"] = f"<{rcpt.split('@')[0]}@example.com>"
    msg.set_content("添付のファイルを開いてご確認ください。")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, SmtpSink]]:
    with SmtpSink() as sink:
        config = make_config(tmp_path_factory.mktemp("gw"), downstream=sink.address)
        with RunningGateway(config) as running:
            yield running, sink


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("請求書.iso", ISO_9660),
        ("invoice.img", ISO_9660),
        ("notes.one", ONENOTE),
        ("disk.vhdx", VHDX),
        ("renamed.pdf", ISO_9660),  # judged by its bytes, not its name
        ("docs.zip", _zip_of("請求書.iso", ISO_9660)),
    ],
)
def test_a_disk_image_or_notebook_holds_the_whole_message(
    gateway: tuple[RunningGateway, SmtpSink], name: str, data: bytes
) -> None:
    running, sink = gateway
    rcpt = f"held-{name.encode().hex()[:16]}@example.lg.jp"
    raw = _mail(rcpt, name, data)
    with running.smtp() as client:
        assert client.sendmail("sender@example.com", [rcpt], raw) == {}
    assert [m for m in sink.messages if m.rcpt_tos == [rcpt]] == [], "delivered in part"
    store: Any = running.server.store
    [item] = [i for i in store.list(ItemQuery(limit=500)).items if rcpt in i.recipients]
    assert item.kind == "quarantined"
    assert store.original(item.id) == raw
    [reason] = [r for r in item.reasons if "disk image" in r]
    assert "ディスクイメージまたはOneNote" in reason_words(reason, "ja")


def test_another_archive_format_is_still_only_stripped(
    gateway: tuple[RunningGateway, SmtpSink],
) -> None:
    running, sink = gateway
    rcpt = "stripped-7z@example.lg.jp"
    with running.smtp() as client:
        assert client.sendmail("sender@example.com", [rcpt], _mail(rcpt, "a.7z", SEVEN_ZIP)) == {}
    [delivered] = [m for m in sink.messages if m.rcpt_tos == [rcpt]]
    message = email.message_from_bytes(delivered.data, policy=email.policy.default)
    assert [part.get_filename() for part in message.iter_attachments()] == []
    notice = message.get_body(("plain",))
    assert notice is not None
    assert "添付ファイル「a.7z」を削除しました" in notice.get_content()
