"""Recipients help themselves by mail (issue 17, ``gateway/requests.py``), over real SMTP.

A real gateway between smtplib and a real SMTP sink, with ``requests.address`` set. Internet
mail arrives from the loopback peer; staff mail to the request address is sent with XFORWARD
naming an address in ``requests.internal_networks`` (as Postfix on the LGWAN side would).
The notice names the reference id and the request address; a request from someone who was not
a recipient is answered without a word about the item; an original request goes through the
approval queue (two-person rule) to the requester; a password by mail opens a held archive;
wrong passwords get a reply and lock the item.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import itertools
from email.message import EmailMessage

import pytest

from tests.helpers import hostile
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink
from tests.integration.test_ppap_over_smtp import (
    PARTNER,
    PASSWORD,
    aes_zip,
    archive_mail,
    attachments,
    delivered_to,
    files_holding,
    held_item,
    send,
    texts,
)

pytestmark = pytest.mark.slow

DESK = "mugaika-request@gw.city.example.lg.jp"
INTERNAL_CLIENT = "10.20.30.40"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory):
    with SmtpSink() as sink:
        data = tmp_path_factory.mktemp("requests")
        config = make_config(
            data,
            downstream=sink.address,
            **{
                "auth.enabled": False,
                "tenants": {"city.example.lg.jp": {"name": "例市"}},
                "quarantine.release.originals": "two_person",
                "requests.address": DESK,
                "requests.internal_networks": ["10.0.0.0/8"],
                "requests.max_wrong_passwords": 2,
                "requests.max_per_address": 3,
                "admin.listen": "127.0.0.1:0",  # the approver's side of the flow
            },
        )
        with RunningGateway(config) as gateway:
            yield gateway, sink, data


def staff() -> str:
    return f"staff{next(_numbers)}@city.example.lg.jp"


def hold(chain, recipient: str, archive: bytes) -> str:
    gateway, sink, _ = chain
    send(gateway, PARTNER, recipient, archive_mail(recipient, archive).as_bytes())
    assert delivered_to(sink, recipient) == []
    return held_item(gateway, recipient)


def request_mail(sender: str, subject: str, body: str, header_from: str | None = None) -> bytes:
    """A staff member's request mail as their mail program writes it (ISO-2022-JP, CRLF)."""
    msg = EmailMessage()
    msg["From"] = header_from or sender
    msg["To"] = DESK
    msg["Subject"] = subject
    msg["Message-ID"] = f"<req{next(_numbers)}@city.example.lg.jp>"
    msg.set_content(body, charset="iso-2022-jp")
    return msg.as_bytes(policy=email.policy.SMTP)


def send_request(
    gateway: RunningGateway, sender: str, raw: bytes, client: str = INTERNAL_CLIENT
) -> None:
    """Send ``raw`` to the request address as the LGWAN-side Postfix would (XFORWARD)."""
    with gateway.smtp() as smtp:
        smtp.ehlo("lgwan-mx.city.example.lg.jp")
        code, _ = smtp.docmd("XFORWARD", f"ADDR={client}")
        assert code == 250
        smtp.sendmail(sender, [DESK], raw)


def request(
    gateway: RunningGateway,
    sender: str,
    subject: str,
    body: str,
    *,
    header_from: str | None = None,
    client: str = INTERNAL_CLIENT,
) -> None:
    send_request(gateway, sender, request_mail(sender, subject, body, header_from), client)


def replies_to(sink: SmtpSink, address: str) -> list[email.message.Message]:
    return [m for m in delivered_to(sink, address) if m["Auto-Submitted"] == "auto-replied"]


