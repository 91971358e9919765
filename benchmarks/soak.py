"""Soak test (issue 13, memory): many messages through a faulty downstream, workers killed.

    .venv/bin/python benchmarks/soak.py [--messages 50000] [--quick] [--out DIR]

1. Starts the real gateway (``serve_for_bench.py``: ``mugaika serve``'s server with the
   shipped default policy, SQLite quarantine in a temporary data dir) in front of
   ``faulty_downstream.py``, which answers RCPT and DATA with seeded random 4xx and 5xx and
   drops connections at RCPT, at the DATA command and after reading the message (a drop
   before the final reply means it did not accept the message: see that module).
2. Sends ``--messages`` messages (default 50,000; ``--quick``: 2,000) over ``--sessions``
   concurrent SMTP sessions with its own asyncio client, which records every attempt's reply
   per Message-ID (each message has a unique one). The mix: 5 KB Japanese text, 8 KB HTML
   with links, and a few with a one-page PDF or a small docx (``workloads.py``,
   ``bench_cdr.py``). A 4xx or a lost connection is retried like an MTA would, up to
   ``--attempts`` times; a 5xx is final.
3. Meanwhile SIGKILLs one worker (a child of the gateway's forkserver, ``gateway/workers.py``)
   at random intervals (exponential, mean ``--kill-every`` seconds). The shipped
   ``workers.on_failure`` is ``quarantine``: the message being processed is held (250).
4. Samples the RSS of the main process and of the whole gateway tree from /proc every
   second, and reports it at 10 %, 50 % and 100 % of the run and as a least-squares trend in
   MiB per 10,000 messages (over 10 %..100 %, after the warm-up).
5. At the end checks, by Message-ID: every message answered 250 "Delivered" is at the
   downstream exactly once; every one answered 250 "Held for review as REF" is in the
   quarantine store as REF (its stored original carries that Message-ID) and not at the
   downstream; no message is at the downstream twice, and none is there without a 250.
   Exits 1 if any check fails.
6. Then, on a fresh gateway with a clean downstream, one ``--large-mb`` (25) MB message (a
   big text attachment): the peak RSS rise of the main process and of the worker over their
   RSS before it (the kernel's high-water mark, reset with ``/proc/PID/clear_refs`` first),
   against the message's size. Target: at most 4×. ``--large-mb 0`` skips it.

Writes ``OUT/soak.{md,json}`` (``--quick``: ``soak-quick.*``): machine, versions, figures.
Memory targets are reported as met or missed; in a full run a missed one also makes the exit
status 1 (``--quick`` runs too few messages for a trend to mean anything).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from faulty_downstream import message_id
from harness import machine, versions
from measure import memory, process_tree
from paths import free_port, stop, wait_listening
from workloads import RECIPIENT, SENDER, html_message, text_message

BENCHMARKS = Path(__file__).resolve().parent
MiB = 1024 * 1024
TARGET_PEAK_RATIO = 4.0  # issue 13: a message raises peak RSS by at most 4× its size
TARGET_GROWTH_MIB = 2.0  # per 10,000 messages, main process, after the warm-up


# -- messages --------------------------------------------------------------------------------


def templates() -> list[tuple[str, bytes, int]]:
    """(label, message, weight); each message's Message-ID is replaced per copy."""
    from bench_cdr import make_docx, make_pdf

    return [
        ("text 5 KB (ISO-2022-JP)", text_message(5 * 1024), 62),
        ("HTML 8 KB, 12 links", html_message(8 * 1024, 12), 30),
        ("HTML + 1-page PDF", html_message(2048, 3, [("お知らせ.pdf", make_pdf(pages=1))]), 5),
        (
            "HTML + small docx",
            html_message(2048, 3, [("通知.docx", make_docx(paragraphs=8, pictures=1))]),
            3,
        ),
    ]


