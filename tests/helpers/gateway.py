"""Run a real ``GatewayServer`` in a background thread for a test, on a free loopback port."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.http_metrics import MetricsEndpoint
from gateway.metrics import Metrics
from gateway.server import GatewayServer


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """Defaults plus ``overrides`` as dotted keys (``"smtp.max_recipients": 3``)."""
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "data_dir": str(data_dir),
        "workers.count": 1,
        "admin.listen": None,
        "metrics.listen": None,
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


class RunningGateway:
    """``with RunningGateway(config) as gw: gw.smtp() ...``; stops gracefully on exit.

    ``server_options`` go to ``GatewayServer`` (``pipeline_target``, ``store``...).
    """

    def __init__(self, config: Config, **server_options: Any) -> None:
        self.config = config
        self.metrics = Metrics(tenants=config.tenants)
        self.server = GatewayServer(config, metrics=self.metrics, **server_options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> RunningGateway:
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
    def port(self) -> int:
        assert self.server.bound is not None
        return self.server.bound[1]

    smtp_port = port

    @property
    def endpoint(self) -> MetricsEndpoint:
        found = [s for s in self.server.services if isinstance(s, MetricsEndpoint)]
        assert len(found) == 1, self.server.services
        return found[0]

    @property
    def metrics_url(self) -> str:
        return self.endpoint.url

    def smtp(self, **kwargs: Any) -> smtplib.SMTP:
        timeout = kwargs.pop("timeout", 300)
        return smtplib.SMTP("127.0.0.1", self.port, timeout=timeout, **kwargs)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value
