"""Decode mail text, Japanese first, without mojibake or lost characters; encode it back.

- ``decode_body(payload, declared_charset) -> DecodedText``: bytes of a text part to ``str``.
- ``decode_header(raw) -> str``: RFC 2047 encoded words (also ISO-2022-JP split across words)
  and raw 8-bit bytes that Python's parser handed over as surrogate escapes.
- ``decode_filename(msg) -> str``: RFC 2231 ``filename*=`` (with continuations), and the
  non-standard RFC 2047 ``name="=?ISO-2022-JP?B?...?="`` Japanese mailers write.
- ``encode_body(text, charset) -> EncodedText``: UTF-8, or ISO-2022-JP when configured, falling
  back to UTF-8 (and saying so) when a character has no JIS code.

The mapping choice, stated once: every JIS X 0208 code is decoded with Microsoft's table
(CP932), whatever the transport form: ISO-2022-JP is read as CP50220, Shift_JIS as CP932, EUC-JP
as CP51932. So 0x2141 is U+FF5E FULLWIDTH TILDE (not U+301C WAVE DASH), 0x215D U+FF0D (not
U+2212), 0x2142 U+2225 (not U+2016), and the NEC row 13 (①, ㈱, ㍉), the NEC-selected IBM
extensions (髙, 﨑) and the IBM extensions decode instead of failing. This is what Outlook and
Windows, the clients on LGWAN desks, show for the same bytes; one table for all three forms
means one message never mixes two tildes; and every character decoded this way has a code in
``encode_body``'s ISO-2022-JP, so nothing is lost on the way back. Rows 85-94 of ISO-2022-JP
(carrier emoji, user-defined characters) decode to the Private Use Area as CP50221 does.

Mislabelled text is detected by strict trial decoding in a fixed order (measured on the corpus:
see tests/text/test_charsets_corpus.py): 7-bit with ISO-2022 escapes, valid UTF-8 with non-ASCII,
the declared charset, CP932 and EUC-JP scored by how Japanese the result is, and then
charset-normalizer. Only when all fail are bytes replaced by U+FFFD, with a finding.

Deliberately not done here: MIME structure and transfer encodings (base64 and QP are undone by
the MIME layer first), converting carrier emoji to Unicode emoji, HTML ``<meta charset>``.
"""

from __future__ import annotations

import codecs
import email.header
import email.message
import email.utils
import functools
import re
import unicodedata
from dataclasses import dataclass

from gateway.report import Finding

# Finding codes (stable, used by policies and metrics).
CHARSET_MISLABELED = "CHARSET_MISLABELED"
CHARSET_UNDECLARED_8BIT = "CHARSET_UNDECLARED_8BIT"
CHARSET_UNKNOWN = "CHARSET_UNKNOWN"
CHARSET_UNDECODABLE = "CHARSET_UNDECODABLE"
CHARSET_FALLBACK_UTF8 = "CHARSET_FALLBACK_UTF8"


@dataclass(frozen=True, slots=True)
class DecodedText:
    """``charset_used`` is the canonical name of what decoded the bytes (``utf-8``, ``cp932``,
    ``iso-2022-jp`` meaning CP50220, ``euc-jp``, or a Python codec name)."""

    text: str
    charset_used: str
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class EncodedText:
    data: bytes
    charset: str  # the MIME charset label to put in Content-Type
    findings: tuple[Finding, ...] = ()


# --------------------------------------------------------------------------------------------
# Charset labels.

