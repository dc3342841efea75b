"""The partner directory: which agencies exist, what they do, where, and how to reach their keys."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.params import Parameter

from gateway.auth.guards import ROLES, SCOPE
from gateway.controllers.metadata import tenant_jwks_url
from gateway.runtime import Runtime
from tenants.models import Role, Scope, Tenant, TenantKind
from tenants.persistence import platform_session
from tenants.schemas import DirectoryEntry, DirectoryPage, DirectoryStats
from tenants.services import search_directory

_ANY_STAFF = [r.value for r in Role]


class DirectoryController(Controller):
    path = "/api/v1/directory"
    tags = ["directory"]

    @get("/tenants", opt={SCOPE: Scope.DIRECTORY_READ, ROLES: _ANY_STAFF}, summary="Search partner agencies")
    async def list_tenants(
        self,
        request: Request[Any, Any, Any],
        kind: TenantKind | None = None,
        region: str | None = Parameter(default=None, max_length=128),
        q: str | None = Parameter(default=None, max_length=200),
    ) -> DirectoryPage:
        runtime: Runtime = request.app.state.runtime
        # The directory is shared by every tenant: a platform-scoped read of public profiles only.
        async with platform_session(runtime.sessions) as session:
            tenants = await search_directory(session, kind=kind, region=region, text=q)
        return DirectoryPage(items=[_entry(t, runtime.settings.server.base_url) for t in tenants])


def _entry(tenant: Tenant, base_url: str) -> DirectoryEntry:
    return DirectoryEntry(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        kind=tenant.kind,
        region=tenant.region,
        services=list(tenant.service_profile.get("services", [])),
        jwks_url=tenant_jwks_url(base_url, tenant.id),
        stats=DirectoryStats(),
        contacts=tenant.contacts,
    )
