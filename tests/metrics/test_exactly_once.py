"""Counts made for work done in worker processes appear exactly once in the gateway's registry.

Real worker processes (``WorkerPool``, forkserver) and the real ``Relay`` and Maildir: twelve
messages through two workers that are each replaced after every job (``max_jobs=1``), so the
work is spread over twelve different processes. Every count must still be exactly twelve (not
0, not 24): the gateway counts in its main process, once per returned ``Report``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import prometheus_client

from gateway.delivery import MaildirDownstream
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.metrics import Metrics
from gateway.pipeline import Outcome, WorkerSetup
from gateway.relay import Relay
from gateway.workers import WorkerLimits, WorkerPool
from rules.loader import reload_policies
from tests.metrics.conftest import make_config, wait_until

MESSAGES = 12


def _message(index: int) -> bytes:
    return (
        f"From: sender@example.com\r\nTo: user@a.lg.jp\r\nSubject: message {index}\r\n"
        f"Message-ID: <m{index}@example.com>\r\n\r\nbody {index}\r\n"
    ).encode()


async def _run(tmp_path: Path, metrics: Metrics) -> list[int]:
    config = make_config(tmp_path, tenants={"a.lg.jp": {}})
    metrics.set_tenants(config.tenants)
    pool = WorkerPool(
        "tests.metrics.worker_targets:init_reporting_worker",
        WorkerSetup(config, reload_policies(config)),
        2,
        WorkerLimits(timeout=60, max_jobs=1),
        on_restart=lambda reason: metrics.worker_restarts.labels(reason).inc(),
        decode=Outcome.from_frame,
    )
    metrics.observe_pool(pool)
    await pool.start()
    relay = Relay(config, pool, None, metrics)
    downstream = MaildirDownstream(config.maildir, "gateway.test")

    async def one(index: int) -> int:
        envelope = Envelope(
            queue_id=f"Q{index:04d}",
            mail_from="sender@example.com",
            recipients=(Recipient("user@a.lg.jp"),),
            client=ClientInfo(address="127.0.0.1"),
            received_at=time.time(),
        )
        transaction = await downstream.begin(envelope.mail_from, (), None, False)
        await transaction.add_recipient(envelope.recipients[0])
        reply = await relay.handle(envelope, _message(index), transaction)
        return reply.code

    try:
        codes = await asyncio.gather(*(one(i) for i in range(MESSAGES)))
        await asyncio.to_thread(
            wait_until,
            lambda: (
                metrics.registry.get_sample_value(
                    "mugaika_worker_restarts_total", {"reason": "recycled"}
                )
                == MESSAGES
            ),
        )
    finally:
        await pool.close(grace=5)
    return list(codes)


def test_worker_counts_appear_exactly_once(tmp_path: Path) -> None:
    metrics = Metrics()
    codes = asyncio.run(_run(tmp_path, metrics))
    assert codes == [250] * MESSAGES

    value = metrics.registry.get_sample_value
    assert value("mugaika_findings_total", {"code": "PDF_JAVASCRIPT"}) == MESSAGES
    assert value("mugaika_findings_total", {"code": "OOXML_VBA_MACRO"}) == 0
    assert value("mugaika_urls_defanged_total") == 3 * MESSAGES
    assert value("mugaika_html_conversions_total") == MESSAGES
    assert (
        value("mugaika_attachments_total", {"detected_type": "pdf", "action": "rebuilt"})
        == MESSAGES
    )
    assert value("mugaika_auth_results_total", {"method": "spf", "result": "pass"}) == MESSAGES
    assert value("mugaika_messages_total", {"verdict": "delivered", "tenant": "a.lg.jp"}) == (
        MESSAGES
    )
    assert value("mugaika_message_processing_seconds_count") == MESSAGES
    # Each worker was retired after its one job: twelve different processes did the work.
    assert value("mugaika_worker_restarts_total", {"reason": "recycled"}) == MESSAGES
    assert value("mugaika_worker_restarts_total", {"reason": "crash"}) == 0
    assert value("mugaika_messages_in_pipeline") == 0
    # Busy time was read from the pool: positive, and never more than the wall-clock time
    # of the whole pipeline (which also includes waiting for a worker and delivery).
    busy = value("mugaika_worker_busy_seconds_total")
    assert busy is not None
    assert 0 < busy <= value("mugaika_message_processing_seconds_sum")
    # Each message is in the Maildir once: the counts match what was really delivered.
    delivered = list((tmp_path / "maildir" / "user@a.lg.jp" / "new").iterdir())
    assert len(delivered) == MESSAGES
    # What the workers counted themselves is in no registry of this process.
    assert value("mugaika_worker_side_findings_total") is None
    assert prometheus_client.REGISTRY.get_sample_value("mugaika_worker_side_findings_total") is None
