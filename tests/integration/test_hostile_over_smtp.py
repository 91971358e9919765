"""Black-box, as the product is judged: hostile and benign mail over real SMTP, default policy.

A real gateway (shipped pipeline, ``lgwan-base``) between smtplib and a real SMTP sink. For
every sample: the sender gets 250; the message is either at the sink or held in quarantine;
whatever reached the sink is checked with the independent oracles of
``tests/helpers/oracle.py`` (qpdf, oletools, libmagic) and the separate linkifier, never
with the code under test; the Message-ID arrives intact; benign documents arrive usable.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from quarantine.sql import ItemQuery
from tests.helpers import hostile, oracle
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink
from tests.text.linkify import live_links

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory):
    with SmtpSink() as sink:
        data = tmp_path_factory.mktemp("hostile")
        config = make_config(data, downstream=sink.address, **{"workers.count": 2})
        with RunningGateway(config) as gateway:
            yield gateway, sink


def send(chain, filename: str, data: bytes, maintype: str, subtype: str, index: str):
    gateway, sink = chain
    msg = EmailMessage()
    msg["From"] = "sender@partner.example"
    msg["To"] = f"user{index}@city.example.lg.jp"
    msg["Subject"] = f"sample {filename}"
    msg["Message-ID"] = f"<{index}@partner.example>"
    msg.set_content("添付をご確認ください。 https://partner.example/info")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    with gateway.smtp() as client:
        client.sendmail(msg["From"], [msg["To"]], msg.as_bytes(policy=email.policy.SMTP))
    delivered = [m for m in sink.messages if m.rcpt_tos == [msg["To"]]]
    held = [
        i
        for i in gateway.server.store.list(ItemQuery(kind="quarantined", limit=1000)).items
        if msg["To"] in i.recipients
    ]
    return delivered, held


def attachments_of(data: bytes) -> list[tuple[str, bytes]]:
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    return [
        (str(part.get_filename() or ""), part.get_payload(decode=True) or b"")
        for part in message.walk()
        if not part.is_multipart() and part.get_content_disposition() == "attachment"
    ]


def texts_of(data: bytes) -> list[str]:
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    return [
        (part.get_payload(decode=True) or b"").decode(part.get_content_charset() or "utf-8")
        for part in message.walk()
        if part.get_content_maintype() == "text" and not part.is_multipart()
    ]


Sample = tuple[str, Callable[[], bytes], str, str]

HOSTILE: list[Sample] = [
    ("js-everywhere.pdf", hostile.pdf_with_js_everywhere, "application", "pdf"),
    *[
        (f"action-{kind}.pdf", (lambda k=kind: hostile.pdf_with_action(k)), "application", "pdf")
        for kind in hostile.PDF_ACTION_KINDS
    ],
    ("incremental.pdf", hostile.pdf_incremental_js, "application", "pdf"),
    ("macro.docm", hostile.docm, "application", "vnd.ms-word.document.macroEnabled.12"),
    ("macro.xlsm", hostile.xlsm, "application", "vnd.ms-excel.sheet.macroEnabled.12"),
    ("template.docx", hostile.docx_remote_template, "application", "octet-stream"),
    ("dde.docx", hostile.docx_dde, "application", "octet-stream"),
    ("bomb.zip", hostile.zip_bomb, "application", "zip"),
    ("ppap.zip", hostile.zipcrypto_zip, "application", "zip"),
    ("ppap-aes.zip", hostile.aes_zip, "application", "zip"),
    ("traversal.zip", hostile.zip_traversal, "application", "zip"),
    ("photo.jpg", hostile.polyglot_jpeg, "image", "jpeg"),
    ("invoice.pdf", hostile.pe_bytes, "application", "pdf"),
    ("photo.jpg.exe", hostile.pe_bytes, "application", "octet-stream"),
    ("shortcut.lnk", hostile.lnk_bytes, "application", "octet-stream"),
    ("tool", hostile.elf_bytes, "application", "octet-stream"),
    ("page.html", hostile.html_with_script, "text", "html"),
    ("logo.svg", hostile.svg_with_script, "image", "svg+xml"),
    ("big.png", hostile.image_bomb_png, "image", "png"),
    *[(name, hostile.pe_bytes, "application", "octet-stream") for name in hostile.RTLO_NAMES],
]


@pytest.mark.parametrize(
    ("filename", "make", "maintype", "subtype"), HOSTILE, ids=[s[0] for s in HOSTILE]
)
def test_hostile_attachment_never_arrives_active(chain, filename, make, maintype, subtype):
    index = f"h{HOSTILE.index((filename, make, maintype, subtype))}"
    data = make()
    delivered, held = send(chain, filename, data, maintype, subtype, index)
    assert len(delivered) + len(held) == 1, "neither delivered nor held"
    if held:
        return
    [message] = delivered
    assert f"Message-ID: <{index}@partner.example>".encode() in message.data
    for name, payload in attachments_of(message.data):
        assert payload != data, f"{name} arrived unchanged"
        kind = oracle.magic_mime(payload)
        assert "executable" not in kind, (name, kind)
        assert "dosexec" not in kind, (name, kind)
        if kind == "application/pdf":
            assert oracle.pdf_active_content(payload) == [], name
        if name.endswith((".docx", ".xlsx", ".pptx", ".doc", ".xls")):
            assert oracle.office_active_content(payload, Path(name).suffix) == [], name
        assert not name.lower().endswith((".exe", ".lnk", ".js", ".hta", ".docm", ".xlsm"))
    for text in texts_of(message.data):
        assert live_links(text) == [], text


BENIGN: list[Sample] = [
    ("報告書.pdf", lambda: hostile.benign_pdf(pages=3, url=True), "application", "pdf"),
    ("議事録.docx", lambda: hostile.benign_docx(link=True), "application", "octet-stream"),
    ("集計.xlsx", hostile.benign_xlsx, "application", "octet-stream"),
    ("写真.jpg", lambda: hostile.jpeg(exif=True), "image", "jpeg"),
    ("図.png", hostile.png, "image", "png"),
    ("名簿.csv", lambda: "氏名,メール\n山田,yamada@example.jp\n".encode("cp932"), "text", "csv"),
]


@pytest.mark.parametrize(
    ("filename", "make", "maintype", "subtype"), BENIGN, ids=[s[0] for s in BENIGN]
)
def test_benign_attachment_arrives_usable_in_its_format(chain, filename, make, maintype, subtype):
    index = f"b{BENIGN.index((filename, make, maintype, subtype))}"
    data = make()
    delivered, held = send(chain, filename, data, maintype, subtype, index)
    assert held == []
    [message] = delivered
    [(name, payload)] = attachments_of(message.data)
    assert name == filename
    if filename.endswith(".pdf"):
        assert oracle.pdf_page_count(payload) == oracle.pdf_page_count(data) == 3
        assert "Mugaika test page" in oracle.pdf_text(payload)
        assert oracle.pdf_active_content(payload) == []
    elif filename.endswith((".docx", ".xlsx")):
        assert oracle.office_active_content(payload, Path(name).suffix) == []
        assert oracle.magic_mime(payload) == oracle.magic_mime(data)
    elif filename.endswith((".jpg", ".png")):
        assert oracle.magic_mime(payload) == oracle.magic_mime(data)
        assert b"Exif" not in payload[:4096]
    else:
        assert "山田".encode("cp932") in payload
    for text in texts_of(message.data):
        assert live_links(text) == []
