"""PDF sanitizer: every action type removed (checked by the independent oracle), content kept,
rasterize and both modes, encrypted and damaged input fail closed."""

from __future__ import annotations

import io
import time

import pikepdf
import pytest

from gateway.errors import CannotSanitize
from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.pdf import PdfSanitizer, defang_url
from gateway.workers import run_isolated
from tests.helpers import hostile, oracle

SANITIZER = PdfSanitizer()

EXPECTED_CODE = {
    "javascript": "PDF_JAVASCRIPT",
    "launch": "PDF_LAUNCH",
    "gotor": "PDF_REMOTE_ACTION",
    "gotoe": "PDF_REMOTE_ACTION",
    "submitform": "PDF_FORM_SUBMIT",
    "importdata": "PDF_FORM_SUBMIT",
    "uri": "PDF_URI",
    "embedded_file": "PDF_EMBEDDED_FILE",
    "richmedia": "PDF_RICHMEDIA",
    "xfa": "PDF_XFA",
    "3d": "PDF_3D",
    "sound": "PDF_RICHMEDIA",
}


def _sanitize(data: bytes, mode: str = "rebuild", name: str = "doc.pdf"):  # type: ignore[no-untyped-def]
    return SANITIZER.sanitize(data, name, "1.2", SanitizeOptions(mode=mode))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", hostile.PDF_ACTION_KINDS)
def test_each_action_type_is_removed(kind: str) -> None:
    data = hostile.pdf_with_action(kind)
    assert oracle.pdf_active_content(data), "the hostile sample must trip the oracle"
    result = _sanitize(data)
    assert EXPECTED_CODE[kind] in {f.code for f in result.findings}
    (output,) = result.outputs
    assert oracle.pdf_active_content(output.data) == []
    assert oracle.pdf_page_count(output.data) == 2
    assert "Mugaika test page 2" in oracle.pdf_text(output.data)
    assert oracle.magic_mime(output.data) == "application/pdf"


def test_javascript_in_every_slot() -> None:
    data = hostile.pdf_with_js_everywhere()
    assert len(oracle.pdf_active_content(data)) > 20
    result = _sanitize(data)
    js = next(f for f in result.findings if f.code == "PDF_JAVASCRIPT")
    assert "app.alert('bookmark')" in js.detail or js.detail.startswith("3")
    assert oracle.pdf_active_content(result.outputs[0].data) == []
    with pikepdf.open(io.BytesIO(result.outputs[0].data)) as pdf:
        assert "/Outlines" in pdf.Root  # the bookmark stays, without its script
        assert "/AcroForm" in pdf.Root  # so does the form


def test_incremental_update_is_flattened() -> None:
    data = hostile.pdf_incremental_js()
    assert "OpenAction /JavaScript" in oracle.pdf_active_content(data)
    result = _sanitize(data)
    codes = {f.code for f in result.findings}
    assert {"PDF_INCREMENTAL_UPDATE", "PDF_JAVASCRIPT"} <= codes
    out = result.outputs[0].data
    assert out.count(b"%%EOF") == 1
    assert oracle.pdf_active_content(out) == []


def test_uri_is_defanged_in_tooltip_and_text() -> None:
    result = _sanitize(hostile.pdf_with_action("uri"))
    uri = next(f for f in result.findings if f.code == "PDF_URI")
    assert "hxxps://evil[.]example/phish?id=1" in uri.detail
    text = oracle.pdf_text(result.outputs[0].data)
    assert "hxxps://evil.example/x" in text
    assert "https://" not in text
    with pikepdf.open(io.BytesIO(result.outputs[0].data)) as pdf:
        annot = pdf.pages[0].Annots[0]
        assert "/A" not in annot
        assert str(annot.Contents) == "hxxps://evil[.]example/phish?id=1"


def test_clean_pdf_keeps_pages_and_text() -> None:
    data = hostile.benign_pdf(5)
    result = _sanitize(data)
    assert result.findings == ()
    out = result.outputs[0].data
    assert oracle.pdf_page_count(out) == 5
    assert oracle.pdf_text(out) == oracle.pdf_text(data)


