"""Messages whose framing readers disagree about, built in code (issue 11, bypass 2).

Each one is a plain text message to Python's ``email`` (the gateway's parser before
``gateway.framing``) and, to at least one other reader, a multipart holding a program
(``invoice.exe``, a minimal PE header: never runnable) or an HTML form. ``HIDDEN`` names
which one a case hides. ``tests/differential/readers.py`` shows who sees what.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from tests.helpers import hostile

EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 44 + b"PE\x00\x00"
FORM = (
    b"<html><body><p>Please confirm your account.</p>"
    b'<form action="https://phish.example/login" method="post">'
    b'<input name="password" type="password"><input type="submit"></form></body></html>'
)
BOUNDARY = b"XX"


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def text_part(text: bytes = b"Hello, see the attachment.") -> bytes:
    return b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + text + b"\r\n"


def exe_part(cte: bytes = b"Content-Transfer-Encoding: base64\r\n") -> bytes:
    return (
        b"Content-Type: application/octet-stream; name=invoice.exe\r\n"
        b"Content-Disposition: attachment; filename=invoice.exe\r\n" + cte + b"\r\n" + _b64(EXE)
    )


def form_part() -> bytes:
    return b"Content-Type: text/html; charset=us-ascii\r\n\r\n" + FORM + b"\r\n"


def top(fields: bytes, subject: bytes = b"ambiguous") -> bytes:
    return (
        b"From: sender@partner.example\r\n"
        b"To: user@city.example.lg.jp\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Message-ID: <" + subject + b"@partner.example>\r\n"
        b"Date: Mon, 24 Nov 2025 10:00:00 +0900\r\n" + fields
    )


def multipart_body(*parts: bytes, boundary: bytes = BOUNDARY) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part for part in parts)
    return body + b"--" + boundary + b"--\r\n"


def _mixed(fields: bytes, hidden: bytes, subject: bytes, boundary: bytes = BOUNDARY) -> bytes:
    return top(fields, subject) + b"\r\n" + multipart_body(text_part(), hidden, boundary=boundary)


def _case(fields: bytes, hidden: str = "exe") -> Callable[[str], bytes]:
    def build(name: str) -> bytes:
        part = exe_part() if hidden == "exe" else form_part()
        return _mixed(fields, part, name.encode())

    return build


MULTIPART = b'multipart/mixed; boundary="XX"'

# name -> (builder(name) -> bytes, what it hides). The first five are issue 11's bypass 2.
CASES: dict[str, tuple[Callable[[str], bytes], str]] = {
    "space-before-colon": (
        _case(b"MIME-Version: 1.0\r\nContent-Type : " + MULTIPART + b"\r\n"),
        "exe",
    ),
    "tab-before-colon": (
        _case(b"MIME-Version: 1.0\r\nContent-Type\t: " + MULTIPART + b"\r\n"),
        "exe",
    ),
    "line-without-colon": (
        _case(
            b"X-Note: see below\r\nthis line has no colon\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: " + MULTIPART + b"\r\n"
        ),
        "exe",
    ),
    "two-content-types": (
        _case(
            b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Type: " + MULTIPART + b"\r\n"
        ),
        "exe",
    ),
    "malformed-type": (
        _case(b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed/; boundary="XX"\r\n'),
        "exe",
    ),
    "space-before-colon-form": (
        _case(b"MIME-Version: 1.0\r\nContent-Type : " + MULTIPART + b"\r\n", "form"),
        "form",
    ),
    "two-content-types-form": (
        _case(
            b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Type: "
            + MULTIPART
            + b"\r\n",
            "form",
        ),
        "form",
    ),
    "type-without-slash": (
        _case(b'MIME-Version: 1.0\r\nContent-Type: multipart mixed; boundary="XX"\r\n'),
        "exe",
    ),
    "two-types-in-one-field": (
        _case(b'MIME-Version: 1.0\r\nContent-Type: text/plain multipart/mixed; boundary="XX"\r\n'),
        "exe",
    ),
    "quoted-type": (
        _case(b'MIME-Version: 1.0\r\nContent-Type: "multipart/mixed"; boundary="XX"\r\n'),
        "exe",
    ),
    "nul-in-field-name": (
        _case(b"MIME-Version: 1.0\r\nX\x00Y: z\r\nContent-Type: " + MULTIPART + b"\r\n"),
        "exe",
    ),
    "8bit-field-name": (
        _case(b"MIME-Version: 1.0\r\nX\xe9: z\r\nContent-Type: " + MULTIPART + b"\r\n"),
        "exe",
    ),
    "duplicate-boundary": (
        _case(
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="YY"; boundary="XX"\r\n'
        ),
        "exe",
    ),
    "rfc2231-boundary-beside-plain": (
        _case(
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"YY\"; boundary*=''XX\r\n"
        ),
        "exe",
    ),
    "rfc2231-continued-boundary": (
        _case(
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="YY"; boundary*0=X; boundary*1=X\r\n'
        ),
        "exe",
    ),
    "bare-cr-before-content-type": (
        lambda name: (
            top(b"MIME-Version: 1.0\rContent-Type: " + MULTIPART + b"\r\n", name.encode())
            + b"\r\n"
            + multipart_body(text_part(), exe_part())
        ),
        "exe",
    ),
    "prefix-delimiter": (
        lambda name: (
            top(b"MIME-Version: 1.0\r\nContent-Type: " + MULTIPART + b"\r\n", name.encode())
            + b"\r\n--XX\r\n"
            + text_part()
            + b"--XXY\r\n"
            + exe_part()
            + b"--XX--\r\n"
        ),
        "exe",
    ),
    "reused-boundary": (
        lambda name: (
            top(b"MIME-Version: 1.0\r\nContent-Type: " + MULTIPART + b"\r\n", name.encode())
            + b'\r\n--XX\r\nContent-Type: multipart/alternative; boundary="XX"\r\n\r\n--XX\r\n'
            + text_part()
            + b"--XX--\r\n\r\n--XX\r\n"
            + exe_part()
            + b"--XX--\r\n"
        ),
        "exe",
    ),
    "duplicate-transfer-encoding": (
        lambda name: (
            top(b"MIME-Version: 1.0\r\nContent-Type: " + MULTIPART + b"\r\n", name.encode())
            + b"\r\n"
            + multipart_body(
                text_part(),
                exe_part(
                    b"Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n"
                ),
            )
        ),
        "exe",
    ),
    "part-with-two-types": (
        lambda name: (
            top(b"MIME-Version: 1.0\r\nContent-Type: " + MULTIPART + b"\r\n", name.encode())
            + b"\r\n"
            + multipart_body(
                text_part(),
                b"Content-Type: text/plain\r\n"
                b"Content-Type: application/octet-stream; name=invoice.exe\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(EXE),
            )
        ),
        "exe",
    ),
    "base64-message-rfc822": (
        lambda name: (
            top(
                b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n"
                b"Content-Transfer-Encoding: base64\r\n",
                name.encode(),
            )
            + b"\r\n"
            + _b64(
                _mixed(
                    b"MIME-Version: 1.0\r\nContent-Type: " + MULTIPART + b"\r\n",
                    exe_part(),
                    b"inner",
                )
            )
        ),
        "exe",
    ),
    "whitespace-only-header-line": (
        _case(b"X-Note: a\r\n \r\nMIME-Version: 1.0\r\nContent-Type: " + MULTIPART + b"\r\n"),
        "exe",
    ),
}


def build(name: str) -> bytes:
    return CASES[name][0](name)


def hidden(name: str) -> str:
    return CASES[name][1]


BYPASS_2 = (
    "space-before-colon",
    "tab-before-colon",
    "line-without-colon",
    "two-content-types",
    "malformed-type",
)


# Files encoded in plain text, which Thunderbird, Outlook and MIME-tools decode into
# attachments: each must be found and inspected (uuencode, BinHex, yEnc: RT-06, RT-07), or,
# when it does not decode, arrive as text no reader decodes.
def _uu(data: bytes) -> bytes:
    import binascii

    lines = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    return lines.replace(b"\n", b"\r\n")


def _plain(name: str, body: bytes) -> bytes:
    fields = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
    return top(fields, name.encode()) + b"\r\nPlease see the file.\r\n" + body


EMBEDDED: dict[str, tuple[Callable[[str], bytes], str]] = {
    "uuencode-without-end": (
        lambda name: _plain(name, b"begin 644 invoice.exe\r\n" + _uu(EXE) + b"`\r\n"),
        "exe",
    ),
    "uuencode-without-end-then-text": (
        lambda name: _plain(
            name, b"begin 644 invoice.exe\r\n" + _uu(EXE) + b"`\r\n\r\nBest regards\r\n"
        ),
        "exe",
    ),
    "uuencode-tabs-and-long-mode": (
        lambda name: _plain(name, b"begin\t0755\tinvoice.exe\r\n" + _uu(EXE) + b"`\r\nend\r\n"),
        "exe",
    ),
    "uuencode-base64-form": (
        lambda name: _plain(name, b"begin-base64 644 invoice.exe\r\n" + _b64(EXE) + b"====\r\n"),
        "exe",
    ),
    "yenc": (
        lambda name: _plain(
            name, b"=ybegin line=128 size=68 name=invoice.exe\r\nabcdefgh\r\n=yend size=68\r\n"
        ),
        "exe",  # decoded whatever "size" says, as Thunderbird does: held by its name
    ),
    "yenc-program": (
        lambda name: _plain(name, hostile.yenc(b"invoice.exe", EXE)),
        "exe",
    ),
    "yenc-without-end": (
        lambda name: _plain(name, hostile.yenc(b"invoice.exe", EXE, end=False)),
        "exe",
    ),
    "binhex-program": (
        lambda name: _plain(name, hostile.binhex(b"invoice.exe", EXE, runs=True)),
        "exe",
    ),
    "binhex": (  # too short for a BinHex header: nothing to decode, stays inert text
        lambda name: _plain(
            name, b"(This file must be converted with BinHex 4.0)\r\n:!!!!!!!!!!!!!:\r\n"
        ),
        "text",
    ),
}


def build_embedded(name: str) -> bytes:
    return EMBEDDED[name][0](name)
