"""The main process's cost while a message of many empty MIME parts is held (issue 11).

    .venv/bin/python benchmarks/hold_many_parts.py [--parts 900000] [--timeout 300]

Starts ``mugaika serve`` (the real gateway: SMTP listener, worker pool, SQLite quarantine,
the embedded Maildir) as a subprocess, sends one message of ``--parts`` empty parts
(900,000 parts make about 9 MB) over SMTP and waits for the reply. Meanwhile it samples
the *main* process only (not its workers) from ``/proc``: CPU seconds (utime + stime) spent
from just before the message until the reply, resident memory (VmRSS) and its peak (VmHWM).
A worker's own cost is printed separately (the sum over the worker processes) for context.

The main process should spend no CPU on the content: it receives bytes, hands them to a
worker and stores what the worker returns. Before issue 11 it parsed the whole message again
to summarise it for the quarantine (73 s of CPU, 465 MB). Not part of the package.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.process import GatewayProcess

TICKS = os.sysconf("SC_CLK_TCK")


def many_parts(parts: int) -> bytes:
    head = (
        b"From: Sender <sender@example.com>\r\nTo: user@example.lg.jp\r\n"
        b"Subject: many parts\r\nMessage-ID: <many-parts@example.com>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XXXX"\r\n\r\n'
    )
    return head + b"--XXXX\r\n\r\n" * parts + b"--XXXX--\r\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(c) for c in text)
    out = list(children)
    for child in children:
        try:
            out.extend(descendants(child))
        except FileNotFoundError:
            continue
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=900_000)
    parser.add_argument("--timeout", type=float, default=300.0, help="workers.message_timeout")
    args = parser.parse_args()
    message = many_parts(args.parts)
    with tempfile.TemporaryDirectory() as data_dir:
        gateway = GatewayProcess(
            "--data-dir",
            data_dir,
            env={
                "MUGAIKA_WORKERS__MESSAGE_TIMEOUT": str(args.timeout),
                "MUGAIKA_WORKERS__COUNT": "1",
                "MUGAIKA_AUTH__ENABLED": "false",
            },
        ).start()
        assert gateway.process is not None
        pid = gateway.process.pid
        try:
            time.sleep(2)  # let the start-up settle
            rss_before = status_kib(pid, "VmRSS")
            hwm_before = status_kib(pid, "VmHWM")
            cpu_before = cpu_seconds(pid)
            workers = descendants(pid)
            worker_cpu_before = sum(cpu_seconds(w) for w in workers)
            peak_rss = rss_before
            done = threading.Event()

            def sample() -> None:
                nonlocal peak_rss
                while not done.is_set():
                    peak_rss = max(peak_rss, status_kib(pid, "VmRSS"))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            with smtplib.SMTP("127.0.0.1", gateway.port, timeout=args.timeout + 120) as client:
                client.ehlo()
                try:
                    client.sendmail("sender@example.com", ["user@example.lg.jp"], message)
                    answer = "250 accepted"
                except smtplib.SMTPResponseException as exc:
                    answer = f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
            elapsed = time.monotonic() - started
            done.set()
            sampler.join()
            cpu = cpu_seconds(pid) - cpu_before
            worker_cpu = sum(cpu_seconds(w) for w in workers if Path(f"/proc/{w}").exists())
            hwm_after = status_kib(pid, "VmHWM")
            print(f"message: {len(message):,} bytes, {args.parts:,} empty parts")
            print(f"reply after {elapsed:.1f} s: {answer}")
            print(f"main process CPU during the message: {cpu:.2f} s")
            print(
                f"main process RSS: {rss_before / 1024:.0f} MiB before, "
                f"peak {peak_rss / 1024:.0f} MiB while held "
                f"(VmHWM {hwm_before / 1024:.0f} -> {hwm_after / 1024:.0f} MiB)"
            )
            print(f"worker CPU (context): {worker_cpu - worker_cpu_before:.2f} s")
            verdicts = [line for line in gateway.lines if "verdict=" in line]
            print("gateway log:", verdicts[-1] if verdicts else "(no verdict line)")
        finally:
            gateway.kill()


if __name__ == "__main__":
    main()
