"""Who the audit trail's actors are, in words: the caller's own staff and systems by name, partners by organisation.

The audit log holds ids only (docs/audit.md); the data-protection officer's console turns them back into people and
organisations here. Staff names and email addresses are read within the caller's own tenant only, as an access
function reads a row: another organisation's user id names no one, exactly like an id that never existed. Of a
partner only its name in the public directory is given, never the names of its staff.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.errors import Forbidden
from tenants.models import ApiClient, Role, Tenant, User
from tenants.principal import Principal

# Who may see who their colleagues are beside what they did: the officer who reviews the trail, and the
# administrator who manages the accounts anyway.
NAMING_ROLES = (Role.DPO, Role.TENANT_ADMIN)


@dataclass(frozen=True, slots=True)
class StaffName:
    """A member of the caller's own staff as their colleagues know them."""

    email: str
    display_name: str | None  # None: the account was made without one


@dataclass(frozen=True, slots=True)
class ActorNames:
    """Names for the ids of some audit events; an id missing here is one the caller may not, or cannot, name."""

    staff: Mapping[uuid.UUID, StaffName] = field(default_factory=dict)
    systems: Mapping[uuid.UUID, str] = field(default_factory=dict)  # the caller's own API clients
    organisations: Mapping[uuid.UUID, str] = field(default_factory=dict)  # partners, as the directory lists them


async def actor_names(
    session: AsyncSession,
    principal: Principal,
    *,
    user_ids: Collection[uuid.UUID],
    client_ids: Collection[uuid.UUID],
    tenant_ids: Collection[uuid.UUID],
) -> ActorNames:
    """Names of the caller's own users and clients among these ids, and of the other organisations among
    `tenant_ids`. Raises Forbidden for a caller whose role does not see colleagues' names."""
    if not principal.has_role(*NAMING_ROLES):
        raise Forbidden("Only the data-protection officer or the administrator sees who the staff are.")
    mine = principal.tenant_id
    staff: dict[uuid.UUID, StaffName] = {}
    if user_ids:
        rows = await session.execute(
            select(User.id, User.email, User.display_name).where(User.tenant_id == mine, User.id.in_(set(user_ids)))
        )
        staff = {row.id: StaffName(row.email, row.display_name) for row in rows}
    systems: dict[uuid.UUID, str] = {}
    if client_ids:
        clients = await session.execute(
            select(ApiClient.id, ApiClient.name).where(ApiClient.tenant_id == mine, ApiClient.id.in_(set(client_ids)))
        )
        systems = {row.id: row.name for row in clients}
    return ActorNames(staff, systems, await organisation_names(session, set(tenant_ids) - {mine}))


async def organisation_names(session: AsyncSession, tenant_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Names of organisations, as the public directory shows them (to say which partner an audit event names)."""
    if not tenant_ids:
        return {}
    rows = await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids)))
    return {row.id: row.name for row in rows}
