"""Subject access reports as files: CSV for spreadsheets, PDF (a plain table, laid out by the PDF engine) for people.

The CSV gives each access's time in UTC (ISO 8601 with `Z`), as a program reading it expects. The PDF is read by
people, the data subject among them: it gives times on the agency's clock, and its column heading names the zone.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from audit.schemas import ReportRow, SubjectReport


class ReportFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"
    PDF = "pdf"


# Litestar adds "; charset=utf-8" to a text type itself: naming it here too would send it twice.
MEDIA_TYPES = {ReportFormat.CSV: "text/csv", ReportFormat.PDF: "application/pdf"}

COLUMNS = (
    "event_id",
    "time",
    "actor_tenant_id",
    "actor_tenant_name",
    "actor_kind",
    "actor_id",
    "role",
    "action",
    "outcome",
    "purpose",
    "legal_basis",
    "resource_type",
    "resource_id",
)


# -- CSV --------------------------------------------------------------------------------------------------------------


def report_csv(report: SubjectReport) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(COLUMNS)
    for row in report.items:
        writer.writerow([_defused(v) for v in _cells(row)])
    return out.getvalue().encode("utf-8")


def _cells(row: ReportRow) -> list[str]:
    return [
        str(row.event_id),
        _time(row),
        _text(row.actor_tenant_id),
        _text(row.actor_tenant_name),
        row.actor_kind,
        _text(row.actor_id),
        _text(row.role),
        row.action,
        row.outcome,
        _text(row.purpose),
        _text(row.legal_basis),
        _text(row.resource_type),
        _text(row.resource_id),
    ]


def _defused(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets (OWASP "CSV injection"): make it plain text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _time(row: ReportRow) -> str:
    return row.time.strftime("%Y-%m-%d %H:%M:%SZ")


# -- PDF --------------------------------------------------------------------------------------------------------------

TEMPLATES: Final = Path(__file__).parent / "templates"
# The PDF engine's entry point: the `typeset` of exchange's renderer (ExchangeDeps.letters), which the gateway hands
# in, since audit does not depend on exchange. It takes a template folder, a template in it, the data it prints (as
# JSON) and the PDF's creation time.
Typeset = Callable[[Path, str, Mapping[str, Any], dt.datetime], Awaitable[bytes]]

# Column titles (Russian over English; the time's names its zone, see `_columns`), widths in points (together they
# fill landscape A4 inside 36-point margins, in 6.5-point type wide enough for a full UUID, a time with its offset and
# the longest action name), and whether the column holds identifiers, set in a monospaced face.
_PDF_COLUMNS: Final = (
    ("Время", "Time", 87, False),
    ("Организация", "Organisation", 100, False),
    ("Кто", "Actor", 150, True),
    ("Роль", "Role", 60, False),
    ("Действие", "Action", 122, False),
    ("Итог", "Outcome", 40, False),
    ("Цель", "Purpose", 60, False),
    ("Событие", "Event", 150, True),
)
_TITLE: Final = "Отчёт о доступе к данным субъекта / Subject access report"


async def report_pdf(report: SubjectReport, typeset: Typeset, zone: ZoneInfo) -> bytes:
    """The report as a PDF/A-2b table, one row per access, every page headed with the subject and the time made;
    times on the clock of `zone`, the agency's."""
    return await typeset(TEMPLATES, "subject_report.typ", report_pdf_data(report, zone), report.generated_at)


async def report_file(report: SubjectReport, report_format: ReportFormat, typeset: Typeset, zone: ZoneInfo) -> bytes:
    """The report as the file `report_format` names (PDF or CSV), with its media type in MEDIA_TYPES."""
    return await report_pdf(report, typeset, zone) if report_format is ReportFormat.PDF else report_csv(report)


def report_pdf_data(report: SubjectReport, zone: ZoneInfo) -> dict[str, Any]:
    rows = report.items or []
    made = _local(report.generated_at, zone)
    generated = f"Сформирован / Generated: {made} ({zone.key})   Записей / Rows: {len(rows)}"
    if report.next_cursor:
        generated += "   Продолжение — по курсору / continued: next_cursor"
    return {
        "title": _TITLE,
        "subject": _subject_line(report),
        "generated": generated,
        "page": "Стр. / Page",
        "empty": "Обращений не найдено / No accesses recorded",
        "columns": _columns(zone),
        "rows": [_pdf_cells(row, zone) for row in rows],
    }


def _columns(zone: ZoneInfo) -> list[dict[str, Any]]:
    named = [(f"{ru}, {zone.key}", f"{en}, {zone.key}") if ru == "Время" else (ru, en) for ru, en, _, _ in _PDF_COLUMNS]
    return [
        {"ru": ru, "en": en, "width": width, "mono": mono}
        for (ru, en), (_, _, width, mono) in zip(named, _PDF_COLUMNS, strict=True)
    ]


def _local(moment: dt.datetime, zone: ZoneInfo) -> str:
    """`moment` on the agency's clock, with its UTC offset, so that a time in the hour a clock goes back is one."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %z")


def _subject_line(report: SubjectReport) -> str:
    # A report found by name covers every record of the person (one per case): each id with its pseudonym.
    records = list(zip(report.subject_ids, report.pseudonyms, strict=True)) or [(report.subject_id, report.pseudonym)]
    return "   ".join(f"Субъект / Subject: {s}   Псевдоним / Pseudonym: {p}" for s, p in records)


def _pdf_cells(row: ReportRow, zone: ZoneInfo) -> list[str]:
    tenant = row.actor_tenant_name or _text(row.actor_tenant_id)
    role = f"{row.role} ({row.actor_kind})" if row.role else row.actor_kind
    return [
        _local(row.time, zone),
        tenant,
        _text(row.actor_id),
        role,
        row.action,
        row.outcome,
        _text(row.purpose),
        str(row.event_id),
    ]
