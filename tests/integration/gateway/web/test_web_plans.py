"""Multi-agency plan pages over HTTP (no browser): a commission issues a plan for two agencies, the agencies report,
the plan closes and prints; refusals in words, overdue tasks, and who may see and change a plan."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid

import httpx
import pytest
from sqlalchemy import select

from exchange.referrals.models import Referral
from gateway.runtime import Runtime
from gateway.web import plan_pages
from tenants.calendar import Deadline, format_day, time_zone
from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.environment import TravelClock
from tests.factories import make_tenant
from tests.integration.helpers.web import Client, act_as, form, ok, staff
from tests.polling import eventually

JUSTIFICATION = "Постановление КДН об индивидуальной профилактической работе, пункт 3"


def location(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:2000]
    return response.headers["location"]


async def open_case(api: Client) -> tuple[str, str]:
    """A case at the signed-in agency for one child: its path and the child's id."""
    response = await form(
        api,
        "/cases/new",
        {
            "title": "Ivanova M.",
            "subject-0-name": "Masha Ivanova",
            "subject-0-role": "child",
            "subject-0-ref": "child 1",
        },
    )
    case_path = location(response)
    plan_form = ok(await api.get(f"{case_path}/plans/new"))
    subject = re.search(r'name="subjects" value="([0-9a-f-]+)" checked', plan_form)
    assert subject is not None
    return case_path, subject.group(1)


def plan_fields(subject_id: str, *tasks: tuple[Tenant, str, str], **extra: str) -> dict[str, object]:
    """The plan form: a statutory plan (the commission's coordinating duty) whose tasks are due in 30 days."""
    fields: dict[str, object] = {
        "title": "Plan for Masha",
        "period-from": dt.date.today().isoformat(),
        "period-until": (dt.date.today() + dt.timedelta(days=180)).isoformat(),
        "auto-close": "on",
        "purpose": "child_protection",
        "problem": "Masha misses school",
        "urgency": "routine",
        "subjects": subject_id,
        "categories": ["identity", "family"],
        "basis": "statutory",
        "reference": "120-FZ art. 11",
        "justification": JUSTIFICATION,
    }
    for row, (agency, title, expected) in enumerate(tasks):
        fields |= {
            f"task-{row}-to": str(agency.id),
            f"task-{row}-title": title,
            f"task-{row}-expected": expected,
            f"task-{row}-complete-by": (dt.date.today() + dt.timedelta(days=30)).isoformat(),
        }
    return fields | extra


def task_links(page: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r'href="(/referrals/[0-9a-f-]+)"', page)))


@pytest.fixture
async def agencies(runtime: Runtime) -> dict[str, Tenant]:
    return {
        "kdn": await make_tenant(runtime, kind=TenantKind.JUVENILE_COMMISSION, name="KDN Central"),
        # Seven hours east of the commission (Moscow): a day picked stays that day there too.
        "school": await make_tenant(runtime, kind=TenantKind.EDUCATION, name="School 7", time_zone="Asia/Vladivostok"),
        "opeka": await make_tenant(runtime, kind=TenantKind.GUARDIANSHIP_BODY, name="Opeka North"),
        "centre": await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya"),
    }


