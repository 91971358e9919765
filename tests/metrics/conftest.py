"""A real gateway in a background thread, with its metrics endpoint on a free loopback port."""

from __future__ import annotations

import asyncio
import http.client
import os
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Config
from gateway.http_metrics import MetricsEndpoint
from gateway.metrics import Metrics
from gateway.server import GatewayServer

# Test doubles (tests/metrics/worker_targets.py) refuse to run without this.
os.environ["MUGAIKA_TESTING"] = "1"


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """Defaults for a test gateway plus ``overrides`` as dotted keys."""
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "data_dir": str(data_dir),
        "workers.count": 1,
        "admin.listen": None,
        "metrics.listen": "127.0.0.1:0",
        "smtp.hostname": "gateway.test",
    }
    base.update(overrides)
    nested: dict[str, Any] = {}
    for key, value in base.items():
        node = nested
        *parents, last = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return Config.model_validate(nested)


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def http_get(url: str, path: str, headers: dict[str, str] | None = None) -> HttpAnswer:
    """One real HTTP/1.1 GET (http.client), no redirects, no decoding."""
    host_port = url.removeprefix("http://")
    host, _, port = host_port.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics (text format), parsed by prometheus_client's own parser."""
    answer = http_get(url, "/metrics")
    assert answer.status == 200, answer.text
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


class GatewayThread:
    """``with GatewayThread(config) as gw:`` a started ``GatewayServer``; stopped on exit."""

    def __init__(self, config: Config, **server_options: Any) -> None:
        self.config = config
        self.metrics = Metrics()
        self.server = GatewayServer(config, metrics=self.metrics, **server_options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        try:
            self.call(self.server.start())
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, grace: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        self.call(self.server.shutdown(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def smtp_port(self) -> int:
        assert self.server.bound is not None
        return self.server.bound[1]

    @property
    def endpoint(self) -> MetricsEndpoint:
        found = [s for s in self.server.services if isinstance(s, MetricsEndpoint)]
        assert len(found) == 1, self.server.services
        return found[0]

    @property
    def metrics_url(self) -> str:
        return self.endpoint.url

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=60)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
