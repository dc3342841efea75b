"""directory service profiles in an Open Referral HSDS-inspired shape

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 09:30:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenant", schema=None) as batch:
        # Filled below for existing tenants and by the application afterwards; the server default only lets the
        # NOT NULL column be added to a table that already has rows.
        batch.add_column(sa.Column("problem_keys", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("district_keys", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("referral", schema=None) as batch:
        batch.add_column(sa.Column("service_code", sa.String(length=64), nullable=True))
    _refresh_directory_keys()


def _refresh_directory_keys() -> None:
    """Recompute every tenant's search keys with the folding rules this revision introduces (ё read as е)."""
    bind = op.get_bind()
    tenant = sa.table(
        "tenant",
        sa.column("id"),
        sa.column("name", sa.String()),
        sa.column("slug", sa.String()),
        sa.column("region", sa.String()),
        sa.column("service_profile", sa.JSON()),
        sa.column("region_key", sa.String()),
        sa.column("search_text", sa.Text()),
        sa.column("problem_keys", sa.Text()),
        sa.column("district_keys", sa.Text()),
    )
    rows = bind.execute(sa.select(tenant.c.id, tenant.c.name, tenant.c.slug, tenant.c.region, tenant.c.service_profile))
    for row in rows.all():
        profile: Any = row.service_profile
        if isinstance(profile, str):
            profile = json.loads(profile)
        region_key, search_text, problem_keys, district_keys = _directory_keys(
            row.name, row.slug, row.region, profile if isinstance(profile, dict) else {}
        )
        bind.execute(
            tenant.update()
            .where(tenant.c.id == row.id)
            .values(
                region_key=region_key, search_text=search_text, problem_keys=problem_keys, district_keys=district_keys
            )
        )


# Frozen copies of `tenants.models.fold` and `directory_keys` as of this revision: a migration must give the same
# result whatever the application code later becomes (tests/unit/tenants/test_directory_keys.py compares them today).


def _fold(text: str) -> str:
    return " ".join(text.casefold().replace("ё", "е").split())


def _directory_keys(
    name: str, slug: str, region: str | None, profile: dict[str, Any]
) -> tuple[str | None, str, str, str]:
    """(region_key, search_text, problem_keys, district_keys) of a directory profile."""
    services = [s for s in profile.get("services", []) if isinstance(s, dict)]
    address = profile.get("address") or {}
    words = [name, slug, region or "", *(str(v) for v in address.values() if v)]
    problems: set[str] = set()
    districts = {_fold(str(d)).replace("|", " ") for d in profile.get("districts", [])}
    for service in services:
        words += [str(service.get(k) or "") for k in ("name", "description", "code")]
        problems.update(str(p) for p in service.get("problems", []))
        if service.get("code"):
            problems.add(str(service["code"]))
        districts.update(_fold(str(d)).replace("|", " ") for d in service.get("districts", []))
    words += sorted(districts)

    def joined(terms: set[str]) -> str:
        return "|" + "|".join(sorted(t for t in terms if t)) + "|" if any(terms) else ""

    return (
        _fold(region) if region else None,
        _fold(" ".join(w for w in words if w)),
        joined(problems),
        joined(districts),
    )


def downgrade() -> None:
    with op.batch_alter_table("referral", schema=None) as batch:
        batch.drop_column("service_code")
    with op.batch_alter_table("tenant", schema=None) as batch:
        batch.drop_column("district_keys")
        batch.drop_column("problem_keys")