_JIS_LABELS = frozenset(
    {
        "iso-2022-jp",
        "iso2022jp",
        "iso-2022-jp-1",
        "iso-2022-jp-2",
        "iso-2022-jp-3",
        "iso-2022-jp-2004",
        "iso-2022-jp-ms",
        "cp50220",
        "cp50221",
        "cp50222",
        "csiso2022jp",
        "jis",
        "x-jis",
    }
)
_SJIS_LABELS = frozenset(
    {
        "shift_jis",
        "shift-jis",
        "sjis",
        "x-sjis",
        "s-jis",
        "ms_kanji",
        "csshiftjis",
        "windows-31j",
        "cp932",
        "ms932",
        "x-ms-cp932",
        "shift_jisx0213",
        "shift_jis-2004",
        "x-sjis-docomo",
        "x-sjis-kddi",
        "x-sjis-softbank",
    }
)
_EUC_LABELS = frozenset(
    {
        "euc-jp",
        "eucjp",
        "x-euc-jp",
        "euc_jp",
        "cseucpkdfmtjapanese",
        "cp51932",
        "eucjp-ms",
        "euc-jp-ms",
        "euc-jis-2004",
    }
)
# Supersets that decode everything the narrower label can (WHATWG Encoding Standard, 4.2).
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "ks_c_5601": "cp949",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "utf8": "utf-8",
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
}
_SINGLE_BYTE_LATIN = frozenset({"us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1"})


def canonical_charset(label: str | None) -> str:
    """The decoder this module uses for a declared label: ``iso-2022-jp``, ``cp932``,
    ``euc-jp``, ``utf-8``, a Python codec name, or ``""`` when unknown or absent."""
    if not label:
        return ""
    name = label.strip().strip("\"'").lower()
    if name in _JIS_LABELS:
        return "iso-2022-jp"
    if name in _SJIS_LABELS:
        return "cp932"
    if name in _EUC_LABELS:
        return "euc-jp"
    if name in _SUPERSETS:
        return _SUPERSETS[name]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return ""
    if info.name in ("utf-8", "utf-8-sig"):
        return "utf-8"
    if info.name in ("ascii", "latin-1", "iso8859-1"):
        return "us-ascii" if info.name == "ascii" else "iso-8859-1"
    if info.name in ("shift_jis", "shift_jis_2004", "shift_jisx0213", "cp932"):
        return "cp932"
    if info.name in ("euc_jp", "euc_jis_2004", "euc_jisx0213"):
        return "euc-jp"
    if info.name.startswith("iso2022_jp"):
        return "iso-2022-jp"
    # Python's codec registry knows UTF-7 and the like; never the bytes-to-bytes codecs.
    if info.name in ("rot-13", "base64", "hex", "quopri", "uu", "zlib", "bz2"):
        return ""
    return info.name


# --------------------------------------------------------------------------------------------
# ISO-2022-JP as CP50220, EUC-JP as CP51932, both through CP932.


def _jis_pair_to_sjis(j1: int, j2: int) -> bytes:
    """JIS X 0208 row/cell bytes (0x21-0x7E each) to the Shift_JIS bytes of the same code."""
    s1 = (j1 + 1) // 2 + (0x70 if j1 <= 0x5E else 0xB0)
    s2 = j2 + (0x1F if j2 <= 0x5F else 0x20) if j1 % 2 else j2 + 0x7E
    return bytes((s1, s2))


@functools.lru_cache(maxsize=8192)
def _jis_char(j1: int, j2: int) -> str | None:
    """One JIS X 0208 code (with the Microsoft extensions) to its character, or None."""
    if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
        return None
    try:
        return _jis_pair_to_sjis(j1, j2).decode("cp932")
    except UnicodeDecodeError:
        pass
    if j1 >= 0x75:
        # Rows 85-94: user-defined characters and carrier emoji, to the PUA (CP50221).
        return chr(0xE000 + (j1 - 0x75) * 94 + (j2 - 0x21))
    return None


_ESC_RE = re.compile(rb"\x1b(\$[@B]|\$\(D|\$\([OPQ]|\$A|\$\(C|\(B|\(J|\(I|\(H|\.A|\.F|N|\$\(@)")


