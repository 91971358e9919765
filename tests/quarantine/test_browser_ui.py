"""The admin UI as a Japanese municipal operator uses it, measured in real Chromium (issue 16).

Debian's Chromium (Playwright, no browser download) with Japanese fonts (Debian's
``fonts-noto-cjk``, installed by ``./run-tests``: without them every character is a box and
layout measurements mean nothing, so the layout test skips). Each test says what it proves:

- layout at 1280×800 and 1920×1080: no horizontal overflow, the header bar as wide as the
  page, status badges on one line, file names not broken inside a word;
- times in the configured zone (``time_zone``), with the zone named;
- errors in the user's language (the 409 names the force option), the language switch on an
  error page of a POST, a 405 page instead of raw JSON, reasons in words;
- held messages and retained originals counted apart, as the metric counts them;
- accessibility: axe-core (``tests/package.json``) finds no serious or critical violation on
  any page, and the keyboard reaches everything from the skip link on.
"""

from __future__ import annotations

import datetime
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.message import ClientInfo, Envelope, Recipient
from gateway.report import AttachmentRecord, Report, Verdict
from quarantine.sql import SqlStore
from quarantine.store import HoldRequest
from quarantine.summary import summarize
from quarantine.users import UserStore
from tests.quarantine.conftest import RunningAdmin

pytestmark = [pytest.mark.chromium, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
AXE = ROOT / "tests" / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "correct horse battery"
CITY = "city.example.lg.jp"
# 2026-11-25 05:03:07 UTC is 14:03:07 in Tokyo.
RECEIVED = datetime.datetime(2026, 11, 25, 5, 3, 7, tzinfo=datetime.UTC)


def japanese_fonts() -> bool:
    if shutil.which("fc-list") is None:
        return False
    found = subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True, check=False)
    return bool(found.stdout.strip())


def mail(subject: str, sender: str, to: str, filename: str, body: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        "Message-ID: <ui-test@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        f'--b\r\nContent-Type: application/octet-stream; name="{filename}"\r\n'
        "Content-Disposition: attachment\r\n\r\nMZ\r\n--b--\r\n"
    ).encode()


def hold(
    store: SqlStore,
    reference: str,
    *,
    subject: str = "【至急】令和8年度 予算要求資料の提出について（総務課）",
    sender: str = "keiri-tantou.yamada-taro@long-department-name.example.co.jp",
    recipients: tuple[str, ...] = (f"tanaka.ichiro@{CITY}", f"suzuki.hanako@{CITY}"),
    filename: str = "見積書.pdf",
    reasons: tuple[str, ...] = ("attachment policy: executable is quarantined",),
    kind: str = "quarantined",
    sanitized: bytes | None = None,
    received: datetime.datetime = RECEIVED,
) -> str:
    report = Report(queue_id="Q1", reference_id=reference)
    report.add_finding("EXECUTABLE", "2", "PE32 executable")
    report.attachments.append(
        AttachmentRecord(
            part_id="2",
            untrusted_filename=filename,
            declared_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            detected_type="application/x-dosexec",
            sha256="0" * 64,
            size=4_200_000,
            action="held",
            reason="DOUBLE_EXTENSION,EXECUTABLE,TYPE_MISMATCH,FILENAME_BIDI_CONTROL",
        )
    )
    for reason in reasons:
        report.raise_verdict(Verdict.QUARANTINE, reason)
    raw = mail(subject, sender, ", ".join(recipients), filename, "いつもお世話になっております。")
    envelope = Envelope(
        queue_id="Q1",
        mail_from=sender,
        recipients=tuple(Recipient(r) for r in recipients),
        client=ClientInfo(address="192.0.2.7", helo="mx.example.com", name="mx.example.com"),
        received_at=received.timestamp(),
    )
    summary = summarize(raw)
    store.hold(
        HoldRequest(reference, kind, envelope, raw, report, sanitized, summary)  # type: ignore[arg-type]
    )
    return reference


