"""Anomaly rules over hand-made events: bulk reads, off-hours reads, reads with no active basis, repeated denials."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
import zoneinfo

import pytest

from audit.anomalies import (
    Cover,
    EventSummary,
    OffHours,
    Rule,
    Thresholds,
    bulk_reads,
    detect,
    lacks_basis,
    no_active_basis,
    off_hours,
    repeated_denials,
)

MOSCOW = zoneinfo.ZoneInfo("Europe/Moscow")  # UTC+3 all year
# 12:00 Moscow time on a working day.
NOON = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
ALICE, BOB = uuid.UUID(int=1), uuid.UUID(int=2)
PARTNER = uuid.UUID(int=99)
_ids = itertools.count(1000)


def event(
    minutes: float,
    *,
    actor: uuid.UUID | None = ALICE,
    action: str = "exchange:case:read",
    outcome: str = "success",
    subjects: tuple[str, ...] = ("ps_a",),
    at: dt.datetime = NOON,
) -> EventSummary:
    return EventSummary(
        id=uuid.UUID(int=next(_ids)),
        time=at + dt.timedelta(minutes=minutes),
        action=action,
        outcome=outcome,
        actor_id=actor,
        actor_tenant_id=PARTNER,
        subjects=frozenset(subjects),
    )


def reads(count: int, *, every_minutes: float, actor: uuid.UUID = ALICE, start: float = 0) -> list[EventSummary]:
    return [event(start + i * every_minutes, actor=actor, subjects=(f"ps_{actor.int}_{i}",)) for i in range(count)]


# -- bulk reads -------------------------------------------------------------------------------------------------------


def test_more_distinct_subjects_than_the_limit_within_an_hour_is_a_bulk_read() -> None:
    events = reads(6, every_minutes=10)  # six subjects in 50 minutes
    (flag,) = bulk_reads(events, limit=5)
    assert flag.rule is Rule.BULK_READS
    assert flag.actor_id == ALICE
    assert flag.actor_tenant_id == PARTNER
    assert flag.count == 6
    assert flag.event_ids == tuple(e.id for e in events)
    assert (flag.window_start, flag.window_end) == (events[0].time, events[-1].time)


@pytest.mark.parametrize(
    ("events", "why"),
    [
        (reads(5, every_minutes=10), "exactly the limit is allowed"),
        (reads(6, every_minutes=12), "the first and the sixth are a full hour apart"),
        ([event(i, subjects=("ps_same",)) for i in range(20)], "one subject read twenty times is one subject"),
        ([event(i, outcome="denied", subjects=(f"ps_{i}",)) for i in range(20)], "refused reads returned nothing"),
        ([event(i, action="exchange:case:create", subjects=(f"ps_{i}",)) for i in range(20)], "writes are not reads"),
        ([event(i, actor=None, subjects=(f"ps_{i}",)) for i in range(20)], "the system's own events"),
        (reads(3, every_minutes=1) + reads(3, every_minutes=1, actor=BOB), "two actors are counted apart"),
    ],
)
def test_no_bulk_read(events: list[EventSummary], why: str) -> None:
    assert bulk_reads(events, limit=5) == [], why


def test_a_read_naming_several_subjects_counts_each() -> None:
    events = [event(0, subjects=("ps_1", "ps_2", "ps_3")), event(5, subjects=("ps_3", "ps_4"))]
    (flag,) = bulk_reads(events, limit=3)
    assert flag.count == 4


def test_overlapping_windows_make_one_flag_and_separate_bursts_two() -> None:
    morning = reads(8, every_minutes=5)  # 40 minutes, windows over the limit overlap
    evening = reads(4, every_minutes=5, start=300)  # five hours later, under the limit
    night = reads(8, every_minutes=5, start=600)
    flags = bulk_reads(morning + evening + night, limit=5)
    assert [f.event_ids for f in flags] == [tuple(e.id for e in morning), tuple(e.id for e in night)]
    assert [f.count for f in flags] == [8, 8]


# -- repeated denials -------------------------------------------------------------------------------------------------


def test_more_denials_than_the_limit_within_an_hour_are_flagged() -> None:
    denials = [event(i * 5, outcome="denied", action="exchange:referral:read", subjects=()) for i in range(4)]
    (flag,) = repeated_denials([*denials, event(1)], limit=3)
    assert flag.rule is Rule.REPEATED_DENIALS
    assert flag.count == 4
    assert flag.event_ids == tuple(e.id for e in denials)


def test_denials_spread_over_hours_or_actors_are_not_flagged() -> None:
    spread = [event(i * 61, outcome="denied") for i in range(5)]
    shared = [event(i, outcome="denied", actor=ALICE if i % 2 else BOB) for i in range(6)]
    assert repeated_denials(spread, limit=3) == []
    assert repeated_denials(shared, limit=3) == []
    assert repeated_denials([event(i, outcome="error") for i in range(10)], limit=3) == []


# -- off hours --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utc_hour", "flagged"),
    [(16, False), (17, True), (23, True), (4, True), (5, False), (9, False)],  # Moscow 19, 20, 02, 07, 08, 12
)
def test_off_hours_are_judged_in_local_time(utc_hour: int, flagged: bool) -> None:
    at = dt.datetime(2026, 11, 23, utc_hour, 30, tzinfo=dt.UTC)
    flags = off_hours([event(0, at=at)], OffHours(20, 8), MOSCOW)
    assert bool(flags) is flagged


def test_one_flag_per_actor_and_night() -> None:
    evening = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)  # 21:00 in Moscow
    late = [event(0, at=evening), event(300, at=evening)]  # 21:00 and 02:00 the next day: the same night
    next_night = [event(24 * 60, at=evening)]
    bob = [event(10, at=evening, actor=BOB)]
    daytime = [event(0)]
    flags = off_hours([*late, *next_night, *bob, *daytime], OffHours(20, 8), MOSCOW)
    assert sorted((f.actor_id.int, f.event_ids) for f in flags) == sorted(
        [
            (ALICE.int, tuple(e.id for e in late)),
            (ALICE.int, tuple(e.id for e in next_night)),
            (BOB.int, (bob[0].id,)),
        ]
    )
    assert all(f.rule is Rule.OFF_HOURS for f in flags)


def test_off_hours_ignore_refusals_writes_and_reads_without_subjects() -> None:
    night = dt.datetime(2026, 11, 23, 22, 0, tzinfo=dt.UTC)
    events = [
        event(0, at=night, outcome="denied"),
        event(0, at=night, action="exchange:case:create"),
        event(0, at=night, action="exchange:referral:list", subjects=()),
    ]
    assert off_hours(events, OffHours(20, 8), MOSCOW) == []


def test_off_hours_window() -> None:
    assert OffHours.parse("20-08") == OffHours(20, 8)
    assert [h for h in range(24) if OffHours(20, 8).contains(h)] == [0, 1, 2, 3, 4, 5, 6, 7, 20, 21, 22, 23]
    assert [h for h in range(24) if OffHours(1, 5).contains(h)] == [1, 2, 3, 4]
    assert not any(OffHours(0, 0).contains(h) for h in range(24))
    for bad in ("20", "20-", "a-b", "25-08", "20:00-08:00"):
        with pytest.raises(ValueError, match="off-hours"):
            OffHours.parse(bad)


# -- no active basis --------------------------------------------------------------------------------------------------

OWN = PARTNER  # the events' actors belong to this agency (see `event`)
GIVEN, WITHDRAWN = NOON + dt.timedelta(minutes=10), NOON + dt.timedelta(minutes=30)


def consented(subject: str = "ps_a") -> Cover:
    """A basis for anyone of the agency, in force from GIVEN until WITHDRAWN."""
    return Cover(subject, OWN, start=GIVEN, end=WITHDRAWN)


def test_consent_given_read_withdrawn_read_flags_only_the_later_read() -> None:
    before = event(5, action="exchange:referral:read")  # before the consent was given
    during = [event(10), event(29, action="exchange:referral:read")]  # from GIVEN, up to just before WITHDRAWN
    after = [event(30), event(45)]  # withdrawal is at once: its own minute is already after
    (flag,) = no_active_basis([before, *during, *after], [consented()])
    assert flag.rule is Rule.NO_ACTIVE_BASIS
    assert flag.actor_id == ALICE
    assert flag.event_ids == (before.id, *(e.id for e in after))
    assert flag.count == 3


def test_case_and_referral_reads_of_uncovered_subjects_are_flagged_per_actor() -> None:
    uncovered = [
        event(0, action="exchange:referral:read", subjects=("ps_gone",)),
        event(5, action="exchange:case:read", subjects=("ps_ok", "ps_gone")),
    ]
    covered = [event(1, action="exchange:referral:read", subjects=("ps_ok",))]
    other = [
        event(2, action="exchange:message:list", subjects=("ps_gone",)),  # not one of the checked reads
        event(3, action="exchange:referral:read", outcome="denied", subjects=("ps_gone",)),
        event(4, action="exchange:case:read", subjects=()),
    ]
    bob = [event(6, actor=BOB, subjects=("ps_gone",))]
    flags = no_active_basis([*uncovered, *covered, *other, *bob], [Cover("ps_ok", OWN)])
    assert [(f.actor_id, f.event_ids) for f in flags] == [
        (ALICE, tuple(e.id for e in uncovered)),
        (BOB, (bob[0].id,)),
    ]


def test_a_read_is_judged_only_for_the_people_it_returned() -> None:
    """The child's consent covers reads of the child; the parent's lack of one counts only where the parent was read."""
    child_only = event(0, action="exchange:referral:read", subjects=("ps_child",))
    whole_case = event(1, subjects=("ps_child", "ps_parent"))
    (flag,) = no_active_basis([child_only, whole_case], [Cover("ps_child", OWN)])
    assert flag.event_ids == (whole_case.id,)


@pytest.mark.parametrize(
    ("cover", "why"),
    [
        (Cover("ps_a", uuid.UUID(int=7)), "a basis of another agency"),
        (Cover("ps_a", OWN, actors=frozenset({BOB})), "the case's own worker is someone else"),
        (Cover("ps_a", OWN, roles=frozenset({"supervisor"})), "a basis for supervisors only"),
        (Cover("ps_a", OWN, end=NOON), "ended exactly at the read"),
        (Cover("ps_a", OWN, start=NOON + dt.timedelta(seconds=1)), "begun a second after the read"),
        (Cover("ps_b", OWN), "a basis for someone else"),
    ],
)
def test_a_basis_covers_only_its_readers_and_its_time(cover: Cover, why: str) -> None:
    read = event(0)
    assert lacks_basis(read, {c.subject: [c] for c in [cover]}), why


@pytest.mark.parametrize(
    ("cover", "role"),
    [
        (Cover("ps_a", OWN), None),
        (Cover("ps_a", OWN, actors=frozenset({ALICE, BOB})), None),
        (Cover("ps_a", OWN, roles=frozenset({"supervisor"})), "supervisor"),
        (Cover("ps_a", OWN, start=NOON, end=NOON + dt.timedelta(seconds=1)), None),
    ],
)
def test_a_basis_in_force_for_the_reader_covers_the_read(cover: Cover, role: str | None) -> None:
    read = dataclasses.replace(event(0), actor_role=role)
    assert not lacks_basis(read, {"ps_a": [cover]})


def test_every_category_returned_needs_a_basis_and_several_may_share_them() -> None:
    read = dataclasses.replace(event(0, action="exchange:referral:read"), categories=frozenset({"identity", "health"}))
    identity = Cover("ps_a", OWN, categories=frozenset({"identity"}))
    health = Cover("ps_a", OWN, categories=frozenset({"health", "family"}))
    assert lacks_basis(read, {"ps_a": [identity]})
    assert not lacks_basis(read, {"ps_a": [identity, health]})
    assert not lacks_basis(read, {"ps_a": [Cover("ps_a", OWN)]})
    # A read of everything the resource holds needs a basis for everything.
    whole = event(1)
    assert lacks_basis(whole, {"ps_a": [identity, health]})
    assert not lacks_basis(whole, {"ps_a": [identity, Cover("ps_a", OWN)]})


def test_a_read_that_returned_no_personal_data_or_records_the_readers_own_basis_is_not_judged() -> None:
    restricted = dataclasses.replace(event(0, action="exchange:referral:read"), categories=frozenset())
    own_basis = dataclasses.replace(event(1, action="exchange:referral:read"), reader_basis="SK RF art. 122")
    assert no_active_basis([restricted, own_basis], []) == []
    assert not restricted.reads_subject_data  # nor does it count as a read of subject data for the other rules


# -- all rules together -----------------------------------------------------------------------------------------------


def test_detect_runs_every_rule_and_names_no_subject() -> None:
    thresholds = Thresholds(bulk_subjects_per_hour=2, denials_per_hour=1, off_hours=OffHours(20, 8), timezone=MOSCOW)
    night = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
    events = [
        *reads(3, every_minutes=1),
        event(0, at=night, action="exchange:referral:read", subjects=("ps_secret",)),
        event(0, outcome="denied", actor=BOB),
        event(1, outcome="denied", actor=BOB),
    ]
    flags = detect(events, thresholds, [Cover(f"ps_{ALICE.int}_{i}", PARTNER) for i in range(3)])
    assert {f.rule for f in flags} == set(Rule)
    assert [f.window_start for f in flags] == sorted(f.window_start for f in flags)
    assert "ps_" not in repr(flags)
