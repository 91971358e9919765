"""Every Prometheus metric the gateway exports, in one place.

Names use the ``mugaika_`` namespace and base units (``_seconds``, ``_bytes``, ``_total``).
Labels come from bounded sets only: verdicts, reply classes, finding codes, detected types,
actions, and tenants from the configured list (anything else is counted as ``other``). Never
addresses, subjects, message ids or file names.

Counting happens only in the main process, from the ``Report`` a worker returns: a worker's
findings therefore appear exactly once, and no multiprocess collector directory is needed.
Each ``Metrics`` owns its ``CollectorRegistry``, so tests read a fresh one with
``registry.get_sample_value``.

Gauges that describe something outside this module are filled in from where that thing lives:
``observe_pool`` reads the worker pool at scrape time; ``set_readiness`` and
``set_quarantine_backlog`` are fed by ``gateway.http_metrics`` (readiness checks, and the
quarantine store's ``backlog()`` polled at scrape time). ``mugaika_quarantine_releases_total``
is the one counter not counted here: admins act through the UI, the API, the CLI in other
processes and other nodes, so its values are the totals of the store's audit log, reported with
the backlog. The HTTP endpoint itself is not here.

The ``tenant`` label, for every metric that has one, is a domain configured under
``tenants:`` or ``other``: for messages, each recipient's domain; for the quarantine series,
the item's tenant as the store records it (its first recipient's domain). With no tenants
configured every series says ``other``, while the store and the admin UI show the domain:
label values must come from a bounded set the operator chose, never from mail.
"""

from __future__ import annotations

import contextlib
import platform
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily

from gateway import __version__, findings
from gateway.report import Report, Verdict

VERDICT_LABELS = ("delivered", "quarantined", "rejected", "tempfailed", "tagged")
REPLY_CLASSES = ("2xx", "3xx", "4xx", "5xx")
OTHER_TENANT = "other"

# Every registered finding code (gateway/findings.py) gets its series initialised to 0 so that
# rate() works from the first scrape; a code the registry lacks is counted as "other" (the
# registry test keeps that set empty for codes the source emits).
KNOWN_FINDINGS: tuple[str, ...] = findings.CODES

# RFC 8601 section 2.7 result values (the union over SPF, DKIM, DMARC and ARC); anything a
# verifier reports outside this set is counted as "other", so the label set stays bounded.
AUTH_METHODS = ("spf", "dkim", "dmarc", "arc")
AUTH_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy")
# The checks /readyz runs (gateway.http_metrics); each is a label value of mugaika_readiness_up.
READINESS_CHECKS = ("smtp-listener", "downstream", "quarantine-store")
PASSWORD_UNLOCK_RESULTS = ("delivered", "held", "wrong-password", "locked", "failed")
REQUEST_KINDS = ("original", "password", "none")
REQUEST_RESULTS = (
    "queued",
    "pending",
    "no-reason",
    "delivered",
    "held",
    "wrong-password",
    "locked",
    "not-held",
    "needs-person",
    "unknown",
    "unverified",
    "rate-limited",
    "failed",
)
WORKER_RESTART_REASONS = (
    "crash",
    "timeout",
    "memory",
    "recycled",
    "reloaded",
    "cancelled",
    "protocol",  # a worker sent something that is not a valid result (gateway.workers)
)
# Attachment actions are kebab-case words chosen by sanitizers; anything else is "other".
_ACTION_LABEL = re.compile(r"[a-z][a-z0-9-]{0,31}")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SIZE_BUCKETS = tuple(float(2**k) for k in range(10, 28, 2))  # 1 KiB .. 128 MiB


def verdict_label(verdict: Verdict) -> str:
    return {
        Verdict.DELIVER: "delivered",
        Verdict.TAG: "tagged",
        Verdict.QUARANTINE: "quarantined",
        Verdict.REJECT: "rejected",
        Verdict.TEMPFAIL: "tempfailed",
    }[verdict]


