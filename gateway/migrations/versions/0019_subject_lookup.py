"""subjects' keyed lookup digests, by which a DPO finds a person from their name and birth date (and SNILS)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 18:30:00.000000

The digests need the master key, which migrations never read: rows recorded before this revision stay without them
until `casebridge subjects index` fills them (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("case_subject") as batch:
        batch.add_column(sa.Column("name_lookup", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("snils_lookup", sa.String(length=64), nullable=True))
        batch.create_index("ix_case_subject_name_lookup", ["tenant_id", "name_lookup"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("case_subject") as batch:
        batch.drop_index("ix_case_subject_name_lookup")
        batch.drop_column("snils_lookup")
        batch.drop_column("name_lookup")
