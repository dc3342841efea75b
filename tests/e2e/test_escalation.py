"""In a real browser, in both languages: a referral whose answer day passed days ago is escalated. The centre's
supervisor finds it under "Escalated to you" on the dashboard and opens it; the key worker's dashboard says it was
escalated, and shows it both as shared by them and by their team. Each dashboard passes the axe check and is saved
as a screenshot."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import Page
from sqlalchemy import update

from exchange.referrals.models import Referral
from tenants.calendar import Deadline, time_zone, today_in
from tenants.persistence import platform_session
from tests.e2e.browser import (
    Agencies,
    LiveServer,
    add_staff,
    case_system,
    check_page,
    shared_referral,
    sign_in,
    user_id,
)

# The supervisor's list's heading and the key worker's mark, in each language.
TEXTS = {
    "en": ("Escalated to you", "escalated to a supervisor on"),
    "ru": ("Просрочены и переданы вам", "передано руководителю"),
}
SHARED_WITH_ME = {"en": "Shared with me", "ru": "Переданные мне"}
MOSCOW = time_zone("Europe/Moscow")  # the seeded agencies' time zone


async def _answer_day_long_past(live_server: LiveServer, referral_id: str) -> None:
    """The centre's copy as it stands three days after its answer day (both are days of the centre's calendar)."""
    assert live_server.runtime is not None
    day = today_in(MOSCOW, dt.datetime.now(dt.UTC)) - dt.timedelta(days=3)
    async with platform_session(live_server.runtime.sessions) as session, session.begin():
        await session.execute(
            update(Referral)
            .where(Referral.exchange_id == uuid.UUID(referral_id), Referral.side == "sender")
            .values(respond_by=Deadline.on(day, MOSCOW).at, respond_by_date=day)
        )


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_referral_left_overdue_reaches_the_supervisor(
    agencies: Agencies, live_server: LiveServer, new_page: Callable[[str], Page], language: str
) -> None:
    heading, mark = TEXTS[language]
    head = add_staff(live_server, agencies.centre, "supervisor", ["supervisor"], "Наталья Белова")
    worker = agencies.centre.staff["specialist"]
    with case_system(live_server, agencies.centre.id) as api:
        _child, referral_id = shared_referral(api, agencies.partner.id, key_worker_id=user_id(live_server, worker))
    live_server.run(_answer_day_long_past(live_server, referral_id))

    supervisor = new_page(language)
    sign_in(supervisor, head)
    supervisor.goto("/dashboard")
    escalated = supervisor.locator("#escalated")
    assert supervisor.locator("h2", has_text=heading).count() == 1
    assert escalated.locator(f'a[href="/referrals/{referral_id}"]').count() == 1
    assert mark in escalated.inner_text()
    check_page(supervisor, "dashboard-escalated", language)
    escalated.locator(f'a[href="/referrals/{referral_id}"]').click()
    supervisor.wait_for_url(f"**/referrals/{referral_id}")
    check_page(supervisor, "referral-escalated", language)

    key_worker = new_page(language)
    sign_in(key_worker, worker)
    key_worker.goto("/dashboard")
    assert key_worker.locator("#escalated").count() == 0
    assert mark in key_worker.locator("ul.reminders").inner_text()
    check_page(key_worker, "dashboard-escalated-key-worker", language)

    # The key worker's own referrals and the team's: the centre's case system sent this one about the worker's case.
    key_worker.click("#shared-views a[href='?shared=me']")
    key_worker.wait_for_url("**/dashboard?shared=me")
    assert key_worker.locator("#shared-views a[aria-current=page]").get_attribute("href") == "?shared=me"
    assert key_worker.locator(f'table a[href="/referrals/{referral_id}"]').count() == 1
    check_page(key_worker, "dashboard-shared-by-me", language)
    key_worker.click("#shared-views a[href='?shared=team']")
    key_worker.wait_for_url("**/dashboard?shared=team")
    assert key_worker.locator(f'table a[href="/referrals/{referral_id}"]').count() == 1
    shared_with_me = key_worker.locator("a[href='/inbox?tab=mine']")
    assert shared_with_me.inner_text() == SHARED_WITH_ME[language]
