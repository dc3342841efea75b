"""Report periods, outcomes, distributions and the SVG chart, without a database."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from exchange.charts import SVG_NS, distribution_svg
from exchange.reporting import (
    ACCEPT_BUCKETS_HOURS,
    COMPLETE_BUCKETS_DAYS,
    bucket_label,
    distribution,
    outcome_of,
    parse_period,
)
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
        ("0–4 ч", "2"), ("4–24 ч", "1"), ("24–72 ч", "0"), ("72–168 ч", "1"), ("≥ 168 ч", "0"),
    ]  # fmt: skip
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
