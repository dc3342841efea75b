"""tenants' co-signatures on audit checkpoints

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0005: where the operator created a separate login role, it may add and read co-signatures, never change one.
APP_ROLE = "casebridge_app"


def upgrade() -> None:
    op.create_table(
        "audit_cosignature",
        sa.Column("cosigner_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("key_name", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("length(root) = 32", name=op.f("ck_audit_cosignature_root_size")),
        sa.PrimaryKeyConstraint("cosigner_tenant_id", "size", name=op.f("pk_audit_cosignature")),
    )
    if op.get_bind().dialect.name == "postgresql":
        role_exists = f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'"  # noqa: S608 - a constant, not input
        op.execute(
            f"DO $$\nBEGIN\n    IF EXISTS ({role_exists}) THEN\n"
            f"        REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_cosignature FROM {APP_ROLE};\n"
            f"        GRANT INSERT, SELECT ON audit_cosignature TO {APP_ROLE};\n"
            "    END IF;\nEND\n$$"
        )


def downgrade() -> None:
    op.drop_table("audit_cosignature")
