"""Test double: a worker pipeline that quarantines every message (for the durability tests).

It refuses to run outside tests (dangerzone's ``Dummy``): the gateway's real pipeline decides
by policy; this one only makes the quarantine path reachable before the rules engine lands.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from gateway.pipeline import Job, Outcome, WorkerSetup
from gateway.report import Report, Verdict
from quarantine.summary import summarize


def init_worker(setup: WorkerSetup) -> Callable[[Job], Outcome]:
    if os.environ.get("QUARANTINE_EVERYTHING_IN_TESTS") != "1":
        raise RuntimeError("the quarantine-everything pipeline is for tests only")

    def process(job: Job) -> Outcome:
        report = Report(queue_id=job.envelope.queue_id, reference_id=job.reference_id)
        report.add_finding("OOXML_VBA_MACRO", "2", "test pipeline")
        report.raise_verdict(Verdict.QUARANTINE, "OOXML_VBA_MACRO")
        return Outcome(Verdict.QUARANTINE, report, None, summary=summarize(job.raw))

    return process
