"""The quarantine database schema (SQLAlchemy Core), shared by the store and the migrations.

One schema for SQLite and PostgreSQL. Timestamps are UTC. Text that came from a message is
stored as received after decoding (never rendered); JSON columns are ``Text`` holding JSON so
that both backends treat them alike.

Tables:

``items``            one held or retained message; ``tenant`` is the first recipient's domain
``item_domains``     every recipient domain of an item, with its ``received_at`` (tenant
                     isolation and the list's tenant filter look here)
``blobs``            one row per stored content hash; ``data`` holds the bytes in database
                     mode and is NULL when the bytes are files (``quarantine/blobs.py``)
``status_history``   every status change of an item, with who and why
``audit_log``        append-only record of admin actions: the code only INSERTs and SELECTs
``release_requests`` requests to release originals, and their approval or refusal
``users``, ``api_tokens``, ``web_sessions``  admin accounts, bearer tokens, login sessions
                     (tokens and session ids stored only as sha256)
``previews``, ``preview_pages``  the cached page images (and Office text) of a sanitized
                     copy's documents, rendered by a worker (``quarantine/pages.py``), keyed by
                     the copy's sha256 and dropped with its blob
``password_waits``   a held message whose only reason is a password-protected ZIP (PPAP): the
                     envelope sender and recipients a later password mail must match, when
                     it was held, how many password mails did not open it (issue 17); never
                     a password
``digest_runs``      one row per tenant and local day: the claim that one node sends the
                     daily digest (``quarantine/digest.py``), and what it covered

Search (``items.search_text``: reference id, addresses, subject, From, Message-ID and
attachment file names, NFKC-normalised and case-folded) is indexed outside this metadata,
because the indexes are backend-specific (migration 0003): on SQLite an FTS5 table
``items_search`` (trigram tokenizer, so Japanese substrings of three or more characters are
found without word segmentation) kept in step by triggers; on PostgreSQL a pg_trgm GIN index
``ix_items_search_trgm``, and for terms of one or two characters (which trigrams cannot
index) a generated column ``search_grams`` (the text's distinct one- and two-character
substrings) with a GIN index ``ix_items_search_grams`` (migration 0005). ``managed_elsewhere``
tells Alembic's comparison to leave them be.

Changing anything here needs a new Alembic revision in ``quarantine/migrations/versions``;
``tests/quarantine/test_migrations.py`` checks that the migrated schema equals this one.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

TS = DateTime(timezone=True)

# Item statuses. "releasing" is the short-lived claim of one release (see release.py).
HELD = "held"
RELEASING = "releasing"
RELEASED = "released"
DELETED = "deleted"
EXPIRED = "expired"
STATUSES = (HELD, RELEASING, RELEASED, DELETED, EXPIRED)
KINDS = ("quarantined", "retained")

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=True),
    Column("created_at", TS, nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("received_at", TS, nullable=False),
    Column("queue_id", String(64), nullable=False, default=""),
    Column("message_id", Text, nullable=False, default=""),
    Column("envelope_from", Text, nullable=False, default=""),
    Column("recipients", Text, nullable=False),  # JSON [{"address", "options"}]
    Column("subject", Text, nullable=False, default=""),
    Column("header_from", Text, nullable=False, default=""),
    Column("size", BigInteger, nullable=False),
    Column("original_sha256", String(64), nullable=False),
    Column("original_blob", String(64), ForeignKey("blobs.sha256"), nullable=True),
    Column("sanitized_sha256", String(64), nullable=True),
    Column("sanitized_blob", String(64), ForeignKey("blobs.sha256"), nullable=True),
    Column("verdict", String(16), nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list of str
    Column("report", Text, nullable=False),  # gateway.report.Report JSON
    Column("client", Text, nullable=False),  # JSON of gateway.message.ClientInfo
    Column("headers", Text, nullable=False),  # JSON [[name, decoded value], ...] (bounded)
    # JSON {"parts": [...], "note": ...}: the worker's text preview (quarantine.summary);
    # NULL for items held before it was stored, and once the original is gone.
    Column("preview", Text, nullable=True),
    Column("mail_options", Text, nullable=False),  # JSON list of ESMTP MAIL parameters
    Column("search_text", Text, nullable=False),  # lower-cased id, from, to, subject, msgid
    Column("release_count", Integer, nullable=False, default=0),
    Column("claim_token", String(64), nullable=True),
    Column("claimed_at", TS, nullable=True),
    Column("claimed_by", Text, nullable=True),
    Column("claim_from", String(16), nullable=True),  # status to return to if a release fails
    Column("interrupted_at", TS, nullable=True),
    Column("released_at", TS, nullable=True),
    Column("released_by", Text, nullable=True),
    Column("updated_at", TS, nullable=False),
)
Index(None, items.c.received_at)
Index(None, items.c.kind, items.c.status)
Index(None, items.c.tenant, items.c.received_at)
Index(None, items.c.status, items.c.received_at)
Index(None, items.c.original_blob)
Index(None, items.c.sanitized_blob)

item_domains = Table(
    "item_domains",
    metadata,
    Column("item_id", String(40), ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("domain", String(255), primary_key=True),
    # A copy of items.received_at (which never changes): one index walk finds a tenant's
    # items newest first, or those of a period, without reading the items (migration 0006).
    Column("received_at", TS, nullable=False),
)
Index(None, item_domains.c.domain, item_domains.c.item_id)
Index(None, item_domains.c.domain, item_domains.c.received_at, item_domains.c.item_id)

status_history = Table(
    "status_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(40), ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("at", TS, nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False, default=""),
)
Index(None, status_history.c.item_id, status_history.c.id)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("item_id", String(40), nullable=True),  # no FK: the log outlives items
    Column("tenant", String(255), nullable=True),
    Column("remote_addr", String(64), nullable=False, default=""),
    Column("detail", Text, nullable=False, default="{}"),  # JSON
)
Index(None, audit_log.c.at)
Index(None, audit_log.c.item_id)
Index(None, audit_log.c.tenant, audit_log.c.at)

release_requests = Table(
    "release_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(40), ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("target", String(16), nullable=False),  # original | sanitized
    Column("to_addresses", Text, nullable=True),  # JSON list; NULL: original recipients
    Column("status", String(16), nullable=False),  # pending approved refused done failed
    Column("decided_by", Text, nullable=True),
    Column("decided_at", TS, nullable=True),
    Column("decision_reason", Text, nullable=True),
)
Index(None, release_requests.c.status, release_requests.c.created_at)
Index(None, release_requests.c.item_id)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),  # NULL: single sign-on only
    Column("role", String(32), nullable=False),
    Column("domains", Text, nullable=False, default="[]"),  # JSON list; [] = every domain
    Column("disabled", Boolean, nullable=False, default=False),
    Column("language", String(8), nullable=True),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", TS, nullable=False),
    Column("last_used_at", TS, nullable=True),
    Column("revoked_at", TS, nullable=True),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=False),
    Column("remote_addr", String(64), nullable=False, default=""),
    Column("via", String(16), nullable=False, default="password"),  # password | header
)

previews = Table(
    "previews",
    metadata,
    Column("sha256", String(64), primary_key=True),  # of the sanitized copy rendered
    Column("created_at", TS, nullable=False),
    Column("manifest", Text, nullable=False),  # JSON: documents, page counts, text, notes
)

preview_pages = Table(
    "preview_pages",
    metadata,
    Column(
        "sha256", String(64), ForeignKey("previews.sha256", ondelete="CASCADE"), primary_key=True
    ),
    Column("document", Integer, primary_key=True),
    Column("page", Integer, primary_key=True),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("png", LargeBinary, nullable=False),
)

digest_runs = Table(
    "digest_runs",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("day", String(10), primary_key=True),  # local date (time_zone), 2026-11-25
    Column("claimed_at", TS, nullable=False),
    Column("claimed_by", Text, nullable=False),
    Column("period_start", TS, nullable=False),
    Column("period_end", TS, nullable=False),
    Column("finished_at", TS, nullable=True),
    Column("mails", Integer, nullable=False, default=0),
    Column("items", Integer, nullable=False, default=0),
)

# Waiting for the sender's own password mail (gateway/ppap.py, issue 17). ``status``: waiting,
# unlocked (its members were delivered sanitized), held (they opened to content the policy
# holds), locked (``password_mail.max_wrong`` password mails did not open it).
password_waits = Table(
    "password_waits",
    metadata,
    Column("item_id", String(40), ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("envelope_from", Text, nullable=False),  # lower-cased
    Column("recipients_key", Text, nullable=False),  # sorted lower-cased addresses, one a line
    Column("held_at", TS, nullable=False),
    Column("status", String(16), nullable=False),  # waiting requested locked unlocked held
    Column("wrong", Integer, nullable=False, default=0),
    Column("updated_at", TS, nullable=False),
)
Index(None, password_waits.c.envelope_from, password_waits.c.held_at)

# Search indexes made by migrations 0003 and 0005 outside this metadata (see the module
# docstring).
SEARCH_TABLE = "items_search"
SEARCH_INDEX = "ix_items_search_trgm"
GRAMS_COLUMN = "search_grams"
GRAMS_INDEX = "ix_items_search_grams"


def managed_elsewhere(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic ``include_object``: False for the backend-specific search objects."""
    if name is None:
        return True
    if type_ == "column" and name == GRAMS_COLUMN:
        return False
    return not (
        name in (SEARCH_INDEX, SEARCH_TABLE, GRAMS_INDEX) or name.startswith(SEARCH_TABLE + "_")
    )