_DESIGNATIONS = {
    b"$@": "jis0208",
    b"$B": "jis0208",
    b"$(D": "jis0212",
    b"$(O": "jis0213",
    b"$(Q": "jis0213",
    b"$(P": "jis0213p2",
    b"$A": "gb2312",
    b"$(C": "ksc5601",
    b"(B": "ascii",
    b"(J": "ascii",  # JIS X 0201 Roman: read as ASCII, as CP50220 does
    b"(H": "ascii",
    b"(I": "kana",
    b"$(@": "jis0208",
}
# The bytes that change state or stand for themselves whatever the mode: an escape (with its
# designation when it is one we know), SO/SI, line ends, 8-bit bytes. Between two of them is a
# run of 7-bit bytes that one mode decodes as a whole.
_SPECIAL_RE = re.compile(rb"\x1b(" + _ESC_RE.pattern[5:-1] + rb")?|[\x0a\x0d\x0e\x0f\x80-\xff]")
_JIS_PAIRS_RE = re.compile(rb"(?:[\x21-\x7e]{2})*")
_HALF_WIDTH_KANA = {b: chr(0xFF61 + b - 0x21) for b in range(0x21, 0x60)}


def _decode_iso2022jp(data: bytes) -> tuple[str, int]:
    """Decode ISO-2022-JP as CP50220 (and the JIS X 0212 and 0213 sets of its relatives).

    Returns the text and the number of bytes that could not be decoded (each became U+FFFD).
    Lenient with what real mail does: escape sequences missing at the end of a line, 8-bit
    half-width katakana (CP50222 style), SO/SI shifts (CP50221).

    Works run by run (see ``_SPECIAL_RE``): mail is mostly long runs of one mode, and a run of
    JIS X 0208 goes through Python's C codec at once (issue 13: the byte-by-byte loop cost a
    worker 1.4 ms per 5 KB message).
    """
    out: list[str] = []
    bad = 0
    mode = "ascii"
    shifted = False  # SO ... SI: half-width katakana
    position = 0
    for special in _SPECIAL_RE.finditer(data):
        start = special.start()
        if start > position:
            text, undecodable = _decode_run(data[position:start], mode, shifted)
            out.append(text)
            bad += undecodable
        position = special.end()
        byte = data[start]
        if byte == 0x1B:
            designation = special.group(1)
            if designation is None:
                out.append("\ufffd")
                bad += 1
            else:
                mode = _DESIGNATIONS.get(designation, mode)
        elif byte == 0x0E:
            shifted = True
        elif byte == 0x0F:
            shifted = False
        elif byte in (0x0A, 0x0D):
            # RFC 1468: lines end in ASCII. Mailers that forget "ESC ( B" still mean that.
            mode = "ascii"
            out.append(chr(byte))
        elif 0xA1 <= byte <= 0xDF:
            out.append(chr(0xFF61 + byte - 0xA1))  # 8-bit half-width katakana
        else:
            out.append("\ufffd")
            bad += 1
    if position < len(data):
        text, undecodable = _decode_run(data[position:], mode, shifted)
        out.append(text)
        bad += undecodable
    return "".join(out), bad


