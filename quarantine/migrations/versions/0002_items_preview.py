"""items.preview: the text preview the worker computed (issue 11)

The admin UI used to parse the held original in the web process on every page view; the
preview is now computed in the worker with the rest of the summary and stored here as JSON
({"parts": [...], "note": "..."}). NULL for items held before this revision: the UI then
says that no preview was stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preview', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('preview')
