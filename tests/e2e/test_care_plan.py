"""In a real browser: a key worker starts a case's care plan from its needs assessment, adds actions with who and by
which day, one carried out by a referral sent on the family's consent whose outcome then shows beside it, another past
its day on the dashboard until it is recorded as done, and prints the plan. In English and in Russian, with an
accessibility check and a screenshot of each page; then once with the keyboard only."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, expect

from tenants.calendar import format_day, time_zone, today_in
from tests.e2e.browser import (
    ARTIFACTS,
    Agencies,
    accept_and_resolve,
    check_page,
    choose_partner,
    fill_case,
    fill_consent,
    reload_until,
    sign_in,
    tab_to,
)

TEXTS = {
    "en": {
        "no_plan": "No care plan yet",
        "goal_added": "The goal is added to the care plan.",
        "action_added": "The action is added to the care plan.",
        "done": "The action is recorded as done.",
        "late": "Care plan actions past their day",
        "overdue": "1 action overdue",
        "resolved": "Outcome: Resolved",
        "updated": "The referral's status is updated.",
        "sent": "The referral is sent.",
    },
    "ru": {
        "no_plan": "Плана работы пока нет",
        "goal_added": "Цель добавлена в план работы.",
        "action_added": "Мероприятие добавлено в план работы.",
        "done": "Мероприятие отмечено как выполненное.",
        "late": "Мероприятия планов работы с истёкшим сроком",
        "overdue": "1 мероприятие просрочено",
        "resolved": "Итог: Решено",
        "updated": "Статус направления изменён.",
        "sent": "Направление отправлено.",
    },
}
GOAL = "Мария ходит в школу каждый день"
WITH_REFERRAL = "Обследовать условия жизни семьи"
LATE = "Встретиться с классным руководителем"


def _centre_today() -> dt.date:
    return today_in(time_zone("Europe/Moscow"), dt.datetime.now(dt.UTC))


def _send_referral(page: Page, case_path: str, partner_id: str, language: str) -> str:
    """The family's consent recorded and a referral sent to the partner from the composer: its path."""
    page.goto(f"{case_path}/consents/new")
    fill_consent(page)
    choose_partner(page, case_path, partner_id)
    page.check("#cat-identity")
    page.fill("#problem", "Ребёнок не посещает школу")
    page.fill("#requested_service", "Обследовать условия жизни")
    page.click("form[method=post]:has(#problem) button[type=submit]")
    assert TEXTS[language]["sent"] in page.locator(".flash").inner_text()
    return urlparse(page.url).path


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_key_worker_keeps_a_care_plan_and_prints_it(
    language: str, agencies: Agencies, new_page: Callable[[str], Page]
) -> None:
    say = TEXTS[language]
    worker, intake = new_page(language), new_page(language)
    sign_in(worker, agencies.centre.staff["specialist"])
    worker.goto("/cases/new")
    case_path = fill_case(worker)
    plan_path = f"{case_path}/care-plan"
    assert say["no_plan"] in worker.locator("main").inner_text()
    referral_path = _send_referral(worker, case_path, agencies.partner.id, language)

    # A goal drawn from the needs assessment the case was opened with.
    worker.goto(case_path)
    worker.click(f"main a[href='{plan_path}']")
    expect(worker.locator("main")).to_contain_text("Нужна помощь с устройством в школу")
    check_page(worker, "care-plan-new", language)
    worker.select_option("#goal-need", "client")
    worker.fill("#goal-text", GOAL)
    worker.click(f"form[action='{plan_path}/goals'] button[type=submit]")
    assert say["goal_added"] in worker.locator(".flash").inner_text()

    # An action carried out by the referral, and one whose day has passed.
    due = _centre_today() + dt.timedelta(days=14)
    worker.fill("#action-what", WITH_REFERRAL)
    worker.fill("#action-who", "Опека Северного района")
    worker.fill("#action-due-by", due.isoformat())
    worker.select_option("#action-referral", referral_path.rsplit("/", 1)[1])
    worker.click(f"form[action='{plan_path}/actions'] button[type=submit]")
    assert say["action_added"] in worker.locator(".flash").inner_text()
    worker.fill("#action-what", LATE)
    worker.fill("#action-who", "Ключевой работник")
    worker.fill("#action-due-by", (_centre_today() - dt.timedelta(days=2)).isoformat())
    worker.click(f"form[action='{plan_path}/actions'] button[type=submit]")
    actions = worker.locator("table.care-actions").inner_text()
    assert format_day(due, language) in actions  # the day picked, shown as that day
    expect(worker.locator(f"table.care-actions a[href='{referral_path}']")).to_be_visible()
    expect(worker.locator("tr.overdue")).to_contain_text(LATE)
    check_page(worker, "care-plan", language)

    # The dashboard's overdue section lists the late action; the case page shows the plan.
    worker.goto("/dashboard")
    expect(worker.locator("ul.care-overdue")).to_contain_text(LATE)
    assert say["late"] in worker.locator("main").inner_text()
    check_page(worker, "dashboard-care-plan", language)
    worker.goto(case_path)
    assert say["overdue"] in worker.locator("main").inner_text()
    expect(worker.locator("main")).to_contain_text(GOAL)
    check_page(worker, "case-care-plan", language)

    # The partner completes the referral: its outcome shows beside the action; the plan itself never reaches it.
    sign_in(intake, agencies.partner.staff["intake"])
    reload_until(intake, "/inbox", referral_path)
    intake.click(f"a[href='{referral_path}']")
    assert GOAL not in intake.content()
    accept_and_resolve(intake, "Условия обследованы")
    assert say["updated"] in intake.locator(".flash").inner_text()
    reload_until(worker, plan_path, say["resolved"])

    # The late action is recorded as done and leaves the dashboard; the plan prints.
    worker.click("tr.overdue form[action$='/done'] button[type=submit]")
    assert say["done"] in worker.locator(".flash").inner_text()
    expect(worker.locator("tr.overdue")).to_have_count(0)
    check_page(worker, "care-plan-done", language)
    worker.goto("/dashboard")
    expect(worker.locator("ul.care-overdue")).to_have_count(0)
    printed = worker.request.get(f"{plan_path}.pdf")
    assert printed.status == 200
    assert printed.headers["content-type"] == "application/pdf"
    assert printed.body().startswith(b"%PDF")
    (ARTIFACTS / f"{language}-care-plan.pdf").write_bytes(printed.body())  # beside the screenshots, to look at

    # A third agency: the care plan is a 404, as if it did not exist.
    outsider = new_page(language)
    sign_in(outsider, agencies.third.staff["specialist"])
    for path in (plan_path, f"{plan_path}.pdf"):
        assert outsider.request.get(path).status == 404, path


