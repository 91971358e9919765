"""HTML mail bodies made harmless: converted to readable plain text, or sanitized HTML.

``html_to_text(html, url_policy)`` (the default policy, "HTML turned into text"): paragraphs,
lists and tables laid out by inscriptis (Apache-2.0, already a dependency); every link's target
shown after its text, ``リンク (hxxps://example[.]com/)``; images shown as ``[alt]``; then every
URL in the text defanged by ``gateway.sanitizers.urls``.

``sanitize_html(html, url_policy)`` (the alternative policy): nh3 (Rust ammonia on html5ever,
MIT/Apache-2.0) keeps a fixed allow-list of formatting tags and attributes. Scripts, styles,
event handlers, forms, iframes, objects/embeds/applets, meta refresh, ``<base>``, ``<link>``,
SVG and MathML are removed; inline ``style`` keeps only plain declarations (no ``url()``,
``expression()``, ``@import``, escapes or comments); images keep only ``cid:`` sources (parts of
the same message), so remote and ``data:`` images are removed; no ``href`` survives: each
link's target is written after its text, defanged. Why nh3 and not bleach: bleach is deprecated
upstream (January 2023) and its html5lib tokenizer is pure Python; nh3 parses with html5ever,
the HTML5 algorithm browsers use, so mutation XSS that relies on parser differences (``<noscript>``,
``<svg><style>``, ``<math>`` namespace confusion) has no second parser to exploit, and it was
about 40x faster on the corpus HTML (see README). The output of our own rewriting is passed through
nh3 a second time, so what leaves is always nh3's serialisation of an allow-listed tree.

Both return ``HtmlResult`` with findings for what the HTML contained (``HTML_SCRIPT``,
``HTML_EVENT_HANDLER``, ``HTML_REMOTE_IMAGE``..., detail ``"<count>: <first evidence>"``),
counted by a separate tolerant scan of the input.

Limits (each raises ``CannotSanitize`` with its code, which the policy turns into strip or
quarantine, never a pass-through): input over ``MAX_HTML_CHARS`` (``HTML_TOO_LARGE``);
``sanitize_html`` of markup nested deeper than ``MAX_NESTING`` (``HTML_TOO_DEEP``: html5ever's
tree building becomes quadratic there, 100,000 nested ``<div>`` took 211 s). ``html_to_text``
does not fail on depth: past ``MAX_NESTING``, or when the layout engine would lose text (lxml
drops content nested deeper than 255), it falls back to a flat, linear text extraction and
reports ``HTML_LAYOUT_FLATTENED``.

Not done here: choosing between text/plain and text/html alternatives, charset decoding of the
part (``gateway.charsets``), CSS-hidden text detection.
"""

from __future__ import annotations

import html as html_lib
import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser

import nh3
from inscriptis import Inscriptis
from inscriptis.model.config import ParserConfig
from lxml import etree
from lxml.html import HtmlElement, document_fromstring

from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers.urls import UrlPolicy, defang_pieces, defang_text

MAX_HTML_CHARS = 8 * 1024 * 1024
MAX_NESTING = 1000


@dataclass(frozen=True, slots=True)
class HtmlResult:
    """``text`` is plain text (``html_to_text``) or sanitized HTML (``sanitize_html``)."""

    text: str
    urls_defanged: int
    findings: tuple[Finding, ...]
    urls: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# What the input contained: a tolerant, linear scan (Python's HTMLParser never raises).

