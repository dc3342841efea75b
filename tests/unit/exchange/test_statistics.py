"""The directory's figures from a fixture of timelines, against values computed by hand, and small-cell suppression.

The arithmetic is checked with `min_cell=0` (every figure there is something to compute from); the threshold itself
is checked separately, with the default `MIN_CELL`.
"""

from __future__ import annotations

import datetime as dt

import pytest

from exchange.reports.statistics import MIN_CELL, PartnerFigures, ReferralHistory, figures, percentile

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=59)
WINDOW = dt.timedelta(days=365)
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def history(**milestones: dt.timedelta) -> ReferralHistory:
    """A referral requested at T0 with `complete_by` T0+10 days unless given; milestones as offsets from T0."""
    complete_by = milestones.pop("complete_by", 10 * D)
    return ReferralHistory(
        requested_at=T0, complete_by=T0 + complete_by, **{f"{k}_at": T0 + v for k, v in milestones.items()}
    )


# One partner's history; the comment on each line says what it contributes.
PARTNER = [
    history(accepted=2 * H, completed=5 * D),  # accept 2 h, complete 5 d, on time
    history(accepted=10 * H, completed=12 * D, complete_by=12 * D),  # completed at the very deadline: on time
    history(accepted=4 * H, completed=12 * D + dt.timedelta(seconds=1), complete_by=12 * D),  # one second late
    history(rejected=1 * H),  # answered, not accepted
    history(accepted=20 * H, complete_by=60 * D),  # in hand, deadline one day after NOW: not due yet
    history(accepted=6 * H, failed=3 * D),  # failed: due, not on time
    history(cancelled=1 * H),  # withdrawn by the sender before any answer: not answered
    history(accepted=8 * H, cancelled=2 * D),  # withdrawn before its deadline: not due
    history(accepted=12 * H, complete_by=30 * D),  # in hand past its deadline: due, not on time
]


def test_a_partner_with_history() -> None:
    stats = figures(PARTNER, now=NOW, window=WINDOW, min_cell=0)
    # Hours to accept, sorted: 2 4 6 8 10 12 20 -> median the 4th; p90 at rank 0.9 * 6 = 5.4: 12 + 0.4 * (20 - 12).
    assert stats.median_hours_to_accept == 8.0
    assert stats.p90_hours_to_accept == 15.2
    # Days to complete: 5, 12, 12.0000116 -> median 12.0; p90 between the last two, 12.0 when rounded.
    assert stats.median_days_to_complete == 12.0
    assert stats.p90_days_to_complete == 12.0
    assert stats.acceptance_rate == 0.875  # 7 accepted of 8 answered
    assert stats.on_time_rate == 0.4  # 2 on time of 5 due (three completed, one failed, one past its deadline)
    assert (stats.referral_count, stats.answered_count, stats.accepted_count) == (9, 8, 7)
    assert (stats.completed_count, stats.due_count, stats.window_days) == (3, 5, 365)


def test_the_same_history_under_the_threshold_hides_only_the_small_cells() -> None:
    assert MIN_CELL == 5
    stats = figures(PARTNER, now=NOW, window=WINDOW)
    assert (stats.median_hours_to_accept, stats.p90_hours_to_accept) == (8.0, 15.2)  # seven accepted
    assert stats.acceptance_rate == 0.875  # eight answered
    assert stats.on_time_rate == 0.4  # five due: exactly the threshold
    # Only three completed: no completion figures, and the count itself is not shown.
    assert (stats.median_days_to_complete, stats.p90_days_to_complete, stats.completed_count) == (None, None, None)
    assert (stats.referral_count, stats.answered_count, stats.accepted_count, stats.due_count) == (9, 8, 7, 5)
    assert (stats.window_days, stats.min_cell) == (365, 5)


def assert_no_rates_or_durations(stats: PartnerFigures) -> None:
    """None of the figures computed from the referrals' durations is shown."""
    assert stats.median_hours_to_accept is None
    assert stats.median_days_to_complete is None
    assert stats.p90_hours_to_accept is None
    assert stats.p90_days_to_complete is None
    assert stats.acceptance_rate is None
    assert stats.on_time_rate is None


