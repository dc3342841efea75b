"""audit sealing: sequence numbers with chain and leaf hashes, signed checkpoints, the sealer's lease

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 08:11:45.979282
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

from audit.models import append_only_grants_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The login role the gateway runs as in production, when the operator created one apart from the owner
# (docs/operations.md). Absent (as in the tests, where the owner is the app role), no grants are changed.
APP_ROLE = "casebridge_app"


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("length(root) = 32", name=op.f("ck_audit_checkpoint_root_size")),
        sa.CheckConstraint("size >= 1", name=op.f("ck_audit_checkpoint_size_positive")),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoint")),
    )
    lease = op.create_table(
        "audit_sealer_lease",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_sealer_lease_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_sealer_lease")),
    )
    op.create_table(
        "audit_seal",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("event_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("sealed_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("length(chain_hash) = 32", name=op.f("ck_audit_seal_chain_hash_size")),
        sa.CheckConstraint("length(leaf_hash) = 32", name=op.f("ck_audit_seal_leaf_hash_size")),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_audit_seal_seq_positive")),
        sa.ForeignKeyConstraint(["event_id"], ["audit_event.id"], name=op.f("fk_audit_seal_event_id_audit_event")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_seal")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_seal_event_id")),
    )

    # The lease row exists from the start, already expired, so sealers only ever lock and update it.
    op.bulk_insert(lease, [{"id": 1, "holder": "", "expires_at": dt.datetime(1970, 1, 1, tzinfo=dt.UTC)}])

    if op.get_bind().dialect.name == "postgresql":
        # Platform tables: no tenant column, so no row-level security. What protects the trail is that the app role
        # may only add and read rows (audit_event and audit_event_subject keep their RLS policies from 0003).
        statements = "".join(f"        {statement};\n" for statement in append_only_grants_sql(APP_ROLE))
        role_exists = f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'"  # noqa: S608 - a constant, not input
        op.execute(f"DO $$\nBEGIN\n    IF EXISTS ({role_exists}) THEN\n{statements}    END IF;\nEND\n$$")


def downgrade() -> None:
    op.drop_table("audit_seal")
    op.drop_table("audit_sealer_lease")
    op.drop_table("audit_checkpoint")
