"""Nothing with a control character reaches a header or the downstream (issue 11, bypass 1).

aiosmtpd ends command lines at LF only, so a bare CR survives inside an argument; the EHLO
name went into our ``Received:`` field and aiosmtplib turned each bare CR into CRLF on the way
downstream, which let a client write header fields above the real ones (a MIME structure, a
``From:``, an ``Authentication-Results: dmarc=pass``). XFORWARD values reached the same place
through xtext (``+0D``). Each test here speaks byte-exact SMTP to a real gateway with a real
downstream sink and checks, for one field each: the precise reply, and what the downstream
received (no forged structure, no control character, the attribute ``[UNAVAILABLE]``).
"""

from __future__ import annotations

import email
import email.policy
import itertools
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.message import ClientInfo, Envelope, Recipient
from gateway.pipeline import received_header
from gateway.replies import Reply, downstream_reply
from gateway.smtp import tls_summary
from tests.gateway import test_tls_and_cli
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.raw_smtp import RawReply, RawSmtp
from tests.helpers.smtp_sink import ReceivedMessage, SmtpSink

_ids = itertools.count(1)
certificate = test_tls_and_cli.certificate  # the module-scoped self-signed test certificate

# A plain message (no Content-Type) whose body looks like MIME parts: harmless as text/plain,
# an executable attachment if a header block above it declares multipart/mixed; boundary=XX.
LOOKS_LIKE_MIME = (
    b"--XX\r\n"
    b"Content-Type: text/plain\r\n\r\n"
    b"see attached\r\n"
    b"--XX\r\n"
    b'Content-Type: application/octet-stream; name="invoice.exe"\r\n'
    b'Content-Disposition: attachment; filename="invoice.exe"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n"
    b"--XX--\r\n"
)
FORGES_MIME = (
    b'mx.example.com\rMIME-Version: 1.0\rContent-Type: multipart/mixed; boundary="XX"\rX-Pad: x'
)
FORGES_SENDER = (
    b"mx.example.com\rFrom: <mayor@city.example.lg.jp>\r"
    b"Authentication-Results: gateway.test; dmarc=pass header.from=city.example.lg.jp\rX-Pad: x"
)


def xtext(raw: bytes) -> bytes:
    """RFC 3461 xtext, as Postfix writes XFORWARD values: every byte outside ! to ~, + and =."""
    return b"".join(bytes([b]) if 33 <= b <= 126 and b not in b"+=" else b"+%02X" % b for b in raw)


def plain_message(body: bytes = b"hello\r\n") -> tuple[bytes, str]:
    """A message with a unique Message-ID (the module shares one gateway and one sink)."""
    message_id = f"<boundary-{next(_ids)}@example.com>"
    headers = (
        b"From: sender@example.com\r\nTo: user@example.lg.jp\r\nSubject: invoice\r\n"
        b"Message-ID: " + message_id.encode() + b"\r\n\r\n"
    )
    return headers + body, message_id


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, sink: SmtpSink) -> Iterator[RunningGateway]:
    config = make_config(tmp_path_factory.mktemp("gw"), downstream=sink.address)
    with RunningGateway(config) as running:
        yield running


