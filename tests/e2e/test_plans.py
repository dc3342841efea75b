"""In a real browser: a juvenile commission issues a multi-agency plan for one of its cases with tasks for a school and
a guardianship body; each agency finds its task on its dashboard and in its inbox and reports; the commission follows
every agency's status and report, and the closed plan's summary downloads as a PDF. In English and in Russian, with an
accessibility check and a screenshot of each page; then once with the keyboard only."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import update

from exchange.referrals.models import Referral
from tenants.calendar import Deadline, format_day, time_zone, today_in
from tenants.persistence import platform_session
from tests.e2e.browser import LiveServer, Planning, check_page, fill_case, reload_until, sign_in, tab_to

JUSTIFICATION = "Постановление КДН об индивидуальной профилактической работе, пункт 3"
TEXTS = {
    "en": {
        "form": "Issue a multi-agency plan",
        "refused": "A statutory basis needs the legal reference and a written justification.",
        "issued": "The plan is issued and its tasks are sent.",
        "updated": "The referral's status is updated.",
        "task": "Task of a multi-agency plan",
        "summary": "Download the summary report (PDF)",
        "tasks_for_us": "Tasks of other agencies' plans",
        "plan_tasks_tab": "Plan tasks",
        "one_overdue": "1 task overdue",
        "tasks_sent": "The tasks are sent.",
        "closed": "The plan is closed. Its summary report can be downloaded.",
    },
    "ru": {
        "form": "Составить межведомственный план",
        "refused": "Для основания по закону нужны ссылка на норму и письменное обоснование.",
        "issued": "План составлен, задачи отправлены.",
        "updated": "Статус направления изменён.",
        "task": "Задача межведомственного плана",
        "summary": "Скачать итоговый отчёт (PDF)",
        "tasks_for_us": "Задачи из планов других организаций",
        "plan_tasks_tab": "Задачи планов",
        "one_overdue": "1 задача просрочена",
        "tasks_sent": "Задачи отправлены.",
        "closed": "План закрыт. Итоговый отчёт можно скачать.",
    },
}


def _commission_today() -> dt.date:
    return today_in(time_zone("Europe/Moscow"), dt.datetime.now(dt.UTC))


def _report(page: Page, referral_path: str, language: str, *, result: str, note: str) -> None:
    """On the agency's inbox: the plan task opened, accepted, and its outcome reported."""
    reload_until(page, "/inbox?tab=plans", referral_path)
    page.click(f"a[href='{referral_path}']")
    page.click("form:has(input[value=accepted]) button[type=submit]")
    assert TEXTS[language]["updated"] in page.locator(".flash").inner_text()
    page.select_option("#to-final", "completed")
    page.select_option("#outcome", result)
    page.fill("#note", note)
    page.click("form.outcome-form button[type=submit]")
    assert TEXTS[language]["updated"] in page.locator(".flash").inner_text()


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_commission_issues_a_plan_and_follows_each_agencys_report(
    language: str, planning: Planning, new_page: Callable[[str], Page]
) -> None:
    say = TEXTS[language]
    commission, school, school_head, opeka = (new_page(language) for _ in range(4))
    due = _commission_today() + dt.timedelta(days=20)

    # The commission's dashboard has a place for plans; a plan is issued from the case's page.
    sign_in(commission, planning.commission.staff["specialist"])
    commission.goto("/cases/new")
    case_path = fill_case(commission)
    commission.click(f"a[href='{case_path}/plans/new']")
    assert say["form"] in commission.locator("h1").inner_text()
    check_page(commission, "plan-form", language)
    commission.fill("#title", "План ИПР: Мария Иванова")
    commission.fill("#problem", "Ребёнок пропускает школу, семья в социально опасном положении")
    commission.check("#cat-identity")
    commission.check("#cat-family")
    commission.select_option("#task-0-to", planning.school.id)
    commission.fill("#task-0-title", "Организовать индивидуальные занятия")
    commission.fill("#task-0-expected", "Справка о посещаемости за месяц")
    commission.fill("#task-0-complete-by", due.isoformat())
    commission.select_option("#task-1-to", planning.opeka.id)
    commission.fill("#task-1-title", "Обследовать условия проживания")
    commission.fill("#task-1-expected", "Акт обследования")
    commission.fill("#task-1-complete-by", due.isoformat())

    # Without the justification a statutory plan is refused in words, and the form keeps what was typed.
    commission.click("form[action$='/plans/new'] button[type=submit]")
    assert say["refused"] in commission.locator("#form-error").inner_text()
    assert commission.locator("#task-1-title").input_value() == "Обследовать условия проживания"
    check_page(commission, "plan-form-refused", language)
    commission.fill("#justification", JUSTIFICATION)
    commission.click("form[action$='/plans/new'] button[type=submit]")
    assert say["issued"] in commission.locator(".flash").inner_text()
    plan_path = urlparse(commission.url).path
    tasks = commission.locator("table.plan-tasks").inner_text()
    assert planning.school.name in tasks
    assert planning.opeka.name in tasks
    assert format_day(due, language) in tasks  # the day picked, shown as that day
    check_page(commission, "plan", language)
    school_task, opeka_task = (commission.locator(f"#task-{n} a").first.get_attribute("href") or "" for n in (1, 2))
    commission.goto("/dashboard")
    expect(commission.locator(f"main a[href='{plan_path}']")).to_be_visible()
    check_page(commission, "dashboard-plans", language)
    commission.goto("/plans")
    check_page(commission, "plans", language)

    # The school: its intake officer finds the task in the inbox's tab and reports; its specialist sees it listed.
    sign_in(school, planning.school.staff["intake"])
    reload_until(school, "/inbox?tab=plans", school_task)
    assert say["plan_tasks_tab"] in school.locator("nav.tabs").inner_text()
    check_page(school, "inbox-plan-tasks", language)
    school.goto(school_task)
    assert say["task"] in school.locator("main").inner_text()
    assert "Справка о посещаемости за месяц" in school.locator(".plan-task").inner_text()
    assert format_day(due, language) in school.locator("main").inner_text()
    check_page(school, "plan-task-received", language)
    _report(school, school_task, language, result="resolved", note="Занятия проводятся, посещаемость 95 %")
    sign_in(school_head, planning.school.staff["specialist"])
    school_head.goto("/dashboard")
    assert say["tasks_for_us"] in school_head.locator("main").inner_text()
    expect(school_head.locator(f"main a[href='{school_task}']").first).to_be_visible()
    check_page(school_head, "dashboard-plan-tasks", language)

    # The guardianship body reports too; the commission sees both reports, and the plan closes by itself.
    sign_in(opeka, planning.opeka.staff["intake"])
    _report(opeka, opeka_task, language, result="partially_resolved", note="Условия удовлетворительные")
    reload_until(commission, plan_path, say["summary"])
    reports = commission.locator("table.plan-tasks").inner_text()
    assert "Занятия проводятся, посещаемость 95 %" in reports
    assert "Условия удовлетворительные" in reports
    check_page(commission, "plan-closed", language)
    pdf = commission.request.get(f"{plan_path}/report.pdf")
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")


