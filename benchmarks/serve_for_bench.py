"""`mugaika serve` for benchmarks, optionally with the identity hook instead of the pipeline.

    python benchmarks/serve_for_bench.py --identity --listen 127.0.0.1:26101 \\
        --downstream 127.0.0.1:26100 --data-dir /tmp/bench

``--identity`` runs the relay core exactly as in production (SMTP in, worker round trip,
downstream out, the same replies and fsyncs) with a worker that only adds the Received:
header: the issue 3 baseline. Without it, the shipped pipeline runs. Not part of the package.
With ``BENCH_TRACEMALLOC_EVERY=SECONDS`` in the environment it writes a ``tracemalloc``
snapshot of the main process into the data dir that often.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import logs
from gateway.config import load_config
from gateway.pipeline import Job, Outcome, WorkerSetup, received_header
from gateway.report import Report, Verdict
from gateway.server import GatewayServer


def init_identity(setup: WorkerSetup) -> Callable[[Job], Outcome]:
    hostname = setup.config.hostname

    def process(job: Job) -> Outcome:
        report = Report(queue_id=job.envelope.queue_id, reference_id=job.reference_id)
        return Outcome(Verdict.DELIVER, report, received_header(job.envelope, hostname) + job.raw)

    return process


def trace_allocations(directory: str, every: float) -> None:
    """Python's allocations, a snapshot every ``every`` seconds into ``directory`` (a thread):
    to tell what grows in the main process (``soak.py``'s memory over a run)."""
    import threading
    import tracemalloc

    tracemalloc.start()

    def dump() -> None:
        began = time.monotonic()
        while True:
            time.sleep(every)
            seconds = round(time.monotonic() - began)
            tracemalloc.take_snapshot().dump(f"{directory}/tracemalloc-{seconds:05d}.snap")

    threading.Thread(target=dump, daemon=True).start()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identity", action="store_true")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--downstream", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    parser.add_argument("--max-jobs", type=int, help="jobs before a worker is replaced")
    args = parser.parse_args()
    config = load_config(
        overrides={
            "listen": args.listen,
            "downstream": args.downstream,
            "data_dir": args.data_dir,
            "admin.listen": None,
            "metrics.listen": None,
            **({"workers.count": args.workers} if args.workers else {}),
            **({"workers.max_jobs": args.max_jobs} if args.max_jobs else {}),
        }
    )
    logs.configure("WARNING")
    if os.environ.get("BENCH_TRACEMALLOC_EVERY"):
        trace_allocations(args.data_dir, float(os.environ["BENCH_TRACEMALLOC_EVERY"]))
    target = "serve_for_bench:init_identity" if args.identity else None
    server = GatewayServer(config, pipeline_target=target)
    await server.start()
    server.install_signal_handlers()
    print("listening", flush=True)
    await server.wait_stopped()


if __name__ == "__main__":
    asyncio.run(main())
