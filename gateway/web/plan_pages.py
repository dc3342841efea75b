"""Multi-agency plans in the browser: a commission issues a plan for one of its cases, follows each agency's task and
report, adds tasks, closes the plan and downloads its summary, through the services of /api/v1/plans."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Final

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from uuid_utils.compat import uuid7

from audit.events import Action
from exchange.cases import services as cases
from exchange.cases.policy import STATUTORY_CATALOGUE, Category
from exchange.context import Context
from exchange.errors import ConsentRequired, IdempotencyMismatch
from exchange.plans import report as plan_report
from exchange.plans import services as plans
from exchange.referrals.models import Urgency
from exchange.referrals.status import TERMINAL
from gateway.controllers.context import open_context, runtime_of
from gateway.files import attachment
from gateway.web.casework import PURPOSES
from gateway.web.forms import FORM, TASK_ROWS, PlanForm, Refusal
from gateway.web.i18n import agency_zone
from gateway.web.pages import error_text, page, redirect, render, translator
from gateway.web.paging import PLANS_PER_PAGE, BadPageLink, back_to_first_page, cursor_param
from tenants.access import access_tenant
from tenants.calendar import today_in
from tenants.directory import DirectoryQuery, search_directory
from tenants.errors import CasebridgeError, Conflict, Forbidden, InvalidInput
from tenants.models import Role, Scope, TenantKind
from tenants.persistence import platform_session

_PLANNERS: Final = [Role.SPECIALIST, Role.SUPERVISOR]
PLAN_TABS: Final = ("open", "closed", "all")
# The commission's coordinating duty (exchange/cases/policy.py): what its plans' tasks usually rest on.
COMMISSION_BASIS: Final = "120-FZ art. 11"
# The form's first offer of a plan's period and of each task's day, counted from today in the agency's time zone.
PLAN_PERIOD: Final = dt.timedelta(days=180)
TASK_TERM: Final = dt.timedelta(days=30)


@get("/plans", **page(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_LIST))
async def plan_list(
    request: Request[Any, Any, Any],
    tab: FromQuery[str] = "open",
    case_id: FromQuery[uuid.UUID | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[Any]:
    tab = tab if tab in PLAN_TABS else "open"
    try:
        cursor_param(request, "cursor")
    except BadPageLink as bad:
        return back_to_first_page(request, bad)
    async with open_context(request) as ctx:
        items, next_cursor = await plans.list_plans(
            ctx, status=None if tab == "all" else tab, case_id=case_id, cursor=cursor, limit=PLANS_PER_PAGE
        )
        issuer = await plans.issues_plans(ctx.session, ctx.principal)
    params = {"tab": tab, **({"case_id": str(case_id)} if case_id else {})}
    return render(
        request,
        "plans.html",
        items=items,
        tab=tab,
        tabs=PLAN_TABS,
        case_id=case_id,
        params=params,
        next_cursor=next_cursor,
        cursor=cursor,
        issuer=issuer,
    )


# -- issuing a plan and adding tasks -------------------------------------------------------------------------------


@get("/cases/{case_id:uuid}/plans/new", **page(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_CASE_READ))
async def new_plan(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    return await _plan_form(request, case_id=case_id, plan_id=None, form=None)


@post("/cases/{case_id:uuid}/plans/new", **page(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_CREATE))
async def create_plan(
    request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID], data: Annotated[PlanForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    body = data.plan_in(request, case_id=case_id, now=runtime_of(request).clock.now())
    if isinstance(body, Refusal):
        return await _refused(request, case_id=case_id, plan_id=None, data=data, text=body.text)
    try:
        async with open_context(request) as ctx:
            plan, _created = await plans.create_plan(
                ctx, data=body, idempotency_key=data.idempotency_key.strip() or None
            )
    except (InvalidInput, ConsentRequired, IdempotencyMismatch) as exc:
        return await _refused(request, case_id=case_id, plan_id=None, data=data, text=_plan_error(request, exc))
    return redirect(request, f"/plans/{plan.id}", success=_("The plan is issued and its tasks are sent."))


@get("/plans/{plan_id:uuid}/tasks/new", **page(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_READ))
async def new_tasks(request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID]) -> Response[Any]:
    return await _plan_form(request, case_id=None, plan_id=plan_id, form=None)


@post("/plans/{plan_id:uuid}/tasks/new", **page(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_ADD_TASKS))
async def add_tasks(
    request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID], data: Annotated[PlanForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    body = data.tasks_in(request, now=runtime_of(request).clock.now())
    if isinstance(body, Refusal):
        return await _refused(request, case_id=None, plan_id=plan_id, data=data, text=body.text)
    try:
        async with open_context(request) as ctx:
            await plans.add_tasks(ctx, plan_id=plan_id, tasks=body.tasks)
    except (InvalidInput, ConsentRequired, Conflict) as exc:
        return await _refused(request, case_id=None, plan_id=plan_id, data=data, text=_plan_error(request, exc))
    return redirect(request, f"/plans/{plan_id}", success=_("The tasks are sent."))


async def _refused(
    request: Request[Any, Any, Any], *, case_id: uuid.UUID | None, plan_id: uuid.UUID | None, data: PlanForm, text: str
) -> Response[Any]:
    # The refused send is in the audit trail already; showing the form again reads the case (or the plan).
    action = Action.EXCHANGE_CASE_READ if plan_id is None else Action.EXCHANGE_PLAN_READ
    return await _plan_form(
        request, case_id=case_id, plan_id=plan_id, form=data.fields(), status=400, error=text, action=action
    )


def _plan_error(request: Request[Any, Any, Any], exc: CasebridgeError) -> str:
    """A refusal of the plan's service in words, naming the task the sharing policy refused."""
    _ = translator(request)
    if isinstance(exc, IdempotencyMismatch):
        return _("This form was already sent with other contents. Check the case's plans before sending it again.")
    if isinstance(exc, ConsentRequired) and exc.task is not None:
        return _("Task %(number)d: %(reason)s", number=exc.task + 1, reason=error_text(request, exc))
    return error_text(request, exc)


