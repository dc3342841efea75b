"""Staff sign-in lands in the organisation's audit trail: sign-ins, refusals and lockouts, without typed addresses."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import select

from audit.models import AuditEvent
from gateway.runtime import Runtime
from tenants.persistence import platform_session
from tests.conftest import TravelClock
from tests.factories import make_tenant, make_user
from tests.integration.helpers.web import Client, enrolled_staff, signed_in, submit_code, submit_password

pytestmark = pytest.mark.usefixtures("english")  # these tests read the English pages

SIGN_IN = "tenants:session:sign-in"
FAILED = "tenants:session:sign-in-failed"
LOCKED = "tenants:session:locked"


async def _sign_in_events(runtime: Runtime, tenant_id: uuid.UUID | None) -> list[dict[str, object]]:
    async with platform_session(runtime.sessions) as session:
        query = (
            select(AuditEvent)
            .where(AuditEvent.action.in_((SIGN_IN, FAILED, LOCKED)))
            .order_by(AuditEvent.recorded_at, AuditEvent.id)
        )
        query = query.where(
            AuditEvent.log_tenant_id.is_(None) if tenant_id is None else AuditEvent.log_tenant_id == tenant_id
        )
        return [json.loads(e.canonical) for e in await session.scalars(query)]


async def test_a_completed_sign_in_is_recorded_for_the_users_organisation(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff = await enrolled_staff(runtime, clock)
    await signed_in(api, staff, clock)

    [event] = await _sign_in_events(runtime, staff.tenant.id)
    assert event["action"] == SIGN_IN
    assert event["outcome"] == "success"
    assert event["actor"]["id"] == str(staff.user.id)  # type: ignore[index]
    assert event["actor"]["tenant"] == str(staff.tenant.id)  # type: ignore[index]
    assert event["source"]
    assert staff.user.email not in json.dumps(event)


async def test_wrong_passwords_and_the_lockout_are_recorded(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    user = await make_user(runtime, await make_tenant(runtime))
    for _ in range(runtime.lockout.max_failures):
        await submit_password(api, user.email, "not the password")
    await submit_password(api, user.email)  # the right password, but locked

    events = await _sign_in_events(runtime, user.tenant_id)
    actions = [e["action"] for e in events]
    assert actions == [FAILED] * runtime.lockout.max_failures + [LOCKED, FAILED]
    assert all(e["outcome"] == "denied" for e in events)
    assert events[-1]["reason"] == "password: locked"
    assert all(e["actor"]["id"] == str(user.id) for e in events)  # type: ignore[index]

    clock.advance(runtime.lockout.lock_for + dt.timedelta(seconds=1))
    await submit_password(api, user.email)
    # Half a sign-in (the second factor is still to come) is not yet a sign-in.
    assert [e["action"] for e in await _sign_in_events(runtime, user.tenant_id)] == actions


async def test_wrong_second_factor_codes_are_recorded(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    await submit_password(api, staff.user.email, staff.password)
    await submit_code(api, "000000x")

    [event] = await _sign_in_events(runtime, staff.tenant.id)
    assert (event["action"], event["reason"]) == (FAILED, "second-factor: invalid")


async def test_an_unknown_account_goes_to_the_platform_trail_without_the_address(api: Client, runtime: Runtime) -> None:
    await submit_password(api, "nobody.at.all@example.org", "whatever it is")

    events = await _sign_in_events(runtime, None)
    assert [(e["action"], e["reason"]) for e in events] == [(FAILED, "password: unknown account")]
    assert "nobody.at.all" not in json.dumps(events)
