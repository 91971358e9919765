"""Content-addressed message bytes on disk: ``<root>/ab/cdef…`` named by their sha256.

Used by the embedded (SQLite) store; the PostgreSQL store keeps bytes in its ``blobs`` table
instead, so that every node of a cluster can read every item (see ``quarantine/sql.py``).

Write protocol (the quarantine's 250 depends on it): write to a temporary file in the target
directory, ``fsync`` it, ``rename`` it into place, then ``fsync`` the directory, so that the
name and the bytes survive a power cut before the metadata that points at them is committed.
Reads re-hash the bytes and refuse a mismatch (``BlobCorrupt``): a damaged original is never
released.

Garbage collection and writers exclude each other with ``flock`` on ``<root>/.lock``: writers
take it shared (many at once), the collector exclusive. Without it a collector could unlink a
file between a writer's "already there" check and the writer's metadata commit. ``flock`` works
between processes of one machine, which is the only place a files-backed store lives.

Not done here: deciding what is garbage (the SQL store knows which hashes are referenced).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from quarantine.errors import BlobCorrupt

_HEX = frozenset("0123456789abcdef")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_digest(digest: str) -> str:
    # The digest becomes a path: accept only 64 lower-case hex digits, never "../".
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise ValueError(f"not a sha256 hex digest: {digest[:80]!r}")
    return digest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobs:
    """Blobs as files under ``root``. Thread- and process-safe; every method may raise OSError."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        digest = _check_digest(digest)
        return self.root / digest[:2] / digest[2:]

    @contextlib.contextmanager
    def _lock(self, kind: int) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            os.close(fd)  # releases the lock

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold while writing blobs and committing the metadata that refers to them."""
        return self._lock(fcntl.LOCK_SH)

    def collecting(self) -> contextlib.AbstractContextManager[None]:
        """Hold while deciding what is garbage and deleting it."""
        return self._lock(fcntl.LOCK_EX)

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; return its sha256. Idempotent: existing content is kept."""
        digest = sha256_hex(data)
        final = self.path(digest)
        if final.exists() and final.stat().st_size == len(data):
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{digest[2:18]}-{os.getpid()}-{id(data):x}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(final.parent)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of ``digest``; BlobCorrupt when missing or altered."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobCorrupt(f"blob {digest} is missing") from None
        if sha256_hex(data) != digest:
            raise BlobCorrupt(f"blob {digest} does not match its sha256")
        return data

    def digests(self) -> Iterator[str]:
        """Every stored digest (temporary files of interrupted writes are skipped)."""
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for path in sub.iterdir():
                digest = sub.name + path.name
                if len(digest) == 64 and set(digest) <= _HEX:
                    yield digest

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()
