"""Worker processes: where untrusted content is parsed, so that it can only kill its own process.

Two layers, in the shape of dangerzone's ``doc_to_pixels_proc``:

``WorkerPool`` (used by the gateway's event loop)
    ``count`` long-lived processes started by a forkserver (no inherited file descriptors
    except the job pipe; no threads of the parent). One job at a time each. Limits:

    - ``memory_limit_mb``: soft RLIMIT_AS of the worker; a ``MemoryError`` is reported as
      ``WorkerMemoryExceeded`` and the worker is replaced;
    - ``message_timeout``: wall clock per job; on expiry the worker's whole process group is
      SIGKILLed and replaced (``WorkerTimeout``);
    - a worker that dies (signal, OOM killer, interpreter crash) mid-job gives
      ``WorkerCrashed``; a replacement is started at once;
    - ``max_jobs``: a worker is retired after that many jobs (bounds slow leaks);
    - RLIMIT_CORE is 0 (no core files full of mail).

    The pool never returns a partial result: a job either yields the worker's return value
    or raises one of the three errors above, which the caller turns into 451 or quarantine.

``run_isolated`` (used inside a worker, per attachment)
    Forks a child for one sanitizer call with its own RLIMIT_AS and RLIMIT_CPU and a wall-clock
    deadline; the result comes back through a pipe. The child closes every inherited
    descriptor except its end of that pipe. A crash, timeout or memory error becomes
    ``CannotSanitize(code)`` so the policy can strip or quarantine that one part; the message
    worker survives.

What crosses each boundary, and why it is safe:

- **Results** (worker → main process, sanitizer child → worker) come from a process that
  parsed hostile input and may be running an attacker's code. They are ``gateway.wire``
  frames: one JSON object plus length-prefixed bytes, never a pickle (issue 11: the old
  allowlisting unpickler resolved ``gateway.workers`` + ``os.system``). The reader bounds the
  frame's size before reading it, and the receiving type's ``from_frame`` checks every type,
  size and number (``Outcome``, ``SanitizeResult``, ``Report``) before anything uses it. A
  frame that breaks these rules is a protocol violation: the worker is killed and replaced
  (``WorkerProtocolError``, restart reason ``protocol``), the sanitizer child's part fails
  closed (``CannotSanitize("WORKER_PROTOCOL")``).
- **Jobs and set-up** (main process → worker: ``Job``, ``WorkerSetup``) are still pickled by
  ``multiprocessing``. They come from the more trusted side (the main process built them
  from the SMTP session and the validated configuration) and are unpickled in the less
  trusted process, which can only harm itself. A sanitizer child inherits its arguments by
  ``fork``: nothing is serialised in that direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import select
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gateway import wire
from gateway.errors import (
    CannotSanitize,
    MugaikaError,
    WorkerCrashed,
    WorkerMemoryExceeded,
    WorkerTimeout,
)
from gateway.logs import log_fields, worker_log
from gateway.wire import Decoder, Frame, WireError

MIB = 1024 * 1024
_READY = b"mugaika-worker-ready"
STARTUP_TIMEOUT = 120.0  # seconds a new worker may take to import and initialise


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    memory_limit_mb: int = 2048
    timeout: float = 120.0
    max_jobs: int = 500


class WorkerProtocolError(WorkerCrashed):
    """A worker sent something that is not a well-formed, valid result: it may be running
    an attacker's code. It is killed and replaced; the message fails like a crash."""

    code = "WORKER_PROTOCOL"


# Error codes are SHOUTED tokens; anything else from a worker is a protocol violation.
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_DETAIL = 500


class _WireFailure(wire.WireModel):
    code: wire.Name
    detail: wire.Detail


def _to_frame(result: object) -> Frame:
    """A handler's return value as a frame: our types know their own (``to_frame``), any
    other value must be plain JSON data."""
    if isinstance(result, Frame):
        return result
    to_frame = getattr(result, "to_frame", None)
    if callable(to_frame):
        frame = to_frame()
        if not isinstance(frame, Frame):
            raise WireError(f"{type(result).__name__}.to_frame() returned no Frame")
        return frame
    return wire.plain_frame(result)


def _result_bytes(result: object) -> bytes:
    frame = _to_frame(result)
    return wire.encode(Frame({"result": frame.header}, frame.blobs))


def _failure_bytes(code: str, detail: str) -> bytes:
    return wire.encode(Frame({"failure": {"code": code, "detail": detail[:MAX_DETAIL]}}))