def _decode_run(run: bytes, mode: str, shifted: bool) -> tuple[str, int]:
    """A run of 7-bit bytes without escape, SO/SI or line end, in one mode."""
    if shifted or mode == "kana":
        return run.decode("ascii").translate(_HALF_WIDTH_KANA), 0
    if mode == "ascii":
        return run.decode("ascii"), 0
    if mode == "jis0208" and _JIS_PAIRS_RE.fullmatch(run):
        # Python's codec reads JIS X 0208 as JIS does; CP50220 is CP932, which spells a few
        # codes differently (_TO_MICROSOFT; all 8,836 codes are compared by
        # tests/text/test_charsets_iso2022jp.py).
        try:
            text = (b"\x1b$B" + run).decode("iso2022_jp")
            if _JIS_SPELLED_RE.search(text):
                text = text.translate(_TO_MICROSOFT)
            return text, 0
        except UnicodeDecodeError:
            pass  # NEC and IBM extensions, user-defined rows: code by code below
    out: list[str] = []
    bad = 0
    i = 0
    n = len(run)
    while i < n:
        byte = run[i]
        # A code needs two bytes 0x21-0x7E; the byte after a run is never one.
        if i + 1 >= n or run[i + 1] < 0x21 or run[i + 1] > 0x7E or byte < 0x21:
            if byte in (0x20, 0x09):
                out.append(chr(byte))  # spaces between words survive in some mailers
            else:
                out.append("\ufffd")
                bad += 1
            i += 1
            continue
        j1, j2 = byte, run[i + 1]
        char: str | None
        if mode == "jis0208":
            char = _jis_char(j1, j2)
        elif mode == "jis0212":
            char = _try_decode(bytes((0x8F, j1 | 0x80, j2 | 0x80)), "euc_jp")
        elif mode == "jis0213":
            char = _try_decode(b"\x1b$(Q" + bytes((j1, j2)), "iso2022_jp_2004")
        elif mode == "jis0213p2":
            char = _try_decode(b"\x1b$(P" + bytes((j1, j2)), "iso2022_jp_2004")
        elif mode == "gb2312":
            char = _try_decode(bytes((j1 | 0x80, j2 | 0x80)), "gb18030")
        else:
            char = _try_decode(bytes((j1 | 0x80, j2 | 0x80)), "cp949")
        if char is None:
            out.append("\ufffd")
            bad += 1
        else:
            out.append(char)
        i += 2
    return "".join(out), bad