@pytest.mark.parametrize("referrals", [1, 2, 3, 4])
def test_a_partner_with_fewer_than_five_referrals_shows_no_figures(referrals: int) -> None:
    # Each one answered, accepted, completed and due: every figure would otherwise have something to rest on.
    items = [history(accepted=(n + 1) * H, completed=(n + 2) * D) for n in range(referrals)]
    stats = figures(items, now=NOW, window=WINDOW)
    assert_no_rates_or_durations(stats)
    counts = (stats.referral_count, stats.answered_count, stats.accepted_count, stats.completed_count, stats.due_count)
    assert counts == (None, None, None, None, None)
    assert (stats.window_days, stats.min_cell) == (365, MIN_CELL)
    # One more referral like them and every figure appears.
    items.append(history(accepted=(referrals + 1) * H, completed=(referrals + 2) * D))
    if len(items) == MIN_CELL:
        shown = figures(items, now=NOW, window=WINDOW)
        assert (shown.median_hours_to_accept, shown.median_days_to_complete) == (3.0, 4.0)
        assert (shown.acceptance_rate, shown.on_time_rate) == (1.0, 1.0)
        assert (shown.referral_count, shown.completed_count, shown.due_count) == (5, 5, 5)


def test_a_partner_without_history_has_only_nulls() -> None:
    stats = figures([], now=NOW, window=WINDOW)
    assert stats.median_hours_to_accept is None
    assert stats.acceptance_rate is None
    # Zero is suppressed as well: otherwise its change to "suppressed" would give the first referral away.
    assert (stats.referral_count, stats.answered_count, stats.accepted_count, stats.completed_count) == (None,) * 4


def test_without_a_threshold_no_history_has_nulls_and_zero_counts() -> None:
    stats = figures([], now=NOW, window=WINDOW, min_cell=0)
    assert_no_rates_or_durations(stats)
    assert (stats.referral_count, stats.answered_count, stats.accepted_count, stats.completed_count) == (0, 0, 0, 0)


def test_a_partner_that_only_rejects() -> None:
    stats = figures([history(rejected=3 * H), history(rejected=30 * H)], now=NOW, window=WINDOW, min_cell=0)
    assert stats.acceptance_rate == 0.0
    assert stats.median_hours_to_accept is None
    assert stats.median_days_to_complete is None
    assert stats.on_time_rate is None  # nothing was ever due
    assert (stats.referral_count, stats.answered_count, stats.accepted_count, stats.due_count) == (2, 2, 0, 0)


@pytest.mark.parametrize(
    ("milestones", "due", "on_time"),
    [
        ({"accepted": H, "completed": 10 * D}, True, True),  # exactly at complete_by
        ({"accepted": H, "completed": 10 * D + dt.timedelta(microseconds=1)}, True, False),
        ({"accepted": H, "cancelled": 10 * D}, False, False),  # cancelled at the deadline: in time
        ({"accepted": H, "cancelled": 11 * D}, True, False),  # cancelled after it had run late
        ({"accepted": H}, True, False),  # NOW is long past complete_by
        ({"accepted": H, "complete_by": NOW - T0}, False, False),  # deadline is NOW itself: not late yet
        ({"rejected": H}, False, False),
        ({}, False, False),
    ],
    ids=[
        "at-deadline",
        "just-after",
        "cancelled-in-time",
        "cancelled-late",
        "open-late",
        "open-at-deadline",
        "rejected",
        "unanswered",
    ],
)
def test_on_time_boundaries(milestones: dict[str, dt.timedelta], due: bool, on_time: bool) -> None:
    item = history(**milestones)
    assert item.completion_due(NOW) is due
    assert item.on_time is on_time
    stats = figures([item], now=NOW, window=WINDOW, min_cell=0)
    assert stats.due_count == int(due)
    assert stats.on_time_rate == (None if not due else float(on_time))


def test_a_partner_clock_behind_the_senders_never_gives_negative_durations() -> None:
    stats = figures([history(accepted=-H, completed=-D)], now=NOW, window=WINDOW, min_cell=0)
    assert stats.median_hours_to_accept == 0.0
    assert stats.median_days_to_complete == 0.0


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.9, 7.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([3.0, 1.0, 2.0], 0.5, 2.0),  # unsorted input
        ([float(v) for v in range(1, 11)], 0.9, 9.1),  # PostgreSQL: percentile_cont(0.9) over 1..10 = 9.1
        ([float(v) for v in range(1, 11)], 0.5, 5.5),
    ],
)
def test_percentile_interpolates_like_percentile_cont(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == pytest.approx(expected)
