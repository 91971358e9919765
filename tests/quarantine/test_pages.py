"""Page previews of a sanitized copy's documents (issue 16), in Chromium, on both backends.

The sanitized copy carries a three-page PDF, a docx and a damaged PDF. The detail page shows
the PDF's pages as images rendered by PDFium in the preview worker process (not in the web
process), the docx's text with the LibreOffice note, the damaged PDF's problem code; the
images are served from the cache on the next view, and go with the item's bytes.
"""

from __future__ import annotations

import base64
import io
import os

import pytest

from quarantine.users import UserStore
from tests.quarantine.conftest import hold_request, message

PASSWORD = "correct horse battery"

pytestmark = [pytest.mark.chromium, pytest.mark.slow]


def pdf_pages(count: int) -> bytes:
    from PIL import Image, ImageDraw

    pages = []
    for number in range(1, count + 1):
        image = Image.new("RGB", (595, 842), "white")
        ImageDraw.Draw(image).text((60, 60), f"PAGE {number} OF THE ESTIMATE", fill="black")
        pages.append(image)
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("見積書 第2版")
    document.add_paragraph("合計金額 1,234,000円")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def attachment(name: str, content_type: str, data: bytes) -> bytes:
    return (
        f'--b\r\nContent-Type: {content_type}; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + base64.encodebytes(data).replace(b"\n", b"\r\n")


def sanitized_copy() -> bytes:
    docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    return (
        b"From: a@example.com\r\nTo: user@city.example.lg.jp\r\nSubject: estimate\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n"
        + attachment("mitsumori.pdf", "application/pdf", pdf_pages(3))
        + attachment("mitsumori.docx", docx_type, docx_bytes())
        + attachment("broken.pdf", "application/pdf", b"%PDF-1.7\n" + b"\x00garbage" * 50)
        + b"--b--\r\n"
    )


def test_detail_page_shows_pages_of_the_sanitized_copy(browser, admin) -> None:  # type: ignore[no-untyped-def]
    UserStore(admin.store.engine).add("admin", "superadmin", [], PASSWORD, "ja")
    request = hold_request(raw=message(subject="見積"), sanitized=sanitized_copy())
    admin.store.hold(request)
    item = admin.store.get(request.reference_id)
    page = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{admin.url}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin.url}/items")
    page.goto(f"{admin.url}/items/{item.id}")
    section = page.locator("#pages")
    images = section.locator("img")
    assert images.count() == 3
    page.wait_for_function(
        "() => [...document.querySelectorAll('#pages img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert images.first.get_attribute("alt") == "mitsumori.pdf の 1 ページ目"
    assert "全 3 ページ中 3 ページを表示しています" in section.inner_text()
    text = section.inner_text()
    assert "合計金額 1,234,000円" in text  # the docx's text
    assert "LibreOffice" in text
    assert "PDF_DAMAGED" in text
    # Rendered by the preview worker, a process of its own.
    renderer = admin.app.state.admin.renderer
    assert renderer.pool is not None
    assert renderer.pool.pids()
    assert os.getpid() not in renderer.pool.pids()
    # A real PNG of the page, served to the logged-in admin only.
    response = page.request.get(f"{admin.url}/items/{item.id}/page?doc=0&n=2")
    assert response.status == 200
    assert response.headers["content-type"] == "image/png"
    assert response.body().startswith(b"\x89PNG")
    assert page.request.get(f"{admin.url}/items/{item.id}/page?doc=0&n=4").status == 404
    # Cached: the second view renders nothing.
    assert item.sanitized_sha256 is not None
    assert admin.store.preview(item.sanitized_sha256) is not None
    renderer.pool = None  # a render now would start a new pool
    page.goto(f"{admin.url}/items/{item.id}")
    assert page.locator("#pages img").count() == 3
    assert renderer.pool is None
    # The cache goes with the copy.
    admin.store.delete(item.id, admin_actor(), "test")
    assert admin.store.preview(item.sanitized_sha256) is None
    assert admin.store.preview_page(item.sanitized_sha256, 0, 1) is None
    page.context.close()


def admin_actor():  # type: ignore[no-untyped-def]
    from quarantine.users import Actor

    return Actor("admin", "superadmin")
