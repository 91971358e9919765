"""Find every URL-like thing in text and make it unclickable while a person can still read it.

``defang_text(text, policy)`` rewrites, in place and in the original characters:

- scheme URLs: ``https://example.com/p`` -> ``hxxps://example[.]com/p``, ``ftp://`` -> ``fxp://``,
  any other ``scheme://`` -> ``scheme[:]//``, and the opaque schemes clients or Windows act on
  (``javascript:``, ``vbscript:``, ``data:``, ``file:``, ``mailto:`` if configured, ``ms-*:``
  and ``search-ms:`` protocol handlers, CVE-2022-30190 "Follina") -> ``javascript[:]...``;
- ``www.`` names and bare domains whose last label is in the Public Suffix List (bundled by
  ``publicsuffixlist``, offline): every dot of the host becomes ``[.]``;
- e-mail addresses (when ``policy.mailto``): ``user@example[.]com``;
- UNC paths ``\\\\server\\share`` -> ``[\\][\\]server\\share``, in every form Windows resolves
  to a remote host (``\\\\?\\UNC\\``, ``\\\\.\\UNC\\``, ``\\??\\UNC\\``, ``\\Device\\Mup\\``, the
  redirector forms, ``host@SSL@port``, forward slashes; see ``_UNC_RE``);
- dotted IPv4 hosts followed by a port or path.

Detection runs on a *view* of the text in which full-width forms and other compatibility
characters are folded (NFKC, one character to one), ideographic full stops (``。`` U+3002,
``｡`` U+FF61) count as dots (UTS #46 section 2.3 maps them to ``.`` in host names), HTML
character references and percent-encoded ASCII are decoded. Edits are then applied to the
original characters, so ``ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ`` stays full-width:
``ｈｘｘｐｓ：／／ｅｘａｍｐｌｅ[．]ｃｏｍ``. Japanese text around a URL is never part of it
(``詳細はhttps://example.com/をご覧`` keeps ``をご覧``).

Already-defanged forms (``hxxp://``, ``[.]``, ``[:]``) are left alone, so the function is
idempotent. Linear in the length of the text (every regex is anchored by a look-behind so no
position is rescanned); the view costs a few bytes per character.

Deliberately not done here: HTML (``gateway.sanitizers.html`` calls this on text nodes),
quoted-printable or format=flowed joining (the MIME layer decodes those first, so a URL split
by a soft line break is whole again when it gets here; a URL hard-wrapped across lines is
defanged piece by piece, and each piece is unclickable), and resolving or fetching anything.
"""

from __future__ import annotations

import bisect
import functools
import html
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from publicsuffixlist import PublicSuffixList

UrlMode = Literal["defang", "remove", "keep"]
URL_MODES: tuple[str, ...] = ("defang", "remove", "keep")

# What a removed URL becomes in "remove" mode. Contains nothing a client could linkify.
REMOVED_PLACEHOLDER = "[URL removed]"

# Bound the list of URLs reported back (the count stays exact).
MAX_REPORTED_URLS = 200


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """How URLs in text are treated. Plain data: it crosses into worker processes.

    ``mode``: ``defang`` (default) rewrites URLs readably, ``remove`` replaces each with
    ``[URL removed]``, ``keep`` leaves the text untouched. ``allow_domains``: URLs whose host is
    one of these domains or a subdomain of one are kept as they are (``example.com`` allows
    ``www.example.com``, never ``example.com.evil.jp`` or ``evilexample.com``); only http(s)
    URLs, ``www.`` names, bare domains and mail addresses can be allowed, never ``javascript:``,
    ``file:`` or UNC paths. ``mailto``: True treats mail addresses and ``mailto:`` URIs like
    other URLs (defanged or removed); False leaves them as they are.
    """

    mode: UrlMode = "defang"
    allow_domains: frozenset[str] = frozenset()
    mailto: bool = True

    def __post_init__(self) -> None:
        if self.mode not in URL_MODES:
            raise ValueError(f"url mode {self.mode!r} is not one of {', '.join(URL_MODES)}")
        normalised = frozenset(
            d for d in (_normalise_host(str(x)) for x in self.allow_domains) if d
        )
        object.__setattr__(self, "allow_domains", normalised)

    def allows(self, host: str) -> bool:
        """True when ``host`` (any form: Unicode, punycode, full-width) is allow-listed."""
        if not self.allow_domains:
            return False
        normal = _normalise_host(host)
        if not normal:
            return False
        return any(normal == d or normal.endswith("." + d) for d in self.allow_domains)


