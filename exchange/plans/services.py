"""Multi-agency plans (КИПР): a plan's tasks go to several agencies as plan_task referrals and are followed as one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec
from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from audit.events import Action, Actor, Outcome
from audit.services import AccessScope
from exchange.cases.access import access_case
from exchange.cases.datakeys import DataKey, sealed_context
from exchange.context import Context
from exchange.deps import ExchangeDeps
from exchange.errors import ConsentRequired, IdempotencyMismatch
from exchange.plans.access import access_plan
from exchange.plans.models import Plan, PlanTask
from exchange.plans.schemas import PlanIn, PlanOut, PlanSummary, PlanTaskIn, PlanTaskOut
from exchange.referrals.models import Referral, ReferralKind, Side, TimelineEntry
from exchange.referrals.schemas import ReferralIn, StatutoryBasisIn, TimelineOut
from exchange.referrals.services import is_overdue, referral_view, send_referral
from exchange.referrals.status import TERMINAL, Status
from tenants.access import access_tenant
from tenants.calendar import deadline, time_zone, today_in
from tenants.errors import Conflict, Forbidden, InvalidInput, NotFound
from tenants.models import Role, Tenant, TenantKind
from tenants.pagination import by_id, decode_cursor, encode_cursor, scalars_page
from tenants.principal import Principal

OPEN, CLOSED = "open", "closed"
# Who issues plans: a juvenile commission's case workers (its statutory role, 120-FZ art. 11), and a supervisor of
# any agency, who may coordinate several partners around one of the agency's cases.
ISSUER_KINDS: Final = frozenset({TenantKind.JUVENILE_COMMISSION})
# A task given without respond_by is to be answered within five days, the term of an inter-agency request
# (210-FZ art. 7.2 part 3), or by its complete_by when that comes sooner.
DEFAULT_ANSWER_WINDOW: Final = dt.timedelta(days=5)
MAX_TASKS: Final = 50


def may_issue_plans(principal: Principal, tenant_kind: str) -> bool:
    if principal.has_role(Role.SUPERVISOR):
        return True
    return tenant_kind in ISSUER_KINDS and principal.has_role(Role.SPECIALIST)


async def issues_plans(session: AsyncSession, principal: Principal) -> bool:
    """Whether the caller may issue plans, and so extend and close them (the pages offer only what it may do)."""
    tenant = await access_tenant(session, principal, principal.tenant_id, for_write=False)
    return may_issue_plans(principal, tenant.kind)


async def _require_issuer(session: AsyncSession, principal: Principal) -> None:
    """Issuing, extending and closing a plan are one authority: whoever may not issue plans may not change them."""
    if not await issues_plans(session, principal):
        raise Forbidden("Multi-agency plans are issued by a juvenile commission's specialists or by a supervisor.")


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task with the sender's copy of its referral, which carries its status, deadlines and outcome."""

    task: PlanTask
    referral: Referral


# -- issuing ----------------------------------------------------------------------------------------------------------


def request_hash(data: PlanIn) -> str:
    return hashlib.sha256(msgspec.json.encode(data)).hexdigest()


