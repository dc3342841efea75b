"""A case's care plan over HTTP (no browser): goals from the needs assessment, actions with who and by which day, one
carried out by a referral whose status and outcome show beside it, late actions on the dashboard, the printed plan,
refusals in words, and a plan no other agency reaches (not even the one the referral went to)."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import httpx
from sqlalchemy import select

from audit.events import Action
from audit.models import AuditEvent
from exchange.plans.models import CareAction
from gateway.runtime import Runtime
from tenants.calendar import Deadline, format_day, time_zone
from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.environment import TravelClock
from tests.integration.helpers.agencies import agency, open_case
from tests.integration.helpers.web import Client, act_as, form, ok, referral_fields, staff
from tests.pdf import pdf_text
from tests.polling import eventually

GOAL = "Masha goes to school every day"
ACTION = "Agree a timetable of individual lessons with the school"


def location(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:2000]
    return response.headers["location"]


async def flash(api: Client, response: httpx.Response) -> str:
    return ok(await api.get(location(response)))


async def flash_404(api: Client, response: httpx.Response) -> str:
    """Where a refused form sends the browser back to: a page that is not there (its case is not this agency's)."""
    shown = await api.get(location(response))
    assert shown.status_code == 404, shown.text[:2000]
    return shown.text


async def tenant(runtime: Runtime, slug: str) -> Tenant:
    async with platform_session(runtime.sessions) as session:
        found = await session.scalar(select(Tenant).where(Tenant.slug == slug))
        assert found is not None
        return found


async def logged(runtime: Runtime, tenant_id: uuid.UUID, action: Action) -> list[AuditEvent]:
    async with platform_session(runtime.sessions) as session:
        query = select(AuditEvent).where(AuditEvent.log_tenant_id == tenant_id, AuditEvent.action == action.value)
        return list(await session.scalars(query))


async def test_a_care_plan_from_the_needs_assessment_carried_by_a_referral_and_printed(
    english: Client, runtime: Runtime, clock: TravelClock
) -> None:
    api = english
    centre_api = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka_api = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    centre, opeka = await tenant(runtime, "semya"), await tenant(runtime, "opeka")
    case, _consent = await open_case(centre_api, opeka_api)
    case_path = f"/cases/{case['id']}"
    plan_path = f"{case_path}/care-plan"
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))

    page = ok(await api.get(case_path))
    assert "No care plan yet" in page
    assert f'href="{plan_path}"' in page
    assert "No goals yet." in ok(await api.get(plan_path))

    # Refusals in words; nothing is added.
    assert "Write the goal." in await flash(api, await form(api, f"{plan_path}/goals", {"need": "client", "text": " "}))
    refused = await form(api, f"{plan_path}/goals", {"need": "weather", "text": GOAL})
    assert "Part of the needs assessment" in await flash(api, refused)
    added = await form(api, f"{plan_path}/goals", {"need": "client", "text": GOAL})
    page = await flash(api, added)
    assert "The goal is added to the care plan." in page
    assert f"Goal 1: {GOAL}" in page
    assert "From the needs assessment: The client's needs" in page
    goal = re.search(r'<select id="action-goal" name="goal"><option value="([0-9a-f-]+)">', page)
    assert goal is not None

    # A referral of the case, sent from the composer on the family's consent, carries out the action.
    referral_path = location(
        await form(api, f"{case_path}/referrals/new", {**referral_fields(case, opeka.id), "categories": "identity"})
    )
    referral_id = referral_path.rsplit("/", 1)[1]
    due = dt.date.today() + dt.timedelta(days=3)
    action = {"goal": goal.group(1), "what": ACTION, "who": "Key worker and School 7", "due-by": due.isoformat()}
    for changed, says in (
        ({"who": ""}, "Say what is to be done and who does it."),
        ({"due-by": "2026-02-30"}, "By: enter a date from"),
        ({"referral": str(uuid.uuid4())}, "It was not found."),
        ({"goal": str(uuid.uuid4())}, "It was not found."),
    ):
        assert says in await flash(api, await form(api, f"{plan_path}/actions", {**action, **changed})), changed
    page = await flash(api, await form(api, f"{plan_path}/actions", {**action, "referral": referral_id}))
    assert "The action is added to the care plan." in page
    assert ACTION in page
    assert format_day(due, "en") in page
    assert f'href="/referrals/{referral_id}"' in page
    assert re.search(r"status-(requested|received)", page)
    # The day picked is the end of that day in the agency's time zone (Moscow), as every deadline is.
    async with platform_session(runtime.sessions) as session:
        stored = await session.scalar(select(CareAction.due_at).where(CareAction.tenant_id == centre.id))
    assert stored == Deadline.on(due, time_zone("Europe/Moscow")).at
    assert ACTION in ok(await api.get(case_path))  # the case page shows the plan

    # The guardianship body completes the referral: its outcome shows beside the action, but never the plan itself.
    act_as(api, await staff(runtime, opeka, Role.INTAKE))

    async def arrived() -> str | None:
        response = await api.get(referral_path)
        return response.text if response.status_code == 200 else None

    received = await eventually(arrived)
    assert GOAL not in received
    assert ACTION not in received
    await form(api, f"{referral_path}/transition", {"to": "accepted"})
    await form(api, f"{referral_path}/transition", {"to": "completed", "outcome": "resolved", "note": "Done"})
    for path in (plan_path, f"{plan_path}.pdf", case_path):  # case pages are the case workers': refused by role
        assert (await api.get(path)).status_code == 403, path
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))

    async def reported() -> str | None:
        text = ok(await api.get(plan_path))
        return text if "Outcome: Resolved" in text else None

    await eventually(reported)

    # Past its day, the action is on the dashboard's overdue list and the case page says so, until it is done.
    clock.advance(dt.timedelta(days=5))
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))  # the morning's session has ended
    dashboard = ok(await api.get("/dashboard"))
    assert "Care plan actions past their day" in dashboard
    assert ACTION in dashboard
    assert "1 action overdue" in ok(await api.get(case_path))
    action_id = re.search(r'action="/care-actions/([0-9a-f-]+)/done"', ok(await api.get(plan_path)))
    assert action_id is not None
    done = await flash(api, await form(api, f"/care-actions/{action_id.group(1)}/done", {}))
    assert "The action is recorded as done." in done
    assert "Done " in done
    assert ACTION not in ok(await api.get("/dashboard"))

    printed = await api.get(f"{plan_path}.pdf")
    assert printed.status_code == 200
    assert printed.headers["content-type"] == "application/pdf"
    text = pdf_text(printed.content)
    assert "Care plan" in text
    assert GOAL in text

    # Another agency's specialist: the plan, its forms and its actions answer 404, like missing ones.
    act_as(api, await staff(runtime, opeka, Role.SPECIALIST))
    for path in (plan_path, f"{plan_path}.pdf", f"/cases/{uuid.uuid4()}/care-plan"):
        assert (await api.get(path)).status_code == 404, path
    # A goal posted to the case is sent back to a page that is not there, exactly as for a case that does not exist.
    shown = []
    for path in (f"{plan_path}/goals", f"/cases/{uuid.uuid4()}/care-plan/goals"):
        response = await form(api, path, {"need": "client", "text": "Theirs"})
        shown.append((await flash_404(api, response)).replace(response.headers["location"], ""))
    assert shown[0] == shown[1]
    for path, fields in (
        (f"/care-actions/{action_id.group(1)}/done", {}),
        (f"/care-actions/{action_id.group(1)}/referral", {"referral": ""}),
    ):
        assert (await form(api, path, fields)).status_code == 404, path

    # Each step is in the centre's audit trail under its own action.
    for step in (
        Action.EXCHANGE_CARE_PLAN_READ,
        Action.EXCHANGE_CARE_PLAN_ADD_GOAL,
        Action.EXCHANGE_CARE_PLAN_ADD_ACTION,
        Action.EXCHANGE_CARE_PLAN_COMPLETE_ACTION,
        Action.EXCHANGE_CARE_PLAN_REPORT,
    ):
        assert await logged(runtime, centre.id, step), step