@dataclass(frozen=True, slots=True)
class DefangResult:
    """``text`` rewritten; ``count`` URLs changed; ``urls`` their original text (in order, at
    most ``MAX_REPORTED_URLS``); ``flags`` finding codes for notable forms (``URL_JAVASCRIPT``,
    ``URL_IP_HOST``, ``URL_USERINFO``, ``URL_UNC_PATH``...), sorted, each once."""

    text: str
    count: int
    urls: tuple[str, ...]
    flags: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------
# The view: folded characters, decoded references, and a map back to the original.

_DOT_LIKE = {"\u3002": ".", "\uff61": ".", "\ufe12": ".", "\ufe52": ".", "\u2024": "."}


@functools.cache
def _fold_table() -> dict[int, str]:
    """One-to-one NFKC folds (full-width and half-width forms, mathematical letters...)."""
    table: dict[int, str] = {}
    for cp in range(0x80, 0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        char = chr(cp)
        folded = unicodedata.normalize("NFKC", char)
        folded = _DOT_LIKE.get(folded, folded)
        if len(folded) == 1 and folded != char:
            table[cp] = folded
    for char, folded in _DOT_LIKE.items():
        table[ord(char)] = folded
    return table


def preload() -> None:
    """Build the fold table now (a quarter of a second), not in every sanitizer child."""
    _fold_table()


_REF_RE = re.compile(
    r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?|%[0-9A-Fa-f]{2}"
)


class _View:
    """The folded text and, where references were decoded, a map from view to original."""

    __slots__ = ("orig_ends", "orig_starts", "seg_starts", "text")

    def __init__(self, original: str) -> None:
        table = _fold_table()
        self.seg_starts: list[int] | None = None
        self.orig_starts: list[int] = []
        self.orig_ends: list[int] = []
        if "&" not in original and "%" not in original:
            self.text = original.translate(table)
            return
        pieces: list[str] = []
        seg_starts: list[int] = []
        view_len = 0
        last = 0
        for match in _REF_RE.finditer(original):
            decoded = _decode_reference(match.group())
            if decoded is None:
                continue
            if match.start() > last:
                # A run of ordinary characters: maps one to one.
                seg_starts.append(view_len)
                self.orig_starts.append(last)
                self.orig_ends.append(-1)
                chunk = original[last : match.start()].translate(table)
                pieces.append(chunk)
                view_len += len(chunk)
            seg_starts.append(view_len)
            self.orig_starts.append(match.start())
            self.orig_ends.append(match.end())
            folded = decoded.translate(table)
            pieces.append(folded)
            view_len += len(folded)
            last = match.end()
        if last < len(original):
            seg_starts.append(view_len)
            self.orig_starts.append(last)
            self.orig_ends.append(-1)
            pieces.append(original[last:].translate(table))
        self.text = "".join(pieces)
        self.seg_starts = seg_starts

    def span(self, pos: int) -> tuple[int, int]:
        """The original characters that view position ``pos`` came from."""
        if self.seg_starts is None:
            return pos, pos + 1
        i = bisect.bisect_right(self.seg_starts, pos) - 1
        if self.orig_ends[i] == -1:
            start = self.orig_starts[i] + (pos - self.seg_starts[i])
            return start, start + 1
        return self.orig_starts[i], self.orig_ends[i]


def _decode_reference(ref: str) -> str | None:
    if ref.startswith("%"):
        value = int(ref[1:], 16)
        # Only printable ASCII: that is what can build a scheme, a dot or a slash.
        return chr(value) if 0x21 <= value <= 0x7E else None
    decoded = html.unescape(ref)
    if decoded == ref or not decoded:
        return None
    return decoded


# --------------------------------------------------------------------------------------------
# Detection.

# Schemes whose URLs are acted on without "//": script, data, local files, mail, and Windows
# protocol handlers (ms-msdt: CVE-2022-30190, search-ms:, ms-officecmd: CVE-2021-42294...).
_OPAQUE_SCHEMES = (
    r"javascript|vbscript|livescript|data|mailto|ms-[a-z0-9][a-z0-9.\-]{0,30}|search-ms|"
    r"search|its|mk|mhtml|view-source|jar|res|shell|hcp|microsoft-edge|intent"
)
_SCHEME_RE = re.compile(
    # Web schemes need no boundary: "0http://x" and "詳細はhttp://x" are linked from "http".
    r"(?P<web>https?|ftps?):(?=[^\s])"
    r"|(?<![A-Za-z0-9])(?:"
    r"(?P<file>file):(?=[/\\])"
    r"|(?P<opaque>" + _OPAQUE_SCHEMES + r"):(?=[^\s])"
    r"|(?P<generic>[A-Za-z][A-Za-z0-9+.\-]{0,31}):(?=//|\\\\|/\\|\\/)"
    r")",
    re.IGNORECASE,
)
# Forms already defanged by someone: leave them readable and alone.
_DEFANGED_SCHEME_RE = re.compile(r"h[x*_]{2}ps?|f[x*_]ps?|hxxp\w*", re.IGNORECASE)
# Bounded: a host name is at most 253 characters (RFC 1035), userinfo and port add a little.
_AUTHORITY_RE = re.compile(r"[\w.\-~!$&*+,;=:@%\[\]]{0,256}")
_PATH_RE = re.compile(r"[!#$%&'()*+,\-./0-9:;=?@A-Z\[\\\]^_`a-z{|}~]*")
_JAPANESE = r"\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_ASCII_TO_JAPANESE_RE = re.compile(r"[A-Za-z0-9\-_](?=[" + _JAPANESE + r"])")
_RUN_RE = re.compile(r"(?<![\w\-])[\w\-]+(?:\.[\w\-]+)+")
# Every path form Windows resolves to a remote host (SMB, or WebDAV through "host@SSL@port"),
# any separator "\\" or "/" (Windows reads both): "\\host\share", "//host/share", the Win32
# long and device forms "\\?\UNC\host" and "\\.\UNC\host", the NT object paths they link to
# ("\??\UNC\host", "\Device\Mup\host", "\\?\GLOBALROOT\Device\Mup\host"), and the
# redirector forms "\\;LanmanRedirector\;Z:0000\host". ``lead`` is what gets broken; the
# dots of the host after ``prefix`` are broken too. A prose character before the path is no
# part of it ("資料は\\host"); an ASCII word character is ("a\\b" is no path).
_SEP = r"[\\/]"
_UNC_NAMESPACE = (
    r"(?:(?:[?.]|\?\?|GLOBAL\?\?)"
    + _SEP
    + r"UNC"
    + _SEP
    + r"|(?:[?.]"
    + _SEP
    + r"GLOBALROOT"
    + _SEP
    + r")?Device"
    + _SEP
    + r"(?:Mup|LanmanRedirector|WebDavRedirector)"
    + _SEP
    + r")"
)
_UNC_RE = re.compile(
    r"(?P<lead>(?<![\\A-Za-z0-9_])\\"
    + _SEP
    # A slash first: not after a scheme, a path or an already defanged "[:]".
    + r"|(?<![A-Za-z0-9_/\\:.\-~%@\]])/"
    + _SEP
    + r"|(?<![\\A-Za-z0-9_])\\(?=(?:\?\?|GLOBAL\?\?)"
    + _SEP
    + r"UNC"
    + _SEP
    + r"|Device"
    + _SEP
    + r"(?:Mup|LanmanRedirector|WebDavRedirector)"
    + _SEP
    + r"))"
    + r"(?P<prefix>"
    + _UNC_NAMESPACE
    + r"?(?:;[^\\/\s]{0,64}"
    + _SEP
    + r"){0,2})"
    + r"(?=[\w.\-$])",
    re.IGNORECASE,
)
_UNC_SHARE_RE = re.compile(r"[\\/][\w$]")
_UNC_HOST_RE = re.compile(r"[\w.\-$]+")
_WWW_RE = re.compile(r"www\d{0,3}", re.IGNORECASE)
_LDH_RE = re.compile(r"[A-Za-z0-9\-]+")
_LOCAL_PART_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-"
)
_PORT_RE = re.compile(r":\d*$")
# 3232235777, 0xC0A80001, 0300.0250.0.1: all one IPv4 address to a browser (WHATWG host parsing).
_NUMERIC_HOST_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.I)
# Past this many URLs in one text, stop analysing each and defang coarsely (see _coarse).
MAX_URLS_ANALYSED = 5000
_TRAILING_PUNCT = ".,;:!?'\"*_~"
_CLOSERS = {")": "(", "]": "[", "}": "{"}