async def create_plan(ctx: Context, *, data: PlanIn, idempotency_key: str | None) -> tuple[Plan, bool]:
    """Create a plan and send every task as a referral, all in the caller's transaction: all or nothing."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    if idempotency_key is not None:
        existing = await _by_idempotency_key(session, principal, idempotency_key)
        if existing is not None:
            return _replay(existing, data, audit), False
    await _require_issuer(session, principal)
    if data.period_until < data.period_from:
        raise InvalidInput("period_until must not be before period_from.")
    case = await access_case(session, principal, data.case_id, for_write=True)
    plan_id = uuid7()
    key, wrapped = await deps.datakeys.create(session, principal.tenant_id, sealed_context("plan", plan_id))
    plan = Plan(
        id=plan_id,
        tenant_id=principal.tenant_id,
        case_id=case.id,
        case_ref=case.reference,
        period_from=data.period_from,
        period_until=data.period_until,
        status=OPEN,
        auto_close=data.auto_close,
        created_by_kind=principal.actor_kind.value,
        created_by_id=principal.actor_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash(data),
        kek_kid=wrapped.kek_kid,
        data_key_wrapped=wrapped.wrapped,
        sealed=key.seal({"title": data.title}, context=sealed_context("plan", plan_id)),
    )
    try:
        # A concurrent request with the same key inserts first: its plan wins, and this one answers with it.
        async with session.begin_nested():
            session.add(plan)
            await session.flush()
    except IntegrityError:
        if idempotency_key is None:
            raise
        existing = await _by_idempotency_key(session, principal, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, data, audit), False
    audit.touched(resource_type="plan", resource_id=plan.id)
    await _send_tasks(ctx, plan=plan, key=key, tasks=data.tasks, first=0)
    return plan, True


async def _by_idempotency_key(session: AsyncSession, principal: Principal, idempotency_key: str) -> Plan | None:
    plan: Plan | None = await session.scalar(
        select(Plan).where(Plan.tenant_id == principal.tenant_id, Plan.idempotency_key == idempotency_key)
    )
    return plan


def _replay(existing: Plan, data: PlanIn, audit: AccessScope) -> Plan:
    if existing.request_hash != request_hash(data):
        raise IdempotencyMismatch("This Idempotency-Key was already used with a different request body.")
    audit.touched(resource_type="plan", resource_id=existing.id, replayed=True)
    return existing


async def add_tasks(ctx: Context, *, plan_id: uuid.UUID, tasks: Sequence[PlanTaskIn]) -> Plan:
    """Send more tasks of an open plan, all or nothing."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="plan", resource_id=plan_id)
    await _require_issuer(session, principal)
    plan = await access_plan(session, principal, plan_id, for_write=True)
    rows = await task_rows(session, plan)
    await settle(session, deps, plan, rows)
    if plan.status != OPEN:
        raise Conflict("This plan is closed; start a new plan for further tasks.")
    if len(rows) + len(tasks) > MAX_TASKS:
        raise InvalidInput(f"A plan holds at most {MAX_TASKS} tasks.")
    key = await _plan_key(session, deps, plan)
    await _send_tasks(ctx, plan=plan, key=key, tasks=tasks, first=len(rows))
    return plan


async def _send_tasks(ctx: Context, *, plan: Plan, key: DataKey, tasks: Sequence[PlanTaskIn], first: int) -> None:
    """Each task goes through the ordinary send path and is recorded as a share of its own (DPO review included).

    A refusal of any task raises, so the caller's transaction rolls back every task sent before it.
    """
    session, deps, audit = ctx.session, ctx.deps, ctx.audit
    now = deps.clock.now()
    issuer = await access_tenant(session, ctx.principal, ctx.principal.tenant_id, for_write=False)
    zone = time_zone(issuer.time_zone)
    sent: list[str] = []
    for index, task in enumerate(tasks):
        position = first + index
        share = AccessScope(
            log=audit.log,
            actor=audit.actor,
            log_tenant_id=audit.log_tenant_id,
            action=Action.EXCHANGE_REFERRAL_SEND,
            context=audit.context,
        )
        try:
            referral, _ = await send_referral(
                dataclasses.replace(ctx, audit=share),
                data=_referral_in(plan, task, zone, now),
                idempotency_key=None,
                plan={"plan_id": str(plan.id), "task_title": task.title, "expected_result": task.expected_result},
            )
        except ConsentRequired as exc:
            audit.touched(
                task=index,
                deny_code=exc.deny.code.value,
                subjects=share.subjects,
                category=exc.deny.category.value if exc.deny.category else None,
            )
            raise ConsentRequired(
                f"Task {index + 1} of the request cannot be sent, so none of its tasks was sent: {exc}",
                exc.deny,
                exc.subject_ref,
                task=index,
            ) from None
        except (InvalidInput, NotFound) as exc:
            raise type(exc)(f"Task {index + 1} of the request: {exc}") from None
        share.touched(plan=str(plan.id), task=position)
        share.write(session)
        task_id = uuid7()
        session.add(
            PlanTask(
                id=task_id,
                tenant_id=plan.tenant_id,
                plan_id=plan.id,
                position=position,
                referral_id=referral.id,
                sealed=key.seal(
                    {"title": task.title, "expected_result": task.expected_result},
                    context=sealed_context("plan_task", task_id),
                ),
            )
        )
        audit.touched(subjects=share.subjects)
        sent.append(str(referral.exchange_id))
    statutory = any(isinstance(t.legal_basis, StatutoryBasisIn) for t in tasks)
    audit.touched(
        resource_type="plan", resource_id=plan.id, referrals=sent, bases="statutory" if statutory else "consent"
    )
    await session.flush()