def fill(store: SqlStore) -> list[str]:
    """Three held messages, two retained originals, one released: Japanese subjects, long
    addresses, long MIME types, a Japanese file name."""
    ids = [
        hold(store, "20261125-HELD0001"),
        hold(
            store,
            "20261125-HELD0002",
            subject="Re: 打合せ日程の件",
            filename="【重要】令和8年度予算要求資料（最終版）.xlsx",
            reasons=("attachment could not be made harmless (WORKER_TIMEOUT)",),
        ),
        hold(
            store,
            "20261125-HELD0003",
            subject="FW:Re:【ご確認】請求書_2026年度第3四半期_最終確定版_v2_修正済み_送付のお願い",
            filename="請求書.pdf",
            reasons=(
                "attachment policy: executable is quarantined",
                "内部ドメインを騙る外部からのメール (sender claims an internal domain)",
                "OOXML_VBA_MACRO",
            ),
            recipients=tuple(f"shokuin{n:02d}.kikakuseisaku-ka@{CITY}" for n in range(6)),
        ),
        hold(
            store,
            "20261125-KEEP0001",
            kind="retained",
            sanitized=b"Subject: s\r\n\r\nsanitized\r\n",
            reasons=(),
        ),
        hold(
            store,
            "20261125-KEEP0002",
            kind="retained",
            sanitized=b"Subject: s\r\n\r\nsanitized\r\n",
            reasons=(),
        ),
        hold(
            store,
            "20261125-DONE0001",
            sanitized=b"Subject: s\r\n\r\nsanitized copy\r\n",
            reasons=(),
        ),
    ]
    return ids


def logged_in(browser: Any, admin: RunningAdmin, **context: Any) -> Any:
    page = browser.new_context(locale="ja-JP", **context).new_page()
    page.goto(f"{admin.url}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin.url}/items")
    return page


@pytest.fixture
def filled(admin: RunningAdmin) -> list[str]:
    UserStore(admin.store.engine).add("admin", "superadmin", [], PASSWORD, "ja")
    return fill(admin.store)


OVERFLOW = """() => ({
  page: document.documentElement.scrollWidth,
  window: window.innerWidth,
  bar: document.querySelector('header.bar').getBoundingClientRect().width,
})"""

