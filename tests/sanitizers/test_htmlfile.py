"""HTML attachments under other markup names: rebuilt, and named .html so they open as HTML."""

from __future__ import annotations

import pytest

from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.htmlfile import HtmlFileSanitizer
from tests.helpers import oracle


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("page.shtml", "page.html"),
        ("page.xht", "page.html"),
        ("feed.xml", "feed.html"),
        ("page.HTM", "page.HTM"),
        ("page.html", "page.html"),
        ("note.txt", "note.txt"),
    ],
)
def test_rebuilt_markup_is_named_html(name: str, expected: str) -> None:
    data = b'<p onclick="x()">Opening hours</p><a href="https://evil.example/">here</a>'
    result = HtmlFileSanitizer().sanitize(data, name, "2", SanitizeOptions())
    [output] = result.outputs
    assert output.filename == expected
    assert output.content_type == "text/html; charset=utf-8"
    assert oracle.markup_active_content(output.data) == []
    assert b"Opening hours" in output.data