async def test_a_plan_issued_followed_reported_closed_and_printed(
    english: Client, runtime: Runtime, agencies: dict[str, Tenant]
) -> None:
    api = english
    commission = await staff(runtime, agencies["kdn"], Role.SPECIALIST)
    school_intake = await staff(runtime, agencies["school"], Role.INTAKE)
    school_specialist = await staff(runtime, agencies["school"], Role.SPECIALIST)
    opeka_intake = await staff(runtime, agencies["opeka"], Role.INTAKE)

    act_as(api, commission)
    dashboard = ok(await api.get("/dashboard"))
    assert "No plan is open. A plan is issued from its case's page." in dashboard
    case_path, child = await open_case(api)
    assert f'href="{case_path}/plans/new"' in ok(await api.get(case_path))
    blank = ok(await api.get(f"{case_path}/plans/new"))
    assert '<option value="120-FZ art. 11" selected>' in blank  # a commission's usual basis is offered first
    assert str(agencies["kdn"].id) not in blank  # the commission does not give tasks to itself

    fields = plan_fields(
        child,
        (agencies["school"], "Individual lessons", "A report on attendance"),
        (agencies["opeka"], "Visit the family", "A report on living conditions"),
    )
    # Refusals name what to fix, in the page's words, and send nothing.
    for changed, says in (
        ({"title": ""}, "Give the plan a title."),
        ({"task-1-expected": ""}, "Task 2: say what is to be done and the result expected."),
        ({"task-0-complete-by": "2026-02-30"}, "Task 1: Complete by: enter a date from"),
        ({"task-0-complete-by": "2020-01-01"}, "Task 1: Complete by: choose a day after today."),
        ({"period-until": "2020-01-01"}, "Plan until must not be before Plan from."),
        ({"categories": "health"}, "Task 1: No consent or legal basis covers this share"),
    ):
        response = await form(api, f"{case_path}/plans/new", {**fields, **changed})
        assert response.status_code == 400, changed
        assert says in response.text, (changed, re.findall(r'role="alert"[^>]*>([^<]*)', response.text))
        assert 'value="Individual lessons"' in response.text  # the form keeps what was typed
    assert "No plans here." in ok(await api.get("/plans"))

    plan_path = location(await form(api, f"{case_path}/plans/new", fields))
    plan_page = ok(await api.get(plan_path))
    assert "The plan is issued and its tasks are sent." in plan_page
    assert "Individual lessons" in plan_page
    assert "School 7" in plan_page
    assert "Visit the family" in plan_page
    assert "Opeka North" in plan_page
    school_task, opeka_task = task_links(plan_page)
    # The day picked is the deadline's day for both agencies: it ends at midnight in Moscow, where the commission is.
    due = dt.date.today() + dt.timedelta(days=30)
    assert format_day(due, "en") in plan_page
    async with platform_session(runtime.sessions) as session:
        stored = await session.scalars(
            select(Referral.complete_by).where(Referral.exchange_id == uuid.UUID(school_task.rsplit("/", 1)[1]))
        )
        assert set(stored.all()) == {Deadline.on(due, time_zone("Europe/Moscow")).at}
    assert plan_path in ok(await api.get("/dashboard"))
    assert plan_path in ok(await api.get("/plans"))
    assert plan_path in ok(await api.get("/plans", params={"case_id": case_path.rsplit("/", 1)[1], "tab": "all"}))

    # The school reports: its intake officer finds the task in the inbox, accepts it and completes it.
    act_as(api, school_intake)

    async def arrived(path: str) -> str | None:
        text = ok(await api.get("/inbox", params={"tab": "plans"}))
        return text if path in text else None

    await eventually(lambda: arrived(school_task))
    task_page = ok(await api.get(school_task))
    assert "Task of a multi-agency plan" in task_page
    assert "A report on attendance" in task_page
    assert format_day(due, "en") in task_page
    assert format_day(due + dt.timedelta(days=1), "en") not in task_page
    await form(api, f"{school_task}/transition", {"to": "accepted"})
    await form(api, f"{school_task}/transition", {"to": "completed", "outcome": "resolved", "note": "Goes to school"})
    act_as(api, school_specialist)
    assert school_task in ok(await api.get("/dashboard"))  # the agency's dashboard lists the plan's task

    # The guardianship body declines, with its reason.
    act_as(api, opeka_intake)
    await eventually(lambda: arrived(opeka_task))
    await form(api, f"{opeka_task}/transition", {"to": "rejected", "reason": "Not our district"})

    # The commission sees each agency's report, and the plan closes by itself: its summary prints.
    act_as(api, commission)

    async def closed() -> str | None:
        text = ok(await api.get(plan_path))
        return text if "Download the summary report (PDF)" in text else None

    page = await eventually(closed)
    assert f'href="{plan_path}"' in ok(await api.get(school_task))  # the commission's copy of a task leads back
    assert "Goes to school" in page
    assert "Not our district" in page
    report = await api.get(f"{plan_path}/report.pdf")
    assert report.status_code == 200
    assert report.headers["content-type"] == "application/pdf"
    assert report.content.startswith(b"%PDF")


