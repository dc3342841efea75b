"""Multi-agency plans: a commission's plan with tasks for three agencies, followed over the real bus, both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import uuid
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from exchange.plans import services as plans
from exchange.plans.models import Plan
from exchange.referrals.models import Referral
from exchange.transport.models import OutboxEnvelope
from gateway.runtime import Runtime
from tenants.calendar import format_day
from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session, tenant_session
from tests.environment import TravelClock
from tests.factories import access_token, make_client
from tests.integration.helpers.agencies import CHILD_NAME, PARENT_NAME, Agency, agency
from tests.pdf import fonts, pdfa_conformance
from tests.polling import eventually

SCHOOL_TASK = "Организовать индивидуальные занятия с ребёнком"
CLINIC_TASK = "Провести медицинское обследование"
OPEKA_TASK = "Обследовать условия проживания семьи"


class Planning:
    def __init__(self, kdn: Agency, school: Agency, clinic: Agency, opeka: Agency) -> None:
        self.kdn, self.school, self.clinic, self.opeka = kdn, school, clinic, opeka


@pytest.fixture
async def planning(api: httpx.AsyncClient, runtime: Runtime) -> Planning:
    """A juvenile commission issuing plans and three agencies receiving its tasks."""
    return Planning(
        await agency(api, runtime, "kdn", TenantKind.JUVENILE_COMMISSION, Role.SPECIALIST),
        await agency(api, runtime, "shkola-7", TenantKind.EDUCATION, Role.INTAKE),
        await agency(api, runtime, "poliklinika", TenantKind.HEALTH, Role.INTAKE),
        await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE),
    )


async def commission_case(kdn: Agency) -> dict[str, Any]:
    """A case at the commission, with the mother's consent to share with schools and clinics."""
    case = await kdn.post(
        "/api/v1/cases",
        {
            "title": "Несовершеннолетняя Иванова М. П.",
            "subjects": [
                {"ref": "child 1", "full_name": CHILD_NAME, "birth_date": "2012-04-12", "role": "child"},
                {"ref": "parent 1", "full_name": PARENT_NAME, "birth_date": "1988-01-20", "role": "parent"},
            ],
        },
    )
    assert case.status_code == 201, case.text
    body: dict[str, Any] = case.json()
    consent = await kdn.post(
        f"/api/v1/cases/{body['id']}/consents",
        {
            "subject_id": body["subjects"][0]["id"],
            "given_by": {"name": PARENT_NAME, "relation": "parent"},
            "purposes": ["individual_prevention"],
            "categories": ["identity", "family"],
            "recipients": {"tenants": [], "kinds": ["education", "health"]},
            "valid_until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).isoformat(),
        },
    )
    assert consent.status_code == 201, consent.text
    return body


