"""The gateway process: start, serve, reload on SIGHUP, stop gracefully on SIGTERM.

Start-up order: data directory, quarantine store, metrics, worker pool, downstream, side
services (admin UI, quarantine housekeeping), then the SMTP listener last, so that no session
is accepted before everything it needs is up.

The quarantine store is opened from ``quarantine.url``. The embedded default (SQLite under
``data_dir``, no ``quarantine.url``) is created and migrated on first start, so that
``./mugaika serve`` works on a fresh machine; it is single-node and nobody else shares it. A
configured URL (PostgreSQL shared by several nodes) is never migrated implicitly: a schema that
is not at the current revision stops the start with one line and exit code 2, telling the
operator to run ``mugaika db upgrade`` (migrations are a deliberate, backed-up step).

Shutdown (SIGTERM/SIGINT): stop listening; new sessions get 421; sessions in the middle of
DATA finish (their reply is sent) for up to ``grace`` seconds; idle sessions are told 421 and
closed; then the workers stop. A message in flight is therefore either answered or, if the
grace period runs out, never answered 250: the sender retries (no loss).

SIGHUP re-reads the configuration file and the policies. A broken file is logged and the
running configuration and policies stay in force (``mugaika_config_last_reload_successful``
drops to 0). Workers are replaced one by one between messages; open sessions are not
dropped. Listener addresses need a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any, Protocol

from gateway import replies
from gateway.config import Config, load_config, parse_host_port
from gateway.delivery import Downstream, make_downstream
from gateway.errors import ConfigError
from gateway.http_metrics import MetricsEndpoint, Probe, explained, in_thread
from gateway.logs import log_fields, smtp_log
from gateway.metrics import BacklogSource, Metrics
from gateway.pipeline import Outcome, WorkerSetup
from gateway.relay import Relay
from gateway.signer import Signer
from gateway.signer import enabled as signing_enabled
from gateway.smtp import GatewayHandler, GatewaySMTP, make_tls_context
from gateway.workers import MIB, WorkerLimits, WorkerPool
from quarantine.store import QuarantineStore
from rules.loader import reload_policies

DEFAULT_GRACE = 60.0


class Service(Protocol):
    """Something that runs beside the SMTP listener (metrics endpoint, admin web UI)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def worker_limits(config: Config) -> WorkerLimits:
    return WorkerLimits(
        memory_limit_mb=config.workers.memory_limit_mb,
        timeout=config.workers.message_timeout,
        max_jobs=config.workers.max_jobs,
    )


