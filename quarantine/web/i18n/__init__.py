"""UI strings in Japanese (default) and English: ``ja.json`` and ``en.json``, the same keys.

``tests/quarantine/test_web.py`` checks that both files have exactly the same keys and that
every key the templates use exists.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LANGUAGES = ("ja", "en")
_HERE = Path(__file__).parent


@cache
def messages(language: str) -> dict[str, str]:
    return json.loads((_HERE / f"{language}.json").read_text(encoding="utf-8"))


def translate(language: str, key: str, **values: object) -> str:
    text = messages(language).get(key) or messages("en").get(key) or key
    return text.format(**values) if values else text


def negotiate(accept_language: str) -> str | None:
    """The first of our languages in an Accept-Language header (RFC 9110 section 12.5.4)."""
    ranked = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip().lower()[:2]))
    for _, _, tag in sorted(ranked):
        if tag in LANGUAGES:
            return tag
    return None
