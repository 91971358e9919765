"""The strict framing reader (``gateway.framing``) and what the pipeline does with its answer.

Each rule of the grammar is shown to fire on the smallest message that breaks it, and not on
the well-formed message next to it; the byte-for-byte proof is shown to be refused for each
reason it knows; the canonical form is shown to be strict and to expose what other readers
would show; and the pipeline is shown to deliver an ambiguous message only rebuilt (or held,
by policy), never as received, also on the signed-mail path.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from gateway.config import TenantConfig, load_config
from gateway.errors import ConfigError
from gateway.framing import (
    FINDING_CODES,
    MIME_AMBIGUOUS_BOUNDARY,
    MIME_AMBIGUOUS_ENCODING,
    MIME_AMBIGUOUS_HEADER,
    MIME_BARE_CR,
    MIME_DUPLICATE_FIELD,
    MIME_DUPLICATE_PARAMETER,
    MIME_MALFORMED_TYPE,
    MIME_NUL,
    examine,
)
from gateway.mime import MimeLimitExceeded, MimeLimits, parse_message
from gateway.notice import TEMPLATES
from gateway.report import Verdict
from rules.loader import load_policies
from tests.differential import ambiguous
from tests.helpers.pipeline import body_text, parse, pipeline_with, run

HEAD = b"From: a@partner.example\r\nTo: u@city.example.lg.jp\r\nSubject: s\r\n"
PLAIN = HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello.\r\n"


def multipart(content_type: bytes, *parts: bytes, boundary: bytes = b"XX") -> bytes:
    return (
        HEAD
        + b"MIME-Version: 1.0\r\nContent-Type: "
        + content_type
        + b"\r\n\r\n"
        + ambiguous.multipart_body(*parts, boundary=boundary)
    )


TEXT = ambiguous.text_part()
MIXED = b'multipart/mixed; boundary="XX"'

# (name, message, code it must raise)
BROKEN: list[tuple[str, bytes, str]] = [
    ("space before colon", HEAD + b"Subject : x\r\n\r\nHi\r\n", MIME_AMBIGUOUS_HEADER),
    ("tab before colon", HEAD + b"Content-Type\t: text/plain\r\n\r\nHi\r\n", MIME_AMBIGUOUS_HEADER),
    ("line without colon", HEAD + b"no colon here\r\nX-A: b\r\n\r\nHi\r\n", MIME_AMBIGUOUS_HEADER),
    ("8-bit in a field name", HEAD + b"X-\xe9: b\r\n\r\nHi\r\n", MIME_AMBIGUOUS_HEADER),
    ("NUL in a field name", HEAD + b"X-\x00: b\r\n\r\nHi\r\n", MIME_AMBIGUOUS_HEADER),
    ("whitespace-only line", HEAD + b"X-A: b\r\n \r\nX-B: c\r\n\r\nHi\r\n", MIME_AMBIGUOUS_HEADER),
    ("continuation first", b" folded\r\n" + HEAD + b"\r\nHi\r\n", MIME_AMBIGUOUS_HEADER),
    ("mbox From_ line", b"From a@b Mon Jan  1 00:00:00 2024\r\n" + PLAIN, MIME_AMBIGUOUS_HEADER),
    ("byte order mark", b"\xef\xbb\xbf" + PLAIN, MIME_AMBIGUOUS_HEADER),
    (
        "header line over 998",
        HEAD + b"X-Long: " + b"a" * 1000 + b"\r\n\r\nHi\r\n",
        MIME_AMBIGUOUS_HEADER,
    ),
    (
        "two Content-Type",
        HEAD + b"Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\nHi\r\n",
        MIME_DUPLICATE_FIELD,
    ),
    (
        "two transfer encodings",
        HEAD
        + b"Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n\r\nSGk=\r\n",
        MIME_DUPLICATE_FIELD,
    ),
    (
        "two dispositions",
        HEAD + b"Content-Disposition: inline\r\nContent-Disposition: attachment\r\n\r\nHi\r\n",
        MIME_DUPLICATE_FIELD,
    ),
    (
        "two MIME-Version",
        HEAD + b"MIME-Version: 1.0\r\nMIME-Version: 1.0\r\n\r\nHi\r\n",
        MIME_DUPLICATE_FIELD,
    ),
    (
        "two charsets",
        HEAD + b"Content-Type: text/plain; charset=us-ascii; charset=utf-7\r\n\r\nHi\r\n",
        MIME_DUPLICATE_PARAMETER,
    ),
    (
        "charset plain and RFC 2231",
        HEAD + b"Content-Type: text/plain; charset=us-ascii; charset*=''utf-7\r\n\r\nHi\r\n",
        MIME_DUPLICATE_PARAMETER,
    ),
    (
        "two boundaries",
        multipart(b'multipart/mixed; boundary="YY"; boundary="XX"', TEXT),
        MIME_DUPLICATE_PARAMETER,
    ),
    ("type/subtype/", HEAD + b"Content-Type: text/plain/\r\n\r\nHi\r\n", MIME_MALFORMED_TYPE),
    ("no slash", HEAD + b"Content-Type: text\r\n\r\nHi\r\n", MIME_MALFORMED_TYPE),
    ("a comment", HEAD + b"Content-Type: text/plain (note)\r\n\r\nHi\r\n", MIME_MALFORMED_TYPE),
    ("quoted type", HEAD + b'Content-Type: "text/plain"\r\n\r\nHi\r\n', MIME_MALFORMED_TYPE),
    ("empty type", HEAD + b"Content-Type:\r\n\r\nHi\r\n", MIME_MALFORMED_TYPE),
    (
        "junk after a parameter",
        HEAD + b"Content-Type: text/plain; charset=us-ascii x\r\n\r\nHi\r\n",
        MIME_MALFORMED_TYPE,
    ),
    (
        "RFC 2231 sections with a gap",
        HEAD + b"Content-Type: text/plain; name*0=a; name*2=b\r\n\r\nHi\r\n",
        MIME_MALFORMED_TYPE,
    ),
    (
        "boundary with trailing space",
        multipart(b'multipart/mixed; boundary="XX "', TEXT, boundary=b"XX "),
        MIME_AMBIGUOUS_BOUNDARY,
    ),
    (
        "boundary of 71",
        multipart(b'multipart/mixed; boundary="' + b"b" * 71 + b'"', TEXT, boundary=b"b" * 71),
        MIME_AMBIGUOUS_BOUNDARY,
    ),
    (
        "boundary only RFC 2231",
        multipart(b"multipart/mixed; boundary*=''XX", TEXT),
        MIME_AMBIGUOUS_BOUNDARY,
    ),
    (
        "no boundary",
        HEAD + b"Content-Type: multipart/mixed\r\n\r\n--XX\r\n\r\nHi\r\n--XX--\r\n",
        MIME_AMBIGUOUS_BOUNDARY,
    ),
    ("near delimiter", multipart(MIXED, TEXT + b"--XXY\r\n" + TEXT), MIME_AMBIGUOUS_BOUNDARY),
    (
        "delimiter in other case",
        multipart(MIXED, TEXT + b"--xx\r\n" + TEXT),
        MIME_AMBIGUOUS_BOUNDARY,
    ),
    (
        "part after the close",
        multipart(MIXED, TEXT) + b"--XX\r\n" + TEXT + b"--XX--\r\n",
        MIME_AMBIGUOUS_BOUNDARY,
    ),
    (
        "MIME in the epilogue",
        multipart(MIXED, TEXT) + b"Content-Type: text/html\r\n\r\n<b>x</b>\r\n",
        MIME_AMBIGUOUS_BOUNDARY,
    ),
    (
        "MIME in the preamble",
        HEAD
        + b"Content-Type: "
        + MIXED
        + b"\r\n\r\nContent-Type: text/html\r\n\r\n"
        + ambiguous.multipart_body(TEXT),
        MIME_AMBIGUOUS_BOUNDARY,
    ),
    ("reused boundary", ambiguous.build("reused-boundary"), MIME_AMBIGUOUS_BOUNDARY),
    (
        "unknown transfer encoding",
        HEAD + b"Content-Transfer-Encoding: base-64\r\n\r\nSGk=\r\n",
        MIME_AMBIGUOUS_ENCODING,
    ),
    (
        "base64 multipart",
        HEAD
        + b"Content-Transfer-Encoding: base64\r\nContent-Type: "
        + MIXED
        + b"\r\n\r\n"
        + ambiguous.multipart_body(TEXT),
        MIME_AMBIGUOUS_ENCODING,
    ),
    ("bare CR", HEAD + b"X-A: b\rContent-Type: text/html\r\n\r\nHi\r\n", MIME_BARE_CR),
    ("NUL in the body", HEAD + b"\r\nHi\x00there\r\n", MIME_NUL),
]


@pytest.mark.parametrize(("name", "raw", "code"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_rule_names_its_ambiguity(name, raw, code):
    framing = examine(raw)
    assert code in framing.codes(), framing.ambiguities
    assert framing.ambiguous
    assert not framing.verbatim
    for item in framing.ambiguities:
        assert item.code in FINDING_CODES
        assert item.detail.isascii()


WELL_FORMED: list[tuple[str, bytes]] = [
    ("plain", PLAIN),
    ("no MIME fields at all", HEAD + b"\r\nHello.\r\n"),
    ("headers only", HEAD),
    ("folded field", HEAD + b"X-Folded: a\r\n\tb\r\n\r\nHi\r\n"),
    (
        "ISO-2022-JP",
        HEAD + b"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n\x1b$B$3$s$K$A$O\x1b(B\r\n",
    ),
    (
        "UTF-8 base64",
        HEAD
        + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes("こんにちは".encode()).replace(b"\n", b"\r\n"),
    ),
    (
        "quoted-printable",
        HEAD + b"Content-Transfer-Encoding: Quoted-Printable\r\n\r\nHi=20there=\r\n!\r\n",
    ),
    ("trailing semicolon", HEAD + b"Content-Type: text/plain; charset=us-ascii;\r\n\r\nHi\r\n"),
    (
        "folded parameters",
        HEAD
        + b'Content-Type: multipart/mixed;\r\n\tboundary="XX"\r\n\r\n'
        + ambiguous.multipart_body(TEXT, TEXT),
    ),
    (
        "delimiter with transport padding",
        multipart(MIXED, TEXT).replace(b"--XX\r\n", b"--XX  \r\n", 1),
    ),
    (
        "RFC 2231 file name",
        multipart(
            MIXED,
            TEXT,
            b"Content-Type: text/plain\r\n"
            b"Content-Disposition: attachment; filename*=utf-8''%E8%A6%8B.txt\r\n\r\nx\r\n",
        ),
    ),
    (
        "nested multipart",
        multipart(
            MIXED,
            b'Content-Type: multipart/alternative; boundary="YY"\r\n\r\n'
            + ambiguous.multipart_body(TEXT, TEXT, boundary=b"YY"),
        ),
    ),
    ("attached message", multipart(MIXED, TEXT, b"Content-Type: message/rfc822\r\n\r\n" + PLAIN)),
]


@pytest.mark.parametrize(("name", "raw"), WELL_FORMED, ids=[w[0] for w in WELL_FORMED])
def test_well_formed_mail_is_unambiguous_and_verbatim(name, raw):
    framing = examine(raw)
    assert framing.ambiguities == ()
    assert framing.not_verbatim == ""
    assert framing.verbatim


# (name, message, the reason's words)
NOT_VERBATIM: list[tuple[str, bytes, str]] = [
    ("LF line ends", PLAIN.replace(b"\r\n", b"\n"), "line ends"),
    ("body line over 998", HEAD + b"\r\n" + b"a" * 999 + b"\r\n", "longer than 998"),
    ("base64 with junk", HEAD + b"Content-Transfer-Encoding: base64\r\n\r\nSGk=!!\r\n", "base64"),
    (
        "base64 after padding",
        HEAD + b"Content-Transfer-Encoding: base64\r\n\r\nSGk=SGk=\r\n",
        "base64",
    ),
    (
        "broken quoted-printable",
        HEAD + b"Content-Transfer-Encoding: quoted-printable\r\n\r\nHi=ZZ\r\n",
        "quoted-printable",
    ),
    ("UTF-7", HEAD + b"Content-Type: text/plain; charset=utf-7\r\n\r\n+ADw-b+AD4-\r\n", "utf-7"),
    ("8-bit without charset", HEAD + b"\r\n\xe3\x81\x82\r\n", "us-ascii"),
    (
        "circled number in ISO-2022-JP",
        HEAD + b"Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B-!\x1b(B\r\n",
        "iso-2022-jp",
    ),
    ("uuencoded file", HEAD + b"\r\nbegin 644 invoice.exe\r\n#35J0\r\n`\r\nend\r\n", "uuencode"),
    (
        "yEnc file",
        HEAD + b"\r\n=ybegin line=128 size=4 name=invoice.exe\r\nabcd\r\n=yend\r\n",
        "yEnc",
    ),
    (
        "BinHex file",
        HEAD + b"\r\n(This file must be converted with BinHex 4.0)\r\n:abc:\r\n",
        "BinHex",
    ),
]


@pytest.mark.parametrize(("name", "raw", "words"), NOT_VERBATIM, ids=[n[0] for n in NOT_VERBATIM])
def test_the_byte_for_byte_proof_is_refused(name, raw, words):
    framing = examine(raw)
    assert not framing.ambiguous, framing.ambiguities
    assert not framing.verbatim
    assert words in framing.not_verbatim


HEADER_CODES = {
    MIME_AMBIGUOUS_HEADER,
    MIME_DUPLICATE_FIELD,
    MIME_DUPLICATE_PARAMETER,
    MIME_MALFORMED_TYPE,
}


@pytest.mark.parametrize("name", list(ambiguous.CASES))
def test_canonical_form_is_strict_and_shows_what_other_readers_see(name):
    raw = ambiguous.build(name)
    framing = examine(raw)
    assert framing.ambiguous
    again = examine(framing.canonical)
    assert again.codes() & HEADER_CODES == set(), again.ambiguities
    assert examine(again.canonical).canonical == again.canonical  # a fixed point
    names = {p.untrusted_filename for p in parse_message(framing.canonical).root.walk()}
    exposing = {
        "space-before-colon",
        "tab-before-colon",
        "line-without-colon",
        "two-content-types",
        "malformed-type",
        "type-without-slash",
        "two-types-in-one-field",
        "nul-in-field-name",
        "8bit-field-name",
        "duplicate-boundary",
        "rfc2231-boundary-beside-plain",
        "rfc2231-continued-boundary",
        "bare-cr-before-content-type",
        "whitespace-only-header-line",
    }
    if name in exposing:
        assert "invoice.exe" in names, name
        assert b"invoice.exe" in framing.canonical


def test_limits_bound_the_reader():
    many = multipart(MIXED, *([TEXT] * 30))
    with pytest.raises(MimeLimitExceeded, match="LIMIT_PARTS"):
        examine(many, MimeLimits(max_parts=10))
    deep = PLAIN
    for level in range(15):
        deep = multipart(
            b'multipart/mixed; boundary="L%d"' % level, deep[len(HEAD) :], boundary=b"L%d" % level
        )
    with pytest.raises(MimeLimitExceeded, match="LIMIT_DEPTH"):
        examine(deep, MimeLimits(max_depth=5))


def test_a_huge_flat_multipart_is_read_in_bounded_time():
    # 200,000 empty parts (issue 11's 900,000-part message, smaller): stopped at the limit.
    raw = HEAD + b"Content-Type: " + MIXED + b"\r\n\r\n" + b"--XX\r\n\r\n" * 200_000 + b"--XX--\r\n"
    started = time.monotonic()
    with pytest.raises(MimeLimitExceeded):
        examine(raw)
    assert time.monotonic() - started < 5


# -- the pipeline ------------------------------------------------------------------------


def test_clean_plain_mail_is_still_delivered_byte_for_byte():
    outcome = run(PLAIN)
    assert outcome.verdict == Verdict.DELIVER
    assert outcome.message.endswith(PLAIN)


def test_ambiguous_plain_mail_is_rebuilt_with_a_notice_never_delivered_as_received():
    raw = HEAD + b"Subject : a second subject\r\nMIME-Version: 1.0\r\n\r\nHello.\r\n"
    outcome = run(raw)
    assert outcome.verdict == Verdict.DELIVER
    assert not outcome.message.endswith(raw)
    assert MIME_AMBIGUOUS_HEADER in outcome.report.finding_codes()
    assert outcome.report.count_actions("mime-canonicalized") == 1
    text = body_text(outcome.message)
    assert TEMPLATES["ja"]["mime-canonicalized"] in text
    assert "Hello." in text
    assert parse(outcome.message)["X-Mugaika-Findings"] == MIME_AMBIGUOUS_HEADER
    # The canonical header block: the field read as clients read it, and nothing before a
    # colon but the name.
    head = outcome.message.split(b"\r\n\r\n", 1)[0]
    assert b"Subject : " not in head


def _policy(tmp_path: Path, name: str, text: str):
    (tmp_path / f"{name}.yaml").write_text(f"extends: lgwan-base\n{text}")
    config = load_config(
        environ={},
        overrides={"auth.enabled": False, "policy.dir": str(tmp_path), "policy.name": name},
    )
    return pipeline_with(config)


def test_policy_may_hold_ambiguous_mail_and_says_why_in_english(tmp_path):
    pipeline = _policy(
        tmp_path, "hold-ambiguous", "ambiguous_mime: quarantine\nnotice:\n  language: en\n"
    )
    outcome = run(ambiguous.build("space-before-colon-form"), pipeline)
    assert outcome.verdict == Verdict.QUARANTINE
    assert any(
        "mail programs would read the structure differently" in r for r in outcome.report.reasons
    )
    # The sanitized copy kept with it is rebuilt too, and says so.
    assert TEMPLATES["en"]["mime-canonicalized"] in body_text(outcome.message)


def test_strip_all_holds_ambiguous_mail_and_the_base_policy_rebuilds_it(tmp_path):
    config = load_config(environ={}, overrides={"auth.enabled": False, "policy.name": "strip-all"})
    held = run(ambiguous.build("space-before-colon-form"), pipeline_with(config))
    assert held.verdict == Verdict.QUARANTINE
    rebuilt = run(ambiguous.build("space-before-colon-form"))
    assert rebuilt.verdict == Verdict.DELIVER


def test_mail_to_tenants_of_both_policies_gets_the_stricter_one():
    tenants = {
        "a.example.lg.jp": TenantConfig(policy="strip-all"),
        "b.example.lg.jp": TenantConfig(policy="internet-light"),
    }
    policy_set = load_policies(None)
    assert policy_set.for_recipients(["b.example.lg.jp"], tenants).settings.ambiguous_mime == (
        "rebuild"
    )
    mixed = policy_set.for_recipients(["a.example.lg.jp", "b.example.lg.jp"], tenants)
    assert mixed.settings.ambiguous_mime == "quarantine"


def test_a_bad_ambiguous_mime_value_names_file_line_and_key(tmp_path):
    (tmp_path / "typo.yaml").write_text("extends: lgwan-base\n\nambiguous_mime: rebuilt\n")
    with pytest.raises(ConfigError) as info:
        load_policies(tmp_path)
    [message] = info.value.messages
    assert "typo.yaml:3: ambiguous_mime:" in message
    assert "'rebuild' or 'quarantine'" in message


def _signed(inner: bytes) -> bytes:
    return (
        HEAD + b"Message-ID: <signed@partner.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256; boundary="s"\r\n\r\n--s\r\n' + inner + b"\r\n--s\r\n"
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nMIIBogYJKoZIhvcNAQcC\r\n--s--\r\n"
    )


def test_signed_mail_with_ambiguous_content_is_not_delivered_as_received(tmp_path):
    """``signed: deliver-unmodified-if-clean`` used to deliver this as received: Python reads
    the signed part as the first Content-Type (text), a client reading the second finds the
    program. Now the program is found and the message held."""
    pipeline = _policy(tmp_path, "keep-clean", "signed: deliver-unmodified-if-clean\n")
    inner = (
        b'Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        + ambiguous.multipart_body(TEXT, ambiguous.exe_part())
    )
    raw = _signed(inner)
    outcome = run(raw, pipeline)
    assert not outcome.message.endswith(raw)
    assert outcome.verdict == Verdict.QUARANTINE
    assert {MIME_DUPLICATE_FIELD, "EXECUTABLE"} <= outcome.report.finding_codes()
    # A clean signed message still keeps its signature.
    clean = _signed(TEXT.rstrip(b"\r\n"))
    kept = run(clean, pipeline)
    assert kept.message.endswith(clean)


def test_byte_order_mark_before_the_fields_keeps_the_fields():
    """Python's email reads a message saved with a UTF-8 byte order mark as all body (no
    From, no Subject); mailparser and MIME-tools skip the first line. The canonical reading
    keeps every field, the first one without the mark."""
    raw = b"\xef\xbb\xbfMessage-ID: <bom@partner.example>\r\n" + PLAIN
    outcome = run(raw)
    head = outcome.message.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nMessage-ID: <bom@partner.example>\r\n" in head
    assert b"\r\nSubject: s\r\n" in head
    assert body_text(outcome.message).rstrip().endswith("Hello.")
