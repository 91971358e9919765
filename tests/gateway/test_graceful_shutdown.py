"""A graceful stop never delivers a message whose sender did not get our 250.

Seen with real Postfix (tests/integration/test_postfix_content_filter.py, restart case): a
message delivered twice after SIGTERM. The shutdown waited for the messages in flight when it
began, then closed every session; a message whose DATA arrived during that wait was processed
too, and its session closed under it while the downstream was accepting it. The downstream
kept it, the sender saw no reply and sent it again.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from pathlib import Path

from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink


def message(mid: str) -> bytes:
    return (
        f"From: a@example.com\r\nTo: user@example.lg.jp\r\nSubject: {mid}\r\n"
        f"Message-ID: <{mid}@example.com>\r\n\r\nplain text\r\n"
    ).encode()


def test_data_arriving_while_stopping_is_refused_not_lost_or_doubled(
    tmp_path: Path, sink: SmtpSink
) -> None:
    config = make_config(tmp_path, downstream=sink.address, **{"auth.enabled": False})
    gateway = RunningGateway(config).__enter__()
    try:
        late = smtplib.SMTP("127.0.0.1", gateway.port, timeout=30)
        late.ehlo("late.example.com")
        late.mail("a@example.com")
        assert late.rcpt("user@example.lg.jp")[0] == 250

        # One message in flight, slow at the downstream: the stop must wait for it.
        sink.delay_next("data", 2.0)
        early_refused: list[dict[str, tuple[int, bytes]]] = []

        def send_early() -> None:
            early = smtplib.SMTP("127.0.0.1", gateway.port, timeout=30)
            early.ehlo("early.example.com")
            early_refused.append(
                early.sendmail("a@example.com", ["user@example.lg.jp"], message("early"))
            )
            try:  # a stopping gateway may answer QUIT with 421: the 250 above stands
                early.quit()
            except (smtplib.SMTPException, OSError):
                early.close()

        sender = threading.Thread(target=send_early)
        sender.start()
        deadline = time.monotonic() + 10
        while not gateway.server.handler.in_flight and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.01)
        assert gateway.server.handler.in_flight  # type: ignore[union-attr]

        stopping = asyncio.run_coroutine_threadsafe(gateway.server.shutdown(30), gateway.loop)
        time.sleep(0.2)
        sink.commit_then_delay_next(2.0)
        code, text = late.docmd("DATA")
        if code == 354:
            late.send(message("late") + b".\r\n")
            code, text = late.getreply()
        sender.join(30)
        stopping.result(60)
        delivered = [m.data for m in sink.messages]
        late_delivered = [d for d in delivered if b"<late@example.com>" in d]
        # The late message: refused with a 4xx (the sender retries) and never delivered, or
        # answered 250 and delivered once. Never delivered without the 250.
        if code == 250:
            assert len(late_delivered) == 1
        else:
            assert 400 <= code < 500, (code, text)
            assert late_delivered == [], "delivered although the sender was told to retry"
        assert early_refused == [{}], "the message in flight is finished and answered 250"
        assert sum(b"<early@example.com>" in d for d in delivered) == 1
    finally:
        gateway.stop()
