"""A case's care plan in the browser: the key worker sets goals from the needs assessment, adds actions with who and
by which day, names the referral that carries an action out, records actions as done and prints the plan.

The plan stays inside the agency (exchange/plans/care.py): a referral for an action is sent from the composer, on its
own consent or statutory basis, and only its status and outcome come back beside the action.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from audit.events import Action
from exchange.cases import services as cases
from exchange.context import Context
from exchange.plans import care
from exchange.plans import report as plan_report
from exchange.plans.models import CarePlan
from exchange.plans.schemas import NEEDS, CareActionIn, CareGoalIn
from exchange.referrals import worklist
from gateway.controllers.context import open_context, runtime_of
from gateway.files import attachment
from gateway.web.casework import partner_names
from gateway.web.forms import FORM, CareActionForm, CareGoalForm, CareReferralForm, Refusal
from gateway.web.i18n import agency_zone
from gateway.web.pages import error_text, page, redirect, render, translator
from tenants.calendar import today_in
from tenants.errors import InvalidInput, NotFound
from tenants.models import Role, Scope

_WORKERS: Final = [Role.SPECIALIST, Role.SUPERVISOR]
# The case's referrals an action may name: the newest ones, enough for any real case.
REFERRALS_TO_LINK: Final = 50
Body = CareGoalIn | CareActionIn


def care_plan_path(case_id: uuid.UUID) -> str:
    return f"/cases/{case_id}/care-plan"


@get("/cases/{case_id:uuid}/care-plan", **page(Scope.CASES_READ, _WORKERS, Action.EXCHANGE_CARE_PLAN_READ))
async def care_plan_page(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    """The care plan with its goals under the needs assessment, each action's state, and the forms that extend it."""
    async with open_context(request) as ctx:
        case = await cases.read_case(ctx, case_id=case_id)
        plan = await care.read_care_plan(ctx, case_id=case_id)
        referrals = await case_referrals(ctx, case_id)
    partners = await _partners(request, referrals)
    today = today_in(agency_zone(request), runtime_of(request).clock.now())
    return render(
        request,
        "care_plan.html",
        case=case,
        plan=plan,
        needs=NEEDS,
        referrals=referrals,
        partners=partners,
        default_due=today.isoformat(),
    )


async def case_referrals(ctx: Context, case_id: uuid.UUID) -> list[Any]:
    rows, _next = await worklist.case_referrals(ctx, case_id=case_id, before_id=None, limit=REFERRALS_TO_LINK)
    return rows


async def _partners(request: Request[Any, Any, Any], referrals: list[Any]) -> dict[uuid.UUID, str]:
    return await partner_names(request, {r.to_tenant_id for r in referrals})


@post("/cases/{case_id:uuid}/care-plan/goals", **page(Scope.CASES_WRITE, _WORKERS, Action.EXCHANGE_CARE_PLAN_ADD_GOAL))
async def add_goal(
    request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID], data: Annotated[CareGoalForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    return await _changed(
        request, case_id, data.goal_in(request), care.add_goal, _("The goal is added to the care plan.")
    )


@post(
    "/cases/{case_id:uuid}/care-plan/actions", **page(Scope.CASES_WRITE, _WORKERS, Action.EXCHANGE_CARE_PLAN_ADD_ACTION)
)
async def add_action(
    request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID], data: Annotated[CareActionForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    return await _changed(
        request, case_id, data.action_in(request), care.add_action, _("The action is added to the care plan.")
    )


async def _changed(
    request: Request[Any, Any, Any],
    case_id: uuid.UUID,
    body: Body | Refusal,
    change: Callable[..., Awaitable[CarePlan]],
    success: str,
) -> Response[Any]:
    """Apply a form's change to the case's care plan and go back to the plan with the outcome in words."""
    back = care_plan_path(case_id)
    if isinstance(body, Refusal):
        return redirect(request, back, error=body.text)
    try:
        async with open_context(request) as ctx:
            await change(ctx, case_id=case_id, data=body)
    except (InvalidInput, NotFound) as exc:
        return redirect(request, back, error=error_text(request, exc))
    return redirect(request, back, success=success)


@post(
    "/care-actions/{action_id:uuid}/referral",
    **page(Scope.CASES_WRITE, _WORKERS, Action.EXCHANGE_CARE_PLAN_LINK_REFERRAL),
)
async def link_referral(
    request: Request[Any, Any, Any], action_id: FromPath[uuid.UUID], data: Annotated[CareReferralForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    referral_id = _uuid(data.referral)
    if data.referral.strip() and referral_id is None:
        raise NotFound("No such referral in this case.")
    async with open_context(request) as ctx:
        plan = await care.link_referral(ctx, action_id=action_id, referral_id=referral_id)
    text = (
        _("The referral is linked to the action.")
        if referral_id
        else _("The action is carried out without a referral.")
    )
    return redirect(request, care_plan_path(plan.case_id), success=text)


@post(
    "/care-actions/{action_id:uuid}/done",
    **page(Scope.CASES_WRITE, _WORKERS, Action.EXCHANGE_CARE_PLAN_COMPLETE_ACTION),
)
async def complete_action(request: Request[Any, Any, Any], action_id: FromPath[uuid.UUID]) -> Response[Any]:
    _ = translator(request)
    async with open_context(request) as ctx:
        plan = await care.complete_action(ctx, action_id=action_id)
    return redirect(request, care_plan_path(plan.case_id), success=_("The action is recorded as done."))


@get("/cases/{case_id:uuid}/care-plan.pdf", **page(Scope.CASES_READ, _WORKERS, Action.EXCHANGE_CARE_PLAN_REPORT))
async def care_plan_pdf(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    async with open_context(request) as ctx:
        printed = await plan_report.care_plan_report(ctx, case_id=case_id)
    # Typeset after the read has committed, holding no transaction (as the plan summary is).
    pdf = await plan_report.care_plan_pdf(ctx.deps, printed)
    return attachment(pdf, "application/pdf", f"care-plan-{case_id}.pdf")


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip()) if value.strip() else None
    except ValueError:
        return None


CARE_PLAN_ROUTES: list[HTTPRouteHandler] = [
    care_plan_page,
    add_goal,
    add_action,
    link_referral,
    complete_action,
    care_plan_pdf,
]
