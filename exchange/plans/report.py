"""The summary report of a closed multi-agency plan and a case's printed care plan, as PDF/A-2b laid out by the PDF
engine."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from exchange.context import Context
from exchange.deps import ExchangeDeps
from exchange.plans.access import access_plan
from exchange.plans.care import read_care_plan
from exchange.plans.schemas import CareActionOut, CarePlanOut, PlanOut, PlanTaskOut
from exchange.plans.services import CLOSED, plan_view, tenant_names
from tenants.access import access_tenant
from tenants.calendar import format_day, format_moment, time_zone
from tenants.errors import Conflict

TEMPLATES: Final = Path(__file__).parent / "templates"
STATUS_NAMES = {
    "requested": "направлено / requested",
    "received": "получено / received",
    "accepted": "принято / accepted",
    "rejected": "отклонено / declined",
    "in-progress": "в работе / in progress",
    "on-hold": "приостановлено / on hold",
    "completed": "выполнено / completed",
    "failed": "не выполнено / failed",
    "cancelled": "отменено / cancelled",
}
OUTCOME_NAMES = {
    "resolved": "решено / resolved",
    "partially_resolved": "решено частично / partially resolved",
    "not_resolved": "не решено / not resolved",
    "referred_elsewhere": "направлено в другую организацию / referred elsewhere",
    "no_contact": "нет контакта / no contact",
}


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """What a closed plan's summary prints (every value a ready string), and when it was made."""

    data: dict[str, Any]
    generated_at: dt.datetime


async def plan_summary(ctx: Context, *, plan_id: uuid.UUID) -> PlanSummary:
    """The closed plan's summary: every task with its agency, deadlines, final status and outcome."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="plan", resource_id=plan_id)
    plan = await access_plan(session, principal, plan_id, for_write=False)
    view = await plan_view(ctx, plan)
    if view.status != CLOSED:
        raise Conflict("The summary report is made once the plan is closed, when every task has a final status.")
    issuer = await access_tenant(session, principal, plan.tenant_id, for_write=False)
    generated_at = deps.clock.now()
    return PlanSummary(summary_data(view, issuer.name, time_zone(issuer.time_zone), generated_at), generated_at)


async def summary_pdf(deps: ExchangeDeps, summary: PlanSummary) -> bytes:
    """The summary as a PDF, by the engine and pool that lay out letters; call it with no transaction open."""
    return await deps.letters.typeset(TEMPLATES, "plan_summary.typ", summary.data, summary.generated_at)


def summary_data(plan: PlanOut, issuer: str, zone: dt.tzinfo, generated_at: dt.datetime) -> dict[str, Any]:
    """What the summary prints, every value a ready string: days as the issuer's pages show them (the summary is in
    both languages, its dates in the Russian form), times in the issuer's time zone."""

    def when(value: dt.datetime) -> str:
        return format_moment(value, zone, "ru")

    progress = ", ".join(f"{STATUS_NAMES.get(status, status)}: {count}" for status, count in plan.progress.items())
    late = sum(1 for t in plan.tasks if _finished_late(t))
    lines = [
        f"Организация / Issued by: {issuer}. Дело / Case: {plan.case_ref}.",
        f"Период / Period: {format_day(plan.period_from, 'ru')} – {format_day(plan.period_until, 'ru')}. "
        f"Создан / Created: {when(plan.created_at)}. "
        f"Закрыт / Closed: {when(plan.closed_at) if plan.closed_at else '—'}.",
        f"Задач / Tasks: {len(plan.tasks)} ({progress}). Выполнено позже срока / Finished after the deadline: {late}.",
    ]
    header = [
        "№",
        "Задача / Task",
        "Ожидаемый результат / Expected result",
        "Исполнитель / Agency",
        "Срок / Due",
        "Статус / Status",
        "Итог / Outcome",
    ]
    return {
        "title": "Итоговый отчёт по плану / Plan summary report",
        "heading": f"Итоговый отчёт по плану / Plan summary report: {plan.title}",
        "issuer": issuer,
        "lines": lines,
        "header": header,
        "tasks": [_task_cells(task, when) for task in plan.tasks],
        "generated": f"Сформирован / Generated: {when(generated_at)} ({zone}), casebridge.",
    }