_ACTIVE_CSS_RE = re.compile(
    r"expression\s*\(|url\s*\(|@import|behavior\s*:|-moz-binding|javascript:|\\", re.I
)
_SCRIPT_URL_RE = re.compile(r"^\s*(?:javascript|vbscript|livescript|data)\s*:", re.I)
_ELEMENT_CODES = {
    "script": "HTML_SCRIPT",
    "form": "HTML_FORM",
    "iframe": "HTML_IFRAME",
    "frame": "HTML_IFRAME",
    "frameset": "HTML_IFRAME",
    "object": "HTML_OBJECT",
    "embed": "HTML_OBJECT",
    "applet": "HTML_OBJECT",
    "base": "HTML_BASE",
    "svg": "HTML_SVG",
    "math": "HTML_MATHML",
    "style": "HTML_STYLE",
}
_URL_ATTRS = frozenset({"href", "src", "action", "formaction", "data", "background", "poster"})


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.counts: Counter[str] = Counter()
        self.evidence: dict[str, str] = {}
        self._in_style = False

    def _hit(self, code: str, evidence: str) -> None:
        self.counts[code] += 1
        self.evidence.setdefault(code, evidence[:80])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        code = _ELEMENT_CODES.get(tag)
        if code:
            self._hit(code, f"<{tag}>")
        self._in_style = tag == "style"
        values = {name: value or "" for name, value in attrs}
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self._hit("HTML_META_REFRESH", values.get("content", ""))
        if tag == "link":
            self._hit("HTML_EXTERNAL_RESOURCE", values.get("href", ""))
        if tag in ("input", "button", "textarea", "select") and "HTML_FORM" not in self.counts:
            self._hit("HTML_FORM", f"<{tag}>")
        for name, value in values.items():
            if name.startswith("on"):
                self._hit("HTML_EVENT_HANDLER", f"{tag} {name}")
            elif name == "style" and _ACTIVE_CSS_RE.search(value):
                self._hit("HTML_CSS_ACTIVE", value)
            elif (
                (name in _URL_ATTRS or name.endswith(":href"))
                and _SCRIPT_URL_RE.match(value)
                and not (tag == "img" and name == "src")
            ):
                self._hit("HTML_SCRIPT_URL", f"{tag} {name}={value}")
        if tag == "img" or (tag == "input" and values.get("type", "").lower() == "image"):
            src = values.get("src", "").strip().lower()
            if src.startswith("data:"):
                self._hit("HTML_DATA_IMAGE", src[:40])
            elif src and not src.startswith("cid:"):
                self._hit("HTML_REMOTE_IMAGE", src)

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and _ACTIVE_CSS_RE.search(data):
            self._hit("HTML_CSS_ACTIVE", data.strip())

    def handle_comment(self, data: str) -> None:
        if data.lstrip().lower().startswith("[if"):
            self._hit("HTML_CONDITIONAL_COMMENT", data.strip())

    def findings(self) -> tuple[Finding, ...]:
        return tuple(
            Finding(code, "", f"{count}: {self.evidence[code]}")
            for code, count in sorted(self.counts.items())
        )


def _scan(html: str) -> tuple[Finding, ...]:
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    return scanner.findings()


_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^>]*?(/?)>")
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)


def _nesting_estimate(html: str) -> int:
    """Open minus closed tags, at its highest: over-counts unclosed ``<p>``, never under-counts
    what a tree builder nests. Linear."""
    depth = peak = 0
    for match in _TAG_RE.finditer(html):
        if match.group(2).lower() in _VOID or match.group(3):
            continue
        depth += -1 if match.group(1) else 1
        depth = max(depth, 0)
        peak = max(peak, depth)
    return peak


_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def _prepare(html: str) -> str:
    """Refuse what is too large; replace lone surrogates (raw bytes a lenient decoder kept),
    which no HTML parser accepts and no output encoding can write."""
    if len(html) > MAX_HTML_CHARS:
        raise CannotSanitize("HTML_TOO_LARGE", f"{len(html)} characters")
    return html if html.isascii() else _SURROGATE_RE.sub("\ufffd", html)


# --------------------------------------------------------------------------------------------
# HTML to text.

_TEXT_TAGS = frozenset(
    [
        "a",
        "abbr",
        "address",
        "article",
        "aside",
        "b",
        "bdi",
        "bdo",
        "big",
        "blockquote",
        "br",
        "caption",
        "center",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "font",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "main",
        "mark",
        "nav",
        "ol",
        "p",
        "pre",
        "q",
        "rp",
        "rt",
        "ruby",
        "s",
        "samp",
        "section",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "time",
        "tr",
        "tt",
        "u",
        "ul",
        "var",
        "wbr",
    ]
)
_DROP_WITH_CONTENT = frozenset(
    {"script", "style", "title", "template", "xmp", "noembed", "noframes", "iframe", "object"}
)
_LINK_SCHEMES = frozenset({"http", "https", "ftp", "mailto", "file", "smb", "tel"})
_CONTROL_RE = re.compile(r"[\x00-\x20\x7f]+")


def _display_target(href: str) -> str:
    # Browsers drop tabs and newlines inside URLs (WHATWG URL); show what they would follow.
    return _CONTROL_RE.sub("", href.strip())