def test_rasterize_gives_image_only_pdf() -> None:
    data = hostile.pdf_with_js_everywhere()
    result = _sanitize(data, mode="rasterize")
    (output,) = result.outputs
    assert output.filename == "doc.pdf"
    assert oracle.pdf_active_content(output.data) == []
    assert oracle.pdf_page_count(output.data) == 2
    assert oracle.pdf_text(output.data) == ""  # pixels only
    with pikepdf.open(io.BytesIO(output.data)) as pdf:
        page = pdf.pages[0]
        assert list(page.images.keys()) == ["/Im0"]
        assert [float(x) for x in page.mediabox] == [0, 0, 612, 792]
    assert "PDF_RASTERIZED" in {f.code for f in result.findings}


def test_both_gives_rebuilt_and_image_twin() -> None:
    result = _sanitize(hostile.benign_pdf(2), mode="both", name="報告書.pdf")
    names = [o.filename for o in result.outputs]
    assert names == ["報告書.pdf", "報告書_画像化.pdf"]
    assert oracle.pdf_text(result.outputs[0].data) != ""
    assert oracle.pdf_text(result.outputs[1].data) == ""


def test_rasterize_page_limit() -> None:
    options = SanitizeOptions(mode="rasterize", max_pages=2)
    with pytest.raises(CannotSanitize, match="3 pages > 2") as caught:
        SANITIZER.sanitize(hostile.benign_pdf(3), "a.pdf", "1", options)
    assert caught.value.code == "PDF_TOO_MANY_PAGES"


def test_password_protected_pdf_fails_closed() -> None:
    pdf = pikepdf.open(io.BytesIO(hostile.benign_pdf(1)))
    buffer = io.BytesIO()
    pdf.save(buffer, encryption=pikepdf.Encryption(user="secret", owner="owner"))
    with pytest.raises(CannotSanitize) as caught:
        _sanitize(buffer.getvalue())
    assert caught.value.code == "PDF_ENCRYPTED"


def test_empty_user_password_is_removed() -> None:
    pdf = pikepdf.open(io.BytesIO(hostile.pdf_with_action("javascript")))
    buffer = io.BytesIO()
    pdf.save(buffer, encryption=pikepdf.Encryption(user="", owner="owner"))
    result = _sanitize(buffer.getvalue())
    assert "PDF_ENCRYPTION_REMOVED" in {f.code for f in result.findings}
    with pikepdf.open(io.BytesIO(result.outputs[0].data)) as out:
        assert not out.is_encrypted
    assert oracle.pdf_active_content(result.outputs[0].data) == []


@pytest.mark.parametrize("data", [b"%PDF-1.7\n garbage", b"not a pdf at all", b""])
def test_garbage_fails_closed(data: bytes) -> None:
    with pytest.raises(CannotSanitize) as caught:
        _sanitize(data)
    assert caught.value.code == "PDF_DAMAGED"


def test_runs_inside_run_isolated_and_pickles() -> None:
    result = run_isolated(
        SANITIZER.sanitize,
        hostile.pdf_with_action("launch"),
        "a.pdf",
        "3",
        SanitizeOptions(),
        timeout=60,
        memory_limit_mb=1024,
    )
    assert "PDF_LAUNCH" in {f.code for f in result.findings}
    assert oracle.pdf_active_content(result.outputs[0].data) == []


def test_defang_url() -> None:
    assert defang_url("https://a.b.example/p?q=1") == "hxxps://a[.]b[.]example/p?q=1"
    assert defang_url("HTTP://x.jp") == "HXXP://x[.]jp"
    assert defang_url("mailto:a@b.jp") == "mailto[:]a@b[.]jp"
    # The body's defanger: every form a program would follow, not only http(s).
    assert defang_url("\\\\host\\share\\x.exe") == "[\\][\\]host\\share\\x.exe"
    assert defang_url("javascript:alert(1)") == "javascript[:]alert(1)"
    assert defang_url("file:///C:/x") == "file[:]///C:/x"
    assert defang_url("mhtml:https://evil.example/x!y") == "mhtml[:]hxxps://evil[.]example/x!y"
    assert defang_url("www.evil.example") == "www[.]evil[.]example"


