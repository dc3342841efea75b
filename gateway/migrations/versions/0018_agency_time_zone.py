"""an agency's time zone, and each referral deadline's day

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 18:30:00.000000

Deadlines made before this revision were picked in the pages as a day and stored as 23:59 UTC of it (API clients
gave any time): each keeps that UTC day as its day, and its instant becomes the end of that day in Europe/Moscow,
the time zone every existing agency is given, so that it is overdue when the day it shows is over.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported: a migration keeps meaning what it meant when it was written.
_ZONE = "Europe/Moscow"
_BATCH = 1000
_PLACEHOLDER = "1970-01-01"


def _end_of_day(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    next_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return next_day.astimezone(dt.UTC) - dt.timedelta(microseconds=1)


def upgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=False, server_default=_ZONE))
    # SQLite adds a NOT NULL column only with a default (and altering it afterwards would copy the table, which its
    # foreign keys forbid once rows refer to it): every row gets its real day below, and every insert sets both.
    with op.batch_alter_table("referral") as batch:
        batch.add_column(sa.Column("respond_by_date", sa.Date(), nullable=False, server_default=_PLACEHOLDER))
        batch.add_column(sa.Column("complete_by_date", sa.Date(), nullable=False, server_default=_PLACEHOLDER))
    referral = sa.table(
        "referral",
        sa.column("id", GUID(length=16)),
        sa.column("respond_by", DateTimeUTC(timezone=True)),
        sa.column("complete_by", DateTimeUTC(timezone=True)),
        sa.column("respond_by_date", sa.Date()),
        sa.column("complete_by_date", sa.Date()),
    )
    connection, zone = op.get_bind(), zoneinfo.ZoneInfo(_ZONE)
    if connection.dialect.name == "postgresql":  # row-level security hides every tenant's referrals without a scope
        op.execute("SELECT set_config('app.tenant_id', '*', true)")
    rows = connection.execute(sa.select(referral.c.id, referral.c.respond_by, referral.c.complete_by)).all()
    change = (
        referral.update()
        .where(referral.c.id == sa.bindparam("row_id"))
        .values(
            respond_by=sa.bindparam("respond_at"),
            complete_by=sa.bindparam("complete_at"),
            respond_by_date=sa.bindparam("respond_day"),
            complete_by_date=sa.bindparam("complete_day"),
        )
    )
    for start in range(0, len(rows), _BATCH):
        values = []
        for row in rows[start : start + _BATCH]:
            respond_day, complete_day = (
                row.respond_by.astimezone(dt.UTC).date(),
                row.complete_by.astimezone(dt.UTC).date(),
            )
            values.append(
                {
                    "row_id": row.id,
                    "respond_at": _end_of_day(respond_day, zone),
                    "complete_at": _end_of_day(complete_day, zone),
                    "respond_day": respond_day,
                    "complete_day": complete_day,
                }
            )
        connection.execute(change, values)


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): a batch would copy tables other rows refer to.
    op.drop_column("referral", "complete_by_date")
    op.drop_column("referral", "respond_by_date")
    op.drop_column("tenant", "time_zone")
