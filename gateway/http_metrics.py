"""The monitoring endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on their own port.

``MetricsEndpoint`` is a ``gateway.server.Service``: it listens on ``metrics.listen``
(``--metrics-listen``, default 127.0.0.1:9125; ``null`` disables it) inside the gateway's own
event loop, so a scrape sees the same ``Metrics`` the relay writes, with no copying and no
multiprocess collector directory (workers count nothing themselves; see ``gateway.metrics``).

===========  ===================================================================================
``/metrics``  The registry in Prometheus text format 0.0.4, or OpenMetrics 1.0 when the
              ``Accept`` header asks for ``application/openmetrics-text`` (prometheus_client's
              own ``choose_encoder``); gzip when ``Accept-Encoding`` allows it. Before
              encoding, the readiness checks run (``mugaika_readiness_up``) and the quarantine
              backlog is polled (``mugaika_quarantine_items``), each bounded in time.
``/healthz``  Liveness: 200 ``ok`` whenever the event loop answers. Nothing else is checked,
              so a slow downstream never makes a supervisor restart a healthy gateway.
``/readyz``   Readiness: 200 only when every check passes (the SMTP listener is open and not
              draining, ``Downstream.probe()``, ``QuarantineStore.ping()`` when a store is
              configured); else 503. The JSON body names each check, its result, its duration
              and, for a failure, why.
===========  ===================================================================================

Why a small asyncio server on h11 and not Starlette + uvicorn: ``uvicorn.Server.serve``
replaces the process's SIGTERM and SIGINT handlers with its own (``capture_signals``) and
re-raises them when it stops, which would fight ``GatewayServer``'s graceful drain; and three
GET routes do not need an ASGI stack. h11 (uvicorn's own HTTP/1.1 parser) does the parsing, so
nothing here splits header lines by hand. Limits: 32 connections, 16 KiB request head, no
request body, 30 s to send one request (slowloris), keep-alive between scrapes.

Bounded side effects: checks run at most once per second whatever the request rate (single
flight, cached), each has a 3 s answer limit, and a check that has not answered is never
started again until it has (a hung ``ping`` cannot pile up threads). Blocking calls (the
store's ``ping`` and ``backlog``) run in a thread of their own, never on the event loop.

Deliberately not here: authentication and TLS (bind to loopback or a management network and
let the scraper's network policy decide, as node_exporter's default does), and any endpoint
that changes state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import h11
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    choose_encoder,
    generate_latest,
    gzip_accepted,
)

from gateway.config import parse_host_port
from gateway.logs import log_fields, replace_control_chars
from gateway.metrics import Metrics, QuarantineBacklog

metrics_log = logging.getLogger("mugaika.metrics")

T = TypeVar("T")
Probe = Callable[[], Awaitable[bool]]
BacklogFunction = Callable[[], Iterable[QuarantineBacklog]]

MAX_CONNECTIONS = 32
MAX_REQUEST_HEAD = 16 * 1024
MAX_REQUEST_BODY = 1024
REQUEST_TIMEOUT = 30.0  # to receive one whole request, idle keep-alive time included
CHECK_TIMEOUT = 3.0  # per readiness check; below Prometheus' default 10 s scrape timeout
CHECK_CACHE_SECONDS = 1.0
BACKLOG_INTERVAL = 10.0
BACKLOG_TIMEOUT = 3.0
# What a Content-Type we send may contain; anything else from prometheus_client's negotiation
# (it echoes the requested version) falls back to the text format.
_SAFE_CONTENT_TYPE = re.compile(r"[A-Za-z0-9./;=_ -]{1,120}")


def in_thread(function: Callable[[], T], name: str) -> Callable[[], Awaitable[T]]:
    """Wrap a blocking call so that each await runs it in a new daemon thread.

    Not the loop's default executor: that pool is small (CPU count + 4) and the relay needs it
    for ``store.hold``; a hung ``ping`` there would block quarantine commits. A daemon thread
    also never delays process exit. Callers bound concurrency (one call in flight per check).
    """

    async def call() -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(outcome: Callable[[], None]) -> None:
            if not future.done():
                outcome()

        def target() -> None:
            answer: Callable[[], None]
            try:
                answer = functools.partial(future.set_result, function())
            except Exception as exc:
                answer = functools.partial(future.set_exception, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(deliver, answer)

        threading.Thread(target=target, name=name, daemon=True).start()
        return await future

    return call


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    seconds: float
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "seconds": round(self.seconds, 4)}
        if self.error:
            data["error"] = self.error
        return data


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A check left running after its timeout may still fail; read the exception so asyncio
    # does not log "exception was never retrieved" for an outcome we already reported.
    if not task.cancelled():
        task.exception()


class Readiness:
    """Runs the named checks, at most once per ``cache_seconds``, and records the outcome."""

    def __init__(
        self,
        checks: Callable[[], Mapping[str, Probe]],
        metrics: Metrics | None = None,
        timeout: float = CHECK_TIMEOUT,
        cache_seconds: float = CHECK_CACHE_SECONDS,
    ) -> None:
        self.checks = checks
        self.metrics = metrics
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._lock = asyncio.Lock()
        self._cached: dict[str, CheckResult] | None = None
        self._cached_at = 0.0
        self._pending: dict[str, tuple[asyncio.Future[bool], float]] = {}

    async def run(self) -> dict[str, CheckResult]:
        async with self._lock:
            fresh = time.monotonic() - self._cached_at < self.cache_seconds
            if self._cached is not None and fresh:
                return self._cached
            probes = dict(self.checks())
            results = await asyncio.gather(*(self._run_one(n, p) for n, p in probes.items()))
            self._cached = dict(zip(probes, results, strict=True))
            self._cached_at = time.monotonic()
        if self.metrics is not None:
            self.metrics.set_readiness({name: r.ok for name, r in self._cached.items()})
        return self._cached

    async def _run_one(self, name: str, probe: Probe) -> CheckResult:
        started = time.monotonic()
        pending = self._pending.get(name)
        if pending is not None:
            task, since = pending
            if not task.done():
                return CheckResult(
                    False, 0.0, f"previous check still running after {started - since:.0f}s"
                )
            del self._pending[name]
        try:
            task = asyncio.ensure_future(probe())
        except Exception as exc:
            return CheckResult(False, 0.0, _describe(exc))
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        elapsed = time.monotonic() - started
        if not done:
            self._pending[name] = (task, started)
            task.add_done_callback(_retrieve)
            return CheckResult(False, elapsed, f"no answer within {self.timeout:g}s")
        try:
            ok = bool(task.result())
        except Exception as exc:
            return CheckResult(False, elapsed, _describe(exc))
        return CheckResult(ok, elapsed, "" if ok else "check answered not ready")

    def cancel_pending(self) -> None:
        for task, _ in self._pending.values():
            task.cancel()
        self._pending.clear()


class CheckFailed(Exception):
    """Raised by a probe to say why it is not ready; /readyz shows the message as is."""


def explained(probe: Probe, why: str) -> Probe:
    """A probe that raises ``CheckFailed(why)`` instead of answering False."""

    async def check() -> bool:
        if not await probe():
            raise CheckFailed(why)
        return True

    return check


def _describe(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
    return replace_control_chars(text)[:300]


class BacklogPoller:
    """Polls a store's ``backlog()`` at scrape time, at most every ``interval`` seconds.

    On failure or timeout the gauges keep their last values and
    ``mugaika_quarantine_backlog_poll_failures_total`` counts it (the store's own trouble is
    reported by ``/readyz`` and ``mugaika_readiness_up{check="quarantine-store"}``).
    """

    def __init__(
        self,
        source: BacklogFunction,
        metrics: Metrics,
        interval: float = BACKLOG_INTERVAL,
        timeout: float = BACKLOG_TIMEOUT,
    ) -> None:
        self.metrics = metrics
        self.interval = interval
        self.timeout = timeout
        self._call = in_thread(lambda: list(source()), "quarantine-backlog")
        self._lock = asyncio.Lock()
        self._last_attempt = -float("inf")
        self._pending: asyncio.Future[list[QuarantineBacklog]] | None = None

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._last_attempt < self.interval:
                return
            self._last_attempt = time.monotonic()
            if self._pending is None or self._pending.done():
                self._pending = asyncio.ensure_future(self._call())
                self._pending.add_done_callback(_retrieve)
            task = self._pending
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
            if not done:
                self.metrics.quarantine_backlog_failures.inc()
                log_fields(metrics_log, 30, "quarantine backlog poll timed out")
                return
            try:
                rows = task.result()
            except Exception as exc:
                self.metrics.quarantine_backlog_failures.inc()
                log_fields(metrics_log, 30, "quarantine backlog poll failed", error=_describe(exc))
                return
            self.metrics.set_quarantine_backlog(rows)

    def cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    content_type: str
    body: bytes
    extra: tuple[tuple[str, str], ...] = ()


def _negotiate(accept: str) -> tuple[Callable[[Any], bytes], str]:
    """prometheus_client's negotiation, made total: it raises TypeError on e.g.
    ``application/openmetrics-text; version=abc`` and echoes the requested version."""
    try:
        encoder, content_type = choose_encoder(accept)
    except Exception:
        return generate_latest, CONTENT_TYPE_PLAIN_0_0_4
    if _SAFE_CONTENT_TYPE.fullmatch(content_type) is None:
        return generate_latest, CONTENT_TYPE_PLAIN_0_0_4
    return encoder, content_type


class MetricsEndpoint:
    """The ``Service`` serving ``/metrics``, ``/healthz`` and ``/readyz``.

    ``checks`` is called at each readiness run and returns the probes by name (names from
    ``gateway.metrics.READINESS_CHECKS``), so probes may refer to things created after this
    object (the downstream is made in ``GatewayServer.start``). ``backlog``, when given, is
    the quarantine store's blocking ``backlog()`` method.
    """

    def __init__(
        self,
        metrics: Metrics,
        listen: str,
        checks: Callable[[], Mapping[str, Probe]] | None = None,
        backlog: BacklogFunction | None = None,
        check_timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.metrics = metrics
        self.listen = listen
        self.readiness = Readiness(checks or dict, metrics, timeout=check_timeout)
        self.backlog = BacklogPoller(backlog, metrics) if backlog is not None else None
        self.bound: tuple[str, int] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        assert self.bound is not None, "not started"
        host = f"[{self.bound[0]}]" if ":" in self.bound[0] else self.bound[0]
        return f"http://{host}:{self.bound[1]}"

    async def start(self) -> None:
        host, port = parse_host_port(self.listen)
        try:
            self._server = await asyncio.start_server(self._connection, host, port)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics listener {self.listen}: {exc.strerror}") from exc
        sockname = self._server.sockets[0].getsockname()
        self.bound = (sockname[0], sockname[1])
        log_fields(metrics_log, 20, "metrics listening", address=self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self.readiness.cancel_pending()
        if self.backlog is not None:
            self.backlog.cancel_pending()

    # -- HTTP ----------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        try:
            while True:
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        request = await self._read_request(conn, reader)
                except h11.RemoteProtocolError as exc:
                    status = exc.error_status_hint
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send(conn, writer, _text(status, "bad request\n"), False)
                        await _linger(reader, writer)
                    break
                except _BodyTooLarge:
                    await self._send(conn, writer, _text(413, "request body not allowed\n"), False)
                    await _linger(reader, writer)
                    break
                if request is None:
                    break
                response = await self._respond(request)
                await self._send(conn, writer, response, request.method == b"HEAD")
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (TimeoutError, ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> h11.Request | None:
        request: h11.Request | None = None
        body = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(4096))  # small reads keep the head limit tight
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += len(event.data)
                if body > MAX_REQUEST_BODY:
                    raise _BodyTooLarge
            elif isinstance(event, h11.EndOfMessage):
                return request

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, response: _Response, head: bool
    ) -> None:
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *response.extra,
        ]
        if response.status >= 400 and response.status not in (404, 405, 503):
            headers.append(("Connection", "close"))
        data = conn.send(h11.Response(status_code=response.status, headers=headers))
        if not head:
            data += conn.send(h11.Data(data=response.body))
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        await writer.drain()

    async def _respond(self, request: h11.Request) -> _Response:
        path = request.target.split(b"?", 1)[0]
        if path not in _ROUTES:
            return _text(404, "not found: try /metrics, /healthz or /readyz\n")
        if request.method not in (b"GET", b"HEAD"):
            return _Response(
                405, "text/plain; charset=utf-8", b"method not allowed\n", (("Allow", "GET, HEAD"),)
            )
        headers = {name.lower(): value for name, value in request.headers}
        try:
            if path == b"/metrics":
                return await self._metrics(
                    headers.get(b"accept", b"").decode("latin-1"),
                    headers.get(b"accept-encoding", b"").decode("latin-1"),
                )
            if path == b"/readyz":
                return await self._readyz()
            if path == b"/healthz":
                return _text(200, "ok\n")
            return _text(200, "Mugaika monitoring: /metrics /healthz /readyz\n")
        except Exception:
            metrics_log.exception("error answering %s", path.decode("latin-1"))
            return _text(500, "internal error\n")

    async def _metrics(self, accept: str, accept_encoding: str) -> _Response:
        await self.refresh()
        encoder, content_type = _negotiate(accept)
        body = encoder(self.metrics.registry)
        extra: tuple[tuple[str, str], ...] = ()
        if gzip_accepted(accept_encoding):
            body = gzip.compress(body)
            extra = (("Content-Encoding", "gzip"),)
        return _Response(200, content_type, body, (*extra, ("Vary", "Accept, Accept-Encoding")))

    async def refresh(self) -> None:
        """Bring the scrape-time gauges up to date (readiness, quarantine backlog)."""
        await self.readiness.run()
        if self.backlog is not None:
            await self.backlog.refresh()

    async def _readyz(self) -> _Response:
        results = await self.readiness.run()
        failed = sorted(name for name, result in results.items() if not result.ok)
        body = {
            "status": "unready" if failed else "ready",
            "failed": failed,
            "checks": {name: result.to_dict() for name, result in sorted(results.items())},
        }
        text = json.dumps(body, ensure_ascii=False, indent=1) + "\n"
        return _Response(503 if failed else 200, "application/json", text.encode("utf-8"))


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close and drain what the client still sends, briefly, before closing.

    Closing a socket with unread input makes the kernel send RST, which can destroy the error
    response we just wrote before the client reads it (nginx's "lingering close").
    """
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(1.0):
            for _ in range(64):
                if not await reader.read(4096):
                    break


class _BodyTooLarge(Exception):
    pass


_ROUTES = frozenset({b"/", b"/metrics", b"/healthz", b"/readyz"})


def _text(status: int, text: str) -> _Response:
    return _Response(status, "text/plain; charset=utf-8", text.encode("utf-8"))