def delivered(sink: SmtpSink, message_id: str) -> list[ReceivedMessage]:
    marker = f"Message-ID: {message_id}\r\n".encode()
    return [m for m in sink.wait_for(1, timeout=0.2) if marker in m.data]


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def assert_no_forged_structure(data: bytes) -> None:
    """What the downstream's readers see: no attachment, one From:, no forged dmarc=pass,
    and not a single control character (bare CR included) in the header block."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    names = [part.get_filename() for part in parsed.walk() if part.get_filename()]
    assert names == [], f"the downstream sees attachments {names}"
    assert not parsed.is_multipart()
    assert parsed.get_all("From") == ["sender@example.com"]
    assert not any("dmarc=pass" in str(v) for v in parsed.get_all("Authentication-Results", []))
    block = header_block(data).replace(b"\r\n", b"\n")
    controls = sorted({chr(b) for b in block if (b < 32 and b not in b"\t\n") or b == 127})
    assert controls == [], f"control characters in the delivered header block: {controls}"


def transaction(client: RawSmtp, message: bytes, mail: bytes = b"MAIL FROM:<sender@example.com>"):
    """MAIL, RCPT and DATA whatever the earlier replies were (as an attacker would)."""
    return (
        client.command(mail),
        client.command(b"RCPT TO:<user@example.lg.jp>"),
        client.data(message),
    )


def ehlo_ok(client: RawSmtp) -> None:
    assert client.command(b"EHLO client.example").code == 250


def reply(code: int, text: str) -> tuple[int, bytes]:
    return code, text.encode()


def seen(answer: RawReply) -> tuple[int, bytes]:
    return answer.code, answer.text


# --- the bypass, reproduced -------------------------------------------------------------------


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
@pytest.mark.parametrize("name", [FORGES_MIME, FORGES_SENDER], ids=["mime", "from-and-ar"])
def test_helo_name_with_bare_cr_cannot_forge_headers_downstream(gateway, sink, verb, name):
    message, message_id = plain_message(LOOKS_LIKE_MIME)
    with RawSmtp(gateway.port) as client:
        greeting = client.command(verb + b" " + name)
        mail, rcpt, data = transaction(client, message)
    for received in delivered(sink, message_id):
        assert_no_forged_structure(received.data)
    field = verb.decode()
    assert seen(greeting) == reply(501, f"5.5.2 {field} name contains a control character (U+000D)")
    # RFC 5321 4.1.4: a refused EHLO leaves the session as it was: no HELO yet.
    assert (mail.code, rcpt.code, data.code) == (503, 503, 503)
    assert delivered(sink, message_id) == []


@pytest.mark.parametrize("attribute", [b"HELO", b"NAME"])
def test_xforward_xtext_cr_cannot_forge_headers_downstream(gateway, sink, attribute):
    message, message_id = plain_message(LOOKS_LIKE_MIME)
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        answer = client.command(b"XFORWARD " + attribute + b"=" + xtext(FORGES_MIME))
        transaction(client, message)
    [received] = delivered(sink, message_id)
    assert_no_forged_structure(received.data)
    assert received.data.startswith(b"Received: from unknown (unknown [unknown])\r\n")
    assert received.xforward[attribute.decode()] == "[UNAVAILABLE]"
    name = attribute.decode()
    assert seen(answer) == reply(
        250,
        f"2.0.0 XFORWARD OK; {name} is [UNAVAILABLE]: it contains a control character (U+000D)",
    )


# --- HELO/EHLO name ---------------------------------------------------------------------------

# C0 controls, DEL, and (as UTF-8) the C1 NEL and the line separator, which some readers
# take for line breaks.
CONTROLS = [
    "\r", "\x00", "\t", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\u2028",
]  # fmt: skip


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_control_character_in_helo_name_gets_501(gateway, verb, char):
    with RawSmtp(gateway.port) as client:
        answer = client.command(verb + b" mx" + char.encode() + b"example.com")
        after = client.command(b"MAIL FROM:<sender@example.com>")
    field = verb.decode()
    assert seen(answer) == reply(
        501, f"5.5.2 {field} name contains a control character (U+{ord(char):04X})"
    )
    assert after.code == 503


def test_refused_ehlo_keeps_the_earlier_good_name(gateway, sink):
    message, message_id = plain_message()
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        assert client.command(b"EHLO bad\rname").code == 501
        mail, rcpt, data = transaction(client, message)
    assert (mail.code, rcpt.code, data.code) == (250, 250, 250)
    [received] = delivered(sink, message_id)
    assert received.data.startswith(b"Received: from client.example (unknown [127.0.0.1])\r\n")


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
def test_non_utf8_helo_name_gets_501(gateway, verb):
    with RawSmtp(gateway.port) as client:
        answer = client.command(verb + b" mx\xff.example.com")
    assert seen(answer) == reply(501, f"5.5.2 {verb.decode()} name is not valid UTF-8")


# --- XFORWARD attributes ----------------------------------------------------------------------

FORWARDED = ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT"]


@pytest.mark.parametrize("attribute", [*FORWARDED, "SOURCE"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (xtext(b"x\ry"), "it contains a control character (U+000D)"),
        (xtext(b"x\ny"), "it contains a control character (U+000A)"),
        (xtext(b"x\x00y"), "it contains a control character (U+0000)"),
        (b"x\x7fy", "it contains a control character (U+007F)"),
        (xtext(b"x\xffy"), "it is not valid UTF-8"),
    ],
    ids=["xtext-CR", "xtext-LF", "xtext-NUL", "raw-DEL", "xtext-not-utf8"],
)
def test_xforward_attribute_with_control_or_bad_utf8_becomes_unavailable(
    gateway, sink, attribute, value, problem
):
    message, message_id = plain_message()
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        answer = client.command(
            b"XFORWARD ADDR=203.0.113.7 NAME=mx.sender.example HELO=mx.sender.example"
        )
        assert answer.code == 250
        answer = client.command(b"XFORWARD " + attribute.encode() + b"=" + value)
        transaction(client, message)
    assert seen(answer) == reply(250, f"2.0.0 XFORWARD OK; {attribute} is [UNAVAILABLE]: {problem}")
    [received] = delivered(sink, message_id)
    assert_no_forged_structure(received.data)
    if attribute in FORWARDED:
        assert received.xforward[attribute] == "[UNAVAILABLE]"
    assert all("+0" not in v and "+7F" not in v for v in received.xforward.values())


def test_xforward_utf8_helo_is_decoded_as_utf8_not_latin1(gateway, sink):
    """Postfix xtext-encodes each byte of a UTF-8 name; the name is its UTF-8 reading."""
    message, message_id = plain_message()
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        assert client.command(b"XFORWARD ADDR=203.0.113.7 HELO=" + xtext("例え.jp".encode())).code
        client.command(b"MAIL FROM:<sender@example.com> SMTPUTF8")
        client.command(b"RCPT TO:<user@example.lg.jp>")
        client.data(message)
    [received] = delivered(sink, message_id)
    assert received.data.startswith("Received: from 例え.jp (".encode())


# --- MAIL FROM and RCPT TO addresses ----------------------------------------------------------


@pytest.mark.parametrize("char", [b"\r", b"\x00", b"\t", b"\x7f"], ids=["CR", "NUL", "TAB", "DEL"])
def test_control_character_in_sender_address_gets_501(gateway, sink, char):
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        answer = client.command(b"MAIL FROM:<send" + char + b"er@example.com>")
    assert seen(answer) == reply(
        501, f"5.1.7 Sender address contains a control character (U+{ord(char):04X})"
    )


@pytest.mark.parametrize("char", [b"\r", b"\x00", b"\t", b"\x7f"], ids=["CR", "NUL", "TAB", "DEL"])
def test_control_character_in_recipient_address_gets_501(gateway, sink, char):
    commands_before = len(sink.state.commands)
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        assert client.command(b"MAIL FROM:<sender@example.com>").code == 250
        answer = client.command(b"RCPT TO:<us" + char + b"er@example.lg.jp>")
    assert seen(answer) == reply(
        501, f"5.1.3 Recipient address contains a control character (U+{ord(char):04X})"
    )
    assert sink.state.commands[commands_before:] == []  # the downstream heard nothing


@pytest.mark.parametrize(
    ("smtputf8", "expected"),
    [
        (b"", reply(553, "5.6.7 Non-ASCII address requires SMTPUTF8")),
        (b" SMTPUTF8", reply(553, "5.1.7 Sender address is not valid UTF-8")),
    ],
    ids=["plain", "smtputf8"],
)
def test_non_utf8_sender_address_gets_553(gateway, smtputf8, expected):
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        answer = client.command(b"MAIL FROM:<s\xffender@example.com>" + smtputf8)
    assert seen(answer) == expected


@pytest.mark.parametrize(
    ("smtputf8", "expected"),
    [
        (b"", reply(553, "5.6.7 Non-ASCII address requires SMTPUTF8")),
        (b" SMTPUTF8", reply(553, "5.1.3 Recipient address is not valid UTF-8")),
    ],
    ids=["plain", "smtputf8"],
)
def test_non_utf8_recipient_address_gets_553(gateway, smtputf8, expected):
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        assert client.command(b"MAIL FROM:<sender@example.com>" + smtputf8).code == 250
        answer = client.command(b"RCPT TO:<u\xffser@example.lg.jp>")
    assert seen(answer) == expected


# --- ESMTP parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "name", "char"),
    [
        (b"SIZE=1\r00", "SIZE", "\r"),
        (b"BODY=8BIT\x00MIME", "BODY", "\x00"),
        (b"SMTPUTF8\x1b", "SMTPUTF8?", "\x1b"),
        (b"RET=HD\rRS", "RET", "\r"),
        (b"ENVID=abc\rdef", "ENVID", "\r"),
        (b"ENVID=abc+0Ddef", "ENVID", "\r"),
        (b"ENVID=abc+0Adef", "ENVID", "\n"),
        (b"ENVID=abc+7Fdef", "ENVID", "\x7f"),
    ],
    ids=["SIZE", "BODY", "SMTPUTF8", "RET", "ENVID-raw", "ENVID-xtext-CR", "ENVID-LF", "ENVID-DEL"],
)
def test_control_character_in_mail_parameter_gets_501(gateway, params, name, char):
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        answer = client.command(b"MAIL FROM:<sender@example.com> " + params)
    assert seen(answer) == reply(
        501, f"5.5.4 MAIL parameter {name} contains a control character (U+{ord(char):04X})"
    )


@pytest.mark.parametrize(
    ("params", "name", "char"),
    [
        (b"NOTIFY=SUCCESS\r,FAILURE", "NOTIFY", "\r"),
        (b"ORCPT=rfc822;a\rb@example.lg.jp", "ORCPT", "\r"),
        (b"ORCPT=rfc822;a+0Db@example.lg.jp", "ORCPT", "\r"),
        (b"ORCPT=rfc822;a+00b@example.lg.jp", "ORCPT", "\x00"),
        (b"ORCPT=rfc\x00822;ab@example.lg.jp", "ORCPT", "\x00"),
    ],
    ids=["NOTIFY", "ORCPT-raw", "ORCPT-xtext-CR", "ORCPT-xtext-NUL", "ORCPT-addr-type"],
)
def test_control_character_in_rcpt_parameter_gets_501(gateway, sink, params, name, char):
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        assert client.command(b"MAIL FROM:<sender@example.com>").code == 250
        answer = client.command(b"RCPT TO:<user@example.lg.jp> " + params)
    assert seen(answer) == reply(
        501, f"5.5.4 RCPT parameter {name} contains a control character (U+{ord(char):04X})"
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (b"MAIL FROM:<sender@example.com> ENVID=ab\xffc", "MAIL parameter ENVID"),
        (b"MAIL FROM:<sender@example.com> SMTPUTF8 ENVID=ab\xffc", "MAIL parameter ENVID"),
        (b"RCPT TO:<user@example.lg.jp> ORCPT=rfc822;a\xff@example.lg.jp", "RCPT parameter ORCPT"),
    ],
    ids=["ENVID", "ENVID-smtputf8", "ORCPT"],
)
def test_non_utf8_parameter_gets_501(gateway, command, expected):
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        if command.startswith(b"RCPT"):
            assert client.command(b"MAIL FROM:<sender@example.com>").code == 250
        answer = client.command(command)
    assert seen(answer) == reply(501, f"5.5.4 {expected} is not valid UTF-8")


def test_orcpt_addr_type_must_be_an_atom(gateway):
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        assert client.command(b"MAIL FROM:<sender@example.com>").code == 250
        answer = client.command(b"RCPT TO:<user@example.lg.jp> ORCPT=rfc 822;a@example.lg.jp")
        good = client.command(b"RCPT TO:<user@example.lg.jp> ORCPT=rfc822;user@example.lg.jp")
    assert answer.code == 501
    assert good.code == 250


# --- other commands ---------------------------------------------------------------------------


@pytest.mark.parametrize("verb", [b"NOOP", b"VRFY", b"HELP", b"EXPN"])
def test_control_character_in_other_arguments_gets_501_and_is_not_echoed(gateway, verb):
    with RawSmtp(gateway.port) as client:
        ehlo_ok(client)
        answer = client.command(verb + b" a\rb\x00c")
    assert seen(answer) == reply(
        501, f"5.5.2 {verb.decode()} argument contains a control character (U+000D)"
    )


def test_unknown_command_with_control_characters_is_not_echoed(gateway):
    with RawSmtp(gateway.port) as client:
        answer = client.command(b"FO\rO\x1bBAR x")
    assert answer.code == 500
    assert all(32 <= b < 127 for line in answer.lines for b in line), answer.lines


# --- TLS details ------------------------------------------------------------------------------


def test_tls_summary_keeps_only_token_characters():
    assert tls_summary({"cipher": ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)}) == (
        "TLSv1.3:TLS_AES_256_GCM_SHA384"
    )
    hostile = {"cipher": ("AES\r\nFrom: x", "TLSv1.3\x00", 256)}
    assert tls_summary(hostile) == "TLS"
    assert tls_summary({"cipher": None}) == "TLS"
    assert tls_summary({}) == "TLS"


def test_tls_details_of_a_real_session_are_plain_tokens(tmp_path, sink, certificate):
    """What the session records of TLS (``ClientInfo.tls``) is ``version:cipher`` from
    OpenSSL, never a peer-supplied string (no client certificate is requested)."""
    cert, key = certificate
    config = make_config(
        tmp_path, downstream=sink.address, **{"smtp.tls.cert": str(cert), "smtp.tls.key": str(key)}
    )
    seen_envelopes = []
    with RunningGateway(config) as gateway:
        relay = gateway.server.handler.relay
        original = relay.handle

        async def spy(envelope, raw, transaction):
            seen_envelopes.append(envelope)
            return await original(envelope, raw, transaction)

        relay.handle = spy
        with gateway.smtp() as client:
            client.ehlo("client.example")
            client.starttls(context=test_tls_and_cli._client_context())
            client.ehlo("client.example")
            assert (
                client.sendmail("a@example.com", ["u@example.lg.jp"], b"Subject: x\r\n\r\nx") == {}
            )
    [envelope] = seen_envelopes
    assert re.fullmatch(r"TLSv1\.[23]:[A-Z0-9_]+", envelope.peer.tls), envelope.peer.tls
    assert envelope.peer.proto == "ESMTPS"
    assert b"with ESMTPS id " in sink.messages[-1].data


def test_smtp_session_without_problem_still_delivers(gateway, sink):
    """The checks refuse nothing legitimate: UTF-8 names, parameters, XFORWARD all pass."""
    message, message_id = plain_message()
    with RawSmtp(gateway.port) as client:
        assert client.command("EHLO 例え.jp".encode()).code == 250
        assert client.command(b"XFORWARD ADDR=203.0.113.7 NAME=mx.sender.example").code == 250
        mail = client.command(
            "MAIL FROM:<送信者@example.com> SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=Q+2Bx".encode()
        )
        rcpt = client.command(
            b"RCPT TO:<user@example.lg.jp> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+40example.lg.jp"
        )
        data = client.data(message)
    assert (mail.code, rcpt.code, data.code) == (250, 250, 250)
    [received] = delivered(sink, message_id)
    assert received.mail_from == "送信者@example.com"
    assert received.mail_options == ["SMTPUTF8", "BODY=8BITMIME", "RET=HDRS", "ENVID=Q+2Bx"]


# --- the Received: field, whatever it is given ------------------------------------------------


@given(
    helo=st.text(),
    name=st.text(),
    address=st.text(),
    proto=st.text(),
    recipient=st.text(),
    hostname=st.text(),
)
@settings(max_examples=200)
def test_received_header_never_emits_a_control_character(
    helo, name, address, proto, recipient, hostname
):
    envelope = Envelope(
        queue_id="ABC",
        mail_from="a@example.com",
        recipients=(Recipient(recipient),),
        client=ClientInfo(address=address, helo=helo, name=name),
        peer=ClientInfo(address="127.0.0.1", proto=proto),
        received_at=1_700_000_000.0,
    )
    field = received_header(envelope, hostname)
    lines = field.split(b"\r\n")
    assert lines[-1] == b""
    assert lines[0].startswith(b"Received: from ")
    assert all(line.startswith(b"\t") for line in lines[1:-1])
    text = field.decode("utf-8")  # strict: no undecodable byte either
    assert all(c.isprintable() for line in text.split("\r\n") for c in line.lstrip("\t"))


def test_received_header_replaces_a_forging_helo_name():
    envelope = Envelope(
        queue_id="ABC",
        mail_from="",
        recipients=(Recipient("user@example.lg.jp"),),
        client=ClientInfo(address="192.0.2.1", helo=FORGES_MIME.decode()),
        received_at=1_700_000_000.0,
    )
    first = received_header(envelope, "gw.example").split(b"\r\n")[0]
    assert first == (
        b"Received: from mx.example.com?MIME-Version: 1.0?Content-Type: multipart/mixed; "
        b'boundary="XX"?X-Pad: x (unknown [192.0.2.1])'
    )


def test_multiline_downstream_reply_becomes_one_line_without_controls():
    joined = "5.1.1 <a@example.lg.jp>: Recipient address rejected:\n5.1.1 User unknown\x00"
    assert downstream_reply(550, joined) == Reply(
        550, "5.1.1", "<a@example.lg.jp>: Recipient address rejected: User unknown?"
    )
    assert downstream_reply(451, "try\nla\x07ter\r") == Reply(451, "4.0.0", "try la?ter")
