"""Running the admin app: inside ``mugaika serve`` (a ``Service``) or alone (``mugaika admin``).

``AdminService`` runs uvicorn's ``Server`` as a task on the gateway's own event loop (no
second process, no thread): the listening socket is bound by us first, so a taken port is an
``OSError`` at start-up like the SMTP listener's, and uvicorn's signal handlers are not
installed (the gateway owns SIGTERM/SIGHUP). Every database call of the app runs in a worker
thread, so a slow query never stalls SMTP sessions.

``MaintenanceService`` runs the periodic housekeeping every ``quarantine.purge_interval``
seconds: recover interrupted release claims, expire items past retention (per tenant), drop
unreferenced blobs and stale web sessions. Each node of a cluster may run it; every step is
idempotent and safe to run concurrently. Every ``DIGEST_TICK`` seconds it also sends the daily
digest of the tenants whose ``digest.send_at`` has passed today (``quarantine/digest.py``: a
claim in the database makes it once per tenant and day across nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from gateway.config import Config, parse_host_port
from gateway.delivery import Downstream, make_downstream
from gateway.logs import log_fields, quarantine_log
from quarantine.sql import SqlStore
from quarantine.users import UserStore
from quarantine.web.app import create_app


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway's loop owns the signals; uvicorn must not replace its handlers.
        yield


def bind(address: str) -> socket.socket:
    host, port = parse_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=False)


class AdminService:
    """The admin web UI and API as a gateway ``Service``."""

    def __init__(self, config: Config, store: SqlStore, downstream: Downstream) -> None:
        self.config = config
        self.store = store
        self.downstream = downstream
        self.server: _EmbeddedServer | None = None
        self.app: Starlette | None = None
        self.task: asyncio.Task[None] | None = None
        self.bound: tuple[str, int] | None = None

    async def start(self) -> None:
        assert self.config.admin.listen is not None
        sock = bind(self.config.admin.listen)
        self.bound = sock.getsockname()[:2]
        app = self.app = create_app(self.config, self.store, self.downstream)
        uconfig = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            date_header=True,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=64 * 1024,
        )
        self.server = _EmbeddedServer(uconfig)
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise OSError(f"admin UI on {self.config.admin.listen} did not start")
            await asyncio.sleep(0.01)
        log_fields(
            quarantine_log,
            20,
            "admin UI listening",
            address=f"http://{self.bound[0]}:{self.bound[1]}",
        )

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, 10)
            if self.app is not None:
                with contextlib.suppress(Exception):
                    await self.app.state.admin.renderer.close()


DIGEST_TICK = 60.0


class MaintenanceService:
    """Periodic purge and claim recovery, and the digest scheduler (see module docstring)."""

    def __init__(self, config: Config, store: SqlStore) -> None:
        self.config = config
        self.store = store
        self.task: asyncio.Task[None] | None = None
        self.digest_task: asyncio.Task[None] | None = None

    async def send_due_digests(self, now: datetime.datetime | None = None) -> None:
        from quarantine import digest

        now = now or datetime.datetime.now(datetime.UTC)
        due = await asyncio.to_thread(digest.due_tenants, self.store, self.config, now)
        if not due:
            return
        config = self.config
        downstream = make_downstream(
            config.downstream,
            config.maildir,
            config.delivery.helo_name or config.hostname,
            connect_timeout=config.delivery.connect_timeout,
            command_timeout=config.delivery.command_timeout,
            pool_size=0,
            max_reuse=1,
            starttls=config.delivery.starttls,
        )
        try:
            await digest.send(self.store, config, downstream, now=now, tenants=due)
        finally:
            await downstream.close()

    async def _digest_loop(self) -> None:
        while True:
            try:
                await self.send_due_digests()
            except Exception as exc:  # the next tick tries again; the gateway keeps running
                log_fields(quarantine_log, 40, "digest failed", error=repr(exc)[:300])
            await asyncio.sleep(DIGEST_TICK)

    def run_once(self) -> None:
        q = self.config.quarantine
        recovered = self.store.recover_stale_claims(
            datetime.timedelta(minutes=q.release.stale_claim_minutes)
        )
        result = self.store.purge()
        self.store.optimize()
        UserStore(self.store.engine).purge_sessions(
            datetime.timedelta(hours=self.config.admin.session_max_hours)
        )
        if recovered or result.expired or result.blobs_removed:
            log_fields(
                quarantine_log,
                20,
                "purge",
                expired=len(result.expired),
                blobs_removed=result.blobs_removed,
                recovered=",".join(recovered),
            )

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception as exc:  # the next round tries again; the gateway keeps running
                log_fields(quarantine_log, 40, "purge failed", error=repr(exc)[:300])
            await asyncio.sleep(self.config.quarantine.purge_interval)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._loop())
        if self.config.digest.send_at is not None and any(
            t.digest.enabled for t in self.config.tenants.values()
        ):
            self.digest_task = loop.create_task(self._digest_loop())

    async def stop(self) -> None:
        for task in (self.task, self.digest_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def run_standalone(config: Config) -> int:
    """``mugaika admin``: the UI and API (and housekeeping) without the SMTP gateway."""
    import signal

    from gateway import logs
    from quarantine.cli import open_for

    logs.configure(config.logging.level, config.logging.json_lines)
    store = open_for(config)
    downstream = make_downstream(
        config.downstream,
        config.maildir,
        config.delivery.helo_name or config.hostname,
        connect_timeout=config.delivery.connect_timeout,
        command_timeout=config.delivery.command_timeout,
        pool_size=config.delivery.pool_size,
        max_reuse=config.delivery.max_reuse,
        starttls=config.delivery.starttls,
    )

    async def main() -> None:
        services: list[AdminService | MaintenanceService] = [
            AdminService(config, store, downstream),
            MaintenanceService(config, store),
        ]
        for service in services:
            await service.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for service in reversed(services):
            await service.stop()
        await downstream.close()

    asyncio.run(main())
    return 0
