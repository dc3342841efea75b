"""Access functions: the only way to reach a tenant's rows. A foreign row and a missing row look the same.

Every kind of tenant-scoped row has one, built by `RowAccess` and called the same way everywhere:
`access_X(session, principal, row_id, *, for_write=...)`, with no default for the flag so that every caller decides.
The row is looked up by its key within the caller's tenant; another tenant's id answers exactly as a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tenants.errors import Forbidden, NotFound
from tenants.models import ApiClient, Role, Tenant, User
from tenants.principal import Principal

M = TypeVar("M")
# Whether `principal` may have the row it reached, for reading (False) or for changing it (True).
Permits = Callable[[Principal, M, bool], bool]


def written_by(*roles: Role) -> Permits[Any]:
    """Anyone of the tenant may read the row; only these roles may change it."""
    return lambda principal, _row, for_write: not for_write or principal.has_role(*roles)


class RowAccess(Generic[M]):
    """The access function of one kind of tenant-scoped row."""

    __slots__ = ("_missing", "_permits", "_refusal", "_statement")

    def __init__(
        self,
        model: type[M],
        key: InstrumentedAttribute[uuid.UUID],
        tenant: InstrumentedAttribute[uuid.UUID] | InstrumentedAttribute[uuid.UUID | None],
        *,
        missing: str,
        permits: Permits[M],
        refusal: str,
    ) -> None:
        # Built once: building a statement costs more than running it on SQLite, and every request starts here.
        self._statement = select(model).where(key == bindparam("row_id"), tenant == bindparam("tenant_id"))
        self._missing = missing
        self._permits = permits
        self._refusal = refusal

    async def __call__(self, session: AsyncSession, principal: Principal, row_id: uuid.UUID, *, for_write: bool) -> M:
        row = await session.scalar(self._statement, {"row_id": row_id, "tenant_id": principal.tenant_id})
        if row is None:
            raise NotFound(self._missing)
        if not self._permits(principal, row, for_write):
            raise Forbidden(self._refusal)
        return row


def _user_permits(principal: Principal, user: User, for_write: bool) -> bool:
    """Writing needs the tenant_admin role; so does reading anyone's record but one's own."""
    return (not for_write and principal.actor_id == user.id) or principal.has_role(Role.TENANT_ADMIN)


access_user = RowAccess(
    User,
    User.id,
    User.tenant_id,
    missing="No such user.",
    permits=_user_permits,
    refusal="Only the tenant's administrator may manage other users.",
)
access_client = RowAccess(
    ApiClient,
    ApiClient.id,
    ApiClient.tenant_id,
    missing="No such API client.",
    permits=written_by(Role.TENANT_ADMIN),
    refusal="Only the tenant's administrator may manage API clients.",
)
# A tenant's own row is the only one it reaches (its id is its tenant): callers pass `principal.tenant_id`.
access_tenant = RowAccess(
    Tenant,
    Tenant.id,
    Tenant.id,
    missing="No such organisation.",
    permits=written_by(Role.SUPERVISOR, Role.TENANT_ADMIN),
    refusal="Only a supervisor or the tenant's administrator may change the organisation's profile.",
)