def test_the_care_plan_with_the_keyboard_only(agencies: Agencies, new_page: Callable[[str], Page]) -> None:
    """From the case page to a goal, an action and recording it as done: Tab, typing and Enter only (signing in and
    opening the case aside), so every step of the care plan is reachable and operable without a mouse."""
    worker = new_page("ru")
    keys = worker.keyboard
    sign_in(worker, agencies.centre.staff["specialist"])
    worker.goto("/cases/new")
    case_path = fill_case(worker)
    plan_path = f"{case_path}/care-plan"

    tab_to(worker, f"main a[href='{plan_path}']")
    keys.press("Enter")
    worker.wait_for_url(re.compile(re.escape(plan_path) + "$"))
    tab_to(worker, "#goal-need")  # the first part, the client's needs, stays chosen
    tab_to(worker, "#goal-text")
    keys.type(GOAL)
    tab_to(worker, f"form[action='{plan_path}/goals'] button[type=submit]")
    keys.press("Enter")
    expect(worker.locator(".flash")).to_contain_text(TEXTS["ru"]["goal_added"])

    tab_to(worker, "#action-what")
    keys.type(LATE)
    tab_to(worker, "#action-who")
    keys.type("Ключевой работник")  # the day offered is today
    tab_to(worker, f"form[action='{plan_path}/actions'] button[type=submit]")
    keys.press("Enter")
    expect(worker.locator(".flash")).to_contain_text(TEXTS["ru"]["action_added"])
    expect(worker.locator("table.care-actions")).to_contain_text(LATE)

    tab_to(worker, "form[action$='/done'] button[type=submit]")
    keys.press("Enter")
    expect(worker.locator(".flash")).to_contain_text(TEXTS["ru"]["done"])
    expect(worker.locator("form[action$='/done']")).to_have_count(0)
    tab_to(worker, f"a[href='{case_path}']")
    keys.press("Enter")
    worker.wait_for_url(re.compile(re.escape(case_path) + "$"))
    expect(worker.locator("main")).to_contain_text(LATE)
