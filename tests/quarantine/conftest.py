"""Fixtures for the quarantine tests: a migrated store on each backend, items to hold."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.relay import new_reference_id
from gateway.report import Report, Verdict
from quarantine import db
from quarantine.sql import SqlStore, open_store
from quarantine.store import HoldKind, HoldRequest
from quarantine.summary import summarize
from tests.helpers.postgres import temporary_database

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def make_config(data_dir: Path, url: str | None = None, **extra: Any) -> Config:
    data: dict[str, Any] = {"data_dir": str(data_dir), **extra}
    quarantine = dict(data.pop("quarantine", {}))
    if url:
        quarantine["url"] = url
    data["quarantine"] = quarantine
    return Config.model_validate(data)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'quarantine.db'}"
    else:
        with temporary_database() as url:
            yield url


@pytest.fixture
def store_factory(tmp_path: Path, backend_url: str):  # type: ignore[no-untyped-def]
    """Build stores on one migrated database (several stores = several nodes)."""
    engine = db.make_engine(backend_url)
    db.upgrade(engine)
    engine.dispose()
    made: list[SqlStore] = []

    def factory(**extra: Any) -> SqlStore:
        store = open_store(make_config(tmp_path / "data", backend_url, **extra))
        made.append(store)
        return store

    yield factory
    for store in made:
        store.engine.dispose()


@pytest.fixture
def store(store_factory) -> SqlStore:  # type: ignore[no-untyped-def]
    return store_factory()


def message(subject: str = "Invoice", body: str = "hello", sender: str = "a@example.com") -> bytes:
    return (
        f"From: Sender <{sender}>\r\nTo: user@city.example.lg.jp\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{time.time_ns()}@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def hold_request(
    recipients: tuple[str, ...] = ("user@city.example.lg.jp",),
    raw: bytes | None = None,
    kind: HoldKind = "quarantined",
    sanitized: bytes | None = None,
    received_at: float | None = None,
    reasons: tuple[str, ...] = ("OOXML_VBA_MACRO",),
    mail_from: str = "a@example.com",
) -> HoldRequest:
    received_at = received_at or time.time()
    reference_id = new_reference_id(received_at)
    report = Report(queue_id="Q1", reference_id=reference_id)
    for reason in reasons:
        report.add_finding(reason, "2", "vbaProject.bin")
        report.raise_verdict(Verdict.QUARANTINE, reason)
    envelope = Envelope(
        queue_id="Q1",
        mail_from=mail_from,
        recipients=tuple(Recipient(r) for r in recipients),
        client=ClientInfo(address="192.0.2.7", helo="mx.example.com", name="mx.example.com"),
        received_at=received_at,
    )
    raw = raw or message()
    return HoldRequest(
        reference_id,
        kind,
        envelope,
        raw,
        report,
        sanitized,
        summarize(raw),  # as the worker computes it (the store never parses)
    )


class RunningAdmin:
    """The admin app served by the real AdminService (uvicorn) on a loopback port."""

    def __init__(self, config: Config, store: SqlStore, sink_address: tuple[str, int]) -> None:
        import asyncio
        import threading

        from gateway.delivery import SmtpDownstream
        from quarantine.web.service import AdminService

        self.config = config
        self.store = store
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        downstream = SmtpDownstream(*sink_address, "gateway.test", starttls="off", pool_size=0)
        self.service = AdminService(config, store, downstream)
        asyncio.run_coroutine_threadsafe(self.service.start(), self.loop).result(20)
        assert self.service.bound is not None
        self.url = f"http://127.0.0.1:{self.service.bound[1]}"
        assert self.service.server is not None
        self.app = self.service.server.config.app

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def sink():  # type: ignore[no-untyped-def]
    from tests.helpers.smtp_sink import SmtpSink

    with SmtpSink() as running:
        yield running


@pytest.fixture
def admin_factory(tmp_path: Path, backend_url: str, sink):  # type: ignore[no-untyped-def]
    engine = db.make_engine(backend_url)
    db.upgrade(engine)
    engine.dispose()
    running: list[RunningAdmin] = []

    def factory(**extra: Any) -> RunningAdmin:
        extra.setdefault("admin", {})
        extra["admin"] = {"listen": "127.0.0.1:0", **extra["admin"]}
        config = make_config(tmp_path / "data", backend_url, **extra)
        admin = RunningAdmin(config, open_store(config), (sink.host, sink.port))
        running.append(admin)
        return admin

    yield factory
    for admin in running:
        admin.close()
        admin.store.engine.dispose()


@pytest.fixture
def admin(admin_factory) -> RunningAdmin:  # type: ignore[no-untyped-def]
    return admin_factory()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    """Debian's Chromium driven by Playwright (no browser download), one per test module."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian package chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()
