"""The summary report of a closed multi-agency plan, as PDF (DejaVu Sans or another font with Cyrillic)."""

from __future__ import annotations

import datetime as dt
import functools
import io
import uuid
from pathlib import Path

import anyio.to_thread
from reportlab.lib import colors  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.lib.pagesizes import A4, landscape  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.lib.units import mm  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.platypus import (  # type: ignore[import-untyped]  # reportlab ships no types
    LongTable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from sqlalchemy.ext.asyncio import AsyncSession

from audit.services import AccessScope
from exchange.access import access_plan
from exchange.deps import ExchangeDeps
from exchange.plans import CLOSED, issuer_name, plan_view
from exchange.schemas import PlanOut, PlanTaskOut
from tenants.errors import Conflict
from tenants.principal import Principal

_FONT_NAME = "CasebridgePlan"
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


async def plan_report(
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    principal: Principal,
    audit: AccessScope,
    plan_id: uuid.UUID,
    font: Path,
) -> bytes:
    """The closed plan's summary: every task with its agency, deadlines, final status and outcome."""
    audit.touched(resource_type="plan", resource_id=plan_id)
    plan = await access_plan(session, principal, plan_id, for_write=False)
    view = await plan_view(session, deps, plan, audit)
    if view.status != CLOSED:
        raise Conflict("The summary report is made once the plan is closed, when every task has a final status.")
    issuer = await issuer_name(session, plan)
    return await anyio.to_thread.run_sync(_render, view, issuer, deps.clock.now(), font)


def _render(plan: PlanOut, issuer: str, generated_at: dt.datetime, font: Path) -> bytes:
    name = _registered(font)
    title = ParagraphStyle("title", fontName=name, fontSize=14, leading=18, spaceAfter=6)
    body = ParagraphStyle("body", fontName=name, fontSize=9, leading=12)
    cell = ParagraphStyle("cell", fontName=name, fontSize=7.5, leading=9.5)
    out = io.BytesIO()
    document = SimpleDocTemplate(
        out, pagesize=landscape(A4), leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm, bottomMargin=12 * mm,
        title="Итоговый отчёт по плану / Plan summary report", author=issuer, creator="casebridge",
    )  # fmt: skip
    progress = ", ".join(f"{STATUS_NAMES.get(status, status)}: {count}" for status, count in plan.progress.items())
    late = sum(1 for t in plan.tasks if _finished_late(t))
    story = [
        Paragraph(_escape(f"Итоговый отчёт по плану / Plan summary report: {plan.title}"), title),
        Paragraph(_escape(f"Организация / Issued by: {issuer}. Дело / Case: {plan.case_ref}."), body),
        Paragraph(
            _escape(
                f"Период / Period: {plan.period_from:%d.%m.%Y} – {plan.period_until:%d.%m.%Y}. "
                f"Создан / Created: {_when(plan.created_at)}. "
                f"Закрыт / Closed: {_when(plan.closed_at) if plan.closed_at else '—'}."
            ),
            body,
        ),
        Paragraph(
            _escape(
                f"Задач / Tasks: {len(plan.tasks)} ({progress}). "
                f"Выполнено позже срока / Finished after the deadline: {late}."
            ),
            body,
        ),
        Spacer(1, 4 * mm),
    ]
    header = ["№", "Задача / Task", "Ожидаемый результат / Expected result", "Исполнитель / Agency",
              "Срок, UTC / Due, UTC", "Статус / Status", "Итог / Outcome"]  # fmt: skip
    rows = [[Paragraph(_escape(h), cell) for h in header]]
    for task in plan.tasks:
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
        rows.append([
            Paragraph(str(task.position + 1), cell), Paragraph(_escape(task.title), cell),
            Paragraph(_escape(task.expected_result), cell), Paragraph(_escape(task.to_tenant_name), cell),
            Paragraph(_escape(_when(task.complete_by)), cell), Paragraph(_escape(status), cell),
            Paragraph(_escape(outcome or "—"), cell),
        ])  # fmt: skip
    table = LongTable(rows, colWidths=[8 * mm, 50 * mm, 55 * mm, 40 * mm, 24 * mm, 42 * mm, 54 * mm], repeatRows=1)
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))  # fmt: skip
    story.append(table)
    story.append(Spacer(1, 4 * mm))
    story.append(Paragraph(_escape(f"Сформирован / Generated: {_when(generated_at)} UTC, casebridge."), body))
    document.build(story)
    return out.getvalue()


def _finished_late(task: PlanTaskOut) -> bool:
    return task.status in ("completed", "failed") and task.last_change_at > task.complete_by


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%d.%m.%Y %H:%M")


def _escape(text: str) -> str:
    # Paragraph reads a small XML markup language: a social worker's "<" or "&" must print as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@functools.cache
def _registered(font: Path) -> str:
    pdfmetrics.registerFont(TTFont(_FONT_NAME, str(font)))
    return _FONT_NAME
