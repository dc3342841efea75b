"""The DPO console's "find a person" form over HTTP: the report of the person named, exact matches only, no list of
anyone, the organisation's own people only, CSRF and the DPO role required, and each search recorded."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from gateway.runtime import Runtime
from tenants.models import Role, Tenant, TenantKind
from tests.factories import access_token, make_client, make_tenant
from tests.integration.helpers.web import act_as, form, page, recorded, staff

LOOKUP = "/dpo/subjects/lookup"
MARIA = {"full_name": "Иванова Мария Петровна", "birth_date": "2015-04-12"}


async def open_case(api: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, snils: str | None = None) -> str:
    """A case of `tenant` naming Maria (with her SNILS when given), opened by its system; her subject id."""
    client = await make_client(runtime, tenant)
    token = await access_token(api, client)
    subject = {"ref": "child 1", "role": "child", **MARIA, "identifiers": {"snils": snils} if snils else {}}
    created = await api.post(
        "/api/v1/cases",
        json={"title": "Семья Ивановых", "subjects": [subject]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["subjects"][0]["id"])


async def lookups(runtime: Runtime, tenant_id: uuid.UUID) -> list[dict[str, object]]:
    return await recorded(runtime, tenant_id, "audit:subject:lookup")


@pytest.fixture
def english(api: httpx.AsyncClient) -> httpx.AsyncClient:
    api.headers["Accept-Language"] = "en"
    return api


async def test_the_dpo_finds_a_person_with_the_form(english: httpx.AsyncClient, runtime: Runtime) -> None:
    api = english
    centre = await make_tenant(runtime, "semya", kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    subject_id = await open_case(api, runtime, centre, snils="112-233-445 95")
    act_as(api, await staff(runtime, centre, Role.DPO))

    empty = page(await api.get("/dpo/subjects"))
    assert {"full_name", "birth_date", "snils"} <= {f.get("name") for f in empty.inputs}
    assert "Find a person" in (await api.get("/dpo/subjects")).text

    response = await form(api, LOOKUP, {"full_name": "  ИВАНОВА   мария петровна", "birth_date": "2015-04-12"})
    page(response)
    assert "<code>exchange:case:create</code>" in response.text
    assert "Centre Semya" in response.text
    assert "Records of this person" in response.text
    assert f"/dpo/subjects/{subject_id}/report" not in response.text
    # The details stay in the form's body: the page posts them again for its files, never puts them in a link.
    assert 'form="lookup" name="format" value="pdf"' in response.text
    assert "Иванова" not in response.text  # only what was typed is shown again, as it was typed
    assert 'href="/dpo/subjects/lookup?' not in response.text

    with_snils = await form(api, LOOKUP, {**MARIA, "snils": "11223344595"})
    page(with_snils)
    assert "<code>exchange:case:create</code>" in with_snils.text
    as_csv = await form(api, LOOKUP, {**MARIA, "format": "csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert "exchange:case:create" in as_csv.text
    assert "Иванова" not in as_csv.text
    as_pdf = await form(api, LOOKUP, {**MARIA, "format": "pdf"})
    assert (as_pdf.status_code, as_pdf.headers["content-type"]) == (200, "application/pdf")

    nobody = await form(api, LOOKUP, {**MARIA, "birth_date": "2015-04-13"})
    page(nobody, status=404, alert=True)
    assert "only an exact match is found" in nobody.text
    wrong_snils = await form(api, LOOKUP, {**MARIA, "snils": "999-999-999 99"})
    page(wrong_snils, status=404, alert=True)
    invalid = await form(api, LOOKUP, {"full_name": " ", "birth_date": "12.04.2015", "snils": "12345"})
    checked = page(invalid, status=400)
    assert "Enter the person&#39;s full name" in invalid.text
    assert "A SNILS has 11 digits" in invalid.text
    assert "Enter a date from" in invalid.text
    assert checked.inputs

    recorded = await lookups(runtime, centre.id)
    assert [e["outcome"] for e in recorded].count("success") == 4
    assert [e["outcome"] for e in recorded].count("denied") == 2
    for event in recorded:
        text = json.dumps(event, ensure_ascii=False).casefold()
        assert "иванова" not in text
        assert "2015-04-12" not in text
        assert "11223344595" not in text


async def test_several_people_and_other_organisations_and_roles(english: httpx.AsyncClient, runtime: Runtime) -> None:
    api = english
    centre = await make_tenant(runtime, "semya", kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    opeka = await make_tenant(runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY, name="Opeka")
    await open_case(api, runtime, centre, snils="111-111-111 11")
    await open_case(api, runtime, centre, snils="222-222-222 22")
    act_as(api, await staff(runtime, centre, Role.DPO))
    several = await form(api, LOOKUP, MARIA)
    page(several, status=409, alert=True)
    assert "More than one person" in several.text
    assert "<table" not in several.text
    page(await form(api, LOOKUP, {**MARIA, "snils": "222-222-222 22"}))

    # The partner's DPO finds nobody: Maria is the centre's.
    act_as(api, await staff(runtime, opeka, Role.DPO))
    foreign = await form(api, LOOKUP, {**MARIA, "snils": "222-222-222 22"})
    page(foreign, status=404, alert=True)
    assert "<code>exchange:case:create</code>" not in foreign.text

    # Other roles get the refusal every DPO page gives them; without the CSRF token nothing is looked up.
    act_as(api, await staff(runtime, centre, Role.SPECIALIST, Role.SUPERVISOR, Role.TENANT_ADMIN))
    refused = await form(api, LOOKUP, MARIA)
    refused_page = await api.get("/dpo/subjects")
    assert refused.status_code == refused_page.status_code == 403
    assert "Not allowed" in refused.text
    assert "Not allowed" in refused_page.text
    act_as(api, await staff(runtime, centre, Role.DPO))
    assert (await api.post(LOOKUP, data=MARIA)).status_code == 403
    assert len(await lookups(runtime, centre.id)) == 2
