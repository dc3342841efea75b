"""A case's individual care plan (the key worker's plan of casework): goals drawn from the three-part needs assessment,
actions with who does them and by which day, each optionally carried out by one of the case's referrals.

The plan is internal to the agency: nothing here builds an envelope or reaches a partner. A referral that carries out
an action is sent through the ordinary composer, on its own legal basis; the plan only shows that referral's status
and outcome beside the action, from the sender's own copy.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from exchange.cases.access import access_case
from exchange.cases.datakeys import DataKey, sealed_context
from exchange.cases.models import Case, Subject
from exchange.context import Context
from exchange.deps import ExchangeDeps
from exchange.plans.access import access_care_action, access_care_goal
from exchange.plans.models import CareAction, CareGoal, CarePlan
from exchange.plans.schemas import (
    CareActionIn,
    CareActionOut,
    CareGoalIn,
    CareGoalOut,
    CarePlanOut,
    CareReferralOut,
    OverdueCareAction,
)
from exchange.referrals.access import access_referral
from exchange.referrals.models import Referral, Side
from exchange.referrals.services import is_overdue
from tenants.access import access_tenant
from tenants.calendar import deadline, time_zone
from tenants.errors import InvalidInput, NotFound

# Enough for any real plan of casework, and a bound on what one page seals and opens.
MAX_GOALS: Final = 30
MAX_ACTIONS: Final = 100


async def read_care_plan(ctx: Context, *, case_id: uuid.UUID) -> CarePlanOut:
    """The case's care plan with every goal's actions and the referrals carrying them; an empty one if none yet."""
    case = await access_case(ctx.session, ctx.principal, case_id, for_write=False)
    plan = await _plan_of(ctx.session, case)
    await _touched(ctx, case, plan)
    if plan is None:
        return CarePlanOut(case_id=case.id, case_ref=case.reference, goals=[])
    return await care_plan_view(ctx, case, plan)


async def case_care_plan(ctx: Context, *, case_id: uuid.UUID) -> CarePlanOut | None:
    """The care plan shown on the case page, whose own event (the case read) names the case and its people."""
    case = await access_case(ctx.session, ctx.principal, case_id, for_write=False)
    plan = await _plan_of(ctx.session, case)
    if plan is None:
        return None
    ctx.audit.touched(care_plan=str(plan.id))
    return await care_plan_view(ctx, case, plan)


async def add_goal(ctx: Context, *, case_id: uuid.UUID, data: CareGoalIn) -> CarePlan:
    """Add a goal to the case's care plan, starting the plan (and its data key) with the first goal."""
    session, principal = ctx.session, ctx.principal
    case = await access_case(session, principal, case_id, for_write=True)
    plan = await _plan_of(session, case) or await _start_plan(ctx, case)
    await _touched(ctx, case, plan)
    position = await _next_position(session, CareGoal, plan, MAX_GOALS, "goals")
    key = await _plan_key(session, ctx.deps, plan)
    goal_id = uuid7()
    session.add(
        CareGoal(
            id=goal_id,
            tenant_id=plan.tenant_id,
            care_plan_id=plan.id,
            position=position,
            need=data.need,
            sealed=key.seal({"text": data.text}, context=sealed_context("care_goal", goal_id)),
        )
    )
    ctx.audit.touched(goal=str(goal_id), need=data.need)
    await session.flush()
    return plan


async def add_action(ctx: Context, *, case_id: uuid.UUID, data: CareActionIn) -> CarePlan:
    """Add an action to a goal of the case's plan; its day is a deadline of the agency's calendar (the end of that day
    there). A goal of another case answers like a missing one."""
    session, principal = ctx.session, ctx.principal
    goal = await access_care_goal(session, principal, data.goal_id, for_write=True)
    plan, case = await _plan_and_case(ctx, goal.care_plan_id)
    if case.id != case_id:
        raise NotFound("No such goal.")
    await _touched(ctx, case, plan)
    position = await _next_position(session, CareAction, plan, MAX_ACTIONS, "actions")
    tenant = await access_tenant(session, principal, principal.tenant_id, for_write=False)
    due = deadline(data.due_by, time_zone(tenant.time_zone))
    referral = await _case_referral(ctx, case, data.referral_id) if data.referral_id else None
    key = await _plan_key(session, ctx.deps, plan)
    action_id = uuid7()
    session.add(
        CareAction(
            id=action_id,
            tenant_id=plan.tenant_id,
            care_plan_id=plan.id,
            goal_id=goal.id,
            position=position,
            sealed=key.seal({"what": data.what, "who": data.who}, context=sealed_context("care_action", action_id)),
            due_on=due.day,
            due_at=due.at,
            referral_id=referral.id if referral else None,
        )
    )
    ctx.audit.touched(action=str(action_id), referral=str(referral.exchange_id) if referral else None)
    await session.flush()
    return plan