def _referral_in(plan: Plan, task: PlanTaskIn, zone: dt.tzinfo, now: dt.datetime) -> ReferralIn:
    """The task's referral; its deadlines are days in the issuing agency's time zone (tenants.calendar.deadline)."""
    complete_by = deadline(task.complete_by, zone)
    if complete_by.at <= now:
        raise InvalidInput("complete_by must be today or a later day (in the agency's time zone).")
    default_answer = today_in(zone, now) + DEFAULT_ANSWER_WINDOW
    respond_by = task.respond_by or min(complete_by.day, default_answer).isoformat()
    return ReferralIn(
        case_id=plan.case_id,
        to_tenant_id=task.to_tenant_id,
        kind=ReferralKind.PLAN_TASK,
        purpose=task.purpose,
        problem=task.problem,
        requested_service=task.requested_service,
        urgency=task.urgency,
        respond_by=respond_by,
        complete_by=complete_by.day.isoformat(),
        subject_ids=task.subject_ids,
        categories=task.categories,
        legal_basis=task.legal_basis,
    )


# -- following ------------------------------------------------------------------------------------------------------


async def task_rows(session: AsyncSession, plan: Plan) -> list[TaskRow]:
    rows = await session.execute(
        select(PlanTask, Referral)
        .join(Referral, Referral.id == PlanTask.referral_id)
        .where(PlanTask.plan_id == plan.id, PlanTask.tenant_id == plan.tenant_id, Referral.tenant_id == plan.tenant_id)
        .order_by(PlanTask.position)
    )
    return [TaskRow(task, referral) for task, referral in rows.all()]


async def settle(session: AsyncSession, deps: ExchangeDeps, plan: Plan, rows: Sequence[TaskRow]) -> None:
    """Close an open, self-closing plan once every task is terminal, as of the moment the last one became so.

    casebridge itself closes it, so the close is recorded as a system event of its own, in the same transaction.
    """
    if not (plan.status == OPEN and plan.auto_close and _all_terminal(rows)):
        return
    if await _close(session, deps, plan, rows):
        subjects = {uuid.UUID(s) for row in rows for s in row.referral.subject_ids}
        deps.audit.append(
            session,
            action=Action.EXCHANGE_PLAN_CLOSE,
            outcome=Outcome.SUCCESS,
            actor=Actor(kind="system", id=None, tenant_id=plan.tenant_id, role=None),
            log_tenant_id=plan.tenant_id,
            resource_type="plan",
            resource_id=str(plan.id),
            subjects=deps.audit.pseudonyms(plan.tenant_id, subjects),
            extra={"automatic": True, "referrals": [str(row.referral.exchange_id) for row in rows]},
        )


def _all_terminal(rows: Sequence[TaskRow]) -> bool:
    return bool(rows) and all(row.referral.status in TERMINAL for row in rows)


async def _close(session: AsyncSession, deps: ExchangeDeps, plan: Plan, rows: Sequence[TaskRow]) -> bool:
    """Close the plan unless another transaction did first; True when this one closed it.

    The conditional UPDATE makes the close happen once: a concurrent closer waits for this transaction's row lock
    (PostgreSQL) or for its write lock (SQLite), then finds the plan no longer open and changes nothing.
    """
    last = await session.scalar(
        select(func.max(TimelineEntry.at)).where(
            TimelineEntry.referral_id.in_([row.referral.id for row in rows]),
            TimelineEntry.tenant_id == plan.tenant_id,
            TimelineEntry.status.in_(TERMINAL),
        )
    )
    await session.flush()
    closed = await session.execute(
        update(Plan)
        .where(Plan.id == plan.id, Plan.tenant_id == plan.tenant_id, Plan.status == OPEN)
        .values(status=CLOSED, closed_at=last or deps.clock.now())
        .execution_options(synchronize_session=False)
    )
    await session.refresh(plan, attribute_names=["status", "closed_at"])
    return cast("CursorResult[Any]", closed).rowcount == 1


