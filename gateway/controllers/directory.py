"""The partner directory: which agencies exist, what they do, where, how they really answer, and their keys."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, put
from litestar.params import FromQuery, JSONBody, QueryParameter

from audit.events import Action
from exchange.reports.statistics import directory_with_figures, entry_with_figures
from gateway.auth.guards import needs
from gateway.controllers.context import open_context, runtime_of
from gateway.controllers.metadata import tenant_jwks_url
from tenants.directory import DirectoryQuery, update_profile
from tenants.models import Role, Scope, TenantKind
from tenants.persistence import platform_session
from tenants.schemas import DirectoryEntry, DirectoryPage, ProfileUpdate

_ANY_STAFF = [r.value for r in Role]


class DirectoryController(Controller):
    path = "/directory"
    tags = ("directory",)

    # The directory holds what agencies publish about themselves and aggregate figures computed from referral
    # timelines (no case, subject or single referral in them): no tenant data, nothing to audit.
    @get("/tenants", opt=needs(Scope.DIRECTORY_READ, _ANY_STAFF, None), summary="Search partner agencies")
    async def list_tenants(
        self,
        request: Request[Any, Any, Any],
        kind: FromQuery[TenantKind | None] = None,
        region: Annotated[str | None, QueryParameter(max_length=128)] = None,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
        problem: Annotated[
            str | None,
            QueryParameter(max_length=64, pattern=r"^[a-z][a-z0-9_]*$", description="a problem category code"),
        ] = None,
        district: Annotated[str | None, QueryParameter(max_length=128)] = None,
    ) -> DirectoryPage:
        runtime = runtime_of(request)
        query = DirectoryQuery(kind=kind, region=region, problem=problem, district=district, text=q)
        # The directory is shared by every tenant, and the figures read every sender's copy: a platform-scoped read.
        async with platform_session(runtime.sessions) as session:
            items = await directory_with_figures(
                session,
                query,
                now=runtime.exchange.clock.now(),
                jwks_url=lambda tenant_id: tenant_jwks_url(runtime.settings.server.base_url, tenant_id),
            )
        return DirectoryPage(items=items)

    @put(
        "/profile",
        opt=needs(Scope.DIRECTORY_WRITE, [Role.SUPERVISOR, Role.TENANT_ADMIN], Action.TENANTS_PROFILE_UPDATE),
        summary="Publish the caller's own directory profile",
    )
    async def put_profile(self, request: Request[Any, Any, Any], data: JSONBody[ProfileUpdate]) -> DirectoryEntry:
        runtime = runtime_of(request)
        # Opened here, not injected: the directory entry is read after the change commits, in a platform session.
        async with open_context(request) as ctx:
            tenant = await update_profile(ctx.session, principal=ctx.principal, profile=data)
        # Answer with the entry as the directory now shows it: the figures read every sender's copy (platform scope).
        async with platform_session(runtime.sessions) as session:
            return await entry_with_figures(
                session,
                tenant,
                now=runtime.exchange.clock.now(),
                jwks_url=tenant_jwks_url(runtime.settings.server.base_url, tenant.id),
            )
