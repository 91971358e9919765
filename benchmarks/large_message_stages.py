"""Where the main process's memory goes for one large message (the reproducer of soak.py's
25 MB finding). Not part of the package.

    .venv/bin/python benchmarks/large_message_stages.py [--mb 25] [--worker]

Runs the gateway's server in this process (one worker, shipped default policy, a clean
``faulty_downstream.py``), sends one warm-up message, then one ``--mb`` MB message from a
client subprocess, and prints Python's traced allocations (``tracemalloc``: current and peak
since the previous line) at each stage boundary: receiving the DATA (aiosmtpd), the worker
round trip (``WorkerPool.run``), the delivery (``SmtpTransaction.send``, aiosmtplib's
``data``). Traced bytes are a lower bound of RSS: the allocator keeps some of what is freed.

``--worker`` instead runs the worker's side in this process (``Pipeline.process``, what a
pool worker does with the job, without the isolated sanitizer children's own memory):
strict framing (``framing.examine``), the MIME parse (``mime.parse_message``), each
attachment's sanitizer call, the rebuild (``Pipeline._build``).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import soak
from paths import free_port, stop, wait_listening

from gateway import delivery, logs, smtp, workers
from gateway.config import load_config
from gateway.server import GatewayServer

MiB = 1024 * 1024


def mark(name: str, size: int) -> None:
    current, peak = tracemalloc.get_traced_memory()
    print(
        f"{name:36s} now {current / MiB:7.1f} MiB   peak since last {peak / MiB:7.1f} MiB "
        f"({peak / size:4.1f}× the message)",
        flush=True,
    )
    tracemalloc.reset_peak()


def traced_sync(owner: Any, attribute: str, size: int) -> None:
    original: Callable[..., Any] = getattr(owner, attribute)
    label = f"{getattr(owner, '__name__', owner)}.{attribute}"

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"before {label}", size)
        try:
            return original(*args, **kwargs)
        finally:
            mark(f"after {label}", size)

    setattr(owner, attribute, wrapper)


def worker_stages(megabytes: float) -> None:
    from gateway import inspect, pipeline
    from gateway.scan import envelope_for

    raw = soak.large_message(megabytes)
    process = pipeline.Pipeline(load_config(environ={}))
    process.auth_settings = None  # no DNS
    small = soak.text_message()
    process.process(pipeline.Job(envelope_for(small, None, None), small, "WARM"))
    for owner, name in (
        (inspect, "examine"),
        (inspect, "parse_message"),
        (inspect.Inspector, "_sanitize"),
        (pipeline.Pipeline, "_build"),
    ):
        traced_sync(owner, name, len(raw))
    job = pipeline.Job(envelope_for(raw, None, None), raw, "LARGE")
    tracemalloc.start()  # the job's own bytes (the message) are not counted
    print(f"message: {len(raw) / MiB:.1f} MiB")
    outcome = process.process(job)
    mark(f"done: {outcome.verdict.name}", len(raw))


def traced(owner: Any, attribute: str, size: list[int]) -> None:
    original: Callable[..., Awaitable[Any]] = getattr(owner, attribute)
    label = f"{owner.__name__}.{attribute}"

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"before {label}", size[0])
        try:
            return await original(*args, **kwargs)
        finally:
            mark(f"after {label}", size[0])

    setattr(owner, attribute, wrapper)


CLIENT = """
import asyncio, sys
sys.path[:0] = {paths!r}
import soak
body = soak.wire_form(soak.large_message({mb}))
mailer = soak.Mailer({port}, [body], [soak.Message(0, 0, "<bench-large@example.com>")], 1)
asyncio.run(mailer.run(1))
print(mailer.messages[0].final[1])
"""


async def main(megabytes: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="mugaika-stages-"))
    size = [len(soak.large_message(megabytes))]
    sink_port, port = free_port(), free_port()
    command = [sys.executable, str(soak.BENCHMARKS / "faulty_downstream.py"), "--clean"]
    command += ["--port", str(sink_port), "--accepted", str(work / "accepted.log")]
    downstream = subprocess.Popen(command)  # noqa: ASYNC220 (nothing else runs yet)
    wait_listening(sink_port, downstream, 20, work / "none")
    overrides = {
        "listen": f"127.0.0.1:{port}",
        "downstream": f"127.0.0.1:{sink_port}",
        "data_dir": str(work / "data"),
        "admin.listen": None,
        "metrics.listen": None,
        "workers.count": 1,
    }
    logs.configure("WARNING")
    server = GatewayServer(load_config(environ={}, overrides=overrides))
    await server.start()
    try:
        warm = soak.Mailer(port, [soak.wire_form(soak.text_message())], [soak.Message(0, 0, "")], 1)
        await warm.run(1)
        traced(smtp.GatewayHandler, "handle_DATA", size)
        traced(workers.WorkerPool, "run", size)
        traced(delivery.SmtpTransaction, "send", size)
        tracemalloc.start()
        print(f"message: {size[0] / MiB:.1f} MiB")
        mark("start", size[0])
        paths = [str(soak.BENCHMARKS.parent), str(soak.BENCHMARKS)]
        client = CLIENT.format(paths=paths, mb=megabytes, port=port)
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", client)
        await process.wait()
        mark("reply sent", size[0])
    finally:
        await server.shutdown()
        stop(downstream)


if __name__ == "__main__":  # the forkserver imports this module again: start nothing then
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=25.0)
    parser.add_argument("--worker", action="store_true", help="the worker's stages instead")
    arguments = parser.parse_args()
    if arguments.worker:
        worker_stages(arguments.mb)
    else:
        asyncio.run(main(arguments.mb))
