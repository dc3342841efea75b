"""Opening a case over HTTP when one of its people is already on the agency's own cases: the warning names only that
agency's cases, a name alone or another agency's records raise none, ticking the box opens the case, each check is
recorded."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import func, select

from exchange.cases.models import Case
from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session
from tests.factories import make_tenant
from tests.integration.helpers.web import Client, act_as, form, page, recorded, staff

NEW = "/cases/new"
MARIA = {"subject-0-name": "Иванова Мария Петровна", "subject-0-birth": "2015-04-12", "subject-0-role": "child"}


async def cases_of(runtime: Runtime, tenant_id: uuid.UUID) -> int:
    async with platform_session(runtime.sessions) as session:
        return int(await session.scalar(select(func.count()).where(Case.tenant_id == tenant_id)) or 0)


async def checks(runtime: Runtime, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    return sorted(await recorded(runtime, tenant_id, "exchange:subjects:match"), key=lambda e: str(e["id"]))


async def test_a_person_already_on_the_agency_s_case_is_pointed_out(english: Client, runtime: Runtime) -> None:
    api = english
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    other = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Nadezhda")
    act_as(api, await staff(runtime, other, Role.SPECIALIST))
    # The other centre knows Maria too: that must never show up for the first centre, nor the reverse.
    assert (await form(api, NEW, {"title": "Elsewhere", **MARIA})).status_code == 303
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))
    first = await form(api, NEW, {"title": "Ивановы", **MARIA})
    assert first.status_code == 303, first.text
    first_case = first.headers["location"].rsplit("/", 1)[1]
    (no_one_yet,) = await checks(runtime, centre.id)  # the first case was checked too, and matched no one
    assert not no_one_yet["subjects"]

    again = {"title": "Ивановы, школа", **MARIA, "subject-0-name": "  ИВАНОВА мария   петровна"}
    again |= {"subject-1-name": "Иванова Анна", "subject-1-birth": "1990-01-01", "subject-1-role": "parent"}
    warned = await form(api, NEW, again)
    shown = page(warned, alert=True)
    assert "Already known to your agency" in warned.text
    assert f'href="/cases/{first_case}"' in warned.text
    assert warned.text.count('href="/cases/') - warned.text.count('href="/cases/new') == 1  # not the other centre's
    assert "ИВАНОВА мария   петровна" in warned.text  # what was typed is kept in the form, for the second try
    assert "Иванова Анна" in warned.text  # in her row of the form, not in the warning
    assert "given for Иванова Анна" not in warned.text
    assert "known-checked" in {f.get("name") for f in shown.inputs}
    assert await cases_of(runtime, centre.id) == 1
    check = (await checks(runtime, centre.id))[-1]
    assert check["outcome"] == "success"
    assert len(check["subjects"]) == 1
    assert check["extra"] == {"cases": [first_case]}
    assert "Иванова" not in json.dumps(check, ensure_ascii=False)

    confirmed = await form(api, NEW, {**again, "known-checked": "yes"})
    assert confirmed.status_code == 303, confirmed.text
    assert await cases_of(runtime, centre.id) == 2

    # A name alone, or another birth date, is not the same person.
    assert (await form(api, NEW, {"title": "Без даты", **MARIA, "subject-0-birth": ""})).status_code == 303
    assert (await form(api, NEW, {"title": "Другая", **MARIA, "subject-0-birth": "2016-04-12"})).status_code == 303


async def test_the_warning_is_in_russian(api: Client, runtime: Runtime) -> None:
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Центр Семья")
    act_as(api, await staff(runtime, centre, Role.SUPERVISOR))
    assert (await form(api, NEW, {"title": "Ивановы", **MARIA})).status_code == 303
    warned = await form(api, NEW, {"title": "Ивановы снова", **MARIA})
    assert warned.status_code == 200, warned.text
    assert "Уже известны вашей организации" in warned.text
    assert "всё равно открыть этот случай" in warned.text
