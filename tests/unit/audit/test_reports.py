"""The subject access report as PDF: laid out by the PDF engine, every row and page accounted for, text as written,
times on the agency's clock."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader

from audit.reports import report_pdf
from audit.schemas import ReportRow, SubjectReport
from exchange.letters.render import TypstRenderer
from tests.pdf import fonts, pdf_text, pdfa_conformance

NOW = dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.UTC)
MOSCOW = ZoneInfo("Europe/Moscow")


@pytest.fixture(scope="module")
def engine() -> TypstRenderer:
    return TypstRenderer(processes=0)


def _row(index: int, **changes: object) -> ReportRow:
    values: dict[str, object] = {
        "event_id": uuid.UUID(int=index),
        "time": NOW - dt.timedelta(minutes=index),
        "actor_tenant_id": uuid.uuid4(),
        "actor_tenant_name": "Отдел опеки и попечительства",
        "actor_kind": "user",
        "actor_id": uuid.uuid4(),
        "role": "intake",
        "action": "exchange:referral:read",
        "outcome": "success",
        "purpose": "social_support",
        "legal_basis": "consent",
        "resource_type": "referral",
        "resource_id": str(uuid.uuid4()),
    }
    return ReportRow(**{**values, **changes})  # type: ignore[arg-type]


def _report(rows: list[ReportRow], next_cursor: str | None = None) -> SubjectReport:
    return SubjectReport(
        subject_id=uuid.UUID(int=7), pseudonym="ps_test", generated_at=NOW, items=rows, next_cursor=next_cursor
    )


async def test_every_row_is_in_the_pdf_and_every_page_says_whose_report_it_is(engine: TypstRenderer) -> None:
    rows = [_row(i) for i in range(1, 121)]
    pdf = await report_pdf(_report(rows, next_cursor="more"), engine.typeset, MOSCOW)
    assert pdfa_conformance(pdf) == ("2", "B")
    assert all(fonts(pdf).values())
    pages = PdfReader(io.BytesIO(pdf)).pages
    assert len(pages) > 1
    for number, page in enumerate(pages, start=1):
        text = page.extract_text()
        assert "Отчёт о доступе к данным субъекта / Subject access report" in text
        assert str(uuid.UUID(int=7)) in text
        assert f"Стр. / Page {number} / {len(pages)}" in text
    text = pdf_text(pdf)
    assert all(str(row.event_id) in text for row in rows)
    assert "Записей / Rows: 120" in text
    assert "continued: next_cursor" in text
    assert "Отдел опеки и попечительства" in text


async def test_an_empty_report_says_so(engine: TypstRenderer) -> None:
    text = pdf_text(await report_pdf(_report([]), engine.typeset, MOSCOW))
    assert "Обращений не найдено / No accesses recorded" in text
    assert "Записей / Rows: 0" in text


async def test_names_print_as_written(engine: TypstRenderer) -> None:
    # An agency's registered name is free text; typst markup in it is printed, never run.
    name = '#set page(fill: red) ] $x$ @ref <l> *b* #panic("x")'
    pdf = await report_pdf(_report([_row(1, actor_tenant_name=name)]), engine.typeset, MOSCOW)
    assert name in " ".join(pdf_text(pdf).split())


async def test_times_are_on_the_agencys_clock_with_their_offset(engine: TypstRenderer) -> None:
    # On the night the clock goes back, 00:30 UTC is 01:30 BST and 01:30 UTC is 01:30 GMT: the offset tells them apart.
    london = ZoneInfo("Europe/London")
    first, second = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC), dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)
    pdf = await report_pdf(_report([_row(1, time=first), _row(2, time=second)]), engine.typeset, london)
    text = " ".join(pdf_text(pdf).split())
    assert "Время, Europe/London" in text
    assert "Time, Europe/London" in text
    assert "2026-10-25 01:30:00 +0100" in text
    assert "2026-10-25 01:30:00 +0000" in text
    assert "Сформирован / Generated: 2026-11-22 09:30:00 +0000 (Europe/London)" in text
    moscow = " ".join(pdf_text(await report_pdf(_report([_row(1, time=first)]), engine.typeset, MOSCOW)).split())
    assert "2026-10-25 03:30:00 +0300" in moscow
