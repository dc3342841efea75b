"""Dates at the ends of the calendar, on every route that takes a date or a time (API bodies, query parameters, staff
forms), on SQLite and PostgreSQL: a 400 naming the field, nothing stored; and a date stored before the bounds existed
never breaks a page.

The field-by-field table of request bodies is tests/unit/tenants/test_calendar.py; here each route is driven once
per edge, with the offsets on either side.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from exchange.cases.models import Case, Consent
from exchange.referrals.models import Referral
from gateway.runtime import Runtime
from tenants.calendar import YEARS_PATTERN
from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.factories import access_token, make_client
from tests.integration.helpers.agencies import Agency, agency, open_case, referral_body
from tests.integration.helpers.web import act_as, consent_fields, form, ok, referral_fields, staff

# Year 1 east of UTC has no UTC instant at all, year 9999 west of it neither; the others are just outside the range.
INSTANTS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31T23:59:59Z", "2201-01-01T00:00:00Z"]
DAYS = ["0001-01-01", "9999-12-31", "1899-12-31", "2201-01-01"]
RANGE = "must lie between 1900-01-01 and 2200-12-31"


def test_the_openapi_document_states_the_range_of_every_date_and_time(app: Any) -> None:
    """Each date or time a request takes (parameter or body member, wherever it is nested) names the accepted years."""
    document = app.openapi_schema.to_schema()
    unbounded: list[str] = []

    def walk(schema: Any, where: str, pattern: str | None = None) -> None:
        if isinstance(schema, dict):
            pattern = schema.get("pattern", pattern)
            if schema.get("format") in ("date", "date-time") and pattern != YEARS_PATTERN:
                unbounded.append(where)
            for key, value in schema.items():
                walk(value, f"{where}.{key}", pattern if key == "oneOf" else None)
        elif isinstance(schema, list):
            for index, value in enumerate(schema):
                walk(value, f"{where}[{index}]", pattern)

    inputs = {
        name
        for name, schema in document["components"]["schemas"].items()
        if schema.get("additionalProperties") is False
    }  # request bodies (Strict)
    for name in inputs:
        walk(document["components"]["schemas"][name], name)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                walk(parameter["schema"], f"{method.upper()} {path} {parameter['name']}")
    assert len(inputs) >= 10
    assert unbounded == []


def _refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == "/problems/validation", problem
    assert problem["errors"][0]["field"] == field, problem
    assert problem["errors"][0]["code"] == "calendar"
    assert f"{field} {RANGE}" in problem["detail"]


async def _count(runtime: Runtime, model: Any) -> int:
    async with platform_session(runtime.sessions) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _tenant(runtime: Runtime, member: Agency) -> Tenant:
    async with platform_session(runtime.sessions) as session:
        return await session.get_one(Tenant, member.id)


@pytest.fixture
async def pair(api: httpx.AsyncClient, runtime: Runtime) -> tuple[Agency, Agency]:
    return (
        await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST),
        await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE),
    )


async def test_api_bodies_and_parameters_refuse_the_ends_of_the_calendar(
    pair: tuple[Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka = pair
    case, consent = await open_case(centre, opeka)
    subject = case["subjects"][0]["id"]
    dpo_client = await make_client(runtime, await _tenant(runtime, centre), role=Role.DPO)
    dpo = {"Authorization": f"Bearer {await access_token(centre.api, dpo_client)}"}
    counts = [await _count(runtime, m) for m in (Case, Consent, Referral)]
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    consent_body = {
        "subject_id": subject,
        "given_by": {"name": "Иванова Ольга", "relation": "parent"},
        "purposes": ["social_support"],
        "categories": ["identity"],
        "recipients": {"tenants": [str(opeka.id)]},
        "valid_until": soon,
    }
    task = {
        "title": "Обследование",
        "to_tenant_id": str(opeka.id),
        "expected_result": "Акт",
        "complete_by": soon,
        "purpose": "social_support",
        "problem": "p",
        "requested_service": "s",
        "subject_ids": [subject],
        "categories": ["identity"],
        "legal_basis": {"type": "consent"},
    }
    plan = {
        "case_id": case["id"],
        "title": "План",
        "period_from": "2026-01-01",
        "period_until": "2026-06-30",
        "tasks": [task],
    }
    for day in DAYS:
        person = {"ref": "child 2", "full_name": "Иванов Пётр", "role": "child", "birth_date": day}
        _refused(await centre.post("/api/v1/cases", {"title": "Семья", "subjects": [person]}), "subjects[0].birth_date")
        for name in ("period_from", "period_until"):
            _refused(await centre.post("/api/v1/plans", {**plan, name: day}), name)
        for name in ("from", "until"):
            period = {"from": "2026-01-01", "until": "2026-01-31", name: day}
            for path in ("/api/v1/reports/referrals", "/api/v1/reports/referrals/chart.svg"):
                refused = await centre.api.get(path, params=period, headers=dpo | centre.headers)
                _refused(refused, name)
    for instant in INSTANTS:
        for name in ("valid_until", "valid_from"):
            _refused(await centre.post(f"/api/v1/cases/{case['id']}/consents", {**consent_body, name: instant}), name)
        for name in ("respond_by", "complete_by"):
            _refused(
                await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"], **{name: instant})),
                name,
            )
            _refused(
                await centre.post("/api/v1/plans", {**plan, "tasks": [{**task, name: instant}]}), f"tasks[0].{name}"
            )
        for name in ("since", "until"):
            for path in ("/api/v1/audit/events", "/api/v1/audit/anomalies"):
                _refused(await centre.api.get(path, params={name: instant}, headers=dpo), name)
    assert [await _count(runtime, m) for m in (Case, Consent, Referral)] == counts
    assert consent["status"] == "active"


async def test_staff_forms_refuse_the_ends_of_the_calendar_in_the_users_language(
    api: httpx.AsyncClient, pair: tuple[Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka = pair
    case, _ = await open_case(centre, opeka)
    act_as(api, await staff(runtime, await _tenant(runtime, centre), Role.SPECIALIST))
    case_path = f"/cases/{case['id']}"
    counts = [await _count(runtime, m) for m in (Case, Consent, Referral)]
    for language, expected in (
        ("en", "enter a date from 1900-01-01 to 2200-12-31"),
        ("ru", "укажите дату от 1900-01-01 до 2200-12-31"),
    ):
        api.headers["Accept-Language"] = language
        for day in ("0001-01-01", "9999-12-31", "2201-01-01"):
            opened = await form(
                api,
                "/cases/new",
                {"title": "Семья", "subject-0-name": "Иванов Пётр", "subject-0-role": "child", "subject-0-birth": day},
            )
            assert opened.status_code == 400
            assert expected in opened.text
            recorded = await form(
                api,
                f"{case_path}/consents/new",
                consent_fields(case, day),
            )
            assert expected in ok(await api.get(recorded.headers["location"]))
            for name in ("respond_by", "complete_by"):
                sent = await form(
                    api,
                    f"{case_path}/referrals/new",
                    {**referral_fields(case, opeka.id), "categories": "identity", name: day},
                )
                assert sent.status_code == 400
                assert expected in sent.text
                assert "Traceback" not in sent.text
    assert [await _count(runtime, m) for m in (Case, Consent, Referral)] == counts


async def test_dates_stored_before_the_bounds_never_break_a_page(
    api: httpx.AsyncClient, pair: tuple[Agency, Agency], runtime: Runtime
) -> None:
    """The probe's consent valid until 9999-12-31 made its case's page answer 500 for everyone, for good: such rows
    may still be in a database, so every page shows them (in UTC, where the deployment's zone has no such time)."""
    centre, opeka = pair
    case, consent = await open_case(centre, opeka)
    last = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    first = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    second, _ = await open_case(centre, opeka)
    async with platform_session(runtime.sessions) as session, session.begin():
        await session.execute(update(Consent).where(Consent.id == consent["id"]).values(valid_until=last))
        await session.execute(update(Consent).where(Consent.case_id == second["id"]).values(valid_from=first))
    act_as(api, await staff(runtime, await _tenant(runtime, centre), Role.SPECIALIST))
    for language in ("ru", "en"):
        api.headers["Accept-Language"] = language
        for path in (
            f"/cases/{case['id']}",
            f"/cases/{second['id']}",
            "/dashboard",
            "/cases",
            f"/cases/{case['id']}/referrals/new?to={opeka.id}",
        ):
            page = ok(await api.get(path))
            assert "Traceback" not in page
        assert "9999" in ok(await api.get(f"/cases/{case['id']}"))
    listed = await centre.get(f"/api/v1/cases/{case['id']}/consents")
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["valid_until"].startswith("9999-12-31T23:59:59")
