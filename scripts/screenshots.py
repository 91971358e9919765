"""The README's screenshots of the admin UI, from a real running instance.

Starts the real gateway (shipped pipeline and default policy, as ``mugaika serve`` runs it)
with the admin UI on a loopback port and a real SMTP sink downstream, sends it a handful of
Japanese business mails over SMTP (a program disguised as a PDF, a macro document, a
password ZIP, clean mail with a PDF whose original is retained), logs in with Debian's
Chromium at 1280×800 and writes::

    docs/admin-list.png      the list, Japanese
    docs/admin-detail.png    a held message with the pages of its sanitized copy's PDF
    docs/admin-confirm.png   the confirmation page before an original leaves
    docs/admin-english.png   the list in English

Needs /usr/bin/chromium and Japanese fonts (Debian fonts-noto-cjk; ./run-tests installs
both). Run: ``.venv/bin/python scripts/screenshots.py [--out docs]``.
"""

from __future__ import annotations

import argparse
import email.policy
import io
import smtplib
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quarantine.sql import ItemQuery, open_store  # noqa: E402
from quarantine.users import UserStore  # noqa: E402
from tests.helpers.smtp_sink import SmtpSink  # noqa: E402
from tests.quarantine.conftest import make_config  # noqa: E402
from tests.quarantine.test_durability import Gateway  # noqa: E402

PASSWORD = "screenshot password"  # noqa: S105 - a throw-away instance
CITY = "city.example.lg.jp"
PROGRAM = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200


def estimate_pdf() -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 28)
    except OSError:
        font = ImageFont.load_default()
    pages = []
    for number, lines in enumerate(
        (
            ["御見積書", "", "件名: 庁内ネットワーク機器更新", "合計金額: ¥1,234,000（税込）"],
            ["明細", "", "1. スイッチ 24ポート × 6", "2. 設定作業 一式", "3. 保守 1年"],
        ),
        1,
    ):
        image = Image.new("RGB", (595, 842), "white")
        draw = ImageDraw.Draw(image)
        for row, line in enumerate(lines):
            draw.text((60, 70 + row * 48), line, fill="black", font=font)
        draw.text((60, 790), f"{number} / 2", fill="gray", font=font)
        pages.append(image)
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def mail(
    subject: str, sender: str, to: str, body: str, files: list[tuple[str, str, bytes]]
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{time.time_ns()}@example.co.jp>"
    message.set_content(body)
    for name, content_type, data in files:
        main, sub = content_type.split("/")
        message.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return message.as_bytes(policy=email.policy.SMTP)


def send_all(port: int) -> None:
    pdf = estimate_pdf()
    messages = [
        (
            "keiri@supplier.example.co.jp",
            f"tanaka@{CITY}",
            mail(
                "【御見積】庁内ネットワーク機器更新の件",
                "株式会社サンプル 経理部 <keiri@supplier.example.co.jp>",
                f"tanaka@{CITY}",
                "いつもお世話になっております。\n御見積書を送付いたします。\n"
                "https://supplier.example.co.jp/estimate をご覧ください。",
                [
                    ("御見積書.pdf", "application/pdf", pdf),
                    ("請求書.pdf.exe", "application/pdf", PROGRAM),
                ],
            ),
        ),
        (
            "info@partner.example.jp",
            f"suzuki@{CITY}",
            mail(
                "会議資料の送付（第3回 検討委員会）",
                "委員会事務局 <info@partner.example.jp>",
                f"suzuki@{CITY}",
                "第3回検討委員会の資料をお送りします。",
                [("会議資料.pdf", "application/pdf", pdf)],
            ),
        ),
        (
            "no-reply@delivery.example.net",
            f"yamada@{CITY}",
            mail(
                "お荷物お届けのお知らせ",
                "配送センター <no-reply@delivery.example.net>",
                f"yamada@{CITY}",
                "不在のため持ち帰りました。詳細は添付をご確認ください。",
                [("配送伝票.js", "application/javascript", b"WScript.Shell.Run('calc')")],
            ),
        ),
    ]
    for sender, recipient, data in messages:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.sendmail(sender, [recipient], data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, SmtpSink() as sink:
        tmp_path = Path(tmp)
        gateway = Gateway(
            tmp_path, None, admin=True, downstream=f"{sink.host}:{sink.port}", real_pipeline=True
        )
        try:
            store = open_store(make_config(tmp_path / "data"))
            UserStore(store.engine).add("tanaka-admin", "superadmin", [], PASSWORD, "ja")
            send_all(gateway.port)
            held = store.list(ItemQuery(kind="quarantined")).items
            with_pages = next(i for i in held if "見積" in i.subject)
            base = f"http://127.0.0.1:{gateway.admin_port}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    headless=True,
                    args=["--no-sandbox", "--disable-gpu"],
                )
                page = browser.new_context(
                    locale="ja-JP", viewport={"width": 1280, "height": 800}
                ).new_page()
                page.goto(f"{base}/login")
                page.fill("input[name=username]", "tanaka-admin")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/items")
                page.screenshot(path=str(args.out / "admin-list.png"))
                page.goto(f"{base}/items/{with_pages.id}")
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#pages img')]"
                    ".every(i => i.complete && i.naturalWidth > 0)"
                )
                page.locator("#pages").scroll_into_view_if_needed()
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(args.out / "admin-detail.png"), full_page=True)
                page.check("form[action$='/release'] input[name=target][value=original]")
                page.fill("form[action$='/release'] input[name=reason]", "受信者に確認済み")
                page.click("form[action$='/release'] button[type=submit]")
                page.wait_for_selector("form.confirm")
                page.screenshot(path=str(args.out / "admin-confirm.png"))
                page.goto(f"{base}/items")
                page.click("header form[action='/language'] button")
                page.wait_for_load_state()
                page.screenshot(path=str(args.out / "admin-english.png"))
                browser.close()
        finally:
            gateway.stop()
    for name in ("list", "detail", "confirm", "english"):
        print(args.out / f"admin-{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