def _task_cells(task: PlanTaskOut, when: Callable[[dt.datetime], str]) -> list[str]:
    outcome = ""
    if task.outcome:
        outcome = OUTCOME_NAMES.get(task.outcome["result"], task.outcome["result"])
        if task.outcome.get("note"):
            outcome += f": {task.outcome['note']}"
    elif task.reason:
        outcome = task.reason
    status = f"{STATUS_NAMES.get(task.status, task.status)}, {when(task.last_change_at)}"
    if _finished_late(task):
        status += " (позже срока / late)"
    return [
        str(task.position + 1),
        task.title,
        task.expected_result,
        task.to_tenant_name,
        format_day(task.complete_by_date, "ru"),
        status,
        outcome or "—",
    ]


def _finished_late(task: PlanTaskOut) -> bool:
    return task.status in ("completed", "failed") and task.last_change_at > task.complete_by


# -- a case's care plan, printed ----------------------------------------------------------------------------------

NEED_NAMES = {
    "client": "Потребности клиента / The client's needs",
    "carers": "Потенциал семьи / The carers' potential",
    "community": "Ресурсы окружения / The community's resources",
}


async def care_plan_report(ctx: Context, *, case_id: uuid.UUID) -> PlanSummary:
    """The case's care plan as it prints: every goal under its part of the needs assessment, with its actions."""
    plan = await read_care_plan(ctx, case_id=case_id)
    agency = await access_tenant(ctx.session, ctx.principal, ctx.principal.tenant_id, for_write=False)
    referred = {a.referral.to_tenant_id for g in plan.goals for a in g.actions if a.referral}
    names = await tenant_names(ctx.session, sorted(referred))
    generated_at = ctx.deps.clock.now()
    data = care_plan_data(plan, agency.name, names, time_zone(agency.time_zone), generated_at)
    return PlanSummary(data, generated_at)


async def care_plan_pdf(deps: ExchangeDeps, report: PlanSummary) -> bytes:
    """The printed care plan, by the engine that lays out letters; call it with no transaction open."""
    return await deps.letters.typeset(TEMPLATES, "care_plan.typ", report.data, report.generated_at)


def care_plan_data(
    plan: CarePlanOut, agency: str, names: dict[uuid.UUID, str], zone: dt.tzinfo, generated_at: dt.datetime
) -> dict[str, Any]:
    """What the printed plan shows, every value a ready string, in both languages with the Russian dates."""
    header = ["№", "Действие / Action", "Кто / Who", "Срок / By", "Выполнено / Done", "Направление / Referral"]
    goals = [
        {
            "need": NEED_NAMES.get(goal.need, goal.need),
            "text": goal.text,
            "actions": [
                _care_action_cells(number, action, names, zone) for number, action in enumerate(goal.actions, 1)
            ],
        }
        for goal in plan.goals
    ]
    return {
        "title": "Индивидуальный план / Care plan",
        "heading": f"Индивидуальный план работы со случаем / Care plan: {plan.case_ref}",
        "issuer": agency,
        "lines": [f"Организация / Agency: {agency}. Дело / Case: {plan.case_ref}."],
        "header": header,
        "goals": goals,
        "empty": "Цели ещё не поставлены / No goals yet.",
        "generated": f"Сформирован / Generated: {format_moment(generated_at, zone, 'ru')} ({zone}), casebridge. "
        "Внутренний документ организации / Internal to the agency.",
    }


def _care_action_cells(number: int, action: CareActionOut, names: dict[uuid.UUID, str], zone: dt.tzinfo) -> list[str]:
    """One action's row, numbered within its goal."""
    referral = "—"
    if action.referral:
        status = action.referral.status
        referral = f"{names.get(action.referral.to_tenant_id, '')}: {STATUS_NAMES.get(status, status)}"
        if action.referral.outcome_result:
            referral += f"; {OUTCOME_NAMES.get(action.referral.outcome_result, action.referral.outcome_result)}"
    if action.done_at:
        done = format_moment(action.done_at, zone, "ru")
    else:
        done = "просрочено / overdue" if action.overdue else "—"
    return [str(number), action.what, action.who, format_day(action.due_by_date, "ru"), done, referral]