def subject_of(message: email.message.Message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def test_notice_names_reference_and_request_address(chain):
    gateway, sink, _ = chain
    recipient = staff()
    msg = EmailMessage()
    msg["From"] = PARTNER
    msg["To"] = recipient
    msg["Subject"] = "ご案内"
    msg.set_content("詳細はこちら https://partner.example/info\n", charset="iso-2022-jp")
    msg.add_alternative("<p>詳細は<a href='https://partner.example/info'>こちら</a></p>", "html")
    send(gateway, PARTNER, recipient, msg.as_bytes())
    [delivered] = delivered_to(sink, recipient)
    reference = delivered["X-Mugaika-Reference"]
    assert reference
    notice = texts(delivered)
    assert f"件名に参照番号 {reference} を書いて {DESK} 宛てに" in notice
    assert "パスワード：（パスワード）" in notice


def test_request_address_is_refused_from_outside_and_never_relayed(chain):
    gateway, sink, _ = chain
    before = len(sink.messages)
    with gateway.smtp() as smtp:
        smtp.ehlo("mx.partner.example")
        smtp.mail(PARTNER)
        code, text = smtp.rcpt(DESK)
    assert (code, text[:5]) == (550, b"5.7.1")
    # From inside, with another recipient in the same transaction: 452, send it separately.
    with gateway.smtp() as smtp:
        smtp.ehlo("lgwan-mx.city.example.lg.jp")
        smtp.docmd("XFORWARD", f"ADDR={INTERNAL_CLIENT}")
        smtp.mail(staff())
        assert smtp.rcpt(DESK)[0] == 250
        assert smtp.rcpt(staff())[0] == 452
    assert len(sink.messages) == before
    assert not [m for m in sink.messages if DESK in m.rcpt_tos]


def test_request_from_someone_not_a_recipient_reveals_nothing(chain):
    gateway, sink, _ = chain
    recipient, outsider = staff(), staff()
    item = hold(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    request(gateway, outsider, f"参照番号 {item}", "業務で必要です\n")
    request(gateway, outsider, f"参照番号 {item}", f"パスワード：{PASSWORD}\n")
    request(gateway, outsider, "参照番号 20990101-ABCDEFGH", "業務で必要です\n")
    # Someone forging the envelope sender of a recipient: From: differs, so not honoured.
    request(gateway, recipient, f"参照番号 {item}", "業務で必要です\n", header_from=outsider)
    answers = replies_to(sink, outsider) + replies_to(sink, recipient)
    assert len(answers) == 4
    bodies = {texts(m) for m in answers}
    assert len(bodies) == 1  # the same words for an unknown id and someone else's item
    [body] = bodies
    assert item not in body
    assert "見積" not in body
    assert PARTNER not in body
    assert {subject_of(m) for m in answers} == {"【ご依頼について】"}
    store = gateway.server.store
    assert store.get(item).summary.status == "held"
    assert store.requests(status=None, item_id=item) == []
    assert not [m for m in delivered_to(sink, recipient) if attachments(m)]
    assert gateway.metric("mugaika_requests_total", {"kind": "original", "result": "unknown"}) >= 3


def test_original_request_flows_through_two_person_approval(chain):
    from quarantine.release import decide_request
    from quarantine.users import Actor

    gateway, sink, _ = chain
    recipient = staff()
    item = hold(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    request(gateway, recipient, f"Re: 原本の請求 {item}", "取引先との契約書のため必要です\n")
    [ack] = replies_to(sink, recipient)
    assert f"参照番号 {item} の原本の請求を受け付けました" in texts(ack)
    store = gateway.server.store
    [pending] = store.requests(status="pending", item_id=item)
    assert pending.requested_by == f"mail:{recipient}"
    assert pending.reason == "by mail: 取引先との契約書のため必要です"
    # The same request again: already pending, nothing new.
    request(gateway, recipient, f"Re: 原本の請求 {item}", "取引先との契約書のため必要です\n")
    assert "すでに受け付けており" in texts(replies_to(sink, recipient)[-1])
    assert len(store.requests(status=None, item_id=item)) == 1

    approver = Actor("approver-sato", "approver", remote="127.0.0.1")
    config = gateway.server.config
    gateway.call(
        decide_request(
            store,
            gateway.server.downstream,
            pending.id,
            approver,
            True,
            "契約書の確認のため承認",
            config.requests,
        )
    )
    released = [m for m in delivered_to(sink, recipient) if attachments(m)]
    assert [list(attachments(m)) for m in released] == [["お見積書.zip"]]  # the original
    assert released[0]["X-Mugaika-Released-By"] == "approver-sato"
    result = replies_to(sink, recipient)[-1]
    assert "承認され、原本をあなた宛てにお届けしました" in texts(result)
    assert store.get(item).summary.status == "released"
    actions = [e.action for e in store.audit_entries(item_id=item)[0]]
    assert {"request-mail-queued", "release-requested", "request-approved", "released"} <= set(
        actions
    )
    assert "request-result-mailed" in actions


def test_original_request_by_mail_is_approved_in_the_admin_ui(chain):
    """The whole flow with both real ends: staff ask by mail, an approver decides in the
    admin UI over HTTP (login, CSRF, the /requests queue), the result arrives by mail."""
    from types import SimpleNamespace

    from quarantine.users import UserStore
    from quarantine.web.service import AdminService
    from tests.quarantine.test_web import PASSWORD as UI_PASSWORD
    from tests.quarantine.test_web import csrf, login

    gateway, sink, _ = chain
    recipient = staff()
    item = hold(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    request(gateway, recipient, f"原本の請求 {item}", "監査の資料として必要です\n")
    [pending] = gateway.server.store.requests(status="pending", item_id=item)
    UserStore(gateway.server.store.engine).add("approver-ui", "approver", [], UI_PASSWORD)
    [service] = [s for s in gateway.server.services if isinstance(s, AdminService)]
    assert service.bound is not None
    ui = SimpleNamespace(url=f"http://127.0.0.1:{service.bound[1]}")
    approver = login(ui, "approver-ui")  # type: ignore[arg-type]
    queue = approver.get(f"{ui.url}/requests", timeout=10).text
    assert "監査の資料として必要です" in queue
    assert f"mail:{recipient}" in queue
    response = approver.post(
        f"{ui.url}/requests/{pending.id}/approve",
        data={"csrf": csrf(approver, ui, "/requests"), "reason": "監査のため承認"},  # type: ignore[arg-type]
        timeout=30,
    )
    assert response.status_code == 200, response.text[:300]
    released = [m for m in delivered_to(sink, recipient) if attachments(m)]
    assert [list(attachments(m)) for m in released] == [["お見積書.zip"]]
    assert released[0]["X-Mugaika-Released-By"] == "approver-ui"
    assert "承認され、原本をあなた宛てにお届けしました" in texts(replies_to(sink, recipient)[-1])
    assert gateway.server.store.get_request(pending.id).status == "done"


def test_refused_request_gets_the_result_by_mail(chain):
    from quarantine.release import decide_request
    from quarantine.users import Actor

    gateway, sink, _ = chain
    recipient = staff()
    item = hold(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    request(gateway, recipient, item, "念のため\n")
    [pending] = gateway.server.store.requests(status="pending", item_id=item)
    approver = Actor("approver-sato", "approver", remote="127.0.0.1")
    gateway.call(
        decide_request(
            gateway.server.store,
            gateway.server.downstream,
            pending.id,
            approver,
            False,
            "差出人に再送を依頼してください",
            gateway.server.config.requests,
        )
    )
    result = replies_to(sink, recipient)[-1]
    assert "承認されませんでした" in texts(result)
    assert "差出人に再送を依頼してください" in texts(result)
    assert gateway.server.store.get(item).summary.status == "held"


def test_password_by_request_mail_opens_the_archive(chain):
    gateway, sink, data = chain
    recipient = staff()
    content = "見積金額は別紙のとおりです。詳細 https://evil.example/pay\n".encode()
    item = hold(chain, recipient, hostile.zipcrypto_zip(PASSWORD.encode(), content))
    request(gateway, recipient, f"参照番号 {item}", f"パスワード：{PASSWORD}\n")
    [unlocked] = [m for m in delivered_to(sink, recipient) if attachments(m)]
    files = attachments(unlocked)
    assert list(files) == ["請求書.txt"]
    assert b"hxxps://evil[.]example/pay" in files["請求書.txt"]
    [reply] = replies_to(sink, recipient)
    assert "パスワード付き圧縮ファイルを開き" in texts(reply)
    assert PASSWORD not in texts(reply)
    store = gateway.server.store
    assert store.get(item).summary.status == "released"
    assert files_holding(data, PASSWORD.encode()) == []
    assert gateway.metric("mugaika_requests_total", {"kind": "password", "result": "delivered"})


def test_wrong_password_by_request_gets_a_reply_then_locks(chain):
    gateway, sink, _ = chain
    recipient = staff()
    item = hold(chain, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    store = gateway.server.store
    request(gateway, recipient, f"参照番号 {item}", "パスワード：wrong-1\n")
    assert "あと 1 回まで試せます" in texts(replies_to(sink, recipient)[-1])
    request(gateway, recipient, f"参照番号 {item}", "パスワード：wrong-2\n")
    assert "メールでは開けなくなりました" in texts(replies_to(sink, recipient)[-1])
    request(gateway, recipient, f"参照番号 {item}", f"パスワード：{PASSWORD}\n")
    assert "メールでは開けなくなりました" in texts(replies_to(sink, recipient)[-1])
    assert not [m for m in delivered_to(sink, recipient) if attachments(m)]
    assert store.get(item).summary.status == "held"
    assert store.password_wait(item) == {"status": "locked", "wrong": 2}


def test_requests_are_rate_limited_per_address(chain):
    gateway, sink, _ = chain
    recipient = staff()
    for _ in range(5):
        request(gateway, recipient, "参照番号 20990101-ABCDEFGH", "必要です\n")
    assert len(replies_to(sink, recipient)) == 3  # requests.max_per_address
    labels = {"kind": "original", "result": "rate-limited"}
    assert gateway.metric("mugaika_requests_total", labels) >= 2


def test_password_by_request_does_not_open_what_is_held_for_more(chain):
    gateway, sink, _ = chain
    recipient = staff()
    msg = archive_mail(recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    msg.add_attachment(
        hostile.pe_bytes(), maintype="application", subtype="octet-stream", filename="setup.exe"
    )
    send(gateway, PARTNER, recipient, msg.as_bytes())
    item = held_item(gateway, recipient)
    request(gateway, recipient, f"参照番号 {item}", f"パスワード：{PASSWORD}\n")
    [reply] = replies_to(sink, recipient)
    assert "パスワード付き圧縮ファイル以外の理由でも保留されて" in texts(reply)
    assert not [m for m in delivered_to(sink, recipient) if attachments(m)]
    assert gateway.server.store.get(item).summary.status == "held"