async def test_overdue_tasks_closing_by_hand_and_who_may_see_a_plan(
    english: Client, runtime: Runtime, agencies: dict[str, Tenant], clock: TravelClock
) -> None:
    api = english
    commission = await staff(runtime, agencies["kdn"], Role.SPECIALIST)
    act_as(api, commission)
    case_path, child = await open_case(api)
    fields = plan_fields(child, (agencies["school"], "Individual lessons", "A report"))
    # The same form sent twice (a double click, a reload) issues one plan.
    fields |= {"auto-close": "", "idempotency_key": str(uuid.uuid4())}
    plan_path = location(await form(api, f"{case_path}/plans/new", fields))
    assert location(await form(api, f"{case_path}/plans/new", fields)) == plan_path
    page = ok(await api.get(plan_path))
    assert "By the commission, once every task is finished" in page
    assert 'action="' + plan_path + '/close"' not in page  # nothing to close while a task is open
    response = await api.get(f"{plan_path}/report.pdf")
    assert "The summary report is made once the plan is closed." in ok(await api.get(location(response)))
    response = await form(api, f"{plan_path}/close", {})
    assert "A plan is closed once every task is completed" in ok(await api.get(location(response)))

    # More tasks for the open plan, through its own form.
    more = {k: v for k, v in fields.items() if not k.startswith(("title", "period", "auto"))}
    more |= {"task-0-to": str(agencies["opeka"].id), "task-0-title": "Visit the family"}
    assert location(await form(api, f"{plan_path}/tasks/new", more)) == plan_path
    assert "Visit the family" in ok(await api.get(plan_path))

    # Nobody answered in time: the plan, the list of plans and the dashboard say which tasks are late.
    clock.advance(dt.timedelta(days=6))
    act_as(api, await staff(runtime, agencies["kdn"], Role.SPECIALIST))  # the morning's session has ended
    page = ok(await api.get(plan_path))
    assert "2 tasks overdue" in page
    assert "Overdue tasks" in page
    assert "the answer was due by" in page
    assert 'class="badge badge-overdue">2<' in ok(await api.get("/plans"))

    # Another agency: the plan and its forms answer 404, like a missing one; it may not issue plans for its cases.
    act_as(api, await staff(runtime, agencies["centre"], Role.SPECIALIST))
    for path in (plan_path, f"{plan_path}/tasks/new", f"{plan_path}/report.pdf", f"/plans/{uuid.uuid4()}"):
        response = await api.get(path)
        assert response.status_code == 404, path
    # Closing is the issuers' (as in the API): anyone else is refused whatever the plan, so nothing is told either.
    assert (await form(api, f"{plan_path}/close", {})).status_code == 403
    assert (await form(api, f"/plans/{uuid.uuid4()}/close", {})).status_code == 403
    assert plan_path not in ok(await api.get("/plans", params={"tab": "all"}))
    own_case = location(
        await form(api, "/cases/new", {"title": "Petrov", "subject-0-name": "P", "subject-0-role": "child"})
    )
    assert f'href="{own_case}/plans/new"' not in ok(await api.get(own_case))
    assert (await api.get(f"{own_case}/plans/new")).status_code == 403


async def test_the_list_of_plans_pages_and_keeps_its_tab(
    english: Client, runtime: Runtime, agencies: dict[str, Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_pages, "PLANS_PER_PAGE", 1)
    api = english
    act_as(api, await staff(runtime, agencies["kdn"], Role.SPECIALIST))
    case_path, child = await open_case(api)
    made = [
        location(await form(api, f"{case_path}/plans/new", plan_fields(child, (agencies["opeka"], title, "A report"))))
        for title in ("First visit", "Second visit")
    ]
    first = ok(await api.get("/plans", params={"tab": "open"}))
    assert made[1] in first
    assert made[0] not in first
    next_link = re.search(r'<a href="\?([^"]+)" rel="next">', first)
    assert next_link is not None
    assert "tab=open" in html.unescape(next_link.group(1))
    second = ok(await api.get(f"/plans?{html.unescape(next_link.group(1))}"))
    assert made[0] in second
    assert made[1] not in second
    response = await api.get("/plans", params={"tab": "open", "cursor": "not-a-cursor"})
    assert location(response) == "/plans?tab=open"
    assert "That page link is not valid, so the first page is shown." in ok(await api.get(location(response)))
