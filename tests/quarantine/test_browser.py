"""The admin UI in real headless Chromium (Debian's, driven by Playwright).

A real gateway process, with the shipped pipeline and default policy, quarantines a message
received over SMTP (a program disguised as a PDF); an admin logs in, finds it, reads the
detail page, releases its sanitized copy, and that copy arrives at a real SMTP sink without
the program; the audit log shows the release. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import base64
import smtplib
from pathlib import Path

import pytest

from quarantine.sql import ItemQuery, open_store
from quarantine.users import UserStore
from tests.helpers.smtp_sink import SmtpSink
from tests.quarantine.conftest import make_config
from tests.quarantine.test_durability import Gateway

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "correct horse battery"
PROGRAM = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
MESSAGE = (
    (
        "From: =?UTF-8?B?57eP5YuZ6Kqy?= <soumu@example.com>\r\n"
        "To: tanaka@city.example.lg.jp\r\n"
        "Subject: =?UTF-8?B?44CQ6KuL5rGC5pu444CR5LuK5pyI5YiG44Gu44GU6KuL5rGC?=\r\n"
        "Message-ID: <browser-test@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        '<p>いつもお世話になっております。<a href="http://evil.example/">請求書</a></p>\r\n'
        '--b\r\nContent-Type: application/pdf; name="invoice.pdf.exe"\r\n'
        'Content-Disposition: attachment; filename="invoice.pdf.exe"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    + base64.encodebytes(PROGRAM).replace(b"\n", b"\r\n")
    + b"--b--\r\n"
)

pytestmark = [pytest.mark.chromium, pytest.mark.slow]


def test_find_release_and_audit_in_chromium(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    with SmtpSink() as sink:
        gateway = Gateway(
            tmp_path, None, admin=True, downstream=f"{sink.host}:{sink.port}", real_pipeline=True
        )
        try:
            store = open_store(make_config(tmp_path / "data"))
            UserStore(store.engine).add("admin", "superadmin", [], PASSWORD, "ja")
            with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
                refused = client.sendmail(
                    "soumu@example.com", ["tanaka@city.example.lg.jp"], MESSAGE
                )
            assert refused == {}
            [item] = store.list(ItemQuery()).items
            assert item.status == "held"
            assert sink.messages == []  # held, not delivered

            base = f"http://127.0.0.1:{gateway.admin_port}"
            page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="ja-JP")
            page.goto(f"{base}/items")
            assert page.url.startswith(f"{base}/login")
            page.screenshot(path=str(ARTIFACTS / "login.png"))
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert page.url == f"{base}/items", page.url
            page.fill("input[name=q]", "請求")
            page.click("form.filters button[type=submit]")
            page.wait_for_load_state()
            page.screenshot(path=str(ARTIFACTS / "list.png"), full_page=True)
            link = page.locator("td.subject a").first
            assert "今月分のご請求" in link.inner_text()
            link.click()
            page.wait_for_url(f"{base}/items/{item.id}")
            # The HTML body is shown as text: its link is not a link.
            assert page.locator("a[href^='http://evil']").count() == 0
            assert "http://evil.example/" in page.locator("pre.preview").first.inner_text()
            assert "invoice.pdf.exe" in page.content()
            page.screenshot(path=str(ARTIFACTS / "detail.png"), full_page=True)
            page.check("form[action$='/release'] input[name=target][value=sanitized]")
            page.fill("form[action$='/release'] input[name=reason]", "受信者に確認済み")
            page.click("form[action$='/release'] button[type=submit]")
            page.wait_for_selector("p.flash.ok")
            assert "解放しました" in page.locator("p.flash.ok").inner_text()
            [received] = sink.wait_for(1)
            assert received.rcpt_tos == ["tanaka@city.example.lg.jp"]
            assert b"X-Mugaika-Released-By: admin" in received.data
            # The sanitized copy: the program is not in it, the link is not a link.
            assert PROGRAM not in received.data
            assert base64.encodebytes(PROGRAM)[:40] not in received.data
            assert b"Message-ID: <browser-test@example.com>" in received.data
            # The released copy describes itself, not its arrival (issue 12).
            assert b"X-Mugaika-Verdict: released\r\n" in received.data
            assert b"X-Mugaika-Verdict: quarantine" not in received.data
            assert b"stripped=1" in received.data
            page.goto(f"{base}/audit")
            released = page.locator("table.audit tbody tr", has_text="released")
            assert released.count() == 1
            assert item.id in released.inner_text()
            assert "受信者に確認済み" in released.inner_text()
            page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)
            # Language switch to English, kept for the user.
            page.click("header form[action='/language'] button")
            page.wait_for_load_state()
            assert "Audit log" in page.content()
        finally:
            gateway.stop()


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_releasing_an_original_asks_for_confirmation_in_chromium(browser, admin, sink) -> None:  # type: ignore[no-untyped-def]
    """No script runs (the CSP allows none): the confirmation is a page of its own, and the
    list's bulk action starts on the sanitized copy."""
    from tests.quarantine.conftest import hold_request

    UserStore(admin.store.engine).add("admin", "superadmin", [], PASSWORD, "ja")
    items = []
    for _ in range(2):
        request = hold_request(
            recipients=("tanaka@city.example.lg.jp",),
            raw=MESSAGE,
            sanitized=b"Subject: s\r\n\r\nSANITIZED-COPY\r\n",
        )
        admin.store.hold(request)
        items.append(request.reference_id)
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="ja-JP")
    page.goto(f"{admin.url}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin.url}/items")
    assert page.locator("select[name=action]").input_value() == "release-sanitized"

    page.goto(f"{admin.url}/items/{items[0]}")
    assert page.locator("input[name=target][value=sanitized]").is_checked()
    page.check("form[action$='/release'] input[name=target][value=original]")
    page.fill("form[action$='/release'] input[name=reason]", "受信者に確認済み")
    page.click("form[action$='/release'] button[type=submit]")
    page.wait_for_selector("form.confirm")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "confirm.png"), full_page=True)
    shown = page.locator("table.confirm").inner_text()
    assert items[0] in shown
    assert "原本" in shown
    assert "tanaka@city.example.lg.jp" in shown
    assert "OOXML_VBA_MACRO" in shown  # why it was held
    assert "<script" not in page.content()
    assert sink.messages == []  # nothing leaves before the second, deliberate click
    page.click("form.confirm button[type=submit]")
    page.wait_for_selector("p.flash.ok")
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ["tanaka@city.example.lg.jp"]
    assert base64.encodebytes(PROGRAM)[:40].replace(b"\n", b"") in received.data

    # The confirmation's cancel link sends nothing.
    page.goto(f"{admin.url}/items/{items[1]}")
    page.check("form[action$='/release'] input[name=target][value=original]")
    page.fill("form[action$='/release'] input[name=reason]", "やめる")
    page.click("form[action$='/release'] button[type=submit]")
    page.wait_for_selector("form.confirm")
    page.click("form.confirm a")
    page.wait_for_url(f"{admin.url}/items/{items[1]}")
    assert len(sink.messages) == 1
    assert admin.store.get(items[1]).summary.status == "held"
