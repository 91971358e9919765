"""A worker pipeline for metrics tests: the real pipeline plus a fixed, known report.

A test double, so it refuses to start outside the test suite (dangerzone's ``Dummy``):
``tests/metrics/conftest.py`` sets ``MUGAIKA_TESTING=1``. Every message gets one
``PDF_JAVASCRIPT`` finding, one rebuilt PDF attachment, three defanged URLs, one HTML
conversion and ``spf=pass``; and the worker also increments a Prometheus counter of its own
(in the worker process's default registry), to show that nothing counted inside a worker can
reach the gateway's registry: the gateway counts from the returned ``Report`` only.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import Counter

from gateway.pipeline import Job, Outcome, Pipeline, WorkerSetup
from gateway.report import AttachmentRecord


def _refuse_production() -> None:
    if os.environ.get("MUGAIKA_TESTING") != "1":
        raise RuntimeError("tests.metrics.worker_targets is a test double; not for production")


def init_reporting_worker(setup: WorkerSetup) -> Callable[[Job], Outcome]:
    _refuse_production()
    pipeline = Pipeline(setup.config, setup.policies)
    in_worker = Counter(
        "mugaika_worker_side_findings_total", "Counted inside the worker (never exported)"
    )

    def handle(job: Job) -> Outcome:
        outcome = pipeline.process(job)
        report = outcome.report
        report.add_finding("PDF_JAVASCRIPT", "2", "OpenAction")
        report.add_action("urls-defanged", "1", count=3)
        report.add_action("html-to-text", "1")
        report.attachments.append(
            AttachmentRecord(
                "2", "invoice.pdf", "application/pdf", "application/pdf", "0" * 64, 100, "rebuilt"
            )
        )
        report.auth["spf"] = "pass"
        in_worker.inc()
        return outcome

    return handle
