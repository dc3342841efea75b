"""Alembic environment: migrations always run on a connection handed over by gateway.db.upgrade_schema."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import audit.models  # noqa: F401 - registers the tables on the shared metadata
import exchange.cases.models
import exchange.letters.models
import exchange.plans.models
import exchange.referrals.models
import exchange.transport.models  # noqa: F401 - registers the tables on the shared metadata
from tenants.models import Base

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    # compare_type off: on SQLite, GUID and DateTimeUTC reflect as other types and would show as false changes.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=False)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `casebridge db upgrade`, which supplies the database connection")
run_migrations(connection)
