"""Public metadata: OAuth server metadata (RFC 8414), the gateway's and each tenant's JWKS, the node's description
for its peers, problem types."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from audit.identity import load_names
from audit.publication import checkpoint_jwks
from gateway.auth.guards import PUBLIC
from gateway.auth.oauth import ASSERTION_ALGORITHMS, AUTH_METHOD
from gateway.auth.tokens import TOKEN_ALGORITHMS
from gateway.problems import ALL_PROBLEMS
from gateway.runtime import Runtime
from gateway.urls import tenant_jwks_url as tenant_jwks_url  # re-exported: the directory and case pages use it
from tenants.algorithms import published_jwk
from tenants.models import PlatformKeyUse, Scope
from tenants.persistence import platform_session
from tenants.schemas import NodeAgency, NodeDescription
from tenants.services import hosted_tenants, tenant_exists


@get("/.well-known/oauth-authorization-server", opt={PUBLIC: True}, tags=["oauth"])
async def authorization_server_metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
    server = request.app.state.runtime.settings.server
    return {
        "issuer": server.issuer,
        "token_endpoint": server.token_endpoint,
        "jwks_uri": f"{server.base_url}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": [AUTH_METHOD],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "scopes_supported": [s.value for s in Scope],
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": TOKEN_ALGORITHMS,
    }


@get(
    "/.well-known/jwks.json",
    opt={PUBLIC: True},
    tags=["oauth"],
    summary="Keys that sign access tokens, then the audit log's checkpoint keys",
)
async def gateway_jwks(request: Request[Any, Any, Any]) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    async with platform_session(runtime.sessions) as session:
        keys = await runtime.keyring.usable_platform_keys(session, PlatformKeyUse.ACCESS_TOKEN)
        checkpoint_keys = await checkpoint_jwks(session)  # docs/audit.md: no `alg`, a `checkpoint-` kid
    return {"keys": [published_jwk(k.public_jwk) for k in keys] + checkpoint_keys}


@get(
    "/.well-known/tenants/{tenant_id:uuid}/jwks.json",
    opt={PUBLIC: True},
    tags=["directory"],
    summary="A tenant's public envelope encryption and signing keys",
)
async def tenant_jwks(request: Request[Any, Any, Any], tenant_id: FromPath[uuid.UUID]) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    async with platform_session(runtime.sessions) as session:
        if not await tenant_exists(session, tenant_id):
            raise NotFoundException()
        return await runtime.keyring.public_jwks(session, tenant_id)


@get(
    "/.well-known/casebridge-node",
    opt={PUBLIC: True},
    tags=["directory"],
    summary="This node, its audit log's name, and the agencies it hosts with their JWKS URLs (for peer nodes)",
)
async def node_description(request: Request[Any, Any, Any]) -> NodeDescription:
    runtime: Runtime = request.app.state.runtime
    base_url = runtime.settings.server.base_url
    async with platform_session(runtime.sessions) as session:
        origin = (await load_names(session)).current
        tenants = await hosted_tenants(session)
    agencies = [
        NodeAgency(
            id=t.id,
            slug=t.slug,
            name=t.name,
            kind=t.kind,
            region=t.region,
            service_profile=t.service_profile or {},
            jwks_url=tenant_jwks_url(base_url, t.id),
        )
        for t in tenants
    ]
    return NodeDescription(name=urlsplit(base_url).netloc, audit_origin=origin, tenants=agencies)


@get("/problems/{slug:str}", opt={PUBLIC: True}, tags=["problems"], summary="What a problem type means")
async def problem_type(slug: FromPath[str]) -> dict[str, Any]:
    for problem in ALL_PROBLEMS:
        if problem.slug == slug:
            return {"type": problem.uri, "title": problem.title, "status": problem.status}
    raise NotFoundException()
