"""Database engines and schema versions for the quarantine (SQLite and PostgreSQL).

``make_engine(url)`` returns an engine configured for durability:

- SQLite: WAL journal, ``synchronous=FULL`` (a commit is fsynced before it returns, so the
  gateway's 250 never precedes a durable commit), foreign keys on, a busy timeout, and write
  transactions opened with ``BEGIN IMMEDIATE`` (``write_transaction``) so that two writers
  queue on the lock instead of failing half-way with SQLITE_BUSY.
- PostgreSQL through psycopg 3, with ``pool_pre_ping`` so that a restarted server costs one
  retry, not an error. ``synchronous_commit`` is forced on for hold transactions by the store.

``upgrade`` and ``check_current`` run Alembic programmatically with the migrations shipped
inside the package (``quarantine/migrations``), so ``mugaika db upgrade`` works from a wheel.

Not done here: deciding whether to auto-create (the server decides; see gateway/server.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from gateway.errors import ConfigError
from quarantine.errors import SchemaNotCurrent

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling defers BEGIN and commits behind our back
        # before DDL; take it over (SQLAlchemy docs, "Serializable isolation / Savepoints").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.info.pop("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; ConfigError (one line) when the URL is unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"quarantine.url: {url!r}: not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, pool_size=8, max_overflow=8, pool_timeout=60)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)
    raise ConfigError(
        f"quarantine.url: {parsed.render_as_string(hide_password=True)!r}: "
        "only sqlite:/// and postgresql:// are supported"
    )


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: ``BEGIN IMMEDIATE`` on SQLite, plain BEGIN elsewhere."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.info["immediate"] = True
        with connection.begin():
            yield connection


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate to ``revision``; return (before, after). Safe to run again."""
    before = current_revision(engine)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)
    return before, current_revision(engine) or ""


def check_current(engine: Engine) -> None:
    """Raise SchemaNotCurrent unless the schema is at the head revision."""
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        raise SchemaNotCurrent(
            f"quarantine database unreachable: {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    head = head_revision()
    if current != head:
        found = f"at revision {current}" if current else "not initialised"
        raise SchemaNotCurrent(
            f"quarantine database {engine.url.render_as_string(hide_password=True)} is {found}; "
            f"this version needs {head}: run `mugaika db upgrade` (with the same --config)"
        )


def _one_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