def _try_decode(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None


def _decode_eucjp(data: bytes, strict: bool) -> tuple[str, int]:
    """EUC-JP as CP51932/eucJP-ms: JIS X 0208 codes through the same table as ISO-2022-JP."""
    out: list[str] = []
    bad = 0
    i = 0
    n = len(data)
    while i < n:
        byte = data[i]
        if byte < 0x80:
            out.append(chr(byte))
            i += 1
            continue
        char: str | None = None
        width = 1
        if byte == 0x8E and i + 1 < n and 0xA1 <= data[i + 1] <= 0xDF:
            char = chr(0xFF61 + data[i + 1] - 0xA1)
            width = 2
        elif byte == 0x8F and i + 2 < n:
            char = _try_decode(data[i : i + 3], "euc_jp")
            width = 3
        elif 0xA1 <= byte <= 0xFE and i + 1 < n and 0xA1 <= data[i + 1] <= 0xFE:
            char = _jis_char(byte & 0x7F, data[i + 1] & 0x7F)
            width = 2
        if char is None:
            if strict:
                raise UnicodeDecodeError("euc-jp", data, i, i + 1, "invalid EUC-JP sequence")
            out.append("\ufffd")
            bad += 1
            i += 1
            continue
        out.append(char)
        i += width
    return "".join(out), bad


# --------------------------------------------------------------------------------------------
# Decoding bodies.


def _strict(data: bytes, charset: str) -> str | None:
    """Decode strictly with one of our decoders; None if any byte does not fit."""
    if charset == "iso-2022-jp":
        if any(b >= 0x80 for b in data):
            return None
        text, bad = _decode_iso2022jp(data)
        return None if bad else text
    if charset == "euc-jp":
        try:
            return _decode_eucjp(data, strict=True)[0]
        except UnicodeDecodeError:
            return None
    if charset == "utf-8":
        return _try_decode(data, "utf-8")
    if charset == "us-ascii":
        return _try_decode(data, "ascii")
    if charset == "iso-8859-1":
        # Mail labelled Latin-1 is Windows-1252 in practice (WHATWG Encoding Standard).
        return _try_decode(data, "cp1252") or data.decode("latin-1")
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return None


def _lenient(data: bytes, charset: str) -> tuple[str, int]:
    if charset == "iso-2022-jp":
        return _decode_iso2022jp(data)
    if charset == "euc-jp":
        return _decode_eucjp(data, strict=False)
    try:
        text = data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        text = data.decode("utf-8", errors="replace")
    return text, text.count("\ufffd")


_KANA_KANJI_RE = re.compile(
    r"[\u3040-\u30ff\u4e00-\u9fff\u3000-\u303f\uff01-\uff5e\u2160-\u217f\u2460-\u24ff"
    r"\u3200-\u33ff\u2010-\u2312\u25a0-\u266f\uf900-\ufaff]"
)


def _japanese_score(text: str) -> float:
    """Share of non-ASCII characters that are common Japanese (kana, kanji, CJK punctuation,
    full-width forms). Mojibake from the wrong multibyte table is mostly rare kanji, half-width
    katakana, PUA and symbols."""
    non_ascii = sum(1 for c in text if ord(c) > 0x7F)
    if not non_ascii:
        return 0.0
    common = len(_KANA_KANJI_RE.findall(text))
    # Private use, unassigned code points and C1 controls: what a wrong guess produces.
    odd = sum(
        1 for c in text if ord(c) > 0x7F and unicodedata.category(c) in ("Co", "Cn", "Cc", "Cs")
    )
    return (common - odd) / non_ascii


def _finding(code: str, detail: str) -> Finding:
    return Finding(code, "", detail)


# A message's text is decoded by the inspector, the rules' body texts and the quarantine
# summary: the same bytes three times. Results are immutable, so the last few are shared.
_MEMO_MAX_BYTES = 256 * 1024


def decode_body(payload: bytes, declared_charset: str | None) -> DecodedText:
    """See ``_decode_body``; small payloads are decoded once per worker."""
    if len(payload) <= _MEMO_MAX_BYTES:
        return _decode_body_memo(bytes(payload), declared_charset)
    return _decode_body(payload, declared_charset)


@functools.lru_cache(maxsize=32)
def _decode_body_memo(payload: bytes, declared_charset: str | None) -> DecodedText:
    return _decode_body(payload, declared_charset)


def _decode_body(payload: bytes, declared_charset: str | None) -> DecodedText:
    """Decode the (transfer-decoded) bytes of a text part. Never raises; never loses a byte
    silently: anything undecodable becomes U+FFFD and a ``CHARSET_UNDECODABLE`` finding.

    Findings (``part_id`` empty, for the caller to fill): ``CHARSET_MISLABELED`` (declared one
    thing, was another), ``CHARSET_UNDECLARED_8BIT``, ``CHARSET_UNKNOWN`` (a label no decoder
    knows), ``CHARSET_UNDECODABLE``.
    """
    declared = canonical_charset(declared_charset)
    findings: list[Finding] = []
    label = (declared_charset or "").strip().lower()
    if declared_charset and not declared:
        findings.append(_finding(CHARSET_UNKNOWN, label[:40]))
    seven_bit = payload.isascii()
    if seven_bit:
        shifts = declared == "iso-2022-jp" and b"\x0e" in payload
        if shifts or (b"\x1b" in payload and _ESC_RE.search(payload)):
            text, bad = _decode_iso2022jp(payload)
            if declared not in ("iso-2022-jp", "") and declared_charset:
                findings.append(_finding(CHARSET_MISLABELED, f"{label} -> iso-2022-jp"))
            if bad:
                findings.append(_finding(CHARSET_UNDECODABLE, f"{bad} bytes"))
            return DecodedText(text, "iso-2022-jp", tuple(findings))
        if declared in ("", "us-ascii", "iso-8859-1", "iso-2022-jp", "cp932", "euc-jp"):
            return DecodedText(payload.decode("ascii"), declared or "us-ascii", tuple(findings))
        strict = _strict(payload, declared)  # UTF-7, UTF-16 and the like
        if strict is not None:
            return DecodedText(strict, declared, tuple(findings))
        return DecodedText(payload.decode("ascii"), "us-ascii", tuple(findings))

    # 8-bit from here on.
    utf8 = _try_decode(payload, "utf-8")
    if utf8 is not None and declared in ("cp932", "euc-jp"):
        # Short CP932/EUC-JP runs can be valid UTF-8 by accident ("遖①" is "禇@" in UTF-8):
        # the label wins unless UTF-8 reads as more plausibly Japanese.
        labelled = _strict(payload, declared)
        # A few characters are no evidence against the label ("竓Ё" in CP932 is valid UTF-8).
        few = sum(1 for c in utf8 if ord(c) > 0x7F) < 3
        if labelled is not None and (few or _japanese_score(labelled) >= _japanese_score(utf8)):
            utf8 = None
    if utf8 is not None and declared not in ("utf-8",) and not declared.startswith("utf-16"):
        # Valid UTF-8 with non-ASCII is rarely another charset by accident.
        code = CHARSET_UNDECLARED_8BIT if not declared else CHARSET_MISLABELED
        findings.append(_finding(code, f"{label or 'none'} -> utf-8"))
        return DecodedText(utf8, "utf-8", tuple(findings))
    if declared and declared not in ("us-ascii", "iso-2022-jp"):
        suspicious_latin = declared == "iso-8859-1" and re.search(rb"[\x80-\x9f]", payload)
        strict = None if suspicious_latin else _strict(payload, declared)
        if strict is not None:
            return DecodedText(strict, declared, tuple(findings))
    # The declared charset does not fit (or there is none): try the Japanese ones.
    candidates: list[tuple[float, str, str]] = []
    for charset in ("cp932", "euc-jp"):
        decoded = _strict(payload, charset)
        if decoded is not None:
            candidates.append((_japanese_score(decoded), charset, decoded))
    chosen: tuple[str, str] | None = None
    if candidates:
        score, charset, text = max(candidates, key=lambda c: c[0])
        if score >= 0.5 or not declared:
            chosen = (charset, text)
    if chosen is None and declared in ("", "us-ascii"):
        # Only without a usable label: on short text its guesses are often wrong (measured:
        # French Windows-1252 guessed as cp1250), so a declared charset is trusted over it.
        guessed = _charset_normalizer_guess(payload)
        if guessed is not None:
            chosen = guessed
    if chosen is None and candidates and declared in ("", "us-ascii", "iso-2022-jp"):
        chosen = (candidates[0][1], candidates[0][2])
    if chosen is not None:
        charset, text = chosen
        if declared != charset:
            code = CHARSET_UNDECLARED_8BIT if not declared else CHARSET_MISLABELED
            findings.append(_finding(code, f"{label or 'none'} -> {charset}"))
        return DecodedText(text, charset, tuple(findings))
    # Nothing fits: decode with the declared (or UTF-8) leniently and say so.
    fallback = declared if declared and declared != "us-ascii" else "utf-8"
    text, bad = _lenient(payload, fallback)
    if not declared:
        findings.append(_finding(CHARSET_UNDECLARED_8BIT, "none"))
    findings.append(_finding(CHARSET_UNDECODABLE, f"{bad} bytes as {fallback}"))
    return DecodedText(text, fallback, tuple(findings))


def _charset_normalizer_guess(payload: bytes) -> tuple[str, str] | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - it is a locked dependency
        return None
    best = from_bytes(payload[:65536]).best()
    if best is None:
        return None
    charset = canonical_charset(best.encoding) or best.encoding
    text = _strict(payload, charset)
    return (charset, text) if text is not None else None


# --------------------------------------------------------------------------------------------
# Headers.

_ENCODED_WORD_RE = re.compile(
    r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?]*?)\?=",
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _raw_bytes(raw: str) -> bytes:
    """The bytes behind a header str from Python's parser (8-bit bytes as surrogates)."""
    return raw.encode("utf-8", errors="surrogateescape")


