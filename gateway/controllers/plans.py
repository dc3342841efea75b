"""Multi-agency plans and deadline reminders (API: /api/v1/plans, /api/v1/reminders)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from audit.events import Action
from exchange.plans import reminders
from exchange.plans import report as plan_report
from exchange.plans import services as plans
from exchange.plans.schemas import PlanIn, PlanOut, PlanPage, PlanTasksIn, ReminderList
from gateway.auth.guards import needs
from gateway.controllers.context import audit_of, exchange_deps, principal_of, runtime_of, tenant_transaction
from tenants.models import Role, Scope

_PLANNERS = [Role.SPECIALIST, Role.SUPERVISOR]
_ACTORS = [Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE]


class PlanController(Controller):
    path = "/api/v1/plans"
    tags = ("plans",)

    @post("/", opt=needs(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_CREATE), summary="Issue a plan")
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PlanIn],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", max_length=255)] = None,
    ) -> Response[PlanOut]:
        deps = exchange_deps(request)
        async with tenant_transaction(request) as session:
            plan, created = await plans.create_plan(
                session,
                deps,
                principal=principal_of(request),
                audit=audit_of(request),
                data=data,
                idempotency_key=idempotency_key,
            )
            view = await plans.plan_view(session, deps, plan, audit_of(request))
        return Response(view, status_code=201 if created else 200)

    @get("/", opt=needs(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_LIST), summary="The agency's plans")
    async def list_plans(
        self,
        request: Request[Any, Any, Any],
        status: Annotated[Literal["open", "closed"] | None, QueryParameter()] = None,
        case_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> PlanPage:
        async with tenant_transaction(request) as session:
            items, next_cursor = await plans.list_plans(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                status=status,
                case_id=case_id,
                cursor=cursor,
                limit=limit,
            )
        return PlanPage(items=items, next_cursor=next_cursor)

    @get("/{plan_id:uuid}", opt=needs(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_READ), summary="One plan")
    async def get_plan(self, request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID]) -> PlanOut:
        async with tenant_transaction(request) as session:
            return await plans.read_plan(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                plan_id=plan_id,
            )

    @post(
        "/{plan_id:uuid}/tasks",
        opt=needs(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_ADD_TASKS),
        status_code=200,
        summary="Add tasks to an open plan",
    )
    async def add_tasks(
        self, request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID], data: JSONBody[PlanTasksIn]
    ) -> PlanOut:
        deps = exchange_deps(request)
        async with tenant_transaction(request) as session:
            plan = await plans.add_tasks(
                session,
                deps,
                principal=principal_of(request),
                audit=audit_of(request),
                plan_id=plan_id,
                tasks=data.tasks,
            )
            return await plans.plan_view(session, deps, plan, audit_of(request))

    @post(
        "/{plan_id:uuid}/close",
        opt=needs(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_CLOSE),
        status_code=200,
        summary="Close a plan whose tasks are all finished",
    )
    async def close(self, request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID]) -> PlanOut:
        deps = exchange_deps(request)
        async with tenant_transaction(request) as session:
            plan = await plans.close_plan(
                session, deps, principal=principal_of(request), audit=audit_of(request), plan_id=plan_id
            )
            return await plans.plan_view(session, deps, plan, audit_of(request))

    @get(
        "/{plan_id:uuid}/report.pdf",
        opt=needs(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_REPORT),
        summary="Summary report of a closed plan (PDF)",
        media_type="application/pdf",
    )
    async def report(self, request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID]) -> Response[bytes]:
        deps = exchange_deps(request)
        async with tenant_transaction(request) as session:
            summary = await plan_report.plan_summary(
                session, deps, principal=principal_of(request), audit=audit_of(request), plan_id=plan_id
            )
        body = await plan_report.summary_pdf(deps, summary)
        return Response(
            body,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="plan-{plan_id}.pdf"'},
        )


class ReminderController(Controller):
    path = "/api/v1/reminders"
    tags = ("reminders",)

    @get("/", opt=needs(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_REMINDER_LIST), summary="Deadlines to watch")
    async def list_reminders(self, request: Request[Any, Any, Any]) -> ReminderList:
        runtime = runtime_of(request)
        async with tenant_transaction(request) as session:
            items = await reminders.reminders_for(
                session,
                principal=principal_of(request),
                audit=audit_of(request),
                now=runtime.clock.now(),
                lead=runtime.settings.reminders.lead,
            )
        return ReminderList(items=items)
