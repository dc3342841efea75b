"""Anomaly flags for a data-protection officer: pure rules over event summaries, with the thresholds passed in.

The rules (docs/audit.md), each over one tenant's own trail:

- `bulk_reads`: one actor read more than `bulk_subjects_per_hour` distinct subjects within one hour.
- `off_hours`: one actor read subject data inside the off-hours window, in local time of the configured timezone.
- `no_active_basis`: a successful `exchange:case:read` or `exchange:referral:read` returned data of a subject for
  which no basis was in force at the moment of the read, for the reader and for each data category it returned.
  The caller works out the bases as `Cover`s from the history it keeps (exchange/reports/basis.py: the case's own
  workers, consents with their validity and withdrawal, referrals from receipt to their final status); the rule
  only compares times, readers and categories. A read that returned no subject data (a restricted copy) has nothing
  to judge; one whose event records the reader's own legal basis (a partner's access receipt) is covered by it.
- `repeated_denials`: one actor was refused (`denied`) more than `denials_per_hour` times within one hour.

"Within one hour" means a run of events whose first and last are less than 60 minutes apart; overlapping runs that
cross a threshold are merged into one flag. A flag names the rule, the actor, the window and the event ids — never a
subject or a pseudonym.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from audit.events import Action, Outcome

HOUR = dt.timedelta(hours=1)

# Actions that return a subject's data to a person or an agency system. Lists count only where they name subjects;
# the DPO's own audit:* reads show who accessed what, not the data itself, and are left out.
READ_ACTIONS: frozenset[str] = frozenset(
    {
        Action.EXCHANGE_CASE_READ,
        Action.EXCHANGE_CASE_LIST,
        Action.EXCHANGE_CONSENT_LIST,
        Action.EXCHANGE_DOCUMENT_READ,
        Action.EXCHANGE_REFERRAL_READ,
        Action.EXCHANGE_REFERRAL_LIST,
        Action.EXCHANGE_MESSAGE_LIST,
    }
)
# The reads the no-active-basis rule checks (the brief's rule: opening a case or a referral).
BASIS_CHECKED_ACTIONS: frozenset[str] = frozenset({Action.EXCHANGE_CASE_READ, Action.EXCHANGE_REFERRAL_READ})


class Rule(enum.StrEnum):
    BULK_READS = "bulk_reads"
    OFF_HOURS = "off_hours"
    NO_ACTIVE_BASIS = "no_active_basis"
    REPEATED_DENIALS = "repeated_denials"


@dataclass(frozen=True, slots=True)
class EventSummary:
    """What the rules need of one event: no purpose, and pseudonyms only to count subjects and match their bases.

    `resource_id` is for the caller, which looks up the bases of what was read; the rules never group on it.
    """

    id: uuid.UUID
    time: dt.datetime  # timezone-aware
    action: str
    outcome: str
    actor_id: uuid.UUID | None
    actor_tenant_id: uuid.UUID | None = None
    subjects: frozenset[str] = frozenset()
    resource_id: str | None = None
    actor_role: str | None = None
    # The data categories the read returned, as its event records them; None: whatever the resource holds (a case
    # read, or a read recorded before events named their categories). Empty: no subject data at all.
    categories: frozenset[str] | None = None
    # A legal basis of the reader's own that the event records for this read (the reference, not personal data).
    reader_basis: str | None = None

    @property
    def reads_subject_data(self) -> bool:
        return (
            self.action in READ_ACTIONS
            and self.outcome == Outcome.SUCCESS
            and bool(self.subjects)
            and self.categories != frozenset()
        )


@dataclass(frozen=True, slots=True)
class Cover:
    """One basis for reading one subject's data: whose reads it covers, which categories, and over [start, end).

    `tenant_id` is the readers' agency; `actors` and `roles` narrow it further (None: anyone there). `categories`
    None covers every category; `start` and `end` None are open (in force from the first, still in force).
    """

    subject: str
    tenant_id: uuid.UUID
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    actors: frozenset[uuid.UUID] | None = None
    roles: frozenset[str] | None = None
    categories: frozenset[str] | None = None

    def covers_reader(self, event: EventSummary) -> bool:
        """Whether this basis was in force for this reader at the moment of the event."""
        return (
            event.actor_tenant_id == self.tenant_id
            and (self.actors is None or event.actor_id in self.actors)
            and (self.roles is None or event.actor_role in self.roles)
            and (self.start is None or self.start <= event.time)
            and (self.end is None or event.time < self.end)
        )


@dataclass(frozen=True, slots=True)
class OffHours:
    """Local hours [start, end): start > end wraps past midnight ("20-08"); start == end is no window at all."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start <= 23 and 0 <= self.end <= 23):
            raise ValueError("off-hours are whole hours from 0 to 23")

    @classmethod
    def parse(cls, text: str) -> OffHours:
        """`"20-08"`: from 20:00 to 08:00 local time."""
        start, sep, end = text.strip().partition("-")
        if not sep or not start.strip().isdigit() or not end.strip().isdigit():
            raise ValueError(f"off-hours must look like '20-08' (from hour - to hour), got {text!r}")
        return cls(int(start), int(end))

    def contains(self, hour: int) -> bool:
        if self.start <= self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end

    def night_of(self, local: dt.datetime) -> dt.date:
        """The local date on which the window containing `local` opened (so 02:00 belongs to the evening before)."""
        if self.start > self.end and local.hour < self.end:
            return local.date() - dt.timedelta(days=1)
        return local.date()


@dataclass(frozen=True, slots=True)
class Thresholds:
    bulk_subjects_per_hour: int
    denials_per_hour: int
    off_hours: OffHours
    timezone: dt.tzinfo


