"""Several nodes share one PostgreSQL quarantine: originals must never live on one node's disk.

With a PostgreSQL URL the store keeps message bytes in the database (``blobs: auto``), and a
configuration that would keep them as files on the node (``blobs: files``) is refused at load
with one line naming the file, line and key. ``tests/integration/test_scale_out.py`` proves the
consequence end to end (a node destroyed, its items released from another).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.helpers.postgres import temporary_database
from tests.integration.mails import mugaika

URL = "postgresql+psycopg://postgres@127.0.0.1:5432/mugaika"


def test_files_blobs_with_a_shared_database_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "mugaika.yaml"
    config.write_text(f"quarantine:\n  url: {URL}\n  blobs: files\n")
    with pytest.raises(ConfigError) as refused:
        load_config(config, environ={})
    [line] = refused.value.messages
    assert line.startswith(f"{config}:1: quarantine: ")
    assert "blobs: files keeps originals on one node's disk" in line
    checked = mugaika("config", "check", str(config), check=False)
    assert checked.returncode == 2
    assert "use database (or auto)" in checked.stderr


def test_files_blobs_stay_allowed_for_the_embedded_sqlite(tmp_path: Path) -> None:
    config = tmp_path / "mugaika.yaml"
    config.write_text("quarantine:\n  blobs: files\n")
    assert load_config(config, environ={}).quarantine.blobs == "files"


@pytest.mark.postgres
def test_a_postgresql_store_keeps_bytes_in_the_database(tmp_path: Path) -> None:
    from quarantine import db
    from quarantine.sql import open_store

    with temporary_database() as url:
        db.upgrade(db.make_engine(url))
        config = load_config(
            None, environ={}, overrides={"quarantine.url": url, "data_dir": str(tmp_path)}
        )
        store = open_store(config)
        try:
            assert store.blob_files is None  # bytes go to the blobs table, never to data_dir
        finally:
            store.engine.dispose()
    assert not (tmp_path / "blobs").exists()