def _decode_raw_segment(segment: str) -> str:
    if segment.isascii() and "\x1b" not in segment:
        return segment
    data = _raw_bytes(segment)
    if data.isascii():
        if b"\x1b" in data:
            return _decode_iso2022jp(data)[0]
        return segment
    return decode_body(data, None).text


def _decode_word_payload(encoding: str, payload: str) -> bytes | None:
    import base64
    import binascii
    import quopri

    if encoding in "Bb":
        cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
        cleaned += "=" * (-len(cleaned) % 4)
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            return None
    return quopri.decodestring(payload.replace("_", " ").encode("ascii", "replace"), header=True)


def decode_header(raw: str | email.header.Header) -> str:
    """Decode one header value to text. Lenient where mailers are sloppy: encoded words next
    to text without spaces, ISO-2022-JP or UTF-8 split across adjacent words (their bytes are
    joined before decoding, RFC 2047 section 6.2 allows no other reading), bad base64 padding,
    raw ISO-2022-JP/CP932/EUC-JP/UTF-8 bytes. Folding is undone; NUL and other control
    characters (illegal in headers, RFC 5322 section 3.2) are dropped; tabs become spaces.
    Never raises."""
    if isinstance(raw, email.header.Header):
        # compat32 wraps raw 8-bit values in a Header; its chunks keep the surrogate escapes.
        # Prefer passing ``msg.raw_items()`` values, which are the plain str.
        raw = "".join(str(chunk) for chunk, _charset in getattr(raw, "_chunks", [(str(raw), None)]))
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", str(raw)).replace("\r", "").replace("\n", "")
    pieces: list[str] = []
    pending_charset = ""
    pending_bytes = b""
    last_end = 0

    def flush() -> None:
        nonlocal pending_bytes, pending_charset
        if pending_bytes:
            decoded = decode_body(pending_bytes, pending_charset or None).text
            pieces.append(decoded)
        pending_bytes = b""
        pending_charset = ""

    for match in _ENCODED_WORD_RE.finditer(unfolded):
        between = unfolded[last_end : match.start()]
        charset, encoding, payload = match.groups()
        data = _decode_word_payload(encoding, payload)
        if data is None:
            continue  # leave a broken word as it was written (it is kept in `between` later)
        if between.strip(" \t") or not pending_bytes:
            flush()
            pieces.append(_decode_raw_segment(between))
        if pending_bytes and charset.lower() != pending_charset:
            flush()
        pending_charset = charset.lower()
        pending_bytes += data
        last_end = match.end()
    flush()
    pieces.append(_decode_raw_segment(unfolded[last_end:]))
    text = "".join(pieces).replace("\t", " ")
    return _CONTROL_RE.sub("", text)