_psl = PublicSuffixList(accept_unknown=False)


@functools.lru_cache(maxsize=65536)
def _public_suffix(name: str) -> str | None:
    return _psl.publicsuffix(name)


@functools.lru_cache(maxsize=4096)
def _normalise_host(host: str) -> str:
    """Lower-case, fold full-width and ideographic dots, strip a trailing dot, punycode."""
    folded = host.translate(_fold_table()).strip().rstrip(".").lower()
    if not folded:
        return ""
    try:
        return folded.encode("idna").decode("ascii")
    except UnicodeError:
        return folded


@dataclass(slots=True)
class _Hit:
    start: int  # view positions
    end: int
    host: str  # "" when the form cannot be allow-listed
    allowable: bool
    edits: list[tuple[int, str]]  # (view position, "x" | "bracket")
    flags: tuple[str, ...] = ()


def _trim_trailing(view: str, start: int, end: int) -> int:
    """Drop sentence punctuation after a URL; keep balanced closing brackets (Wikipedia)."""
    balance: dict[str, int] | None = None
    while end > start:
        last = view[end - 1]
        if last in _TRAILING_PUNCT:
            end -= 1
        elif last in _CLOSERS:
            if balance is None:
                # Brackets that matter sit near the end; a bounded look keeps this linear.
                segment = view[max(start, end - 512) : end]
                balance = {c: segment.count(c) - segment.count(o) for c, o in _CLOSERS.items()}
            if balance[last] > 0:
                balance[last] -= 1
                end -= 1
            else:
                break
        else:
            break
    return end


