"""Every HTML body and every HTML file of the shared corpus: converted and sanitized, nothing
clickable or active survives, no text part of the corpus keeps a live URL either."""

from __future__ import annotations

import email
from pathlib import Path

import pytest

from gateway.charsets import decode_body
from gateway.sanitizers.html import html_to_text, sanitize_html
from gateway.sanitizers.urls import UrlPolicy, defang_text
from tests.text.conftest import find_corpus
from tests.text.linkify import live_links
from tests.text.test_html import assert_harmless_html

POLICY = UrlPolicy()


def _parts(kind: str) -> list[tuple[str, str]]:
    """(name, decoded text) of every text/<kind> part of every corpus mail."""
    corpus = find_corpus()
    if corpus is None:
        return []
    found: list[tuple[str, str]] = []
    rows = (corpus / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    for row in rows:
        path, _sha, _size, _source, file_kind = row.split("\t")
        if file_kind == "html" and kind == "html":
            data = (corpus / path).read_bytes()
            found.append((path, decode_body(data, None).text))
        if file_kind != "eml":
            continue
        message = email.message_from_bytes((corpus / path).read_bytes())
        for index, part in enumerate(message.walk()):
            if part.is_multipart() or part.get_content_type() != f"text/{kind}":
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and payload.strip():
                text = decode_body(payload, part.get_content_charset()).text
                found.append((f"{path}#{index}", text))
    return found


HTML = _parts("html")
PLAIN = _parts("plain")


@pytest.mark.skipif(not HTML, reason="the shared corpus (../shared/corpus) is not present")
@pytest.mark.parametrize(("name", "markup"), HTML, ids=[n for n, _ in HTML])
def test_corpus_html(name: str, markup: str) -> None:
    text = html_to_text(markup, POLICY)
    assert live_links(text.text) == []
    sanitized = sanitize_html(markup, POLICY)
    assert_harmless_html(sanitized.text)


@pytest.mark.skipif(not PLAIN, reason="the shared corpus (../shared/corpus) is not present")
def test_corpus_plain_text_parts_have_no_live_url_left() -> None:
    failures = []
    changed = 0
    for name, text in PLAIN:
        result = defang_text(text, POLICY)
        changed += result.count > 0
        if live_links(result.text):
            failures.append((name, live_links(result.text)[:3]))
    assert len(PLAIN) > 1000
    assert changed > 100
    assert failures == []


def test_corpus_is_where_we_expect() -> None:
    corpus = find_corpus()
    if corpus is None:
        pytest.skip("the shared corpus (../shared/corpus) is not present")
    assert isinstance(corpus, Path)
    assert len(HTML) > 50