@dataclass(frozen=True, slots=True)
class Flag:
    rule: Rule
    actor_id: uuid.UUID
    actor_tenant_id: uuid.UUID | None
    window_start: dt.datetime
    window_end: dt.datetime
    count: int  # distinct subjects (bulk_reads) or events (the other rules)
    event_ids: tuple[uuid.UUID, ...]


def detect(events: Iterable[EventSummary], thresholds: Thresholds, covers: Iterable[Cover]) -> list[Flag]:
    """Every rule over `events`; `covers` are the bases in force over time for the subjects the events read."""
    events = sorted(events, key=lambda e: (e.time, e.id))
    flags = [
        *bulk_reads(events, thresholds.bulk_subjects_per_hour),
        *off_hours(events, thresholds.off_hours, thresholds.timezone),
        *no_active_basis(events, covers),
        *repeated_denials(events, thresholds.denials_per_hour),
    ]
    return sorted(flags, key=lambda f: (f.window_start, f.rule, str(f.actor_id)))


def bulk_reads(events: Iterable[EventSummary], limit: int) -> list[Flag]:
    flags = []
    for actor, own in _by_actor(e for e in events if e.reads_subject_data).items():
        for run, peak in _runs_over(own, lambda e: e.subjects, limit):
            flags.append(_flag(Rule.BULK_READS, actor, run, peak))
    return flags


def repeated_denials(events: Iterable[EventSummary], limit: int) -> list[Flag]:
    flags = []
    for actor, own in _by_actor(e for e in events if e.outcome == Outcome.DENIED).items():
        for run, peak in _runs_over(own, lambda e: (e.id,), limit):
            flags.append(_flag(Rule.REPEATED_DENIALS, actor, run, peak))
    return flags


def off_hours(events: Iterable[EventSummary], window: OffHours, timezone: dt.tzinfo) -> list[Flag]:
    """One flag per actor and night, listing that night's reads of subject data."""
    nights: dict[tuple[uuid.UUID, dt.date], list[EventSummary]] = defaultdict(list)
    for event in events:
        if event.actor_id is None or not event.reads_subject_data:
            continue
        local = event.time.astimezone(timezone)
        if window.contains(local.hour):
            nights[event.actor_id, window.night_of(local)].append(event)
    return [_flag(Rule.OFF_HOURS, actor, run, len(run)) for (actor, _), run in nights.items()]


def no_active_basis(events: Iterable[EventSummary], covers: Iterable[Cover]) -> list[Flag]:
    """One flag per actor, listing its case and referral reads that returned data no basis covered at the time."""
    by_subject: dict[str, list[Cover]] = defaultdict(list)
    for cover in covers:
        by_subject[cover.subject].append(cover)
    unjudged = (e for e in events if e.action in BASIS_CHECKED_ACTIONS and e.reads_subject_data)
    uncovered = (e for e in unjudged if lacks_basis(e, by_subject))
    return [_flag(Rule.NO_ACTIVE_BASIS, actor, run, len(run)) for actor, run in _by_actor(uncovered).items()]


def lacks_basis(event: EventSummary, covers: Mapping[str, Sequence[Cover]]) -> bool:
    """Whether some subject the read returned had, at the moment of the read, no basis for this reader for one of
    the categories returned. Several bases may share the categories between them (a statute for some, a consent for
    the rest); a read of every category (`categories` None) needs one basis that covers every category."""
    if event.reader_basis or event.categories == frozenset():
        return False
    for subject in event.subjects:
        needed = None if event.categories is None else set(event.categories)
        for cover in covers.get(subject, ()):
            if not cover.covers_reader(event):
                continue
            if cover.categories is None:
                needed = set()
            elif needed is not None:
                needed -= cover.categories
            if needed == set():
                break
        else:
            return True
    return False


def _by_actor(events: Iterable[EventSummary]) -> dict[uuid.UUID, list[EventSummary]]:
    """Events grouped by actor, in time order; events of no known actor (the system's own) are not attributed."""
    grouped: dict[uuid.UUID, list[EventSummary]] = defaultdict(list)
    for event in sorted(events, key=lambda e: (e.time, e.id)):
        if event.actor_id is not None:
            grouped[event.actor_id].append(event)
    return grouped


def _runs_over(
    events: Sequence[EventSummary], keys: Callable[[EventSummary], Iterable[Hashable]], limit: int
) -> list[tuple[list[EventSummary], int]]:
    """Maximal runs of time-ordered events in which some window of under an hour holds more than `limit` distinct keys.

    Returns each run with the most distinct keys any single window in it held. A sliding window keeps this linear.
    """
    counts: dict[Hashable, int] = {}
    start = 0
    runs: list[tuple[int, int, int]] = []  # first index, last index, peak
    for end, event in enumerate(events):
        for key in keys(event):
            counts[key] = counts.get(key, 0) + 1
        while event.time - events[start].time >= HOUR:
            for key in keys(events[start]):
                counts[key] -= 1
                if not counts[key]:
                    del counts[key]
            start += 1
        if len(counts) > limit:
            if runs and start <= runs[-1][1]:
                first, _, peak = runs[-1]
                runs[-1] = (first, end, max(peak, len(counts)))
            else:
                runs.append((start, end, len(counts)))
    return [(list(events[first : last + 1]), peak) for first, last, peak in runs]


def _flag(rule: Rule, actor: uuid.UUID, run: Sequence[EventSummary], count: int) -> Flag:
    return Flag(
        rule=rule,
        actor_id=actor,
        actor_tenant_id=run[0].actor_tenant_id,
        window_start=run[0].time,
        window_end=run[-1].time,
        count=count,
        event_ids=tuple(e.id for e in run),
    )
