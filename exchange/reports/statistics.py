"""How partners really handle referrals: the directory's figures, computed from referral timelines, never typed in.

Whose timeline is the truth. The figures about a recipient come from the **senders' copies**, read across all
tenants (platform scope), one copy per referral:

- they describe what the agencies that referred families to a partner actually experienced: the request time is the
  sender's own, and a partner's answer counts once it has reached the sender;
- a partner cannot improve its own figures by anything it stores on its side (its copy is not read at all);
- each referral has exactly one sender copy, so nothing is counted twice.

What leaves this module is aggregates only: medians, 90th percentiles, rates and counts per partner and per
service. No referral id, case reference, sender, subject, note or single timestamp is returned; the only columns
read are the receiving tenant, the service code, the deadline and the timeline's statuses and times, none of
which is case content or personal data.

Small cells are suppressed (`MIN_CELL`): a figure resting on fewer than five referrals is null and a count below five
is null, so that no figure is one referral's own time and a partner's listing does not tick from 0 to 1 to 2 when
some agency refers a family to it (which, for a clinic or a rehabilitation service, would itself be sensitive).

Definitions (docs/exchange.md, "The partner directory"):

- history: the sender copies addressed to the partner whose `requested` entry lies in the window (default 365 days);
- time to accept: `requested` → first `accepted`, in hours; time to complete: `requested` → first `completed`, in
  days; both as median and 90th percentile, linearly interpolated (PostgreSQL's `percentile_cont`);
- acceptance rate: accepted / (accepted + rejected) — referrals cancelled or still unanswered are not counted;
- on-time rate: completed no later than `complete_by` / accepted referrals whose completion was due: completed,
  failed, cancelled after `complete_by`, or still in hand with `complete_by` passed. A referral cancelled in time
  by its sender, or still in hand before its deadline, is not (yet) due.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.referrals.models import Referral, Side, TimelineEntry
from exchange.referrals.status import Status
from tenants.directory import DirectoryQuery, directory_entry, search_directory
from tenants.models import Tenant
from tenants.schemas import DirectoryEntry, DirectoryStats

DEFAULT_WINDOW: Final = dt.timedelta(days=365)
HOUR: Final = dt.timedelta(hours=1)
DAY: Final = dt.timedelta(days=1)
# Minimum cell size. Every agency can read the directory, so a figure over one or two referrals would tell it when
# another agency referred a family to a (possibly sensitive) service and how that one referral went. Any figure
# resting on fewer than MIN_CELL referrals is null, and so is any count below MIN_CELL (zero included, or the step
# from 0 to "suppressed" would give the first referral away). Five is the usual threshold for published statistics.
MIN_CELL: Final = 5


@dataclass(frozen=True, slots=True)
class ReferralHistory:
    """One referral as the figures see it: when each milestone was first reached, and its deadline."""

    requested_at: dt.datetime
    complete_by: dt.datetime
    accepted_at: dt.datetime | None = None
    rejected_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    failed_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None

    @property
    def answered(self) -> bool:
        return self.accepted_at is not None or self.rejected_at is not None

    def completion_due(self, now: dt.datetime) -> bool:
        if self.accepted_at is None:
            return False
        if self.completed_at is not None or self.failed_at is not None:
            return True
        if self.cancelled_at is not None:
            return self.cancelled_at > self.complete_by
        return now > self.complete_by

    @property
    def on_time(self) -> bool:
        # Completing at the very deadline meets it, as `is_overdue` counts a referral late only after it.
        return self.completed_at is not None and self.completed_at <= self.complete_by


@dataclass(slots=True)
class PartnerFigures:
    overall: DirectoryStats
    by_service: dict[str, DirectoryStats] = field(default_factory=dict)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile of `values`, linearly interpolated between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def hours_to_accept(history: ReferralHistory) -> float:
    assert history.accepted_at is not None
    # A partner's clock running behind the sender's must not produce a negative duration.
    return max(0.0, (history.accepted_at - history.requested_at) / HOUR)


def days_to_complete(history: ReferralHistory) -> float:
    assert history.completed_at is not None
    return max(0.0, (history.completed_at - history.requested_at) / DAY)


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def figures(
    history: Iterable[ReferralHistory], *, now: dt.datetime, window: dt.timedelta, min_cell: int = MIN_CELL
) -> DirectoryStats:
    """The directory's figures over one partner's (or one service's) history.

    A figure resting on fewer than `min_cell` referrals, and a count below `min_cell`, are None (see `MIN_CELL`);
    `min_cell=0` gives every figure there is something to compute from.
    """
    items = list(history)
    to_accept = [hours_to_accept(h) for h in items if h.accepted_at is not None]
    to_complete = [days_to_complete(h) for h in items if h.completed_at is not None]
    answered = sum(1 for h in items if h.answered)
    due = [h for h in items if h.completion_due(now)]

    def enough(count: int) -> bool:
        return count >= max(min_cell, 1)

    def shown(count: int) -> int | None:
        return count if count >= min_cell else None

    def rate(part: int, whole: int) -> float | None:
        return _rounded(part / whole, 4) if enough(whole) else None

    def cut(values: list[float], fraction: float) -> float | None:
        return _rounded(percentile(values, fraction)) if enough(len(values)) else None

    return DirectoryStats(
        median_hours_to_accept=cut(to_accept, 0.5),
        median_days_to_complete=cut(to_complete, 0.5),
        p90_hours_to_accept=cut(to_accept, 0.9),
        p90_days_to_complete=cut(to_complete, 0.9),
        acceptance_rate=rate(len(to_accept), answered),
        on_time_rate=rate(sum(1 for h in due if h.on_time), len(due)),
        referral_count=shown(len(items)),
        answered_count=shown(answered),
        accepted_count=shown(len(to_accept)),
        completed_count=shown(len(to_complete)),
        due_count=shown(len(due)),
        window_days=window.days,
        min_cell=min_cell,
    )


def first_reached(status: str) -> Any:
    """The first time a referral copy reached `status` (an aggregate over its timeline; NULL if never)."""
    return func.min(case((TimelineEntry.status == status, TimelineEntry.at), else_=None))


MILESTONES: Final = (
    Status.REQUESTED,
    Status.ACCEPTED,
    Status.REJECTED,
    Status.COMPLETED,
    Status.FAILED,
    Status.CANCELLED,
)


def history_query(*columns: Any) -> Any:
    """Per referral copy: the given columns and the first time each milestone was reached (labelled by status)."""
    return (
        select(*columns, *(first_reached(m).label(m) for m in MILESTONES))
        .join(TimelineEntry, TimelineEntry.referral_id == Referral.id)
        .where(TimelineEntry.tenant_id == Referral.tenant_id, TimelineEntry.status.in_(MILESTONES))
        # Grouping by the primary key lets PostgreSQL accept the copy's other columns (functional dependency).
        .group_by(Referral.id)
        .having(first_reached(Status.REQUESTED).is_not(None))
    )


def history_of(row: Any, complete_by: dt.datetime) -> ReferralHistory:
    mapping = row._mapping
    return ReferralHistory(
        requested_at=mapping[Status.REQUESTED],
        complete_by=complete_by,
        accepted_at=mapping[Status.ACCEPTED],
        rejected_at=mapping[Status.REJECTED],
        completed_at=mapping[Status.COMPLETED],
        failed_at=mapping[Status.FAILED],
        cancelled_at=mapping[Status.CANCELLED],
    )


async def partner_figures(
    session: AsyncSession,
    *,
    partners: Sequence[uuid.UUID],
    now: dt.datetime,
    window: dt.timedelta = DEFAULT_WINDOW,
    min_cell: int = MIN_CELL,
) -> dict[uuid.UUID, PartnerFigures]:
    """Figures for each partner and each of its service codes; `session` must have the platform scope.

    Every partner asked for gets an entry; one with fewer than `min_cell` referrals gets nulls only.
    """
    if not partners:
        return {}
    since = now - window
    query = (
        history_query(Referral.id, Referral.to_tenant_id, Referral.service_code, Referral.complete_by)
        .where(Referral.side == Side.SENDER.value, Referral.to_tenant_id.in_(list(partners)))
        .having(first_reached(Status.REQUESTED) >= since, first_reached(Status.REQUESTED) <= now)
    )
    overall: dict[uuid.UUID, list[ReferralHistory]] = defaultdict(list)
    by_service: dict[tuple[uuid.UUID, str], list[ReferralHistory]] = defaultdict(list)
    for row in await session.execute(query):
        history = history_of(row, row.complete_by)
        overall[row.to_tenant_id].append(history)
        if row.service_code:
            by_service[(row.to_tenant_id, row.service_code)].append(history)
    result = {
        p: PartnerFigures(figures(overall.get(p, []), now=now, window=window, min_cell=min_cell)) for p in partners
    }
    for (partner, code), items in by_service.items():
        result[partner].by_service[code] = figures(items, now=now, window=window, min_cell=min_cell)
    return result


async def directory_with_figures(
    session: AsyncSession,
    query: DirectoryQuery,
    *,
    now: dt.datetime,
    jwks_url: Callable[[uuid.UUID], str],
    window: dt.timedelta = DEFAULT_WINDOW,
) -> list[DirectoryEntry]:
    """The directory search, each agency and each of its services with its figures; a platform-scoped session."""
    tenants = await search_directory(session, query)
    computed = await partner_figures(session, partners=[t.id for t in tenants], now=now, window=window)
    return [
        directory_entry(
            tenant,
            jwks_url=jwks_url(tenant.id),
            stats=computed[tenant.id].overall,
            service_stats=computed[tenant.id].by_service,
        )
        for tenant in tenants
    ]


async def entry_with_figures(
    session: AsyncSession, tenant: Tenant, *, now: dt.datetime, jwks_url: str, window: dt.timedelta = DEFAULT_WINDOW
) -> DirectoryEntry:
    """One agency's directory entry with its figures; a platform-scoped session."""
    computed = (await partner_figures(session, partners=[tenant.id], now=now, window=window))[tenant.id]
    return directory_entry(tenant, jwks_url=jwks_url, stats=computed.overall, service_stats=computed.by_service)
