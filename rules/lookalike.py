"""Lookalike domains: confusable skeletons (Unicode TS #39) and suspicious IDN labels.

``skeleton("xn--80ak6aa92e.com")`` (Cyrillic "аррӏе") equals ``skeleton("apple.com")``;
``skeleton("city.examp1e.lg.jp")`` equals ``skeleton("city.example.lg.jp")``; ``rn`` looks like
``m``. A sender domain is a lookalike of a protected domain when their skeletons are equal (or
the sender's ends with the protected one's) while the domains themselves differ and the
sender's is not below the protected one.

The confusable pairs come from Unicode's ``confusables.txt`` as packaged by
``confusable_homoglyphs``; the table is built once per process on first use. Scripts come from
the same package. Japanese labels mix Han, Hiragana and Katakana (and Latin) legitimately
(UTS #39 "Highly Restrictive" allows that set), so only other mixtures count as mixed-script.

A protected name written in front of another domain (``city.example.lg.jp.evil.example``,
``city.example.lg.jp-login.example``) counts as an imitation too.

This module does not catch typosquatting by edit distance (``exmaple``): that would flag
neighbouring municipalities' real domains. It only reports; rules decide.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import threading
import unicodedata
from collections.abc import Iterable

from confusable_homoglyphs import categories, confusables

_lock = threading.Lock()
_table: dict[str, str] | None = None

# UTS #39 "Highly Restrictive": Latin may combine with these sets of Asian scripts.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NEUTRAL_SCRIPTS = frozenset({"COMMON", "INHERITED"})


def _clean(glyph: str) -> str:
    # The package wraps right-to-left glyphs in LRM marks for display.
    return glyph.replace("\u200e", "").replace("\u200f", "")


def _rank(char: str) -> tuple[int, int]:
    # The representative of a class: a lower-case ASCII letter, else an upper-case one (domains
    # are case-insensitive, so O and with it 0 end up as o), else a digit.
    if "a" <= char <= "z":
        return (0, ord(char))
    if "A" <= char <= "Z":
        return (1, ord(char.lower()))
    if "0" <= char <= "9":
        return (2, ord(char))
    if char.isascii():
        return (3, ord(char))
    return (4, ord(char))


def _build_table() -> dict[str, str]:
    """Map each confusable character to one representative of its class (an ASCII lower-case
    letter when the class has one), and characters confusable with a sequence (``m`` and
    ``rn``) to that sequence."""
    data: dict[str, list[dict[str, str]]] = confusables.confusables_data
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            if _rank(ra) <= _rank(rb):
                parent[rb] = ra
            else:
                parent[ra] = rb

    sequences: dict[str, str] = {}
    for key, entries in data.items():
        key = _clean(key)
        glyphs = [_clean(e["c"]) for e in entries]
        if len(key) == 1:
            for glyph in glyphs:
                if len(glyph) == 1:
                    union(key, glyph)
                elif glyph.isascii() and glyph.isalpha() and len(entries) == 1:
                    sequences[key] = glyph.lower()
        elif key.isascii() and key.isalpha():
            for glyph in glyphs:
                if len(glyph) == 1:
                    sequences[glyph] = key.lower()
    table = {char: find(char) for char in parent if find(char) != char}
    for char, sequence in sequences.items():
        table[char] = sequence
    return table


def _get_table() -> dict[str, str]:
    global _table
    with _lock:
        if _table is None:
            _table = _build_table()
        return _table


def preload() -> None:
    """Build the table now (``gateway.sanitizers.preload_libraries``), not on first use."""
    _get_table()


def to_unicode(domain: str) -> str:
    """A-labels (``xn--``) decoded; undecodable labels kept as they are."""
    labels = []
    for label in domain.strip().rstrip(".").split("."):
        if label.lower().startswith("xn--"):
            with contextlib.suppress(UnicodeError, ValueError):
                label = codecs.decode(label[4:].encode("ascii"), "punycode")
        labels.append(label)
    return ".".join(labels)


@functools.lru_cache(maxsize=4096)  # pure; protected domains recur on every message
def skeleton(domain: str) -> str:
    """The confusable skeleton of a domain: equal skeletons look alike."""
    text = unicodedata.normalize("NFKC", to_unicode(domain))
    table = _get_table()
    # Map before lower-casing: capital I is confusable with l, its lower case i is not.
    mapped = "".join(table.get(char, char) for char in text)
    mapped = unicodedata.normalize("NFKC", mapped).lower()
    # The lower-case pass can produce characters the table maps again (Ｏ -> O -> o).
    folded = "".join(table.get(char, char) for char in mapped).lower()
    # In most mail fonts i, l and 1 differ by a serif only ("c1ty" for "city", "exarnple"):
    # Unicode's table keeps i apart from l, so fold them here, on both sides of a comparison.
    return folded.replace("i", "l").replace("vv", "w")


def scripts(label: str) -> frozenset[str]:
    return frozenset(categories.alias(char) for char in label) - _NEUTRAL_SCRIPTS


def is_suspicious_idn(domain: str) -> bool:
    """True when a non-ASCII label mixes scripts in a way no language needs (Latin with
    Cyrillic), or is written wholly in look-alike letters (Cyrillic ``раура1``: its skeleton
    is plain ASCII, the "whole-script confusable" case browsers refuse to display)."""
    for label in to_unicode(domain).split("."):
        if label.isascii():
            continue
        found = scripts(label)
        if len(found) > 1 and not any(found <= allowed for allowed in _ALLOWED_MIXES):
            return True
        if skeleton(label).isascii():
            return True
    return False


def _is_at_or_below(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def imitated_domain(untrusted_domain: str, protected: Iterable[str]) -> str | None:
    """The protected domain that ``untrusted_domain`` imitates, or None.

    A domain at or below a protected domain imitates nothing (it *is* that organisation)."""
    # The skeleton is taken before lower-casing: a reader sees exampIe (capital I) as example.
    shown = untrusted_domain.strip().rstrip(".")
    domain = shown.lower()
    if not domain:
        return None
    protected = [p.lower().rstrip(".") for p in protected if p]
    if any(_is_at_or_below(domain, p) for p in protected):
        return None
    shape = skeleton(shown)
    for candidate in protected:
        target = skeleton(candidate)
        if shape == target or shape.endswith("." + target):
            return candidate
        # The protected name used as a prefix of another domain:
        # city.example.lg.jp.evil.example, city.example.lg.jp-secure.example.
        if shape.startswith((target + ".", target + "-")) or ("." + target + ".") in shape:
            return candidate
    return None
