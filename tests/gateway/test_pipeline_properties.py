"""Issue 4, bad input: any bytes given as a message end delivered-sanitized or held, never as a
crash and never with active content.

Hypothesis builds MIME by hand (not with the email package, which would refuse to write the
malformed structures real mail has): random trees of multiparts with random, reused or
missing boundaries, leaves with random types, charsets, transfer encodings (also bogus ones),
file names (with RTLO, Japanese, double extensions) and payloads full of URLs, HTML and
executables. The output is read as a client would and checked with the independent linkifier
and libmagic.
"""

from __future__ import annotations

import base64
import binascii
import quopri

import magic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.report import Verdict
from tests.helpers.pipeline import attachments, parse, run, text_parts
from tests.text.linkify import live_links

PE = b"MZ\x90\x00" + b"\x00" * 56 + b"\x40\x00\x00\x00" + b"PE\x00\x00" + b"\x00" * 200

URLS = st.sampled_from(
    [
        "https://evil.example.com/login",
        "http://192.168.0.1/x",
        "www.example.org",
        "ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ",
        "詳細はhttps://example.jp/パスを",
        "hxxp://already[.]defanged",
        "javascript:alert(1)",
        "https&#58;//entity.example",
    ]
)
WORDS = st.sampled_from(
    ["お知らせ", "請求書", "hello", "①㈱髙", "ｶﾀｶﾅ", "\t", "\n", " ", "<p>", "</p>"]
)
TEXT = st.lists(st.one_of(URLS, WORDS), max_size=12).map(" ".join)
HTML = TEXT.map(
    lambda t: (
        f'<html><body><a href="https://evil.example/">{t}</a><script>x()</script>'
        f'<img src="https://track.example/p.gif">{t}</body></html>'
    )
)
PAYLOAD = st.one_of(
    TEXT.map(lambda t: t.encode("utf-8")),
    HTML.map(lambda t: t.encode("utf-8")),
    TEXT.map(lambda t: t.encode("cp932", "replace")),
    st.just(PE),
    st.binary(max_size=300),
    st.just(b"%PDF-1.4\n1 0 obj<</OpenAction<</S/JavaScript/JS(app.alert(1))>>>>endobj\n%%EOF"),
    st.just(b"PK\x03\x04" + b"\x00" * 40),
)
TYPES = st.sampled_from(
    [
        "text/plain",
        "text/html",
        "application/octet-stream",
        "application/pdf",
        "image/png",
        "application/zip",
        "text/calendar",
        "message/rfc822",
        "application/ms-tnef",
        "x-bogus/type",
        "",
    ]
)
CHARSETS = st.sampled_from(["utf-8", "iso-2022-jp", "shift_jis", "euc-jp", "x-unknown", ""])
ENCODINGS = st.sampled_from(
    ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "bogus", ""]
)
NAMES = st.sampled_from(
    [
        "",
        "report.pdf",
        "invoice.pdf.exe",
        "photo\u202egpj.exe",
        "議事録.docx",
        "a.js",
        "winmail.dat",
    ]
)


def encode(payload: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.encodebytes(payload)
    if encoding == "quoted-printable":
        return quopri.encodestring(payload)
    if encoding == "x-uuencode":
        lines = [binascii.b2a_uu(payload[i : i + 45]) for i in range(0, len(payload), 45)]
        return b"begin 644 f\n" + b"".join(lines) + b"`\nend\n"
    return payload


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    kind, charset, encoding, name = draw(TYPES), draw(CHARSETS), draw(ENCODINGS), draw(NAMES)
    headers = []
    if kind:
        params = f'; charset="{charset}"' if charset else ""
        params += f'; name="{name}"' if name and draw(st.booleans()) else ""
        headers.append(f"Content-Type: {kind}{params}")
    if encoding:
        headers.append(f"Content-Transfer-Encoding: {encoding}")
    if name:
        headers.append(
            f"Content-Disposition: {draw(st.sampled_from(['attachment', 'inline']))}; "
            f'filename="{name}"'
        )
    head = "\n".join(headers).encode("utf-8")
    return head + b"\n\n" + encode(draw(PAYLOAD), encoding)


def tree(depth: int) -> st.SearchStrategy[bytes]:
    if depth == 0:
        return leaf()

    @st.composite
    def multipart(draw: st.DrawFn) -> bytes:
        subtype = draw(
            st.sampled_from(["mixed", "alternative", "related", "signed", "digest", "x"])
        )
        boundary = draw(st.sampled_from(["b1", "b2", "=_x", "reused"]))
        children = draw(st.lists(tree(depth - 1), min_size=0, max_size=3))
        closing = draw(st.sampled_from([f"--{boundary}--\n", "", f"--{boundary}\n"]))
        body = b"".join(f"--{boundary}\n".encode() + child + b"\n" for child in children)
        head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\n\n'.encode()
        preamble = draw(st.sampled_from([b"", b"This is a MIME message. https://pre.example\n"]))
        return (
            head + preamble + body + closing.encode() + draw(st.sampled_from([b"", b"epilogue\n"]))
        )

    return st.one_of(leaf(), multipart())


MESSAGES = st.builds(
    lambda top, subject, crlf: (
        b"From: sender@partner.example\nTo: user@city.example.lg.jp\n"
        b"Message-ID: <prop@partner.example>\nMIME-Version: 1.0\n"
        + b"Subject: "
        + subject.encode("utf-8")
        + b"\n"
        + top
    ).replace(b"\n", b"\r\n" if crlf else b"\n"),
    tree(3),
    TEXT,
    st.booleans(),
)


def check(raw: bytes) -> None:
    outcome = run(raw)
    assert outcome.verdict in (Verdict.DELIVER, Verdict.TAG, Verdict.QUARANTINE, Verdict.REJECT)
    if outcome.message is None:
        assert outcome.verdict in (Verdict.QUARANTINE, Verdict.REJECT)
        return
    parse(outcome.message)  # the output is a message a client can read
    for kind, text in text_parts(outcome.message):
        assert live_links(text) == [], (kind, text[:500])
    for name, _kind, data in attachments(outcome.message):
        detected = magic.from_buffer(data, mime=True)
        assert "dosexec" not in detected, name
        assert "executable" not in detected, name
        assert not name.lower().endswith((".exe", ".js", ".scr", ".hta"))
    if b"Message-ID: <prop@partner.example>" in raw.replace(b"\r\n", b"\n"):
        assert b"Message-ID: <prop@partner.example>" in outcome.message


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(MESSAGES)
def test_generated_mime_is_delivered_harmless_or_held(raw: bytes) -> None:
    check(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_pipeline(raw: bytes) -> None:
    check(raw)
