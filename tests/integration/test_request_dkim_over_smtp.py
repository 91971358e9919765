"""Request mails and DKIM (issue 17: "honoured only when its envelope sender and its
DKIM/DMARC-aligned From: is one of the original recipients"), over real SMTP.

A real gateway with ``requests.require_dkim`` on or off, whose resolver asks a real DNS server
on loopback (``auth.nameservers`` + ``auth.dns_port``) for the keys of the tenant's mail server
(``city.example.lg.jp``) and of a partner. Request mails are signed with dkimpy as the LGWAN-side
server would sign them, then sent as that server would relay them (XFORWARD).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from tests.auth.auth_helpers import rsa_key
from tests.auth.dns_server import DnsServer
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink
from tests.integration.test_ppap_over_smtp import PASSWORD, aes_zip, attachments, delivered_to
from tests.integration.test_requests_over_smtp import (
    hold,
    replies_to,
    request_mail,
    send_request,
    staff,
    subject_of,
    texts,
)

pytestmark = pytest.mark.slow

TENANT = "city.example.lg.jp"
SELECTOR = "lgwan2026"


def signed(
    raw: bytes, domain: str = TENANT, key: str = "request-tenant", selector: str = SELECTOR
) -> bytes:
    """``raw`` with a DKIM-Signature of ``domain`` (relaxed/relaxed, as Postfix+OpenDKIM do)."""
    pem, _ = rsa_key(key)
    header = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    return header + raw


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    zone = {
        (f"{SELECTOR}._domainkey.{TENANT}", "TXT"): [rsa_key("request-tenant")[1]],
        (f"{SELECTOR}._domainkey.partner.example", "TXT"): [rsa_key("request-partner")[1]],
    }
    with DnsServer(zone, silent=[f"silent._domainkey.{TENANT}"]) as server:
        yield server


def _gateway(data: Path, sink: SmtpSink, dns: DnsServer, require_dkim: bool) -> RunningGateway:
    config = make_config(
        data,
        downstream=sink.address,
        **{
            "auth.enabled": False,  # the request desk checks DKIM whatever the inbound checks do
            "auth.nameservers": ["127.0.0.1"],
            "auth.dns_port": dns.port,
            "auth.dns_timeout": 1.0,
            "tenants": {TENANT: {"name": "例市"}},
            "quarantine.release.originals": "two_person",
            "requests.address": "mugaika-request@gw.city.example.lg.jp",
            "requests.internal_networks": ["10.0.0.0/8"],
            "requests.require_dkim": require_dkim,
        },
    )
    return RunningGateway(config)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, dns: DnsServer):
    """``requests.require_dkim: true``."""
    with SmtpSink() as sink:
        data = tmp_path_factory.mktemp("require-dkim")
        with _gateway(data, sink, dns, require_dkim=True) as gateway:
            yield gateway, sink, data


@pytest.fixture(scope="module")
def lenient(tmp_path_factory: pytest.TempPathFactory, dns: DnsServer):
    """``requests.require_dkim: false`` (the default)."""
    with SmtpSink() as sink:
        data = tmp_path_factory.mktemp("no-require-dkim")
        with _gateway(data, sink, dns, require_dkim=False) as gateway:
            yield gateway, sink, data


def _original_request(recipient: str, item: str) -> bytes:
    return request_mail(recipient, f"原本の請求 {item}", "取引先との契約書のため必要です\n")


def _tampered(raw: bytes) -> bytes:
    """The signed mail with one body line changed after signing (a replayed, edited request)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    changed = body.replace(b"\r\n", b" \r\nX", 1)
    assert changed != body
    return head + b"\r\n\r\n" + changed


def _assert_refused_politely(chain, recipient: str, item: str) -> None:
    gateway, sink, _ = chain
    [answer] = replies_to(sink, recipient)
    assert subject_of(answer) == "【ご依頼について】"
    assert "このご依頼にはお応えできませんでした" in texts(answer)
    assert item not in texts(answer)
    store = gateway.server.store
    assert store.requests(status=None, item_id=item) == []
    assert store.get(item).summary.status == "held"
    entries, _ = store.audit_entries(actor=f"mail:{recipient}")
    assert [e.action for e in entries] == ["request-mail-unverified"]
    assert entries[0].item_id is None  # refused before the item was looked at


