"""cases' individual care plans: goals from the needs assessment, actions with who and by which day

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 19:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

from tenants.persistence import rls_policy_sql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUID = advanced_alchemy.types.guid.GUID
UTC = advanced_alchemy.types.datetime.DateTimeUTC
TABLES = ("care_plan", "care_goal", "care_action")


def _base_columns(table: str) -> list[sa.Column[object] | sa.ForeignKeyConstraint | sa.PrimaryKeyConstraint]:
    return [
        sa.Column("tenant_id", GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f(f"fk_{table}_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    op.create_table(
        "care_plan",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("case_id", GUID(length=16), nullable=False),
        sa.Column("created_by_kind", sa.String(length=8), nullable=False),
        sa.Column("created_by_id", GUID(length=16), nullable=False),
        sa.Column("kek_kid", sa.String(length=64), nullable=False),
        sa.Column("data_key_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        *_base_columns("care_plan"),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"], name=op.f("fk_care_plan_case_id_case_file"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("tenant_id", "case_id", name="uq_care_plan_case"),
    )
    op.create_table(
        "care_goal",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("care_plan_id", GUID(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("need", sa.String(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        *_base_columns("care_goal"),
        sa.ForeignKeyConstraint(
            ["care_plan_id"], ["care_plan.id"], name=op.f("fk_care_goal_care_plan_id_care_plan"), ondelete="CASCADE"
        ),
    )
    op.create_table(
        "care_action",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("care_plan_id", GUID(length=16), nullable=False),
        sa.Column("goal_id", GUID(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("due_at", UTC(timezone=True), nullable=False),
        sa.Column("done_at", UTC(timezone=True), nullable=True),
        sa.Column("referral_id", GUID(length=16), nullable=True),
        *_base_columns("care_action"),
        sa.ForeignKeyConstraint(
            ["care_plan_id"], ["care_plan.id"], name=op.f("fk_care_action_care_plan_id_care_plan"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["goal_id"], ["care_goal.id"], name=op.f("fk_care_action_goal_id_care_goal"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referral.id"], name=op.f("fk_care_action_referral_id_referral"), ondelete="SET NULL"
        ),
    )
    indexes = {
        "care_plan": ("case_id", "tenant_id"),
        "care_goal": ("care_plan_id", "tenant_id"),
        "care_action": ("care_plan_id", "goal_id", "due_at", "tenant_id"),
    }
    for table, columns in indexes.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in rls_policy_sql(table):
                op.execute(statement)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
