"""Access functions: the only way to reach a tenant's rows. A foreign row and a missing row look the same."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.errors import Forbidden, NotFound
from tenants.models import ApiClient, Role, Tenant, User
from tenants.principal import Principal


async def access_user(session: AsyncSession, principal: Principal, user_id: uuid.UUID, *, for_write: bool) -> User:
    """A user of the caller's tenant; writing needs the tenant_admin role, reading one's own record does not."""
    user = await session.scalar(select(User).where(User.id == user_id, User.tenant_id == principal.tenant_id))
    if user is None:
        raise NotFound("No such user.")
    is_self = principal.actor_id == user.id
    if (for_write or not is_self) and not principal.has_role(Role.TENANT_ADMIN):
        raise Forbidden("Only the tenant's administrator may manage other users.")
    return user


async def access_client(
    session: AsyncSession, principal: Principal, client_id: uuid.UUID, *, for_write: bool
) -> ApiClient:
    client = await session.scalar(
        select(ApiClient).where(ApiClient.id == client_id, ApiClient.tenant_id == principal.tenant_id)
    )
    if client is None:
        raise NotFound("No such API client.")
    if for_write and not principal.has_role(Role.TENANT_ADMIN):
        raise Forbidden("Only the tenant's administrator may manage API clients.")
    return client


async def access_own_tenant(session: AsyncSession, principal: Principal, *, for_write: bool) -> Tenant:
    """The caller's own organisation; changing its profile needs a supervisor or the tenant's administrator."""
    tenant = await session.scalar(select(Tenant).where(Tenant.id == principal.tenant_id))
    if tenant is None:
        raise NotFound("No such organisation.")
    if for_write and not principal.has_role(Role.SUPERVISOR, Role.TENANT_ADMIN):
        raise Forbidden("Only a supervisor or the tenant's administrator may change the organisation's profile.")
    return tenant
