"""The pages' date filters: one format per language, instants in the agency's zone, a partner's odd text as it is."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.web.i18n import format_date, format_datetime

# No request: a page shown before signing in, in Russian, in the default agency zone (Europe/Moscow).
SIGNED_OUT: dict[str, object] = {}
LATE_ON_NEW_YEARS_EVE = dt.datetime(2026, 12, 31, 21, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (dt.date(2026, 12, 31), "31.12.2026"),
        ("2015-04-02", "02.04.2015"),  # a birth date from a partner's envelope
        ("около 2015 г.", "около 2015 г."),  # text a partner sent as a birth date: shown, never an error
        (LATE_ON_NEW_YEARS_EVE, "01.01.2027"),  # 00:30 on 1 January in Moscow
        (None, ""),
        ("", ""),
    ],
)
def test_a_date_is_a_day_of_the_agency(value: dt.date | str | None, shown: str) -> None:
    assert format_date(SIGNED_OUT, value) == shown


def test_a_time_is_its_day_and_time_in_the_agency_s_zone() -> None:
    assert format_datetime(SIGNED_OUT, LATE_ON_NEW_YEARS_EVE) == "01.01.2027 00:30"
    assert format_datetime(SIGNED_OUT, None) == ""
