"""The quarantine store on SQLAlchemy 2: one implementation for SQLite and PostgreSQL.

Message bytes are content-addressed by sha256. Where they live (``quarantine.blobs``):

- ``files`` (the default with SQLite): ``<data_dir>/blobs/ab/cdef…`` via ``FileBlobs``,
  written and fsynced *before* the metadata commit that refers to them;
- ``database`` (the default with PostgreSQL): the ``blobs`` table, in the same transaction as
  the metadata. A cluster of gateway nodes shares one PostgreSQL; every node must be able to
  read (release, preview) every item, and a shared directory would be a second thing to make
  highly available, back up and keep consistent with the database. Bytes in the database are
  backed up, replicated and restored together with the metadata that points at them.

Either way every read re-hashes the bytes and refuses a mismatch (``BlobCorrupt``).

Concurrency: ``hold`` is called from the relay's thread pool; every method opens its own
connection and transaction, so the store is thread-safe. Release is claimed with a conditional
UPDATE (``status='held' → 'releasing'``) in its own transaction; only the node whose UPDATE
changed a row sends (``quarantine/release.py`` explains the crash recovery).

The audit log is append-only: this module only ever INSERTs into ``audit_log`` and SELECTs
from it; there is no code path that updates or deletes audit rows.

Not done here: permissions beyond tenant scope (``Actor.can`` is checked by the callers that
change things: release.py, the CLI and the web routes), and SMTP.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import json
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Text,
    and_,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Config
from gateway.errors import StoreUnavailable
from gateway.logs import audit_log as audit_logger
from gateway.logs import log_fields, quarantine_log
from gateway.metrics import QuarantineBacklog
from gateway.report import Report
from quarantine import db
from quarantine.blobs import FileBlobs, sha256_hex
from quarantine.errors import BlobCorrupt, ItemNotFound, ReleaseRefused
from quarantine.schema import (
    DELETED,
    EXPIRED,
    HELD,
    RELEASED,
    RELEASING,
    audit_log,
    blobs,
    item_domains,
    items,
    password_waits,
    preview_pages,
    previews,
    release_requests,
    status_history,
)
from quarantine.store import HoldRequest
from quarantine.summary import (
    PreviewPart,
    Summary,
    clean_text,
    preview_part_to_dict,
    preview_parts_from_dict,
)
from quarantine.users import Actor, utcnow

Scope = frozenset[str] | None  # recipient domains visible; None = all
# Audit actions exported as mugaika_quarantine_releases_total{action} (gateway.metrics).
AUDIT_ACTIONS = {
    "released": "released",
    "request-approved": "approved",
    "request-refused": "refused",
    "deleted": "deleted",
    "release-requested": "requested",
}
# Audit rows older than this are final: no transaction that wrote one is still open.
ACTION_SETTLE = datetime.timedelta(minutes=10)


def _aware(value: datetime.datetime | None) -> datetime.datetime | None:
    # SQLite gives naive datetimes back; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


def _iso(value: datetime.datetime | None) -> str | None:
    value = _aware(value)
    return value.isoformat() if value else None


@dataclass(frozen=True, slots=True)
class ItemSummary:
    """One row of the list: what ``list --json`` prints and the list page shows."""

    id: str
    kind: str
    status: str
    tenant: str
    received_at: datetime.datetime
    message_id: str
    envelope_from: str
    recipients: list[str]
    subject: str
    header_from: str
    size: int
    verdict: str
    reasons: list[str]
    release_count: int
    has_sanitized: bool
    interrupted: bool

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data


@dataclass(frozen=True, slots=True)
class StatusChange:
    at: datetime.datetime
    from_status: str | None
    to_status: str
    actor: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class Item:
    """Everything stored about one item, except its bytes (``original()``/``sanitized()``)."""

    summary: ItemSummary
    queue_id: str
    recipient_options: list[dict[str, Any]]
    mail_options: list[str]
    client: dict[str, Any]
    headers: list[tuple[str, str]]
    report: dict[str, Any]
    # The worker's text preview (None: not stored, or the original is gone) and why it is
    # short or missing.
    preview: list[PreviewPart] | None
    preview_note: str
    original_sha256: str
    sanitized_sha256: str | None
    original_available: bool
    sanitized_available: bool
    released_at: datetime.datetime | None
    released_by: str | None
    claimed_by: str | None
    domains: list[str]

    @property
    def id(self) -> str:
        return self.summary.id

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary.to_dict(),
            "queue_id": self.queue_id,
            "recipient_options": self.recipient_options,
            "mail_options": self.mail_options,
            "client": self.client,
            "headers": [list(h) for h in self.headers],
            "report": self.report,
            "original_sha256": self.original_sha256,
            "sanitized_sha256": self.sanitized_sha256,
            "original_available": self.original_available,
            "sanitized_available": self.sanitized_available,
            "released_at": _iso(self.released_at),
            "released_by": self.released_by,
            "domains": self.domains,
        }


@dataclass(frozen=True, slots=True)
class ItemQuery:
    """Filters of the list (CLI, UI, API). All optional; combined with AND."""

    status: str | None = None
    kind: str | None = None
    tenant: str | None = None
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    search: str | None = None
    limit: int = 50
    offset: int = 0


_RELATIVE = re.compile(r"^(\d{1,7})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str) -> datetime.datetime:
    """``2026-11-01``, ``2026-11-01T09:00[+09:00]`` (UTC when no offset), or relative ``30m``,
    ``12h``, ``7d``, ``2w``. Raises ValueError with a sentence a user can act on."""
    text = value.strip()
    match = _RELATIVE.match(text)
    try:
        if match:
            age = datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
            return datetime.datetime.now(datetime.UTC) - age
        parsed = datetime.datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        pass
    else:
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    shown = text[:40] + ("…" if len(text) > 40 else "")
    raise ValueError(f"{shown!r}: expected an ISO date (2026-11-01) or 30m, 12h, 7d, 2w")


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ItemSummary]
    total: int
    offset: int
    limit: int
    # True when counting stopped at ``total``: there are more matches than that (see
    # SqlStore.count_cap); the UI shows "1,000+" and the API says so in ``total_capped``.
    total_capped: bool = False


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime.datetime
    actor: str
    action: str
    item_id: str | None
    tenant: str | None
    remote_addr: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    id: int
    item_id: str
    created_at: datetime.datetime
    requested_by: str
    reason: str
    target: str
    to_addresses: list[str] | None
    status: str
    decided_by: str | None
    decided_at: datetime.datetime | None
    decision_reason: str | None
    tenant: str = ""
    subject: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["decided_at"] = _iso(self.decided_at)
        return data


@dataclass(frozen=True, slots=True)
class PurgeResult:
    expired: list[str] = field(default_factory=list)
    blobs_removed: int = 0
    interrupted: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Claim:
    """A won release claim: only its holder may finish or undo it."""

    item_id: str
    token: str
    previous_status: str


def _preview(row: Any) -> dict[str, Any]:
    """The stored preview: written by ``_hold`` from the worker's checked summary."""
    if row.preview is None or row.original_blob is None:
        return {"preview": None, "preview_note": ""}
    stored = json.loads(row.preview)
    return {
        "preview": list(preview_parts_from_dict(stored.get("parts", []))),
        "preview_note": str(stored.get("note", "")),
    }


