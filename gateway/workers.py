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
    deadline; the result comes back pickled through a pipe. The child closes every inherited
    descriptor except its end of that pipe. A crash, timeout or memory error becomes
    ``CannotSanitize(code)`` so the policy can strip or quarantine that one part; the message
    worker survives.

Only plain data crosses either boundary: pickled dataclasses, bytes, str, int, and error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import multiprocessing
import multiprocessing.connection
import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gateway.errors import (
    CannotSanitize,
    MugaikaError,
    WorkerCrashed,
    WorkerMemoryExceeded,
    WorkerTimeout,
)
from gateway.logs import log_fields, worker_log

MIB = 1024 * 1024
_READY = b"mugaika-worker-ready"
STARTUP_TIMEOUT = 120.0  # seconds a new worker may take to import and initialise


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    memory_limit_mb: int = 2048
    timeout: float = 120.0
    max_jobs: int = 500


@dataclass(frozen=True, slots=True)
class _Failure:
    """How a worker reports an exception: a stable code and a one-line detail, no traceback."""

    code: str
    detail: str


class _ResultUnpickler(pickle.Unpickler):
    """Unpickles what a worker returns, allowing only our own types and plain containers.

    A worker parses hostile documents; if one ever took control of a worker, an unrestricted
    ``pickle.loads`` would hand it the parent too. Results are dataclasses of this project
    and builtin scalars, so nothing else is needed.
    """

    _ALLOWED_BUILTINS = frozenset({"set", "frozenset", "bytearray"})

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in ("gateway", "rules", "quarantine") or (
            module == "builtins" and name in self._ALLOWED_BUILTINS
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"worker result may not contain {module}.{name}")


def loads_result(data: bytes) -> Any:
    """``pickle.loads`` restricted to the types a worker may return."""
    return _ResultUnpickler(io.BytesIO(data)).load()


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
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            result: Any = handler(job)
        except MemoryError:
            conn.send(_Failure("WORKER_MEMORY", "memory limit exceeded"))
            return  # heap state is suspect after a MemoryError: let the pool replace us
        except MugaikaError as exc:
            result = _Failure(exc.code, str(exc)[:500])
        except Exception as exc:
            result = _Failure("WORKER_EXCEPTION", f"{type(exc).__name__}: {exc}"[:500])
        try:
            conn.send(result)
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
    ``init_payload`` and returns the job handler. ``run(job)`` awaits a free worker, sends the
    job, and returns the handler's result or raises WorkerCrashed / WorkerTimeout /
    WorkerMemoryExceeded, or MugaikaError(code) for an exception inside the handler.
    """

    def __init__(
        self,
        target: str,
        init_payload: Any,
        count: int,
        limits: WorkerLimits,
        preload: tuple[str, ...] = (),
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.init_payload = init_payload
        self.count = count
        self.limits = limits
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
            ready = parent_conn.poll(STARTUP_TIMEOUT) and parent_conn.recv_bytes() == _READY
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
                    loop.run_in_executor(self._io, worker.conn.recv_bytes), self.limits.timeout
                )
                result = loads_result(raw)
            except TimeoutError:
                await self._replace(worker, "timeout")
                raise WorkerTimeout(f"no answer within {self.limits.timeout:g}s") from None
            except (EOFError, OSError, pickle.UnpicklingError):
                await loop.run_in_executor(self._io, worker.process.join, 5)
                code = worker.process.exitcode
                await self._replace(worker, "crash")
                raise WorkerCrashed(f"worker exited with {code}") from None
            except asyncio.CancelledError:
                # The SMTP session went away mid-job: the worker's answer is unwanted now.
                await asyncio.shield(self._replace(worker, "cancelled"))
                raise
            worker.jobs += 1
            if isinstance(result, _Failure):
                if result.code == "WORKER_MEMORY":
                    await self._replace(worker, "memory")
                    raise WorkerMemoryExceeded(result.detail)
                self._release(worker)
                error = MugaikaError(result.detail)
                error.code = result.code
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


def run_isolated(
    func: Callable[..., Any],
    *args: Any,
    timeout: float,
    memory_limit_mb: int,
) -> Any:
    """Call ``func(*args)`` in a forked child with its own limits; return its result.

    Limits: RLIMIT_AS ``memory_limit_mb``; RLIMIT_CPU ``ceil(timeout) + 1`` seconds; a wall-
    clock ``timeout`` after which the child is SIGKILLed. Raises CannotSanitize with code
    ``WORKER_TIMEOUT``, ``WORKER_MEMORY`` or ``WORKER_CRASHED``; an exception inside ``func``
    is re-raised as CannotSanitize with its code (a MugaikaError's own, else
    ``SANITIZER_ERROR``). Must be called from a single-threaded process (a worker, or the
    CLI), as fork() requires.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        exit_code = 0
        try:
            os.close(read_fd)
            _close_inherited_fds(keep=write_fd)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            hard_as = resource.getrlimit(resource.RLIMIT_AS)[1]
            limit = memory_limit_mb * MIB
            if hard_as != resource.RLIM_INFINITY:
                limit = min(limit, hard_as)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard_as))
            cpu = int(timeout) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            try:
                outcome: Any = ("ok", func(*args))
            except MemoryError:
                outcome = ("error", "WORKER_MEMORY", "memory limit exceeded")
            except MugaikaError as exc:
                outcome = ("error", exc.code, str(exc)[:500])
            except Exception as exc:
                outcome = ("error", "SANITIZER_ERROR", f"{type(exc).__name__}: {exc}"[:500])
            try:
                payload = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
            except MemoryError:
                payload = pickle.dumps(("error", "WORKER_MEMORY", "memory limit exceeded"))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        except BaseException:
            exit_code = 70
        finally:
            os._exit(exit_code)

    os.close(write_fd)
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    timed_out = False
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
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)

    if timed_out:
        raise CannotSanitize("WORKER_TIMEOUT", f"no result within {timeout:g}s")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = "WORKER_TIMEOUT" if sig == signal.SIGXCPU else "WORKER_CRASHED"
        raise CannotSanitize(code, f"killed by signal {signal.Signals(sig).name}")
    try:
        outcome = loads_result(b"".join(chunks))
    except Exception:
        raise CannotSanitize("WORKER_CRASHED", "no result from the isolated process") from None
    if isinstance(outcome, tuple) and len(outcome) == 2 and outcome[0] == "ok":
        return outcome[1]
    if isinstance(outcome, tuple) and len(outcome) == 3 and outcome[0] == "error":
        raise CannotSanitize(str(outcome[1]), str(outcome[2]))
    raise CannotSanitize("WORKER_CRASHED", "malformed result from the isolated process")
