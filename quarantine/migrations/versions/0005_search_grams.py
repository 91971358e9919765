"""search_grams: an index for search terms of one and two characters on PostgreSQL (issue 16)

pg_trgm cannot index terms shorter than three characters, and two-character words are
common in Japanese (見積, 請求, 会議): without an index PostgreSQL tested every row's search
text, and counting the matches of a frequent term took longer than the page's 200 ms.

- ``mugaika_short_grams(text)``: the distinct substrings of one and two characters of a
  text, as ``text[]``. A term of one or two characters occurs in a text exactly when it is
  one of them, so the index answers such terms without a recheck.
- ``items.search_grams``: a generated column (``GENERATED ALWAYS AS
  (mugaika_short_grams(search_text)) STORED``), so every writer keeps it in step and
  adding it fills it for the items already held, and a GIN index ``ix_items_search_grams``
  on it. A stored column, not an expression index: when the planner walks ``received_at``
  for a frequent term it tests the stored array, instead of computing the grams again for
  every row it reads.

Plain SQL and the built-in GIN array operators: no extension, so this works where pg_trgm
was refused. SQLite is unchanged (its FTS5 trigram table already finds short terms fast).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 23:30:00.000000
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SHORT_GRAMS_FUNCTION = """
CREATE OR REPLACE FUNCTION mugaika_short_grams(value text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT ARRAY(
    SELECT DISTINCT substr(value, position, size)
    FROM generate_series(1, length(value)) AS position, (VALUES (1), (2)) AS sizes (size)
    WHERE position + size <= length(value) + 1
  )
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(SHORT_GRAMS_FUNCTION)
    op.execute(
        "ALTER TABLE items ADD COLUMN search_grams text[] "
        "GENERATED ALWAYS AS (mugaika_short_grams(search_text)) STORED"
    )
    op.execute("CREATE INDEX ix_items_search_grams ON items USING gin (search_grams)")
    # The planner needs the grams' frequencies at once to choose between this index and a
    # walk along received_at; autovacuum would gather them only later.
    op.execute("ANALYZE items")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_items_search_grams")
    op.execute("ALTER TABLE items DROP COLUMN IF EXISTS search_grams")
    op.execute("DROP FUNCTION IF EXISTS mugaika_short_grams(text)")
