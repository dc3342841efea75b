"""A referral left overdue on the dashboards over HTTP: the key worker sees it escalated to a supervisor, the
supervisor gets a list of what was escalated to them, in both languages; other agencies see none of it."""

from __future__ import annotations

import datetime as dt

from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tests.environment import TravelClock
from tests.integration.helpers.agencies import agency, key_worker_referral, tenant_of, the_one
from tests.integration.helpers.web import Client, act_as, new_session, ok, staff


async def test_the_dashboards_say_a_referral_is_escalated(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    tenant = await tenant_of(runtime, centre)
    await staff(runtime, tenant, Role.SPECIALIST)
    await staff(runtime, tenant, Role.SUPERVISOR)
    await staff(runtime, await tenant_of(runtime, opeka), Role.SUPERVISOR, Role.INTAKE)
    worker, head = (
        await the_one(runtime, tenant.id, Role.SPECIALIST),
        await the_one(runtime, tenant.id, Role.SUPERVISOR),
    )
    partner = await the_one(runtime, opeka.id, Role.SUPERVISOR)
    referral_id = await key_worker_referral(centre, opeka, worker)
    response = await centre.get(f"/api/v1/referrals/{referral_id}")
    respond_by = dt.datetime.fromisoformat(response.json()["respond_by"])
    link = f'href="/referrals/{referral_id}"'

    clock.advance(respond_by + dt.timedelta(hours=1) - clock.now())  # overdue, not yet escalated
    act_as(api, await new_session(runtime, head.id))
    assert "Escalated to you" not in ok(await api.get("/dashboard", headers={"Accept-Language": "en"}))

    clock.advance(dt.timedelta(days=1))  # still overdue the next day: escalated
    act_as(api, await new_session(runtime, worker.id))
    mine = ok(await api.get("/dashboard", headers={"Accept-Language": "en"}))
    assert "escalated to a supervisor on" in mine
    assert "Escalated to you" not in mine
    act_as(api, await new_session(runtime, head.id))
    english = ok(await api.get("/dashboard", headers={"Accept-Language": "en"}))
    escalated = english.split('id="escalated"', 1)[1].split("</ul>", 1)[0]
    assert link in escalated
    russian = ok(await api.get("/dashboard", headers={"Accept-Language": "ru"}))
    assert "Просрочены и переданы вам" in russian
    assert "передано руководителю" in russian
    assert "?escalated=" not in english  # one escalation: one page
    bad_page = await api.get("/dashboard?escalated=-1", headers={"Accept-Language": "en"})
    assert bad_page.status_code == 303

    # The partner's supervisor is its intake officer too: the copy is theirs to answer, nothing is escalated.
    act_as(api, await new_session(runtime, partner.id))
    theirs = ok(await api.get("/dashboard", headers={"Accept-Language": "en"}))
    assert "Escalated to you" not in theirs
    assert "escalated to a supervisor" not in theirs
