"""peer nodes: their agencies in the directory, their fetched keys, and envelopes held for those keys

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 08:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _base(table: str) -> list[sa.Column[object] | sa.Constraint]:
    return [
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(sa.Column("peer", sa.String(length=63), nullable=True))
        batch.create_index(batch.f("ix_tenant_peer"), ["peer"], unique=False)
    op.create_table(
        "peer_node",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("problem", sa.String(length=32), nullable=True),
        sa.Column("node_name", sa.String(length=255), nullable=True),
        sa.Column("slug_collisions", sa.JSON(), nullable=False),
        sa.Column("checked_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("fetched_at", DateTimeUTC(timezone=True), nullable=True),
        *_base("peer_node"),
        sa.UniqueConstraint("name", name=op.f("uq_peer_node_name")),
    )
    op.create_table(
        "peer_key",
        sa.Column("peer", sa.String(length=63), nullable=False),
        sa.Column("owner_tenant_id", GUID(length=16), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("use", sa.String(length=8), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("accepted_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("withdrawn_at", DateTimeUTC(timezone=True), nullable=True),
        *_base("peer_key"),
        sa.ForeignKeyConstraint(
            ["owner_tenant_id"], ["tenant.id"], name=op.f("fk_peer_key_owner_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.UniqueConstraint("owner_tenant_id", "kid", name=op.f("uq_peer_key_owner_tenant_id")),
    )
    with op.batch_alter_table("peer_key") as batch:
        batch.create_index(batch.f("ix_peer_key_peer"), ["peer"], unique=False)
        batch.create_index(batch.f("ix_peer_key_owner_tenant_id"), ["owner_tenant_id"], unique=False)
    op.create_table(
        "held_envelope",
        sa.Column("envelope_id", GUID(length=16), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("recipient_tenant_id", GUID(length=16), nullable=False),
        sa.Column("sender_tenant_id", GUID(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("received_at", DateTimeUTC(timezone=True), nullable=False),
        *_base("held_envelope"),
        sa.UniqueConstraint("envelope_id", name=op.f("uq_held_envelope_envelope_id")),
    )
    with op.batch_alter_table("held_envelope") as batch:
        batch.create_index(batch.f("ix_held_envelope_recipient_tenant_id"), ["recipient_tenant_id"], unique=False)
        batch.create_index(batch.f("ix_held_envelope_sender_tenant_id"), ["sender_tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_table("held_envelope")
    op.drop_table("peer_key")
    op.drop_table("peer_node")
    with op.batch_alter_table("tenant") as batch:
        batch.drop_index(batch.f("ix_tenant_peer"))
        batch.drop_column("peer")