async def _answer_day_passed(live_server: LiveServer, referral_path: str) -> None:
    """The commission's copy of a task as it stands once its answer day is over: yesterday's day, ended."""
    assert live_server.runtime is not None
    yesterday = _commission_today() - dt.timedelta(days=1)
    async with platform_session(live_server.runtime.sessions) as session, session.begin():
        await session.execute(
            update(Referral)
            .where(Referral.exchange_id == uuid.UUID(referral_path.rsplit("/", 1)[1]), Referral.side == "sender")
            .values(respond_by=Deadline.on(yesterday, time_zone("Europe/Moscow")).at, respond_by_date=yesterday)
        )


@pytest.mark.parametrize("language", ["en", "ru"])
def test_overdue_tasks_more_tasks_and_closing_by_hand(
    language: str, planning: Planning, live_server: LiveServer, new_page: Callable[[str], Page]
) -> None:
    say = TEXTS[language]
    commission = new_page(language)
    sign_in(commission, planning.commission.staff["specialist"])
    commission.goto("/cases/new")
    case_path = fill_case(commission)
    commission.goto(f"{case_path}/plans/new")
    commission.fill("#title", "План ИПР: второй")
    commission.uncheck("#auto-close")
    commission.fill("#problem", "Пропуски занятий")
    commission.check("#cat-identity")
    commission.fill("#justification", JUSTIFICATION)
    commission.select_option("#task-0-to", planning.school.id)
    commission.fill("#task-0-title", "Занятия с педагогом")
    commission.fill("#task-0-expected", "Справка")
    commission.click("form[action$='/plans/new'] button[type=submit]")
    plan_path = urlparse(commission.url).path

    # The school has not answered by its day: the plan says so above its tasks, and so does the dashboard.
    school_task = commission.locator("#task-1 a").first.get_attribute("href") or ""
    live_server.run(_answer_day_passed(live_server, school_task))
    commission.goto(plan_path)
    assert say["one_overdue"] in commission.locator(".status-line").inner_text()
    expect(commission.locator("#task-1")).to_have_class("overdue")
    check_page(commission, "plan-overdue", language)
    commission.goto("/dashboard")
    expect(commission.locator(f"tr.overdue a[href='{plan_path}']")).to_be_visible()

    # A task for the guardianship body is added to the open plan.
    commission.goto(plan_path)
    commission.click(f"a[href='{plan_path}/tasks/new']")
    check_page(commission, "plan-add-tasks", language)
    commission.check("#cat-identity")
    commission.fill("#problem", "Пропуски занятий")
    commission.fill("#justification", JUSTIFICATION)
    commission.select_option("#task-0-to", planning.opeka.id)
    commission.fill("#task-0-title", "Посетить семью")
    commission.fill("#task-0-expected", "Акт")
    commission.click("form[action$='/tasks/new'] button[type=submit]")
    assert say["tasks_sent"] in commission.locator(".flash").inner_text()
    assert planning.opeka.name in commission.locator("table.plan-tasks").inner_text()

    # The commission withdraws both tasks; the plan, which does not close by itself, is then closed by hand.
    for row in (1, 2):
        commission.goto(plan_path)
        commission.click(f"#task-{row} a")
        commission.fill("#cancel-reason", "Семья переехала")
        commission.click("form:has(#cancel-reason) button[type=submit]")
    commission.goto(plan_path)
    commission.click(f"form[action='{plan_path}/close'] button[type=submit]")
    assert say["closed"] in commission.locator(".flash").inner_text()
    assert "Семья переехала" in commission.locator("table.plan-tasks").inner_text()
    check_page(commission, "plan-closed-by-hand", language)
    commission.goto("/plans?tab=closed")
    expect(commission.locator(f"a[href='{plan_path}']")).to_be_visible()


