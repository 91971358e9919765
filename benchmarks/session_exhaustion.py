"""A legitimate client's session latency while idle sessions try to take every slot (issue 11).

Starts a real gateway (shipped limits and pipeline, one worker, a recording SMTP sink as the
downstream), then measures whole sessions (connect, EHLO, MAIL, RCPT, DATA, QUIT) of a
legitimate client speaking from 127.0.0.2:

1. without an attack;
2. while ``--sessions`` attacker sessions from 127.0.0.1 EHLO and send NOOP every second
   (the issue's attack: before the fix they held every slot and everyone else got 421);
3. with ``--addresses N`` the attack comes from 127.0.0.1..N instead, enough addresses to fill
   ``smtp.max_sessions`` despite the per-client limit: then the legitimate client retries every
   second, and the time until its first success is what the no-progress limit and the idle
   timeouts buy.

    .venv/bin/python benchmarks/session_exhaustion.py --sessions 100 --runs 30
    .venv/bin/python benchmarks/session_exhaustion.py --sessions 100 --addresses 5

Prints median, p95 and max in milliseconds and every reply the legitimate client did not
expect. Not a test: nothing here asserts a time (tests/gateway/test_session_limits.py does
the asserting).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import logs
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.raw_smtp import RawSmtp
from tests.helpers.smtp_sink import SmtpSink

LEGITIMATE = "127.0.0.2"
MESSAGE = (
    b"From: a@example.com\r\nTo: user@example.lg.jp\r\nSubject: hello\r\n\r\n"
    + b"A plain line of text.\r\n" * 40
)


def session(port: int) -> tuple[int, float]:
    """One whole legitimate session: (DATA's reply code or the refusal code, seconds)."""
    started = time.perf_counter()
    try:
        with RawSmtp(port, source=LEGITIMATE, timeout=60) as client:
            if client.greeting.code != 220:
                return client.greeting.code, time.perf_counter() - started
            client.command(b"EHLO legitimate.example")
            client.command(b"MAIL FROM:<a@example.com>")
            client.command(b"RCPT TO:<user@example.lg.jp>")
            code = client.data(MESSAGE).code
            client.command(b"QUIT")
    except OSError:
        code = 0
    return code, time.perf_counter() - started


class Attack:
    """``count`` sessions spread over 127.0.0.1..``addresses``, each sending NOOP every second."""

    def __init__(self, port: int, count: int, addresses: int) -> None:
        self.port, self.count, self.addresses = port, count, addresses
        self.greetings: Counter[str] = Counter()
        self.held: list[RawSmtp] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_busy, daemon=True)

    def __enter__(self) -> Attack:
        for i in range(self.count):
            source = f"127.0.0.{1 + i % self.addresses}"
            try:
                client = RawSmtp(self.port, source=source, timeout=10)
            except OSError as exc:
                self.greetings[f"connect failed: {exc}"] += 1
                continue
            self.greetings[
                client.greeting.lines[0].decode()[:60] if client.greeting.lines else "closed"
            ] += 1
            if client.greeting.code == 220:
                client.command(b"EHLO attacker.example")
                self.held.append(client)
            else:
                client.close()
        self._thread.start()
        return self

    def _keep_busy(self) -> None:
        while not self.stop.wait(1.0):
            for client in list(self.held):
                try:
                    if client.command(b"NOOP").code != 250:
                        raise OSError
                except (OSError, AssertionError):
                    client.close()
                    self.held.remove(client)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(5)
        for client in self.held:
            client.close()


def summary(label: str, results: list[tuple[int, float]]) -> None:
    ok = sorted(seconds * 1000 for code, seconds in results if code == 250)
    others = Counter(code for code, _ in results if code != 250)
    if ok:
        p95 = ok[min(len(ok) - 1, round(0.95 * (len(ok) - 1)))]
        figures = f"median {statistics.median(ok):.1f} ms, p95 {p95:.1f} ms, max {ok[-1]:.1f} ms"
    else:
        figures = "no session got through"
    print(f"{label}: {len(ok)}/{len(results)} delivered; {figures}; other replies {dict(others)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100, help="attacker sessions")
    parser.add_argument("--addresses", type=int, default=1, help="attacker source addresses")
    parser.add_argument("--runs", type=int, default=30, help="legitimate sessions per phase")
    args = parser.parse_args()
    logs.configure("ERROR")
    with tempfile.TemporaryDirectory() as data_dir, SmtpSink() as sink:
        config = make_config(Path(data_dir), downstream=sink.address)
        # getattr: the same script measures a checkout from before these limits existed.
        limits = (
            "max_sessions",
            "max_sessions_per_client",
            "max_commands_without_progress",
            "idle_timeout_before_mail",
            "idle_timeout",
        )
        print("limits:", " ".join(f"{k}={getattr(config.smtp, k, '-')}" for k in limits))
        with RunningGateway(config) as gateway:
            for _ in range(10):  # warm the worker, its DNS cache and the downstream pool
                session(gateway.port)
            summary("no attack", [session(gateway.port) for _ in range(args.runs)])
            with Attack(gateway.port, args.sessions, args.addresses) as attack:
                print(f"attack: {args.sessions} sessions from {args.addresses} address(es):")
                for greeting, count in attack.greetings.most_common():
                    print(f"  {count:4d} x {greeting}")
                if args.addresses == 1:
                    summary("during attack", [session(gateway.port) for _ in range(args.runs)])
                else:
                    started = time.perf_counter()
                    tries: list[tuple[int, float]] = []
                    while not tries or tries[-1][0] != 250:
                        tries.append(session(gateway.port))
                        if tries[-1][0] != 250:
                            time.sleep(1.0)
                    waited = time.perf_counter() - started
                    print(
                        f"first delivery after {waited:.1f} s and {len(tries)} tries"
                        f" (replies before: {dict(Counter(c for c, _ in tries[:-1]))});"
                        f" attacker sessions still open: {len(attack.held)}"
                    )
                    summary("after that", [session(gateway.port) for _ in range(args.runs)])
        print(f"sink received {len(sink.messages)} messages")


if __name__ == "__main__":
    main()
