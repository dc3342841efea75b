"""Multi-agency plans and deadline reminders (API: /api/v1/plans, /api/v1/reminders)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from audit.events import Action
from exchange.context import Context
from exchange.plans import reminders
from exchange.plans import report as plan_report
from exchange.plans import services as plans
from exchange.plans.schemas import PlanIn, PlanOut, PlanPage, PlanTasksIn, ReminderList
from gateway.auth.guards import needs
from gateway.controllers.context import open_context, runtime_of
from tenants.models import Role, Scope

_PLANNERS = [Role.SPECIALIST, Role.SUPERVISOR]
_ACTORS = [Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE]


class PlanController(Controller):
    path = "/plans"
    tags = ("plans",)

    @post("/", opt=needs(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_CREATE), summary="Issue a plan")
    async def create(
        self,
        ctx: NamedDependency[Context],
        data: JSONBody[PlanIn],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", max_length=255)] = None,
    ) -> Response[PlanOut]:
        plan, created = await plans.create_plan(ctx, data=data, idempotency_key=idempotency_key)
        view = await plans.plan_view(ctx, plan)
        return Response(view, status_code=201 if created else 200)

    @get("/", opt=needs(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_LIST), summary="The agency's plans")
    async def list_plans(
        self,
        ctx: NamedDependency[Context],
        status: Annotated[Literal["open", "closed"] | None, QueryParameter()] = None,
        case_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> PlanPage:
        items, next_cursor = await plans.list_plans(ctx, status=status, case_id=case_id, cursor=cursor, limit=limit)
        return PlanPage(items=items, next_cursor=next_cursor)

    @get("/{plan_id:uuid}", opt=needs(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_READ), summary="One plan")
    async def get_plan(self, ctx: NamedDependency[Context], plan_id: FromPath[uuid.UUID]) -> PlanOut:
        return await plans.read_plan(ctx, plan_id=plan_id)

    @post(
        "/{plan_id:uuid}/tasks",
        opt=needs(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_ADD_TASKS),
        status_code=200,
        summary="Add tasks to an open plan",
    )
    async def add_tasks(
        self, ctx: NamedDependency[Context], plan_id: FromPath[uuid.UUID], data: JSONBody[PlanTasksIn]
    ) -> PlanOut:
        plan = await plans.add_tasks(ctx, plan_id=plan_id, tasks=data.tasks)
        return await plans.plan_view(ctx, plan)

    @post(
        "/{plan_id:uuid}/close",
        opt=needs(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_CLOSE),
        status_code=200,
        summary="Close a plan whose tasks are all finished",
    )
    async def close(self, ctx: NamedDependency[Context], plan_id: FromPath[uuid.UUID]) -> PlanOut:
        plan = await plans.close_plan(ctx, plan_id=plan_id)
        return await plans.plan_view(ctx, plan)

    @get(
        "/{plan_id:uuid}/report.pdf",
        opt=needs(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_REPORT),
        summary="Summary report of a closed plan (PDF)",
        media_type="application/pdf",
    )
    async def report(self, request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID]) -> Response[bytes]:
        # Opened here, not injected: the PDF is typeset after the read commits, holding no transaction.
        async with open_context(request) as ctx:
            summary = await plan_report.plan_summary(ctx, plan_id=plan_id)
        body = await plan_report.summary_pdf(ctx.deps, summary)
        return Response(
            body,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="plan-{plan_id}.pdf"'},
        )


class ReminderController(Controller):
    path = "/reminders"
    tags = ("reminders",)

    @get("/", opt=needs(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_REMINDER_LIST), summary="Deadlines to watch")
    async def list_reminders(self, request: Request[Any, Any, Any], ctx: NamedDependency[Context]) -> ReminderList:
        runtime = runtime_of(request)
        items = await reminders.reminders_for(
            ctx,
            now=runtime.clock.now(),
            lead=runtime.settings.reminders.lead,
            escalate_after_days=runtime.settings.reminders.escalate_after_days,
        )
        return ReminderList(items=items)