def test_what_the_walk_cannot_reach_is_a_hazard_not_silence() -> None:
    """Direct objects nested past the walker's depth bound were skipped without a word: the
    verification of our own output would then vouch for what it never looked at."""
    from gateway.sanitizers.pdf import inspect_pdf

    pdf = pikepdf.open(io.BytesIO(hostile.benign_pdf(pages=1)))
    nested = pikepdf.Dictionary(Note=pikepdf.String("bottom"))
    for _ in range(70):
        nested = pikepdf.Dictionary(Inner=nested)
    pdf.pages[0].obj.Deep = nested
    hazards = inspect_pdf(pdf, "1")
    assert "not inspected: direct objects nested deeper than 64" in hazards.items["PDF_ACTION"]


# --- issue 11: text on the pages that a viewer turns into links ----------------------------


@pytest.mark.parametrize(("kind", "build"), hostile.PDF_URL_TEXT)
def test_no_page_keeps_link_text(kind: str, build) -> None:  # type: ignore[no-untyped-def]
    data = build()
    result = _sanitize(data)
    [output] = result.outputs
    assert oracle.pdf_linkable_text(output.data) == [], kind
    assert oracle.pdf_page_count(output.data) == oracle.pdf_page_count(data)
    codes = {f.code for f in result.findings}
    assert codes & {"PDF_URI_TEXT_DEFANGED", "PDF_URL_TEXT_RASTERIZED"}


def test_page_check_sees_what_pdfium_links_and_full_width() -> None:
    from gateway.sanitizers.pdf import linkable_pages

    assert linkable_pages(hostile.pdf_mail_address()) == {
        0: ["mailto:taro@evil.example", "taro@evil.example"]
    }
    assert linkable_pages(hostile.pdf_fullwidth_url_cid()) == {0: ["https://evil.example/pay"]}
    assert linkable_pages(hostile.benign_pdf(pages=2)) == {}


def test_page_check_is_linear_in_a_long_run_of_letters() -> None:
    """The mail-address pattern rescanned a run of letters from each of its positions: a
    page of 40,000 letters took about 10 s of the document's time budget (quadratic)."""
    from gateway.sanitizers.pdf import linkable_pages

    data = hostile.benign_pdf(pages=1, text="a" * 40_000)
    started = time.process_time()
    assert linkable_pages(data) == {}
    assert time.process_time() - started < 3.0
    # A local part longer than the 64 octets a mail address may have is still found.
    flagged = linkable_pages(hostile.benign_pdf(pages=1, text="b" * 100 + "@evil.example"))
    assert list(flagged) == [0]


def test_rasterized_page_undoes_inherited_rotation_and_boxes() -> None:
    pdf = pikepdf.open(io.BytesIO(hostile.pdf_url_on_one_page(2, 1)))
    pdf.Root.Pages.Rotate = 90  # inherited by both pages
    pdf.Root.Pages.CropBox = pikepdf.Array([0, 0, 300, 400])
    buffer = io.BytesIO()
    pdf.save(buffer)
    [output] = _sanitize(buffer.getvalue()).outputs
    with pikepdf.open(io.BytesIO(output.data)) as result:
        first, second = result.pages
        assert first.obj.Rotate == 0
        assert [float(v) for v in first.obj.MediaBox] == [0, 0, 400, 300]  # as a viewer showed it
        assert [float(v) for v in first.obj.CropBox] == [0, 0, 400, 300]
        assert "/Annots" not in first.obj
        assert list(first.obj.Resources.XObject.keys()) == ["/Im0"]
        # the other page is untouched (qpdf may have copied the inherited value onto it)
        assert second.obj.get("/Rotate", result.Root.Pages.get("/Rotate")) == 90
    texts = oracle.pdf_page_texts(output.data)
    assert texts[0].strip() == ""
    assert "Mugaika test page 2" in texts[1]