async def test_an_action_is_linked_to_a_referral_later_and_unlinked(english: Client, runtime: Runtime) -> None:
    api = english
    centre_api = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka_api = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    centre, opeka = await tenant(runtime, "semya"), await tenant(runtime, "opeka")
    case, _consent = await open_case(centre_api, opeka_api)
    other, _ = await open_case(centre_api, opeka_api)
    plan_path = f"/cases/{case['id']}/care-plan"
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))
    page = await flash(api, await form(api, f"{plan_path}/goals", {"need": "carers", "text": "Mother copes alone"}))
    assert "From the needs assessment: The carers' potential" in page
    goal = re.search(r'<select id="action-goal" name="goal"><option value="([0-9a-f-]+)">', page)
    assert goal is not None
    fields = {"goal": goal.group(1), "what": "Find a day nursery", "who": "Mother", "due-by": "2030-01-10"}
    page = await flash(api, await form(api, f"{plan_path}/actions", fields))
    action_id = re.search(r'action="/care-actions/([0-9a-f-]+)/referral"', page)
    assert action_id is not None
    link = f"/care-actions/{action_id.group(1)}/referral"

    # A referral of another case cannot carry this case's action: it answers like a missing one.
    elsewhere = location(
        await form(
            api, f"/cases/{other['id']}/referrals/new", {**referral_fields(other, opeka.id), "categories": "identity"}
        )
    )
    assert (await form(api, link, {"referral": elsewhere.rsplit("/", 1)[1]})).status_code == 404
    ours = location(
        await form(
            api, f"/cases/{case['id']}/referrals/new", {**referral_fields(case, opeka.id), "categories": "identity"}
        )
    )
    page = await flash(api, await form(api, link, {"referral": ours.rsplit("/", 1)[1]}))
    assert "The referral is linked to the action." in page
    assert f'href="{ours}"' in page
    page = await flash(api, await form(api, link, {"referral": ""}))
    assert "The action is carried out without a referral." in page
    assert f'href="{ours}"' not in page
    assert await logged(runtime, centre.id, Action.EXCHANGE_CARE_PLAN_LINK_REFERRAL)