async def link_referral(ctx: Context, *, action_id: uuid.UUID, referral_id: uuid.UUID | None) -> CarePlan:
    """Name the case's referral that carries out an action (or none): its status and outcome then show beside it."""
    action = await access_care_action(ctx.session, ctx.principal, action_id, for_write=True)
    plan, case = await _plan_and_case(ctx, action.care_plan_id)
    await _touched(ctx, case, plan)
    referral = await _case_referral(ctx, case, referral_id) if referral_id else None
    action.referral_id = referral.id if referral else None
    ctx.audit.touched(action=str(action.id), referral=str(referral.exchange_id) if referral else None)
    await ctx.session.flush()
    return plan


async def complete_action(ctx: Context, *, action_id: uuid.UUID) -> CarePlan:
    """Record an action as done now; it then leaves the overdue lists."""
    action = await access_care_action(ctx.session, ctx.principal, action_id, for_write=True)
    plan, case = await _plan_and_case(ctx, action.care_plan_id)
    await _touched(ctx, case, plan)
    if action.done_at is None:  # recorded twice (a double click): the first time stands
        action.done_at = ctx.deps.clock.now()
    ctx.audit.touched(action=str(action.id))
    await ctx.session.flush()
    return plan


async def overdue_actions(ctx: Context, *, limit: int) -> list[OverdueCareAction]:
    """The agency's care plan actions not done by their day, the longest late first, for the dashboard."""
    session, deps, principal = ctx.session, ctx.deps, ctx.principal
    rows = await session.execute(
        select(CareAction, CarePlan, Case.reference)
        .join(CarePlan, CarePlan.id == CareAction.care_plan_id)
        .join(Case, Case.id == CarePlan.case_id)
        .where(
            CareAction.tenant_id == principal.tenant_id,
            CarePlan.tenant_id == principal.tenant_id,
            Case.tenant_id == principal.tenant_id,
            CareAction.done_at.is_(None),
            CareAction.due_at < deps.clock.now(),
        )
        .order_by(CareAction.due_at, CareAction.id)
        .limit(limit)
    )
    found = rows.all()
    keys: dict[uuid.UUID, DataKey] = {}
    late = []
    for action, plan, reference in found:
        key = keys.get(plan.id) or await _plan_key(session, deps, plan)
        keys[plan.id] = key
        text = key.open(action.sealed, context=sealed_context("care_action", action.id))
        late.append(
            OverdueCareAction(
                action_id=action.id,
                case_id=plan.case_id,
                case_ref=reference,
                what=text["what"],
                who=text["who"],
                due_by_date=action.due_on,
            )
        )
    if found:
        # The texts may name the family: the event names the people of every case shown.
        cases = sorted({plan.case_id for _, plan, _ in found})
        subjects = await session.scalars(
            select(Subject.id).where(Subject.case_id.in_(cases), Subject.tenant_id == principal.tenant_id)
        )
        ctx.audit.touched(
            care_actions=[str(a.action_id) for a in late],
            subjects=deps.audit.pseudonyms(principal.tenant_id, list(subjects)),
        )
    return late


async def care_plan_view(ctx: Context, case: Case, plan: CarePlan) -> CarePlanOut:
    session, deps = ctx.session, ctx.deps
    now = deps.clock.now()
    key = await _plan_key(session, deps, plan)
    goals = list(
        await session.scalars(
            select(CareGoal)
            .where(CareGoal.care_plan_id == plan.id, CareGoal.tenant_id == plan.tenant_id)
            .order_by(CareGoal.position)
        )
    )
    actions = list(
        await session.scalars(
            select(CareAction)
            .where(CareAction.care_plan_id == plan.id, CareAction.tenant_id == plan.tenant_id)
            .order_by(CareAction.position)
        )
    )
    referrals = await _referrals(session, plan, [a.referral_id for a in actions if a.referral_id])
    by_goal: dict[uuid.UUID, list[CareActionOut]] = {}
    for action in actions:
        text = key.open(action.sealed, context=sealed_context("care_action", action.id))
        referral = referrals.get(action.referral_id) if action.referral_id else None
        by_goal.setdefault(action.goal_id, []).append(
            CareActionOut(
                id=action.id,
                goal_id=action.goal_id,
                position=action.position,
                what=text["what"],
                who=text["who"],
                due_by_date=action.due_on,
                due_by=action.due_at,
                overdue=action.done_at is None and now > action.due_at,
                done_at=action.done_at,
                referral=_referral_out(referral, now) if referral else None,
            )
        )
    shown = [
        CareGoalOut(
            id=goal.id,
            position=goal.position,
            need=goal.need,
            text=key.open(goal.sealed, context=sealed_context("care_goal", goal.id))["text"],
            actions=by_goal.get(goal.id, []),
        )
        for goal in goals
    ]
    overdue = sum(1 for goal in shown for action in goal.actions if action.overdue)
    return CarePlanOut(id=plan.id, case_id=case.id, case_ref=case.reference, goals=shown, overdue=overdue)