def test_policy_quarantine_gives_no_output_and_says_why() -> None:
    options = SanitizeOptions(pdf_url_text="quarantine")
    result = SANITIZER.sanitize(hostile.pdf_mail_address(), "a.pdf", "1", options)
    assert result.outputs == ()
    [held] = [f for f in result.findings if f.code == "PDF_URL_TEXT_HELD"]
    assert held.detail == "1 of 1 pages (page 1: mailto[:]taro@evil.example, taro@evil[.]example)"


def test_urls_kept_by_policy_leave_pages_alone() -> None:
    data = hostile.pdf_mail_address()
    [output] = SANITIZER.sanitize(data, "a.pdf", "1", SanitizeOptions(defang_urls=False)).outputs
    assert oracle.pdf_linkable_text(output.data) == [(1, "taro@evil.example")]


def test_both_mode_rasterizes_pages_of_the_rebuilt_copy_too() -> None:
    rebuilt, twin = _sanitize(hostile.pdf_url_on_one_page(3, 2), mode="both").outputs
    assert oracle.pdf_linkable_text(rebuilt.data) == []
    assert "Mugaika test page 3" in oracle.pdf_page_texts(rebuilt.data)[2]
    assert oracle.pdf_text(twin.data) == ""


def test_a_page_whose_text_cannot_be_read_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.sanitizers.pdf as pdf_module

    def unreadable(text_page: object) -> list[str]:
        raise RuntimeError("text page broken")

    monkeypatch.setattr(pdf_module, "_page_links", unreadable)
    with pytest.raises(CannotSanitize, match="page 1: RuntimeError: text page broken") as caught:
        _sanitize(hostile.benign_pdf(pages=1))
    assert caught.value.code == "PDF_TEXT_CHECK_FAILED"


def test_rasterized_rotated_page_keeps_its_shape() -> None:
    """PDFium's page size is already rotated: swapping it again drew a landscape rendering
    into a portrait page, stretched."""
    pdf = pikepdf.open(io.BytesIO(hostile.benign_pdf(pages=1)))
    pdf.pages[0].obj.Rotate = 90
    buffer = io.BytesIO()
    pdf.save(buffer)
    [output] = _sanitize(buffer.getvalue(), mode="rasterize").outputs
    with pikepdf.open(io.BytesIO(output.data)) as result:
        page = result.pages[0]
        assert [float(v) for v in page.mediabox] == [0, 0, 792, 612]
        image = next(iter(page.images.values()))
        assert image.Width > image.Height


@pytest.mark.parametrize(
    "text",
    [
        "see hxxps://example.jp/1 and https://evil.example/x, www.example.jp",
        "no link at all, 住民の皆様へ: 12:00",
        "mail soumu@city.example.lg.jp or MAILTO:x@y.jp, ftp://files.example/a",
        "FTP://A.EXAMPLE/B user.name+tag@例え.jp www3.example.com www.",
        "a" * 3000 + "@example.jp " + "b" * 200 + "://x",
        "x@y mailto: http:// fxp://a hxxp://b WWW.X.Y",
        "",
    ],
)
def test_viewer_links_are_those_of_the_whole_pattern(text: str) -> None:
    from gateway.sanitizers.pdf import _VIEWER_LINK, viewer_links

    assert viewer_links(text) == [m.group() for m in _VIEWER_LINK.finditer(text)]


def test_viewer_links_skip_only_what_cannot_match() -> None:
    from gateway.sanitizers.pdf import viewer_links

    assert viewer_links("contact soumu@city.example.lg.jp today") == ["soumu@city.example.lg.jp"]
    assert viewer_links("HTTPS://X.EXAMPLE/") == ["HTTPS://X.EXAMPLE/"]
    assert viewer_links("Page 3 line 1: see hxxps://example.jp/1") == []