def test_a_validly_signed_request_is_honoured(strict):
    gateway, sink, _ = strict
    recipient = staff()
    item = hold(strict, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    send_request(gateway, recipient, signed(_original_request(recipient, item)))
    [ack] = replies_to(sink, recipient)
    assert f"参照番号 {item} の原本の請求を受け付けました" in texts(ack)
    [pending] = gateway.server.store.requests(status="pending", item_id=item)
    assert pending.requested_by == f"mail:{recipient}"


def test_a_validly_signed_password_opens_the_archive(strict):
    gateway, sink, _ = strict
    recipient = staff()
    item = hold(strict, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    raw = request_mail(recipient, f"参照番号 {item}", f"パスワード：{PASSWORD}\n")
    send_request(gateway, recipient, signed(raw))
    assert [list(attachments(m)) for m in delivered_to(sink, recipient) if attachments(m)]
    assert gateway.server.store.get(item).summary.status == "released"


def test_an_unsigned_request_is_refused_politely(strict):
    gateway, _, _ = strict
    recipient = staff()
    item = hold(strict, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    send_request(gateway, recipient, _original_request(recipient, item))
    _assert_refused_politely(strict, recipient, item)
    labels = {"kind": "original", "result": "unverified"}
    assert gateway.metric("mugaika_requests_total", labels) >= 1


def test_a_request_signed_by_another_domain_is_refused(strict):
    gateway, _, _ = strict
    recipient = staff()
    item = hold(strict, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    raw = signed(_original_request(recipient, item), "partner.example", "request-partner")
    send_request(gateway, recipient, raw)
    _assert_refused_politely(strict, recipient, item)


def test_a_request_whose_body_changed_after_signing_is_refused(strict):
    gateway, _, _ = strict
    recipient = staff()
    item = hold(strict, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    send_request(gateway, recipient, _tampered(signed(_original_request(recipient, item))))
    _assert_refused_politely(strict, recipient, item)


def test_a_signature_of_the_from_domain_without_a_published_key_is_refused(strict):
    gateway, _, _ = strict
    recipient = staff()
    item = hold(strict, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    raw = signed(_original_request(recipient, item), key="unpublished", selector="unpublished")
    send_request(gateway, recipient, raw)
    _assert_refused_politely(strict, recipient, item)


def test_a_key_that_cannot_be_fetched_asks_to_try_again_later(strict):
    gateway, sink, _ = strict
    recipient = staff()
    item = hold(strict, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    raw = signed(_original_request(recipient, item), selector="silent")
    send_request(gateway, recipient, raw)
    [answer] = replies_to(sink, recipient)
    assert subject_of(answer) == f"【一時的な失敗】{item}"  # the id the requester wrote
    assert "しばらくしてから、もう一度送ってください" in texts(answer)
    assert gateway.server.store.requests(status=None, item_id=item) == []


def test_without_require_dkim_an_unsigned_request_is_honoured(lenient):
    gateway, sink, _ = lenient
    recipient = staff()
    item = hold(lenient, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    send_request(gateway, recipient, _original_request(recipient, item))
    assert "原本の請求を受け付けました" in texts(replies_to(sink, recipient)[-1])
    assert len(gateway.server.store.requests(status="pending", item_id=item)) == 1


def test_without_require_dkim_a_broken_signature_of_the_from_domain_is_refused(lenient):
    gateway, _, _ = lenient
    recipient = staff()
    item = hold(lenient, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    send_request(gateway, recipient, _tampered(signed(_original_request(recipient, item))))
    _assert_refused_politely(lenient, recipient, item)


def test_without_require_dkim_a_broken_signature_of_another_domain_is_ignored(lenient):
    """A signature that does not claim the From: domain says nothing about the requester
    (a list or a forwarder may have signed and then something changed the mail)."""
    gateway, sink, _ = lenient
    recipient = staff()
    item = hold(lenient, recipient, aes_zip(PASSWORD, {"memo.txt": b"memo\n"}))
    raw = signed(_original_request(recipient, item), "partner.example", "request-partner")
    send_request(gateway, recipient, _tampered(raw))
    assert "原本の請求を受け付けました" in texts(replies_to(sink, recipient)[-1])