async def settle_plan_of(session: AsyncSession, deps: ExchangeDeps, referral: Referral) -> None:
    """After a plan task's referral changed status on the issuing side (the bus applied the partner's move)."""
    if referral.kind != ReferralKind.PLAN_TASK or referral.side != Side.SENDER:
        return
    plan = await session.scalar(
        select(Plan)
        .join(PlanTask, PlanTask.plan_id == Plan.id)
        .where(PlanTask.referral_id == referral.id, Plan.tenant_id == referral.tenant_id)
    )
    if plan is not None:
        await session.flush()  # the status just applied must be visible to the query below
        await settle(session, deps, plan, await task_rows(session, plan))


async def close_plan(ctx: Context, *, plan_id: uuid.UUID) -> Plan:
    """Close a plan on request: only once every task has a terminal status."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="plan", resource_id=plan_id)
    await _require_issuer(session, principal)
    plan = await access_plan(session, principal, plan_id, for_write=True)
    if plan.status == CLOSED:
        return plan
    rows = await task_rows(session, plan)
    open_tasks = sum(1 for row in rows if row.referral.status not in TERMINAL)
    if open_tasks:
        raise Conflict(
            f"{open_tasks} task(s) of this plan are not finished yet; a plan closes when all are "
            "completed, failed, declined or cancelled."
        )
    await _close(session, deps, plan, rows)
    return plan


async def read_plan(ctx: Context, *, plan_id: uuid.UUID) -> PlanOut:
    session, principal, audit = ctx.session, ctx.principal, ctx.audit
    audit.touched(resource_type="plan", resource_id=plan_id)
    plan = await access_plan(session, principal, plan_id, for_write=False)
    return await plan_view(ctx, plan)


async def plan_view(ctx: Context, plan: Plan) -> PlanOut:
    session, deps, audit = ctx.session, ctx.deps, ctx.audit
    rows = await task_rows(session, plan)
    await settle(session, deps, plan, rows)
    key = await _plan_key(session, deps, plan)
    names = await tenant_names(session, [row.referral.to_tenant_id for row in rows])
    tasks = []
    for row in rows:
        referral = await referral_view(ctx, row.referral)
        text = key.open(row.task.sealed, context=sealed_context("plan_task", row.task.id))
        tasks.append(
            PlanTaskOut(
                id=row.task.id,
                position=row.task.position,
                title=text["title"],
                expected_result=text["expected_result"],
                referral_id=referral.id,
                to_tenant_id=referral.to_tenant_id,
                to_tenant_name=names.get(referral.to_tenant_id, ""),
                status=referral.status,
                respond_by=referral.respond_by,
                complete_by=referral.complete_by,
                respond_by_date=referral.respond_by_date,
                complete_by_date=referral.complete_by_date,
                overdue=referral.overdue,
                legal_basis=referral.legal_basis,
                last_change_at=referral.timeline[-1].at if referral.timeline else row.referral.created_at,
                outcome=referral.outcome,
                reason=_reason(referral.status, referral.timeline),
            )
        )
    if audit is not None:
        subjects = {uuid.UUID(s) for row in rows for s in row.referral.subject_ids}
        audit.touched(
            subjects=deps.audit.pseudonyms(plan.tenant_id, subjects), referrals=[str(t.referral_id) for t in tasks]
        )
    return PlanOut(
        id=plan.id,
        case_id=plan.case_id,
        case_ref=plan.case_ref,
        title=await plan_title(session, deps, plan, key),
        period_from=plan.period_from,
        period_until=plan.period_until,
        status=plan.status,
        auto_close=plan.auto_close,
        created_at=plan.created_at,
        closed_at=plan.closed_at,
        progress=dict(sorted(Counter(t.status for t in tasks).items())),
        overdue=sum(1 for t in tasks if t.overdue),
        tasks=tasks,
    )


def _reason(status: str, timeline: Sequence[TimelineOut]) -> str | None:
    if status not in (Status.REJECTED, Status.FAILED, Status.CANCELLED):
        return None
    return next((t.note for t in reversed(timeline) if t.status == status and t.note), None)


async def list_plans(
    ctx: Context, *, status: str | None, case_id: uuid.UUID | None, cursor: str | None, limit: int
) -> tuple[list[PlanSummary], str | None]:
    """Newest first; UUIDv7 ids sort by creation time, so the last id is the cursor."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    if status not in (None, OPEN, CLOSED):
        raise InvalidInput("status is 'open' or 'closed'.")
    query = select(Plan).where(Plan.tenant_id == principal.tenant_id)
    if case_id is not None:
        query = query.where(Plan.case_id == case_id)
    if status is not None:
        # Filter on the status the plan has once settled, so a plan whose last task just finished is listed as
        # closed; only the plans on the page returned are then settled in storage.
        settles = _settles_on_read()
        query = query.where(
            or_(Plan.status == CLOSED, settles) if status == CLOSED else and_(Plan.status == OPEN, not_(settles))
        )
    after = decode_cursor(cursor) if cursor else None
    page = await scalars_page(session, by_id(query, Plan.id, after, newest_first=True), limit)
    now = deps.clock.now()
    items = []
    subjects: set[str] = set()
    for plan in page.rows:
        tasks = await task_rows(session, plan)
        await settle(session, deps, plan, tasks)
        subjects.update(
            deps.audit.pseudonyms(plan.tenant_id, {uuid.UUID(s) for t in tasks for s in t.referral.subject_ids})
        )
        items.append(
            PlanSummary(
                id=plan.id,
                case_ref=plan.case_ref,
                title=await plan_title(session, deps, plan),
                period_from=plan.period_from,
                period_until=plan.period_until,
                status=plan.status,
                created_at=plan.created_at,
                closed_at=plan.closed_at,
                tasks=len(tasks),
                done=sum(1 for t in tasks if t.referral.status in TERMINAL),
                overdue=sum(1 for t in tasks if is_overdue(t.referral, now)),
            )
        )
    # The titles name the family: the event names the subjects of every plan listed.
    audit.touched(resource_type="plan", subjects=subjects, plans=[str(p.id) for p in page.rows])
    return items, encode_cursor(page.last.id) if page.last else None


