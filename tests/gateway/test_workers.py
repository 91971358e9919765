"""Worker processes: crashes, hangs and memory exhaustion are contained and reported as codes."""

from __future__ import annotations

import asyncio
import os
import resource

import pytest

from gateway.errors import (
    CannotSanitize,
    MugaikaError,
    WorkerCrashed,
    WorkerMemoryExceeded,
    WorkerTimeout,
)
from gateway.wire import plain_value
from gateway.workers import WorkerLimits, WorkerPool, run_isolated
from tests.gateway.compromised import sanitizer_child_pickle

ECHO = "tests.helpers.worker_targets:init_echo"


def run(coroutine):
    return asyncio.run(coroutine)


DEFAULT_LIMITS = WorkerLimits(memory_limit_mb=256, timeout=5, max_jobs=100)


async def with_pool(body, limits=DEFAULT_LIMITS):
    restarts: list[str] = []
    pool = WorkerPool(ECHO, "init-payload", 1, limits, on_restart=restarts.append)
    await pool.start()
    try:
        return await body(pool), restarts
    finally:
        await pool.close(grace=1)


def test_pool_returns_the_handler_result_and_passes_the_init_payload():
    async def body(pool):
        return [await pool.run("hello"), await pool.run("payload")]

    results, restarts = run(with_pool(body))
    assert results == ["hello", "init-payload"]
    assert restarts == []


@pytest.mark.parametrize(
    ("job", "error", "reason"),
    [
        ("crash", WorkerCrashed, "crash"),
        ("memory", WorkerMemoryExceeded, "memory"),
        (("sleep", 30), WorkerTimeout, "timeout"),
    ],
)
def test_failures_raise_their_error_and_the_worker_is_replaced(job, error, reason):
    async def body(pool):
        first_pid = pool.pids()
        with pytest.raises(error):
            await pool.run(job)
        after = await pool.run("still works")
        return first_pid, pool.pids(), after

    limits = WorkerLimits(memory_limit_mb=256, timeout=1.5, max_jobs=100)
    (before, after, answer), restarts = run(with_pool(body, limits))
    assert answer == "still works"
    assert restarts == [reason]
    assert before != after


def test_an_exception_in_the_handler_is_a_code_not_a_traceback_and_keeps_the_worker():
    async def body(pool):
        pid = pool.pids()
        with pytest.raises(MugaikaError) as caught:
            await pool.run("raise")
        return pid, pool.pids(), caught.value

    (before, after, error), restarts = run(with_pool(body))
    assert error.code == "WORKER_EXCEPTION"
    assert str(error) == "ValueError: boom"
    assert before == after
    assert restarts == []


def test_workers_are_recycled_after_max_jobs():
    async def body(pool):
        pids = []
        for i in range(3):
            await pool.run(i)
            await asyncio.sleep(0.3)
            pids.append(tuple(pool.pids()))
        return pids

    pids, restarts = run(with_pool(body, WorkerLimits(256, 5, max_jobs=2)))
    assert restarts == ["recycled"]
    assert pids[0] != pids[1]


# --- a compromised worker or sanitizer child (issue 11) -----------------------------------
# A process that parsed hostile input may be running the attacker's code. What it sends back
# must never be able to run code in the process that reads it: the crafted pickle below calls
# os.mkdir(marker) in whatever process unpickles it (a dotted name inside an allowed module
# passed the first allowlist), so the marker directory is the evidence.

COMPROMISED = "tests.gateway.compromised:init_compromised"


async def with_compromised_pool(body):
    restarts: list[str] = []
    pool = WorkerPool(COMPROMISED, None, 1, DEFAULT_LIMITS, on_restart=restarts.append)
    await pool.start()
    try:
        return await body(pool), restarts
    finally:
        await pool.close(grace=1)


def test_a_compromised_worker_cannot_run_code_in_the_main_process(tmp_path):
    marker = tmp_path / "ran-in-main-process"

    async def body(pool):
        first = pool.pids()
        try:
            error: BaseException | None = None
            await pool.run(("pickle", str(marker)))
        except WorkerCrashed as exc:
            error = exc
        return first, pool.pids(), await pool.run("still works"), error

    (before, after, answer, error), restarts = run(with_compromised_pool(body))
    assert not marker.exists()
    assert isinstance(error, WorkerCrashed)
    assert "protocol" in str(error)
    assert restarts == ["protocol"]  # the worker that broke the protocol is replaced
    assert before != after
    assert answer == "still works"


def test_a_compromised_sanitizer_child_cannot_run_code_in_its_worker(tmp_path):
    marker = tmp_path / "ran-in-worker"
    with pytest.raises(CannotSanitize) as caught:
        run_isolated(sanitizer_child_pickle, str(marker), timeout=5, memory_limit_mb=256)
    assert not marker.exists()
    assert caught.value.code == "WORKER_PROTOCOL"


def _explode():
    os.kill(os.getpid(), 9)


def _allocate():
    return bytearray(512 * 1024 * 1024)


def _spin():
    while True:
        pass


def _raise():
    raise ValueError("bad document")


def _answer(x):
    return x * 2


@pytest.mark.parametrize(
    ("func", "code"),
    [
        (_explode, "WORKER_CRASHED"),
        (_allocate, "WORKER_MEMORY"),
        (_spin, "WORKER_TIMEOUT"),
        (_raise, "SANITIZER_ERROR"),
    ],
)
def test_run_isolated_turns_every_failure_into_a_code(func, code):
    with pytest.raises(CannotSanitize) as caught:
        run_isolated(func, timeout=1.0, memory_limit_mb=128)
    assert caught.value.code == code


def test_run_isolated_returns_the_result_and_leaves_the_parent_limits_alone():
    before = resource.getrlimit(resource.RLIMIT_AS)
    assert run_isolated(_answer, 21, timeout=5, memory_limit_mb=256, decode=plain_value) == 42
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_a_worker_that_cannot_initialise_fails_the_start_instead_of_taking_jobs():
    async def body():
        pool = WorkerPool("tests.helpers.worker_targets:init_failing", None, 1, DEFAULT_LIMITS)
        try:
            with pytest.raises(WorkerCrashed, match="did not start"):
                await pool.start()
        finally:
            await pool.close(grace=1)

    run(body())


def test_a_job_timeout_does_not_count_the_workers_start_up():
    # The replacement after a timeout is only handed jobs once it reported ready, so a short
    # job limit is not eaten by imports and initialisation.
    async def body(pool):
        with pytest.raises(WorkerTimeout):
            await pool.run(("sleep", 30))
        return [await pool.run(i) for i in range(3)]

    answers, restarts = run(with_pool(body, WorkerLimits(256, timeout=0.5, max_jobs=100)))
    assert answers == [0, 1, 2]
    assert restarts == ["timeout"]