class _PathEnds:
    """Where the run of URL path characters starting at a position ends, without rescanning:
    ``_PATH_RE`` is one character class, so every start inside a known run shares its end.
    This keeps ``http:http:http:...`` and ``a.com/a.com/...`` linear."""

    __slots__ = ("end", "start", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = -1
        self.end = -1

    def __call__(self, pos: int) -> int:
        if self.start <= pos < self.end:
            return self.end
        end = _PATH_RE.match(self.text, pos).end()  # type: ignore[union-attr]
        if end > pos:
            self.start, self.end = pos, end
        return end


def _is_weak_dot(original_char: str) -> bool:
    return original_char != "."


def _scheme_hits(view: _View, original: str, policy: UrlPolicy) -> list[_Hit]:
    text = view.text
    hits: list[_Hit] = []
    path_end = _PathEnds(text)
    for match in _scheme_matches(text):
        kind = match.lastgroup or "generic"
        scheme = match.group(kind)
        lower = scheme.lower()
        if kind == "generic" and _DEFANGED_SCHEME_RE.fullmatch(scheme):
            continue
        if lower == "mailto" and not policy.mailto:
            continue
        start = match.start()
        colon = match.end() - 1
        edits: list[tuple[int, str]] = []
        flags: list[str] = []
        if kind == "web":
            for offset in range(1, 3 if lower.startswith("http") else 2):
                edits.append((start + offset, "x"))
        else:
            edits.append((colon, "bracket"))
            flags.append(_scheme_flag(lower))
        pos = match.end()
        host = ""
        if kind != "opaque" or lower.startswith("ms-"):
            # Skip the slashes (browsers read "\" as "/" in special schemes, WHATWG URL).
            while pos < len(text) and text[pos] in "/\\":
                pos += 1
            auth_end = _AUTHORITY_RE.match(text, pos).end()  # type: ignore[union-attr]
            authority = text[pos:auth_end]
            if not authority.isascii():
                cut = _ASCII_TO_JAPANESE_RE.search(authority)
                if cut:
                    auth_end = pos + cut.end()
                    authority = authority[: cut.end()]
            dot = authority.find(".")
            while dot != -1:
                edits.append((pos + dot, "bracket"))
                dot = authority.find(".", dot + 1)
            if "@" in authority:
                flags.append("URL_USERINFO")
            host = authority.rpartition("@")[2]
            host = _PORT_RE.sub("", host).strip("[]")
            if host and _looks_numeric_host(host):
                flags.append("URL_IP_HOST")
            if any(label.startswith("xn--") for label in host.lower().split(".")):
                flags.append("URL_PUNYCODE")
            if not host.isascii():
                flags.append("URL_IDN")
            pos = auth_end
        end = _trim_trailing(text, start, path_end(pos))
        # Only a plain web URL with a clean authority may be allow-listed: a userinfo part
        # ("https://example.com@evil.jp/") or a backslash makes the real host ambiguous.
        allowable = (
            kind == "web"
            and "URL_USERINFO" not in flags
            and "\\" not in text[match.end() : pos + 1]
            and bool(host)
        )
        hits.append(_Hit(start, max(end, match.end()), host, allowable, edits, tuple(flags)))
        if len(hits) > MAX_URLS_ANALYSED:
            raise _TooMany
    return hits


# Every match of _SCHEME_RE ends in a colon followed by a non-space character, and starts at
# most 34 characters before it (``ms-`` and 31 more): only the text around such colons can hold
# one. Scanning every letter of a long text for a scheme name was most of the defanger's time
# for a message without URLs (issue 13).
_SCHEME_COLON_RE = re.compile(r":(?=\S)")
_SCHEME_REACH = 48


def _scheme_matches(text: str) -> Iterator[re.Match[str]]:
    """``_SCHEME_RE.finditer(text)``: the same matches (tests/text/test_urls_scheme_scan.py).

    Windows around the colons are merged where they touch, so a match never straddles two;
    ``finditer(text, start, end)`` still sees the characters before ``start`` (the
    look-behind) and the window ends far enough after the colon for the look-ahead."""
    windows: list[list[int]] = []
    for colon in _SCHEME_COLON_RE.finditer(text):
        start = max(0, colon.start() - _SCHEME_REACH)
        end = min(len(text), colon.start() + 4)
        if windows and start <= windows[-1][1]:
            windows[-1][1] = end
        else:
            windows.append([start, end])
    for start, end in windows:
        yield from _SCHEME_RE.finditer(text, start, end)


def _scheme_flag(scheme: str) -> str:
    if scheme in ("javascript", "vbscript", "livescript"):
        return "URL_JAVASCRIPT"
    if scheme == "data":
        return "URL_DATA"
    if scheme == "file":
        return "URL_FILE"
    if scheme == "mailto":
        return "URL_MAILTO"
    if scheme.startswith("ms-") or scheme in ("search-ms", "search", "its", "mk", "mhtml", "hcp"):
        return "URL_PROTOCOL_HANDLER"
    return "URL_OTHER_SCHEME"


def _looks_numeric_host(host: str) -> bool:
    return bool(
        re.fullmatch(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}\.?", host, re.I)
    )


def _domain_hits(view: _View, original: str, policy: UrlPolicy) -> list[_Hit]:
    text = view.text
    hits: list[_Hit] = []
    path_end = _PathEnds(text)
    for run_start, run_end in _runs(text):
        # Labels with their view positions; the dot before label i is at starts[i] - 1.
        starts = [run_start]
        dot = text.find(".", run_start, run_end)
        while dot != -1:
            starts.append(dot + 1)
            dot = text.find(".", dot + 1, run_end)
        labels = [
            text[s : (starts[k + 1] - 1 if k + 1 < len(starts) else run_end)]
            for k, s in enumerate(starts)
        ]
        # Split into segments where a non-ASCII dot ("。", "．") has no ASCII on either side:
        # in Japanese prose those are sentence ends, not host names.
        segment = [0]
        for k in range(1, len(labels)):
            dot_char = original[view.span(starts[k] - 1)[0]]
            both_ascii = labels[k - 1][-1:].isascii() and labels[k][:1].isascii()
            if _is_weak_dot(dot_char) and not both_ascii and not _WWW_RE.fullmatch(labels[k - 1]):
                hits.extend(
                    _segment_hit(view, original, policy, labels, starts, segment, run_end, path_end)
                )
                segment = []
            segment.append(k)
        if len(hits) > MAX_URLS_ANALYSED:
            raise _TooMany
        hits.extend(
            _segment_hit(view, original, policy, labels, starts, segment, run_end, path_end)
        )
    return hits


# Prose glued to a host on both sides ("example.comテキストwww.example.com"): a run of
# non-ASCII letters with ASCII on either side, inside one label, ends one host and starts
# the next. Without the split, the whole thing is one "label" that no public suffix ends.
_GLUED_PROSE_RE = re.compile(r"(?<=[A-Za-z0-9\-])[^\x00-\x7f.]+(?=[A-Za-z0-9\-])")


def _runs(text: str) -> list[tuple[int, int]]:
    """Dotted-name runs of ``text``, split where Japanese prose is glued inside a label."""
    runs: list[tuple[int, int]] = []
    for match in _RUN_RE.finditer(text):
        start, end = match.span()
        for glued in _GLUED_PROSE_RE.finditer(text, start, end):
            runs.append((start, glued.start()))
            start = glued.end()
        runs.append((start, end))
    return [(s, e) for s, e in runs if e > s]


def _segment_hit(
    view: _View,
    original: str,
    policy: UrlPolicy,
    labels: list[str],
    starts: list[int],
    segment: list[int],
    run_end: int,
    path_end: _PathEnds,
) -> list[_Hit]:
    text = view.text
    if len(segment) < 2:
        return []  # one label, no dot: neither a host nor a "www." (prose between "。")
    first, last = segment[0], segment[-1]
    names = [labels[k] for k in segment]
    # The last label may run into Japanese text ("comをご覧"): keep its leading ASCII part.
    last_label = names[-1]
    trimmed_tail = False
    if not _LDH_RE.fullmatch(last_label):
        lead = _LDH_RE.match(last_label)
        if lead:
            names[-1] = lead.group()
            trimmed_tail = True
        elif last > first and not _is_weak_dot(original[view.span(starts[last] - 1)[0]]):
            # A Unicode TLD runs into prose ("example.みんなをご覧"): try its prefixes.
            for size in range(min(len(last_label), 10), 0, -1):
                if _public_suffix(last_label[:size].lower()) == last_label[:size].lower():
                    names[-1] = last_label[:size]
                    trimmed_tail = True
                    break
    # Find the longest prefix of labels that ends in a public suffix with a label before it.
    domain_len = 0
    for count in range(len(names), 1, -1):
        # Public-suffix rules are at most a few labels deep: look at the tail only, so a run
        # of thousands of labels costs no more than a few lookups per label.
        tail = ".".join(names[max(0, count - 6) : count]).lower()
        suffix = _public_suffix(tail)
        if suffix is not None and (suffix != tail or count > 6):
            domain_len = count
            break
    ipv4 = (
        len(names) == 4
        and all(n.isdigit() and len(n) <= 3 and int(n) <= 255 for n in names)
        and _ends_before(text, starts[last] + len(names[-1]), ":/")
    )
    if ipv4:
        domain_len = 4
    # The dot after any "www" label is what linkifiers key on ("www.intranet", "x.www.y").
    www_dots = [
        starts[segment[k + 1]] - 1 for k in range(len(names) - 1) if _WWW_RE.fullmatch(names[k])
    ]
    if domain_len == 0 and not www_dots:
        return []
    if domain_len == 0:
        domain_len = len(names)  # no public suffix: the whole dotted name is shown defanged
    # Every dot of the dotted run, not only the host's: what follows may be another host once
    # markup between text nodes is gone ("www.example.com.com<img>x" shows "com.com").
    edits = [(starts[segment[k]] - 1, "bracket") for k in range(1, len(names))]
    edits += [(pos, "bracket") for pos in www_dots]
    # The first label may start with Japanese prose ("詳細はexample"): not part of the host.
    first_label = names[0]
    head = 0
    if not first_label.isascii():
        tail_ascii = re.search(r"[A-Za-z0-9\-_]+$", first_label)
        if tail_ascii and tail_ascii.start() > 0:
            head = tail_ascii.start()
    start = starts[first] + head
    host_end = starts[segment[domain_len - 1]] + len(names[domain_len - 1])
    host = text[start:host_end]
    end = host_end
    at_run_end = domain_len == len(names) and not trimmed_tail and host_end == run_end
    if at_run_end and end < len(text) and text[end] in ":/?#":
        end = _trim_trailing(text, start, path_end(end))
    flags: list[str] = []
    is_mail = start == starts[first] and start > 0 and text[start - 1] == "@"
    if (
        not policy.mailto
        and start == starts[first]
        and _RUN_RE.match(text, host_end + 1) is not None
        and text[host_end] == "@"
    ):
        return []  # the local part of a kept mail address ("taro.tokyo@example.jp")
    if is_mail:
        local_start = start - 1
        while local_start > 0 and text[local_start - 1] in _LOCAL_PART_CHARS:
            local_start -= 1
        if local_start < start - 1:
            if not policy.mailto:
                return []
            start = local_start
            flags.append("URL_MAIL_ADDRESS")
    if ipv4:
        flags.append("URL_IP_HOST")
    if any(n.lower().startswith("xn--") for n in names[:domain_len]):
        flags.append("URL_PUNYCODE")
    return [_Hit(start, max(end, host_end), host, not ipv4, edits, tuple(flags))]


def _ends_before(text: str, pos: int, chars: str) -> bool:
    return (
        pos < len(text)
        and text[pos] in chars
        and pos + 1 < len(text)
        and text[pos + 1] not in " \t\r\n"
    )


_HOST_AFTER_WWW_RE = re.compile(r"[\w\-]+(?:\.[\w\-]+)*")
_WWW_DOT_RE = re.compile(r"(?<![A-Za-z0-9])www\d{0,3}(\.)", re.IGNORECASE)


def _www_hits(view: _View) -> list[_Hit]:
    """Every "www." whatever follows it: the issue's promise is that none survives."""
    hits = []
    for match in _WWW_DOT_RE.finditer(view.text):
        # Bounded: a host name is at most 253 characters, and floods must stay linear.
        host = _HOST_AFTER_WWW_RE.match(view.text, match.end(), match.end() + 256)
        end = host.end() if host else match.end()
        hits.append(
            _Hit(
                match.start(),
                end,
                view.text[match.start() : end],
                True,
                [(match.start(1), "bracket")],
            )
        )
        if len(hits) > MAX_URLS_ANALYSED:
            raise _TooMany
    return hits


def _unc_hits(view: _View) -> list[_Hit]:
    text = view.text
    hits: list[_Hit] = []
    path_end = _PathEnds(text)
    for match in _UNC_RE.finditer(text):
        host = _UNC_HOST_RE.match(text, match.end())
        assert host is not None  # the look-ahead guarantees one character
        if (
            text[match.start()] == "/"
            and not match.group("prefix")
            and not _UNC_SHARE_RE.match(text, host.end())
        ):
            continue  # "//word" alone is prose or a comment; "//host/share" is a path
        edits = [(i, "bracket") for i in range(*match.span("lead"))]
        edits.extend((i, "bracket") for i in range(host.start(), host.end()) if text[i] == ".")
        end = _trim_trailing(text, match.start(), path_end(host.end()))
        hits.append(_Hit(match.start(), end, "", False, edits, ("URL_UNC_PATH",)))
        if len(hits) > MAX_URLS_ANALYSED:
            raise _TooMany
    return hits


# --------------------------------------------------------------------------------------------
# Rewriting.

_X_FOR = {"t": "x", "T": "X", "\uff54": "\uff58", "\uff34": "\uff38"}


def defang_text(text: str, policy: UrlPolicy) -> DefangResult:
    """Rewrite every URL in ``text`` according to ``policy``. See the module docstring.

    Idempotent (defanging the output again changes nothing), never raises on any ``str``,
    linear in ``len(text)``.
    """
    plan = _plan(text, policy)
    if isinstance(plan, DefangResult):
        return plan
    replacements, result = plan
    return DefangResult(_apply(text, replacements), result.count, result.urls, result.flags)


_ALWAYS_DEFANG = UrlPolicy()


def defang_untrusted(text: str) -> str:
    """``text`` defanged with the default policy, whatever the configured URL mode or allow
    list: for untrusted strings the gateway quotes in text it writes itself (notices, digests,
    finding details shown in logs and the admin UI), where nothing may be a link."""
    return defang_text(text, _ALWAYS_DEFANG).text


def defang_pieces(pieces: list[str], policy: UrlPolicy) -> tuple[list[str], DefangResult]:
    """Defang text that is split into pieces (the text nodes of an HTML document) as if it
    were one string, so ``<b>example</b>.com`` is found, and give each piece its share of the
    edits. The returned ``DefangResult.text`` is the joined result."""
    joined = "".join(pieces)
    plan = _plan(joined, policy)
    if isinstance(plan, DefangResult):
        if plan.count == 0:
            return list(pieces), plan
        # A flood: each piece on its own, coarsely.
        results = [defang_text(piece, policy) for piece in pieces]
        flags = tuple(sorted({f for r in results for f in r.flags}))
        urls = tuple(u for r in results for u in r.urls)[:MAX_REPORTED_URLS]
        out = [r.text for r in results]
        return out, DefangResult("".join(out), sum(r.count for r in results), urls, flags)
    replacements, result = plan
    local: list[list[tuple[int, int, str]]] = [[] for _ in pieces]
    offsets = [0]
    for piece in pieces:
        offsets.append(offsets[-1] + len(piece))
    for start, end, new in replacements:
        index = bisect.bisect_right(offsets, start) - 1
        while index < len(pieces) and offsets[index] == offsets[index + 1]:
            index += 1  # empty pieces hold nothing
        first = True
        while index < len(pieces) and offsets[index] < max(end, start + 1):
            base = offsets[index]
            local_start = max(start, base) - base
            local_end = min(end, offsets[index + 1]) - base
            local[index].append((local_start, local_end, new if first else ""))
            first = False
            index += 1
    out = [_apply(piece, edits) for piece, edits in zip(pieces, local, strict=True)]
    return out, DefangResult("".join(out), result.count, result.urls, result.flags)


def _plan(
    text: str, policy: UrlPolicy
) -> DefangResult | tuple[list[tuple[int, int, str]], DefangResult]:
    """The replacements (start, end, new text) to make in ``text``, sorted and disjoint, with
    the count, URLs and flags; or a finished DefangResult when there is nothing to analyse."""
    if policy.mode == "keep" or not text:
        return DefangResult(text, 0, ())
    view = _View(text)
    try:
        hits = _scheme_hits(view, text, policy) + _domain_hits(view, text, policy)
        hits += _unc_hits(view) + _www_hits(view)
    except _TooMany:
        return _coarse(view.text)
    active = [h for h in hits if not (h.allowable and h.host and policy.allows(h.host))]
    if not active:
        return DefangResult(text, 0, ())
    active.sort(key=lambda h: (h.start, -h.end))
    # Count a URL once, however many detectors saw parts of it.
    counted: list[_Hit] = []
    reach = -1
    for hit in active:
        if hit.start >= reach:
            counted.append(hit)
        reach = max(reach, hit.end)
    urls = tuple(_original(text, view, h) for h in counted[:MAX_REPORTED_URLS])
    flag_set = {f for h in active for f in h.flags}
    if any(_original(text, view, h) != view.text[h.start : h.end] for h in counted):
        # Full-width letters, character references or percent-encoding: written to evade.
        flag_set.add("URL_OBFUSCATED")
    flags = tuple(sorted(flag_set))
    if policy.mode == "remove":
        replacements = _removals(view, counted)
    else:
        replacements = _edits(text, view, active)
    return replacements, DefangResult("", len(counted), urls, flags)


class _TooMany(Exception):
    """More URLs than MAX_URLS_ANALYSED: a flood meant to exhaust the gateway's time."""


_COARSE_RE = re.compile(
    r"(?<=h)tt(?=ps?:)|(?<=f)t(?=ps?:)|(?<=[A-Za-z0-9])(:)(?=//|\\)|(\.)|(\\)"
    r"|((?<![A-Za-z0-9_:/\]])/(?=/[\w$]))",  # "//host/share": its first slash
    re.IGNORECASE,
)
_COARSE_OPAQUE_RE = re.compile(r"(?<![A-Za-z0-9+.\-])(" + _OPAQUE_SCHEMES + r"|file):", re.I)


def _coarse(view_text: str) -> DefangResult:
    """Defang without analysis, in one linear pass over the folded text: every dot, every
    scheme and every backslash is broken. Readability suffers; only floods get here."""

    def breaker(match: re.Match[str]) -> str:
        if match.group(1) or match.group(2) or match.group(3) or match.group(4):
            return "[" + match.group() + "]"
        return "x" * len(match.group())

    out = _COARSE_OPAQUE_RE.sub(lambda m: m.group(1) + "[:]", view_text)
    out = _COARSE_RE.sub(breaker, out)
    return DefangResult(out, MAX_URLS_ANALYSED + 1, (), ("URL_FLOOD",))


def _original(text: str, view: _View, hit: _Hit) -> str:
    return text[view.span(hit.start)[0] : view.span(hit.end - 1)[1]]


def _edits(text: str, view: _View, hits: list[_Hit]) -> list[tuple[int, int, str]]:
    replacements: dict[int, tuple[int, str]] = {}
    for hit in hits:
        for pos, op in hit.edits:
            start, end = view.span(pos)
            if start in replacements:
                continue
            piece = text[start:end]
            new = _X_FOR.get(piece, "x") if op == "x" else "[" + piece + "]"
            replacements[start] = (end, new)
    out: list[tuple[int, int, str]] = []
    last = 0
    for start in sorted(replacements):
        end, new = replacements[start]
        if start >= last:
            out.append((start, end, new))
            last = end
    return out


def _removals(view: _View, hits: list[_Hit]) -> list[tuple[int, int, str]]:
    spans = sorted((view.span(h.start)[0], view.span(h.end - 1)[1]) for h in hits)
    out: list[tuple[int, int, str]] = []
    last = 0
    for start, end in spans:
        if end <= last:
            continue
        out.append((max(start, last), end, REMOVED_PLACEHOLDER))
        last = end
    return out


def _apply(text: str, replacements: list[tuple[int, int, str]]) -> str:
    out: list[str] = []
    last = 0
    for start, end, new in replacements:
        out.append(text[last:start])
        out.append(new)
        last = end
    out.append(text[last:])
    return "".join(out)
