"""A real gateway in a background thread, with its metrics endpoint on a free loopback port."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Config
from tests.helpers.gateway import RunningGateway
from tests.helpers.gateway import make_config as helpers_make_config

# Test doubles (tests/metrics/worker_targets.py) refuse to run without this.
os.environ["MUGAIKA_TESTING"] = "1"


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """A test gateway with its metrics endpoint on a free port, plus ``overrides``."""
    defaults = {"metrics.listen": "127.0.0.1:0", "smtp.hostname": "gateway.test"}
    return helpers_make_config(data_dir, **{**defaults, **overrides})


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


# The same in-process gateway as every other test uses (tests/helpers/gateway.py).
GatewayThread = RunningGateway


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
