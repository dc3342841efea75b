"""A suspension ends a tenant's credentials for good: access tokens, staff sessions and open invitations issued
before it stay dead after the tenant is reactivated, whichever process suspends it, at no cost per request."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from gateway.runtime import Runtime
from tenants import admin, services
from tenants.models import Role, StaffSession, Tenant
from tenants.persistence import platform_session
from tenants.principal import ActorKind, Principal
from tests.environment import TravelClock
from tests.factories import ClientKey, access_token, make_client, make_tenant
from tests.integration.helpers.web import (
    Client,
    enrolled_staff,
    page,
    redirected,
    signed_in,
    submit_password,
    use_session,
)
from tests.perf.statements import REQUEST, StatementCounter
from tests.polling import eventually
from tests.processes import CASEBRIDGE

pytestmark = pytest.mark.usefixtures("english")  # these tests read the English pages

DIRECTORY = "/api/v1/directory/tenants"


async def _set_status(runtime: Runtime, tenant: Tenant, status: str) -> None:
    async with platform_session(runtime.sessions) as session, session.begin():
        await services.set_tenant_status(session, slug=tenant.slug, status=status)


async def _cli_set_status(runtime: Runtime, tenant: Tenant, status: str) -> None:
    """`casebridge tenant suspend|activate` in a process of its own, on the same database and master key."""
    paths = runtime.settings.paths
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")} | {
        "CASEBRIDGE_DATABASE_URL": runtime.settings.database.url,
        "CASEBRIDGE_DATA_DIR": str(paths.data_dir),
        "CASEBRIDGE_MASTER_KEY_FILE": str(paths.master_key_file),
    }
    command = "suspend" if status == "suspended" else "activate"
    process = await asyncio.create_subprocess_exec(
        CASEBRIDGE,
        "tenant",
        command,
        "--slug",
        tenant.slug,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode()


async def test_tokens_issued_before_a_suspension_stay_dead_after_reactivation(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    tenant = await make_tenant(runtime)
    client = await make_client(runtime, tenant)
    before = {"Authorization": f"Bearer {await access_token(api, client)}"}
    assert (await api.get(DIRECTORY, headers=before)).status_code == 200

    await _set_status(runtime, tenant, "suspended")
    suspended = await api.get(DIRECTORY, headers=before)
    assert suspended.status_code == 403
    assert suspended.json()["type"] == "/problems/tenant-suspended"

    await _set_status(runtime, tenant, "active")
    revived = await api.get(DIRECTORY, headers=before)
    assert revived.status_code == 401
    assert revived.json()["type"] == "/problems/invalid-token"
    assert "before the organisation was suspended" in revived.json()["detail"]
    # The client itself was not revoked: new tokens work.
    await _fresh_token_works(api, client)


async def _fresh_token_works(api: httpx.AsyncClient, client: ClientKey) -> dict[str, str]:
    """Headers with a token that works. `iat` has whole seconds, so a token issued in the very second of a
    suspension counts as issued before it: the first one that works may be a second away."""

    async def works() -> dict[str, str] | None:
        headers = {"Authorization": f"Bearer {await access_token(api, client)}"}
        return headers if (await api.get(DIRECTORY, headers=headers)).status_code == 200 else None

    # A bound, not a timing: on a loaded machine a token request and a call may take seconds each.
    found: dict[str, str] = await eventually(works, within=30.0)
    return found


async def test_checking_the_suspension_costs_no_statement(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """The per-request client confirmation reads the suspension moment with the client's row, in the same query."""
    never, once = await make_tenant(runtime), await make_tenant(runtime)
    await _set_status(runtime, once, "suspended")
    await _set_status(runtime, once, "active")
    headers = {
        "never": await _fresh_token_works(api, await make_client(runtime, never)),
        "once": await _fresh_token_works(api, await make_client(runtime, once)),
    }
    counter = StatementCounter(runtime.engine)
    for name in headers:
        label = REQUEST.set(name)
        try:
            assert (await api.get(DIRECTORY, headers=headers[name])).status_code == 200
        finally:
            REQUEST.reset(label)
    assert counter.counts["never"] > 0
    assert counter.counts["once"] == counter.counts["never"]


async def test_staff_sessions_and_invitations_end_with_a_suspension(
    app: Litestar, api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff = await enrolled_staff(runtime, clock)
    full = await signed_in(api, staff, clock)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type] # Litestar's scope TypedDicts vs httpx's
    async with httpx.AsyncClient(
        transport=transport, base_url=str(api.base_url), headers={"Accept-Language": "en"}
    ) as halfway:
        # Another browser past the password only, and an invitation nobody has accepted yet.
        redirected(await submit_password(halfway, staff.user.email, staff.password), "/login/second-factor")
        administrator = Principal(staff.tenant.id, ActorKind.USER, staff.user.id, frozenset({Role.TENANT_ADMIN}), None)
        async with platform_session(runtime.sessions) as session, session.begin():
            invited = await admin.invite_user(
                session,
                runtime.clock,
                principal=administrator,
                email=f"new-{uuid.uuid4().hex[:6]}@example.org",
                roles=[Role.SPECIALIST],
                display_name=None,
                valid_for=dt.timedelta(days=3),
            )
        invitation = f"/account/invitation/{invited.token}"
        assert (await api.get(invitation)).status_code == 200

        await _set_status(runtime, staff.tenant, "suspended")
        await _set_status(runtime, staff.tenant, "active")

        redirected(await api.get("/"), "/login")
        redirected(await halfway.get("/login/second-factor"), "/login")
        assert (await api.get(invitation)).status_code == 404
    async with platform_session(runtime.sessions) as session:
        ended = list(
            await session.scalars(select(StaffSession.ended_at).where(StaffSession.tenant_id == staff.tenant.id))
        )
    assert len(ended) == 3  # the signed-in browser's, its half-way session before it, and the other browser's
    assert None not in ended
    use_session(api, full)
    redirected(await api.get("/"), "/login")
    # The account itself is untouched: its owner signs in again.
    redirected(await submit_password(api, staff.user.email, staff.password), "/login/second-factor")


async def test_a_suspension_by_another_process_ends_tokens_and_sessions_here(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff = await enrolled_staff(runtime, clock)
    await signed_in(api, staff, clock)
    client = await make_client(runtime, staff.tenant)
    bearer = {"Authorization": f"Bearer {await access_token(api, client)}"}
    page(await api.get("/account/profile"))

    await _cli_set_status(runtime, staff.tenant, "suspended")
    assert (await api.get(DIRECTORY, headers=bearer)).status_code == 403
    await _cli_set_status(runtime, staff.tenant, "active")

    assert (await api.get(DIRECTORY, headers=bearer)).status_code == 401
    redirected(await api.get("/"), "/login")
    # Other tenants carry on, and this one's systems get new tokens.
    await _fresh_token_works(api, await make_client(runtime, await make_tenant(runtime)))
    await _fresh_token_works(api, client)
