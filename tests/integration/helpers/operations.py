"""Every operation of the OpenAPI document, called as the role that may call it: for the tests that send each
operation what a client may send."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from gateway.runtime import Runtime
from tenants.models import Role, Tenant
from tenants.persistence import platform_session
from tests.factories import access_token, make_client
from tests.integration.helpers.agencies import Agency


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of an OpenAPI document: (method, path, operation object)."""
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def concrete(path: str) -> str:
    """A URL for the path template: a fresh UUID for each path parameter ("validation" for a slug)."""
    return (
        path.replace("{slug}", "validation").replace("{", "").replace("}", "")
        if "{" not in path
        else "/".join(str(uuid.uuid4()) if part.startswith("{") else part for part in path.split("/"))
    )


async def role_headers(api: httpx.AsyncClient, runtime: Runtime, centre: Agency) -> dict[str, dict[str, str]]:
    """Authorization headers of `centre` for each role that calls a route (tests.factories.role_for_path)."""
    async with platform_session(runtime.sessions) as session:
        tenant = await session.get_one(Tenant, centre.id)
    tokens = {Role.SPECIALIST: centre.headers}
    for role in (Role.DPO, Role.SUPERVISOR):
        tokens[role] = {
            "Authorization": f"Bearer {await access_token(api, await make_client(runtime, tenant, role=role))}"
        }
    return tokens