def _referral_out(referral: Referral, now: dt.datetime) -> CareReferralOut:
    return CareReferralOut(
        id=referral.exchange_id,
        kind=referral.kind,
        status=referral.status,
        overdue=is_overdue(referral, now),
        to_tenant_id=referral.to_tenant_id,
        outcome_result=referral.outcome_result,
    )


async def _referrals(session: AsyncSession, plan: CarePlan, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Referral]:
    if not ids:
        return {}
    rows = await session.scalars(
        select(Referral).where(
            Referral.id.in_(set(ids)), Referral.tenant_id == plan.tenant_id, Referral.case_id == plan.case_id
        )
    )
    return {r.id: r for r in rows}


async def _case_referral(ctx: Context, case: Case, referral_id: uuid.UUID) -> Referral:
    """A referral this agency sent for this case; any other answers as a missing one."""
    referral = await access_referral(ctx.session, ctx.principal, referral_id, for_write=False)
    if referral.side != Side.SENDER or referral.case_id != case.id:
        raise NotFound("No such referral in this case.")
    return referral


async def _next_position(
    session: AsyncSession, row: type[CareGoal] | type[CareAction], plan: CarePlan, most: int, what: str
) -> int:
    """The position a new goal or action of the plan takes, or InvalidInput once the plan holds `most` of them."""
    count = await session.scalar(
        select(func.count()).where(row.care_plan_id == plan.id, row.tenant_id == plan.tenant_id)
    )
    if (count or 0) >= most:
        raise InvalidInput(f"A care plan holds at most {most} {what}.")
    return count or 0


async def _plan_of(session: AsyncSession, case: Case) -> CarePlan | None:
    plan: CarePlan | None = await session.scalar(
        select(CarePlan).where(CarePlan.case_id == case.id, CarePlan.tenant_id == case.tenant_id)
    )
    return plan


async def _plan_and_case(ctx: Context, plan_id: uuid.UUID) -> tuple[CarePlan, Case]:
    """The plan of a goal or action reached through its access function, and its case (of the same tenant)."""
    plan = await ctx.session.scalar(
        select(CarePlan).where(CarePlan.id == plan_id, CarePlan.tenant_id == ctx.principal.tenant_id)
    )
    if plan is None:
        raise NotFound("No such care plan.")
    case = await access_case(ctx.session, ctx.principal, plan.case_id, for_write=True)
    return plan, case


async def _start_plan(ctx: Context, case: Case) -> CarePlan:
    plan_id = uuid7()
    _, wrapped = await ctx.deps.datakeys.create(ctx.session, case.tenant_id, sealed_context("care_plan", plan_id))
    plan = CarePlan(
        id=plan_id,
        tenant_id=case.tenant_id,
        case_id=case.id,
        created_by_kind=ctx.principal.actor_kind.value,
        created_by_id=ctx.principal.actor_id,
        kek_kid=wrapped.kek_kid,
        data_key_wrapped=wrapped.wrapped,
    )
    ctx.session.add(plan)
    await ctx.session.flush()
    return plan


async def _touched(ctx: Context, case: Case, plan: CarePlan | None) -> None:
    """The request's event names the care plan (or the case, before it has one) and the case's people."""
    subjects = await ctx.session.scalars(
        select(Subject.id).where(Subject.case_id == case.id, Subject.tenant_id == case.tenant_id)
    )
    ctx.audit.touched(
        resource_type="care_plan" if plan else "case",
        resource_id=plan.id if plan else case.id,
        case=str(case.id),
        subjects=ctx.deps.audit.pseudonyms(case.tenant_id, list(subjects)),
    )


async def _plan_key(session: AsyncSession, deps: ExchangeDeps, plan: CarePlan) -> DataKey:
    return await deps.datakeys.open(session, plan.tenant_id, sealed_context("care_plan", plan.id), plan.wrapped_key)
