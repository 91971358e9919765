"""Worker pipelines for tests that need a worker to crash, hang, or exhaust memory on cue.

A test double, so it refuses to start outside the test suite (dangerzone's ``Dummy``):
``tests/conftest.py`` sets ``MUGAIKA_TESTING=1``. Behaviour is chosen by the message's
``X-Test-Behaviour`` header: ``crash`` (the worker dies by SIGKILL), ``exit`` (os._exit),
``sleep=SECONDS``, ``memory`` (allocate until the limit), ``raise`` (an exception). Anything
else runs the real pipeline.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable

from gateway.pipeline import Job, Outcome, Pipeline, WorkerSetup

_BEHAVIOUR = re.compile(rb"^X-Test-Behaviour:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def _refuse_production() -> None:
    if os.environ.get("MUGAIKA_TESTING") != "1":
        raise RuntimeError("tests.helpers.worker_targets is a test double; not for production")


def init_misbehaving(setup: WorkerSetup) -> Callable[[Job], Outcome]:
    _refuse_production()
    pipeline = Pipeline(setup.config, setup.policies)

    def handle(job: Job) -> Outcome:
        head = job.raw.split(b"\r\n\r\n", 1)[0]
        match = _BEHAVIOUR.search(head)
        behaviour = match.group(1).decode() if match else ""
        if behaviour == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        elif behaviour == "exit":
            os._exit(3)
        elif behaviour.startswith("sleep="):
            time.sleep(float(behaviour.split("=", 1)[1]))
        elif behaviour == "memory":
            hog = []
            while True:
                hog.append(bytearray(64 * 1024 * 1024))
        elif behaviour == "raise":
            raise ValueError("test behaviour: raise")
        return pipeline.process(job)

    return handle


def init_failing(payload: object) -> Callable[[object], object]:
    """A worker whose initialisation fails (a broken install, a missing library)."""
    _refuse_production()
    raise ImportError("test: a library the pipeline needs is missing")


def init_echo(payload: object) -> Callable[[object], object]:
    """For WorkerPool tests: returns the job, or misbehaves when the job says so."""
    _refuse_production()

    def handle(job: object) -> object:
        if job == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if isinstance(job, tuple) and job[0] == "sleep":
            time.sleep(job[1])
        if job == "memory":
            hog = []
            while True:
                hog.append(bytearray(64 * 1024 * 1024))
        if job == "raise":
            raise ValueError("boom")
        if job == "payload":
            return payload
        return job

    return handle
