"""The main process never parses a held message (issue 11); the preview reads Japanese as the
gateway does (issue 16).

A real gateway runs in this test process, so this process *is* its main process (its workers
are forkserver children with their own interpreters). Tripwires on every MIME parser in this
process record any call: the email package's feed parser, the gateway's MIME walker and the
quarantine preview walker. The quarantine summary and the text preview must come from the
worker, and the admin UI (served by the same process) must show what was stored.
"""

from __future__ import annotations

import base64
import email.feedparser
import re
import resource
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import gateway.mime
import quarantine.summary
from quarantine.sql import ItemQuery, SqlStore
from quarantine.users import UserStore
from quarantine.web.service import AdminService
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.smtp_sink import SmtpSink

PASSWORD = "correct horse battery"
JIS = b"\x1b$B\x2d\x21\x2d\x6a\x1b(I\x36\x45\x1b(B"  # ISO-2022-JP (CP50220): ①㈱ and ｶﾅ
JIS_TEXT = "①㈱ｶﾅ"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the MIME parsers called in this process from now on, by the gateway's
    threads (its event loop and executors). The test's own thread is left out: its HTTP
    client parses response headers with the email package."""
    calls: list[str] = []
    test_thread = threading.current_thread()

    def tripwire(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not test_thread:
                calls.append(name)
            return original(*args, **kwargs)

        return wrapper

    for owner, attribute in [
        (email.feedparser.FeedParser, "feed"),  # every email.message_from_* / email.parser
        (gateway.mime._Walker, "part"),  # gateway.mime.parse_message
        (quarantine.summary._PreviewWalker, "walk"),  # the quarantine preview
    ]:
        original = getattr(owner, attribute)
        monkeypatch.setattr(owner, attribute, tripwire(f"{owner.__name__}.{attribute}", original))
    return calls


@pytest.fixture
def running(tmp_path: Path, sink: SmtpSink) -> Iterator[RunningGateway]:
    config = make_config(
        tmp_path,
        downstream=sink.address,
        **{"auth.enabled": False, "admin.listen": "127.0.0.1:0"},
    )
    with RunningGateway(config) as gateway:
        yield gateway


def many_parts(parts: int) -> bytes:
    head = (
        b"From: Sender <sender@example.com>\r\nTo: user@example.lg.jp\r\n"
        b"Subject: many parts\r\nMessage-ID: <many-parts@example.com>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XXXX"\r\n\r\n'
    )
    return head + b"--XXXX\r\n\r\n" * parts + b"--XXXX--\r\n"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process, every thread
    return usage.ru_utime + usage.ru_stime


def _store(gateway: RunningGateway) -> SqlStore:
    store = gateway.server.store
    assert isinstance(store, SqlStore)
    return store


def test_holding_a_message_of_many_parts_parses_nothing_in_the_main_process(
    running: RunningGateway, parses: list[str]
) -> None:
    raw = many_parts(100_000)  # 1 MB; the 9 MB / 900,000 parts: benchmarks/
    before = _cpu_seconds()
    with running.smtp() as client:
        client.sendmail("sender@example.com", ["user@example.lg.jp"], raw)
    spent = _cpu_seconds() - before
    assert parses == []
    # Before issue 11 the summary alone cost this process about 6 s of CPU for this message.
    assert spent < 3.0, f"main process spent {spent:.1f} s of CPU"
    [item] = _store(running).list(ItemQuery(kind="quarantined")).items
    assert item.subject == "many parts"  # from the worker's reading of the header block
    held = _store(running).get(item.id)
    assert held.preview == []  # no part could be read within the limits...
    assert held.preview_note == "LIMIT_PARTS"  # ...and the page says why
    assert parses == []


def _iso2022jp_with_an_executable() -> bytes:
    subject = "=?ISO-2022-JP?B?" + base64.b64encode(JIS).decode() + "?="
    return (
        (
            f"From: Sender <sender@example.com>\r\nTo: user@example.lg.jp\r\nSubject: {subject}\r\n"
            "Message-ID: <jis@example.com>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n"
        ).encode()
        + JIS
        + (
            b"\r\n--B\r\nContent-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment; filename="tool.exe"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.b64encode(b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00")
            + b"\r\n--B--\r\n"
        )
    )


def _admin_session(gateway: RunningGateway) -> tuple[requests.Session, str]:
    service = next(s for s in gateway.server.services if isinstance(s, AdminService))
    assert service.bound is not None
    url = f"http://127.0.0.1:{service.bound[1]}"
    UserStore(_store(gateway).engine).add("root", "superadmin", [], PASSWORD)
    session = requests.Session()
    page = session.get(f"{url}/login", timeout=10)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token, page.text
    session.post(
        f"{url}/login",
        data={"login_token": token.group(1), "username": "root", "password": PASSWORD},
        timeout=10,
    )
    return session, url


def test_the_preview_decodes_iso_2022_jp_extensions_with_the_gateways_charsets(
    running: RunningGateway, parses: list[str]
) -> None:
    with running.smtp() as client:
        reply = client.sendmail(
            "sender@example.com", ["user@example.lg.jp"], _iso2022jp_with_an_executable()
        )
    assert reply == {}
    [item] = _store(running).list(ItemQuery(kind="quarantined")).items
    assert item.subject == JIS_TEXT
    held = _store(running).get(item.id)
    assert held.preview is not None
    assert [p.text for p in held.preview if p.text is not None] == [JIS_TEXT]
    assert [(p.filename, p.text) for p in held.preview if p.filename] == [("tool.exe", None)]
    session, url = _admin_session(running)
    page = session.get(f"{url}/items/{item.id}", timeout=10)
    assert page.status_code == 200
    preview = re.findall(r'<pre class="preview">(.*?)</pre>', page.text, re.S)
    assert preview == [JIS_TEXT]  # not "$B-!-j(I6E(B", nor cp1252 mojibake
    assert parses == []  # neither the hold nor the page parsed the message here


def test_a_worker_failure_is_held_without_parsing_and_says_so(
    tmp_path: Path, sink: SmtpSink, parses: list[str]
) -> None:
    config = make_config(tmp_path, downstream=sink.address, **{"auth.enabled": False})
    target = "tests.helpers.worker_targets:init_misbehaving"
    with RunningGateway(config, pipeline_target=target) as gateway:
        with gateway.smtp() as client:
            client.sendmail(
                "sender@example.com",
                ["user@example.lg.jp"],
                b"X-Test-Behaviour: crash\r\nSubject: boom\r\n\r\nbody\r\n",
            )
        [item] = _store(gateway).list(ItemQuery(kind="quarantined")).items
        held = _store(gateway).get(item.id)
    assert item.subject == ""  # nobody read the message: its worker died on it
    assert held.preview_note == "not inspected: WORKER_CRASHED"
    assert parses == []
