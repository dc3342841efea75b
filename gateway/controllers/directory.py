"""The partner directory: which agencies exist, what they do, where, and how to reach their keys."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, put
from litestar.params import FromQuery, JSONBody, QueryParameter

from audit.events import Action
from gateway.auth.guards import needs
from gateway.controllers.context import principal_of, runtime_of, tenant_transaction
from gateway.controllers.metadata import tenant_jwks_url
from gateway.runtime import Runtime
from tenants.models import Role, Scope, Tenant, TenantKind
from tenants.persistence import platform_session
from tenants.schemas import DirectoryEntry, DirectoryPage, DirectoryStats, ProfileUpdate
from tenants.services import search_directory, update_profile

_ANY_STAFF = [r.value for r in Role]


class DirectoryController(Controller):
    path = "/api/v1/directory"
    tags = ("directory",)

    # The directory holds only what agencies publish about themselves: no tenant data, nothing to audit.
    @get("/tenants", opt=needs(Scope.DIRECTORY_READ, _ANY_STAFF, None), summary="Search partner agencies")
    async def list_tenants(
        self,
        request: Request[Any, Any, Any],
        kind: FromQuery[TenantKind | None] = None,
        region: Annotated[str | None, QueryParameter(max_length=128)] = None,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> DirectoryPage:
        runtime: Runtime = request.app.state.runtime
        # The directory is shared by every tenant: a platform-scoped read of public profiles only.
        async with platform_session(runtime.sessions) as session:
            tenants = await search_directory(session, kind=kind, region=region, text=q)
        return DirectoryPage(items=[_entry(t, runtime.settings.server.base_url) for t in tenants])

    @put(
        "/profile",
        opt=needs(Scope.DIRECTORY_WRITE, [Role.SUPERVISOR, Role.TENANT_ADMIN], Action.TENANTS_PROFILE_UPDATE),
        summary="Publish the caller's own directory profile",
    )
    async def put_profile(self, request: Request[Any, Any, Any], data: JSONBody[ProfileUpdate]) -> DirectoryEntry:
        async with tenant_transaction(request) as session:
            tenant = await update_profile(session, principal=principal_of(request), profile=data)
        return _entry(tenant, runtime_of(request).settings.server.base_url)


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
        status=tenant.status,
    )
