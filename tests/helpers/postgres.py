"""Throw-away PostgreSQL databases for tests (127.0.0.1:5432, trust auth, user postgres).

``temporary_database()`` creates ``mugaika_test_<random hex>`` and drops it afterwards, so
parallel runs never share state. ``pytest.skip`` with a reason when the server is unreachable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

PG_HOST = os.environ.get("MUGAIKA_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MUGAIKA_TEST_PGPORT", "5432"))
PG_USER = os.environ.get("MUGAIKA_TEST_PGUSER", "postgres")


def _admin_connection():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user=PG_USER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}: {exc}".splitlines()[0])


@contextlib.contextmanager
def temporary_database() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh, empty database; drop it afterwards."""
    name = f"mugaika_test_{secrets.token_hex(6)}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
