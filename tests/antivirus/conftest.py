"""Fixtures for the malware-engine tests: a private clamd per xdist worker, and gateways
configured to scan with it (real SMTP on both sides, see ``tests/helpers/redteam.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.clamd import CLAMD_MISSING, PrivateClamd, clamd_installed
from tests.helpers.gateway import RunningGateway, make_config
from tests.helpers.redteam import RedTeamChain
from tests.helpers.smtp_sink import SmtpSink


class ScanningChain(RedTeamChain):
    """``RedTeamChain`` (default policy, real SMTP in and out) with configuration overrides,
    e.g. ``{"antivirus.enabled": True, "antivirus.clamd": clamd.unix_address}``."""

    def __init__(self, data_dir: Path, overrides: dict[str, Any]) -> None:
        super().__init__(data_dir)
        self.overrides = overrides

    def __enter__(self) -> ScanningChain:
        self._sink = SmtpSink().start()
        config = make_config(
            self.data_dir, downstream=self._sink.address, **{"workers.count": 1, **self.overrides}
        )
        self._gateway = RunningGateway(config).__enter__()
        return self

    def report_of(self, item: Any) -> dict[str, Any]:
        return self.gateway.server.store.get(item.id).report

    def sanitized_of(self, item: Any) -> bytes:
        return self.gateway.server.store.sanitized(item.id)

    def original_of(self, item: Any) -> bytes:
        return self.gateway.server.store.original(item.id)


@pytest.fixture(scope="session")
def clamd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateClamd]:
    """One private clamd per test process (xdist worker): it loads its tiny database in
    about 0.2 s, cheaper than coordinating one between processes."""
    if not clamd_installed():
        pytest.skip(CLAMD_MISSING)
    with PrivateClamd(tmp_path_factory.mktemp("clamd")) as server:
        yield server