def _read_result(data: bytes, limits: wire.WireLimits, decode: Decoder) -> tuple[Any, bool]:
    """``(value, False)`` for a result, ``((code, detail), True)`` for a reported failure.
    Raises ``WireError`` for anything else."""
    frame = wire.decode(data, limits)
    if set(frame.header) == {"failure"} and not frame.blobs:
        failure = wire.check(_WireFailure, frame.header["failure"], "failure")
        if not _CODE.fullmatch(failure.code):
            raise WireError("failure: code is not a SHOUTED token")
        return (failure.code, failure.detail[:MAX_DETAIL]), True
    if set(frame.header) == {"result"} and isinstance(frame.header["result"], dict):
        return decode(Frame(frame.header["result"], frame.blobs)), False
    raise WireError("neither a result nor a failure")


def _set_memory_limit(megabytes: int) -> None:
    limit = megabytes * MIB
    _hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if _hard != resource.RLIM_INFINITY:
        limit = min(limit, _hard)
    # Soft limit only: run_isolated children lower or raise theirs up to the hard limit.
    resource.setrlimit(resource.RLIMIT_AS, (limit, _hard))


def _resolve(target: str) -> Callable[[Any], Callable[[Any], Any]]:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _worker_main(
    conn: multiprocessing.connection.Connection,
    target: str,
    init_payload: Any,
    limits: WorkerLimits,
) -> None:
    """Body of a pool worker: init once, then answer jobs until told to stop."""
    os.setpgrp()  # so that a timeout kills this worker's own run_isolated children too
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _set_memory_limit(limits.memory_limit_mb)
    handler = _resolve(target)(init_payload)
    # Only now is this worker able to take a job: the parent counts a job's wall-clock limit
    # from the job, not from our start-up (imports, policy compilation, DNS setup).
    conn.send_bytes(_READY)
    while True:
        try:
            job = conn.recv()  # from the main process: see the module docstring
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            answer = _result_bytes(handler(job))
        except MemoryError:
            with contextlib.suppress(MemoryError, OSError):
                conn.send_bytes(_failure_bytes("WORKER_MEMORY", "memory limit exceeded"))
            return  # heap state is suspect after a MemoryError: let the pool replace us
        except MugaikaError as exc:
            answer = _failure_bytes(exc.code, str(exc))
        except Exception as exc:
            answer = _failure_bytes("WORKER_EXCEPTION", f"{type(exc).__name__}: {exc}")
        try:
            conn.send_bytes(answer)
        except MemoryError:
            return


class _Worker:
    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Any, generation: int):
        self.process = process
        self.conn = conn
        self.generation = generation
        self.jobs = 0

    def kill(self) -> None:
        pid = self.process.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.conn.close()
        self.process.join(timeout=5)


