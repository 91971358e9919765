"""Render what an operator sees: a real Prometheus scraping a real gateway under load.

Starts, all on 127.0.0.1 and free ports:

1. a downstream SMTP server (aiosmtpd) that defers about 4% of messages with 451 and refuses
   about 2% with 550, as a busy LGWAN-side server might;
2. ``mugaika serve`` (the real command, as systemd would run it) with three tenants, two
   workers, and its metrics endpoint;
3. Debian's ``prometheus`` scraping it every 2 s, with ``deploy/prometheus/alerts.yml`` loaded;

then sends mail for ``--seconds`` (default 150) at a rate that rises and falls, queries
Prometheus' HTTP API with the dashboard's own expressions (``$__rate_interval`` as 20s), and
plots them with matplotlib into ``docs/metrics.png``. Everything it started is stopped at the
end. Bounded: at most ``--seconds`` of load and 4 concurrent SMTP clients, loopback only.

    .venv/bin/pip install matplotlib        # or: pip install -e '.[plot]'
    .venv/bin/python scripts/render_metrics.py [--seconds 150] [--out docs/metrics.png]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
TENANTS = ("a-city.lg.jp", "b-town.lg.jp", "c-village.lg.jp")
RATE = "20s"  # what Grafana's $__rate_interval would be at a 2 s scrape interval


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FlakyDownstream:
    """aiosmtpd handler: accepts most messages, defers some (451), refuses a few (550)."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)  # noqa: S311 - a reproducible load, not secrets
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        roll = self.random.random()
        if roll < 0.04:
            return "451 4.3.0 Mailbox server busy, try again later"
        if roll < 0.06:
            return "550 5.7.1 Refused by the LGWAN-side policy"
        self.accepted += 1
        return f"250 2.0.0 Ok: queued as DS{self.accepted:06d}"


def message(index: int, tenant_mix: random.Random) -> tuple[list[str], bytes]:
    count = 1 if tenant_mix.random() < 0.85 else 2
    recipients = [
        f"user{tenant_mix.randint(1, 40)}@{tenant_mix.choice(TENANTS)}" for _ in range(count)
    ]
    body = "お知らせです。\r\n" * tenant_mix.randint(5, 2000)
    raw = (
        f"From: sender{index % 17}@example.com\r\nTo: {', '.join(recipients)}\r\n"
        f"Subject: =?UTF-8?B?6YCa55+l?= {index}\r\nMessage-ID: <load-{index}@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    ).encode()
    return recipients, raw


def send(port: int, recipients: list[str], raw: bytes) -> str:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.sendmail("sender@example.com", recipients, raw)
        return "250"
    except smtplib.SMTPResponseException as exc:
        return str(exc.smtp_code)
    except smtplib.SMTPRecipientsRefused as exc:
        return str(next(iter(exc.recipients.values()))[0])
    except OSError as exc:
        return type(exc).__name__


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 - loopback
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:g}s")