def reply_class(code: int) -> str:
    return f"{code // 100}xx" if 200 <= code < 600 else "5xx"


# What admins did to quarantined items, counted from the store's audit log
# (mugaika_quarantine_releases_total{action}); see QuarantineBacklog.actions.
QUARANTINE_ACTIONS = ("released", "approved", "refused", "deleted", "requested")


@dataclass(frozen=True, slots=True)
class QuarantineBacklog:
    """One row of what a quarantine store reports for one tenant domain (the items' tenant:
    their first recipient's domain): items held, and admin actions on its items so far.

    ``oldest_held_at`` is the UNIX time the oldest still-held item was received (None when
    ``items`` is 0). The age is computed at scrape time, so a store need not know the clock.
    ``actions`` are totals since the store began, per action of ``QUARANTINE_ACTIONS``, read
    from the store's append-only audit log: they count what every process did (the serving
    gateway's UI and API, ``mugaika quarantine`` CLI runs, other nodes), which a counter
    incremented in one process cannot (issue 12).
    """

    tenant: str
    items: int
    oldest_held_at: float | None = None
    actions: tuple[tuple[str, int], ...] = ()


@runtime_checkable
class BacklogSource(Protocol):
    """A quarantine store that can report its backlog (``quarantine.sql`` implements it).

    ``backlog()`` is a blocking call (one ``GROUP BY`` query); it is polled in its own thread
    at scrape time, at most every few seconds, never on the event loop.
    """

    def backlog(self) -> Iterable[QuarantineBacklog]: ...


class PoolLike(Protocol):
    """What ``Metrics.observe_pool`` reads from ``gateway.workers.WorkerPool``."""

    @property
    def busy(self) -> int: ...

    @property
    def busy_seconds(self) -> float: ...

    count: int


class _PoolBusySeconds:
    """Collector for ``mugaika_worker_busy_seconds_total``, read from the pool at scrape time.

    A counter of worker-seconds spent on jobs. ``rate()`` of it divided by
    ``mugaika_workers`` is the true average utilisation; the ``mugaika_workers_busy`` gauge
    only samples the scrape instant and misses jobs shorter than the scrape interval.
    """

    def __init__(self) -> None:
        self.pool: PoolLike | None = None

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "mugaika_worker_busy_seconds",
            "Worker-seconds spent processing messages (rate / mugaika_workers = utilisation)",
        )
        family.add_metric([], self.pool.busy_seconds if self.pool is not None else 0.0)
        yield family


class _QuarantineActions:
    """Collector for ``mugaika_quarantine_releases_total{action,tenant}``.

    Its values are totals the store reports (``QuarantineBacklog.actions``, polled at scrape
    time with the backlog), not increments: a count the store holds cannot be lost to a
    restart of this process or missed because another process acted.
    """

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "mugaika_quarantine_releases",
            "Admin actions on quarantined items by any process (released, approved, refused, "
            "deleted, requested), from the store's audit log, by the item's tenant",
            labels=["action", "tenant"],
        )
        for (action, tenant), total in sorted(self.totals.items()):
            family.add_metric([action, tenant], total)
        yield family


