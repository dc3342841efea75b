"""Report periods, outcomes, distributions and the SVG chart, without a database."""

from __future__ import annotations

import csv
import datetime as dt
import io
import typing
import uuid
import xml.etree.ElementTree as ET

import pytest

from exchange.referrals.models import OutcomeResult
from exchange.referrals.schemas import Outcome
from exchange.reports.charts import SVG_NS, distribution_svg
from exchange.reports.schemas import BoxReport, BreakdownRow, Overdue, ReferralReport
from exchange.reports.services import (
    ACCEPT_BUCKETS_HOURS,
    COMPLETE_BUCKETS_DAYS,
    bucket_label,
    distribution,
    outcome_of,
    parse_period,
    report_csv,
)
from tenants.calendar import OutOfCalendar
from tenants.errors import InvalidInput

MSK = dt.timezone(dt.timedelta(hours=3))


def test_dates_are_whole_days_in_the_time_zone_and_until_is_included() -> None:
    period = parse_period("2026-01-01", "2026-03-31", "Europe/Moscow")
    assert period.start == dt.datetime(2026, 1, 1, tzinfo=MSK)
    assert period.end == dt.datetime(2026, 4, 1, tzinfo=MSK)
    assert period.start.tzinfo == dt.UTC
    utc = parse_period("2026-01-01", "2026-01-01")
    assert (utc.start, utc.end) == (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))


def test_instants_are_taken_as_given_and_until_is_excluded() -> None:
    period = parse_period("2026-01-01T09:00:00+03:00", "2026-01-01T18:00:00Z")
    assert period.start == dt.datetime(2026, 1, 1, 6, tzinfo=dt.UTC)
    assert period.end == dt.datetime(2026, 1, 1, 18, tzinfo=dt.UTC)


def test_a_leap_year_fits_and_a_day_more_does_not() -> None:
    parse_period("2028-01-01", "2028-12-31")  # 366 days
    with pytest.raises(InvalidInput, match="spans 367 days; a report covers at most 366"):
        parse_period("2028-01-01", "2029-01-01")


@pytest.mark.parametrize(
    ("start", "until", "zone", "message"),
    [
        ("2026-02-01", "2026-01-01", "UTC", "'from' (2026-02-01) must be earlier than 'until' (2026-01-01)"),
        ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z", "UTC", "The period is empty"),
        ("2026-13-01", "2027-01-01", "UTC", "from: '2026-13-01' is not a date"),
        ("2026-01-01", "yesterday", "UTC", "until: 'yesterday' is neither a date"),
        ("2026-01-01T10:00:00", "2026-01-02", "UTC", "from: '2026-01-01T10:00:00' has no time zone offset"),
        ("2026-01-01", "2026-01-02", "Mars/Olympus", "tz: unknown time zone 'Mars/Olympus'"),
    ],
    ids=["reversed", "empty", "bad-date", "not-a-date", "naive-time", "bad-zone"],
)
def test_bad_periods_are_named_precisely(start: str, until: str, zone: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_period(start, until, zone)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("start", "until", "zone", "parameter"),
    [
        ("2200-12-01", "2201-01-01", "UTC", "until"),  # the day after the last accepted day
        ("1899-12-31", "1900-01-05", "Europe/Moscow", "from"),
        ("0001-01-01", "0001-01-05", "Europe/Moscow", "from"),  # midnight at +03:00 is before year 1 in UTC
        ("0001-01-01T01:00:00+05:00", "2026-01-01T00:00:00Z", "UTC", "from"),
        ("9999-12-31T00:00:00Z", "9999-12-31T23:00:00-05:00", "UTC", "from"),
        ("2200-12-31T00:00:00Z", "2200-12-31T23:00:00-05:00", "UTC", "until"),  # 2201-01-01 in UTC
    ],
    ids=[
        "after-last-day",
        "before-first-day",
        "year-1-east",
        "instant-before-year-1",
        "instant-after-9999",
        "last-day-west",
    ],
)
def test_dates_outside_the_calendar_are_named_not_crashed_on(start: str, until: str, zone: str, parameter: str) -> None:
    with pytest.raises(OutOfCalendar) as refused:
        parse_period(start, until, zone)
    assert isinstance(refused.value, InvalidInput)  # a 400 problem, like every other bad period
    assert refused.value.field == parameter
    assert str(refused.value) == f"{parameter}: use a date from 1900-01-01 to 2200-12-31."


def test_the_range_the_message_offers_works_in_every_time_zone() -> None:
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12", "Europe/Moscow", "UTC"):
        assert parse_period("1900-01-01", "1900-01-01", zone).start.year in (1899, 1900)
        assert parse_period("2200-12-31", "2200-12-31", zone).end.year in (2200, 2201)


@pytest.mark.parametrize(
    ("status", "result", "expected"),
    [
        ("completed", "resolved", "resolved"),
        ("completed", None, "completed"),
        ("rejected", None, "rejected"),
        ("failed", None, "failed"),
        ("cancelled", None, "cancelled"),
        ("received", None, "open"),
        ("on-hold", None, "open"),
    ],
)
def test_outcomes(status: str, result: str | None, expected: str) -> None:
    assert outcome_of(status, result) == expected


