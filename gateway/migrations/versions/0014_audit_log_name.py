"""the audit log's name, stored with the log instead of derived from each process's base URL

Revision ID: 0014
Revises: 0013
Create Date: 2027-01-12 09:00:00.000000

A log that already has checkpoints adopts the names they were signed under: the origin line of each, in size
order, a new name starting where the origin changed. So every checkpoint issued before the upgrade stays
verifiable, and new ones carry on under the name of the latest. A log with no checkpoint gets its name from the
first sealer that runs on it (audit/identity.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0005 and 0012: where the operator created a separate login role, it may add and read names, never change one.
APP_ROLE = "casebridge_app"
# A signed-note key name, as audit.checkpoint checks it: no spaces, no '+', no control characters. A note whose first
# line is not one was never signed under it; `audit verify` reports such a note, and it names nothing here.
_KEY_NAME = re.compile(r"[^\s+\x00-\x1f]+")


def upgrade() -> None:
    names = op.create_table(
        "audit_log_name",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("from_size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("adopted_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("from_size >= 1", name=op.f("ck_audit_log_name_from_size_positive")),
        sa.CheckConstraint("number >= 1", name=op.f("ck_audit_log_name_number_positive")),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_audit_log_name")),
    )
    checkpoints = sa.table(
        "audit_checkpoint",
        sa.column("size", sa.BigInteger()),
        sa.column("note", sa.Text()),
        sa.column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True)),
    )
    adopted: list[dict[str, object]] = []
    previous_size = 0
    rows = op.get_bind().execute(
        sa.select(checkpoints.c.size, checkpoints.c.note, checkpoints.c.created_at).order_by(checkpoints.c.size)
    )
    for size, note, created_at in rows:
        origin = note.split("\n", 1)[0]
        if _KEY_NAME.fullmatch(origin) and (not adopted or adopted[-1]["origin"] != origin):
            adopted.append(
                {"number": len(adopted) + 1, "origin": origin, "from_size": previous_size + 1, "adopted_at": created_at}
            )
        previous_size = size
    if adopted:
        op.bulk_insert(names, adopted)
    if op.get_bind().dialect.name == "postgresql":
        role_exists = f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'"  # noqa: S608 - a constant, not input
        op.execute(
            f"DO $$\nBEGIN\n    IF EXISTS ({role_exists}) THEN\n"
            f"        REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_log_name FROM {APP_ROLE};\n"
            f"        GRANT INSERT, SELECT ON audit_log_name TO {APP_ROLE};\n"
            "    END IF;\nEND\n$$"
        )


def downgrade() -> None:
    op.drop_table("audit_log_name")
