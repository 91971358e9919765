"""End-to-end relay behaviour over real SMTP: gateway in-process, real sink downstream."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink


def message(subject: str = "hello", body: str = "body text\n", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "user@example.lg.jp"
    msg["Subject"] = subject
    msg["Message-ID"] = headers.pop("message_id", "<test-1@example.com>")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@pytest.fixture
def gateway(tmp_path: Path, sink: SmtpSink):
    config = make_config(tmp_path, downstream=sink.address)
    with RunningGateway(config) as running:
        yield running


def test_delivers_with_trace_header_and_keeps_message_id(gateway, sink):
    with gateway.smtp() as client:
        client.ehlo("client.example")
        code, text = client.docmd("MAIL FROM:<sender@example.com>")
        assert code == 250
        assert client.docmd("RCPT TO:<user@example.lg.jp>")[0] == 250
        code, text = client.data(message())
    assert code == 250
    assert b"2.0.0 Delivered, queued as SINK000001 downstream" in text
    [received] = sink.messages
    assert received.mail_from == "sender@example.com"
    assert received.rcpt_tos == ["user@example.lg.jp"]
    assert received.data.startswith(b"Received: from client.example (unknown [127.0.0.1])\r\n")
    assert b"\r\nMessage-ID: <test-1@example.com>\r\n" in received.data
    assert (
        gateway.metric("mugaika_messages_total", {"verdict": "delivered", "tenant": "other"}) == 1
    )


def test_dsn_smtputf8_and_body_parameters_pass_through_unchanged(gateway, sink):
    with gateway.smtp() as client:
        client.ehlo("client.example")
        assert "dsn" in client.esmtp_features
        client.command_encoding = "utf-8"
        code, _ = client.docmd(
            "MAIL FROM:<送信者@example.com> RET=HDRS ENVID=Qx+2BAbc SMTPUTF8 BODY=8BITMIME"
        )
        assert code == 250
        code, _ = client.docmd(
            "RCPT TO:<user@example.lg.jp> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;User+40example.lg.jp"
        )
        assert code == 250
        code, _ = client.data(message())
    assert code == 250
    [received] = sink.messages
    assert received.mail_from == "送信者@example.com"
    assert received.mail_options == ["RET=HDRS", "ENVID=Qx+2BAbc", "SMTPUTF8", "BODY=8BITMIME"]
    assert received.rcpt_options == [
        ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;User+40example.lg.jp"]
    ]


def test_null_sender_is_relayed_as_null(gateway, sink):
    with gateway.smtp() as client:
        client.ehlo("client.example")
        assert client.docmd("MAIL FROM:<>")[0] == 250
        assert client.docmd("RCPT TO:<user@example.lg.jp>")[0] == 250
        assert client.data(message())[0] == 250
    assert sink.messages[0].mail_from == ""
    assert any(c.startswith("MAIL FROM:<>") for c in sink.state.commands)


def test_xforward_from_permitted_client_is_used_and_forwarded(gateway, sink):
    with gateway.smtp() as client:
        client.ehlo("postfix.internal")
        assert "xforward" in client.esmtp_features
        code, _ = client.docmd("XFORWARD NAME=mx.sender.example ADDR=203.0.113.7 PROTO=ESMTP")
        assert code == 250
        assert client.docmd("XFORWARD HELO=mx.sender.example IDENT=123ABC")[0] == 250
        client.docmd("MAIL FROM:<sender@example.com>")
        client.docmd("RCPT TO:<user@example.lg.jp>")
        assert client.data(message())[0] == 250
    [received] = sink.messages
    assert received.xforward["ADDR"] == "203.0.113.7"
    assert received.xforward["NAME"] == "mx.sender.example"
    assert received.xforward["HELO"] == "mx.sender.example"
    assert received.data.startswith(
        b"Received: from mx.sender.example (mx.sender.example [203.0.113.7])\r\n"
    )


def test_xforward_refused_from_unlisted_client(tmp_path, sink):
    config = make_config(tmp_path, downstream=sink.address, **{"smtp.xforward_hosts": []})
    with RunningGateway(config) as gateway, gateway.smtp() as client:
        client.ehlo("client.example")
        assert "xforward" not in client.esmtp_features
        code, text = client.docmd("XFORWARD ADDR=203.0.113.7")
        assert (code, text[:5]) == (550, b"5.7.0")


def test_every_reply_has_an_enhanced_status_code(gateway):
    with gateway.smtp() as client:
        client.ehlo("client.example")
        replies = [
            client.docmd("MAIL FROM:<a@example.com> BOGUS=1"),
            client.docmd("RCPT TO:<b@example.lg.jp>"),
            client.docmd("MAIL FROM:<a@example.com>"),
            client.docmd("MAIL FROM:<a@example.com>"),
            client.docmd("RCPT TO:<b@example.lg.jp> NOTIFY=SOMETIMES"),
            client.docmd("DATA x"),
        ]
    codes = [(code, text.split(b" ")[0]) for code, text in replies]
    assert codes == [
        (555, b"5.5.4"),
        (503, b"5.5.1"),
        (250, b"2.1.0"),
        (503, b"5.5.1"),
        (501, b"5.5.4"),
        (503, b"5.5.1"),
    ]


def test_embedded_maildir_is_the_default_downstream(tmp_path):
    config = make_config(tmp_path)
    with RunningGateway(config) as gateway, gateway.smtp() as client:
        failed = client.sendmail(
            "sender@example.com", ["user@example.lg.jp", "x@example.lg.jp"], message()
        )
        assert failed == {}
    for box in ("user@example.lg.jp", "x@example.lg.jp"):
        [path] = list((tmp_path / "maildir" / box / "new").iterdir())
        content = path.read_bytes()
        assert content.startswith(
            b"Return-Path: <sender@example.com>\r\nDelivered-To: " + box.encode()
        )
        assert b"Message-ID: <test-1@example.com>" in content
    assert not list((tmp_path / "maildir" / "user@example.lg.jp" / "tmp").iterdir())


def test_smtp_client_gets_clear_5xx_for_unparseable_commands(gateway):
    with gateway.smtp() as client:
        client.ehlo("client.example")
        assert client.docmd("MAIL FROM:<not an address")[0] == 553
        code, _ = client.docmd("MAIL FROM:<a@example.com> SIZE=abc")
        assert code == 501


def test_quit_says_bye_with_enhanced_code(gateway):
    client = gateway.smtp()
    client.ehlo("x")
    code, text = client.docmd("QUIT")
    assert (code, text) == (221, b"2.0.0 Bye")
    client.close()


def test_smtplib_send_message_round_trip(gateway, sink):
    with gateway.smtp() as client:
        refused = client.sendmail("a@example.com", ["b@example.lg.jp"], message("second"))
    assert refused == {}
    assert sink.wait_for(1)[0].rcpt_tos == ["b@example.lg.jp"]
    with gateway.smtp() as client, pytest.raises(smtplib.SMTPRecipientsRefused, match=r"5\.5\.4"):
        client.sendmail("a@example.com", ["b@example.lg.jp"], message(), rcpt_options=["X=1"])
