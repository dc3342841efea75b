"""Alembic environment: migrations always run on a connection handed over by gateway.db.upgrade_schema."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from tenants.models import Base

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `casebridge db upgrade`, which supplies the database connection")
run_migrations(connection)
