"""Measurements of `benchmarks/run`: throughput with smtp-source, CPU and memory of a process
tree from /proc, and added latency with a paced asyncio SMTP client.

CPU of a tree is the sum over its live processes of user + system time including reaped
children (``cutime``/``cstime``): a worker or an isolated document child that exits between
two readings is counted in its parent's children time, so the difference of two readings is
what the whole gateway spent, however many processes came and went.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from paths import Sink
from workloads import RECIPIENT, SENDER, Workload

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    tree = _children()
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(tree.get(pid, []))
    return pids


def cpu_seconds(root: int) -> float:
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes, from smaps_rollup; (0, 0) for a process gone meanwhile."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            text = rollup.read()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in (b"Rss:", b"Pss:"):
            values[parts[0]] = int(parts[1]) * 1024
    return values.get(b"Rss:", 0), values.get(b"Pss:", 0)


@dataclass
class MemoryPeak:
    rss: int = 0  # the largest sum over the tree at one sampling
    pss: int = 0
    largest_process_rss: int = 0
    processes: int = 0


class MemorySampler:
    """Samples the tree's RSS and PSS every ``interval`` seconds in a thread."""

    def __init__(self, root: int | None, interval: float = 0.25) -> None:
        self.root = root
        self.interval = interval
        self.peak = MemoryPeak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        if self.root is None:
            return
        pids = process_tree(self.root)
        readings = [memory(pid) for pid in pids]
        self.peak.rss = max(self.peak.rss, sum(r for r, _ in readings))
        self.peak.pss = max(self.peak.pss, sum(p for _, p in readings))
        self.peak.largest_process_rss = max(
            self.peak.largest_process_rss, max((r for r, _ in readings), default=0)
        )
        self.peak.processes = max(self.peak.processes, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def base_rss(root: int | None) -> list[int]:
    """RSS of each process of an idle tree (issue 13: < 120 MiB each)."""
    return [] if root is None else [memory(pid)[0] for pid in process_tree(root)]


@dataclass
class Throughput:
    sent: int
    delivered: int  # the sink's count for this run
    seconds: float
    cpu_seconds: float
    memory: MemoryPeak
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def split(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` shared by ``weights``, every share ≥ 1, the sum exactly ``max(total, len)``."""
    whole = sum(weights)
    shares = [max(1, total * w // whole) for w in weights]
    index = 0
    while sum(shares) < total:
        shares[index % len(shares)] += 1
        index += 1
    return shares


def smtp_source(
    workload: Workload, port: int, messages: int, sessions: int, sink: Sink, root: int | None
) -> Throughput:
    """Send ``messages`` with smtp-source (one process per template, sessions by weight)."""
    weights = [t.weight for t in workload.templates]
    counts = split(messages, weights)
    session_counts = [min(c, s) for c, s in zip(counts, split(sessions, weights), strict=True)]
    before = sink.count()
    cpu_before = cpu_seconds(root) if root else 0.0
    with MemorySampler(root) as sampler:
        started = time.monotonic()
        processes = [
            subprocess.Popen(
                [
                    "smtp-source", "-d", "-s", str(s), "-m", str(c), "-F", str(t.path),
                    "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for t, c, s in zip(workload.templates, counts, session_counts, strict=True)
        ]  # fmt: skip
        failures = []
        for process in processes:
            output, _ = process.communicate()
            if process.returncode:
                failures.append(output.decode(errors="replace").strip()[-300:])
        seconds = time.monotonic() - started
    cpu = (cpu_seconds(root) - cpu_before) if root else 0.0
    sent = sum(counts)
    delivered = sink.settled_count(before + sent) - before
    return Throughput(sent, delivered, seconds, cpu, sampler.peak, failures)


@dataclass
class Latency:
    rate: float
    sent: int
    delivered_250: int
    samples: list[float]
    failures: list[str] = field(default_factory=list)

    def percentile(self, fraction: float) -> float:
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


def _dot_stuffed(path: Path) -> bytes:
    lines = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return line


async def _paced(
    port: int, bodies: list[bytes], rate: float, seconds: float, connections: int
) -> Latency:
    count = max(1, round(rate * seconds))
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    slots: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    for index in range(count):
        slots.put_nowait((start + index / rate, bodies[index % len(bodies)]))
    result = Latency(rate, count, 0, [])

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await _reply(reader)
            writer.write(b"EHLO bench.example.com\r\n")
            await _reply(reader)
            while not slots.empty():
                due, body = slots.get_nowait()
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\n".encode())
                replies = [await _reply(reader), await _reply(reader)]
                writer.write(b"DATA\r\n")
                replies.append(await _reply(reader))
                writer.write(body + b".\r\n")
                final = await _reply(reader)
                if final.startswith(b"250"):
                    result.delivered_250 += 1
                    result.samples.append(loop.time() - due)
                else:
                    result.failures.append((b" / ".join([*replies, final])).decode()[:200])
            writer.write(b"QUIT\r\n")
            await _reply(reader)
        finally:
            writer.close()

    outcomes = await asyncio.gather(
        *(connection() for _ in range(connections)), return_exceptions=True
    )
    result.failures += [repr(o) for o in outcomes if isinstance(o, BaseException)]
    return result


def paced_latency(
    workload: Workload, port: int, rate: float, seconds: float, connections: int = 16
) -> Latency:
    """Messages at a fixed ``rate`` (scheduled, so a wait for a free connection counts);
    latency is from the scheduled start of MAIL FROM to the 250 after the data."""
    bodies = []
    for template in workload.templates:
        bodies += [_dot_stuffed(template.path)] * template.weight
    random.Random(13).shuffle(bodies)  # noqa: S311 (not security) the mix's templates interleaved, not in blocks
    return asyncio.run(_paced(port, bodies, rate, seconds, connections))
