"""The defanger's windowed scheme scan finds exactly what a scan of the whole text finds.

``gateway.sanitizers.urls._scheme_matches`` runs ``_SCHEME_RE`` only around colons a match
can end at (issue 13). A URL it missed would reach the recipient clickable, so it is compared
with the plain ``finditer`` on texts built from scheme names, colons, slashes, letters and
the separators around them.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sanitizers.urls import _SCHEME_RE, _scheme_matches

_PIECES = [
    "http", "https", "HTTPS", "ftp", "file", "javascript", "ms-settings", "ms-" + "a" * 30,
    "search-ms", "mailto", "x" * 31, "y" * 40, ":", "://", ":\\\\", ":/\\", ":\\/", ": ", ":\n",
    "/", "\\", "0", "a", "資料", " ", "\u3000", ".", "-", "+", "data:", "ｈｔｔｐ", "\t", "@",
]  # fmt: skip


def _spans(matches: object) -> list[tuple[int, int, str | None]]:
    return [(m.start(), m.end(), m.lastgroup) for m in matches]  # type: ignore[attr-defined]


@settings(max_examples=3000)
@given(st.lists(st.sampled_from(_PIECES), max_size=60).map("".join))
def test_windowed_scan_equals_whole_scan(text: str) -> None:
    assert _spans(_scheme_matches(text)) == _spans(_SCHEME_RE.finditer(text))


def test_long_scheme_names_at_the_window_edge() -> None:
    for padding in range(0, 60):
        text = "z" * padding + " ms-" + "b" * 30 + "://host/ " + "q" * padding + " http:x"
        assert _spans(_scheme_matches(text)) == _spans(_SCHEME_RE.finditer(text))
