"""No 250 before a durable commit: a real gateway process, a real SMTP client, a real kill.

The gateway runs as a subprocess with a pipeline that quarantines everything. While its
``hold`` waits for the database (another connection holds the write lock), the process is
SIGKILLed: the client must see the connection drop, never a 250, and nothing half-stored may
remain. The sender's MTA keeps the message and retries: no loss.
"""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from quarantine.sql import ItemQuery, open_store
from tests.helpers.postgres import temporary_database
from tests.quarantine.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = (
    b"From: a@example.com\r\nTo: user@city.example.lg.jp\r\nSubject: durable\r\n"
    b"Message-ID: <durable@example.com>\r\n\r\nbody\r\n"
)


class Gateway:
    def __init__(
        self,
        tmp: Path,
        url: str | None,
        admin: bool = False,
        downstream: str | None = None,
        real_pipeline: bool = False,
    ) -> None:
        config = {
            "downstream": downstream,
            "listen": "127.0.0.1:0",
            "data_dir": str(tmp / "data"),
            "workers": {"count": 1},
            "admin": {"listen": "127.0.0.1:0" if admin else None},
            "metrics": {"listen": None},
            "quarantine": {"url": url} if url else {},
        }
        path = tmp / "mugaika.yaml"
        path.write_text(yaml.safe_dump(config))
        self.config_path = path
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log_path = tmp / "gateway.log"
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.quarantine.run_gateway",
                str(path),
                *(["--real"] if real_pipeline else []),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY"):
            self.process.kill()
            raise AssertionError(f"gateway did not start: {line}{self.log_path.read_text()}")
        _, smtp_port, admin_port = line.split()
        self.port = int(smtp_port)
        self.admin_port = int(admin_port)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[Gateway] = []

    def factory(url: str | None = None, admin: bool = False) -> Gateway:
        gateway = Gateway(tmp_path, url, admin)
        started.append(gateway)
        return gateway

    yield factory
    for gateway in started:
        if gateway.process.poll() is None:
            gateway.kill()


def send(port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example")
        client.mail("a@example.com")
        client.rcpt("user@city.example.lg.jp")
        return client.data(MESSAGE)


def send_in_background(port: int) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(send(port))
        except (smtplib.SMTPException, OSError) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_quarantined_message_gets_250_only_after_commit(gateway_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gateway = gateway_factory()
    code, text = send(gateway.port)
    assert code == 250
    assert b"Held for review as" in text
    reference = text.split(b"Held for review as ")[1].split()[0].decode()
    store = open_store(make_config(tmp_path / "data"))
    assert store.original(reference) == MESSAGE
    assert store.get(reference).summary.reasons == ["OOXML_VBA_MACRO"]
    gateway.stop()


def test_killed_during_hold_sqlite_no_250_nothing_half_stored(  # type: ignore[no-untyped-def]
    gateway_factory, tmp_path: Path
) -> None:
    gateway = gateway_factory()
    database = tmp_path / "data" / "quarantine.db"
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the gateway's hold now waits for the write lock
    thread, outcome = send_in_background(gateway.port)
    blobs = tmp_path / "data" / "blobs"
    # The original's bytes are fsynced before the metadata transaction: hold is under way.
    try:
        wait_until(lambda: blobs.exists() and any(p.is_file() for p in blobs.glob("*/*")))
    finally:
        time.sleep(0.3)
        gateway.kill()
        print(gateway.log_path.read_text())
    thread.join(30)
    blocker.execute("ROLLBACK")
    blocker.close()
    [result] = outcome
    assert isinstance(result, smtplib.SMTPServerDisconnected | ConnectionError | OSError), result
    store = open_store(make_config(tmp_path / "data"))
    assert store.list(ItemQuery()).total == 0
    # The orphaned blob is never referenced and goes with the next collection.
    assert store.collect_garbage() == 1


@pytest.mark.postgres
def test_killed_during_hold_postgres_no_250_nothing_half_stored(  # type: ignore[no-untyped-def]
    gateway_factory, tmp_path: Path
) -> None:
    import psycopg

    with temporary_database() as url:
        from quarantine import db

        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        gateway = gateway_factory(url)
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as blocker:
            blocker.execute("LOCK TABLE items IN EXCLUSIVE MODE")
            thread, outcome = send_in_background(gateway.port)
            database = dsn.rsplit("/", 1)[1]

            def hold_waits() -> bool:
                with psycopg.connect(dsn, autocommit=True) as probe:
                    row = probe.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                        "AND wait_event_type = 'Lock'",
                        (database,),
                    ).fetchone()
                    return bool(row and row[0])

            wait_until(hold_waits)
            gateway.kill()
            thread.join(30)
            blocker.rollback()
        [result] = outcome
        assert isinstance(result, smtplib.SMTPServerDisconnected | ConnectionError | OSError)
        store = open_store(make_config(tmp_path / "data", url))
        assert store.list(ItemQuery()).total == 0
        store.engine.dispose()


def test_store_failure_answers_451_not_250(gateway_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gateway = gateway_factory()
    blobs = tmp_path / "data" / "blobs"
    if blobs.exists():
        import shutil

        shutil.rmtree(blobs)
    blobs.write_bytes(b"not a directory")  # every blob write now fails with OSError
    code, text = send(gateway.port)
    assert code == 451
    assert b"Quarantine store unavailable" in text
    gateway.stop()


def test_unmigrated_database_refuses_to_start(tmp_path: Path) -> None:
    with temporary_database() as url:
        config = tmp_path / "mugaika.yaml"
        config.write_text(yaml.safe_dump({"quarantine": {"url": url}, "listen": "127.0.0.1:0"}))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--config",
                str(config),
                "--data-dir",
                str(tmp_path / "d"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "not initialised" in lines[0]
        assert "mugaika db upgrade" in lines[0]
        upgrade = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "db", "upgrade", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert upgrade.returncode == 0, upgrade.stderr
        assert "upgraded (empty) → " in upgrade.stdout
