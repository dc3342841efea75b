"""The partner directory: agencies' published service profiles (Open Referral HSDS-inspired) and their search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.access import access_tenant
from tenants.errors import InvalidInput
from tenants.models import Tenant, TenantStatus, fold
from tenants.principal import Principal
from tenants.schemas import DirectoryEntry, DirectoryStats, ProfileUpdate, ServiceEntry


@dataclass(frozen=True, slots=True)
class DirectoryQuery:
    """Filters of a directory search; each given filter must hold (AND), text words each match somewhere."""

    kind: str | None = None
    region: str | None = None
    problem: str | None = None
    district: str | None = None
    text: str | None = None


async def update_profile(session: AsyncSession, *, principal: Principal, profile: ProfileUpdate) -> Tenant:
    """Replace the acting tenant's directory profile whole (contacts, address, hours, districts and services)."""
    tenant = await access_tenant(session, principal, principal.tenant_id, for_write=True)
    services = [_with_code(i, s) for i, s in enumerate(msgspec.to_builtins(profile.services))]
    seen: dict[str, int] = {}
    for index, service in enumerate(services):
        if service["code"] in seen:
            raise InvalidInput(
                f"services[{index}] has the code {service['code']!r}, already used by services[{seen[service['code']]}]"
                "; give each service a code of its own."
            )
        seen[service["code"]] = index
    for index, hours in enumerate(profile.opening_hours):
        if hours.opens_at >= hours.closes_at:
            raise InvalidInput(f"opening_hours[{index}]: opens_at must be earlier than closes_at.")
    tenant.contacts = msgspec.to_builtins(profile.contacts)
    tenant.service_profile = {
        "services": services,
        "address": msgspec.to_builtins(profile.address) if profile.address else None,
        "districts": list(dict.fromkeys(profile.districts)),
        "opening_hours": msgspec.to_builtins(profile.opening_hours),
        "documents_required": list(profile.documents_required),
        "intake_rules": profile.intake_rules,
    }
    tenant.refresh_search_keys()
    return tenant


def _with_code(index: int, service: dict[str, Any]) -> dict[str, Any]:
    if not service.get("code"):
        if not service.get("problems"):
            raise InvalidInput(f"services[{index}] needs a code or at least one problem category.")
        service["code"] = service["problems"][0]
    service["problems"] = list(dict.fromkeys(service.get("problems", [])))
    return service


def _term(column: Any, term: str) -> ColumnElement[bool]:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%|{escaped}|%", escape="\\")  # type: ignore[no-any-return]  # SQLAlchemy's like is untyped here


async def search_directory(session: AsyncSession, query: DirectoryQuery) -> Sequence[Tenant]:
    """Active tenants matching every given filter, by name.

    Matching is done on keys folded in Python (`tenants.models.fold`), not by SQL `lower()`, which folds only ASCII on
    SQLite and under PostgreSQL's C locale: "ОПЕКА", "опека" and "Опёка" find the same agency on both databases.
    """
    statement = select(Tenant).where(Tenant.status == TenantStatus.ACTIVE).order_by(Tenant.name, Tenant.id)
    if query.kind:
        statement = statement.where(Tenant.kind == query.kind)
    if query.region and query.region.strip():
        statement = statement.where(Tenant.region_key == fold(query.region))
    if query.problem and query.problem.strip():
        statement = statement.where(_term(Tenant.problem_keys, query.problem.strip()))
    if query.district and query.district.strip():
        statement = statement.where(_term(Tenant.district_keys, fold(query.district).replace("|", " ")))
    if query.text:
        for word in fold(query.text).split():
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(Tenant.search_text.like(f"%{escaped}%", escape="\\"))
    return (await session.scalars(statement)).all()


def directory_entry(
    tenant: Tenant,
    *,
    jwks_url: str,
    stats: DirectoryStats | None = None,
    service_stats: dict[str, DirectoryStats] | None = None,
) -> DirectoryEntry:
    """The published profile of one agency, with the figures the exchange computed for it (if any)."""
    profile = tenant.service_profile or {}
    per_service = service_stats or {}
    # A service no referral named: the agency's window and threshold, no figures.
    no_history = DirectoryStats(window_days=stats.window_days, min_cell=stats.min_cell) if stats else DirectoryStats()
    services = []
    for index, raw in enumerate(profile.get("services", [])):
        problems = [str(p) for p in raw.get("problems", [])]
        # Profiles stored before services had codes: the first problem category is the code, as on update.
        code = str(raw.get("code") or (problems[0] if problems else f"service_{index + 1}"))
        services.append(
            ServiceEntry(
                code=code,
                name=str(raw.get("name", "")),
                problems=problems,
                description=raw.get("description"),
                districts=list(raw.get("districts", [])),
                documents_required=list(raw.get("documents_required", [])),
                intake_rules=raw.get("intake_rules"),
                stats=per_service.get(code) or no_history,
            )
        )
    return DirectoryEntry(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        kind=tenant.kind,
        region=tenant.region,
        services=services,
        jwks_url=jwks_url,
        stats=stats or DirectoryStats(),
        contacts=tenant.contacts,
        status=tenant.status,
        address=profile.get("address"),
        districts=list(profile.get("districts", [])),
        opening_hours=list(profile.get("opening_hours", [])),
        documents_required=list(profile.get("documents_required", [])),
        intake_rules=profile.get("intake_rules"),
    )
