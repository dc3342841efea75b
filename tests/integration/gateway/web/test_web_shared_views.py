"""The dashboard's views of outgoing referrals over HTTP: "shared by me" keeps those of the worker's own cases,
"shared by my team" shows the whole agency's, an unknown view is the team's; "shared with me" is the inbox's tab."""

from __future__ import annotations

from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tests.integration.helpers.agencies import agency, key_worker_referral, tenant_of
from tests.integration.helpers.web import Client, act_as, new_session, ok, staff_user


async def test_shared_by_me_and_by_my_team(english: Client, runtime: Runtime) -> None:
    api = english
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    tenant = await tenant_of(runtime, centre)
    anna = await staff_user(runtime, tenant, Role.SPECIALIST)
    boris = await staff_user(runtime, tenant, Role.SPECIALIST)
    annas = await key_worker_referral(centre, opeka, anna)
    boriss = await key_worker_referral(centre, opeka, boris)
    act_as(api, await new_session(runtime, anna.id))

    team = ok(await api.get("/dashboard"))
    assert f"/referrals/{annas}" in team
    assert f"/referrals/{boriss}" in team
    assert 'href="?shared=team" aria-current="page"' in team
    assert 'href="/inbox?tab=mine">Shared with me' in team

    mine = ok(await api.get("/dashboard?shared=me"))
    assert f"/referrals/{annas}" in mine
    assert f"/referrals/{boriss}" not in mine
    assert 'href="?shared=me" aria-current="page"' in mine
    assert "cases you are key worker of" in mine

    unknown = ok(await api.get("/dashboard?shared=everyone"))
    assert f"/referrals/{boriss}" in unknown
    assert "Shared with me" in ok(await api.get("/inbox?tab=mine"))
    russian = ok(await api.get("/dashboard?shared=me", headers={"Accept-Language": "ru"}))
    assert "Отправленные мной" in russian
    assert "Отправленные моей командой" in russian