async def _plan_form(
    request: Request[Any, Any, Any],
    *,
    case_id: uuid.UUID | None,
    plan_id: uuid.UUID | None,
    form: dict[str, Any] | None,
    status: int = 200,
    action: Action | None = None,
    **extra: Any,
) -> Response[Any]:
    """The form of a new plan for a case, or of more tasks for a plan (whose case it reads)."""
    runtime = runtime_of(request)
    async with open_context(request, action=action) as ctx:
        plan = await plans.read_plan(ctx, plan_id=plan_id) if plan_id is not None else None
        of_case = plan.case_id if plan is not None else case_id
        assert of_case is not None  # the form is either a case's new plan or a plan's new tasks
        case = await cases.read_case(ctx, case_id=of_case)
        if plan is not None:
            ctx.audit.touched(resource_type="plan", resource_id=plan.id)  # the page is the plan's, as declared
        commission = await _is_commission(ctx)
    async with platform_session(runtime.sessions) as session:
        agencies = [a for a in await search_directory(session, DirectoryQuery()) if a.id != ctx.principal.tenant_id]
    if form is None:
        form = _first_offer(request, [str(s.id) for s in case.subjects], commission=commission)
    return render(
        request,
        "plan_form.html",
        status=status,
        case=case,
        plan=plan,
        form=form,
        rows=range(TASK_ROWS),
        agencies=agencies,
        purposes=PURPOSES,
        categories=list(Category),
        urgencies=list(Urgency),
        statutes=STATUTORY_CATALOGUE,
        # Each showing of the form is one attempt: sending it twice (a double click, a reload) issues one plan.
        idempotency_key=str(uuid7()),
        **extra,
    )


