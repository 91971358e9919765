"""The run-wise ISO-2022-JP decoder reads every input exactly as the byte-by-byte one did.

``gateway.charsets._decode_iso2022jp`` decodes a run of one mode at once, and a run of
JIS X 0208 through Python's C codec with a six-code fix-up to CP932 (issue 13). The reading
must not change: a different character here is a different URL to the defanger. The
reference below is the byte-by-byte decoder it replaced, kept verbatim as the specification.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.charsets import _ESC_RE, _decode_iso2022jp, _jis_char, _try_decode


def _reference_decode(data: bytes) -> tuple[str, int]:
    """The byte-by-byte decoder before issue 13 (the specification).

    Returns the text and the number of bytes that could not be decoded (each became U+FFFD).
    Lenient with what real mail does: escape sequences missing at the end of a line, 8-bit
    half-width katakana (CP50222 style), SO/SI shifts (CP50221).
    """
    out: list[str] = []
    bad = 0
    mode = "ascii"
    shifted = False  # SO ... SI: half-width katakana
    i = 0
    n = len(data)
    while i < n:
        byte = data[i]
        if byte == 0x1B:
            match = _ESC_RE.match(data, i)
            if match is None:
                out.append("\ufffd")
                bad += 1
                i += 1
                continue
            seq = match.group(1)
            mode = {
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
            }.get(seq, mode)
            i = match.end()
            continue
        if byte == 0x0E:
            shifted = True
            i += 1
            continue
        if byte == 0x0F:
            shifted = False
            i += 1
            continue
        if byte in (0x0A, 0x0D):
            # RFC 1468: lines end in ASCII. Mailers that forget "ESC ( B" still mean that.
            mode = "ascii"
            out.append(chr(byte))
            i += 1
            continue
        if byte >= 0x80:
            if 0xA1 <= byte <= 0xDF:
                out.append(chr(0xFF61 + byte - 0xA1))  # 8-bit half-width katakana
            else:
                out.append("\ufffd")
                bad += 1
            i += 1
            continue
        if shifted or mode == "kana":
            if 0x21 <= byte <= 0x5F:
                out.append(chr(0xFF61 + byte - 0x21))
            else:
                out.append(chr(byte))
            i += 1
            continue
        if mode == "ascii":
            out.append(chr(byte))
            i += 1
            continue
        # Two-byte sets.
        if i + 1 >= n or data[i + 1] < 0x21 or data[i + 1] > 0x7E or byte < 0x21:
            if byte in (0x20, 0x09):
                out.append(chr(byte))  # spaces between words survive in some mailers
            else:
                out.append("\ufffd")
                bad += 1
            i += 1
            continue
        j1, j2 = byte, data[i + 1]
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


def test_every_jis0208_code_in_both_designations_reads_as_cp932() -> None:
    for designation in (b"\x1b$B", b"\x1b$@"):
        for j1 in range(0x21, 0x7F):
            row = bytes(b for j2 in range(0x21, 0x7F) for b in (j1, j2))
            # A whole row at once (the codec path) and each code alone (the fallback).
            assert _decode_iso2022jp(designation + row) == _reference_decode(designation + row)
            for j2 in range(0x21, 0x7F):
                code = designation + bytes((j1, j2)) + b"\x1b(B"
                expected = _jis_char(j1, j2)
                text, bad = _decode_iso2022jp(code)
                assert (text, bad) == _reference_decode(code)
                assert text == (expected if expected is not None else "\ufffd")


def test_wave_dash_and_friends_are_cp932_not_jis() -> None:
    # JIS X 0208 1-33 is U+301C in JIS, U+FF5E in CP932 (what Outlook and Windows show).
    assert _decode_iso2022jp(b"\x1b$B!A!]!B\x1b(B") == ("\uff5e\uff0d\u2225", 0)
    # A run that mixes a NEC special character (row 13) with ordinary kanji.
    text, bad = _decode_iso2022jp(b"\x1b$B-!4A;z\x1b(B")
    assert (text, bad) == ("\u2460漢字", 0)


_PIECES = [
    b"\x1b$B", b"\x1b$@", b"\x1b(B", b"\x1b(J", b"\x1b(I", b"\x1b(H", b"\x1b$(D", b"\x1b$(Q",
    b"\x1b$(P", b"\x1b$A", b"\x1b$(C", b"\x1b.A", b"\x1bN", b"\x1b$(@", b"\x1b", b"\x1b$",
    b"\x0e", b"\x0f", b"\r\n", b"\n", b"\r", b" ", b"\t", b"\x00", b"\xb1", b"\x80", b"\xff",
    b"$B", b"4A", b";z", b"!A", b"-!", b"y!", b"u!", b"~~", b"\x7f", b"!", b"abc", b"http://x.jp/",
]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES) | st.binary(max_size=6), max_size=40))
def test_any_mixture_reads_as_the_reference(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert _decode_iso2022jp(data) == _reference_decode(data)


def test_the_reference_is_what_it_was() -> None:
    # Guards the reference itself: a designation it knows changes the mode, one it does not
    # is one undecodable byte.
    assert _ESC_RE.match(b"\x1b$B")
    assert _reference_decode(b"\x1b$B4A\x1b(B") == ("漢", 0)
    assert _reference_decode(b"\x1b$Z") == ("\ufffd$Z", 1)
