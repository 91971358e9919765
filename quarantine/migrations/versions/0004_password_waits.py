"""password_waits: held PPAP archives waiting for the sender's password mail (issue 17)

One row per held message whose only reason is a password-protected ZIP: the envelope
sender and recipients a later password mail must match, when it was held, its state and how
many password mails did not open it. No password is ever stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-20 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "password_waits",
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("envelope_from", sa.Text(), nullable=False),
        sa.Column("recipients_key", sa.Text(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("wrong", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_password_waits_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_password_waits")),
    )
    with op.batch_alter_table("password_waits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_password_waits_envelope_from_held_at", ["envelope_from", "held_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("password_waits", schema=None) as batch_op:
        batch_op.drop_index("ix_password_waits_envelope_from_held_at")
    op.drop_table("password_waits")
