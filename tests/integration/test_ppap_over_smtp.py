"""The partner's own password mail (PPAP, issue 17), black-box over real SMTP.

A real gateway (shipped pipeline, lgwan-base with ``password_mail.pair: true``) between
smtplib and a real SMTP sink. A partner sends a password-protected ZIP (held), then a second
mail with the password: the recipients receive the members sanitized, with a notice, and the
password mail with the password masked; no admin is involved. A wrong password, another
sender, or members the policy holds release nothing. No password is stored anywhere.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import io
import itertools
import time
from email.message import EmailMessage
from pathlib import Path

import pikepdf
import pytest
import pyzipper

from tests.helpers import hostile
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

PARTNER = "tanaka@partner.example"
PASSWORD = "Xk3#9p.Qa"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory):
    with SmtpSink() as sink:
        data = tmp_path_factory.mktemp("ppap")
        policies = data / "policies"
        policies.mkdir()
        (policies / "ppap.yaml").write_text(
            "extends: lgwan-base\npassword_mail: {pair: true, max_wrong: 2}\n"
        )
        config = make_config(
            data,
            downstream=sink.address,
            **{
                "policy.dir": str(policies),
                "policy.name": "ppap",
                "auth.enabled": False,
                # A tenant on the shipped policy, where pairing is off by default.
                "tenants": {
                    "city.example.lg.jp": {"name": "例市"},
                    "plain.example.lg.jp": {"policy": "lgwan-base"},
                },
            },
        )
        with RunningGateway(config) as gateway:
            yield gateway, sink, data


def aes_zip(password: str, members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with pyzipper.AESZipFile(
        out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as archive:
        archive.setpassword(password.encode())
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def archive_mail(recipient: str, archive: bytes, sender: str = PARTNER) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = "【資料送付】お見積書"
    msg["Message-ID"] = f"<zip{next(_numbers)}@partner.example>"
    msg.set_content("お世話になっております。\n資料をお送りします。パスワードは別途お送りします。")
    msg.add_attachment(archive, maintype="application", subtype="zip", filename="お見積書.zip")
    return msg


def password_mail(
    recipient: str, body: str, charset: str = "iso-2022-jp", sender: str = PARTNER
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = "【パスワード】お見積書"
    msg["Message-ID"] = f"<pw{next(_numbers)}@partner.example>"
    msg.set_content(body, charset=charset)
    return msg.as_bytes(policy=email.policy.SMTP)


def body_with(password: str) -> str:
    return (
        "お世話になっております。\n\n先ほどお送りしたファイルのパスワードをお知らせします。\n\n"
        f"パスワード：{password}\n\nよろしくお願いいたします。\n"
    )


def send(gateway: RunningGateway, sender: str, recipient: str, data: bytes) -> float:
    started = time.monotonic()
    with gateway.smtp() as client:
        client.sendmail(sender, [recipient], data)
    return time.monotonic() - started


def delivered_to(sink: SmtpSink, recipient: str) -> list[email.message.Message]:
    return [
        email.message_from_bytes(m.data, policy=email.policy.compat32)
        for m in sink.messages
        if m.rcpt_tos == [recipient]
    ]


def texts(message: email.message.Message) -> str:
    return "\n".join(
        (part.get_payload(decode=True) or b"").decode(part.get_content_charset() or "utf-8")
        for part in message.walk()
        if part.get_content_maintype() == "text" and part.get_content_disposition() is None
    )


def attachments(message: email.message.Message) -> dict[str, bytes]:
    found = {}
    for part in message.walk():
        if part.get_content_disposition() == "attachment":
            name = email.header.make_header(email.header.decode_header(part.get_filename()))
            found[str(name)] = part.get_payload(decode=True) or b""
    return found


def held_item(gateway: RunningGateway, recipient: str) -> str:
    from quarantine.sql import ItemQuery

    items = gateway.server.store.list(ItemQuery(kind="quarantined", limit=1000)).items
    found = [i.id for i in items if recipient in i.recipients]
    assert len(found) == 1, found
    return found[0]


def hold_archive(chain, recipient: str, archive: bytes) -> str:
    gateway, sink, _ = chain
    message = archive_mail(recipient, archive).as_bytes(policy=email.policy.SMTP)
    send(gateway, PARTNER, recipient, message)
    assert delivered_to(sink, recipient) == []
    return held_item(gateway, recipient)


def files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


@pytest.mark.parametrize("charset", ["iso-2022-jp", "utf-8"])
def test_zipcrypto_pair_arrives_sanitized_and_password_masked(chain, charset):
    gateway, sink, data = chain
    recipient = f"staff{next(_numbers)}@city.example.lg.jp"
    content = "見積金額は別紙のとおりです。詳細 https://evil.example/pay\n".encode()
    item = hold_archive(chain, recipient, hostile.zipcrypto_zip(PASSWORD.encode(), content))

    seconds = send(
        gateway, PARTNER, recipient, password_mail(recipient, body_with(PASSWORD), charset)
    )
    print(f"\nPPAP ZipCrypto {charset}: password mail to delivered members {seconds:.3f} s")

    unlocked, masked = delivered_to(sink, recipient)
    files = attachments(unlocked)
    assert list(files) == ["請求書.txt"]
    assert b"hxxps://evil[.]example/pay" in files["請求書.txt"]
    assert b"https://evil.example" not in files["請求書.txt"]
    notice = texts(unlocked)
    opened = (
        "パスワード付き圧縮ファイル「お見積書.zip」は、送信者が後から送ったメールのパスワードで開き"
    )
    assert opened in notice
    assert f"原本は参照番号 {item} で保管されています" in notice
    subject = email.header.make_header(email.header.decode_header(unlocked["Subject"]))
    assert str(subject) == "【資料送付】お見積書"  # the held message itself, unlocked
    masked_text = texts(masked)
    assert "パスワード：********" in masked_text
    assert PASSWORD not in masked_text
    assert "本文のパスワード 1件を伏せ字" in masked_text
    # Released once, by the password mail; never stored or logged.
    store = gateway.server.store
    assert store.get(item).summary.status == "released"
    assert store.password_wait(item)["status"] == "unlocked"
    actions = [e.action for e in store.audit_entries(item_id=item)[0]]
    assert "password-unlocked" in actions
    assert files_holding(data, PASSWORD.encode()) == []
    assert gateway.metric("mugaika_password_unlocks_total", {"result": "delivered"}) >= 1


def test_aes_pair_with_documents_arrives_rebuilt(chain):
    gateway, sink, data = chain
    recipient = f"staff{next(_numbers)}@city.example.lg.jp"
    archive = aes_zip(
        PASSWORD,
        {"見積書.pdf": hostile.pdf_with_js_everywhere(), "一覧.docx": hostile.docm()},
    )
    item = hold_archive(chain, recipient, archive)
    body = f"Dear Sir,\n\nPW： {PASSWORD}\n\nBest regards\n"
    seconds = send(gateway, PARTNER, recipient, password_mail(recipient, body, "utf-8"))
    print(f"\nPPAP AES utf-8: password mail to delivered members {seconds:.3f} s")

    unlocked, masked = delivered_to(sink, recipient)
    files = attachments(unlocked)
    assert set(files) == {"見積書.pdf", "一覧.docx"}
    with pikepdf.open(io.BytesIO(files["見積書.pdf"])) as pdf:
        assert "/OpenAction" not in pdf.Root
        assert "/JavaScript" not in pdf.Root.get("/Names", {})
    assert b"vbaProject.bin" not in files["一覧.docx"]
    assert PASSWORD not in texts(masked)
    assert gateway.server.store.get(item).summary.status == "released"
    assert files_holding(data, PASSWORD.encode()) == []


def test_wrong_password_releases_nothing_and_locks_after_max_wrong(chain):
    gateway, sink, _ = chain
    recipient = f"staff{next(_numbers)}@city.example.lg.jp"
    item = hold_archive(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    store = gateway.server.store

    send(gateway, PARTNER, recipient, password_mail(recipient, body_with("wrong-1")))
    [delivered] = delivered_to(sink, recipient)
    assert "パスワード：wrong-1" in texts(delivered)  # not paired: delivered as it was written
    assert attachments(delivered) == {}
    assert store.get(item).summary.status == "held"
    assert store.password_wait(item) == {"status": "waiting", "wrong": 1}

    send(gateway, PARTNER, recipient, password_mail(recipient, body_with("wrong-2")))
    assert store.password_wait(item) == {"status": "locked", "wrong": 2}
    # Locked: even the right password no longer opens it; an admin decides.
    send(gateway, PARTNER, recipient, password_mail(recipient, body_with(PASSWORD)))
    assert [attachments(m) for m in delivered_to(sink, recipient)] == [{}, {}, {}]
    assert store.get(item).summary.status == "held"
    actions = [e.action for e in store.audit_entries(item_id=item)[0]]
    assert actions.count("password-wrong") == 1
    assert actions.count("password-locked") == 1


def test_other_sender_does_not_pair(chain):
    gateway, sink, _ = chain
    recipient = f"staff{next(_numbers)}@city.example.lg.jp"
    item = hold_archive(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    other = "attacker@elsewhere.example"
    send(gateway, other, recipient, password_mail(recipient, body_with(PASSWORD), sender=other))
    [delivered] = delivered_to(sink, recipient)
    assert attachments(delivered) == {}
    assert gateway.server.store.get(item).summary.status == "held"
    assert gateway.server.store.password_wait(item) == {"status": "waiting", "wrong": 0}


def test_hostile_content_stays_in_quarantine(chain):
    gateway, sink, _ = chain
    recipient = f"staff{next(_numbers)}@city.example.lg.jp"
    archive = aes_zip(PASSWORD, {"請求書.exe": hostile.pe_bytes(), "readme.txt": b"open me\n"})
    item = hold_archive(chain, recipient, archive)
    send(gateway, PARTNER, recipient, password_mail(recipient, body_with(PASSWORD)))
    [masked] = delivered_to(sink, recipient)  # the password mail only
    assert attachments(masked) == {}
    assert PASSWORD not in texts(masked)
    store = gateway.server.store
    assert store.get(item).summary.status == "held"
    assert store.password_wait(item)["status"] == "held"
    entries = store.audit_entries(item_id=item)[0]
    [entry] = [e for e in entries if e.action.startswith("password-")]
    assert entry.action == "password-unlocked-held"
    assert gateway.metric("mugaika_password_unlocks_total", {"result": "held"}) >= 1


def test_pairing_is_off_unless_the_policy_turns_it_on(chain):
    gateway, sink, _ = chain
    recipient = f"staff{next(_numbers)}@plain.example.lg.jp"
    item = hold_archive(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    assert gateway.server.store.password_wait(item) is None
    send(gateway, PARTNER, recipient, password_mail(recipient, body_with(PASSWORD)))
    [delivered] = delivered_to(sink, recipient)
    # Not masked (the URL defanger reads ".Qa" as a domain: "Xk3#9p[.]Qa", as before).
    assert "パスワード：Xk3#9p" in texts(delivered)
    assert "********" not in texts(delivered)
    assert attachments(delivered) == {}
    assert gateway.server.store.get(item).summary.status == "held"


def test_password_mail_held_by_its_own_rules_does_not_pair(chain):
    # The envelope sender matches, but the From: claims a tenant domain without proof
    # (spoofed-internal-from): the mail itself is held, so it must not open the archive.
    gateway, sink, _ = chain
    recipient = f"staff{next(_numbers)}@city.example.lg.jp"
    item = hold_archive(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    spoofed = password_mail(recipient, body_with(PASSWORD), sender="soumu@city.example.lg.jp")
    send(gateway, PARTNER, recipient, spoofed)
    assert delivered_to(sink, recipient) == []
    store = gateway.server.store
    assert store.get(item).summary.status == "held"
    assert store.password_wait(item) == {"status": "waiting", "wrong": 0}
    entries = store.audit_entries(item_id=item)[0]
    assert not [e for e in entries if e.action.startswith("password-")]