def decode_filename(msg: email.message.Message) -> str:
    """The attachment's file name as the sender meant it, or ``""``.

    Looks at ``Content-Disposition: filename`` then ``Content-Type: name``; handles RFC 2231
    (``filename*=charset'lang'%XX``, continuations ``filename*0*=``), RFC 2047 words inside
    the quoted value, and raw 8-bit names. Returns the name as text, with control characters
    removed; checks on the name itself (bidi controls, double extensions, path separators)
    belong to ``gateway.detect``.
    """
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        raw_values = [v for k, v in msg.raw_items() if k.lower() == header]
        if not raw_values:
            continue
        probe = email.message.Message()
        raw = str(raw_values[0])
        if not raw.isascii():
            # Raw 8-bit names: decode the bytes first, or compat32 turns them into U+FFFD.
            raw = _decode_raw_segment(raw)
        probe[header] = raw
        value = probe.get_param(param, header=header)
        if value is None or value == "":
            continue
        if isinstance(value, tuple):
            charset, _language, encoded = value
            data = str(encoded).encode("latin-1", errors="surrogateescape")
            text = decode_body(data, charset or None).text
            # Some mailers put an RFC 2047 word inside an RFC 2231 value too.
            text = decode_header(text) if "=?" in text else text
        else:
            text = decode_header(email.utils.unquote(str(value)))
        text = _CONTROL_RE.sub("", text).replace("\r", "").replace("\n", "").strip()
        if text:
            return text
    return ""


