"""Alembic environment: runs on the connection handed in by ``quarantine.db``."""

from __future__ import annotations

from alembic import context

from quarantine.schema import managed_elsewhere, metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through quarantine.db
    raise RuntimeError("run migrations with `mugaika db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=managed_elsewhere,
)
with context.begin_transaction():
    context.run_migrations()
