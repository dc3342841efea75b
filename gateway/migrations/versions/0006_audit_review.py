"""audit review: a data-protection officer's marks on reviewed events (statutory shares, break-glass uses)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The production login role, as in 0005: where the operator created it apart from the owner, it may add and read
# review marks but never change or remove one.
APP_ROLE = "casebridge_app"


def upgrade() -> None:
    op.create_table(
        "audit_review_mark",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("log_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("event_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("reviewer_kind", sa.String(length=8), nullable=False),
        sa.Column("reviewer_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["audit_event.id"], name=op.f("fk_audit_review_mark_event_id_audit_event")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_review_mark")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_review_mark_event_id")),
    )
    with op.batch_alter_table("audit_review_mark", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_review_mark_log_tenant_id"), ["log_tenant_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # As on audit_event: a tenant sees and writes only marks on its own trail; the platform scope sees all.
        setting = "current_setting('app.tenant_id', true)"
        op.execute("ALTER TABLE audit_review_mark ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE audit_review_mark FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY audit_isolation ON audit_review_mark "
            f"USING ({setting} = '*' OR log_tenant_id::text = {setting}) "
            f"WITH CHECK ({setting} = '*' OR log_tenant_id::text = {setting})"
        )
        role_exists = f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'"  # noqa: S608 - a constant, not input
        op.execute(
            f"DO $$\nBEGIN\n    IF EXISTS ({role_exists}) THEN\n"
            f"        REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_review_mark FROM {APP_ROLE};\n"
            f"        GRANT INSERT, SELECT ON audit_review_mark TO {APP_ROLE};\n"
            f"    END IF;\nEND\n$$"
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_review_mark", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_review_mark_log_tenant_id"))

    op.drop_table("audit_review_mark")
