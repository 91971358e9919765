"""What a process that parsed hostile input could send back if the input took control of it.

Test doubles for ``tests/gateway/test_workers.py`` (they refuse to run outside the test suite,
dangerzone's ``Dummy``): a pool worker and a sanitizer child that write their own bytes into
the result channel, as code running in them after an exploit would. The payloads are
"harmless but observable": a crafted pickle whose only effect, if the receiving process ever
unpickles it, is ``os.mkdir(marker)`` in that process.
"""

from __future__ import annotations

import gc
import multiprocessing.connection
import os
import stat
import struct
import time
from collections.abc import Callable


def _refuse_production() -> None:
    if os.environ.get("MUGAIKA_TESTING") != "1":
        raise RuntimeError("tests.gateway.compromised is a test double; not for production")


def mkdir_pickle(marker: str) -> bytes:
    """A protocol-4 pickle calling ``os.mkdir(marker)``, reached as ``gateway.workers`` +
    ``os.mkdir``: a dotted name inside an allowed module (issue 11). The first allowlist
    checked only the module's first component, so this passed it."""
    path = marker.encode()
    return (
        b"\x80\x04"  # PROTO 4
        + b"\x8c\x0fgateway.workers"  # SHORT_BINUNICODE: the module
        + b"\x8c\x08os.mkdir"  # SHORT_BINUNICODE: a dotted name inside it
        + b"\x93"  # STACK_GLOBAL (resolves dotted names since protocol 4)
        + b"X"
        + struct.pack("<I", len(path))
        + path  # BINUNICODE: the argument
        + b"\x85"  # TUPLE1
        + b"R"  # REDUCE: call it
        + b"."  # STOP
    )


def _result_connection() -> multiprocessing.connection.Connection:
    """The worker's channel to the main process, found as an exploit would find it."""
    return next(
        obj for obj in gc.get_objects() if isinstance(obj, multiprocessing.connection.Connection)
    )


def init_compromised(payload: object) -> Callable[[object], object]:
    """A pool worker that answers a job ``(kind, argument)`` with forged bytes:

    - ``("pickle", marker)``: the crafted pickle above;
    - ``("raw", data)``: ``data`` as the whole result message;
    - anything else is echoed (so the pool can be shown to work after a replacement).

    After forging it sleeps, so that only the forged message is in the channel."""
    _refuse_production()

    def handle(job: object) -> object:
        if isinstance(job, tuple) and job[0] in ("pickle", "raw"):
            data = mkdir_pickle(job[1]) if job[0] == "pickle" else job[1]
            _result_connection().send_bytes(data)
            time.sleep(60)
        return job

    return handle


def forge_from_sanitizer_child(data: bytes) -> object:
    """For ``run_isolated``: write ``data`` into the result pipe (the only FIFO left open in
    the child) and exit at once, before the real result could be written."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except OSError:
            continue
        if fd > 2 and is_pipe:
            os.write(fd, data)
    os._exit(0)


def sanitizer_child_pickle(marker: str) -> object:
    return forge_from_sanitizer_child(mkdir_pickle(marker))