async def _is_commission(ctx: Context) -> bool:
    """Whether the caller's agency is a juvenile commission; anyone who may not issue plans gets the 403 page."""
    if not await plans.issues_plans(ctx.session, ctx.principal):
        raise Forbidden("Multi-agency plans are issued by a juvenile commission's specialists or by a supervisor.")
    tenant = await access_tenant(ctx.session, ctx.principal, ctx.principal.tenant_id, for_write=False)
    return tenant.kind == TenantKind.JUVENILE_COMMISSION


def _first_offer(request: Request[Any, Any, Any], subject_ids: list[str], *, commission: bool) -> dict[str, Any]:
    """An empty form's values: today's period, every person of the case, and for a commission its statutory purpose
    and coordinating duty."""
    today = today_in(agency_zone(request), runtime_of(request).clock.now())
    offer: dict[str, Any] = {
        "period-from": today.isoformat(),
        "period-until": (today + PLAN_PERIOD).isoformat(),
        "auto-close": "on",
        "subjects": subject_ids,
        "categories": [],
        "purpose": "child_protection" if commission else "",
        "basis": "statutory" if commission else "consent",
        "reference": COMMISSION_BASIS if commission else "",
    }
    for row in range(TASK_ROWS):
        offer[f"task-{row}-complete-by"] = (today + TASK_TERM).isoformat()
    return offer


# -- following and closing a plan ------------------------------------------------------------------------------------


@get("/plans/{plan_id:uuid}", **page(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_READ))
async def plan_page(request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID]) -> Response[Any]:
    """The plan with every task's agency, deadlines, status and report; the overdue ones are listed first too."""
    async with open_context(request) as ctx:
        plan = await plans.read_plan(ctx, plan_id=plan_id)
        issuer = await plans.issues_plans(ctx.session, ctx.principal)
    finished = sum(1 for t in plan.tasks if t.status in TERMINAL)
    return render(
        request,
        "plan.html",
        plan=plan,
        issuer=issuer,
        finished=finished,
        overdue=[t for t in plan.tasks if t.overdue],
        closable=plan.status == plans.OPEN and bool(plan.tasks) and finished == len(plan.tasks),
    )


@post("/plans/{plan_id:uuid}/close", **page(Scope.REFERRALS_WRITE, _PLANNERS, Action.EXCHANGE_PLAN_CLOSE))
async def close_plan(request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID]) -> Response[Any]:
    _, back = translator(request), f"/plans/{plan_id}"
    try:
        async with open_context(request) as ctx:
            await plans.close_plan(ctx, plan_id=plan_id)
    except Conflict:
        return redirect(
            request,
            back,
            error=_("A plan is closed once every task is completed, failed, declined or cancelled."),
        )
    return redirect(request, back, success=_("The plan is closed. Its summary report can be downloaded."))


@get("/plans/{plan_id:uuid}/report.pdf", **page(Scope.REFERRALS_READ, _PLANNERS, Action.EXCHANGE_PLAN_REPORT))
async def plan_summary(request: Request[Any, Any, Any], plan_id: FromPath[uuid.UUID]) -> Response[Any]:
    try:
        async with open_context(request) as ctx:
            summary = await plan_report.plan_summary(ctx, plan_id=plan_id)
    except Conflict:
        _ = translator(request)
        return redirect(request, f"/plans/{plan_id}", error=_("The summary report is made once the plan is closed."))
    # Typeset after the read has committed, holding no transaction (as the API does).
    pdf = await plan_report.summary_pdf(ctx.deps, summary)
    return attachment(pdf, "application/pdf", f"plan-{plan_id}.pdf")


PLAN_ROUTES: list[HTTPRouteHandler] = [
    plan_list,
    new_plan,
    create_plan,
    new_tasks,
    add_tasks,
    plan_page,
    close_plan,
    plan_summary,
]
