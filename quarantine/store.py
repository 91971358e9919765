"""The quarantine store interface: what the gateway and the admin tools need of a store.

Implementations (``quarantine.sql``) keep metadata in SQLite or PostgreSQL and the message
bytes content-addressed. The contract every implementation keeps:

- ``hold`` returns only after the item is committed and flushed to stable storage: the
  gateway's 250 for a quarantined message depends on it. On failure it raises
  ``StoreUnavailable`` and nothing is half-stored.
- Originals are sha256-verified when read back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from gateway.message import Envelope
from gateway.report import Report
from quarantine.summary import Summary

HoldKind = Literal["quarantined", "retained"]


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """A message to keep.

    ``kind`` is ``quarantined`` (held back; an admin decides) or ``retained`` (the original of
    a message that was delivered sanitized, kept so that it can be released on request).
    ``reference_id`` is the id quoted in the notice and in the SMTP reply. ``summary`` is
    what the quarantine shows of the message (headers, text preview): the worker computed it
    from its own parse; the store keeps it as given and never parses ``original`` (issue 11:
    the main process parses no content). ``awaits_password``: the message is held only for a
    password-protected ZIP and its policy pairs the sender's password mail with it
    (``gateway.ppap``); the store remembers sender, recipients and time in the same commit.
    """

    reference_id: str
    kind: HoldKind
    envelope: Envelope
    original: bytes
    report: Report
    sanitized: bytes | None = None
    summary: Summary = field(default_factory=lambda: Summary(note="no summary"))
    awaits_password: bool = False


class QuarantineStore(Protocol):
    """What the gateway's relay needs. Admin operations live on the implementation."""

    def hold(self, request: HoldRequest) -> str:
        """Store durably; return the item id (== ``request.reference_id``)."""
        ...

    def discard(self, reference_id: str, reason: str) -> None:
        """Forget a ``retained`` original whose delivery then failed (the sender retries)."""
        ...

    def ping(self) -> bool:
        """True when the store can be read and written now (readiness)."""
        ...