# Lines a piece of text occupies: distinct tops of its line boxes.
LINES = """(element) => {
  const range = document.createRange();
  range.selectNodeContents(element);
  const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
  return tops.size;
}"""


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)], ids=["1280x800", "1920x1080"])
def test_layout_with_japanese_text(browser, admin, filled, size) -> None:  # type: ignore[no-untyped-def]
    if not japanese_fonts():
        pytest.skip("no Japanese font (Debian fonts-noto-cjk): Chromium would draw boxes")
    width, height = size
    admin.store.claim  # noqa: B018 - the store is ready
    page = logged_in(browser, admin, viewport={"width": width, "height": height})
    ARTIFACTS.mkdir(exist_ok=True)
    for path in ("/items", f"/items/{filled[1]}", "/audit", "/requests"):
        page.goto(f"{admin.url}{path}")
        measured = page.evaluate(OVERFLOW)
        assert measured["page"] <= measured["window"], (path, measured)
        assert measured["bar"] == measured["page"], (path, measured)
        for badge in page.locator(".badge").all():
            assert page.evaluate(LINES, badge.element_handle()) == 1, badge.inner_text()
            box = badge.bounding_box()
            assert box is not None
            assert box["height"] < 30, (badge.inner_text(), box)
        name = path.strip("/").replace("/", "-") or "items"
        page.screenshot(path=str(ARTIFACTS / f"layout-{width}-{name}.png"), full_page=True)
    page.goto(f"{admin.url}/items")
    badges = page.locator("td.badges .badge")
    assert badges.count() >= 6
    assert "保留中" in badges.first.inner_text()
    # File names: one line when the column has room (never 見積/書.pdf).
    page.goto(f"{admin.url}/items/{filled[0]}")
    filename = page.locator("td.filename", has_text="見積書.pdf")
    assert page.evaluate(LINES, filename.element_handle()) == 1
    page.goto(f"{admin.url}/items/{filled[1]}")
    long_name = page.locator("td.filename").first
    text = long_name.inner_text()
    assert text == "【重要】令和8年度予算要求資料（最終版）.xlsx"
    # Where a long name must wrap, it wraps at a word boundary of the name, not inside 予算.
    lines = page.evaluate(
        """(element) => {
          const text = element.firstChild; const out = []; let top = null; let line = '';
          for (let i = 0; i < text.length; i++) {
            const r = document.createRange(); r.setStart(text, i); r.setEnd(text, i + 1);
            const t = Math.round(r.getClientRects()[0].top);
            if (top !== null && t !== top) { out.push(line); line = ''; }
            top = t; line += text.data[i];
          }
          out.push(line); return out;
        }""",
        long_name.element_handle(),
    )
    for first, second in itertools.pairwise(lines):
        assert (first[-1], second[0]) not in {("予", "算"), ("見", "積"), ("資", "料")}, lines


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_times_in_the_configured_zone(browser, admin_factory) -> None:  # type: ignore[no-untyped-def]
    for zone, shown, seconds in (
        ("Asia/Tokyo", "2026-11-25 14:03 JST", "2026-11-25 14:03:07 JST"),
        ("UTC", "2026-11-25 05:03 UTC", "2026-11-25 05:03:07 UTC"),
    ):
        admin = admin_factory(time_zone=zone)
        if zone == "Asia/Tokyo":
            UserStore(admin.store.engine).add("admin", "superadmin", [], PASSWORD, "ja")
            hold(admin.store, "20261125-TIME0001")
        page = logged_in(browser, admin, viewport={"width": 1280, "height": 800})
        assert page.locator("td.when").first.inner_text() == shown
        assert zone in page.locator("footer").inner_text()
        assert "+0000" not in page.content()
        page.goto(f"{admin.url}/items/20261125-TIME0001")
        assert seconds in page.locator("section.card dl").first.inner_text()
        page.context.close()
    # Stored in UTC whatever is shown.
    stored = admin.store.get("20261125-TIME0001").summary.received_at
    assert stored == RECEIVED
    assert stored.utcoffset() == datetime.timedelta(0)


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_errors_and_reasons_in_the_users_language(browser, admin, filled, sink) -> None:  # type: ignore[no-untyped-def]
    done = filled[5]
    page = logged_in(browser, admin, viewport={"width": 1280, "height": 800})
    # Reasons in words, the recorded text beside them.
    page.goto(f"{admin.url}/items/{filled[0]}")
    reasons = page.locator("ul.reasons").inner_text()
    assert "添付ファイルの方針により保留（実行ファイル）" in reasons
    assert "実行ファイル（プログラム）" in page.locator("table.findings").inner_text()
    # Release the sanitized copy once, then again without force: the 409 in Japanese.
    for _attempt in range(2):
        page.goto(f"{admin.url}/items/{done}")
        page.check("form[action$='/release'] input[name=target][value=sanitized]")
        page.fill("form[action$='/release'] input[name=reason]", "受信者に確認済み")
        page.click("form[action$='/release'] button[type=submit]")
        page.wait_for_load_state()
    assert page.url == f"{admin.url}/items/{done}/release"
    error = page.locator("p.flash.error").inner_text()
    assert "既に解放済み" in error
    assert "--force" in error
    assert "強制" in error
    assert "already" not in error
    # Switching language on this error page of a POST lands on a page a GET shows.
    page.click("header form[action='/language'] button")
    page.wait_for_load_state()
    assert page.url == f"{admin.url}/items/{done}", page.url
    assert "METHOD_NOT_ALLOWED" not in page.content()
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Released" in page.locator("h1 + p.ref").inner_text()
    # The same error in English names the force option too.
    page.fill("form[action$='/release'] input[name=reason]", "checked")
    page.check("form[action$='/release'] input[name=target][value=sanitized]")
    page.click("form[action$='/release'] button[type=submit]")
    page.wait_for_load_state()
    error = page.locator("p.flash.error").inner_text()
    assert "already released" in error
    assert "--force" in error
    # A POST route opened with GET: a page in the user's language, not raw JSON.
    response = page.goto(f"{admin.url}/items/{done}/release")
    assert response is not None
    assert response.status == 405
    assert response.headers["content-type"].startswith("text/html")
    assert "start again from the list" in page.locator("p.flash.error").inner_text().lower()
    page.click("header form[action='/language'] button")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "ja"
    assert "METHOD_NOT_ALLOWED" not in page.content()
    assert len(sink.messages) == 1


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_held_messages_and_retained_originals_are_counted_apart(browser, admin, filled) -> None:  # type: ignore[no-untyped-def]
    page = logged_in(browser, admin, viewport={"width": 1280, "height": 800})
    labels = page.locator(".tile .label").all_inner_texts()
    tiles = dict(zip(labels, page.locator(".tile .n").all_inner_texts(), strict=True))
    assert tiles["保留中のメール"] == "4"  # three held + the one not yet released
    assert tiles["保管中の原本"] == "2"
    # The metric counts held messages only: the same number.
    backlog = sum(row.items for row in admin.store.backlog())
    assert backlog == 4
    page.click(".tile.retained")
    page.wait_for_load_state()
    shown = page.locator("td.subject .ref").all_inner_texts()
    assert sorted(shown) == ["20261125-KEEP0001", "20261125-KEEP0002"]


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_accessibility_axe_and_keyboard(browser, admin, filled) -> None:  # type: ignore[no-untyped-def]
    if not AXE.exists():
        pytest.skip("axe-core not installed: run ./run-tests (npm ci --prefix tests)")
    # axe is injected by the test: the UI's CSP allows no script, so the test bypasses it.
    context = browser.new_context(
        locale="ja-JP", viewport={"width": 1280, "height": 800}, bypass_csp=True
    )
    page = context.new_page()
    page.goto(f"{admin.url}/login")
    found = {"/login": axe_violations(page)}
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin.url}/items")
    for path in ("/items", f"/items/{filled[0]}", f"/items/{filled[3]}", "/audit", "/requests"):
        page.goto(f"{admin.url}{path}")
        found[path] = axe_violations(page)
    # The confirmation page of an original, and an error page.
    page.goto(f"{admin.url}/items/{filled[0]}")
    page.check("form[action$='/release'] input[name=target][value=original]")
    page.fill("form[action$='/release'] input[name=reason]", "確認")
    page.click("form[action$='/release'] button[type=submit]")
    page.wait_for_selector("form.confirm")
    found["confirm"] = axe_violations(page)
    page.goto(f"{admin.url}/items/nonexistent")
    found["404"] = axe_violations(page)
    page.goto(f"{admin.url}/items?lang=en")
    page.click("header form[action='/language'] button")
    page.wait_for_load_state()
    found["/items (en)"] = axe_violations(page)
    assert {k: v for k, v in found.items() if v} == {}, json.dumps(found, indent=1)

    # Keyboard: the first Tab reaches the skip link, Enter moves into the content, and every
    # control of the list page is reached by Tab alone, in reading order.
    page.goto(f"{admin.url}/items")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    reached = []
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.name || e.getAttribute('href') || e.tagName; })()"
            )
        )
    for name in ("q", "status", "kind", "days", "ids", "action", "reason"):
        assert name in reached, (name, reached)
    assert reached.index("q") < reached.index("ids") < reached.index("action")
    # Focus is visible: the focused control draws an outline.
    page.focus("input[name=q]")
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    context.close()


def test_search_in_the_browser(browser, admin, filled) -> None:  # type: ignore[no-untyped-def]
    """On SQLite (FTS5) and PostgreSQL (pg_trgm): the search box finds by file name, a
    two-character Japanese word, a full-width term, a recipient and a reference id."""
    page = logged_in(browser, admin, viewport={"width": 1280, "height": 800})
    for term, expected in (
        ("最終版）.xlsx", ["20261125-HELD0002"]),  # an attachment's file name
        ("請求", ["20261125-HELD0003"]),  # two characters
        ("ＦＷ：ＲＥ", ["20261125-HELD0003"]),  # full-width, any case
        ("shokuin03", ["20261125-HELD0003"]),  # a recipient
        ("keep0002", ["20261125-KEEP0002"]),  # a reference id, any case
        ("打合せ 予算", ["20261125-HELD0002"]),  # every term
    ):
        page.fill("input[name=q]", term)
        page.press("input[name=q]", "Enter")
        page.wait_for_load_state()
        shown = sorted(page.locator("td.subject .ref").all_inner_texts())
        assert shown == expected, (term, shown)
        assert page.locator("input[name=q]").input_value() == term
