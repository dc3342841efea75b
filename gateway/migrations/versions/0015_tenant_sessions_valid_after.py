"""the moment before which a tenant's access tokens and staff sessions are dead (set when it is suspended)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 03:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable with no default: a tenant never suspended has no such moment, and PostgreSQL adds it without a rewrite.
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(sa.Column("sessions_valid_after", DateTimeUTC(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.drop_column("sessions_valid_after")