def _arrow_to(page: Page, selector: str, value: str, *, within: int = 300) -> None:
    """In the focused list `selector`, press the down arrow until `value` is chosen, as a keyboard user reads down."""
    for _ in range(within):
        if page.locator(selector).input_value() == value:
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"{value} is not reached with the arrow keys in {selector}")


def test_the_plan_flow_with_the_keyboard_only(planning: Planning, new_page: Callable[[str], Page]) -> None:
    """A case opened, a plan issued for two agencies, a task reported and the report read: Tab, typing, Space and
    Enter only (signing in aside), so every step is reachable and operable without a mouse."""
    commission, school = new_page("ru"), new_page("ru")
    keys = commission.keyboard
    sign_in(commission, planning.commission.staff["specialist"])
    commission.goto("/dashboard")

    tab_to(commission, "main a[href='/cases/new']")
    keys.press("Enter")
    commission.wait_for_url(re.compile(r"/cases/new$"))
    for selector, text in (
        ("#title", "Петровы: школа"),
        ("#subject-0-name", "Пётр Петров"),
        ("#needs-client", "Школа"),
    ):
        tab_to(commission, selector)
        keys.type(text)
    tab_to(commission, "form[action='/cases/new'] button[type=submit]")
    keys.press("Enter")
    commission.wait_for_url(re.compile(r"/cases/[0-9a-f-]+$"))

    tab_to(commission, "a[href$='/plans/new']")
    keys.press("Enter")
    commission.wait_for_url(re.compile(r"/plans/new$"))
    tab_to(commission, "#title")
    keys.type("План ИПР: Пётр Петров")
    tab_to(commission, "#problem")
    keys.type("Пропуски занятий")
    for box in ("#cat-identity", "#cat-family"):
        tab_to(commission, box)
        keys.press("Space")
    tab_to(commission, "#justification")  # a commission is offered its coordinating duty: only the reason is typed
    keys.type(JUSTIFICATION)
    for row, agency, title in ((0, planning.school, "Занятия с педагогом"), (1, planning.opeka, "Посетить семью")):
        tab_to(commission, f"#task-{row}-to")
        _arrow_to(commission, f"#task-{row}-to", agency.id)
        tab_to(commission, f"#task-{row}-title")
        keys.type(title)
        tab_to(commission, f"#task-{row}-expected")
        keys.type("Отчёт о работе")
    assert commission.locator("#task-0-to").input_value() == planning.school.id
    assert commission.locator("#task-1-to").input_value() == planning.opeka.id
    tab_to(commission, "form[action$='/plans/new'] button[type=submit]")
    keys.press("Enter")
    commission.wait_for_url(re.compile(r"/plans/[0-9a-f-]+$"))
    plan_path = urlparse(commission.url).path
    assert TEXTS["ru"]["issued"] in commission.locator(".flash").inner_text()
    school_task = commission.locator("#task-1 a").first.get_attribute("href") or ""

    # The school's intake officer: from the inbox's tab to the task, accepted and reported with the keyboard.
    sign_in(school, planning.school.staff["intake"])
    reload_until(school, "/inbox?tab=plans", school_task)
    tab_to(school, f"main a[href='{school_task}']")
    school.keyboard.press("Enter")
    school.wait_for_url(re.compile(re.escape(school_task) + "$"))
    tab_to(school, "form:has(input[value=accepted]) button[type=submit]")
    school.keyboard.press("Enter")
    school.wait_for_url(re.compile(re.escape(school_task) + "$"))
    expect(school.locator(".flash")).to_contain_text(TEXTS["ru"]["updated"])
    tab_to(school, "#note")  # the result and the outcome keep their first choices: completed, resolved
    school.keyboard.type("Занятия проводятся")
    tab_to(school, "form.outcome-form button[type=submit]")
    school.keyboard.press("Enter")
    expect(school.locator(".outcome")).to_be_visible()

    # The commission reads the report on the plan's page, reached from its dashboard by the keyboard.
    reload_until(commission, plan_path, "Занятия проводятся")
    commission.goto("/dashboard")
    tab_to(commission, f"main a[href='{plan_path}']")
    commission.keyboard.press("Enter")
    commission.wait_for_url(re.compile(re.escape(plan_path) + "$"))
    expect(commission.locator("#task-1")).to_contain_text("Занятия проводятся")
