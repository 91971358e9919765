"""search that scales, page previews, daily digests (issue 16)

- ``items.search_text`` is rebuilt for every item: reference id, envelope sender,
  recipients, subject, From, Message-ID and now the attachment file names (from the stored
  report), NFKC-normalised and case-folded (so ＩＮＶＯＩＣＥ finds invoice and ① finds 1).
- SQLite: an FTS5 table ``items_search`` with the trigram tokenizer (SQLite >= 3.34), filled
  from ``items`` and kept in step by triggers on insert, update and delete. It stores its own
  copy of the text with the item id and arrival time, not the table's rowid (which VACUUM or
  a batch migration may renumber), and answers a search alone, newest first, when nothing
  else filters the list.
- PostgreSQL: ``CREATE EXTENSION pg_trgm`` and a GIN trigram index on ``search_text``, which
  ``LIKE '%term%'`` uses. Creating an extension needs the CREATE privilege on the database
  (pg_trgm is a trusted extension since PostgreSQL 13) or a superuser; when that is refused
  the migration still succeeds, search works as a sequential scan, and a warning says what
  to run (``mugaika db status`` says it too).
- ``items (kind, status)`` index for the list page's counters.
- ``previews``/``preview_pages`` (rendered pages of sanitized copies) and ``digest_runs``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10 10:00:00.000000
"""

import json
import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("mugaika.quarantine")

TRGM_SQL = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm; "
    "CREATE INDEX IF NOT EXISTS ix_items_search_trgm ON items USING gin (search_text gin_trgm_ops);"
)


def _search_text(row: sa.Row) -> str:
    # Frozen copy of quarantine.sql.search_text at this revision.
    names = []
    try:
        report = json.loads(row.report)
        for attachment in report.get("attachments", []):
            names.append(str(attachment.get("untrusted_filename", "")))
            names.append(str(attachment.get("output_filename", "")))
    except (ValueError, AttributeError):
        pass
    recipients = [r.get("address", "") for r in json.loads(row.recipients)]
    fields = [row.id, row.envelope_from, *recipients, row.subject, row.header_from]
    fields += [row.message_id, *names]
    text = " ".join(f for f in fields if f)
    return unicodedata.normalize("NFKC", text).casefold()


def upgrade() -> None:
    bind = op.get_bind()
    items = sa.table(
        "items",
        sa.column("id", sa.String),
        sa.column("envelope_from", sa.Text),
        sa.column("recipients", sa.Text),
        sa.column("subject", sa.Text),
        sa.column("header_from", sa.Text),
        sa.column("message_id", sa.Text),
        sa.column("report", sa.Text),
        sa.column("search_text", sa.Text),
    )
    rows = bind.execute(sa.select(items)).all()
    for start in range(0, len(rows), 1000):
        updates = [{"key": r.id, "text": _search_text(r)} for r in rows[start : start + 1000]]
        if updates:
            bind.execute(
                items.update().where(items.c.id == sa.bindparam("key")),
                [{"key": u["key"], "search_text": u["text"]} for u in updates],
            )

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index("ix_items_kind_status", ["kind", "status"], unique=False)

    op.create_table(
        "previews",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_previews")),
    )
    op.create_table(
        "preview_pages",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["previews.sha256"],
            name=op.f("fk_preview_pages_sha256_previews"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sha256", "document", "page", name=op.f("pk_preview_pages")),
    )
    op.create_table(
        "digest_runs",
        sa.Column("tenant", sa.String(length=255), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mails", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "day", name=op.f("pk_digest_runs")),
    )

    if bind.dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE items_search USING fts5("
            "item_id UNINDEXED, received_at UNINDEXED, search_text, tokenize = 'trigram')"
        )
        op.execute(
            "INSERT INTO items_search (item_id, received_at, search_text) "
            "SELECT id, received_at, search_text FROM items"
        )
        op.execute(
            "CREATE TRIGGER items_search_insert AFTER INSERT ON items BEGIN "
            "INSERT INTO items_search (item_id, received_at, search_text) "
            "VALUES (new.id, new.received_at, new.search_text); END"
        )
        op.execute(
            "CREATE TRIGGER items_search_delete AFTER DELETE ON items BEGIN "
            "DELETE FROM items_search WHERE item_id = old.id; END"
        )
        op.execute(
            "CREATE TRIGGER items_search_update AFTER UPDATE OF id, received_at, search_text "
            "ON items BEGIN DELETE FROM items_search WHERE item_id = old.id; "
            "INSERT INTO items_search (item_id, received_at, search_text) "
            "VALUES (new.id, new.received_at, new.search_text); END"
        )
    elif bind.dialect.name == "postgresql":
        # A savepoint, so that a refused CREATE EXTENSION does not abort the migration.
        savepoint = bind.begin_nested()
        try:
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            bind.exec_driver_sql(
                "CREATE INDEX IF NOT EXISTS ix_items_search_trgm ON items "
                "USING gin (search_text gin_trgm_ops)"
            )
        except sa.exc.DBAPIError as exc:
            savepoint.rollback()
            problem = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            message = (
                f"pg_trgm could not be set up ({problem}): search works, as a sequential "
                f"scan; to index it, have a superuser run: {TRGM_SQL}"
            )
            log.warning(message)
            print(f"mugaika db upgrade: warning: {message}")
        else:
            savepoint.commit()


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("items_search_insert", "items_search_delete", "items_search_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS items_search")
    elif bind.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_items_search_trgm")
    op.drop_table("digest_runs")
    op.drop_table("preview_pages")
    op.drop_table("previews")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index("ix_items_kind_status")