@contextlib.contextmanager
def process(argv: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def prometheus_version(binary: str) -> str:
    first = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    return first.split(" (")[0].replace("prometheus, version", "Prometheus")


def query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2s"})
    url = f"{prometheus}/api/v1/query_range?{params}"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
        data = json.load(response)
    if data["status"] != "success":
        raise RuntimeError(f"{expr}: {data}")
    return data["data"]["result"]


def load(port: int, seconds: float, seed: int) -> dict[str, int]:
    """Send for ``seconds`` at 2-14 messages a second (a slow wave); return replies by code."""
    mix = random.Random(seed)  # noqa: S311 - a reproducible load, not secrets
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    started = time.monotonic()
    index = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        while (elapsed := time.monotonic() - started) < seconds:
            rate = 8 + 6 * math.sin(2 * math.pi * elapsed / seconds * 1.5)
            recipients, raw = message(index, mix)
            index += 1

            def record(future: Any) -> None:
                with lock:
                    outcomes[future.result()] = outcomes.get(future.result(), 0) + 1

            pool.submit(send, port, recipients, raw).add_done_callback(record)
            time.sleep(mix.expovariate(rate))
    return outcomes


PANELS = [
    (
        "Throughput by verdict (messages/s)",
        f"sum by (verdict) (rate(mugaika_messages_total[{RATE}])) > 0",
        "{verdict}",
        None,
    ),
    (
        "Throughput by tenant (messages/s)",
        f"sum by (tenant) (rate(mugaika_messages_total[{RATE}])) > 0",
        "{tenant}",
        None,
    ),
    (
        "Processing latency (s)",
        "histogram_quantile({q}, sum by (le) "
        f"(rate(mugaika_message_processing_seconds_bucket[{RATE}])))",
        "p{pct}",
        (0.5, 0.9, 0.99),
    ),
    (
        "Downstream errors (per s)",
        f"sum by (kind) (rate(mugaika_downstream_failures_total[{RATE}]))",
        "{kind}",
        None,
    ),
    (
        "Worker utilisation (share of time busy)",
        f"sum(rate(mugaika_worker_busy_seconds_total[{RATE}])) / sum(mugaika_workers)",
        "utilisation",
        None,
    ),
    (
        "SMTP replies by class (per s)",
        f"sum by (reply_class) (rate(mugaika_smtp_commands_total[{RATE}]))",
        "{reply_class}",
        None,
    ),
]


def plot(prometheus: str, start: float, end: float, out: Path, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex=True)
    for ax, (title, expr, legend, quantiles) in zip(axes.flat, PANELS, strict=True):
        queries = (
            [(expr.format(q=q), legend.format(pct=int(q * 100))) for q in quantiles]
            if quantiles
            else [(expr, legend)]
        )
        for query, label in queries:
            for series in query_range(prometheus, query, start, end):
                times = [datetime.fromtimestamp(float(t)) for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                name = label.format(**series["metric"]) if "{" in label else label
                ax.plot(times, values, label=name, linewidth=1.3)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper left")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.tick_params(labelsize=7)
    fig.suptitle("Mugaika gateway as scraped by Prometheus (the dashboard's queries)", fontsize=12)
    fig.text(0.5, 0.01, caption, ha="center", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "metrics.png")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    prometheus_bin = shutil.which("prometheus")
    mugaika = Path(sys.executable).with_name("mugaika")
    if prometheus_bin is None or not mugaika.exists():
        print("needs Debian's prometheus and this checkout's .venv/bin/mugaika", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="mugaika-render-") as tmp_name:
        tmp = Path(tmp_name)
        downstream = Controller(FlakyDownstream(args.seed), hostname="127.0.0.1", port=free_port())
        downstream.start()
        smtp_port, metrics_port, prom_port = free_port(), free_port(), free_port()
        config = tmp / "mugaika.yaml"
        tenants = "\n".join(f"  {t}: {{}}" for t in TENANTS)
        config.write_text(
            f"listen: 127.0.0.1:{smtp_port}\ndownstream: 127.0.0.1:{downstream.port}\n"
            f"data_dir: {tmp / 'data'}\nmetrics:\n  listen: 127.0.0.1:{metrics_port}\n"
            "admin:\n  listen: null\nworkers:\n  count: 2\n"
            "delivery:\n  starttls: 'off'\n"
            f"tenants:\n{tenants}\n"
        )
        shutil.copy(ROOT / "deploy" / "prometheus" / "alerts.yml", tmp / "alerts.yml")
        (tmp / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n"
            "rule_files: [alerts.yml]\n"
            "scrape_configs:\n  - job_name: mugaika\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics_port}']\n"
        )
        # Only the config file configures the gateway: drop MUGAIKA_* variables of the caller.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUGAIKA_")}
        gateway_cmd = [str(mugaika), "serve", "--config", str(config)]
        prometheus_cmd = [
            prometheus_bin,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ]
        try:
            with (
                process(gateway_cmd, tmp / "gateway.log", env=env),
                process(prometheus_cmd, tmp / "prometheus.log"),
            ):
                wait_http(f"http://127.0.0.1:{metrics_port}/readyz")
                prometheus = f"http://127.0.0.1:{prom_port}"
                wait_http(f"{prometheus}/-/ready")
                time.sleep(4)
                start = time.time()
                outcomes = load(smtp_port, args.seconds, args.seed)
                time.sleep(6)  # two more scrapes after the last message
                end = time.time()
                print("replies seen by the senders:", dict(sorted(outcomes.items())))
                total = sum(outcomes.values())
                caption = (
                    f"{total} messages in {args.seconds:.0f} s over real SMTP to `mugaika serve` "
                    "(2 workers, 3 tenants); downstream defers ~4 % (451) and refuses ~2 % (550); "
                    f"{prometheus_version(prometheus_bin)} scraping every 2 s. "
                    f"Made by scripts/render_metrics.py."
                )
                plot(prometheus, start, end, args.out, caption)
        finally:
            downstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
