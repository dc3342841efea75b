"""multi-agency plans and deadline reminders

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

from tenants.persistence import rls_policy_sql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUID = advanced_alchemy.types.guid.GUID
UTC = advanced_alchemy.types.datetime.DateTimeUTC


def _base_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("tenant_id", GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "plan",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("case_id", GUID(length=16), nullable=False),
        sa.Column("case_ref", sa.String(length=32), nullable=False),
        sa.Column("period_from", sa.Date(), nullable=False),
        sa.Column("period_until", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("auto_close", sa.Boolean(), nullable=False),
        sa.Column("closed_at", UTC(timezone=True), nullable=True),
        sa.Column("created_by_kind", sa.String(length=8), nullable=False),
        sa.Column("created_by_id", GUID(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("kek_kid", sa.String(length=64), nullable=False),
        sa.Column("data_key_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        *_base_columns(),
        sa.ForeignKeyConstraint(["case_id"], ["case_file.id"], name=op.f("fk_plan_case_id_case_file")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_plan_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan")),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_plan_idempotency_key"),
    )
    with op.batch_alter_table("plan", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plan_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_plan_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_plan_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "plan_task",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("plan_id", GUID(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("referral_id", GUID(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        *_base_columns(),
        sa.ForeignKeyConstraint(["plan_id"], ["plan.id"], name=op.f("fk_plan_task_plan_id_plan"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["referral_id"], ["referral.id"], name=op.f("fk_plan_task_referral_id_referral")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_plan_task_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_task")),
        sa.UniqueConstraint("referral_id", name=op.f("uq_plan_task_referral_id")),
    )
    with op.batch_alter_table("plan_task", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plan_task_plan_id"), ["plan_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_plan_task_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "reminder_sent",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("referral_id", GUID(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("claimed_at", UTC(timezone=True), nullable=False),
        sa.Column("sent_at", UTC(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        *_base_columns(),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referral.id"], name=op.f("fk_reminder_sent_referral_id_referral"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_reminder_sent_user_id_user_account"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_reminder_sent_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_sent")),
        sa.UniqueConstraint("referral_id", "kind", "user_id", name="uq_reminder_sent_once"),
    )
    with op.batch_alter_table("reminder_sent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminder_sent_referral_id"), ["referral_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reminder_sent_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reminder_sent_tenant_id"), ["tenant_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in ("plan", "plan_task", "reminder_sent"):
            for statement in rls_policy_sql(table):
                op.execute(statement)


def downgrade() -> None:
    for table, indexes in (
        ("reminder_sent", ("ix_reminder_sent_tenant_id", "ix_reminder_sent_user_id", "ix_reminder_sent_referral_id")),
        ("plan_task", ("ix_plan_task_tenant_id", "ix_plan_task_plan_id")),
        ("plan", ("ix_plan_tenant_id", "ix_plan_status", "ix_plan_case_id")),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for index in indexes:
                batch_op.drop_index(batch_op.f(index))
        op.drop_table(table)