def _clean_for_text(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(_TEXT_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={
            "a": {"href"},
            "img": {"alt"},
            "td": {"colspan", "rowspan"},
            "th": {"colspan", "rowspan"},
            "ol": {"start"},
        },
        url_schemes=set(_LINK_SCHEMES),
        strip_comments=True,
        link_rel=None,
    )


def _show_link_targets(tree: HtmlElement) -> None:
    """Write each link's target after its text, and drop the link itself."""
    for anchor in tree.iter("a"):
        href = anchor.get("href")
        anchor.attrib.clear()
        if not href:
            continue
        target = _display_target(href)
        label = " ".join(anchor.text_content().split())
        shown = target.removeprefix("mailto:")
        if not target or target.startswith("#") or shown in label or label in (target, shown):
            continue
        suffix = f" ({target})"
        if len(anchor):
            last = anchor[-1]
            last.tail = (last.tail or "") + suffix
        else:
            anchor.text = (anchor.text or "") + suffix


_FLAT_DROP_RE = re.compile(
    r"<(script|style|title|template|xmp|noembed|noframes)\b.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)",
    re.I | re.S,
)
_FLAT_BREAK_RE = re.compile(
    r"</?(?:p|div|br|li|tr|h[1-6]|table|ul|ol|dl|dt|dd|blockquote|pre|hr|section|article)\b[^>]*>",
    re.I,
)
_FLAT_CELL_RE = re.compile(r"</?t[dh]\b[^>]*>", re.I)
_FLAT_TAG_RE = re.compile(r"<[^>]*>")


def _flat_text(html: str) -> str:
    """Linear, tree-free extraction for hostile nesting: line breaks at block tags, tabs
    between cells, every other tag dropped, references decoded."""
    text = _FLAT_DROP_RE.sub("", html)
    text = _FLAT_BREAK_RE.sub("\n", text)
    text = _FLAT_CELL_RE.sub("  ", text)
    text = _FLAT_TAG_RE.sub("", text)
    return html_lib.unescape(text)


_BLANK_LINES_RE = re.compile(r"\n{3,}")
_TRAILING_SPACE_RE = re.compile(r"[ \t\u3000]+\n")


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE_RE.sub("\n", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip("\n") + "\n"


def _visible_chars(text: str) -> int:
    return sum(1 for c in text if not c.isspace())


def html_to_text(html: str, url_policy: UrlPolicy) -> HtmlResult:
    """Convert an HTML body to readable plain text with every URL defanged.

    Raises ``CannotSanitize("HTML_TOO_LARGE")`` past ``MAX_HTML_CHARS``; otherwise never
    raises. Idempotent on its own output (plain text converts to itself, modulo line tidying).
    """
    html = _prepare(html)
    findings = list(_scan(html))
    text: str | None = None
    if _nesting_estimate(html) <= MAX_NESTING:
        cleaned = _clean_for_text(html)
        if cleaned.strip():
            try:
                tree = document_fromstring(cleaned)
            except (etree.ParserError, ValueError):
                tree = None
            if tree is not None:
                flat = _flat_text(cleaned)
                _show_link_targets(tree)
                config = ParserConfig(display_images=True, table_cell_separator="  ")
                laid_out = Inscriptis(tree, config).get_text()
                # lxml silently drops what is nested deeper than 255: never lose text for
                # layout's sake.
                if _visible_chars(laid_out) >= 0.9 * _visible_chars(flat):
                    text = laid_out
        else:
            text = ""
    if text is None:
        findings.append(Finding("HTML_LAYOUT_FLATTENED", "", "nesting too deep for layout"))
        text = _flat_text(html)
    result = defang_text(_tidy(text) if text.strip() else "", url_policy)
    findings.extend(Finding(flag, "", "") for flag in result.flags)
    return HtmlResult(result.text, result.count, tuple(findings), result.urls)


# --------------------------------------------------------------------------------------------
# Sanitized HTML.

_SAFE_TAGS = _TEXT_TAGS
_INLINE_TAGS = frozenset(
    [
        "a",
        "abbr",
        "b",
        "bdi",
        "bdo",
        "big",
        "cite",
        "code",
        "del",
        "dfn",
        "em",
        "font",
        "i",
        "img",
        "ins",
        "kbd",
        "mark",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "time",
        "tt",
        "u",
        "var",
        "wbr",
    ]
)
_SAFE_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"align", "dir", "lang", "title", "style", "valign", "width", "height", "bgcolor"},
    "a": {"href"},
    "img": {"src", "alt", "border"},
    "table": {"border", "cellpadding", "cellspacing", "summary"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap", "scope"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "font": {"color", "face", "size"},
    "col": {"span"},
    "colgroup": {"span"},
}
_SAFE_CSS_PROPERTIES = frozenset(
    [
        "color",
        "background-color",
        "font-size",
        "font-weight",
        "font-style",
        "font-family",
        "text-align",
        "text-decoration",
        "text-indent",
        "line-height",
        "letter-spacing",
        "vertical-align",
        "white-space",
        "width",
        "height",
        "max-width",
        "min-width",
        "padding",
        "padding-top",
        "padding-right",
        "padding-bottom",
        "padding-left",
        "margin",
        "margin-top",
        "margin-right",
        "margin-bottom",
        "margin-left",
        "border",
        "border-top",
        "border-right",
        "border-bottom",
        "border-left",
        "border-color",
        "border-style",
        "border-width",
        "border-collapse",
        "border-spacing",
        "list-style-type",
        "display",
    ]
)
_SAFE_CSS_VALUE_RE = re.compile(r"[#\w\s,.%'\"+-]*")


def _safe_style(value: str) -> str | None:
    kept = []
    for declaration in value.split(";"):
        name, sep, val = declaration.partition(":")
        name = name.strip().lower()
        val = val.strip()
        if not sep or name not in _SAFE_CSS_PROPERTIES:
            continue
        # Plain values only: no url(), expression(), escapes, comments or at-rules.
        if not _SAFE_CSS_VALUE_RE.fullmatch(val) or "expression" in val.lower():
            continue
        kept.append(f"{name}: {val}")
    return "; ".join(kept) if kept else None


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return _safe_style(value)
    if tag == "img" and attribute == "src":
        return value if value.strip().lower().startswith("cid:") else None
    if attribute in ("width", "height", "border", "cellpadding", "cellspacing", "size"):
        return value if re.fullmatch(r"\s*\d{1,5}%?\s*", value) else None
    return value


def _nh3_sanitize(html: str, allow_href: bool) -> str:
    attributes = {k: set(v) for k, v in _SAFE_ATTRIBUTES.items()}
    if not allow_href:
        attributes.pop("a")
    return nh3.clean(
        html,
        tags=set(_SAFE_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes=attributes,
        attribute_filter=_attribute_filter,
        url_schemes=set(_LINK_SCHEMES) | {"cid"},
        strip_comments=True,
        link_rel=None,
    )


class _Rewriter(HTMLParser):
    """Stream over nh3's (well-formed) output: drop link elements, remember their targets,
    collect text so URLs split across elements are found as one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # (kind, value): kind is "markup", "text", or "break" (a block boundary: a line break
        # while looking for URLs, nothing in the output).
        self.tokens: list[tuple[str, str]] = []
        self._links: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self.tokens)))
            return
        self._markup(tag, self.get_starttag_text() or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._markup(tag, self.get_starttag_text() or "")

    def _markup(self, tag: str, value: str) -> None:
        if tag not in _INLINE_TAGS:
            self.tokens.append(("break", ""))
        self.tokens.append(("markup", value))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            if not self._links:
                return
            href, first = self._links.pop()
            target = _display_target(href)
            label = " ".join("".join(v for k, v in self.tokens[first:] if k == "text").split())
            shown = target.removeprefix("mailto:")
            if target and not target.startswith("#") and shown not in label:
                self.tokens.append(("text", f" ({target})"))
            return
        self._markup(tag, f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.tokens.append(("text", data))


def sanitize_html(html: str, url_policy: UrlPolicy) -> HtmlResult:
    """Return harmless HTML: see the module docstring for what is kept.

    Raises ``CannotSanitize`` (``HTML_TOO_LARGE``, ``HTML_TOO_DEEP``); the caller then converts
    to text or strips. Idempotent: sanitizing the output again changes nothing.
    """
    html = _prepare(html)
    if _nesting_estimate(html) > MAX_NESTING:
        raise CannotSanitize("HTML_TOO_DEEP", f"nesting over {MAX_NESTING}")
    findings = list(_scan(html))
    first_pass = _nh3_sanitize(html, allow_href=True)
    rewriter = _Rewriter()
    rewriter.feed(first_pass)
    rewriter.close()
    texts = [value or "\n" for kind, value in rewriter.tokens if kind != "markup"]
    defanged, result = defang_pieces(texts, url_policy)
    out: list[str] = []
    pieces = iter(defanged)
    for kind, value in rewriter.tokens:
        if kind == "markup":
            out.append(value)
        elif kind == "text":
            out.append(html_lib.escape(next(pieces), quote=False))
        else:
            next(pieces)
    # The second pass makes the output nh3's serialisation of an allow-listed tree whatever
    # our rewriting did, and no href is allowed at all.
    final = _nh3_sanitize("".join(out), allow_href=False)
    findings.extend(Finding(flag, "", "") for flag in result.flags)
    return HtmlResult(final, result.count, tuple(findings), result.urls)
