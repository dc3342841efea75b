"""A deadline picked as a day is that day everywhere: on the sender's pages and the partner's, in the API, the letter
and the reminders, in both languages, whatever time zones the two agencies keep (tenants.calendar)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from gateway.runtime import Runtime
from tenants import services
from tenants.calendar import end_of_day, format_day, time_zone
from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.environment import TravelClock
from tests.integration.helpers.agencies import Agency, agency, open_case
from tests.integration.helpers.web import Client, act_as, form, ok, referral_fields, staff
from tests.pdf import pdf_text
from tests.polling import eventually


def new_years_eve() -> dt.date:
    """The next 31 December still a few days away: the deadline the issue was found with (31.12.2026)."""
    today = dt.date.today()
    year = today.year if today < dt.date(today.year, 12, 28) else today.year + 1
    return dt.date(year, 12, 31)


async def in_zone(runtime: Runtime, slug: str, zone: str) -> Tenant:
    async with platform_session(runtime.sessions) as session, session.begin():
        return await services.set_tenant_time_zone(session, slug=slug, time_zone=zone)


def location(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:2000]
    return response.headers["location"]


def shown(text: str, day: dt.date, language: str) -> bool:
    return format_day(day, language) in text


async def api_referral(agency_: Agency, referral_id: str) -> dict[str, object] | None:
    response = await agency_.get(f"/api/v1/referrals/{referral_id}")
    return response.json() if response.status_code == 200 else None


@pytest.mark.parametrize(
    ("sender_zone", "recipient_zone"),
    [
        ("Europe/Moscow", "Asia/Vladivostok"),  # the partner's day begins seven hours earlier
        ("America/New_York", "Europe/Kaliningrad"),  # the sender's day ends after the partner's has
    ],
)
async def test_a_day_picked_in_the_composer_is_that_day_on_every_page_of_both_agencies(
    english: Client, runtime: Runtime, clock: TravelClock, sender_zone: str, recipient_zone: str
) -> None:
    api, complete_by = english, new_years_eve()
    respond_by = complete_by - dt.timedelta(days=1)
    next_day = complete_by + dt.timedelta(days=1)
    centre_api = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka_api = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    centre, opeka = await in_zone(runtime, "semya", sender_zone), await in_zone(runtime, "opeka", recipient_zone)
    case, _consent = await open_case(centre_api, opeka_api)
    specialist, intake = await staff(runtime, centre, Role.SPECIALIST), await staff(runtime, opeka, Role.INTAKE)

    act_as(api, specialist)
    fields = {
        **referral_fields(case, opeka.id),
        "categories": "identity",
        "respond_by": respond_by.isoformat(),
        "complete_by": complete_by.isoformat(),
    }
    referral_path = location(await form(api, f"/cases/{case['id']}/referrals/new", fields))
    referral_id = referral_path.rsplit("/", 1)[1]

    # The sender's API: the days as picked, and the end of each in the sender's zone as the overdue instant.
    sent = await api_referral(centre_api, referral_id)
    assert sent is not None
    zone = time_zone(sender_zone)
    assert (sent["respond_by_date"], sent["complete_by_date"]) == (respond_by.isoformat(), complete_by.isoformat())
    assert dt.datetime.fromisoformat(str(sent["complete_by"])) == end_of_day(complete_by, zone)
    assert dt.datetime.fromisoformat(str(sent["respond_by"])) == end_of_day(respond_by, zone)

    # The sender's pages, in English and in Russian: the referral, the dashboard's list, the case.
    for language in ("en", "ru"):
        api.headers["Accept-Language"] = language
        for path in (referral_path, "/dashboard", f"/cases/{case['id']}"):
            text = ok(await api.get(path))
            assert shown(text, complete_by, language), (language, path)
            assert shown(text, respond_by, language), (language, path)
            assert not shown(text, next_day, language), (language, path)

    # The partner, seven or more hours away, shows the same days: the envelope carried them.
    arrived = await eventually(lambda: api_referral(opeka_api, referral_id))
    assert (arrived["respond_by_date"], arrived["complete_by_date"]) == (
        respond_by.isoformat(),
        complete_by.isoformat(),
    )
    assert arrived["complete_by"] == sent["complete_by"]  # one deadline: both sides are overdue at the same moment
    act_as(api, intake)
    for language in ("en", "ru"):
        api.headers["Accept-Language"] = language
        for path in (referral_path, "/inbox"):
            text = ok(await api.get(path))
            assert shown(text, complete_by, language), (language, path)
            assert not shown(text, next_day, language), (language, path)

    # The signed letter (in Russian, the composer's default) prints the days as picked, and so does the partner's copy.
    async def letter() -> bytes | None:
        response = await api.get(f"{referral_path}/letter.pdf")
        return response.content if response.status_code == 200 else None

    text = pdf_text(await eventually(letter))
    assert format_day(complete_by, "ru") in text
    assert format_day(respond_by, "ru") in text
    assert format_day(next_day, "ru") not in text

    # A day before the answer is due the partner is reminded of that day; the answer is not late until that day is
    # over where the sender is, and then it is late for both, and the sender's dashboard says which day it was due.
    answer_ends = end_of_day(respond_by, zone)
    clock.advance(answer_ends - dt.timedelta(hours=20) - clock.now())
    reminders = (await opeka_api.get("/api/v1/reminders")).json()["items"]
    assert [(r["reminder"], r["deadline_date"]) for r in reminders] == [("respond_due", respond_by.isoformat())]
    clock.advance(answer_ends - dt.timedelta(minutes=1) - clock.now())
    assert (await api_referral(opeka_api, referral_id) or {})["overdue"] is False
    clock.advance(answer_ends + dt.timedelta(minutes=1) - clock.now())
    assert (await api_referral(opeka_api, referral_id) or {})["overdue"] is True
    assert (await api_referral(centre_api, referral_id) or {})["overdue"] is True
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))  # the first sessions have long expired
    api.headers["Accept-Language"] = "en"
    assert f"the answer was due by {format_day(respond_by, 'en')}" in ok(await api.get("/dashboard"))
    api.headers["Accept-Language"] = "ru"
    assert f"ответ нужно было дать не позднее {format_day(respond_by, 'ru')}" in ok(await api.get("/dashboard"))


async def test_a_day_given_to_the_api_is_that_day_and_a_time_stands_for_its_day_in_the_agencys_zone(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    complete_by = new_years_eve()
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    await in_zone(runtime, "semya", "Asia/Vladivostok")
    case, _consent = await open_case(centre, opeka)
    body = {
        "case_id": case["id"],
        "to_tenant_id": str(opeka.id),
        "kind": "referral",
        "purpose": "social_support",
        "problem": "p",
        "requested_service": "s",
        "urgency": "routine",
        "subject_ids": [case["subjects"][0]["id"]],
        "categories": ["identity"],
        "legal_basis": {"type": "consent"},
        # 20:00 UTC on the 30th is already the 31st in Vladivostok; a day is the day itself.
        "respond_by": f"{complete_by.year}-12-30T20:00:00Z",
        "complete_by": complete_by.isoformat(),
    }
    sent = await centre.post("/api/v1/referrals", body)
    assert sent.status_code == 201, sent.text
    assert (sent.json()["respond_by_date"], sent.json()["complete_by_date"]) == (complete_by.isoformat(),) * 2
    assert sent.json()["complete_by"] == f"{complete_by.year}-12-31T13:59:59.999999Z"

    refused = await centre.post("/api/v1/referrals", {**body, "complete_by": f"{complete_by.year}-02-30"})
    assert refused.status_code == 400, refused.text
    assert "complete_by" in refused.text
    schema = (await api.get("/schema/openapi.json")).json()
    described = schema["components"]["schemas"]["ReferralIn"]["properties"]["complete_by"]
    assert "end of that day in the agency's time zone" in described["description"]