def wire_form(raw: bytes) -> bytes:
    """CRLF line ends and dot-stuffing, ready to follow DATA (without the final dot)."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


@dataclass
class Message:
    number: int
    template: int
    message_id: str
    attempts: list[tuple[int, str]] = field(default_factory=list)  # (code, reply line)
    # A connection lost after the data was sent: the gateway may have kept the message.
    unknown_outcome: bool = False

    @property
    def final(self) -> tuple[int, str]:
        return self.attempts[-1] if self.attempts else (0, "never sent")


class Mailer:
    """Sends every message over ``sessions`` connections, retrying 4xx like an MTA."""

    def __init__(self, port: int, bodies: list[bytes], messages: list[Message], attempts: int):
        self.port = port
        self.bodies = bodies
        self.messages = messages
        self.max_attempts = attempts
        self.template_ids = [message_id(body).encode() for body in bodies]
        self.queue: collections.deque[Message] = collections.deque(messages)
        self.done = 0  # messages with a final outcome (read by the sampler thread)
        self.connection_errors = 0

    def body(self, message: Message) -> bytes:
        template = self.bodies[message.template]
        return template.replace(self.template_ids[message.template], message.message_id.encode(), 1)

    async def run(self, sessions: int) -> None:
        await asyncio.gather(*(self.session() for _ in range(sessions)))

    async def session(self) -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while self.queue:
            message = self.queue.popleft()
            try:
                if connection is None:
                    connection = await self.connect()
                code, line, sent_data = await self.attempt(connection, message)
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                self.connection_errors += 1
                code, line, sent_data = 0, f"connection lost: {exc!r}", message.unknown_outcome
                close(connection)
                connection = None
            message.attempts.append((code, line))
            if code == 0 and sent_data:
                message.unknown_outcome = True
            if code == 421:
                close(connection)
                connection = None
            retry = (code == 0 or 400 <= code < 500) and len(message.attempts) < self.max_attempts
            if retry and not message.unknown_outcome:
                self.queue.append(message)
            else:
                self.done += 1
        if connection is not None:
            reader, writer = connection
            with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                writer.write(b"QUIT\r\n")
                await reply(reader)
            close(connection)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        await reply(reader)
        writer.write(b"EHLO soak.example.com\r\n")
        code, line = await reply(reader)
        if code != 250:
            writer.close()
            raise ConnectionError(f"EHLO: {line}")
        return reader, writer

    async def attempt(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], message: Message
    ) -> tuple[int, str, bool]:
        """(code, reply line, whether the data was sent) of one transaction."""
        reader, writer = connection
        message.unknown_outcome = False
        writer.write(f"MAIL FROM:<{SENDER}>\r\n".encode())
        code, line = await reply(reader)
        if code != 250:
            return code, f"MAIL: {line}", False
        writer.write(f"RCPT TO:<{RECIPIENT}>\r\n".encode())
        code, line = await reply(reader)
        if code not in (250, 251):
            if code != 421:
                writer.write(b"RSET\r\n")
                await reply(reader)
            return code, f"RCPT: {line}", False
        writer.write(b"DATA\r\n")
        code, line = await reply(reader)
        if code != 354:
            return code, f"DATA: {line}", False
        writer.write(self.body(message) + b".\r\n")
        message.unknown_outcome = True  # until the final reply is read
        code, line = await reply(reader)
        message.unknown_outcome = False
        return code, line, True


async def reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            text = line.decode("utf-8", "replace").strip()
            return (int(text[:3]) if text[:3].isdigit() else 0), text


def close(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if connection is not None:
        connection[1].close()


# -- processes -------------------------------------------------------------------------------


@dataclass
class Processes:
    """A faulty (or clean) downstream and the gateway in front of it."""

    work: Path
    clean: bool = False
    seed: int = 13
    workers: int | None = None
    downstream: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def accepted_log(self) -> Path:
        return self.work / "accepted.log"

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.accepted_log.touch()
        sink_port, self.port = free_port(), free_port()
        command = [sys.executable, str(BENCHMARKS / "faulty_downstream.py")]
        command += ["--port", str(sink_port), "--accepted", str(self.accepted_log)]
        command += ["--seed", str(self.seed), *(["--clean"] if self.clean else [])]
        self.downstream = self._spawn(command, "downstream.log")
        wait_listening(sink_port, self.downstream, 20, self.work / "downstream.log")
        command = [sys.executable, str(BENCHMARKS / "serve_for_bench.py")]
        command += ["--listen", f"127.0.0.1:{self.port}", "--downstream", f"127.0.0.1:{sink_port}"]
        command += ["--data-dir", str(self.data_dir)]
        command += ["--workers", str(self.workers)] if self.workers else []
        self.gateway = self._spawn(command, "gateway.log")
        wait_listening(self.port, self.gateway, 90, self.work / "gateway.log")

    def _spawn(self, command: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.work / log).open("wb") as output:
            return subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        stop(self.gateway, 60)
        stop(self.downstream)

    @property
    def main_pid(self) -> int:
        assert self.gateway is not None
        return self.gateway.pid

    def workers_pids(self) -> list[int]:
        """The pool's workers: the children of the gateway's multiprocessing forkserver."""
        pids: list[int] = []
        for child in children(self.main_pid):
            if b"forkserver" in cmdline(child):
                pids += children(child)
        return pids

    def faults(self) -> dict[str, int]:
        lines = (self.work / "faults.log").read_text(encoding="ascii").splitlines()
        return dict(sorted(collections.Counter(lines).items()))

    def accepted(self) -> collections.Counter[str]:
        lines = self.accepted_log.read_text(encoding="ascii").splitlines()
        return collections.Counter(line for line in lines if line)


def children(pid: int) -> list[int]:
    found = []
    for other in process_tree(pid):
        try:
            with open(f"/proc/{other}/stat", "rb") as stat:
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == pid:
            found.append(other)
    return found


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as text:
            return text.read()
    except OSError:
        return b""


def status_field(pid: int, key: str) -> int:
    """An integer field of /proc/PID/status (VmRSS and VmHWM in KiB, Threads), 0 for a
    process gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- the soak run ----------------------------------------------------------------------------


