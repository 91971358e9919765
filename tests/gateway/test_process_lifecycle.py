"""The real `mugaika serve` process: graceful SIGTERM, SIGKILL without loss, SIGHUP reload."""

from __future__ import annotations

import signal
import smtplib
import threading
import time
from pathlib import Path

import pytest

from tests.gateway.test_relay_basics import message
from tests.helpers.process import GatewayProcess
from tests.helpers.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow


def _send(port: int, message_id: str, results: dict[str, tuple[int, bytes] | str]) -> None:
    try:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        client.ehlo("client.example")
        client.mail("sender@example.com")
        client.rcpt("user@example.lg.jp")
        results[message_id] = client.data(message(message_id=message_id))
    except (smtplib.SMTPException, OSError) as exc:
        results[message_id] = f"{type(exc).__name__}: {exc}"
        return
    # After the reply to DATA a stopping gateway may answer QUIT with 421 or close first
    # (RFC 5321 4.1.1.10 allows 421 at any time): that does not undo the 250 above.
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def test_sigterm_finishes_messages_in_flight_then_exits(tmp_path: Path, sink: SmtpSink):
    for _ in range(3):
        sink.delay_next("data", 1.5)
    with GatewayProcess("--downstream", sink.address, "--data-dir", str(tmp_path)) as gateway:
        results: dict[str, tuple[int, bytes] | str] = {}
        threads = [
            threading.Thread(target=_send, args=(gateway.port, f"<inflight-{i}@t>", results))
            for i in range(3)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while sink.state.commands.count("DATA") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.state.commands.count("DATA") == 3, "messages did not reach the downstream"
        gateway.signal(signal.SIGTERM)
        time.sleep(0.3)

        def late_session() -> None:
            with smtplib.SMTP("127.0.0.1", gateway.port, timeout=5) as late:
                late.ehlo()
                late.mail("a@b.example")  # squeezed in before the close: must not work

        with pytest.raises((ConnectionRefusedError, smtplib.SMTPServerDisconnected)):
            late_session()
        for thread in threads:
            thread.join(30)
        assert gateway.wait(30) == 0, gateway.output()
    assert {mid: r[0] for mid, r in results.items() if isinstance(r, tuple)} == {
        f"<inflight-{i}@t>": 250 for i in range(3)
    }, results
    assert len(sink.messages) == 3


def test_sigkill_mid_stream_loses_nothing_the_sender_saw_250_for(tmp_path: Path, sink: SmtpSink):
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    with GatewayProcess("--downstream", sink.address, "--data-dir", str(tmp_path)) as gateway:

        def sender(worker: int) -> None:
            n = 0
            while not stop.is_set():
                message_id = f"<kill-{worker}-{n}@t>"
                n += 1
                results: dict[str, tuple[int, bytes] | str] = {}
                _send(gateway.port, message_id, results)
                outcome = results[message_id]
                if isinstance(outcome, tuple) and outcome[0] == 250:
                    acked.append(message_id)
                else:
                    errors.append(str(outcome))

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        gateway.kill()
        stop.set()
        for thread in threads:
            thread.join(30)
    delivered_ids = set()
    for received in sink.messages:
        for line in received.data.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                delivered_ids.add(line.split(b":", 1)[1].strip().decode())
    assert len(acked) >= 20
    assert errors, "the kill should have interrupted at least one session"
    missing = [mid for mid in acked if mid not in delivered_ids]
    assert missing == []
    assert len(sink.messages) >= len(acked)


def test_sighup_reload_keeps_sessions_and_rejects_a_broken_file(tmp_path: Path, sink: SmtpSink):
    config = tmp_path / "mugaika.yaml"
    config.write_text(f"downstream: '{sink.address}'\nsmtp:\n  max_recipients: 5\n")
    with GatewayProcess("--config", str(config), "--data-dir", str(tmp_path)) as gateway:
        client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=30)
        client.ehlo("client.example")
        config.write_text("smtp:\n  max_recipients: many\n")
        gateway.signal(signal.SIGHUP)
        assert gateway.wait_for_output("reload failed; keeping the running configuration")
        assert f"{config}:2: smtp.max_recipients" in gateway.output()
        # The open session survived and the old configuration is in force.
        client.mail("sender@example.com")
        client.rcpt("user@example.lg.jp")
        assert client.data(message())[0] == 250
        config.write_text(f"downstream: '{sink.address}'\nsmtp:\n  max_recipients: 1\n")
        gateway.signal(signal.SIGHUP)
        assert gateway.wait_for_output("configuration reloaded"), gateway.output()
        client.mail("sender@example.com")
        assert client.docmd("RCPT TO:<a@example.lg.jp>")[0] == 250
        assert client.docmd("RCPT TO:<b@example.lg.jp>")[0] == 452
        client.quit()
    assert len(sink.messages) == 1
