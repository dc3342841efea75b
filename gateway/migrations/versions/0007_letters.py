"""referral letters: registration numbers, signed PDFs laid out after the send and sent on to the recipient

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

from tenants.persistence import rls_policy_sql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUID = advanced_alchemy.types.guid.GUID
UTC = advanced_alchemy.types.datetime.DateTimeUTC
TABLES = ("letter_sequence", "letter_prefix", "referral_letter")


def _base_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("tenant_id", GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
    ]


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenant.id"], name=op.f(f"fk_{table}_tenant_id_tenant"), ondelete="RESTRICT"
    )


def upgrade() -> None:
    op.create_table(
        "letter_sequence",
        *_base_columns(),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        _tenant_fk("letter_sequence"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_letter_sequence")),
        sa.UniqueConstraint("tenant_id", "year", name="uq_letter_sequence_year"),
    )
    op.create_table(
        "letter_prefix",
        *_base_columns(),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        _tenant_fk("letter_prefix"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_letter_prefix")),
        sa.UniqueConstraint("tenant_id", name="uq_letter_prefix_tenant"),
    )
    op.create_table(
        "referral_letter",
        *_base_columns(),
        sa.Column("referral_id", GUID(length=16), nullable=False),
        sa.Column("registration_number", sa.String(length=64), nullable=False),
        sa.Column("register_year", sa.Integer(), nullable=True),
        sa.Column("register_number", sa.Integer(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("signing_kid", sa.String(length=64), nullable=True),
        sa.Column("verification", sa.String(length=16), nullable=True),
        sa.Column("document_id", GUID(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("issued_at", UTC(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        _tenant_fk("referral_letter"),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referral.id"], name=op.f("fk_referral_letter_referral_id_referral"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["document_id"], ["document.id"], name=op.f("fk_referral_letter_document_id_document")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_letter")),
        sa.UniqueConstraint("referral_id", name="uq_referral_letter_referral"),
        sa.UniqueConstraint("tenant_id", "register_year", "register_number", name="uq_referral_letter_register"),
    )
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_tenant_id"), ["tenant_id"], unique=False)
    with op.batch_alter_table("referral_letter", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_letter_status"), ["status"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in rls_policy_sql(table):
                op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("referral_letter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_letter_status"))
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_tenant_id"))
        op.drop_table(table)
