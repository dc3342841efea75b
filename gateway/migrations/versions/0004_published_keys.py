"""published keys: the public halves of tenants' envelope keys, readable by every tenant

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 07:55:49.335369
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "published_key",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("owner_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("use", sa.String(length=8), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("retired_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("usable_until", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_tenant_id"],
            ["tenant.id"],
            name=op.f("fk_published_key_owner_tenant_id_tenant"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_published_key")),
        sa.UniqueConstraint("kid", name=op.f("uq_published_key_kid")),
    )
    with op.batch_alter_table("published_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_published_key_owner_tenant_id"), ["owner_tenant_id"], unique=False)

    # Publish the keys that exist already (row-level security hides tenant_key rows without a scope).
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT set_config('app.tenant_id', '*', true)")
    op.execute(
        "INSERT INTO published_key (id, owner_tenant_id, kid, use, public_jwk, retired_at, usable_until, created_at, "
        "updated_at) SELECT id, tenant_id, kid, use, public_jwk, retired_at, usable_until, created_at, updated_at "
        "FROM tenant_key WHERE public_jwk IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("published_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_published_key_owner_tenant_id"))

    op.drop_table("published_key")
