"""The summary report of a closed multi-agency plan, as a PDF/A-2b laid out by the PDF engine."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from exchange.context import Context
from exchange.deps import ExchangeDeps
from exchange.plans.access import access_plan
from exchange.plans.schemas import PlanOut, PlanTaskOut
from exchange.plans.services import CLOSED, issuer_name, plan_view
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
    issuer = await issuer_name(session, plan)
    generated_at = deps.clock.now()
    return PlanSummary(summary_data(view, issuer, generated_at), generated_at)


async def summary_pdf(deps: ExchangeDeps, summary: PlanSummary) -> bytes:
    """The summary as a PDF, by the engine and pool that lay out letters; call it with no transaction open."""
    return await deps.letters.typeset(TEMPLATES, "plan_summary.typ", summary.data, summary.generated_at)


def summary_data(plan: PlanOut, issuer: str, generated_at: dt.datetime) -> dict[str, Any]:
    """What the summary prints, every value a ready string."""
    progress = ", ".join(f"{STATUS_NAMES.get(status, status)}: {count}" for status, count in plan.progress.items())
    late = sum(1 for t in plan.tasks if _finished_late(t))
    lines = [
        f"Организация / Issued by: {issuer}. Дело / Case: {plan.case_ref}.",
        f"Период / Period: {plan.period_from:%d.%m.%Y} – {plan.period_until:%d.%m.%Y}. "
        f"Создан / Created: {_when(plan.created_at)}. "
        f"Закрыт / Closed: {_when(plan.closed_at) if plan.closed_at else '—'}.",
        f"Задач / Tasks: {len(plan.tasks)} ({progress}). Выполнено позже срока / Finished after the deadline: {late}.",
    ]
    header = [
        "№",
        "Задача / Task",
        "Ожидаемый результат / Expected result",
        "Исполнитель / Agency",
        "Срок, UTC / Due, UTC",
        "Статус / Status",
        "Итог / Outcome",
    ]
    return {
        "title": "Итоговый отчёт по плану / Plan summary report",
        "heading": f"Итоговый отчёт по плану / Plan summary report: {plan.title}",
        "issuer": issuer,
        "lines": lines,
        "header": header,
        "tasks": [_task_cells(task) for task in plan.tasks],
        "generated": f"Сформирован / Generated: {_when(generated_at)} UTC, casebridge.",
    }


def _task_cells(task: PlanTaskOut) -> list[str]:
    outcome = ""
    if task.outcome:
        outcome = OUTCOME_NAMES.get(task.outcome["result"], task.outcome["result"])
        if task.outcome.get("note"):
            outcome += f": {task.outcome['note']}"
    elif task.reason:
        outcome = task.reason
    status = f"{STATUS_NAMES.get(task.status, task.status)}, {_when(task.last_change_at)}"
    if _finished_late(task):
        status += " (позже срока / late)"
    return [
        str(task.position + 1),
        task.title,
        task.expected_result,
        task.to_tenant_name,
        _when(task.complete_by),
        status,
        outcome or "—",
    ]


def _finished_late(task: PlanTaskOut) -> bool:
    return task.status in ("completed", "failed") and task.last_change_at > task.complete_by


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%d.%m.%Y %H:%M")
