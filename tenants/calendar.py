"""The calendar casebridge accepts (one range for every date and time on every route, API and web alike), and the
days of an agency: its time zone, a deadline picked as a day, and how a day is written in each language.

Dates of birth, deadlines, consent validity, report periods and audit windows all lie between 1900-01-01 and
2200-12-31; an instant must fall on one of those days in UTC, whatever offset it was written with. Inside this range
every conversion casebridge makes (to any time zone, to the next day, to a database timestamp) is defined, so a value
that was accepted can always be shown later. docs/api.md ("HTTP conventions") says so to API clients.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass
from typing import Final

from tenants.errors import InvalidInput

FIRST_DAY: Final = dt.date(1900, 1, 1)
LAST_DAY: Final = dt.date(2200, 12, 31)
# Half-open in UTC: an instant is accepted when FIRST_INSTANT <= value < END_INSTANT.
FIRST_INSTANT: Final = dt.datetime.combine(FIRST_DAY, dt.time(), tzinfo=dt.UTC)
END_INSTANT: Final = dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

DAY_RANGE: Final = f"{FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"
DAY_DESCRIPTION: Final = f"A date (YYYY-MM-DD) from {DAY_RANGE}."
INSTANT_DESCRIPTION: Final = f"An RFC 3339 time with an offset, falling in UTC on a day from {DAY_RANGE}."
# JSON Schema has no bounds for dates: the OpenAPI document states the years as a pattern (the descriptions say the
# rest), so that generated requests and clients' own checks stay inside.
YEARS_PATTERN: Final = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-"


# The start of the validation message a request body's date outside the range gets (see tenants.schemas.Strict);
# gateway/validation.py turns it into a sentence naming the field.
OUT_OF_CALENDAR: Final = "outside the calendar"


class OutOfCalendar(InvalidInput):
    """A date or time outside the accepted range; `field` names the field or parameter it came in."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"{field}: use a date from {DAY_RANGE}.")


def in_calendar(value: dt.date) -> bool:
    """Whether a date, or an instant (a naive one read as UTC), lies in the accepted range."""
    if isinstance(value, dt.datetime):
        try:
            instant = value.astimezone(dt.UTC) if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        except OverflowError:  # year 1 east of UTC, or year 9999 west of it: no UTC instant at all
            return False
        return FIRST_INSTANT <= instant < END_INSTANT
    return FIRST_DAY <= value <= LAST_DAY


def check_calendar(field: str, value: dt.date | None) -> None:
    """Raise OutOfCalendar naming `field` when `value` lies outside the accepted range; None passes."""
    if value is not None and not in_calendar(value):
        raise OutOfCalendar(field)


# -- an agency's days: its time zone, a deadline picked as a day, and how a day is written -----------------------------

# Most agencies casebridge serves keep Moscow time; an agency elsewhere sets its own (`casebridge tenant update`).
DEFAULT_TIME_ZONE: Final = "Europe/Moscow"
# A deadline in a request body: a day (YYYY-MM-DD) or an RFC 3339 time with an offset, whose day in the agency's time
# zone is then the deadline (see `deadline`). msgspec checks the shape; Strict checks the day and the calendar.
DEADLINE_PATTERN: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
)
DEADLINE_DESCRIPTION: Final = (
    f"A day (YYYY-MM-DD) from {DAY_RANGE}: the deadline is the end of that day in the agency's time zone, and every "
    "page, letter, reminder and partner shows that day. An RFC 3339 time with an offset is also accepted and stands "
    "for its day in the agency's time zone."
)
# The start of the validation message a deadline that is no day at all gets (2026-02-30); see OUT_OF_CALENDAR.
NOT_A_DAY: Final = "not a day"
_MONTHS_EN: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class UnknownTimeZone(InvalidInput):
    """A time zone name that is not in the IANA database."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown time zone {name!r}: use an IANA name such as Europe/Moscow or Asia/Vladivostok.")


@functools.cache
def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone `name`, or UnknownTimeZone."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZone(name) from None


def today_in(zone: dt.tzinfo, now: dt.datetime) -> dt.date:
    """The date it is at `now` in `zone`: the agency's today, not UTC's."""
    return now.astimezone(zone).date()


def end_of_day(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    """The last microsecond of `day` in `zone`, in UTC: a deadline on that day is overdue only after it.

    Taken as one microsecond before the next day begins, so a day of 23 or 25 hours (a DST change) or one whose
    midnight is skipped ends exactly where the next one starts."""
    next_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return next_day.astimezone(dt.UTC) - dt.timedelta(microseconds=1)


def read_deadline(text: str) -> dt.date | dt.datetime:
    """A deadline as a request body writes it (DEADLINE_PATTERN): a day, or an aware time; ValueError otherwise."""
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    instant = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    if instant.tzinfo is None:
        raise ValueError("a time without an offset")
    return instant


@dataclass(frozen=True, slots=True)
class Deadline:
    """A deadline as casebridge keeps it: the day shown everywhere, and the instant after which it is overdue."""

    day: dt.date
    at: dt.datetime

    @classmethod
    def on(cls, day: dt.date, zone: dt.tzinfo) -> Deadline:
        return cls(day, end_of_day(day, zone))


def deadline(value: str | dt.date, zone: dt.tzinfo) -> Deadline:
    """The deadline a request asks for, in the agency whose time zone is `zone`: a day means the end of that day; a
    time means the end of the day it falls on there. The value has passed Strict's checks (tenants/schemas.py)."""
    read = read_deadline(value) if isinstance(value, str) else value
    if isinstance(read, dt.datetime):
        read = read.astimezone(zone).date()
    return Deadline.on(read, zone)


def format_day(day: dt.date, language: str) -> str:
    """A day as casebridge writes it everywhere (pages, letters, reminders, reports): 31.12.2026 in Russian,
    31 Dec 2026 in English."""
    if language == "ru":
        return f"{day.day:02d}.{day.month:02d}.{day.year:04d}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year:04d}"


def format_moment(instant: dt.datetime, zone: dt.tzinfo, language: str) -> str:
    """An instant as its day (`format_day`) and 24-hour time in `zone`: 31.12.2026 14:05, 31 Dec 2026, 14:05."""
    local = instant.astimezone(zone)
    return f"{format_day(local.date(), language)}{',' if language != 'ru' else ''} {local:%H:%M}"
