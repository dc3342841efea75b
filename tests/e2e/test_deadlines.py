"""In a real browser: a specialist in Moscow picks 30 and 31 December in the composer; the referral, the dashboard and
the partner's inbox and referral page, seven hours east in Vladivostok, show exactly those days, in English
(31 Dec 2026) and in Russian (31.12.2026). The composer's default answer day is today in the agency's time zone."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page
from sqlalchemy import select

from tenants.calendar import format_day, time_zone, today_in
from tenants.models import Tenant
from tenants.persistence import platform_session
from tests.e2e.browser import (
    Agencies,
    LiveServer,
    check_page,
    choose_partner,
    fill_case,
    fill_consent,
    reload_until,
    sign_in,
)


def _new_years_eve() -> dt.date:
    today = dt.date.today()
    return dt.date(today.year if today < dt.date(today.year, 12, 28) else today.year + 1, 12, 31)


async def _move(live_server: LiveServer, tenant_id: str, zone: str) -> None:
    assert live_server.runtime is not None
    async with platform_session(live_server.runtime.sessions) as session, session.begin():
        tenant = await session.scalar(select(Tenant).where(Tenant.id == uuid.UUID(tenant_id)))
        assert tenant is not None
        tenant.time_zone = zone


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_day_picked_in_the_composer_is_that_day_for_both_agencies(
    language: str, agencies: Agencies, live_server: LiveServer, new_page: Callable[[str], Page]
) -> None:
    live_server.run(_move(live_server, agencies.partner.id, "Asia/Vladivostok"))  # the centre keeps Moscow time
    complete_by = _new_years_eve()
    respond_by, next_day = complete_by - dt.timedelta(days=1), complete_by + dt.timedelta(days=1)
    specialist, intake = new_page(language), new_page(language)

    sign_in(specialist, agencies.centre.staff["specialist"])
    specialist.goto("/cases/new")
    case_path = fill_case(specialist)
    specialist.goto(f"{case_path}/consents/new")
    fill_consent(specialist)
    before = today_in(time_zone("Europe/Moscow"), dt.datetime.now(dt.UTC))
    choose_partner(specialist, case_path, agencies.partner.id)
    after = today_in(time_zone("Europe/Moscow"), dt.datetime.now(dt.UTC))
    # The default answer day: five days from today where the centre is (a page made at midnight may see either day).
    offered = specialist.locator("#respond_by").input_value()
    assert offered in {(day + dt.timedelta(days=5)).isoformat() for day in (before, after)}

    specialist.check("#cat-identity")
    specialist.fill("#problem", "Ребёнок не посещает школу")
    specialist.fill("#requested_service", "Помочь с местом в школе")
    specialist.fill("#respond_by", respond_by.isoformat())
    specialist.fill("#complete_by", complete_by.isoformat())
    specialist.click("form[method=post]:has(#problem) button[type=submit]")
    referral_path = urlparse(specialist.url).path
    assert referral_path.startswith("/referrals/")
    facts = specialist.locator("main").inner_text()
    assert format_day(respond_by, language) in facts
    assert format_day(complete_by, language) in facts
    assert format_day(next_day, language) not in facts
    check_page(specialist, "referral-deadlines", language)
    specialist.goto("/dashboard")
    listed = specialist.locator("main").inner_text()
    assert format_day(complete_by, language) in listed
    assert format_day(next_day, language) not in listed
    check_page(specialist, "dashboard-deadlines", language)

    # The partner, where 31 December begins seven hours earlier, shows the same days.
    sign_in(intake, agencies.partner.staff["intake"])
    reload_until(intake, "/inbox", referral_path)
    inbox = intake.locator("main").inner_text()
    assert format_day(complete_by, language) in inbox
    assert format_day(next_day, language) not in inbox
    check_page(intake, "inbox-deadlines", language)
    intake.goto(referral_path)
    received = intake.locator("main").inner_text()
    assert format_day(respond_by, language) in received
    assert format_day(complete_by, language) in received
    assert format_day(next_day, language) not in received
    check_page(intake, "referral-received-deadlines", language)
