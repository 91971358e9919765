"""The notice's 「原本は参照番号 X で保管されています」 is true: X names a stored original.

Retention is decided from one fact, the delivered bytes differing from the received ones
beyond the fields the gateway prepends, so mail whose only change is an attachment (a rebuilt
xlsx or pptx, a re-encoded JPEG, a CSV whose URLs were defanged, a stripped 7-Zip archive) keeps
its original too. A message that names a reference is delivered only after the original is
committed; if it cannot be, the sender gets 451 and nothing is delivered.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from quarantine.sql import ItemQuery, open_store
from tests.helpers import hostile
from tests.helpers.corpus import corpus_file
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

REPO = Path(__file__).resolve().parents[2]
MUGAIKA = (sys.executable, "-m", "gateway.cli")
REFERENCE = re.compile(r"原本は参照番号 (\d{8}-[0-9A-Z]{8}) で保管されています")
SEVEN_ZIP = b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(range(256)) * 4
CSV = b"name,url\nquote,https://evil.example/quote\nfiles,http://files.example/a.zip\n"


def _mail(recipient: str, name: str, data: bytes, maintype: str, subtype: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = recipient
    msg["Subject"] = f"attachment {name}"
    msg.set_content("添付をご確認ください。")  # no URL: the attachment is the only change
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


CASES: dict[str, tuple[str, str, str]] = {
    "book.xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet", ""),
    "slides.pptx": (
        "application",
        "vnd.openxmlformats-officedocument.presentationml.presentation",
        "oletools/oleobj/embedded-simple-2007.pptx",
    ),
    "photo.jpg": ("image", "jpeg", ""),
    "list.csv": ("text", "csv", ""),
    "bundle.7z": ("application", "octet-stream", ""),
}


def _data(name: str) -> bytes:
    corpus = CASES[name][2]
    if corpus:
        return corpus_file(corpus)
    return {
        "book.xlsx": lambda: hostile.benign_xlsx(4),
        "photo.jpg": lambda: hostile.jpeg(exif=True),
        "list.csv": lambda: CSV,
        "bundle.7z": lambda: SEVEN_ZIP,
    }[name]()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One gateway for the module; ``relay(raw, rcpt)`` returns (SMTP reply, delivered)."""
    with SmtpSink() as sink:
        config = make_config(tmp_path_factory.mktemp("gw"), downstream=sink.address)
        with RunningGateway(config) as gateway:

            def send(raw: bytes, rcpt: str) -> tuple[int, Any]:
                with gateway.smtp() as client:
                    client.ehlo("client.example")
                    client.mail("sender@example.com")
                    client.rcpt(rcpt)
                    code, _ = client.data(raw)
                found = [m for m in sink.messages if m.rcpt_tos == [rcpt]]
                delivered = (
                    email.message_from_bytes(found[0].data, policy=email.policy.compat32)
                    if found
                    else None
                )
                return code, delivered

            send.gateway = gateway  # type: ignore[attr-defined]
            send.config = config  # type: ignore[attr-defined]
            yield send


def _notice(message: Any) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and part.get_filename() is None:
            return (part.get_payload(decode=True) or b"").decode(
                part.get_content_charset() or "utf-8"
            )
    return ""


@pytest.mark.parametrize("name", list(CASES))
def test_an_attachment_only_change_keeps_the_original_it_names(relay: Any, name: str) -> None:
    maintype, subtype, _ = CASES[name]
    rcpt = f"{name.replace('.', '-')}@example.lg.jp"
    raw = _mail(rcpt, name, _data(name), maintype, subtype)
    code, message = relay(raw, rcpt)
    assert code == 250
    assert message is not None
    [reference] = REFERENCE.findall(_notice(message))
    assert message["X-Mugaika-Reference"] == reference
    item = relay.gateway.server.store.get(reference)
    assert item.summary.kind == "retained"
    assert item.original_sha256 == hashlib.sha256(raw).hexdigest()


def test_quarantine_show_resolves_the_reference(relay: Any, tmp_path: Path) -> None:
    rcpt = "show@example.lg.jp"
    code, message = relay(_mail(rcpt, "list.csv", CSV, "text", "csv"), rcpt)
    assert code == 250
    [reference] = REFERENCE.findall(_notice(message))
    config: Config = relay.config
    shown = subprocess.run(
        [*MUGAIKA, "quarantine", "show", reference, "--data-dir", str(config.data_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"id:             {reference}" in shown.stdout
    assert "kind:           retained" in shown.stdout


def test_unchanged_mail_names_no_reference_and_keeps_nothing(relay: Any) -> None:
    rcpt = "plain@example.lg.jp"
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = rcpt
    msg["Subject"] = "plain"
    msg.set_content("こんにちは。")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    code, message = relay(raw, rcpt)
    assert code == 250
    assert message["X-Mugaika-Reference"] is None
    assert "参照番号" not in _notice(message)
    kept = relay.gateway.server.store.list(ItemQuery(limit=1000)).items
    assert [item for item in kept if rcpt in item.recipients] == []


class _StoreThatCannotCommit:
    """A real store whose ``hold`` fails, as a full disk or a lost database would."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def hold(self, request: Any) -> None:
        raise OSError("No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_an_original_that_cannot_be_kept_is_not_promised_451(tmp_path: Path) -> None:
    with SmtpSink() as sink:
        config = make_config(tmp_path, downstream=sink.address)
        store = _StoreThatCannotCommit(open_store(config, create=True))
        with RunningGateway(config, store=store) as gateway, gateway.smtp() as client:
            rcpt = "user@example.lg.jp"
            raw = _mail(rcpt, "list.csv", CSV, "text", "csv")
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("sender@example.com", [rcpt], raw)
        assert refused.value.smtp_code == 451
        assert sink.messages == []