def _summary(row: Any) -> ItemSummary:
    recipients = json.loads(row.recipients)
    return ItemSummary(
        id=row.id,
        kind=row.kind,
        status=row.status,
        tenant=row.tenant,
        received_at=_aware(row.received_at),  # type: ignore[arg-type]
        message_id=row.message_id,
        envelope_from=row.envelope_from,
        recipients=[r["address"] for r in recipients],
        subject=row.subject,
        header_from=row.header_from,
        size=row.size,
        verdict=row.verdict,
        reasons=json.loads(row.reasons),
        release_count=row.release_count,
        has_sanitized=row.sanitized_sha256 is not None,
        interrupted=row.interrupted_at is not None,
    )


_SUMMARY_COLUMNS = (
    items.c.id,
    items.c.kind,
    items.c.status,
    items.c.tenant,
    items.c.received_at,
    items.c.message_id,
    items.c.envelope_from,
    items.c.recipients,
    items.c.subject,
    items.c.header_from,
    items.c.size,
    items.c.verdict,
    items.c.reasons,
    items.c.release_count,
    items.c.sanitized_sha256,
    items.c.interrupted_at,
)


# Made by migration 0005 on PostgreSQL only, so not in the shared metadata.
_SEARCH_GRAMS = literal_column("items.search_grams", postgresql.ARRAY(Text))


