"""Fuzzing the SMTP command parser over real SMTP (issue 11).

Hypothesis builds sessions from real command lines (what Postfix sends through XFORWARD and
DSN, what clients send, and HELO names and addresses taken from the shared corpus's trace and
envelope fields), mutates them byte by byte (CR, NUL, bytes that are not UTF-8, xtext escapes,
brackets, quotes...) and mixes in arbitrary lines. Every line goes to one real gateway (with
a real downstream sink) over a socket. The property, for every command:

- the reply is well formed: ``NNN[ -]text`` lines ended by CRLF, one code, 2xx to 5xx, no
  control character, valid UTF-8, an RFC 3463 enhanced code on every final line except the
  greeting, HELO/EHLO's 2xx and 354 (RFC 2034 section 3);
- never a traceback, never our "internal error" 451 (an exception reached handle_exception),
  nothing logged at ERROR by the gateway;
- the connection is closed only after a 421 or 221;
- and after each session the gateway still serves a new one.

CI runs a bounded, reproducible set (``MUGAIKA_FUZZ_EXAMPLES``, default 500 sessions, 15 to
30 s on two cores); a longer run explores anew:

    MUGAIKA_FUZZ_EXAMPLES=20000 HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest -n 0 \\
        tests/fuzz/test_smtp_fuzz.py

Each finding is kept twice: as an ``@example`` of the property and as a named test below.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers.corpus import corpus_root
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.raw_smtp import RawReply, RawSmtp
from tests.helpers.smtp_sink import SmtpSink

EXAMPLES = int(os.environ.get("MUGAIKA_FUZZ_EXAMPLES", "500"))

SEEDS = [
    b"EHLO mx.example.com",
    b"HELO mx.example.com",
    b"EHLO [203.0.113.7]",
    "EHLO 例え.jp".encode(),
    b"XFORWARD NAME=mail.example.org ADDR=203.0.113.7 PORT=41234 PROTO=ESMTP",
    b"XFORWARD HELO=mail.example.org SOURCE=REMOTE IDENT=4ABCD1234",
    b"XFORWARD ADDR=IPv6:2001:db8::7 NAME=[UNAVAILABLE]",
    b"MAIL FROM:<sender@example.com>",
    b"MAIL FROM:<sender@example.com> SIZE=1234 BODY=8BITMIME",
    b"MAIL FROM:<> RET=HDRS ENVID=QQ+2Babc",
    "MAIL FROM:<送信者@example.jp> SMTPUTF8".encode(),
    b'MAIL FROM:<"quoted local"@example.com>',
    b"MAIL FROM:<@relay.example:sender@example.com>",
    b"RCPT TO:<user@example.lg.jp>",
    b"RCPT TO:<user@example.lg.jp> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+40example.lg.jp",
    b"RCPT TO:<postmaster>",
    b"RCPT TO:user@example.lg.jp",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"NOOP hello",
    b"HELP",
    b"HELP MAIL",
    b"VRFY postmaster",
    b"EXPN staff",
    b"STARTTLS",
    b"AUTH PLAIN AGZvbwBiYXI=",
    b"ETRN example.com",
    b"BDAT 10 LAST",
    b"QUIT",
]
# What a fuzzer most likes to put into a command line.
EDITS = [
    b"\r", b"\x00", b"\t", b"\x0b", b"\x1b", b"\x7f", b"\xff", b"\xc3", b"\xe3\x81",
    b"\xc2\x85", b"\xe2\x80\xa8", b" ", b"  ", b"<", b">", b"<>", b"=", b"+", b"+0D",
    b"+0A", b"+00", b"+FF", b'"', b"\\", b":", b"@", b",", b";", b".", b"[", b"]",
    b"=" * 3, b"A" * 600, b"SMTPUTF8", b"\r\r", b"%0D",
]  # fmt: skip
MESSAGES = [
    b"Subject: fuzz\r\n\r\nhello\r\n",
    b"Subject: fuzz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xe3\x81\x82\r\n",
    b"\r\n",
]
INTERNAL_ERROR = b"4.3.0 Temporary failure, try again later"
_ENHANCED = re.compile(rb"[245]\.\d{1,3}\.\d{1,3} ")


def corpus_seeds(limit: int = 120) -> list[bytes]:
    """HELO names and envelope addresses as real mail carries them (bounded, deterministic)."""
    root = corpus_root()
    if root is None:
        return []
    seeds: dict[bytes, None] = {}
    helo = re.compile(rb"^Received: from ([^\s()]+)", re.M | re.I)
    path = re.compile(rb"^Return-Path: *(<[^>\r\n]*>)", re.M | re.I)
    for file in sorted(root.rglob("*.eml"))[:400]:
        head = file.read_bytes()[:4000]
        for name in helo.findall(head):
            seeds[b"EHLO " + name] = None
        for address in path.findall(head):
            seeds[b"MAIL FROM:" + address] = None
            seeds[b"RCPT TO:" + address] = None
        if len(seeds) >= limit:
            break
    return list(seeds)[:limit]


ALL_SEEDS = SEEDS + corpus_seeds()


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    line = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(line)))
        edit = draw(st.sampled_from(EDITS) | st.binary(min_size=1, max_size=4))
        action = draw(st.sampled_from(["insert", "replace", "delete"]))
        if action == "insert":
            line[where:where] = edit
        elif action == "replace":
            line[where : where + len(edit)] = edit
        else:
            del line[where : where + draw(st.integers(1, 8))]
    return bytes(line)


def no_lf(line: bytes) -> bytes:
    # One line per command: an LF would make two, and the replies would not pair up.
    return line.replace(b"\n", b"\r")


def family(prefix: bytes) -> st.SearchStrategy[bytes]:
    """A seed of this command, mutated one time in three (so that sessions get deep enough
    to reach RCPT and DATA often)."""
    seeds = [s for s in ALL_SEEDS if s.upper().startswith(prefix)] or SEEDS
    clean = st.sampled_from(seeds)
    return st.one_of(clean, clean, mutated(seeds)).map(no_lf)


any_line = (st.sampled_from(ALL_SEEDS) | mutated(ALL_SEEDS) | st.binary(max_size=200)).map(no_lf)


@st.composite
def sessions(draw: st.DrawFn) -> list[bytes]:
    """A plausible session (EHLO, XFORWARD, MAIL, RCPT, DATA), any part mutated, with
    arbitrary lines inserted anywhere."""
    plan = [draw(family(b"EHLO") | family(b"HELO"))]
    if draw(st.booleans()):
        plan.append(draw(family(b"XFORWARD")))
    plan.append(draw(family(b"MAIL")))
    plan += draw(st.lists(family(b"RCPT"), max_size=3))
    if draw(st.booleans()):
        plan.append(b"DATA")
    for extra in draw(st.lists(any_line, max_size=4)):
        plan.insert(draw(st.integers(0, len(plan))), extra)
    return plan


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("mugaika", "asyncio", "mail.log")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, sink: SmtpSink, errors: ErrorLog
) -> Iterator[RunningGateway]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    # Sessions are many and short: the per-client limit is the only one fuzz sessions could
    # meet by accident (they run one after another from one address, never concurrently).
    config = make_config(data_dir, downstream=sink.address, **{"auth.enabled": False})
    with RunningGateway(config) as running:
        yield running


def check_reply(reply: RawReply, command: bytes, after_close_ok: bool) -> None:
    """The per-reply property (RawSmtp already refused lines that are not ``NNN[ -]text``)."""
    if reply.closed:
        assert after_close_ok, f"connection dropped without 421/221 after {command!r}"
        return
    assert 200 <= reply.code < 600, reply
    verb = command.split(b" ")[0].upper()
    for line in reply.lines:
        assert all(32 <= b != 127 for b in line), f"control character in {line!r}"
        line.decode("utf-8")  # raises on an undecodable byte
        assert b"Traceback" not in line, line
        assert b"Error: (" not in line, line
    final = reply.lines[-1]
    greeting_or_helo = reply.code == 220 or (verb in (b"HELO", b"EHLO") and reply.code < 300)
    if not greeting_or_helo and reply.code not in (334, 354):
        assert _ENHANCED.match(final[4:]), f"no enhanced code in {final!r} after {command!r}"
        assert final[4:5] == str(reply.code)[0].encode(), f"class mismatch in {final!r}"
    assert reply.text != INTERNAL_ERROR, f"an exception reached handle_exception: {command!r}"


def run_session(port: int, lines: list[bytes], message: bytes) -> None:
    with RawSmtp(port, timeout=30) as client:
        check_reply(client.greeting, b"", after_close_ok=False)
        closing = False
        for line in lines:
            client.send(line + b"\r\n")
            reply = client.read_reply()
            check_reply(reply, line, after_close_ok=closing)
            if reply.closed:
                return
            if reply.code == 354:
                client.send(message + b".\r\n")
                reply = client.read_reply()
                check_reply(reply, b"<message>", after_close_ok=False)
            closing = reply.code in (421, 221)
        if not closing:
            check_reply(client.command(b"QUIT"), b"QUIT", after_close_ok=False)


def assert_still_serving(port: int) -> None:
    with RawSmtp(port, timeout=30) as client:
        assert client.greeting.code == 220, client.greeting
        assert client.command(b"EHLO alive.example").code == 250
        assert client.command(b"QUIT").code == 221


# What the fuzzer found on the code before issue 11 (3,000 sessions, HYPOTHESIS_PROFILE=explore),
# each kept as an example of the property and as a named test (here or in
# tests/gateway/test_smtp_boundary.py).
FINDINGS = [
    # An unknown command was echoed with its bare CR: a reply split in two.
    [b"HELO mx.example.com", b"\rMAIL FROM:<sender@example.com>"],
    # Five unknown commands: "502 ... goodbye." and the connection closed, no 421.
    [b"EHLO x", b"FOO", b"BAR", b"BAZ", b"QUX", b"ZAP", b"NOOP"],
    # HELP <command> answered "501 Supported commands: " (empty, no enhanced code).
    [b"EHLO x", b"HELP MAIL"],
    # An XFORWARD attribute name with bytes that are not UTF-8: the reply quoting it could
    # not be encoded, "451 4.3.0" from handle_exception.
    [b"EHLO x", b"XFORWARD HELO=mail.example.org \xb7\xb0\x1b\xc7SOURCE=REMOTE"],
    # A byte that is not UTF-8 in the EHLO name: "451 4.3.0" at each RCPT (and a leaked
    # downstream connection each time).
    [b"EHLO mx\x9b6\xe2ol.com", b"MAIL FROM:<au@ezweb.ne.jp>", b"RCPT TO:<au@ezweb.ne.jp>"],
    # aiosmtpd's own replies without an enhanced code.
    [b"EHLO x", b"EXPN staff", b"STARTTLS", b"HELP NOSUCH"],
]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=sessions(), message=st.sampled_from(MESSAGES))
@example(lines=FINDINGS[0], message=MESSAGES[0])
@example(lines=FINDINGS[1], message=MESSAGES[0])
@example(lines=FINDINGS[2], message=MESSAGES[0])
@example(lines=FINDINGS[3], message=MESSAGES[0])
@example(lines=FINDINGS[4], message=MESSAGES[0])
@example(lines=FINDINGS[5], message=MESSAGES[0])
def test_any_command_bytes_get_a_well_formed_reply_and_the_gateway_keeps_serving(
    gateway: RunningGateway, errors: ErrorLog, lines: list[bytes], message: bytes
) -> None:
    before = len(errors.records)
    run_session(gateway.port, lines, message)
    assert_still_serving(gateway.port)
    logged = [r.getMessage() for r in errors.records[before:]]
    assert logged == [], f"the gateway logged errors for {lines!r}: {logged}"


# --- findings, one test each (the others are in tests/gateway/test_smtp_boundary.py) ----------


def test_too_many_unknown_commands_end_with_421_not_a_bare_close(gateway: RunningGateway) -> None:
    with RawSmtp(gateway.port) as client:
        client.command(b"EHLO x")
        codes = [client.command(verb).code for verb in (b"FOO", b"BAR", b"BAZ", b"QUX")]
        final = client.command(b"ZAP")
        after = client.read_reply()
    assert codes == [500] * 4
    assert final.lines == (b"421 4.7.0 Too many unrecognized commands, closing connection",)
    assert after.closed


def test_help_lists_commands_and_their_syntax(gateway: RunningGateway) -> None:
    with RawSmtp(gateway.port) as client:
        client.command(b"EHLO x")
        mail = client.command(b"HELP MAIL")
        everything = client.command(b"HELP")
        unknown = client.command(b"HELP NOSUCH")
    assert mail.lines == (b"250 2.0.0 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",)
    listed = b"DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY XFORWARD"
    assert everything.lines[0].startswith(b"250 2.0.0 Supported commands: ")
    assert listed in everything.lines[0].replace(b"AUTH ", b"")
    assert unknown.lines[0].startswith(b"501 5.5.4 Supported commands: ")


def test_xforward_attribute_name_that_is_not_utf8_gets_501_not_an_internal_error(
    gateway: RunningGateway,
) -> None:
    with RawSmtp(gateway.port) as client:
        client.command(b"EHLO x")
        reply = client.command(b"XFORWARD HELO=mail.example.org \xb7\xb0\x1b\xc7SOURCE=REMOTE")
    assert reply.lines == (b"501 5.5.4 Bad XFORWARD attribute ????SOURCE",)


def test_stock_replies_carry_enhanced_codes(gateway: RunningGateway) -> None:
    with RawSmtp(gateway.port) as client:
        client.command(b"EHLO x")
        expn = client.command(b"EXPN staff")
        starttls = client.command(b"STARTTLS")
    assert expn.lines == (b"502 5.5.1 EXPN not implemented",)
    assert starttls.lines == (b"454 4.7.0 TLS not available",)
