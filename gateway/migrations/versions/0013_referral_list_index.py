"""an index for listing one tenant's outgoing or incoming referrals, newest first

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 01:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_referral_tenant_side_id", "referral", ["tenant_id", "side", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_referral_tenant_side_id", table_name="referral")