class Sampler(threading.Thread):
    """RSS of the main process and of the gateway's tree, with the progress, every second."""

    def __init__(self, processes: Processes, mailer: Mailer, interval: float) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.mailer = mailer
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self.began = time.monotonic()
        self.halt = threading.Event()

    def sample(self) -> None:
        pids = process_tree(self.processes.main_pid)
        self.samples.append(
            {
                "seconds": round(time.monotonic() - self.began, 2),
                "done": self.mailer.done,
                "main_rss": memory(self.processes.main_pid)[0],
                "tree_rss": sum(memory(pid)[0] for pid in pids),
                "processes": len(pids),
                # A new thread can get a malloc arena of its own: RSS that steps, then stays.
                "main_threads": status_field(self.processes.main_pid, "Threads"),
            }
        )

    def run(self) -> None:
        self.sample()
        while not self.halt.wait(self.interval):
            self.sample()


class Killer(threading.Thread):
    """SIGKILLs one random worker at exponentially distributed intervals."""

    def __init__(self, processes: Processes, mean_seconds: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.mean = mean_seconds
        self.rng = random.Random(seed)  # noqa: S311 (timing of faults, not security)
        self.kills: list[tuple[float, int]] = []
        self.began = time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.rng.expovariate(1 / self.mean)):
            workers = self.processes.workers_pids()
            if not workers:
                continue
            victim = self.rng.choice(sorted(workers))
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
                self.kills.append((round(time.monotonic() - self.began, 2), victim))


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    kinds = templates()
    bodies = [wire_form(raw) for _, raw, _ in kinds]
    rng = random.Random(args.seed)  # noqa: S311 (a reproducible mix)
    choices = rng.choices(range(len(kinds)), [w for _, _, w in kinds], k=args.messages)
    messages = [
        Message(n, kind, f"<soak-{args.seed}-{n}@example.com>") for n, kind in enumerate(choices)
    ]
    processes = Processes(work / "soak", seed=args.seed, workers=args.workers)
    try:
        processes.start()
    except BaseException:
        processes.stop()  # the downstream, when the gateway did not start
        raise
    mailer = Mailer(processes.port, bodies, messages, args.attempts)
    sampler = Sampler(processes, mailer, args.sample_every)
    killer = Killer(processes, args.kill_every, args.seed)
    began = time.monotonic()
    try:
        time.sleep(1)
        idle = {"main_rss": memory(processes.main_pid)[0]}
        sampler.start()
        killer.start()
        asyncio.run(mailer.run(args.sessions))
        killer.halt.set()
        killer.join()
        sampler.halt.set()
        sampler.join()
        sampler.sample()
        seconds = time.monotonic() - began
        gateway_alive = processes.gateway is not None and processes.gateway.poll() is None
    finally:
        killer.halt.set()
        sampler.halt.set()
        processes.stop()
    log = (processes.work / "gateway.log").read_text(errors="replace")
    return {
        "messages": args.messages,
        "sessions": args.sessions,
        "seconds": round(seconds, 1),
        "rate": round(args.messages / seconds, 2),
        "mix": [{"label": label, "size": len(raw), "weight": w} for label, raw, w in kinds],
        "idle_main_rss": idle["main_rss"],
        "kills": killer.kills,
        "downstream_faults": processes.faults(),
        "client_connection_errors": mailer.connection_errors,
        "gateway_alive_at_end": gateway_alive,
        "gateway_log_tracebacks": log.count("Traceback"),
        "samples": sampler.samples,
        "memory": memory_figures(sampler.samples, args.messages),
        "delivery": check_delivery(messages, processes),
    }


