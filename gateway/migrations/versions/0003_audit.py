"""audit: the append-only event table and its subject index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 07:48:17.807901
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("log_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("recorded_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actor_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("actor_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_log_tenant_id"), ["log_tenant_id"], unique=False)
        batch_op.create_index("ix_audit_event_log_time", ["log_tenant_id", "recorded_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_resource_id"), ["resource_id"], unique=False)

    op.create_table(
        "audit_event_subject",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("event_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("pseudonym", sa.String(length=40), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["audit_event.id"], name=op.f("fk_audit_event_subject_event_id_audit_event")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event_subject")),
    )
    with op.batch_alter_table("audit_event_subject", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_subject_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_subject_pseudonym"), ["pseudonym"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # A tenant reads its own trail; the platform scope (sealer, exporter) reads all, including the platform's own
        # events, which have no log tenant.
        setting = "current_setting('app.tenant_id', true)"
        for table, owner in (
            ("audit_event", "log_tenant_id"),
            ("audit_event_subject", "(SELECT log_tenant_id FROM audit_event e WHERE e.id = event_id)"),
        ):
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY audit_isolation ON {table} USING ({setting} = '*' OR {owner}::text = {setting}) "
                f"WITH CHECK ({setting} = '*' OR {owner}::text = {setting})"
            )


def downgrade() -> None:
    with op.batch_alter_table("audit_event_subject", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_subject_pseudonym"))
        batch_op.drop_index(batch_op.f("ix_audit_event_subject_event_id"))

    op.drop_table("audit_event_subject")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_resource_id"))
        batch_op.drop_index("ix_audit_event_log_time")
        batch_op.drop_index(batch_op.f("ix_audit_event_log_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_audit_event_actor_id"))
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))

    op.drop_table("audit_event")
