"""The calendar casebridge accepts: one range for every date and time on every route, API and web alike.

Dates of birth, deadlines, consent validity, report periods and audit windows all lie between 1900-01-01 and
2200-12-31; an instant must fall on one of those days in UTC, whatever offset it was written with. Inside this range
every conversion casebridge makes (to any time zone, to the next day, to a database timestamp) is defined, so a value
that was accepted can always be shown later. docs/api.md ("HTTP conventions") says so to API clients.
"""

from __future__ import annotations

import datetime as dt
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
