"""tenant administration: invitations, deactivation, client revocation, audit verification runs

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

from tenants.persistence import rls_policy_sql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The production login role, as in 0005: where the operator created it apart from the owner, it may add and read
# verification runs but never change or remove one.
APP_ROLE = "casebridge_app"


def upgrade() -> None:
    op.create_table(
        "staff_invitation",
        sa.Column("user_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("expires_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("accepted_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("withdrawn_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_staff_invitation_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_staff_invitation_user_id_user_account"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_invitation")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_invitation_token_hash")),
    )
    with op.batch_alter_table("staff_invitation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_staff_invitation_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_staff_invitation_user_id"), ["user_id"], unique=False)

    op.create_table(
        "audit_verification",
        sa.Column("at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("checkpoints", sa.Integer(), nullable=False),
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_verification")),
    )
    with op.batch_alter_table("audit_verification", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_verification_at"), ["at"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for statement in rls_policy_sql("staff_invitation"):
            op.execute(statement)
        # A platform table (the whole log is verified at once), so no row-level security; runs are only added.
        role_exists = f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'"  # noqa: S608 - a constant, not input
        op.execute(
            f"DO $$\nBEGIN\n    IF EXISTS ({role_exists}) THEN\n"
            f"        REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_verification FROM {APP_ROLE};\n"
            f"        GRANT INSERT, SELECT ON audit_verification TO {APP_ROLE};\n"
            f"    END IF;\nEND\n$$"
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_verification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_verification_at"))
    op.drop_table("audit_verification")
    with op.batch_alter_table("staff_invitation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_invitation_user_id"))
        batch_op.drop_index(batch_op.f("ix_staff_invitation_tenant_id"))
    op.drop_table("staff_invitation")
