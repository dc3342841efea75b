"""The accepted calendar: every date and time field of every request body refuses the calendar's ends, at any offset."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from audit.schemas import SubjectLookupIn
from exchange.cases.schemas import CaseIn, ConsentIn
from exchange.plans.schemas import CareActionIn, PlanIn
from exchange.referrals.models import Referral
from exchange.referrals.schemas import ReferralIn
from exchange.referrals.services import is_overdue
from gateway.validation import field_error, sentence
from tenants.calendar import (
    END_INSTANT,
    FIRST_INSTANT,
    Deadline,
    OutOfCalendar,
    UnknownTimeZone,
    check_calendar,
    deadline,
    end_of_day,
    format_day,
    format_moment,
    in_calendar,
    time_zone,
    today_in,
)
from tenants.schemas import Strict

REPO = Path(__file__).resolve().parents[3]
# Every area's wire shapes: tenants/schemas.py, audit/schemas.py and exchange/<area>/schemas.py.
SCHEMAS = sorted(p for package in ("tenants", "audit", "exchange") for p in (REPO / package).rglob("schemas.py"))
NOW = dt.datetime.now(dt.UTC)
SOON = (NOW + dt.timedelta(days=10)).isoformat()
ID = str(uuid.uuid4())
TASK = {
    "title": "t",
    "to_tenant_id": ID,
    "expected_result": "r",
    "complete_by": SOON,
    "purpose": "p",
    "problem": "p",
    "requested_service": "s",
    "subject_ids": [ID],
    "categories": ["identity"],
    "legal_basis": {"type": "consent"},
}
BODIES: dict[type[Strict], dict[str, Any]] = {
    CaseIn: {"title": "t", "subjects": [{"ref": "c", "full_name": "n", "role": "child", "birth_date": "2015-01-01"}]},
    ConsentIn: {
        "subject_id": ID,
        "given_by": {"name": "n", "relation": "parent"},
        "purposes": ["p"],
        "categories": ["identity"],
        "recipients": {"kinds": ["ngo"]},
        "valid_until": SOON,
        "valid_from": SOON,
    },
    ReferralIn: {
        "case_id": ID,
        "to_tenant_id": ID,
        "kind": "referral",
        "purpose": "p",
        "problem": "p",
        "requested_service": "s",
        "urgency": "routine",
        "respond_by": SOON,
        "complete_by": SOON,
        "subject_ids": [ID],
        "categories": ["identity"],
        "legal_basis": {"type": "consent"},
    },
    SubjectLookupIn: {"full_name": "n", "birth_date": "2015-01-01"},
    PlanIn: {
        "case_id": ID,
        "title": "t",
        "period_from": "2026-01-01",
        "period_until": "2026-06-30",
        "tasks": [{**TASK, "respond_by": SOON}],
    },
    CareActionIn: {"goal_id": ID, "what": "w", "who": "k", "due_by": SOON},
}
# Every date or time a request body takes, by the body it comes in and its path there.
FIELDS = [
    (CaseIn, ("subjects", 0, "birth_date"), "date"),
    (ConsentIn, ("valid_until",), "instant"),
    (ConsentIn, ("valid_from",), "instant"),
    (ReferralIn, ("respond_by",), "deadline"),
    (ReferralIn, ("complete_by",), "deadline"),
    (PlanIn, ("period_from",), "date"),
    (PlanIn, ("period_until",), "date"),
    (PlanIn, ("tasks", 0, "complete_by"), "deadline"),
    (PlanIn, ("tasks", 0, "respond_by"), "deadline"),
    (SubjectLookupIn, ("birth_date",), "date"),
    (CareActionIn, ("due_by",), "deadline"),
]
OUTSIDE = {
    "date": ["0001-01-01", "9999-12-31", "1899-12-31", "2201-01-01"],
    "instant": [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00-14:00",
        "9999-12-31T23:59:59+14:00",
        "9999-12-31T23:59:59-14:00",
        "1899-12-31T23:59:59Z",
        "1900-01-01T13:59:00+14:00",
        "2201-01-01T00:00:00Z",
        "2200-12-31T23:00:00-14:00",
    ],
}
INSIDE = {
    "date": ["1900-01-01", "2200-12-31"],
    "instant": [
        "1900-01-01T00:00:00Z",
        "1900-01-01T14:00:00+14:00",
        "2200-12-31T23:59:59.999999Z",
        "2200-12-31T09:59:59-14:00",
    ],
}
# A deadline is a day or a time standing for its day (tenants.calendar.deadline): both are bounded alike.
OUTSIDE["deadline"] = OUTSIDE["date"] + OUTSIDE["instant"]
INSIDE["deadline"] = INSIDE["date"] + INSIDE["instant"]


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: str) -> dict[str, Any]:
    copy = msgspec.json.decode(msgspec.json.encode(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


@pytest.mark.parametrize(("schema", "path", "kind"), FIELDS, ids=[f"{s.__name__}.{_dotted(p)}" for s, p, _ in FIELDS])
def test_every_date_field_refuses_the_ends_of_the_calendar(
    schema: type[Strict], path: tuple[Any, ...], kind: str
) -> None:
    for value in OUTSIDE[kind]:
        with pytest.raises(msgspec.ValidationError) as refused:
            msgspec.convert(_with(BODIES[schema], path, value), schema)
        error = field_error(str(refused.value))
        assert (error.code, error.field) == ("calendar", _dotted(path)), (value, str(refused.value))
        assert sentence(error) == f"{_dotted(path)} must lie between 1900-01-01 and 2200-12-31."
    for value in INSIDE[kind]:
        msgspec.convert(_with(BODIES[schema], path, value), schema)


def _date_fields(struct: type[msgspec.Struct]) -> set[str]:
    found = set()
    for field in msgspec.inspect.type_info(struct).fields:  # type: ignore[union-attr]  # a Struct's info
        kinds = getattr(field.type, "types", (field.type,))
        inner = [getattr(k, "type", k) for k in kinds]
        if any(isinstance(k, msgspec.inspect.DateType | msgspec.inspect.DateTimeType) for k in inner):
            found.add(field.name)
    return found | set(getattr(struct, "DEADLINES", ()))


def test_the_table_names_every_date_field_of_every_request_body() -> None:
    """A new date field is refused outside the calendar by Strict; this keeps it in the table above, tested."""
    modules = [importlib.import_module(".".join(p.relative_to(REPO).with_suffix("").parts)) for p in SCHEMAS]
    bodies = {v for m in modules for v in vars(m).values() if isinstance(v, type) and issubclass(v, Strict)}
    declared = {(struct.__name__, name) for struct in bodies for name in _date_fields(struct)}
    nested = {"subjects": "SubjectIn", "tasks": "PlanTaskIn"}
    tabled = {
        (nested.get(str(path[0]), schema.__name__) if len(path) > 1 else schema.__name__, str(path[-1]))
        for schema, path, _ in FIELDS
    }
    assert declared == tabled


def test_instants_are_bounded_in_utc_whatever_their_offset() -> None:
    assert in_calendar(FIRST_INSTANT)
    assert not in_calendar(END_INSTANT)
    assert not in_calendar(dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))))  # no UTC instant at all
    assert not in_calendar(dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-14))))
    assert in_calendar(dt.datetime(2200, 12, 31, 23, 59))  # a naive time is read as UTC
    with pytest.raises(OutOfCalendar) as refused:
        check_calendar("since", dt.date(9999, 12, 31))
    assert refused.value.field == "since"
    check_calendar("since", None)


# -- an agency's days: a deadline picked as a day ends with that day in the agency's time zone -------------------------

ZONES = ("Europe/Moscow", "Asia/Vladivostok", "Europe/Kaliningrad", "UTC", "America/New_York", "America/Santiago")
NEW_YEARS_EVE = dt.date(2026, 12, 31)
MICROSECOND = dt.timedelta(microseconds=1)


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("zone", "day", "end"),
    [
        ("Europe/Moscow", NEW_YEARS_EVE, "2026-12-31T20:59:59.999999"),
        ("Asia/Vladivostok", NEW_YEARS_EVE, "2026-12-31T13:59:59.999999"),
        ("Europe/Kaliningrad", NEW_YEARS_EVE, "2026-12-31T21:59:59.999999"),
        ("UTC", NEW_YEARS_EVE, "2026-12-31T23:59:59.999999"),
        ("America/New_York", NEW_YEARS_EVE, "2027-01-01T04:59:59.999999"),
        # New York's 23-hour and 25-hour days: the day ends at the local midnight after it, whatever its length.
        ("America/New_York", dt.date(2026, 3, 8), "2026-03-09T03:59:59.999999"),
        ("America/New_York", dt.date(2026, 11, 1), "2026-11-02T04:59:59.999999"),
        # Chile moves its clocks at midnight: 6 September 2026 begins at 01:00, the instant 5 September ends.
        ("America/Santiago", dt.date(2026, 9, 5), "2026-09-06T03:59:59.999999"),
    ],
)
def test_a_day_ends_at_the_next_local_midnight(zone: str, day: dt.date, end: str) -> None:
    assert end_of_day(day, time_zone(zone)) == _utc(end)
    assert Deadline.on(day, time_zone(zone)) == Deadline(day, _utc(end))


@pytest.mark.parametrize("zone", ZONES)
def test_every_day_of_two_years_ends_on_itself_and_the_next_begins_a_microsecond_later(zone: str) -> None:
    tz = time_zone(zone)
    day = dt.date(2026, 1, 1)
    while day < dt.date(2028, 1, 1):
        end = end_of_day(day, tz)
        assert end.astimezone(tz).date() == day, day
        assert (end + MICROSECOND).astimezone(tz).date() == day + dt.timedelta(days=1), day
        day += dt.timedelta(days=1)


@pytest.mark.parametrize("zone", ZONES)
def test_a_deadline_day_is_overdue_only_once_that_day_is_over_where_the_agency_is(zone: str) -> None:
    tz = time_zone(zone)
    due = deadline("2026-12-31", tz)
    referral = Referral(status="received", respond_by=due.at, complete_by=due.at)
    last_moment = dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=tz)
    next_midnight = dt.datetime(2027, 1, 1, tzinfo=tz)
    assert due.day == NEW_YEARS_EVE
    assert not is_overdue(referral, dt.datetime(2026, 12, 31, 23, 59, 30, tzinfo=tz))
    assert not is_overdue(referral, last_moment)
    assert is_overdue(referral, next_midnight)
    assert today_in(tz, last_moment) == NEW_YEARS_EVE
    assert today_in(tz, next_midnight) == dt.date(2027, 1, 1)


@pytest.mark.parametrize(
    ("now", "zone", "today"),
    [
        # 21:30 UTC on New Year's Eve: already 1 January in Moscow and Vladivostok, not yet in UTC or New York.
        ("2026-12-31T21:30:00", "Europe/Moscow", dt.date(2027, 1, 1)),
        ("2026-12-31T21:30:00", "Asia/Vladivostok", dt.date(2027, 1, 1)),
        ("2026-12-31T21:30:00", "Europe/Kaliningrad", NEW_YEARS_EVE),
        ("2026-12-31T21:30:00", "UTC", NEW_YEARS_EVE),
        ("2026-12-31T21:30:00", "America/New_York", NEW_YEARS_EVE),
        ("2026-12-31T13:59:59", "Asia/Vladivostok", NEW_YEARS_EVE),
        ("2026-12-31T14:00:00", "Asia/Vladivostok", dt.date(2027, 1, 1)),
        ("2027-01-01T04:59:59", "America/New_York", NEW_YEARS_EVE),
        ("2027-01-01T05:00:00", "America/New_York", dt.date(2027, 1, 1)),
    ],
)
def test_today_is_the_agencys_date_not_utcs(now: str, zone: str, today: dt.date) -> None:
    assert today_in(time_zone(zone), _utc(now)) == today


@pytest.mark.parametrize(
    ("value", "zone", "day"),
    [
        # A day is that day wherever the agency is.
        *(("2026-12-31", zone, NEW_YEARS_EVE) for zone in ZONES),
        # A time stands for the day it falls on in the agency's zone: the 23:59 UTC the pages used to store is
        # already 1 January in Moscow, still 31 December in New York.
        ("2026-12-31T23:59:00Z", "Europe/Moscow", dt.date(2027, 1, 1)),
        ("2026-12-31T23:59:00Z", "America/New_York", NEW_YEARS_EVE),
        ("2026-12-31T23:59:00+03:00", "Europe/Moscow", NEW_YEARS_EVE),
        ("2027-01-01T00:00:00+10:00", "Asia/Vladivostok", dt.date(2027, 1, 1)),
    ],
)
def test_a_deadline_from_a_request_is_the_end_of_its_day_in_the_agencys_zone(
    value: str, zone: str, day: dt.date
) -> None:
    assert deadline(value, time_zone(zone)) == Deadline(day, end_of_day(day, time_zone(zone)))


@pytest.mark.parametrize(
    ("value", "ru", "en"),
    [
        (NEW_YEARS_EVE, "31.12.2026", "31 Dec 2026"),
        (dt.date(2027, 1, 1), "01.01.2027", "1 Jan 2027"),
        (dt.date(1900, 5, 9), "09.05.1900", "9 May 1900"),
    ],
)
def test_a_day_is_written_one_way_per_language(value: dt.date, ru: str, en: str) -> None:
    assert (format_day(value, "ru"), format_day(value, "en")) == (ru, en)


def test_a_moment_is_its_day_and_time_in_the_agencys_zone() -> None:
    end = end_of_day(NEW_YEARS_EVE, time_zone("Europe/Moscow"))
    assert format_moment(end, time_zone("Europe/Moscow"), "ru") == "31.12.2026 23:59"
    assert format_moment(end, time_zone("Europe/Moscow"), "en") == "31 Dec 2026, 23:59"
    assert format_moment(end, time_zone("Asia/Vladivostok"), "ru") == "01.01.2027 06:59"


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../../etc/passwd", "europe/moscow "])
def test_an_unknown_time_zone_is_refused_by_name(name: str) -> None:
    with pytest.raises(UnknownTimeZone) as refused:
        time_zone(name)
    assert repr(name) in str(refused.value)
    assert "IANA" in str(refused.value)


@pytest.mark.parametrize("value", ["2026-02-30", "2026-12-31T12:00:00", "31.12.2026", "2026-12-31T24:00:00Z"])
def test_a_deadline_that_is_no_day_is_a_format_error_naming_its_field(value: str) -> None:
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert(_with(BODIES[ReferralIn], ("complete_by",), value), ReferralIn)
    error = field_error(str(refused.value))
    assert (error.code, error.field) == ("format", "complete_by"), str(refused.value)
