"""what each agency hosted here last co-signed of a peer node's audit log (tlog-witness state)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0012: where the operator created a separate login role, it may read and move the record forward, never
# delete it (a witness that forgets what it co-signed could be led down a second history).
APP_ROLE = "casebridge_app"


def upgrade() -> None:
    op.create_table(
        "audit_witness_state",
        sa.Column("log_origin", sa.Text(), nullable=False),
        sa.Column("cosigner_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("length(root) = 32", name=op.f("ck_audit_witness_state_root_size")),
        sa.PrimaryKeyConstraint("log_origin", "cosigner_tenant_id", name=op.f("pk_audit_witness_state")),
    )
    if op.get_bind().dialect.name == "postgresql":
        role_exists = f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'"  # noqa: S608 - a constant, not input
        op.execute(
            f"DO $$\nBEGIN\n    IF EXISTS ({role_exists}) THEN\n"
            f"        REVOKE DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_witness_state FROM {APP_ROLE};\n"
            f"        GRANT INSERT, SELECT, UPDATE ON audit_witness_state TO {APP_ROLE};\n"
            "    END IF;\nEND\n$$"
        )


def downgrade() -> None:
    op.drop_table("audit_witness_state")