def plan_for_today(case: dict[str, Any], *tasks: dict[str, Any], title: str = "План", **extra: Any) -> dict[str, Any]:
    """A plan for `case` whose period is today, with these tasks."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    return {
        "case_id": case["id"],
        "title": title,
        "period_from": today,
        "period_until": today,
        **extra,
        "tasks": list(tasks),
    }


def task(case: dict[str, Any], to: Agency, title: str, complete_in: dt.timedelta, **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "to_tenant_id": str(to.id),
        "expected_result": f"Отчёт: {title.lower()}",
        "complete_by": (dt.datetime.now(dt.UTC) + complete_in).isoformat(),
        "purpose": "individual_prevention",
        "problem": "Ребёнок пропускает занятия",
        "requested_service": title,
        "subject_ids": [case["subjects"][0]["id"]],
        "categories": ["identity", "family"],
        "legal_basis": {"type": "consent"},
        **extra,
    }


STATUTORY = {
    "type": "statutory",
    "reference": "120-FZ art. 9",
    "justification": "Ребёнок в социально опасном положении: постановление КДН о проведении ИПР",
}
# The commission's coordinating duty: it assigns a task of the plan to a school without asking the family again.
COORDINATING = {
    "type": "statutory",
    "reference": "120-FZ art. 11",
    "justification": "Постановление КДН об индивидуальной профилактической работе, пункт 3: задача школе",
}


async def move(agency_: Agency, referral_id: str, *steps: dict[str, Any]) -> None:
    async def arrived() -> bool:
        return (await agency_.get(f"/api/v1/referrals/{referral_id}")).status_code == 200

    await eventually(arrived)
    for step in steps:
        moved = await agency_.post(f"/api/v1/referrals/{referral_id}/transition", step)
        assert moved.status_code == 200, moved.text


async def plan_when(kdn: Agency, plan_id: str, check: Any) -> dict[str, Any]:
    async def view() -> dict[str, Any] | None:
        body: dict[str, Any] = (await kdn.get(f"/api/v1/plans/{plan_id}")).json()
        return body if check(body) else None

    result: dict[str, Any] = await eventually(view)
    return result


def by_title(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["title"]: t for t in plan["tasks"]}


async def events(runtime: Runtime, tenant_id: uuid.UUID, action: str) -> list[dict[str, Any]]:
    """The tenant's audit events of one action, oldest first, in their canonical (chained) form."""
    async with platform_session(runtime.sessions) as session:
        rows = await session.scalars(
            select(AuditEvent.canonical)
            .where(AuditEvent.action == action, AuditEvent.log_tenant_id == tenant_id)
            .order_by(AuditEvent.id)
        )
        return [json.loads(row) for row in rows]


async def colleague(runtime: Runtime, of: Agency, role: str) -> Agency:
    """A second API client of the same agency, acting in another role."""
    async with platform_session(runtime.sessions) as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.id == of.id))
    assert tenant is not None
    client = await make_client(runtime, tenant, role=role)
    return Agency(of.api, client, await access_token(of.api, client))