class Metrics:
    """The gateway's metrics in their own registry. ``tenants`` bounds the tenant label."""

    def __init__(
        self, registry: CollectorRegistry | None = None, tenants: Iterable[str] = ()
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.tenants = frozenset(t.lower() for t in tenants)
        r = self.registry
        self.build_info = Info("mugaika_build", "Mugaika version and Python", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

        self.sessions = Counter(
            "mugaika_smtp_sessions_total", "Inbound SMTP sessions accepted", registry=r
        )
        self.sessions_refused = Counter(
            "mugaika_smtp_sessions_refused_total",
            "Inbound sessions refused at connect because the gateway was full",
            registry=r,
        )
        self.sessions_active = Gauge(
            "mugaika_smtp_sessions_active", "Inbound SMTP sessions open now", registry=r
        )
        self.commands = Counter(
            "mugaika_smtp_commands_total",
            "SMTP commands answered, by command and reply class",
            ["command", "reply_class"],
            registry=r,
        )
        self.messages = Counter(
            "mugaika_messages_total",
            "Messages by final verdict and recipient tenant",
            ["verdict", "tenant"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "mugaika_message_processing_seconds",
            "From end of DATA to the final reply (inspection, sanitizing, delivery)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.message_size = Histogram(
            "mugaika_message_size_bytes",
            "Size of received messages",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.attachments = Counter(
            "mugaika_attachments_total",
            "Attachments by detected type and the action taken",
            ["detected_type", "action"],
            registry=r,
        )
        self.urls_defanged = Counter(
            "mugaika_urls_defanged_total", "URLs made unclickable", registry=r
        )
        self.html_converted = Counter(
            "mugaika_html_conversions_total", "HTML parts converted or sanitized", registry=r
        )
        self.findings = Counter(
            "mugaika_findings_total", "Sanitizer findings by code", ["code"], registry=r
        )
        self.rule_hits = Counter(
            "mugaika_rule_hits_total",
            "Policy rules whose conditions matched, by policy, rule and mode (enforce or "
            "monitor: monitor-mode rules are counted, not enforced)",
            ["policy", "rule", "mode"],
            registry=r,
        )
        self.auth_results = Counter(
            "mugaika_auth_results_total",
            "Sender authentication results",
            ["method", "result"],
            registry=r,
        )
        self.downstream_seconds = Histogram(
            "mugaika_downstream_delivery_seconds",
            "Time for the downstream server to accept a message (DATA to final reply)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.downstream_failures = Counter(
            "mugaika_downstream_failures_total",
            "Downstream problems by kind (unavailable, tempfail, permfail)",
            ["kind"],
            registry=r,
        )
        # The partner's own password mail (gateway/ppap.py, issue 17). Never the password.
        self.password_unlocks = Counter(
            "mugaika_password_unlocks_total",
            "Password mails paired with a held encrypted archive, by result (delivered: "
            "members delivered sanitized; held: they opened to content the policy holds; "
            "wrong-password; locked: too many wrong ones; failed: could not be completed)",
            ["result"],
            registry=r,
        )
        self.password_unlock_seconds = Histogram(
            "mugaika_password_unlock_delivery_seconds",
            "Time until the sanitized members of an unlocked archive were accepted downstream, "
            "since the held message's arrival (since=archive), the password mail's "
            "(since=password-mail) or the recipient's request mail's (since=request-mail)",
            ["since"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 86400),
            registry=r,
        )
        # Recipients' request mails (gateway/requests.py, issue 17): kind original, password
        # or none (no reference id); result as in REQUEST_RESULTS. Never an address or password.
        self.requests = Counter(
            "mugaika_requests_total",
            "Mails to requests.address consumed by the gateway, by kind and result (queued: "
            "entered the approval queue; delivered: a password opened the held archive; "
            "unknown: not honoured, answered without naming the item; unverified: refused for its "
            "DKIM signatures (requests.require_dkim, or a broken one of the From: domain), "
            "answered as unknown; rate-limited: dropped)",
            ["kind", "result"],
            registry=r,
        )
        # Read from the pool at scrape time (observe_pool). Utilisation over time is
        # rate(mugaika_worker_busy_seconds_total) / mugaika_workers; at the scrape instant it
        # is mugaika_workers_busy / mugaika_workers. Messages waiting for a free worker are
        # mugaika_messages_in_pipeline - mugaika_workers_busy.
        self.workers_busy = Gauge(
            "mugaika_workers_busy", "Worker processes processing a message now", registry=r
        )
        self.workers_total = Gauge("mugaika_workers", "Worker processes configured", registry=r)
        self.messages_in_pipeline = Gauge(
            "mugaika_messages_in_pipeline",
            "Messages handed to the worker pool and not yet answered (waiting or running)",
            registry=r,
        )
        self._pool_busy_seconds = _PoolBusySeconds()
        r.register(self._pool_busy_seconds)
        self.worker_restarts = Counter(
            "mugaika_worker_restarts_total",
            "Worker processes replaced, by reason",
            ["reason"],
            registry=r,
        )
        self.quarantine_items = Gauge(
            "mugaika_quarantine_items",
            "Items held in quarantine, by tenant",
            ["tenant"],
            registry=r,
        )
        self.quarantine_oldest_seconds = Gauge(
            "mugaika_quarantine_oldest_age_seconds",
            "Age of the oldest held item, by tenant",
            ["tenant"],
            registry=r,
        )
        self.quarantine_backlog_failures = Counter(
            "mugaika_quarantine_backlog_poll_failures_total",
            "Scrape-time polls of the quarantine backlog that failed or timed out",
            registry=r,
        )
        self.releases = _QuarantineActions()
        r.register(self.releases)
        self.config_reloads = Counter(
            "mugaika_config_reloads_total",
            "Configuration and policy reloads by result",
            ["result"],
            registry=r,
        )
        self.config_last_reload_success = Gauge(
            "mugaika_config_last_reload_successful",
            "1 if the last reload succeeded, 0 if it failed (the old config stays in force)",
            registry=r,
        )
        self.readiness = Gauge(
            "mugaika_readiness_up",
            "1 if the readiness check passed when last run (at /readyz and at each scrape)",
            ["check"],
            registry=r,
        )
        # process_* (CPU, memory, open fds, start time) of the gateway's main process.
        self.process = ProcessCollector(registry=r)
        self._initialise()

    def _initialise_tenants(self) -> None:
        for tenant in (*self.tenants, OTHER_TENANT):
            for verdict in VERDICT_LABELS:
                self.messages.labels(verdict, tenant)
            self.quarantine_items.labels(tenant)
            self.quarantine_oldest_seconds.labels(tenant)
            for action in QUARANTINE_ACTIONS:
                self.releases.totals.setdefault((action, tenant), 0)

    def _initialise(self) -> None:
        self._initialise_tenants()
        for code in KNOWN_FINDINGS:
            self.findings.labels(code)
        for kind in ("unavailable", "tempfail", "permfail"):
            self.downstream_failures.labels(kind)
        for reason in WORKER_RESTART_REASONS:
            self.worker_restarts.labels(reason)
        for kind in REQUEST_KINDS:
            for result in REQUEST_RESULTS:
                self.requests.labels(kind, result)
        for result in PASSWORD_UNLOCK_RESULTS:
            self.password_unlocks.labels(result)
        for since in ("archive", "password-mail", "request-mail"):
            self.password_unlock_seconds.labels(since)
        for method in AUTH_METHODS:
            for result in (*AUTH_RESULTS, "other"):
                self.auth_results.labels(method, result)
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.config_last_reload_success.set(1)

    def set_tenants(self, tenants: Iterable[str]) -> None:
        """Bound the tenant label to ``tenants`` (the configured domains; also on reload).

        Series of new tenants start at 0; the quarantine gauges of tenants no longer configured
        are removed (their counters stay: a counter's history is still true).
        """
        new = frozenset(t.lower() for t in tenants)
        for gone in self.tenants - new:
            for gauge in (self.quarantine_items, self.quarantine_oldest_seconds):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
            # Totals from the store: the next poll counts this tenant's actions under "other".
            for action in QUARANTINE_ACTIONS:
                self.releases.totals.pop((action, gone), None)
        self.tenants = new
        self._initialise_tenants()

    def observe_pool(self, pool: PoolLike) -> None:
        """Read busy, configured workers and busy seconds from ``pool`` at each collection."""
        self.workers_busy.set_function(lambda: pool.busy)
        self.workers_total.set_function(lambda: pool.count)
        self._pool_busy_seconds.pool = pool

    def set_readiness(self, results: dict[str, bool]) -> None:
        """Record the outcome of readiness checks (names from ``READINESS_CHECKS``)."""
        for name, ok in results.items():
            if name in READINESS_CHECKS:
                self.readiness.labels(name).set(1 if ok else 0)

    def set_quarantine_backlog(
        self, rows: Iterable[QuarantineBacklog], now: float | None = None
    ) -> None:
        """Replace the quarantine gauges and action totals with what the store reported.

        Tenants outside the configured list are summed into ``other``; known tenants missing
        from ``rows`` are set to 0 items, so a cleared backlog shows as 0, not as a stale value.
        """
        now = time.time() if now is None else now
        items: dict[str, int] = dict.fromkeys((*self.tenants, OTHER_TENANT), 0)
        oldest: dict[str, float] = {}
        totals = {
            (action, tenant): 0
            for action in QUARANTINE_ACTIONS
            for tenant in (*self.tenants, OTHER_TENANT)
        }
        for row in rows:
            tenant = self.tenant(row.tenant)
            items[tenant] += max(0, int(row.items))
            if row.items > 0 and row.oldest_held_at is not None:
                oldest[tenant] = min(oldest.get(tenant, row.oldest_held_at), row.oldest_held_at)
            for action, total in row.actions:
                if action in QUARANTINE_ACTIONS:
                    totals[(action, tenant)] += max(0, int(total))
        self.releases.totals = totals
        for tenant, count in items.items():
            self.quarantine_items.labels(tenant).set(count)
            age = now - oldest[tenant] if tenant in oldest else 0.0
            self.quarantine_oldest_seconds.labels(tenant).set(max(0.0, age))

    def tenant(self, domain: str) -> str:
        domain = domain.lower()
        return domain if domain in self.tenants else OTHER_TENANT

    def record_message(self, verdict_name: str, tenants: Iterable[str], size: int) -> None:
        """Count one message once per distinct tenant among its recipients."""
        self.message_size.observe(size)
        for tenant in sorted({self.tenant(t) for t in tenants}) or [OTHER_TENANT]:
            self.messages.labels(verdict_name, tenant).inc()

    def record_report(self, report: Report) -> None:
        """Count what the worker found and did (called once per message, in the main process)."""
        for finding in report.findings:
            code = finding.code if findings.is_registered(finding.code) else "other"
            self.findings.labels(code).inc()
        for record in report.attachments:
            action = record.action or "none"
            if _ACTION_LABEL.fullmatch(action) is None:
                action = "other"
            self.attachments.labels(_bounded_type(record.detected_type), action).inc()
        urls = report.count_actions("urls-defanged")
        if urls:
            self.urls_defanged.inc(urls)
        html = report.count_actions("html-to-text") + report.count_actions("html-sanitized")
        if html:
            self.html_converted.inc(html)
        for hit in report.rule_hits:
            # Rule and policy names come from the operator's policy files: a bounded set.
            mode = "enforce" if hit.enforced else "monitor"
            self.rule_hits.labels(report.policy or "default", hit.rule, mode).inc()
        for method, result in report.auth.items():
            method, result = method.lower(), result.lower()
            if method not in AUTH_METHODS:
                continue  # a method we do not verify has no series (bounded labels)
            self.auth_results.labels(method, result if result in AUTH_RESULTS else "other").inc()


# Detected MIME types are bounded by libmagic's vocabulary, but keep the label set small.
_TYPE_FAMILIES = {
    "application/pdf": "pdf",
    "application/zip": "zip",
    "application/x-dosexec": "executable",
    "application/x-executable": "executable",
    "application/x-msi": "executable",
    "message/rfc822": "message",
    "text/plain": "text",
    "text/html": "html",
}


def _bounded_type(detected: str) -> str:
    if detected in _TYPE_FAMILIES:
        return _TYPE_FAMILIES[detected]
    if detected.startswith("image/"):
        return "image"
    if "officedocument" in detected or "ms-word" in detected or "ms-excel" in detected:
        return "office"
    if "ms-powerpoint" in detected or "vnd.ms-office" in detected or "msword" in detected:
        return "office"
    if detected.startswith("text/"):
        return "text"
    return "other"