class WorkerPool:
    """A fixed-size pool of worker processes driven from an asyncio event loop.

    ``target`` is ``"module:function"``; the function is called once in each worker with
    ``init_payload`` and returns the job handler. The handler returns one of our types with a
    ``to_frame()`` (``Outcome``) or plain JSON data; ``decode`` turns the frame back into a
    value in this process, checking it (``Outcome.from_frame``; default: plain JSON data).
    ``run(job)`` awaits a free worker, sends the job, and returns the decoded result or raises
    WorkerCrashed / WorkerTimeout / WorkerMemoryExceeded / WorkerProtocolError, or
    MugaikaError(code) for an exception inside the handler. A result larger than
    ``max_result_bytes`` is a protocol violation (it is refused before it is read).
    """

    def __init__(
        self,
        target: str,
        init_payload: Any,
        count: int,
        limits: WorkerLimits,
        preload: tuple[str, ...] = (),
        on_restart: Callable[[str], None] | None = None,
        decode: Decoder = wire.plain_value,
        max_result_bytes: int = wire.MAX_TOTAL_BYTES,
    ) -> None:
        self.target = target
        self.init_payload = init_payload
        self.count = count
        self.limits = limits
        self.decode = decode
        self.wire_limits = wire.WireLimits(max_total_bytes=max_result_bytes)
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["gateway.workers", *preload])
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._generation = 0
        self._closing = False
        self._busy = 0
        self._busy_seconds = 0.0
        self._quiet = asyncio.Event()  # set whenever no job is running
        self._quiet.set()
        self._on_restart = on_restart or (lambda reason: None)
        # Pickling a large message into the pipe blocks; do it off the event loop.
        self._io = ThreadPoolExecutor(max_workers=2 * count + 2, thread_name_prefix="worker-io")

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def busy_seconds(self) -> float:
        """Worker-seconds spent on jobs since start (a counter: utilisation is its rate)."""
        return self._busy_seconds

    def _spawn_sync(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child_conn, self.target, self.init_payload, self.limits),
            name="mugaika-worker",
            daemon=True,
        )
        process.start()
        child_conn.close()
        worker = _Worker(process, parent_conn, self._generation)
        try:
            ready = parent_conn.poll(STARTUP_TIMEOUT) and parent_conn.recv_bytes(64) == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            worker.kill()
            raise WorkerCrashed(f"worker did not start (exit code {process.exitcode})")
        log_fields(worker_log, 20, "worker started", pid=process.pid, generation=self._generation)
        return worker

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        worker = await loop.run_in_executor(self._io, self._spawn_sync)
        self._all.add(worker)
        self._idle.put_nowait(worker)

    async def _respawn(self) -> None:
        """Start a replacement; if it cannot start, keep trying (messages wait, none is lost:
        each is bounded by its sender's own timeout and gets a 4xx at worst)."""
        delay = 1.0
        while not self._closing:
            try:
                await self._spawn()
                return
            except WorkerCrashed as exc:
                log_fields(worker_log, 40, "replacement worker failed to start", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self.count)))

    async def _replace(self, worker: _Worker, reason: str) -> None:
        self._all.discard(worker)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, worker.kill)
        log_fields(
            worker_log,
            30 if reason != "recycled" else 20,
            "worker replaced",
            pid=worker.process.pid,
            reason=reason,
            exitcode=worker.process.exitcode,
        )
        self._on_restart(reason)
        if not self._closing:
            await self._respawn()

    async def run(self, job: Any) -> Any:
        if self._closing:
            raise WorkerCrashed("pool is shutting down")
        worker = await self._idle.get()
        loop = asyncio.get_running_loop()
        self._busy += 1
        acquired = time.monotonic()
        self._quiet.clear()
        try:
            try:
                await loop.run_in_executor(self._io, worker.conn.send, job)
                raw = await asyncio.wait_for(
                    loop.run_in_executor(
                        self._io, worker.conn.recv_bytes, self.wire_limits.max_total_bytes
                    ),
                    self.limits.timeout,
                )
                # Decoding and checking a large report is CPU work: off the event loop too.
                result, failed = await loop.run_in_executor(
                    self._io, _read_result, raw, self.wire_limits, self.decode
                )
            except TimeoutError:
                await self._replace(worker, "timeout")
                raise WorkerTimeout(f"no answer within {self.limits.timeout:g}s") from None
            except WireError as exc:
                await self._replace(worker, "protocol")
                log_fields(worker_log, 40, "worker broke the result protocol", error=str(exc))
                raise WorkerProtocolError(f"worker broke the result protocol: {exc}") from None
            except (EOFError, OSError) as exc:
                if isinstance(exc, OSError) and "bad message length" in str(exc):
                    # recv_bytes refused a result over max_result_bytes without reading it.
                    await self._replace(worker, "protocol")
                    raise WorkerProtocolError(
                        "worker broke the result protocol: result over "
                        f"{self.wire_limits.max_total_bytes} bytes"
                    ) from None
                await loop.run_in_executor(self._io, worker.process.join, 5)
                code = worker.process.exitcode
                await self._replace(worker, "crash")
                raise WorkerCrashed(f"worker exited with {code}") from None
            except asyncio.CancelledError:
                # The SMTP session went away mid-job: the worker's answer is unwanted now.
                await asyncio.shield(self._replace(worker, "cancelled"))
                raise
            worker.jobs += 1
            if failed:
                code, detail = result
                if code == "WORKER_MEMORY":
                    await self._replace(worker, "memory")
                    raise WorkerMemoryExceeded(detail)
                self._release(worker)
                error = MugaikaError(detail)
                error.code = code
                raise error
            self._release(worker)
            return result
        finally:
            self._busy -= 1
            self._busy_seconds += time.monotonic() - acquired
            if not self._busy:
                self._quiet.set()

    def _release(self, worker: _Worker) -> None:
        if worker.generation != self._generation or worker.jobs >= self.limits.max_jobs:
            reason = "reloaded" if worker.generation != self._generation else "recycled"
            asyncio.get_running_loop().create_task(self._retire(worker, reason))
        else:
            self._idle.put_nowait(worker)

    async def _retire(self, worker: _Worker, reason: str) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            await loop.run_in_executor(self._io, worker.conn.send, None)
        await loop.run_in_executor(self._io, worker.process.join, 5)
        await self._replace(worker, reason)

    async def reload(self, init_payload: Any) -> None:
        """Use ``init_payload`` for new workers; idle ones are replaced now, busy ones on return.

        Jobs already running finish with the old payload: nothing in flight is dropped.
        """
        self.init_payload = init_payload
        self._generation += 1
        while not self._idle.empty():
            worker = self._idle.get_nowait()
            await self._retire(worker, "reloaded")

    async def close(self, grace: float = 30.0) -> None:
        """Wait up to ``grace`` seconds for running jobs, then stop every worker."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), grace)
        loop = asyncio.get_running_loop()
        for worker in list(self._all):
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in list(self._all):
            await loop.run_in_executor(self._io, worker.process.join, 2)
            await loop.run_in_executor(self._io, worker.kill)
        self._all.clear()
        self._io.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._all if w.process.pid is not None]


# --- per-document isolation inside a worker -------------------------------------------------


def _close_inherited_fds(keep: int) -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd != keep:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _default_decoder(frame: Frame) -> Any:
    from gateway.sanitizers.base import SanitizeResult  # the sanitizers import this module

    return SanitizeResult.from_frame(frame)


def run_isolated(
    func: Callable[..., Any],
    *args: Any,
    timeout: float,
    memory_limit_mb: int,
    decode: Decoder | None = None,
) -> Any:
    """Call ``func(*args)`` in a forked child with its own limits; return its result.

    ``func`` returns a ``SanitizeResult`` (the sanitizers' ``sanitize``), read back with
    ``SanitizeResult.from_frame``; for any other result pass ``decode`` (and return a type
    with ``to_frame()``, or plain JSON data for ``wire.plain_value``).

    Limits: RLIMIT_AS ``memory_limit_mb``; RLIMIT_CPU ``ceil(timeout) + 1`` seconds; a wall-
    clock ``timeout`` after which the child is SIGKILLed; at most ``memory_limit_mb`` MiB of
    result (the child cannot have made more). Raises CannotSanitize with code
    ``WORKER_TIMEOUT``, ``WORKER_MEMORY``, ``WORKER_CRASHED`` or ``WORKER_PROTOCOL`` (the
    child sent something that is not a valid result: see the module docstring); an exception
    inside ``func`` is re-raised as CannotSanitize with its code (a MugaikaError's own, else
    ``SANITIZER_ERROR``). Must be called from a single-threaded process (a worker, or the
    CLI), as fork() requires.
    """
    decoder = decode or _default_decoder
    max_bytes = memory_limit_mb * MIB
    read_fd, write_fd = os.pipe()
    # The child's garbage collector must not walk the worker's objects: writing their
    # headers copied most of the worker's pages into every child (copy-on-write), the bulk
    # of a small document's cost. Frozen objects are skipped; the parent unfreezes at once.
    gc.freeze()
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:  # the parent, also when fork failed
            gc.unfreeze()
    if pid == 0:  # child
        exit_code = 0
        try:
            os.close(read_fd)
            _close_inherited_fds(keep=write_fd)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            hard_as = resource.getrlimit(resource.RLIMIT_AS)[1]
            limit = max_bytes
            if hard_as != resource.RLIM_INFINITY:
                limit = min(limit, hard_as)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard_as))
            cpu = int(timeout) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            try:
                payload = _result_bytes(func(*args))
            except MemoryError:
                payload = _failure_bytes("WORKER_MEMORY", "memory limit exceeded")
            except MugaikaError as exc:
                payload = _failure_bytes(exc.code, str(exc))
            except Exception as exc:
                payload = _failure_bytes("SANITIZER_ERROR", f"{type(exc).__name__}: {exc}")
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        except BaseException:
            exit_code = 70
        finally:
            os._exit(exit_code)

    os.close(write_fd)
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    received = 0
    timed_out = oversized = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            received += len(chunk)
            if received > max_bytes:
                oversized = True
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if timed_out or oversized:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)

    if timed_out:
        raise CannotSanitize("WORKER_TIMEOUT", f"no result within {timeout:g}s")
    if oversized:
        raise CannotSanitize("WORKER_PROTOCOL", f"result over {max_bytes} bytes")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = "WORKER_TIMEOUT" if sig == signal.SIGXCPU else "WORKER_CRASHED"
        raise CannotSanitize(code, f"killed by signal {signal.Signals(sig).name}")
    data = b"".join(chunks)
    if not data:
        raise CannotSanitize("WORKER_CRASHED", "no result from the isolated process")
    try:
        result, failed = _read_result(data, wire.WireLimits(max_total_bytes=max_bytes), decoder)
    except WireError as exc:
        raise CannotSanitize("WORKER_PROTOCOL", f"invalid result: {exc}"[:MAX_DETAIL]) from None
    if failed:
        code, detail = result
        raise CannotSanitize(code, detail)
    return result
