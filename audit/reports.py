"""Subject access reports as files: CSV for spreadsheets, PDF (a plain table, Cyrillic-capable) for people."""

from __future__ import annotations

import csv
import enum
import functools
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
from reportlab.lib.pagesizes import A4, landscape  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.pdfbase.ttfonts import TTFError, TTFont  # type: ignore[import-untyped]  # reportlab ships no types
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]  # reportlab ships no types

from audit.schemas import ReportRow, SubjectReport


class ReportFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"
    PDF = "pdf"


MEDIA_TYPES = {ReportFormat.CSV: "text/csv; charset=utf-8", ReportFormat.PDF: "application/pdf"}

COLUMNS = (
    "event_id", "time", "actor_tenant_id", "actor_tenant_name", "actor_kind", "actor_id", "role", "action",
    "outcome", "purpose", "legal_basis", "resource_type", "resource_id",
)  # fmt: skip


class FontUnavailable(Exception):
    """No TrueType font with Cyrillic letters is available, so a PDF would show empty boxes instead of text."""


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
        str(row.event_id), _time(row), _text(row.actor_tenant_id), _text(row.actor_tenant_name), row.actor_kind,
        _text(row.actor_id), _text(row.role), row.action, row.outcome, _text(row.purpose), _text(row.legal_basis),
        _text(row.resource_type), _text(row.resource_id),
    ]  # fmt: skip


def _defused(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets (OWASP "CSV injection"): make it plain text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _time(row: ReportRow) -> str:
    return row.time.strftime("%Y-%m-%d %H:%M:%SZ")


# -- PDF --------------------------------------------------------------------------------------------------------------

# Where Debian, Fedora and Arch put DejaVu Sans; fontconfig is asked as well when these are absent.
_KNOWN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)
_FONT_NAME = "CasebridgeReport"
_CYRILLIC_PROBE = "Жя"


async def ensure_pdf_font(configured: Path | None) -> Path:
    """The font PDF reports use (looked up once); raises FontUnavailable when there is none with Cyrillic."""
    font = await anyio.to_thread.run_sync(_find_font, configured)
    if font is None:
        raise FontUnavailable("no TrueType font with Cyrillic letters was found")
    return font


@functools.cache
def _find_font(configured: Path | None) -> Path | None:
    # A configured font is the operator's choice: if it is unusable, say so rather than silently use another.
    candidates = [configured] if configured else [*map(Path, _KNOWN_FONTS), *_fontconfig_fonts()]
    for path in candidates:
        if path.is_file() and _usable(path):
            return path
    return None


def _fontconfig_fonts() -> Iterator[Path]:
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return
    for pattern in ("DejaVu Sans", "sans-serif:lang=ru"):
        result = subprocess.run(  # noqa: S603 - a fixed program and fixed arguments, no user input
            [fc_match, "--format=%{file}", pattern], capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode == 0 and result.stdout.strip().lower().endswith(".ttf"):
            yield Path(result.stdout.strip())


def _usable(path: Path) -> bool:
    try:
        font = TTFont(_FONT_NAME, str(path))
    except (TTFError, OSError):
        return False
    return all(ord(c) in font.face.charToGlyph for c in _CYRILLIC_PROBE)


async def report_pdf(report: SubjectReport, font: Path) -> bytes:
    return await anyio.to_thread.run_sync(_render_pdf, report, font)


# Column titles (Russian over English) and widths in points: they fill landscape A4 inside the margins in 6.5-point
# type, wide enough for a full UUID, a UTC time and the longest action name.
_PDF_COLUMNS = (
    (("Время, UTC", "Time, UTC"), 78),
    (("Организация", "Organisation"), 109),
    (("Кто", "Actor"), 150),
    (("Роль", "Role"), 60),
    (("Действие", "Action"), 122),
    (("Итог", "Outcome"), 40),
    (("Цель", "Purpose"), 60),
    (("Событие", "Event"), 150),
)
_SIZE = 6.5
_LEADING = 9.5
_MARGIN = 36


def _render_pdf(report: SubjectReport, font: Path) -> bytes:
    name = _registered(font)
    out = io.BytesIO()
    width, height = landscape(A4)
    pdf = Canvas(out, pagesize=(width, height), pageCompression=1)
    pdf.setTitle("Отчёт о доступе к данным субъекта / Subject access report")
    pdf.setCreator("casebridge")
    rows = report.items or []
    per_page = int((height - 2 * _MARGIN - 7 * _LEADING) // _LEADING)
    pages = max(1, -(-len(rows) // per_page))
    for page in range(pages):
        y = height - _MARGIN
        pdf.setFont(name, 12)
        pdf.drawString(_MARGIN, y, "Отчёт о доступе к данным субъекта / Subject access report")
        y -= _LEADING * 1.6
        pdf.setFont(name, 8)
        pdf.drawString(
            _MARGIN, y, f"Субъект / Subject: {report.subject_id}   Псевдоним / Pseudonym: {report.pseudonym}"
        )
        y -= _LEADING
        pdf.drawString(
            _MARGIN, y,
            f"Сформирован / Generated: {report.generated_at:%Y-%m-%d %H:%M:%SZ}   Записей / Rows: {len(rows)}   "
            f"Стр. / Page {page + 1} / {pages}"
            + ("   Продолжение — по курсору / continued: next_cursor" if report.next_cursor else ""),
        )  # fmt: skip
        y -= _LEADING * 1.6
        _draw_row(pdf, name, y, [russian for (russian, _), _ in _PDF_COLUMNS])
        y -= _LEADING
        _draw_row(pdf, name, y, [english for (_, english), _ in _PDF_COLUMNS])
        y -= 3
        pdf.line(_MARGIN, y, width - _MARGIN, y)
        y -= _LEADING
        for row in rows[page * per_page : (page + 1) * per_page]:
            tenant = row.actor_tenant_name or _text(row.actor_tenant_id)
            role = f"{row.role} ({row.actor_kind})" if row.role else row.actor_kind
            _draw_row(pdf, name, y, [_time(row), tenant, _text(row.actor_id), role, row.action, row.outcome,
                                     _text(row.purpose), str(row.event_id)])  # fmt: skip
            y -= _LEADING
        if not rows:
            pdf.drawString(_MARGIN, y, "Обращений не найдено / No accesses recorded")
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def _draw_row(pdf: Canvas, font: str, y: float, cells: list[str]) -> None:
    pdf.setFont(font, _SIZE)
    x = float(_MARGIN)
    for cell, (_, width) in zip(cells, _PDF_COLUMNS, strict=True):
        pdf.drawString(x, y, _fit(cell, font, width - 4))
        x += width


def _fit(text: str, font: str, width: float) -> str:
    if pdfmetrics.stringWidth(text, font, _SIZE) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "…", font, _SIZE) > width:
        text = text[:-1]
    return text + "…"


@functools.cache
def _registered(font: Path) -> str:
    pdfmetrics.registerFont(TTFont(_FONT_NAME, str(font)))
    return _FONT_NAME