def _like_escape(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def normalize_search(text: str) -> str:
    """The form both the stored search text and a query take: NFKC (full-width Latin and
    digits, half-width kana, ①, ㈱ become their plain forms) and case-folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def search_text(
    reference_id: str,
    envelope_from: str,
    recipients: Iterable[str],
    subject: str,
    header_from: str,
    message_id: str,
    file_names: Iterable[str],
) -> str:
    """What the list's search looks in (issue 16: file names and reference ids too)."""
    fields = [reference_id, envelope_from, *recipients, subject, header_from, message_id]
    fields += list(file_names)
    return normalize_search(" ".join(f for f in fields if f))


# Trigram indexes (FTS5's trigram tokenizer, pg_trgm) find substrings of three characters or
# more; shorter terms (two-character Japanese words such as 請求) are matched by LIKE.
TRIGRAM = 3
# Above this many matches SQLite finds the newest page faster by walking received_at.
FREQUENT_MATCHES = 2000
# PostgreSQL counts a search's matches up to this many (or to the end of the page shown):
# counting every match of a frequent term (a third of 100,000 items) would take longer than
# the page's 200 ms, and nobody pages through a thousand results.
COUNT_CAP = 1000


def recipients_key(addresses: Iterable[str]) -> str:
    """Recipients compared as a set: sorted, lower-cased, one a line."""
    return "\n".join(sorted({clean_text(a).lower() for a in addresses if a}))


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


# Statements built once, values passed as parameters: SQLAlchemy then reuses the compiled
# form instead of building and cache-keying a statement around each message's values
# (issue 13: that was most of a retained message's cost in the main process).
_INSERT_ITEM = insert(items)
_INSERT_HISTORY = insert(status_history)


class SqlStore:
    """See module docstring. ``blob_files`` is None in database-blob mode."""

    def __init__(
        self,
        engine: Engine,
        blob_files: FileBlobs | None,
        retention_days: int = 30,
        tenant_retention: Mapping[str, int] | None = None,
        node: str = "",
    ) -> None:
        self.engine = engine
        self.blob_files = blob_files
        self.retention_days = retention_days
        self.tenant_retention = dict(tenant_retention or {})
        self.node = node or secrets.token_hex(4)
        self.count_cap = COUNT_CAP
        # action_totals' cache: counts of settled audit rows up to the watermark id.
        self._action_lock = threading.Lock()
        self._action_watermark = 0
        self._action_settled: dict[tuple[str, str], int] = {}
        # Built once: its dialect's INSERT ... ON CONFLICT, values passed per message.
        self._blob_insert = self._insert(blobs).on_conflict_do_nothing(index_elements=["sha256"])

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    # -- helpers ---------------------------------------------------------------------------

    def _insert(self, table: Any) -> Any:
        if self.backend == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        if self.blob_files is not None:
            return self.blob_files.writing()
        return contextlib.nullcontext()

    def _put_blob(self, conn: Connection, data: bytes, now: datetime.datetime) -> str:
        digest = sha256_hex(data)
        if self.blob_files is not None:
            # The file itself was written and fsynced before the transaction began (``_hold``).
            values: dict[str, Any] = {"sha256": digest, "size": len(data), "data": None}
        else:
            values = {"sha256": digest, "size": len(data), "data": data}
        conn.execute(self._blob_insert, {"created_at": now, **values})
        return digest

    def _read_blob(self, digest: str) -> bytes:
        if self.blob_files is not None:
            return self.blob_files.get(digest)
        with self.engine.connect() as conn:
            data = conn.execute(select(blobs.c.data).where(blobs.c.sha256 == digest)).scalar()
        if data is None:
            raise BlobCorrupt(f"blob {digest} is missing")
        data = bytes(data)
        if sha256_hex(data) != digest:
            raise BlobCorrupt(f"blob {digest} does not match its sha256")
        return data

    def _history(
        self,
        conn: Connection,
        item_id: str,
        from_status: str | None,
        to_status: str,
        actor: str,
        reason: str,
        now: datetime.datetime,
    ) -> None:
        conn.execute(
            _INSERT_HISTORY,
            {
                "item_id": item_id,
                "at": now,
                "from_status": from_status,
                "to_status": to_status,
                "actor": actor,
                "reason": reason[:2000],
            },
        )

    def _visible(self, scope: Scope) -> Any:
        if scope is None:
            return None
        # IN (subquery) rather than EXISTS: the planner starts from the (domain, item_id)
        # index instead of probing it once per row of the received_at index.
        return items.c.id.in_(
            select(item_domains.c.item_id).where(item_domains.c.domain.in_(sorted(scope)))
        )

    # -- QuarantineStore (what the relay calls) --------------------------------------------

    def hold(self, request: HoldRequest) -> str:
        """See QuarantineStore. Durable on return (fsynced files, committed transaction)."""
        try:
            return self._hold(request)
        except StoreUnavailable:
            raise
        except (SQLAlchemyError, OSError, ValueError) as exc:
            log_fields(
                quarantine_log, 40, "hold failed", ref=request.reference_id, error=repr(exc)[:300]
            )
            raise StoreUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc

    def _hold(self, request: HoldRequest) -> str:
        envelope = request.envelope
        # Computed by the worker from its own parse: this process never parses the message.
        summary = request.summary
        now = utcnow()
        received = (
            datetime.datetime.fromtimestamp(envelope.received_at, tz=datetime.UTC)
            if envelope.received_at
            else now
        )
        domains = sorted({_domain(r.address) for r in envelope.recipients if r.address})
        tenant = _domain(envelope.recipients[0].address) if envelope.recipients else ""
        with self._writing():
            if self.blob_files is not None:
                # Bytes first, fsynced, outside the write lock of the database: SQLite has one
                # writer at a time, and it should not wait for our disk flushes.
                self.blob_files.put(request.original)
                if request.sanitized is not None:
                    self.blob_files.put(request.sanitized)
            self._hold_metadata(request, envelope, summary, now, received, domains, tenant)
        log_fields(
            quarantine_log,
            20,
            "held",
            ref=request.reference_id,
            kind=request.kind,
            size=len(request.original),
            tenant=tenant,
        )
        return request.reference_id

    def _hold_metadata(
        self,
        request: HoldRequest,
        envelope: Any,
        summary: Summary,
        now: datetime.datetime,
        received: datetime.datetime,
        domains: builtins.list[str],
        tenant: str,
    ) -> None:
        report: Report = request.report
        recipients = [
            {"address": clean_text(r.address), "options": list(r.options)}
            for r in envelope.recipients
        ]
        search = search_text(
            request.reference_id,
            clean_text(envelope.mail_from),
            (str(r["address"]) for r in recipients),
            summary.subject,
            summary.header_from,
            summary.message_id,
            (
                clean_text(name)
                for record in report.attachments
                for name in (record.untrusted_filename, record.output_filename)
            ),
        )
        with db.write_transaction(self.engine) as conn:
            if self.backend == "postgresql":
                # The 250 depends on this commit being durable even if a DBA relaxed it.
                conn.execute(text("SET LOCAL synchronous_commit = on"))
            original = self._put_blob(conn, request.original, now)
            sanitized = (
                self._put_blob(conn, request.sanitized, now)
                if request.sanitized is not None
                else None
            )
            conn.execute(
                _INSERT_ITEM,
                dict(
                    id=request.reference_id,
                    kind=request.kind,
                    status=HELD,
                    tenant=tenant,
                    received_at=received,
                    queue_id=envelope.queue_id,
                    message_id=summary.message_id,
                    envelope_from=clean_text(envelope.mail_from),
                    recipients=json.dumps(recipients, ensure_ascii=False),
                    subject=summary.subject,
                    header_from=summary.header_from,
                    size=len(request.original),
                    original_sha256=original,
                    original_blob=original,
                    sanitized_sha256=sanitized,
                    sanitized_blob=sanitized,
                    verdict=report.verdict.label,
                    reasons=json.dumps([clean_text(r) for r in report.reasons], ensure_ascii=False),
                    report=clean_text(report.to_json()),
                    client=json.dumps(
                        {k: clean_text(str(v)) for k, v in asdict(envelope.client).items()},
                        ensure_ascii=False,
                    ),
                    headers=json.dumps(summary.headers, ensure_ascii=False),
                    preview=json.dumps(
                        {
                            "parts": [preview_part_to_dict(p) for p in summary.parts],
                            "note": summary.note,
                        },
                        ensure_ascii=False,
                    ),
                    mail_options=json.dumps(list(envelope.mail_options)),
                    search_text=search,
                    release_count=0,
                    updated_at=now,
                ),
            )
            if domains:
                conn.execute(
                    insert(item_domains),
                    [
                        {"item_id": request.reference_id, "domain": d, "received_at": received}
                        for d in domains
                    ],
                )
            if request.awaits_password:
                conn.execute(
                    insert(password_waits).values(
                        item_id=request.reference_id,
                        envelope_from=clean_text(envelope.mail_from).lower(),
                        recipients_key=recipients_key(r.address for r in envelope.recipients),
                        held_at=received,
                        status="waiting",
                        wrong=0,
                        updated_at=now,
                    )
                )
            self._history(conn, request.reference_id, None, HELD, "gateway", request.kind, now)

    def discard(self, reference_id: str, reason: str) -> None:
        """See QuarantineStore. The item was never accepted, so no trace of it is kept."""
        with db.write_transaction(self.engine) as conn:
            conn.execute(delete(status_history).where(status_history.c.item_id == reference_id))
            conn.execute(delete(item_domains).where(item_domains.c.item_id == reference_id))
            conn.execute(
                delete(items).where(items.c.id == reference_id, items.c.kind == "retained")
            )
        log_fields(quarantine_log, 20, "discarded", ref=reference_id, reason=reason)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            if self.blob_files is not None:
                self.blob_files.root.mkdir(parents=True, exist_ok=True)
                probe = self.blob_files.root / ".ping"
                probe.write_bytes(b"")
                probe.unlink()
        except (SQLAlchemyError, OSError):
            return False
        return True

    # -- password mails (gateway/ppap.py, issue 17) ------------------------------------------

    def awaiting_password(
        self, envelope_from: str, recipients: Iterable[str], since: datetime.datetime
    ) -> builtins.list[str]:
        """Held items waiting for a password mail from exactly this envelope sender to exactly
        these recipients, held at or after ``since``; newest first (at most 5)."""
        if not envelope_from:
            return []  # a bounce (null sender) never pairs
        statement = (
            select(password_waits.c.item_id)
            .join(items, items.c.id == password_waits.c.item_id)
            .where(
                password_waits.c.envelope_from == clean_text(envelope_from).lower(),
                password_waits.c.recipients_key == recipients_key(recipients),
                password_waits.c.held_at >= since,
                password_waits.c.status == "waiting",
                items.c.status == HELD,
            )
            .order_by(password_waits.c.held_at.desc())
            .limit(5)
        )
        with self.engine.connect() as conn:
            return [str(row.item_id) for row in conn.execute(statement)]

    def password_wrong(self, item_id: str, max_wrong: int) -> int:
        """Count one password mail that did not open ``item_id``; at ``max_wrong`` the item
        stops waiting (``locked``). Returns the count."""
        now = utcnow()
        with db.write_transaction(self.engine) as conn:
            conn.execute(
                update(password_waits)
                .where(password_waits.c.item_id == item_id)
                .values(wrong=password_waits.c.wrong + 1, updated_at=now)
            )
            wrong = int(
                conn.execute(
                    select(password_waits.c.wrong).where(password_waits.c.item_id == item_id)
                ).scalar()
                or 0
            )
            if wrong >= max_wrong:
                conn.execute(
                    update(password_waits)
                    .where(password_waits.c.item_id == item_id)
                    .values(status="locked", updated_at=now)
                )
        return wrong

    def password_settled(self, item_id: str, status: str) -> None:
        """``item_id`` stops waiting: ``unlocked`` (delivered) or ``held`` (hostile inside)."""
        with db.write_transaction(self.engine) as conn:
            conn.execute(
                update(password_waits)
                .where(password_waits.c.item_id == item_id)
                .values(status=status, updated_at=utcnow())
            )

    def ensure_password_wait(self, item_id: str) -> dict[str, Any]:
        """The waiting row of ``item_id``, created (waiting, no wrong tries) when the item was
        not held waiting for a partner's password mail: a recipient's request mail counts
        its wrong passwords here too (``gateway.requests``), so both lock at the limit."""
        found = self.password_wait(item_id)
        if found is not None:
            return found
        item = self.get(item_id)
        now = utcnow()
        with db.write_transaction(self.engine) as conn:
            exists = conn.execute(
                select(password_waits.c.item_id).where(password_waits.c.item_id == item_id)
            ).first()
            if exists is None:
                conn.execute(
                    insert(password_waits).values(
                        item_id=item_id,
                        envelope_from=clean_text(item.summary.envelope_from).lower(),
                        recipients_key=recipients_key(item.summary.recipients),
                        held_at=item.summary.received_at,
                        # Not "waiting": a partner's later mail must not pair with it by this.
                        status="requested",
                        wrong=0,
                        updated_at=now,
                    )
                )
        found = self.password_wait(item_id)
        assert found is not None
        return found

    def password_wait(self, item_id: str) -> dict[str, Any] | None:
        """The waiting row of ``item_id`` (status, wrong count), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(password_waits).where(password_waits.c.item_id == item_id)
            ).first()
        return None if row is None else {"status": row.status, "wrong": int(row.wrong)}

    # -- reading ---------------------------------------------------------------------------

    def list(self, query: ItemQuery, scope: Scope = None) -> Page:
        conditions = []
        visible = self._visible(scope)
        if visible is not None:
            conditions.append(visible)
        if query.status:
            conditions.append(items.c.status == query.status)
        if query.kind:
            conditions.append(items.c.kind == query.kind)
        source: Any = items
        if query.tenant:
            # Joined, not IN (subquery): the (domain, received_at, item_id) index then gives
            # the tenant's items in page order, bounded by the period, and only those are
            # read from items. One row per item: (item_id, domain) is the key.
            source = items.join(
                item_domains,
                and_(
                    item_domains.c.item_id == items.c.id,
                    item_domains.c.domain == query.tenant.lower(),
                ),
            )
            if query.since:
                conditions.append(item_domains.c.received_at >= query.since)
            if query.until:
                conditions.append(item_domains.c.received_at < query.until)
        if query.since:
            conditions.append(items.c.received_at >= query.since)
        if query.until:
            conditions.append(items.c.received_at < query.until)
        if query.search:
            conditions.extend(self._search_conditions(query.search))
        where = and_(True, *conditions)
        limit = max(1, min(query.limit, 1000))
        only_search = len(conditions) == 1 and visible is None and not query.tenant
        if query.search and only_search and self.backend == "sqlite":
            fast = self._search_page(query.search, limit, max(0, query.offset))
            if fast is not None:
                return fast
        with self.engine.connect() as conn:
            total: int | None = None
            if query.search and self.backend == "sqlite":
                # Count first: how many match decides how SQLite should find the page.
                total = int(
                    conn.execute(select(func.count()).select_from(source).where(where)).scalar_one()
                )
            statement = (
                select(*_SUMMARY_COLUMNS)
                .select_from(source)
                .where(where)
                .order_by(*self._list_order(query, total))
                .limit(limit)
                .offset(max(0, query.offset))
            )
            rows = conn.execute(statement).all()
            capped = False
            if total is not None:
                pass
            elif query.offset <= 0 and len(rows) < limit:
                total = len(rows)  # the whole result is on this page: no second scan
            elif query.search and self.backend == "postgresql":
                total, capped = self._count_capped(
                    conn, source, where, max(0, query.offset) + limit
                )
            else:
                total = conn.execute(
                    select(func.count()).select_from(source).where(where)
                ).scalar_one()
        return Page([_summary(r) for r in rows], int(total), query.offset, limit, capped)

    def _count_capped(
        self, conn: Connection, source: Any, where: Any, page_end: int
    ) -> tuple[int, bool]:
        """Count a search's matches up to ``count_cap`` (at least to the end of the page
        shown): (total, capped). Stopping early lets PostgreSQL count from the first rows
        of any plan instead of testing every match of a frequent term."""
        bound = max(self.count_cap, page_end)
        found = conn.execute(
            select(func.count()).select_from(
                select(literal_column("1"))
                .select_from(source)
                .where(where)
                .limit(bound + 1)
                .subquery()
            )
        ).scalar_one()
        return (bound, True) if found > bound else (int(found), False)

    def _search_page(self, search: str, limit: int, offset: int) -> Page | None:
        """A search with no other filter, on SQLite: the FTS5 table alone counts the matches
        and orders them newest first (it keeps ``received_at``); only the page's items are
        read. None when a term is too short for the trigram index."""
        terms = list(dict.fromkeys(normalize_search(search).split()))[:10]
        if not terms or any(len(t) < TRIGRAM for t in terms):
            return None
        phrase = " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)
        with self.engine.connect() as conn:
            total = conn.execute(
                text("SELECT count(*) FROM items_search WHERE items_search MATCH :phrase"),
                {"phrase": phrase},
            ).scalar_one()
            ids = list(
                conn.execute(
                    text(
                        "SELECT item_id FROM items_search WHERE items_search MATCH :phrase "
                        "ORDER BY received_at DESC, item_id DESC LIMIT :limit OFFSET :offset"
                    ),
                    {"phrase": phrase, "limit": limit, "offset": offset},
                ).scalars()
            )
            rows = conn.execute(
                select(*_SUMMARY_COLUMNS)
                .where(items.c.id.in_(ids))
                .order_by(items.c.received_at.desc(), items.c.id.desc())
            ).all()
        return Page([_summary(r) for r in rows], int(total), offset, limit)

    def _search_conditions(self, search: str) -> builtins.list[Any]:
        """Every whitespace-separated term must occur (AND), as a substring, in the search
        text. Terms of three characters or more use the trigram index: FTS5 ``MATCH`` on
        SQLite, ``LIKE`` (answered by the pg_trgm GIN index) on PostgreSQL."""
        terms = list(dict.fromkeys(normalize_search(search).split()))[:10]
        conditions: builtins.list[Any] = []
        long_terms = [t for t in terms if len(t) >= TRIGRAM]
        if self.backend == "sqlite" and long_terms:
            phrase = " AND ".join('"' + t.replace('"', '""') + '"' for t in long_terms)
            conditions.append(
                items.c.id.in_(
                    select(text("item_id"))
                    .select_from(text("items_search"))
                    .where(text("items_search MATCH :phrase").bindparams(phrase=phrase))
                )
            )
            terms = [t for t in terms if len(t) < TRIGRAM]
        for term in terms:
            if self.backend == "postgresql" and len(term) < TRIGRAM:
                # No trigram in it (pg_trgm cannot help): a term of one or two characters
                # occurs exactly when it is one of the text's short grams (migration 0005).
                conditions.append(_SEARCH_GRAMS.contains([term]))
            else:
                conditions.append(items.c.search_text.like(f"%{_like_escape(term)}%", escape="\\"))
        return conditions

    def optimize(self) -> None:
        """Refresh SQLite's planner statistics (``ANALYZE``): without them it cannot tell a
        selective filter (one tenant of twenty) from an unselective one and may walk the
        wrong index. PostgreSQL's autovacuum keeps its own statistics."""
        if self.backend == "sqlite":
            with db.write_transaction(self.engine) as conn:
                conn.exec_driver_sql("ANALYZE")

    def search_index(self) -> str:
        """How search is indexed here: ``fts5``, ``pg_trgm``, or ``none`` (a sequential scan,
        when PostgreSQL refused the extension; see migration 0003)."""
        with self.engine.connect() as conn:
            if self.backend == "sqlite":
                found = conn.execute(
                    text("SELECT 1 FROM sqlite_master WHERE name = 'items_search'")
                ).first()
                return "fts5" if found else "none"
            found = conn.execute(
                text("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_items_search_trgm'")
            ).first()
            return "pg_trgm" if found else "none"

    def _list_order(self, query: ItemQuery, matches: int | None = None) -> tuple[Any, ...]:
        if self.backend == "sqlite" and query.search and (matches or 0) < FREQUENT_MATCHES:
            # A rare search term would make SQLite walk the whole received_at index and fetch
            # every row by rowid; unary + (a no-op in SQLite) makes it look up only the
            # matches (from the FTS5 index) and sort them (SQLite query planner docs,
            # "Disqualifying WHERE Clause Terms Using Unary-+"). A frequent term is the
            # opposite: walking the index newest first finds a page of matches at once,
            # where sorting tens of thousands of matches would not.
            return (text("+items.received_at DESC"), items.c.id.desc())
        if query.tenant:
            # The same values as items' (a copy, see list()), in the order of the index.
            return (item_domains.c.received_at.desc(), item_domains.c.item_id.desc())
        return (items.c.received_at.desc(), items.c.id.desc())

    def get(self, item_id: str, scope: Scope = None) -> Item:
        """The item, or ItemNotFound when it does not exist or is outside ``scope``."""
        condition = items.c.id == item_id
        visible = self._visible(scope)
        if visible is not None:
            condition = and_(condition, visible)
        with self.engine.connect() as conn:
            row = conn.execute(select(items).where(condition)).first()
            if row is None:
                raise ItemNotFound(f"no item {item_id}")
            domains = list(
                conn.execute(
                    select(item_domains.c.domain)
                    .where(item_domains.c.item_id == item_id)
                    .order_by(item_domains.c.domain)
                ).scalars()
            )
        return Item(
            summary=_summary(row),
            queue_id=row.queue_id,
            recipient_options=json.loads(row.recipients),
            mail_options=json.loads(row.mail_options),
            client=json.loads(row.client),
            headers=[tuple(h) for h in json.loads(row.headers)],
            report=json.loads(row.report),
            **_preview(row),
            original_sha256=row.original_sha256,
            sanitized_sha256=row.sanitized_sha256,
            original_available=row.original_blob is not None,
            sanitized_available=row.sanitized_blob is not None,
            released_at=_aware(row.released_at),
            released_by=row.released_by,
            claimed_by=row.claimed_by,
            domains=domains,
        )

    def original(self, item_id: str, scope: Scope = None) -> bytes:
        item = self.get(item_id, scope)
        if not item.original_available:
            raise ItemNotFound(
                f"the original of {item_id} is no longer kept ({item.summary.status})"
            )
        return self._read_blob(item.original_sha256)

    def sanitized(self, item_id: str, scope: Scope = None) -> bytes:
        item = self.get(item_id, scope)
        if not item.sanitized_available or item.sanitized_sha256 is None:
            raise ItemNotFound(f"{item_id} has no sanitized copy")
        return self._read_blob(item.sanitized_sha256)

    def history(self, item_id: str) -> builtins.list[StatusChange]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(status_history)
                .where(status_history.c.item_id == item_id)
                .order_by(status_history.c.id)
            )
            return [
                StatusChange(_aware(r.at), r.from_status, r.to_status, r.actor, r.reason)  # type: ignore[arg-type]
                for r in rows
            ]

    def backlog(self) -> builtins.list[QuarantineBacklog]:
        """Held items per tenant, the oldest one's arrival, and the totals of admin actions on
        each tenant's items from the audit log (``gateway.metrics`` polls it at scrape time)."""
        statement = (
            select(items.c.tenant, func.count(), func.min(items.c.received_at))
            .where(items.c.status == HELD, items.c.kind == "quarantined")
            .group_by(items.c.tenant)
        )
        with self.engine.connect() as conn:
            held = {
                str(tenant): (int(count), aware.timestamp() if (aware := _aware(oldest)) else None)
                for tenant, count, oldest in conn.execute(statement)
            }
        actions: dict[str, dict[str, int]] = {}
        for (tenant, action), total in self.action_totals().items():
            actions.setdefault(tenant, {})[action] = total
        return [
            QuarantineBacklog(
                tenant,
                held.get(tenant, (0, None))[0],
                held.get(tenant, (0, None))[1],
                tuple(sorted(actions.get(tenant, {}).items())),
            )
            for tenant in sorted(held.keys() | actions.keys())
        ]

    def action_totals(self) -> dict[tuple[str, str], int]:
        """(tenant, action) → how many times it happened, from the append-only audit log.

        Bounded per call: rows older than ``ACTION_SETTLE`` are counted once, into a cache
        behind a watermark id, and only the rows after the watermark are counted again. The
        watermark stops before the first row that is not yet settled, so a row whose
        transaction commits late (or comes from a node with a skewed clock) within that time
        is still counted when it appears. The first call counts the whole log once."""
        with self._action_lock:
            settle = utcnow() - ACTION_SETTLE
            counted = audit_log.c.action.in_(sorted(AUDIT_ACTIONS))
            with self.engine.connect() as conn:
                first_unsettled = conn.execute(
                    select(func.min(audit_log.c.id)).where(
                        audit_log.c.id > self._action_watermark, audit_log.c.at >= settle
                    )
                ).scalar()
                if first_unsettled is None:
                    last = conn.execute(select(func.max(audit_log.c.id))).scalar()
                    upto = int(last) if last is not None else self._action_watermark
                else:
                    upto = int(first_unsettled) - 1
                if upto > self._action_watermark:
                    for tenant, action, count in conn.execute(
                        select(audit_log.c.tenant, audit_log.c.action, func.count())
                        .where(
                            counted,
                            audit_log.c.id > self._action_watermark,
                            audit_log.c.id <= upto,
                        )
                        .group_by(audit_log.c.tenant, audit_log.c.action)
                    ):
                        key = (tenant or "", AUDIT_ACTIONS[action])
                        self._action_settled[key] = self._action_settled.get(key, 0) + int(count)
                    self._action_watermark = upto
                totals = dict(self._action_settled)
                for tenant, action, count in conn.execute(
                    select(audit_log.c.tenant, audit_log.c.action, func.count())
                    .where(counted, audit_log.c.id > self._action_watermark)
                    .group_by(audit_log.c.tenant, audit_log.c.action)
                ):
                    key = (tenant or "", AUDIT_ACTIONS[action])
                    totals[key] = totals.get(key, 0) + int(count)
        return totals

    def kind_status_counts(self, scope: Scope = None) -> dict[tuple[str, str], int]:
        """Items per (kind, status). Held messages (``quarantined``) and the retained
        originals of delivered mail are told apart (issue 16: one 「保留中」 count mixed them);
        ``("quarantined", "held")`` is what ``mugaika_quarantine_items`` counts."""
        visible = self._visible(scope)
        statement = select(items.c.kind, items.c.status, func.count()).group_by(
            items.c.kind, items.c.status
        )
        if visible is not None:
            statement = statement.where(visible)
        with self.engine.connect() as conn:
            return {(kind, status): int(n) for kind, status, n in conn.execute(statement)}

    # -- release claims (see quarantine/release.py) -----------------------------------------

    def claim(self, item_id: str, actor: Actor, force: bool = False) -> Claim:
        """Win the right to send ``item_id`` once, or raise ReleaseRefused saying why.

        The conditional UPDATE is the whole exclusion: of two nodes racing, the database lets
        exactly one UPDATE match ``status='held'``. With ``force`` an already released (or
        interrupted) item may be claimed again; still only one concurrent claim wins.
        """
        token = secrets.token_hex(16)
        allowed = [HELD, RELEASED] if force else [HELD]
        now = utcnow()
        with db.write_transaction(self.engine) as conn:
            row = conn.execute(
                select(items.c.status, items.c.interrupted_at, items.c.original_blob).where(
                    items.c.id == item_id
                )
            ).first()
            if row is None:
                raise ItemNotFound(f"no item {item_id}")
            condition = [items.c.id == item_id, items.c.status.in_(allowed)]
            if not force:
                condition.append(items.c.interrupted_at.is_(None))
            result = conn.execute(
                update(items)
                .where(*condition)
                .values(
                    status=RELEASING,
                    claim_token=token,
                    claimed_at=now,
                    claimed_by=f"{actor.name}@{self.node}",
                    claim_from=row.status,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                # Read again: under READ COMMITTED the row may have changed since the SELECT.
                now_row = conn.execute(
                    select(items.c.status, items.c.interrupted_at).where(items.c.id == item_id)
                ).one()
                raise _refusal(item_id, now_row.status, now_row.interrupted_at is not None)
            self._history(conn, item_id, row.status, RELEASING, actor.name, "release claimed", now)
        return Claim(item_id, token, row.status)

    def finish_release(self, claim: Claim, actor: Actor, reason: str) -> None:
        now = utcnow()
        with db.write_transaction(self.engine) as conn:
            result = conn.execute(
                update(items)
                .where(items.c.id == claim.item_id, items.c.claim_token == claim.token)
                .values(
                    status=RELEASED,
                    claim_token=None,
                    claim_from=None,
                    interrupted_at=None,
                    released_at=now,
                    released_by=actor.name,
                    release_count=items.c.release_count + 1,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:  # pragma: no cover - only the claim holder gets here
                raise ReleaseRefused(
                    f"the release claim on {claim.item_id} was lost", key="claim_lost"
                )
            self._history(conn, claim.item_id, RELEASING, RELEASED, actor.name, reason, now)

    def undo_claim(self, claim: Claim, actor: Actor, reason: str) -> None:
        """The send failed before the downstream accepted: back to the previous status."""
        now = utcnow()
        with db.write_transaction(self.engine) as conn:
            result = conn.execute(
                update(items)
                .where(items.c.id == claim.item_id, items.c.claim_token == claim.token)
                .values(status=claim.previous_status, claim_token=None, updated_at=now)
            )
            if result.rowcount == 1:
                self._history(
                    conn, claim.item_id, RELEASING, claim.previous_status, actor.name, reason, now
                )

    def recover_stale_claims(self, older_than: datetime.timedelta) -> builtins.list[str]:
        """Claims whose holder died: mark interrupted, return to the previous status.

        The downstream may or may not have accepted the message before the crash, so the item
        is *not* silently released again: it needs an explicit ``--force`` release by an admin
        who has checked the downstream's log for the Message-ID (at most once, never lost).
        """
        cutoff = utcnow() - older_than
        now = utcnow()
        recovered = []
        with db.write_transaction(self.engine) as conn:
            rows = conn.execute(
                select(items.c.id, items.c.claim_from, items.c.claimed_by).where(
                    items.c.status == RELEASING, items.c.claimed_at < cutoff
                )
            ).all()
            for row in rows:
                previous = row.claim_from or HELD
                conn.execute(
                    update(items)
                    .where(items.c.id == row.id, items.c.status == RELEASING)
                    .values(status=previous, claim_token=None, interrupted_at=now, updated_at=now)
                )
                self._history(
                    conn,
                    row.id,
                    RELEASING,
                    previous,
                    "system",
                    f"release by {row.claimed_by} interrupted; may have been delivered",
                    now,
                )
                recovered.append(row.id)
        return recovered

    # -- page previews of sanitized copies (quarantine/pages.py) ----------------------------

    def preview(self, sha256: str) -> builtins.list[dict[str, Any]] | None:
        """The cached manifest of a sanitized copy's previews, or None when not rendered."""
        with self.engine.connect() as conn:
            manifest = conn.execute(
                select(previews.c.manifest).where(previews.c.sha256 == sha256)
            ).scalar()
        return None if manifest is None else json.loads(manifest)["documents"]

    def put_preview(
        self,
        sha256: str,
        documents: builtins.list[dict[str, Any]],
        pages: builtins.list[builtins.list[tuple[int, int, bytes]]],
    ) -> None:
        """Cache a rendered preview (idempotent: the first one stays)."""
        with db.write_transaction(self.engine) as conn:
            done = conn.execute(select(previews.c.sha256).where(previews.c.sha256 == sha256))
            if done.first() is not None:
                return
            conn.execute(
                insert(previews).values(
                    sha256=sha256,
                    created_at=utcnow(),
                    manifest=json.dumps({"documents": documents}, ensure_ascii=False),
                )
            )
            rows = [
                {"sha256": sha256, "document": d, "page": n, "width": w, "height": h, "png": png}
                for d, images in enumerate(pages)
                for n, (w, h, png) in enumerate(images, 1)
            ]
            if rows:
                conn.execute(insert(preview_pages), rows)

    def preview_page(self, sha256: str, document: int, page: int) -> bytes | None:
        with self.engine.connect() as conn:
            data = conn.execute(
                select(preview_pages.c.png).where(
                    preview_pages.c.sha256 == sha256,
                    preview_pages.c.document == document,
                    preview_pages.c.page == page,
                )
            ).scalar()
        return None if data is None else bytes(data)

    # -- delete, purge, garbage ------------------------------------------------------------

    def delete(self, item_id: str, actor: Actor, reason: str, scope: Scope = None) -> None:
        """Drop the bytes of an item; its metadata, history and audit stay."""
        self.get(item_id, scope)
        now = utcnow()
        with db.write_transaction(self.engine) as conn:
            status = conn.execute(select(items.c.status).where(items.c.id == item_id)).scalar()
            if status == RELEASING:
                raise ReleaseRefused(f"{item_id} is being released right now", key="releasing_now")
            if status in (DELETED, EXPIRED):
                raise ReleaseRefused(
                    f"{item_id} is already {status}", key="item_status", status=status
                )
            conn.execute(
                update(items)
                .where(items.c.id == item_id)
                .values(
                    status=DELETED,
                    original_blob=None,
                    sanitized_blob=None,
                    preview=None,
                    updated_at=now,
                )
            )
            self._history(conn, item_id, status, DELETED, actor.name, reason, now)
        self.collect_garbage()

    def retention_for(self, tenant: str) -> int:
        return self.tenant_retention.get(tenant, self.retention_days)

    def purge(self, now: datetime.datetime | None = None, actor: str = "system") -> PurgeResult:
        """Expire items past their tenant's retention; drop unreferenced bytes. Idempotent."""
        now = now or utcnow()
        expired: builtins.list[str] = []
        groups: builtins.list[tuple[Any, int]] = [
            (items.c.tenant == tenant, days) for tenant, days in self.tenant_retention.items()
        ]
        groups.append((items.c.tenant.not_in(sorted(self.tenant_retention)), self.retention_days))
        with db.write_transaction(self.engine) as conn:
            for condition, days in groups:
                cutoff = now - datetime.timedelta(days=days)
                rows = conn.execute(
                    select(items.c.id, items.c.status).where(
                        condition,
                        items.c.received_at < cutoff,
                        items.c.status.in_([HELD, RELEASED]),
                    )
                ).all()
                for row in rows:
                    conn.execute(
                        update(items)
                        .where(items.c.id == row.id)
                        .values(
                            status=EXPIRED,
                            original_blob=None,
                            sanitized_blob=None,
                            preview=None,
                            updated_at=now,
                        )
                    )
                    self._history(
                        conn, row.id, row.status, EXPIRED, actor, f"retention {days} days", now
                    )
                    expired.append(row.id)
        removed = self.collect_garbage()
        return PurgeResult(expired=expired, blobs_removed=removed)

    def collect_garbage(self) -> int:
        """Delete blobs no item refers to; return how many."""
        referenced = union(
            select(items.c.original_blob.label("sha")).where(items.c.original_blob.is_not(None)),
            select(items.c.sanitized_blob.label("sha")).where(items.c.sanitized_blob.is_not(None)),
        ).subquery()
        with db.write_transaction(self.engine) as conn:
            # Previews of copies no item keeps any longer go with them.
            unreferenced = previews.c.sha256.not_in(select(referenced.c.sha))
            conn.execute(delete(preview_pages).where(unreferenced_pages(referenced)))
            conn.execute(delete(previews).where(unreferenced))
            digests = list(
                conn.execute(
                    select(blobs.c.sha256).where(blobs.c.sha256.not_in(select(referenced.c.sha)))
                ).scalars()
            )
            for start in range(0, len(digests), 500):
                conn.execute(delete(blobs).where(blobs.c.sha256.in_(digests[start : start + 500])))
        if self.blob_files is not None:
            # Files go under the exclusive lock, which no writer holds between its fsync and
            # its commit; only reads happen under it (WAL readers never wait for the write
            # lock), so a busy database cannot make holds wait behind the collector.
            with self.blob_files.collecting():
                with self.engine.connect() as conn:
                    known = set(conn.execute(select(blobs.c.sha256)).scalars())
                # Rows deleted above whose content a hold has stored again since are kept;
                # files without a row are holds that died between fsync and commit (the
                # sender got no 250 and retries).
                doomed = [d for d in self.blob_files.digests() if d not in known]
                for digest in doomed:
                    self.blob_files.delete(digest)
            digests = sorted(set(digests) | set(doomed))
        return len(digests)

    # -- audit log (append-only) -----------------------------------------------------------

    def audit(
        self,
        actor: Actor,
        action: str,
        item_id: str | None = None,
        tenant: str | None = None,
        **detail: Any,
    ) -> None:
        with db.write_transaction(self.engine) as conn:
            self._audit(conn, actor, action, item_id, tenant, detail)
        log_fields(
            audit_logger,
            20,
            action,
            actor=actor.name,
            item=item_id or "",
            remote=actor.remote,
        )

    def _audit(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        item_id: str | None,
        tenant: str | None,
        detail: Mapping[str, Any],
    ) -> None:
        conn.execute(
            insert(audit_log).values(
                at=utcnow(),
                actor=actor.name,
                action=action,
                item_id=item_id,
                tenant=tenant,
                remote_addr=(actor.remote or "")[:64],
                detail=json.dumps(dict(detail), ensure_ascii=False, default=str),
            )
        )

    def audit_entries(
        self,
        scope: Scope = None,
        item_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[builtins.list[AuditEntry], int]:
        conditions: builtins.list[ColumnElement[bool]] = []
        if scope is not None:
            conditions.append(audit_log.c.tenant.in_(sorted(scope)))
        if item_id:
            conditions.append(audit_log.c.item_id == item_id)
        if actor:
            conditions.append(audit_log.c.actor == actor)
        if action:
            conditions.append(audit_log.c.action == action)
        where = and_(True, *conditions)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_log)
                .where(where)
                .order_by(audit_log.c.id.desc())
                .limit(max(1, min(limit, 1000)))
                .offset(max(0, offset))
            ).all()
            total = conn.execute(
                select(func.count()).select_from(audit_log).where(where)
            ).scalar_one()
        return [
            AuditEntry(
                r.id,
                _aware(r.at),  # type: ignore[arg-type]
                r.actor,
                r.action,
                r.item_id,
                r.tenant,
                r.remote_addr,
                json.loads(r.detail),
            )
            for r in rows
        ], int(total)

    # -- release requests (two-person rule) ------------------------------------------------

    def create_request(
        self,
        item_id: str,
        actor: Actor,
        reason: str,
        target: str = "original",
        to_addresses: builtins.list[str] | None = None,
        scope: Scope = None,
    ) -> int:
        item = self.get(item_id, scope)
        if item.summary.status in (DELETED, EXPIRED):
            raise ReleaseRefused(
                f"{item_id} is {item.summary.status}", key="item_status", status=item.summary.status
            )
        with db.write_transaction(self.engine) as conn:
            pending = conn.execute(
                select(release_requests.c.id).where(
                    release_requests.c.item_id == item_id,
                    release_requests.c.status == "pending",
                )
            ).first()
            if pending is not None:
                raise ReleaseRefused(
                    f"request {pending.id} for {item_id} is already pending",
                    key="request_pending",
                    request=pending.id,
                )
            result = conn.execute(
                insert(release_requests).values(
                    item_id=item_id,
                    created_at=utcnow(),
                    requested_by=actor.name,
                    reason=reason,
                    target=target,
                    to_addresses=json.dumps(to_addresses) if to_addresses else None,
                    status="pending",
                )
            )
            inserted = result.inserted_primary_key
            assert inserted is not None  # an INSERT of one row
            request_id = int(inserted[0])
            self._audit(
                conn,
                actor,
                "release-requested",
                item_id,
                item.summary.tenant,
                {"request": request_id, "reason": reason, "target": target, "to": to_addresses},
            )
        return request_id

    def requests(
        self, scope: Scope = None, status: str | None = "pending", item_id: str | None = None
    ) -> builtins.list[ReleaseRequest]:
        statement = select(release_requests, items.c.tenant, items.c.subject).join(
            items, items.c.id == release_requests.c.item_id
        )
        visible = self._visible(scope)
        if visible is not None:
            statement = statement.where(visible)
        if status:
            statement = statement.where(release_requests.c.status == status)
        if item_id:
            statement = statement.where(release_requests.c.item_id == item_id)
        with self.engine.connect() as conn:
            rows = conn.execute(statement.order_by(release_requests.c.id.desc()).limit(500))
            return [_request(r) for r in rows]

    def get_request(self, request_id: int, scope: Scope = None) -> ReleaseRequest:
        statement = (
            select(release_requests, items.c.tenant, items.c.subject)
            .join(items, items.c.id == release_requests.c.item_id)
            .where(release_requests.c.id == request_id)
        )
        visible = self._visible(scope)
        if visible is not None:
            statement = statement.where(visible)
        with self.engine.connect() as conn:
            row = conn.execute(statement).first()
        if row is None:
            raise ItemNotFound(f"no request {request_id}")
        return _request(row)

    def decide_request(
        self, request_id: int, actor: Actor, approve: bool, reason: str, scope: Scope = None
    ) -> ReleaseRequest:
        """Mark a pending request approved or refused (the caller then releases)."""
        request = self.get_request(request_id, scope)
        with db.write_transaction(self.engine) as conn:
            result = conn.execute(
                update(release_requests)
                .where(release_requests.c.id == request_id, release_requests.c.status == "pending")
                .values(
                    status="approved" if approve else "refused",
                    decided_by=actor.name,
                    decided_at=utcnow(),
                    decision_reason=reason,
                )
            )
            if result.rowcount != 1:
                raise ReleaseRefused(
                    f"request {request_id} is not pending",
                    key="request_decided",
                    request=request_id,
                )
            self._audit(
                conn,
                actor,
                "request-approved" if approve else "request-refused",
                request.item_id,
                request.tenant,
                {"request": request_id, "reason": reason, "requested_by": request.requested_by},
            )
        return self.get_request(request_id, scope)

    def close_request(self, request_id: int, status: str) -> None:
        with db.write_transaction(self.engine) as conn:
            conn.execute(
                update(release_requests)
                .where(release_requests.c.id == request_id)
                .values(status=status)
            )


def unreferenced_pages(referenced: Any) -> Any:
    return preview_pages.c.sha256.not_in(select(referenced.c.sha))


def _request(row: Any) -> ReleaseRequest:
    return ReleaseRequest(
        id=row.id,
        item_id=row.item_id,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        requested_by=row.requested_by,
        reason=row.reason,
        target=row.target,
        to_addresses=json.loads(row.to_addresses) if row.to_addresses else None,
        status=row.status,
        decided_by=row.decided_by,
        decided_at=_aware(row.decided_at),
        decision_reason=row.decision_reason,
        tenant=row.tenant,
        subject=row.subject,
    )


def _refusal(item_id: str, status: str, interrupted: bool) -> ReleaseRefused:
    """The 409 of a lost claim, naming the force option where it applies (the web form's
    box, the CLI's ``--force``, the API's ``"force": true``)."""
    if status == RELEASED:
        return ReleaseRefused(
            f"{item_id} was already released; to send it again, release with force "
            '(CLI --force, API "force": true)',
            key="already_released",
        )
    if status == RELEASING:
        return ReleaseRefused(
            f"{item_id} is being released right now by another admin or node",
            key="releasing_now",
        )
    if interrupted:
        return ReleaseRefused(
            f"a previous release of {item_id} was interrupted and may have been delivered; "
            "check the downstream log for its Message-ID, then release with force "
            '(CLI --force, API "force": true)',
            key="interrupted",
        )
    return ReleaseRefused(f"{item_id} is {status}", key="item_status", status=status)


def blob_mode(config: Config, engine: Engine) -> str:
    if config.quarantine.blobs != "auto":
        return config.quarantine.blobs
    return "database" if engine.dialect.name == "postgresql" else "files"


def open_store(config: Config, create: bool = False, check: bool = True) -> SqlStore:
    """The store for ``config``. ``create``: migrate a brand-new database first.

    Raises SchemaNotCurrent (a ConfigError: exit 2) when the schema is not at head.
    """
    engine = db.make_engine(config.quarantine_url)
    if create and db.current_revision(engine) is None:
        db.upgrade(engine)
    if check:
        db.check_current(engine)
    mode = blob_mode(config, engine)
    files = FileBlobs(Path(config.data_dir) / "blobs") if mode == "files" else None
    return SqlStore(
        engine,
        files,
        retention_days=config.quarantine.retention_days,
        tenant_retention={
            domain: tenant.retention_days
            for domain, tenant in config.tenants.items()
            if tenant.retention_days is not None
        },
    )


__all__ = [
    "Claim",
    "Item",
    "ItemQuery",
    "ItemSummary",
    "Page",
    "SqlStore",
    "open_store",
    "parse_since",
]