async def test_a_plan_for_three_agencies_is_followed_to_its_close(
    planning: Planning, runtime: Runtime, clock: TravelClock
) -> None:
    kdn, school, clinic, opeka = planning.kdn, planning.school, planning.clinic, planning.opeka
    case = await commission_case(kdn)
    today = dt.datetime.now(dt.UTC).date()
    body = {
        "case_id": case["id"],
        "title": "План ИПР на I полугодие",
        "period_from": today.isoformat(),
        "period_until": (today + dt.timedelta(days=180)).isoformat(),
        "tasks": [
            task(
                case,
                school,
                SCHOOL_TASK,
                dt.timedelta(days=10),
                legal_basis=COORDINATING,
                respond_by=(dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat(),
            ),
            task(case, clinic, CLINIC_TASK, dt.timedelta(days=20)),
        ],
    }
    created = await kdn.post("/api/v1/plans", body, headers={"Idempotency-Key": "kdn-plan-1"})
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["status"] == "open"
    assert plan["progress"] == {"requested": 2}
    # Tasks can be added to an open plan; this one rests on the commission's statutory duty, not on consent.
    added = await kdn.post(
        f"/api/v1/plans/{plan['id']}/tasks",
        {
            "tasks": [
                task(case, opeka, OPEKA_TASK, dt.timedelta(days=5), legal_basis=STATUTORY),
            ]
        },
    )
    assert added.status_code == 200, added.text
    plan = added.json()
    tasks = by_title(plan)
    assert [t["position"] for t in plan["tasks"]] == [0, 1, 2]
    assert {t["to_tenant_id"] for t in plan["tasks"]} == {str(school.id), str(clinic.id), str(opeka.id)}
    assert tasks[OPEKA_TASK]["legal_basis"] == {"type": "statutory", "reference": "120-FZ art. 9"}
    assert tasks[SCHOOL_TASK]["legal_basis"] == {"type": "statutory", "reference": "120-FZ art. 11"}
    assert tasks[CLINIC_TASK]["to_tenant_name"] == "Agency poliklinika"
    # A retried create with the same key answers with the same plan and sends nothing more.
    again = await kdn.post("/api/v1/plans", body, headers={"Idempotency-Key": "kdn-plan-1"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == plan["id"]
    assert len(again.json()["tasks"]) == 3
    reused = await kdn.post(
        "/api/v1/plans", {**body, "title": "Другой план"}, headers={"Idempotency-Key": "kdn-plan-1"}
    )
    assert reused.status_code == 422

    # Each agency receives its task as a plan_task referral carrying the task and its expected result.
    school_id, clinic_id, opeka_id = (tasks[t]["referral_id"] for t in (SCHOOL_TASK, CLINIC_TASK, OPEKA_TASK))

    async def incoming(agency_: Agency, referral_id: str) -> dict[str, Any] | None:
        response = await agency_.get(f"/api/v1/referrals/{referral_id}")
        return response.json() if response.status_code == 200 else None

    at_school = await eventually(lambda: incoming(school, school_id))
    assert at_school["kind"] == "plan_task"
    assert at_school["plan"]["task_title"] == SCHOOL_TASK
    assert at_school["plan"]["expected_result"] == f"Отчёт: {SCHOOL_TASK.lower()}"
    assert at_school["subjects"][0]["full_name"] == CHILD_NAME
    await plan_when(kdn, plan["id"], lambda p: p["progress"] == {"received": 3})

    # The school answers and finishes at once; the guardianship body accepts; the clinic stays silent.
    await move(
        school,
        school_id,
        {"to": "accepted"},
        {"to": "completed", "outcome": {"result": "resolved", "note": "Занятия проводятся"}},
    )
    await move(opeka, opeka_id, {"to": "accepted"})
    view = await plan_when(kdn, plan["id"], lambda p: p["progress"] == {"accepted": 1, "completed": 1, "received": 1})
    assert view["overdue"] == 0
    assert by_title(view)[SCHOOL_TASK]["outcome"] == {"result": "resolved", "note": "Занятия проводятся"}

    # Six days on: the clinic has not answered within the default five days, the guardianship body is past its
    # five-day deadline; the finished school task is never overdue.
    clock.advance(dt.timedelta(days=6))
    view = (await kdn.get(f"/api/v1/plans/{plan['id']}")).json()
    flags = {title: t["overdue"] for title, t in by_title(view).items()}
    assert flags == {SCHOOL_TASK: False, CLINIC_TASK: True, OPEKA_TASK: True}
    assert view["overdue"] == 2
    assert view["status"] == "open"
    listed = (await kdn.get("/api/v1/plans?status=open")).json()
    assert [(p["id"], p["tasks"], p["done"], p["overdue"]) for p in listed["items"]] == [(plan["id"], 3, 1, 2)]
    not_yet = await kdn.get(f"/api/v1/plans/{plan['id']}/report.pdf")
    assert not_yet.status_code == 409

    await move(
        opeka,
        opeka_id,
        {"to": "in-progress"},
        {"to": "completed", "outcome": {"result": "partially_resolved", "note": "Акт обследования"}},
    )
    clock.advance(dt.timedelta(days=1))
    await move(clinic, clinic_id, {"to": "accepted"}, {"to": "failed", "reason": "Семья не явилась на приём"})

    closed = await plan_when(kdn, plan["id"], lambda p: p["status"] == "closed")
    assert closed["progress"] == {"completed": 2, "failed": 1}
    assert closed["overdue"] == 0
    last_move = max(t["last_change_at"] for t in closed["tasks"])
    assert closed["closed_at"] == last_move
    async with platform_session(runtime.sessions) as session:
        stored = await session.scalar(select(Plan).where(Plan.id == uuid.UUID(plan["id"])))
        assert stored is not None
        assert stored.status == "closed"
        shares = list(
            await session.scalars(
                select(AuditEvent.canonical).where(
                    AuditEvent.action == "exchange:referral:send", AuditEvent.log_tenant_id == kdn.id
                )
            )
        )
    # Every task is a share of its own in the trail; the statutory ones go to the DPO's review queue.
    assert len(shares) == 3
    assert sum('"legal_basis":"statutory"' in s for s in shares) == 2
    assert closed_rejects_tasks(
        await kdn.post(
            f"/api/v1/plans/{plan['id']}/tasks",
            {"tasks": [task(case, school, "Ещё одна задача", dt.timedelta(days=3))]},
        )
    )

    report = await kdn.get(f"/api/v1/plans/{plan['id']}/report.pdf")
    assert report.status_code == 200, report.text
    assert report.headers["content-type"] == "application/pdf"
    assert pdfa_conformance(report.content) == ("2", "B")
    assert all(fonts(report.content).values())
    text = " ".join(" ".join(page.extract_text().split()) for page in pypdf.PdfReader(io.BytesIO(report.content)).pages)
    for expected in (
        "Итоговый отчёт по плану",
        "План ИПР на I полугодие",
        SCHOOL_TASK,
        CLINIC_TASK,
        OPEKA_TASK,
        "Agency shkola-7",
        "Семья не явилась",
        "Акт обследования",
        # Each task's deadline as the day the commission gave it, as its pages show it in Russian.
        *(format_day(dt.date.fromisoformat(t["complete_by_date"]), "ru") for t in closed["tasks"]),
    ):
        assert expected in text, expected
    assert "UTC" not in text  # times are the commission's own, in its time zone

    # casebridge closed the plan by itself: one system event says so, however often the plan was read since.
    (closing,) = await events(runtime, kdn.id, "exchange:plan:close")
    assert closing["actor"] == {"kind": "system", "id": None, "tenant": str(kdn.id), "role": None}
    assert closing["resource"] == {"type": "plan", "id": plan["id"]}
    assert closing["extra"]["automatic"] is True
    assert closing["subjects"] == list(
        runtime.exchange.audit.pseudonyms(kdn.id, [uuid.UUID(case["subjects"][0]["id"])])
    )


def closed_rejects_tasks(response: httpx.Response) -> bool:
    return response.status_code == 409 and "closed" in response.json()["detail"]


async def test_a_task_the_policy_refuses_stops_the_whole_plan(planning: Planning, runtime: Runtime) -> None:
    kdn, school = planning.kdn, planning.school
    police = await agency(kdn.api, runtime, "pdn", TenantKind.POLICE_JUVENILE_UNIT, Role.INTAKE)
    case = await commission_case(kdn)
    refused = await kdn.post(
        "/api/v1/plans",
        plan_for_today(
            case,
            task(case, school, SCHOOL_TASK, dt.timedelta(days=10)),
            task(case, police, "Провести профилактическую беседу", dt.timedelta(days=10)),
            title="План ИПР",
        ),
    )
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/consent-required")
    assert problem["task"] == 1
    assert problem["subject_ref"] == "child 1"
    assert problem["detail"].startswith("Task 2 of the request cannot be sent")
    assert "Провести профилактическую беседу" not in problem["detail"]  # the task is named by its position
    assert CHILD_NAME not in refused.text
    # Nothing of the plan exists and nothing left: not the plan, not the first task, not an envelope.
    assert (await kdn.get("/api/v1/plans")).json()["items"] == []
    assert (await kdn.get("/api/v1/referrals?box=outgoing")).json()["items"] == []
    async with platform_session(runtime.sessions) as session:
        envelopes = await session.scalar(
            select(func.count()).select_from(OutboxEnvelope).where(OutboxEnvelope.tenant_id == kdn.id)
        )
        referrals = await session.scalar(select(func.count()).select_from(Referral))
    assert envelopes == 0
    assert referrals == 0


async def test_plans_of_other_agencies_are_not_found(planning: Planning, runtime: Runtime) -> None:
    kdn, school, opeka = planning.kdn, planning.school, planning.opeka
    other = await agency(kdn.api, runtime, "kdn-2", TenantKind.JUVENILE_COMMISSION, Role.SPECIALIST)
    case = await commission_case(kdn)
    created = await kdn.post(
        "/api/v1/plans",
        plan_for_today(case, task(case, school, SCHOOL_TASK, dt.timedelta(days=10))),
    )
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    second = await kdn.post(
        "/api/v1/plans",
        plan_for_today(case, task(case, school, CLINIC_TASK, dt.timedelta(days=10)), title="План 2"),
    )
    assert second.status_code == 201, second.text
    first_page = (await kdn.get("/api/v1/plans?limit=1")).json()
    assert [p["id"] for p in first_page["items"]] == [second.json()["id"]]
    last_page = (await kdn.get(f"/api/v1/plans?limit=1&cursor={first_page['next_cursor']}")).json()
    assert [p["id"] for p in last_page["items"]] == [plan_id]
    assert last_page["next_cursor"] is None
    assert (await kdn.get("/api/v1/plans?cursor=not-ours")).status_code == 400
    for path in ("", "/report.pdf"):
        foreign = await other.get(f"/api/v1/plans/{plan_id}{path}")
        missing = await other.get(f"/api/v1/plans/{uuid.uuid4()}{path}")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["detail"] == missing.json()["detail"]
    extra = {"tasks": [task(case, school, "Задача", dt.timedelta(days=3))]}
    assert (await other.post(f"/api/v1/plans/{plan_id}/tasks", extra)).status_code == 404
    assert (await other.post(f"/api/v1/plans/{plan_id}/close", {})).status_code == 404
    assert (await other.get("/api/v1/plans")).json()["items"] == []
    # A recipient agency's intake officer may not issue or read plans at all.
    assert (await opeka.get(f"/api/v1/plans/{plan_id}")).status_code == 403
    # A plan cannot be issued for another agency's case either.
    foreign_case = await other.post(
        "/api/v1/plans",
        plan_for_today(case, task(case, school, SCHOOL_TASK, dt.timedelta(days=10))),
    )
    assert foreign_case.status_code == 404


async def test_only_commissions_and_supervisors_issue_plans(planning: Planning, runtime: Runtime) -> None:
    centre = await agency(planning.kdn.api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    case = await commission_case(centre)
    body = plan_for_today(case, task(case, planning.school, SCHOOL_TASK, dt.timedelta(days=10)))
    refused = await centre.post("/api/v1/plans", body)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/forbidden")
    supervisor = await agency(planning.kdn.api, runtime, "semya-2", TenantKind.SOCIAL_CENTRE, Role.SUPERVISOR)
    case = await commission_case(supervisor)
    body["case_id"] = case["id"]
    body["tasks"] = [task(case, planning.school, SCHOOL_TASK, dt.timedelta(days=10))]
    assert (await supervisor.post("/api/v1/plans", body)).status_code == 201
    backwards = {**body, "period_from": "2027-02-01", "period_until": "2027-01-01"}
    invalid = await supervisor.post("/api/v1/plans", backwards)
    assert invalid.status_code == 400
    assert "period_until" in invalid.json()["detail"]


async def issue_plan_closed_on_request(issuer: Agency, case: dict[str, Any], to: Agency) -> httpx.Response:
    """`issuer` issues a plan for today with one task for `to`, that closes only when someone closes it."""
    return await issuer.post(
        "/api/v1/plans",
        plan_for_today(case, task(case, to, SCHOOL_TASK, dt.timedelta(days=10)), auto_close=False),
    )


async def test_a_plan_that_closes_on_request_waits_for_its_tasks(planning: Planning, runtime: Runtime) -> None:
    kdn, school = planning.kdn, planning.school
    case = await commission_case(kdn)
    created = await issue_plan_closed_on_request(kdn, case, school)
    assert created.status_code == 201, created.text
    plan = created.json()
    early = await kdn.post(f"/api/v1/plans/{plan['id']}/close", {})
    assert early.status_code == 409
    assert "1 task(s)" in early.json()["detail"]
    reason = "Ребёнок переведён в другую школу"
    await move(school, plan["tasks"][0]["referral_id"], {"to": "rejected", "reason": reason})
    declined = await plan_when(kdn, plan["id"], lambda p: p["progress"] == {"rejected": 1})
    assert declined["status"] == "open"
    assert declined["tasks"][0]["reason"] == reason
    closed = await kdn.post(f"/api/v1/plans/{plan['id']}/close", {})
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    assert closed.json()["closed_at"] == declined["tasks"][0]["last_change_at"]
    # Closed on request, it is the caller's event only (after the refused early attempt): no system close besides.
    closes = await events(runtime, kdn.id, "exchange:plan:close")
    assert [(e["actor"]["kind"], e["outcome"]) for e in closes] == [("client", "error"), ("client", "success")]


async def test_only_issuers_add_tasks_to_or_close_a_plan(planning: Planning, runtime: Runtime) -> None:
    supervisor = await agency(planning.kdn.api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SUPERVISOR)
    specialist = await colleague(runtime, supervisor, Role.SPECIALIST)
    case = await commission_case(supervisor)
    created = await issue_plan_closed_on_request(supervisor, case, planning.school)
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    # A plain specialist of an agency that is not a commission may read the plan, but not extend or close it.
    extra = {"tasks": [task(case, planning.clinic, CLINIC_TASK, dt.timedelta(days=10))]}
    for refused in (
        await specialist.post(f"/api/v1/plans/{plan_id}/tasks", extra),
        await specialist.post(f"/api/v1/plans/{plan_id}/close", {}),
    ):
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"].endswith("/forbidden")
    seen = await specialist.get(f"/api/v1/plans/{plan_id}")
    assert seen.status_code == 200
    assert len(seen.json()["tasks"]) == 1
    assert seen.json()["status"] == "open"
    added = await supervisor.post(f"/api/v1/plans/{plan_id}/tasks", extra)
    assert added.status_code == 200, added.text
    assert len(added.json()["tasks"]) == 2


async def test_two_requests_with_one_idempotency_key_make_one_plan(planning: Planning, runtime: Runtime) -> None:
    kdn, school = planning.kdn, planning.school
    case = await commission_case(kdn)
    body = plan_for_today(case, task(case, school, SCHOOL_TASK, dt.timedelta(days=10)))
    same = await asyncio.gather(
        *(kdn.post("/api/v1/plans", body, headers={"Idempotency-Key": "race-1"}) for _ in range(3))
    )
    assert sorted(r.status_code for r in same) == [200, 200, 201], [r.text for r in same]
    assert len({r.json()["id"] for r in same}) == 1
    assert all(len(r.json()["tasks"]) == 1 for r in same)
    other = {**body, "title": "Другой план"}
    mixed = await asyncio.gather(
        kdn.post("/api/v1/plans", body, headers={"Idempotency-Key": "race-2"}),
        kdn.post("/api/v1/plans", other, headers={"Idempotency-Key": "race-2"}),
    )
    assert sorted(r.status_code for r in mixed) == [201, 422], [r.text for r in mixed]
    async with platform_session(runtime.sessions) as session:
        stored = await session.scalar(select(func.count()).select_from(Plan).where(Plan.tenant_id == kdn.id))
        sent = await session.scalar(select(func.count()).select_from(Referral).where(Referral.tenant_id == kdn.id))
    assert stored == 2
    assert sent == 2


async def withdrawn_plan(kdn: Agency, school: Agency, case: dict[str, Any], title: str) -> str:
    """A self-closing plan whose one task the commission cancelled itself: nothing comes back over the bus, so the
    plan stays stored as open until it is read."""
    created = await kdn.post(
        "/api/v1/plans",
        plan_for_today(case, task(case, school, SCHOOL_TASK, dt.timedelta(days=10)), title=title),
    )
    assert created.status_code == 201, created.text
    plan: dict[str, Any] = created.json()
    await plan_when(kdn, plan["id"], lambda p: p["progress"] == {"received": 1})
    cancelled = await kdn.post(
        f"/api/v1/referrals/{plan['tasks'][0]['referral_id']}/transition",
        {"to": "cancelled", "reason": "Семья переехала"},
    )
    assert cancelled.status_code == 200, cancelled.text
    return str(plan["id"])


async def stored_status(runtime: Runtime, kdn: Agency) -> dict[str, str]:
    async with platform_session(runtime.sessions) as session:
        return {str(p.id): p.status for p in await session.scalars(select(Plan).where(Plan.tenant_id == kdn.id))}


async def test_listing_by_status_settles_only_the_page_and_names_its_subjects(
    planning: Planning, runtime: Runtime
) -> None:
    kdn, school = planning.kdn, planning.school
    case = await commission_case(kdn)
    older = await withdrawn_plan(kdn, school, case, "План 1")
    newer = await withdrawn_plan(kdn, school, case, "План 2")
    assert await stored_status(runtime, kdn) == {older: "open", newer: "open"}
    # Both plans are finished, so neither is listed as open, and listing settles nothing it does not return.
    assert (await kdn.get("/api/v1/plans?status=open")).json()["items"] == []
    assert await stored_status(runtime, kdn) == {older: "open", newer: "open"}
    first = (await kdn.get("/api/v1/plans?status=closed&limit=1")).json()
    assert [(p["id"], p["status"], p["done"]) for p in first["items"]] == [(newer, "closed", 1)]
    assert await stored_status(runtime, kdn) == {older: "open", newer: "closed"}
    rest = (await kdn.get(f"/api/v1/plans?status=closed&limit=1&cursor={first['next_cursor']}")).json()
    assert [(p["id"], p["status"]) for p in rest["items"]] == [(older, "closed")]
    assert rest["next_cursor"] is None
    assert await stored_status(runtime, kdn) == {older: "closed", newer: "closed"}
    # The listed titles may name the family: each list event names the subjects of the plans it returned.
    child = list(runtime.exchange.audit.pseudonyms(kdn.id, [uuid.UUID(case["subjects"][0]["id"])]))
    assert [e["subjects"] for e in await events(runtime, kdn.id, "exchange:plan:list")] == [[], child, child]
    closes = await events(runtime, kdn.id, "exchange:plan:close")
    assert sorted(e["resource"]["id"] for e in closes) == sorted([older, newer])
    assert all(e["actor"]["kind"] == "system" and e["subjects"] == child for e in closes)


async def test_a_plan_closes_once_when_two_readers_settle_it(planning: Planning, runtime: Runtime) -> None:
    kdn = planning.kdn
    case = await commission_case(kdn)
    plan_id = await withdrawn_plan(kdn, planning.school, case, "План")
    async with tenant_session(runtime.sessions, kdn.id) as session:
        stale = await session.scalar(select(Plan).where(Plan.id == uuid.UUID(plan_id)))
        assert stale is not None
        rows = await plans.task_rows(session, stale)
        await session.commit()
        # Another reader settles the plan between this reader's look at it and its own settling.
        closed = (await kdn.get(f"/api/v1/plans/{plan_id}")).json()
        assert closed["status"] == "closed"
        assert stale.status == "open"
        await plans.settle(session, runtime.exchange, stale, rows)
        await session.commit()
        assert stale.status == "closed"
    (closing,) = await events(runtime, kdn.id, "exchange:plan:close")
    assert closing["resource"]["id"] == plan_id
    assert (await kdn.get(f"/api/v1/plans/{plan_id}")).json()["closed_at"] == closed["closed_at"]
