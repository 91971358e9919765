"""Real Postfix (Debian package) in front of Mugaika, configured with deploy/postfix/*.snippet."""

from __future__ import annotations

import shutil
import smtplib
import socket
import tempfile
import time
from pathlib import Path

import pytest

from tests.gateway.test_relay_basics import message
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.postfix import PostfixInstance, is_root
from tests.helpers.smtp_sink import SmtpSink

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.slow,
    pytest.mark.skipif(not is_root(), reason="a private Postfix master must run as root"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def chain(tmp_path: Path, sink: SmtpSink):
    config = make_config(tmp_path / "gw", downstream=sink.address, **{"workers.count": 1})
    with RunningGateway(config) as gateway:
        # Postfix's own daemons run as the postfix user: its directory must be reachable for it,
        # which pytest's tmp_path (under a 0700 directory) is not.
        root = Path(tempfile.mkdtemp(prefix="mugaika-postfix-"))
        root.chmod(0o755)
        try:
            with PostfixInstance(root, free_port(), gateway.port, "example.lg.jp") as postfix:
                yield postfix, gateway
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_mail_through_postfix_arrives_with_the_original_client_from_xforward(chain, sink):
    postfix, _gateway = chain
    with smtplib.SMTP("127.0.0.1", postfix.listen_port, timeout=30) as client:
        client.ehlo("sender-mta.example")
        client.sendmail(
            "someone@internet.example",
            ["user@example.lg.jp"],
            message(message_id="<through-postfix@internet.example>"),
        )
    assert wait_until(lambda: len(sink.messages) == 1), postfix.maillog()
    [received] = sink.messages
    assert received.mail_from == "someone@internet.example"
    assert received.rcpt_tos == ["user@example.lg.jp"]
    assert b"Message-ID: <through-postfix@internet.example>" in received.data
    # Postfix passed the original client by XFORWARD; our Received names it, not Postfix.
    assert received.data.startswith(b"Received: from sender-mta.example (localhost [127.0.0.1])")
    assert "status=sent (250 2.0.0 Delivered, queued as SINK000001 downstream" in postfix.maillog()


def test_downstream_tempfail_makes_postfix_keep_and_retry_the_message(chain, sink):
    postfix, _gateway = chain
    sink.fail_next("data", 451, "4.3.0 LGWAN server busy")
    with smtplib.SMTP("127.0.0.1", postfix.listen_port, timeout=30) as client:
        client.sendmail(
            "someone@internet.example",
            ["user@example.lg.jp"],
            message(message_id="<retry@internet.example>"),
        )
    assert wait_until(lambda: "status=deferred" in postfix.maillog()), postfix.maillog()
    assert sink.messages == []
    postfix.flush()
    assert wait_until(lambda: len(sink.messages) == 1, timeout=60), postfix.maillog()
    assert b"Message-ID: <retry@internet.example>" in sink.messages[0].data


def test_downstream_5xx_makes_postfix_bounce_with_the_downstream_text(chain, sink):
    postfix, _gateway = chain
    sink.fail_next("rcpt", 550, "5.1.1 No such user here")
    with smtplib.SMTP("127.0.0.1", postfix.listen_port, timeout=30) as client:
        client.sendmail("someone@internet.example", ["gone@example.lg.jp"], message())
    assert wait_until(lambda: "status=bounced" in postfix.maillog()), postfix.maillog()
    assert "said: 550 5.1.1 No such user here (in reply to RCPT TO command)" in postfix.maillog()
    assert sink.messages == []