# --------------------------------------------------------------------------------------------
# Encoding.

# JIS-style characters that CP932 spells differently; same JIS code either way.
_TO_MICROSOFT = str.maketrans(
    {
        "\u301c": "\uff5e",
        "\u2016": "\u2225",
        "\u2212": "\uff0d",
        "\u00a2": "\uffe0",
        "\u00a3": "\uffe1",
        "\u00ac": "\uffe2",
        "\u2014": "\u2015",
    }
)
# A decoded run needs the translation only when it holds one of those characters.
_JIS_SPELLED_RE = re.compile("[" + "".join(map(chr, _TO_MICROSOFT)) + "]")


@functools.cache
def _sjis_to_jis_table() -> dict[str, bytes]:
    """Characters whose CP932 code lies outside JIS rows 1-94, mapped to a code inside
    (IBM extensions FAxx-FCxx to their NEC-selected twins in rows 89-92 or NEC row 13)."""
    table: dict[str, bytes] = {}
    for j1 in range(0x21, 0x7F):
        for j2 in range(0x21, 0x7F):
            char = _jis_char(j1, j2)
            if char is not None and char not in table:
                table[char] = bytes((j1, j2))
    return table


def _encode_iso2022jp(text: str) -> tuple[bytes, list[str]]:
    """CP50220-style ISO-2022-JP (RFC 1468 sets only: ASCII and JIS X 0208 with the
    Microsoft extensions). Half-width katakana are widened (NFKC), as CP50220 does, because
    RFC 1468 has no set for them. Returns the bytes and the characters that have no code."""
    table = _sjis_to_jis_table()
    out = bytearray()
    missing: list[str] = []
    in_jis = False
    for char in _widen_katakana(text.translate(_TO_MICROSOFT)):
        if char in "\x0e\x0f\x1b":
            missing.append(char)  # would read as a shift or an escape sequence
            continue
        if char < "\x80":
            if in_jis:
                out += b"\x1b(B"
                in_jis = False
            out += char.encode("ascii")
            continue
        code = table.get(char)
        if code is None:
            missing.append(char)
            continue
        if not in_jis:
            out += b"\x1b$B"
            in_jis = True
        out += code
    if in_jis:
        out += b"\x1b(B"
    return bytes(out), missing


_HALFWIDTH_KANA_RE = re.compile(r"[\uff61-\uff9f]+")


def _widen_katakana(text: str) -> str:
    return _HALFWIDTH_KANA_RE.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)


def encode_body(text: str, charset: str = "utf-8") -> EncodedText:
    """Encode text for output. ``charset`` is ``utf-8`` (default) or ``iso-2022-jp``.

    For ISO-2022-JP, line ends must already be LF or CRLF (each line ends in ASCII, RFC 1468).
    If any character has no JIS code (emoji, most non-Japanese scripts), the whole part is
    encoded as UTF-8 instead and a ``CHARSET_FALLBACK_UTF8`` finding names up to five of the
    characters: nothing is dropped or replaced silently.
    """
    wanted = canonical_charset(charset) or "utf-8"
    if wanted == "iso-2022-jp":
        data, missing = _encode_iso2022jp(text)
        if not missing:
            return EncodedText(data, "iso-2022-jp")
        sample = "".join(dict.fromkeys(missing))[:5]
        detail = " ".join(f"U+{ord(c):04X}" for c in sample)
        finding = _finding(
            CHARSET_FALLBACK_UTF8, f"{len(missing)} characters without JIS code: {detail}"
        )
        return EncodedText(text.encode("utf-8", errors="replace"), "utf-8", (finding,))
    return EncodedText(text.encode("utf-8", errors="replace"), "utf-8")
