"""Legacy doc/xls/ppt with active content, over real SMTP (issue 15, "Legacy Office with macros").

With LibreOffice installed and the shipped policy (``sanitize.legacy_office: convert``), such a
file arrives as its OOXML equivalent without the active content, renamed, readable by an
independent reader; a conversion that fails or runs out of time holds the message with its
original; a document without active content is delivered as received, as before; and
``legacy_office: quarantine`` holds. Real corpus files, no mocks.
"""

from __future__ import annotations

import email
import email.policy
import io
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest

from gateway.sanitizers.ole import soffice_path
from quarantine.sql import ItemQuery
from tests.helpers import oracle
from tests.helpers.corpus import corpus_file
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

pytestmark = pytest.mark.skipif(
    soffice_path() is None, reason="LibreOffice (soffice) is not installed"
)


def _mail(rcpt: str, name: str, data: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = rcpt
    msg["Subject"] = "資料の送付"
    msg["Message-ID"] = f"<{rcpt.split('@')[0]}@example.com>"
    msg.set_content("資料を添付します。")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


class Relay:
    def __init__(self, running: RunningGateway, sink: SmtpSink) -> None:
        self.running, self.sink = running, sink

    def send(self, rcpt: str, name: str, data: bytes) -> bytes:
        raw = _mail(rcpt, name, data)
        with self.running.smtp() as client:
            assert client.sendmail("sender@example.com", [rcpt], raw) == {}
        return raw

    def delivered(self, rcpt: str) -> Message | None:
        found = [m for m in self.sink.messages if m.rcpt_tos == [rcpt]]
        if not found:
            return None
        [received] = found
        return email.message_from_bytes(received.data, policy=email.policy.default)

    def held(self, rcpt: str) -> Any:
        store: Any = self.running.server.store
        [item] = [i for i in store.list(ItemQuery(limit=500)).items if rcpt in i.recipients]
        return store, item


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    root = tmp_path_factory.mktemp("legacy")
    policies = root / "policies"
    policies.mkdir()
    (policies / "holding.yaml").write_text(
        "extends: lgwan-base\nsanitize: {legacy_office: quarantine}\n"
    )
    with SmtpSink() as sink:
        config = make_config(
            root / "data",
            downstream=sink.address,
            **{
                "policy.dir": str(policies),
                "tenants": {"hold.example.lg.jp": {"policy": "holding"}},
            },
        )
        with RunningGateway(config) as running:
            yield Relay(running, sink)


def _attachment(message: Message) -> tuple[str, str, bytes]:
    [part] = [p for p in message.walk() if p.get_filename()]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return part.get_filename() or "", part.get_content_type(), payload


def _notice(message: Message) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def _members(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_a_doc_with_an_embedded_object_arrives_as_docx_without_it(relay: Relay) -> None:
    import docx

    rcpt = "doc@example.lg.jp"
    relay.send(rcpt, "報告書.doc", corpus_file("oletools/oleobj/embedded-simple-2007.doc"))
    message = relay.delivered(rcpt)
    assert message is not None
    name, content_type, data = _attachment(message)
    assert name == "報告書.docx"
    assert content_type.endswith("wordprocessingml.document")
    assert not any("vbaproject" in m.lower() or "embeddings/" in m for m in _members(data))
    assert oracle.office_active_content(data, ".docx") == []
    text = [p.text for p in docx.Document(io.BytesIO(data)).paragraphs]
    assert "This document contains an embedded file:" in text
    notice = _notice(message)
    assert "埋め込みオブジェクトを除去" in notice
    assert "マクロなどを除いた新しい形式に変換" in notice
    assert "報告書.docx" in notice


def test_an_xls_with_excel4_macros_arrives_as_xlsx_without_them(relay: Relay) -> None:
    import openpyxl

    rcpt = "xls@example.lg.jp"
    relay.send(rcpt, "集計.xls", corpus_file("oletools/excel4-macros/excel4_sample_macro.xls"))
    message = relay.delivered(rcpt)
    assert message is not None
    name, content_type, data = _attachment(message)
    assert name == "集計.xlsx"
    assert content_type.endswith("spreadsheetml.sheet")
    assert not any("macrosheet" in m.lower() or "vba" in m.lower() for m in _members(data))
    assert oracle.office_active_content(data, ".xlsx") == []
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    assert "Sheet1" in workbook.sheetnames
    assert not workbook.defined_names.get("Auto_Open")
    assert "Excel 4.0マクロを除去" in _notice(message)


def test_a_ppt_with_vba_arrives_as_pptx_without_it(relay: Relay) -> None:
    rcpt = "ppt@example.lg.jp"
    relay.send(rcpt, "slides.ppt", corpus_file("oletools/olevba/sample_with_vba.ppt"))
    message = relay.delivered(rcpt)
    assert message is not None
    name, _, data = _attachment(message)
    assert name == "slides.pptx"
    assert not any("vba" in m.lower() or "embeddings/" in m for m in _members(data))
    assert oracle.office_active_content(data, ".pptx") == []
    assert b"PPT VBA TEST" in zipfile.ZipFile(io.BytesIO(data)).read("ppt/slides/slide1.xml")
    assert "マクロを除去" in _notice(message)


def test_a_clean_doc_is_still_delivered_as_received(relay: Relay) -> None:
    rcpt = "clean@example.lg.jp"
    original = corpus_file("msoffcrypto-tool/inputs/plain.doc")
    relay.send(rcpt, "plain.doc", original)
    message = relay.delivered(rcpt)
    assert message is not None
    assert _attachment(message) == ("plain.doc", "application/msword", original)


def test_the_policy_can_hold_instead(relay: Relay) -> None:
    rcpt = "someone@hold.example.lg.jp"
    raw = relay.send(
        rcpt, "集計.xls", corpus_file("oletools/excel4-macros/excel4_sample_macro.xls")
    )
    assert relay.delivered(rcpt) is None
    store, item = relay.held(rcpt)
    assert store.original(item.id) == raw
    assert any("OLE_HELD_BY_POLICY" in r for r in item.reasons), item.reasons


def _orphans() -> list[str]:
    """LibreOffice processes whose conversion directory is gone (their parent gave up)."""
    orphans = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            if arg.startswith(b"-env:UserInstallation=file://") and b"mugaika-convert-" in arg:
                profile = Path(arg.split(b"file://", 1)[1].decode(errors="replace"))
                if not profile.parent.exists():
                    orphans.append(f"{entry.name}: {profile}")
    return orphans


def test_a_conversion_out_of_time_holds_the_message_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    """A document time limit LibreOffice cannot meet: held with the original, nothing lost,
    and the LibreOffice process group is gone."""
    with SmtpSink() as sink:
        config = make_config(
            tmp_path / "data", downstream=sink.address, **{"workers.document_timeout": 2.0}
        )
        with RunningGateway(config) as running:
            relay = Relay(running, sink)
            rcpt = "slow@example.lg.jp"
            raw = relay.send(
                rcpt, "報告書.doc", corpus_file("oletools/oleobj/embedded-simple-2007.doc")
            )
            assert relay.delivered(rcpt) is None
            store, item = relay.held(rcpt)
            assert store.original(item.id) == raw
            assert any("OLE_CONVERT_FAILED" in r or "WORKER_TIMEOUT" in r for r in item.reasons), (
                item.reasons
            )
    assert _orphans() == []