def check_delivery(messages: list[Message], processes: Processes) -> dict[str, Any]:
    """Every 250 at the downstream exactly once or in the quarantine; nothing else there."""
    accepted = processes.accepted()
    store = open_quarantine(processes.data_dir)
    failures: list[str] = []
    counts: collections.Counter[str] = collections.Counter()
    ours = set()
    for message in messages:
        ours.add(message.message_id)
        code, line = message.final
        at_sink = accepted[message.message_id]
        counts[f"attempts={len(message.attempts)}"] += 1
        if at_sink > 1:
            counts["duplicates"] += 1
            failures.append(f"{message.message_id} at the downstream {at_sink} times: {line}")
        if code == 250 and "Held for review as " in line:
            counts["250 quarantined"] += 1
            reference = line.split("Held for review as ", 1)[1].split()[0]
            problem = held_problem(store, reference, message.message_id)
            if problem:
                failures.append(f"{message.message_id} answered {line!r}: {problem}")
            if at_sink:
                failures.append(f"{message.message_id} quarantined and also delivered")
        elif code == 250:
            counts["250 delivered"] += 1
            if at_sink == 0:
                counts["lost"] += 1
                failures.append(f"{message.message_id} answered {line!r}, not at the downstream")
        else:
            counts[f"final {code // 100}xx" if code else "final connection lost"] += 1
            if at_sink and message.unknown_outcome:
                counts["delivered, reply lost"] += 1  # RFC 5321 6.1: allowed, and reported
            elif at_sink:
                counts["delivered without 250"] += 1
                failures.append(f"{message.message_id} at the downstream after {line!r}")
    strangers = sum(n for mid, n in accepted.items() if mid not in ours)
    if strangers:
        failures.append(f"{strangers} messages at the downstream that were never sent")
    retried = [m for m in messages if len(m.attempts) > 1]
    return {
        "ok": not failures,
        "answered_250": counts["250 delivered"] + counts["250 quarantined"],
        "delivered": counts["250 delivered"],
        "quarantined": counts["250 quarantined"],
        "final_4xx": counts["final 4xx"],
        "final_5xx": counts["final 5xx"],
        "final_connection_lost": counts["final connection lost"],
        "duplicates": counts["duplicates"],
        "lost": counts["lost"],
        "delivered_without_250": counts["delivered without 250"],
        "delivered_reply_lost": counts["delivered, reply lost"],
        "retried": len(retried),
        "attempt_replies": dict(
            collections.Counter(
                str(code) if code else "lost" for m in messages for code, _ in m.attempts
            )
        ),
        # Every non-250 reply by its text (queue ids and references cut off): which limit or
        # fault each one was.
        "other_replies": dict(
            collections.Counter(
                line.split(" (", 1)[0][:90]
                for m in messages
                for code, line in m.attempts
                if code != 250
            ).most_common(20)
        ),
        "at_downstream": sum(accepted.values()),
        "failures": failures[:50],
        "failure_count": len(failures),
    }


