"""Every Prometheus metric the gateway exports, in one place.

Names use the ``mugaika_`` namespace and base units (``_seconds``, ``_bytes``, ``_total``).
Labels come from bounded sets only: verdicts, reply classes, finding codes, detected types,
actions, and tenants from the configured list (anything else is counted as ``other``). Never
addresses, subjects, message ids or file names.

Counting happens only in the main process, from the ``Report`` a worker returns: a worker's
findings therefore appear exactly once, and no multiprocess collector directory is needed.
Each ``Metrics`` owns its ``CollectorRegistry``, so tests read a fresh one with
``registry.get_sample_value``.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from gateway import __version__
from gateway.report import Report, Verdict

VERDICT_LABELS = ("delivered", "quarantined", "rejected", "tempfailed", "tagged")
REPLY_CLASSES = ("2xx", "3xx", "4xx", "5xx")
OTHER_TENANT = "other"

# Finding codes known at start-up get their series initialised to 0 so that rate() works
# from the first scrape; codes are stable (see gateway/report.py), unknown ones are "other".
KNOWN_FINDINGS = (
    "HTML_CONVERTED",
    "URL_DEFANGED",
    "PDF_JAVASCRIPT",
    "PDF_ACTION",
    "PDF_EMBEDDED_FILE",
    "OOXML_VBA_MACRO",
    "OOXML_EXTERNAL_RELATIONSHIP",
    "OLE_VBA_MACRO",
    "OLE_XLM_MACRO",
    "DDE_FIELD",
    "ARCHIVE_ENCRYPTED",
    "ARCHIVE_BOMB",
    "EXECUTABLE",
    "TYPE_MISMATCH",
    "DOUBLE_EXTENSION",
    "FILENAME_BIDI_CONTROL",
    "SANITIZE_FAILED",
)

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
        self.workers_busy = Gauge(
            "mugaika_workers_busy", "Worker processes processing a message now", registry=r
        )
        self.workers_total = Gauge("mugaika_workers", "Worker processes configured", registry=r)
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
        self.releases = Counter(
            "mugaika_quarantine_releases_total",
            "Quarantine actions by kind (released, approved, refused, deleted)",
            ["action"],
            registry=r,
        )
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
        self._initialise()

    def _initialise(self) -> None:
        for tenant in (*self.tenants, OTHER_TENANT):
            for verdict in VERDICT_LABELS:
                self.messages.labels(verdict, tenant)
            self.quarantine_items.labels(tenant)
            self.quarantine_oldest_seconds.labels(tenant)
        for code in KNOWN_FINDINGS:
            self.findings.labels(code)
        for kind in ("unavailable", "tempfail", "permfail"):
            self.downstream_failures.labels(kind)
        for reason in ("crash", "timeout", "memory", "recycled", "reloaded", "cancelled"):
            self.worker_restarts.labels(reason)
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        for action in ("released", "approved", "refused", "deleted", "requested"):
            self.releases.labels(action)
        self.config_last_reload_success.set(1)

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
            code = finding.code if finding.code in KNOWN_FINDINGS else "other"
            self.findings.labels(code).inc()
        for record in report.attachments:
            self.attachments.labels(
                _bounded_type(record.detected_type), record.action or "none"
            ).inc()
        urls = report.count_actions("urls-defanged")
        if urls:
            self.urls_defanged.inc(urls)
        html = report.count_actions("html-to-text") + report.count_actions("html-sanitized")
        if html:
            self.html_converted.inc(html)
        for method, result in report.auth.items():
            self.auth_results.labels(method, result).inc()


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
