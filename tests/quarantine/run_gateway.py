"""Run a real gateway whose pipeline quarantines everything (tests only).

Usage: ``python -m tests.quarantine.run_gateway CONFIG [--real]``; with ``--real`` the shipped
pipeline and default policy run instead (the browser test uses that).

Prints ``READY <smtp port> <admin port or 0>`` on stdout once listening, then serves until
SIGTERM. Used by the durability tests (which SIGKILL it mid-hold) and the browser test.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from gateway import logs
from gateway.config import load_config
from gateway.server import GatewayServer


class QuarantiningGateway(GatewayServer):
    pipeline_target = "tests.quarantine.quarantine_pipeline:init_worker"


async def main(config_path: Path, real_pipeline: bool = False) -> None:
    os.environ["QUARANTINE_EVERYTHING_IN_TESTS"] = "1"
    config = load_config(config_path)
    logs.configure("INFO")
    # --real: the shipped pipeline and default policy, exactly as `mugaika serve` runs them.
    server_class = GatewayServer if real_pipeline else QuarantiningGateway
    server = server_class(config, config_path)
    await server.start()
    server.install_signal_handlers()
    admin_port = 0
    for service in server.services:
        bound = getattr(service, "bound", None)
        if bound:
            admin_port = bound[1]
    assert server.bound is not None
    print(f"READY {server.bound[1]} {admin_port}", flush=True)
    await server.wait_stopped()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), real_pipeline="--real" in sys.argv[2:]))
