"""The referral status machine, exhaustively: every status x every target x each side."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from exchange.referrals.models import Referral, Side
from exchange.referrals.services import is_overdue
from exchange.referrals.status import SYSTEM, TERMINAL, Status, allowed

SIDES = (Side.SENDER, Side.RECIPIENT, SYSTEM)

# The expected table written out independently of the code (docs/api.md, "The status machine").
EXPECTED = {
    ("draft", "requested"): Side.SENDER,
    ("requested", "received"): SYSTEM,
    ("received", "accepted"): Side.RECIPIENT,
    ("received", "rejected"): Side.RECIPIENT,
    **{("accepted", t): Side.RECIPIENT for t in ("in-progress", "on-hold", "completed", "failed")},
    **{("in-progress", t): Side.RECIPIENT for t in ("on-hold", "completed", "failed")},
    **{("on-hold", t): Side.RECIPIENT for t in ("in-progress", "completed", "failed")},
    **{(s, "cancelled"): Side.SENDER for s in ("draft", "requested", "received", "accepted", "in-progress", "on-hold")},
}


def test_statuses_keep_the_values_stored_and_sent() -> None:
    assert [s.value for s in Status] == [
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "in-progress",
        "on-hold",
        "completed",
        "failed",
        "cancelled",
    ]


@pytest.mark.parametrize(("current", "target", "side"), list(itertools.product(Status, Status, SIDES)))
def test_every_transition_for_every_side(current: str, target: str, side: str) -> None:
    assert allowed(current, target, side) == (EXPECTED.get((current, target)) == side)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_nothing_leaves_a_terminal_status(terminal: str) -> None:
    assert not any(allowed(terminal, target, side) for target in Status for side in SIDES)


def _referral(status: str) -> Referral:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    return Referral(status=status, respond_by=now + dt.timedelta(days=1), complete_by=now + dt.timedelta(days=10))


@pytest.mark.parametrize(
    ("status", "days_later", "overdue"),
    [
        ("requested", 0, False),
        ("requested", 2, True),
        ("received", 2, True),
        ("accepted", 2, False),
        ("in-progress", 11, True),
        ("on-hold", 11, True),
        ("completed", 30, False),
        ("cancelled", 30, False),
        ("rejected", 30, False),
        ("failed", 30, False),
    ],
)
def test_overdue_is_derived_from_deadlines_and_status(status: str, days_later: int, overdue: bool) -> None:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(days=days_later)
    assert is_overdue(_referral(status), now) is overdue