def open_quarantine(data_dir: Path) -> Any:
    """The gateway's own store (quarantine/sql.py) on its data dir, as ``mugaika`` opens it."""
    from gateway.config import load_config
    from quarantine.sql import open_store

    return open_store(load_config(environ={}, overrides={"data_dir": str(data_dir)}))


def held_problem(store: Any, reference: str, wanted: str) -> str:
    try:
        item = store.get(reference)
        original = store.original(reference)
    except Exception as exc:
        return f"not in the quarantine store ({type(exc).__name__}: {exc})"
    if (item.summary.kind, item.summary.status) != ("quarantined", "held"):
        return f"in the store as {item.summary.kind}/{item.summary.status}"
    found = message_id(original)
    return "" if found == wanted else f"the store's original has Message-ID {found!r}"


def memory_figures(samples: list[dict[str, float]], total: int) -> dict[str, Any]:
    def at(fraction: float) -> dict[str, float]:
        return next((s for s in samples if s["done"] >= fraction * total), samples[-1])

    def slope(key: str, start: float = 0.1) -> float:
        """MiB per 10,000 messages, least squares over the samples from ``start`` of the run
        (0.1: after the warm-up)."""
        points = [(s["done"], s[key] / MiB) for s in samples if s["done"] >= start * total]
        if len(points) < 3 or points[-1][0] == points[0][0]:
            return 0.0
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        sxx = sum((x - mean_x) ** 2 for x, _ in points)
        sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
        return sxy / sxx * 10_000

    return {
        "at": {
            f"{round(f * 100)}%": {
                "done": at(f)["done"],
                "main_rss_mib": round(at(f)["main_rss"] / MiB, 1),
                "tree_rss_mib": round(at(f)["tree_rss"] / MiB, 1),
            }
            for f in (0.1, 0.5, 1.0)
        },
        "peak_main_rss_mib": round(max(s["main_rss"] for s in samples) / MiB, 1),
        "peak_tree_rss_mib": round(max(s["tree_rss"] for s in samples) / MiB, 1),
        "main_trend_mib_per_10k": round(slope("main_rss"), 2),
        "tree_trend_mib_per_10k": round(slope("tree_rss"), 2),
        # A step that levels off and a steady climb give the same 10 %..100 % slope: the
        # second half's slope tells them apart.
        "main_trend_second_half_mib_per_10k": round(slope("main_rss", 0.5), 2),
    }


# -- one large message -----------------------------------------------------------------------


def large_message(megabytes: float) -> bytes:
    """A short text mail with one big text attachment (log lines): ``megabytes`` in all."""
    line = "2026-11-25 14:03:07 INFO 市民課 住民票 交付 request=%08d status=ok\n"
    # The attachment is base64 in the message: 4/3, and a CRLF after every 76 characters.
    target = int(megabytes * MiB * 3 / 4 * 76 / 78) - 1024
    lines: list[str] = []
    size = 0
    while size < target:
        text = line % len(lines)
        lines.append(text)
        size += len(text.encode())
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = "ログの送付"
    message["Message-ID"] = "<bench-large@example.com>"
    message.set_content("ログを添付します。\n", charset="utf-8")
    message.add_attachment("".join(lines).encode(), "text", "plain", filename="access.log")
    return message.as_bytes(policy=SMTP)