class GatewayServer:
    """Everything `mugaika serve` runs, wired together."""

    # The worker entry point; tests substitute a pipeline with a fixed verdict.
    pipeline_target = "gateway.pipeline:init_worker"

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        overrides: dict[str, Any] | None = None,
        store: QuarantineStore | None = None,
        metrics: Metrics | None = None,
        pipeline_target: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.overrides = overrides or {}
        self.metrics = metrics or Metrics(tenants=config.tenants)
        self.pipeline_target = pipeline_target or type(self).pipeline_target
        self.store = store
        self.pool: WorkerPool | None = None
        self.signer: Signer | None = None
        self.downstream: Downstream | None = None
        self.handler: GatewayHandler | None = None
        self.smtp_server: asyncio.AbstractServer | None = None
        # Started after the pool, downstream and store; stopped after the SMTP listener.
        self.services: list[Service] = []
        self._stopped = asyncio.Event()
        self.bound: tuple[str, int] | None = None

    async def start(self) -> None:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.store is None:
            from quarantine.sql import open_store

            # Raises SchemaNotCurrent (a ConfigError: exit 2) before any worker starts.
            self.store = open_store(config, create=config.quarantine.url is None)
        self.metrics.workers_total.set(config.worker_count)
        # Policies are read and validated here, once: a broken file stops the start with
        # exit code 2 and one line naming file, line and key (ConfigError), and workers get
        # the compiled set, never a file to parse.
        policies = reload_policies(config)
        self.pool = WorkerPool(
            self.pipeline_target,
            WorkerSetup(config, policies),
            config.worker_count,
            worker_limits(config),
            # What a new worker would otherwise import itself, once in the forkserver: the
            # pipeline, the modules multiprocessing re-imports as the parent's main module
            # (the CLI, this module), then the document libraries (``preloaded``, last: it
            # freezes the heap for the collector).
            preload=(
                "gateway.pipeline",
                "gateway.cli",
                "gateway.server",
                "gateway.sanitizers.preloaded",
            ),
            on_restart=lambda reason: self.metrics.worker_restarts.labels(reason).inc(),
            # Results are checked frames, never pickles; a worker cannot make more than fits
            # in its address space.
            decode=Outcome.from_frame,
            max_result_bytes=config.workers.memory_limit_mb * MIB,
        )
        await self.pool.start()
        if signing_enabled(config):
            # The private keys live in this one process only (gateway/signer.py).
            self.signer = Signer(
                config, on_restart=lambda reason: self.metrics.worker_restarts.labels(reason).inc()
            )
            await self.signer.start()
        self.downstream = make_downstream(
            config.downstream,
            config.maildir,
            config.delivery.helo_name or config.hostname,
            connect_timeout=config.delivery.connect_timeout,
            command_timeout=config.delivery.command_timeout,
            pool_size=config.delivery.pool_size,
            max_reuse=config.delivery.max_reuse,
            starttls=config.delivery.starttls,
            forward_client=config.delivery.forward_client,
        )
        self._add_quarantine_services()
        # -- monitoring (gateway/http_metrics.py) --------------------------------------------
        self.metrics.set_tenants(config.tenants)
        self.metrics.observe_pool(self.pool)
        if config.metrics.listen is not None and not any(
            isinstance(s, MetricsEndpoint) for s in self.services
        ):
            backlog = self.store.backlog if isinstance(self.store, BacklogSource) else None
            self.services.append(
                MetricsEndpoint(self.metrics, config.metrics.listen, self.readiness_checks, backlog)
            )
        # -- end monitoring ------------------------------------------------------------------
        for service in self.services:
            await service.start()
        relay = Relay(
            config,
            self.pool,
            self.store,
            self.metrics,
            self.signer,
            downstream=self.downstream,
            policies=policies,
        )
        self.handler = GatewayHandler(config, self.downstream, relay, self.metrics)
        tls_context = make_tls_context(config)
        host, port = parse_host_port(config.listen)
        handler = self.handler

        def protocol_factory() -> GatewaySMTP:
            return GatewaySMTP(
                handler,
                data_size_limit=config.smtp.max_message_size,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=config.hostname,
                ident="ESMTP Mugaika",
                tls_context=tls_context,
                require_starttls=config.smtp.tls.required,
                timeout=config.smtp.idle_timeout,
            )

        loop = asyncio.get_running_loop()
        self.smtp_server = await loop.create_server(protocol_factory, host, port)
        sockname = self.smtp_server.sockets[0].getsockname()
        self.bound = (sockname[0], sockname[1])
        log_fields(
            smtp_log,
            20,
            "listening",
            address=f"{sockname[0]}:{sockname[1]}",
            downstream=self.downstream.description,
            workers=config.worker_count,
        )

    def _add_quarantine_services(self) -> None:
        from quarantine.sql import SqlStore
        from quarantine.web.service import AdminService, MaintenanceService

        if not isinstance(self.store, SqlStore) or self.downstream is None:
            return
        if any(isinstance(s, MaintenanceService) for s in self.services):
            return
        self.services.append(MaintenanceService(self.config, self.store))
        if self.config.admin.listen is not None:
            self.services.append(AdminService(self.config, self.store, self.downstream))

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(self.shutdown()))
        loop.add_signal_handler(signal.SIGINT, lambda: loop.create_task(self.shutdown()))
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def readiness_checks(self) -> dict[str, Probe]:
        """What ``/readyz`` asks (see gateway/http_metrics.py): the SMTP listener is open and
        not draining, the downstream answers, and the quarantine store answers if there is one.
        """
        checks: dict[str, Probe] = {
            "smtp-listener": explained(self._listening, "not listening, or draining for shutdown")
        }
        downstream = self.downstream
        checks["downstream"] = (
            explained(downstream.probe, f"no answer from {downstream.description}")
            if downstream is not None
            else explained(_not_started, "not started")
        )
        if self.store is not None:
            checks["quarantine-store"] = explained(
                in_thread(self.store.ping, "store-ping"), "the quarantine store did not answer"
            )
        return checks

    async def _listening(self) -> bool:
        closing = self.handler is None or self.handler.closing
        return self.smtp_server is not None and self.smtp_server.is_serving() and not closing

    async def reload(self) -> bool:
        """Re-read the configuration and the policies; keep the running ones if either new one
        is invalid (a broken policy never replaces a working one)."""
        if self.handler is None:
            smtp_log.warning("reload ignored: the gateway is still starting")
            return False
        try:
            new = load_config(self.config_path, overrides=self.overrides)
            policies = reload_policies(new)
        except ConfigError as exc:
            self.metrics.config_reloads.labels("failure").inc()
            self.metrics.config_last_reload_success.set(0)
            log_fields(
                smtp_log, 40, "reload failed; keeping the running configuration", error=str(exc)
            )
            return False
        if new.listen != self.config.listen:
            smtp_log.warning("listen address changed; it takes effect after a restart")
        self.config = new
        self.metrics.set_tenants(new.tenants)
        if self.handler is not None:
            self.handler.config = new
            self.handler.relay.config = new
            self.handler.relay.policies = policies
            self.handler.relay.requests.config = new
        self.metrics.config_reloads.labels("success").inc()
        self.metrics.config_last_reload_success.set(1)
        smtp_log.info("configuration reloaded")
        if self.pool is not None:
            # Workers are replaced between messages; sessions and messages in flight go on.
            await self.pool.reload(WorkerSetup(new, policies))
        if self.signer is not None:
            # Keys are re-read by a new signer process; turning signing on or off at all
            # needs a restart (like the listen addresses).
            await self.signer.reload(new)
        return True

    async def shutdown(self, grace: float = DEFAULT_GRACE) -> None:
        if self._stopped.is_set() or self.handler is None:
            self._stopped.set()
            return
        handler = self.handler
        if handler.closing:
            return
        handler.closing = True
        smtp_log.info(
            "shutting down: %d sessions, %d messages in flight",
            len(handler.sessions),
            len(handler.in_flight),
        )
        if self.smtp_server is not None:
            self.smtp_server.close()
        # Every message in flight now gets its reply (no new one starts: ``closing``), then
        # the idle sessions are closed.
        deadline = asyncio.get_running_loop().time() + grace
        while handler.in_flight:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await asyncio.wait(set(handler.in_flight), timeout=remaining)
        for session in list(handler.sessions):
            transport = session.transport
            if transport is not None and not transport.is_closing():
                with contextlib.suppress(Exception):
                    transport.write(f"{replies.R421_SHUTTING_DOWN}\r\n".encode())  # type: ignore[attr-defined]
                transport.close()
        if handler.background:
            await asyncio.wait(set(handler.background), timeout=5)
        if self.pool is not None:
            await self.pool.close(grace=5)
        if self.signer is not None:
            await self.signer.close()
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                await service.stop()
        if self.downstream is not None:
            await self.downstream.close()
        smtp_log.info("stopped")
        self._stopped.set()


async def _not_started() -> bool:
    return False


async def serve(config: Config, config_path: Path | None, overrides: dict[str, Any]) -> None:
    """Run the gateway until SIGTERM/SIGINT."""
    server = GatewayServer(config, config_path, overrides)
    # Handlers first: a SIGHUP or SIGTERM that arrives while starting (or right after the
    # "listening" line a supervisor waits for) must not kill the process by default action.
    server.install_signal_handlers()
    await server.start()
    await server.wait_stopped()