def test_distribution_buckets_are_closed_below_and_open_above() -> None:
    hours = distribution([0.0, 3.99, 4.0, 23.9, 24.0, 200.0], ACCEPT_BUCKETS_HOURS, "hours")
    assert [b.count for b in hours.buckets] == [2, 2, 1, 0, 1]
    assert [bucket_label(b) for b in hours.buckets] == ["0-4", "4-24", "24-72", "72-168", "168+"]
    assert (hours.count, hours.median, hours.p90) == (6, 13.95, 112.0)
    empty = distribution([], COMPLETE_BUCKETS_DAYS, "days")
    assert (empty.count, empty.median, empty.p90, empty.unit) == (0, None, None, "days")
    assert sum(b.count for b in empty.buckets) == 0


def test_the_chart_is_well_formed_svg_with_one_bar_per_bucket() -> None:
    hours = distribution([1.0, 2.0, 5.0, 100.0], ACCEPT_BUCKETS_HOURS, "hours")
    svg = distribution_svg(hours, title="Время до принятия <отправленные> & «все»", language="ru")
    root = ET.fromstring(svg)  # noqa: S314 - the chart casebridge itself just drew
    assert root.tag == f"{{{SVG_NS}}}svg"
    assert root.get("role") == "img"
    assert root.find(f"{{{SVG_NS}}}title").text == "Время до принятия <отправленные> & «все»"  # type: ignore[union-attr]
    bars = root.findall(f"{{{SVG_NS}}}rect[@class='bar']")
    assert [(b.get("data-bucket"), b.get("data-count")) for b in bars] == [
        ("0–4 ч", "2"),
        ("4–24 ч", "1"),
        ("24–72 ч", "0"),
        ("72–168 ч", "1"),
        ("≥ 168 ч", "0"),
    ]
    heights = [float(b.get("height", "nan")) for b in bars]
    # The tallest bucket fills the plot; the others are in proportion; an empty bucket draws nothing.
    assert heights[0] == pytest.approx(2 * heights[1])
    assert heights[1] == pytest.approx(heights[3])
    assert heights[2] == heights[4] == 0.0
    assert "медиана 3.5 ч" in root.find(f"{{{SVG_NS}}}desc").text  # type: ignore[operator,union-attr]


def test_an_empty_chart_says_so() -> None:
    svg = distribution_svg(distribution([], COMPLETE_BUCKETS_DAYS, "days"), title="Time to complete")
    root = ET.fromstring(svg)  # noqa: S314 - the chart casebridge itself just drew
    assert root.find(f"{{{SVG_NS}}}desc").text == "no referrals in this period"  # type: ignore[union-attr]
    assert all(float(b.get("height", "nan")) == 0.0 for b in root.findall(f"{{{SVG_NS}}}rect"))


def _section(rows: list[BreakdownRow]) -> BoxReport:
    hours = distribution([], ACCEPT_BUCKETS_HOURS, "hours")
    days = distribution([], COMPLETE_BUCKETS_DAYS, "days")
    return BoxReport(
        total=sum(r.count for r in rows),
        by_kind=[],
        by_status=[],
        by_outcome=[],
        by_partner=[],
        breakdown=rows,
        time_to_accept=hours,
        time_to_complete=days,
        overdue=Overdue(now=0, answered_late=0, completed_late=0),
    )


def test_every_text_cell_of_the_csv_is_defused() -> None:
    # kind and outcome come from partners' envelopes, the name from their profile: any may look like a formula.
    partner = uuid.uuid4()
    hostile = BreakdownRow(
        kind='=HYPERLINK("http://x")', partner_id=partner, partner_name="+7 812", outcome="@SUM(A1)", count=2
    )
    tabbed = BreakdownRow(kind="\tcmd", partner_id=partner, partner_name="-Фонд", outcome="\r=1", count=1)
    plain = BreakdownRow(kind="referral", partner_id=partner, partner_name="Отдел опеки", outcome="resolved", count=3)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    report = ReferralReport(
        tenant_id=uuid.uuid4(),
        period_from=now,
        period_until=now + dt.timedelta(days=1),
        time_zone="UTC",
        generated_at=now,
        outgoing=_section([hostile, tabbed, plain]),
    )
    rows = list(csv.reader(io.StringIO(report_csv(report).decode("utf-8"))))
    referrals = [row for row in rows if row[1] == "referrals"]
    assert [(r[2], r[4], r[5], r[7]) for r in referrals] == [
        ('\'=HYPERLINK("http://x")', "'+7 812", "'@SUM(A1)", "2"),
        ("'\tcmd", "'-Фонд", "'\r=1", "1"),
        ("referral", "Отдел опеки", "resolved", "3"),
    ]
    assert all(row[3] == str(partner) for row in referrals)
    for row in rows:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), row


def test_the_known_outcome_results_are_the_apis() -> None:
    # The inbox accepts exactly the results a recipient can record through the API; they must not drift apart.
    api_results = typing.get_args(typing.get_type_hints(Outcome)["result"])
    assert set(api_results) == {r.value for r in OutcomeResult}