class PeakSampler(threading.Thread):
    """The largest RSS of every process of the tree, every 20 ms (for short-lived children)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peaks: dict[int, int] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.02):
            for pid in process_tree(self.root):
                self.peaks[pid] = max(self.peaks.get(pid, 0), status_field(pid, "VmRSS") * 1024)


def large(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    raw = large_message(args.large_mb)
    processes = Processes(work / "large", clean=True, workers=args.workers)
    try:
        processes.start()
        time.sleep(1)
        # One small message first, so that what the first message loads (the downstream
        # connection, lazy imports) is not counted as the large one's.
        warm = Mailer(processes.port, [wire_form(text_message())], [Message(0, 0, "<w@x>")], 1)
        for _ in processes.workers_pids():
            asyncio.run(warm.run(1))
            warm.queue.append(warm.messages[0])
        main = processes.main_pid
        workers = processes.workers_pids()
        before = {pid: status_field(pid, "VmRSS") * 1024 for pid in [main, *workers]}
        for pid in before:
            # "5" resets the peak RSS (VmHWM) to the current RSS (proc(5), Linux 4.0).
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        sampler = PeakSampler(main)
        sampler.start()
        message = Message(0, 0, "<bench-large@example.com>")
        mailer = Mailer(processes.port, [wire_form(raw)], [message], attempts=1)
        began = time.monotonic()
        asyncio.run(mailer.run(1))
        seconds = time.monotonic() - began
        hwm = {pid: status_field(pid, "VmHWM") * 1024 for pid in before}
        sampler.halt.set()
        sampler.join()
        at_sink = processes.accepted()[message.message_id]
    finally:
        processes.stop()
    rise = {pid: max(hwm[pid], sampler.peaks.get(pid, 0)) - before[pid] for pid in before}
    worker_rise = max((rise[pid] for pid in workers), default=0)
    isolated = [peak for pid, peak in sampler.peaks.items() if pid not in before]
    return {
        "message_bytes": len(raw),
        "reply": message.final[1],
        "seconds": round(seconds, 1),
        "at_downstream": at_sink,
        "main_rss_before_mib": round(before[main] / MiB, 1),
        "main_peak_rise_mib": round(rise[main] / MiB, 1),
        "main_ratio": round(rise[main] / len(raw), 2),
        "worker_peak_rise_mib": round(worker_rise / MiB, 1),
        "worker_ratio": round(worker_rise / len(raw), 2),
        "isolated_children": len(isolated),
        "isolated_child_peak_rss_mib": round(max(isolated, default=0) / MiB, 1),
    }


# -- report ----------------------------------------------------------------------------------


def targets(result: dict[str, Any], quick: bool) -> list[tuple[str, str, bool]]:
    rows = []
    delivery = result["soak"]["delivery"]
    rows.append(
        (
            "every 250 at the downstream exactly once or in the quarantine",
            f"{delivery['answered_250']:,} answered 250: {delivery['lost']} lost, "
            f"{delivery['duplicates']} duplicates, {delivery['failure_count']} failed checks",
            delivery["ok"],
        )
    )
    alive = result["soak"]["gateway_alive_at_end"]
    rows.append(("the gateway survives worker kills", "alive" if alive else "DIED", alive))
    if not quick:
        trend = result["soak"]["memory"]["main_trend_mib_per_10k"]
        rows.append(
            (
                f"no growth: main RSS trend ≤ {TARGET_GROWTH_MIB} MiB / 10,000 messages",
                f"{trend:+.2f} MiB / 10,000",
                trend <= TARGET_GROWTH_MIB,
            )
        )
    if result.get("large"):
        big = result["large"]
        for who in ("main", "worker"):
            rows.append(
                (
                    f"25 MB message: {who} peak RSS rise ≤ {TARGET_PEAK_RATIO:g}× its size",
                    f"{big[f'{who}_peak_rise_mib']} MiB = {big[f'{who}_ratio']}×",
                    big[f"{who}_ratio"] <= TARGET_PEAK_RATIO,
                )
            )
    return rows


def markdown(result: dict[str, Any]) -> str:
    soak_result = result["soak"]
    delivery = soak_result["delivery"]
    mem = soak_result["memory"]
    m = result["machine"]
    v = result["versions"]
    out = [
        f"# Soak test, {result['mode']} run, {result['date']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Debian {m['debian']}. Load average before / after: "
        f"{' '.join(f'{x:.1f}' for x in m['load_average_before'])} / "
        f"{' '.join(f'{x:.1f}' for x in m['load_average_after'])} ({m['shared']}).",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
        f"{soak_result['messages']:,} messages over {soak_result['sessions']} sessions in "
        f"{soak_result['seconds']:,} s ({soak_result['rate']}/s, retries included); "
        f"{len(soak_result['kills'])} workers SIGKILLed; downstream faults: RCPT 450 2 %, "
        "550 1 %, drop 1 %; drop at DATA 1 %; after the data 451 3 %, 554 1 %, drop 2 %.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {t} | {val} | {'yes' if ok else '**no**'} |" for t, val, ok in result["targets"]),
        "",
        "## Delivery",
        "",
        f"- answered 250: {delivery['answered_250']:,} ({delivery['delivered']:,} delivered, "
        f"{delivery['quarantined']:,} quarantined)",
        f"- final 4xx after {result['attempts']} attempts: {delivery['final_4xx']:,}; final 5xx: "
        f"{delivery['final_5xx']:,}; final lost connection: {delivery['final_connection_lost']}",
        f"- lost: {delivery['lost']}; duplicates at the downstream: {delivery['duplicates']}; "
        f"at the downstream without a 250: {delivery['delivered_without_250']}",
        f"- retried: {delivery['retried']:,} messages; every attempt's reply: "
        + ", ".join(f"{k}: {n:,}" for k, n in sorted(delivery["attempt_replies"].items())),
        f"- gateway log tracebacks: {soak_result['gateway_log_tracebacks']}; client connection "
        f"errors: {soak_result['client_connection_errors']}",
        *(f"- FAILED: {f}" for f in delivery["failures"]),
        "",
        "## Memory over the run (RSS, MiB)",
        "",
        "| progress | messages done | main process | whole gateway tree |",
        "|---|---|---|---|",
        *(
            f"| {k} | {a['done']:,} | {a['main_rss_mib']} | {a['tree_rss_mib']} |"
            for k, a in mem["at"].items()
        ),
        "",
        f"Idle main process before the run: {soak_result['idle_main_rss'] / MiB:.1f} MiB; peak "
        f"main {mem['peak_main_rss_mib']} MiB, peak tree {mem['peak_tree_rss_mib']} MiB. "
        f"Trend over 10 %..100 % (least squares): main {mem['main_trend_mib_per_10k']:+.2f}, "
        f"tree {mem['tree_trend_mib_per_10k']:+.2f} MiB per 10,000 messages; main over "
        f"50 %..100 %: {mem['main_trend_second_half_mib_per_10k']:+.2f}.",
    ]
    if result.get("large"):
        big = result["large"]
        out += [
            "",
            "## One large message",
            "",
            f"{big['message_bytes'] / MiB:.1f} MiB message (a text attachment, base64), clean "
            f"downstream: {big['reply']!r} in {big['seconds']} s. Peak RSS rise over the RSS "
            f"before it: main process {big['main_peak_rise_mib']} MiB ({big['main_ratio']}× the "
            f"message; it was {big['main_rss_before_mib']} MiB), worker "
            f"{big['worker_peak_rise_mib']} MiB ({big['worker_ratio']}×); "
            f"{big['isolated_children']} isolated sanitizer children, the largest at "
            f"{big['isolated_child_peak_rss_mib']} MiB RSS.",
        ]
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int)
    parser.add_argument("--quick", action="store_true", help="2,000 messages, kills every ~2 s")
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--attempts", type=int, default=4, help="tries per message (4xx)")
    parser.add_argument("--kill-every", type=float, help="mean seconds between worker kills")
    parser.add_argument("--sample-every", type=float, default=1.0)
    parser.add_argument("--workers", type=int, help="gateway workers (default: one per core)")
    parser.add_argument("--large-mb", type=float, default=25.0, help="0: skip that step")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results")
    args = parser.parse_args(argv)
    args.messages = args.messages or (2_000 if args.quick else 50_000)
    args.kill_every = args.kill_every or (2.0 if args.quick else 10.0)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mugaika-soak-"))
    result: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["benchmarks/soak.py", *sys.argv[1:]]),
        "attempts": args.attempts,
        "seed": args.seed,
        "work": str(work),
    }
    result["soak"] = soak(args, work)
    result["large"] = large(args, work) if args.large_mb else None
    result["machine"] = machine(load_before)
    result["versions"] = versions()
    result["targets"] = targets(result, args.quick)
    return result


def main() -> int:
    args = parse_args()
    result = run(args)
    name = "soak-quick" if args.quick else "soak"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    (args.out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if all(ok for _, _, ok in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