def _settles_on_read() -> ColumnElement[bool]:
    """SQL for `settle`'s condition: an open, self-closing plan with tasks, none of them unfinished."""
    has_tasks = select(PlanTask.id).where(PlanTask.plan_id == Plan.id, PlanTask.tenant_id == Plan.tenant_id).exists()
    unfinished = (
        select(PlanTask.id)
        .join(Referral, Referral.id == PlanTask.referral_id)
        .where(
            PlanTask.plan_id == Plan.id,
            PlanTask.tenant_id == Plan.tenant_id,
            Referral.tenant_id == Plan.tenant_id,
            Referral.status.not_in(TERMINAL),
        )
        .exists()
    )
    return and_(Plan.status == OPEN, Plan.auto_close.is_(True), has_tasks, not_(unfinished))


async def plan_title(session: AsyncSession, deps: ExchangeDeps, plan: Plan, key: DataKey | None = None) -> str:
    if plan.sealed is None:
        return ""
    key = key or await _plan_key(session, deps, plan)
    return str(key.open(plan.sealed, context=sealed_context("plan", plan.id))["title"])


async def _plan_key(session: AsyncSession, deps: ExchangeDeps, plan: Plan) -> DataKey:
    return await deps.datakeys.open(session, plan.tenant_id, sealed_context("plan", plan.id), plan.wrapped_key)


async def tenant_names(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(set(ids))))
    return {tenant_id: name for tenant_id, name in rows.all()}
