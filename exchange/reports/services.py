"""Reports for an agency's own referrals over a period: counts by kind, partner and outcome, how long answers and
completion took, and what ran late — as JSON, CSV and the figures the SVG charts draw.

A report reads only the caller's own copies (sent: the sender's copies; received: the recipient's copies), in a
transaction scoped to the caller's tenant, and returns aggregates: no case, subject, note or referral id.
Its wire shapes are in `exchange/reports/schemas.py`.

A referral belongs to the period in which it was sent (its `requested` timeline entry), whatever happened later;
the figures about what happened later are as of the moment the report is made.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.context import Context
from exchange.referrals.models import Referral, Side
from exchange.referrals.services import is_overdue
from exchange.referrals.status import TERMINAL, Status
from exchange.reports.schemas import (
    BoxReport,
    BreakdownRow,
    Bucket,
    Count,
    Distribution,
    Overdue,
    PartnerCount,
    ReferralReport,
)
from exchange.reports.statistics import (
    DAY,
    ReferralHistory,
    days_to_complete,
    first_reached,
    history_of,
    history_query,
    hours_to_accept,
    percentile,
)
from tenants.calendar import check_calendar
from tenants.errors import InvalidInput
from tenants.models import Tenant

# A report covers at most a year (a leap year's 366 days): enough for an annual report, and it bounds the work.
MAX_PERIOD_DAYS: Final = 366
Box = Literal["outgoing", "incoming"]
BOXES: Final[tuple[Box, ...]] = ("outgoing", "incoming")
OPEN: Final = "open"

# (lower, upper) bounds of each bar; lower inclusive, upper exclusive, None: no upper bound.
ACCEPT_BUCKETS_HOURS: Final = ((0.0, 4.0), (4.0, 24.0), (24.0, 72.0), (72.0, 168.0), (168.0, None))
COMPLETE_BUCKETS_DAYS: Final = ((0.0, 7.0), (7.0, 14.0), (14.0, 30.0), (30.0, 60.0), (60.0, 90.0), (90.0, None))


# -- the period -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    start: dt.datetime  # inclusive
    end: dt.datetime  # exclusive
    time_zone: str


def parse_period(from_text: str | None, until_text: str | None, time_zone: str = "UTC") -> Period:
    """`from` and `until` as dates (YYYY-MM-DD, whole days in `time_zone`, `until` included) or RFC 3339 times with
    an offset (`until` excluded)."""
    if not from_text or not from_text.strip():
        raise InvalidInput("from: the period needs both 'from' and 'until' (YYYY-MM-DD or RFC 3339 times).")
    if not until_text or not until_text.strip():
        raise InvalidInput("until: the period needs both 'from' and 'until' (YYYY-MM-DD or RFC 3339 times).")
    try:
        zone = zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"tz: unknown time zone {time_zone!r}; use an IANA name such as Europe/Moscow.") from exc
    start = _instant("from", from_text, zone, end_of_day=False)
    end = _instant("until", until_text, zone, end_of_day=True)
    if start >= end:
        raise InvalidInput(f"The period is empty: 'from' ({from_text}) must be earlier than 'until' ({until_text}).")
    if end - start > dt.timedelta(days=MAX_PERIOD_DAYS):
        days = (end - start) / DAY
        raise InvalidInput(f"The period spans {days:.0f} days; a report covers at most {MAX_PERIOD_DAYS} days.")
    return Period(start, end, time_zone)


def _instant(name: str, text: str, zone: zoneinfo.ZoneInfo, *, end_of_day: bool) -> dt.datetime:
    """The instant `text` names, in UTC; InvalidInput naming `name` for anything else (OutOfCalendar for a date or
    time outside tenants/calendar.py's range)."""
    text = text.strip()
    if len(text) == 10:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError as exc:
            raise InvalidInput(f"{name}: {text!r} is not a date (YYYY-MM-DD).") from exc
        check_calendar(name, day)
        if end_of_day:
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(
            f"{name}: {text!r} is neither a date (YYYY-MM-DD) nor a time (RFC 3339, e.g. 2026-01-31T12:00:00Z)."
        ) from exc
    if value.tzinfo is None:
        raise InvalidInput(f"{name}: {text!r} has no time zone offset (add Z or +03:00).")
    check_calendar(name, value)
    return value.astimezone(dt.UTC)


# -- computing --------------------------------------------------------------------------------------------------------


def outcome_of(status: str, result: str | None) -> str:
    """The outcome a report counts: the recorded result of a completed referral, a final status, or still open."""
    if status == Status.COMPLETED:
        return result or Status.COMPLETED
    return status if status in TERMINAL else OPEN


def distribution(values: list[float], bounds: tuple[tuple[float, float | None], ...], unit: str) -> Distribution:
    buckets = [
        Bucket(lower=low, upper=high, count=sum(1 for v in values if v >= low and (high is None or v < high)))
        for low, high in bounds
    ]
    median, p90 = percentile(values, 0.5), percentile(values, 0.9)
    return Distribution(
        unit="hours" if unit == "hours" else "days",
        count=len(values),
        median=None if median is None else round(median, 2),
        p90=None if p90 is None else round(p90, 2),
        buckets=buckets,
    )


@dataclass(frozen=True, slots=True)
class _Row:
    referral: Referral
    history: ReferralHistory


def box_report(rows: list[_Row], partner_names: dict[uuid.UUID, str], *, side: Side, now: dt.datetime) -> BoxReport:
    def partner(row: _Row) -> uuid.UUID:
        return row.referral.to_tenant_id if side is Side.SENDER else row.referral.from_tenant_id

    def outcome(row: _Row) -> str:
        return outcome_of(row.referral.status, row.referral.outcome_result)

    breakdown = Counter((r.referral.kind, partner(r), outcome(r)) for r in rows)
    partners: dict[uuid.UUID, Counter[str]] = {}
    for row in rows:
        partners.setdefault(partner(row), Counter())[outcome(row)] += 1
    to_accept = [hours_to_accept(r.history) for r in rows if r.history.accepted_at is not None]
    to_complete = [days_to_complete(r.history) for r in rows if r.history.completed_at is not None]
    answered_late = 0
    for row in rows:
        answers = [t for t in (row.history.accepted_at, row.history.rejected_at) if t is not None]
        if answers and min(answers) > row.referral.respond_by:
            answered_late += 1
    return BoxReport(
        total=len(rows),
        by_kind=_counts(Counter(r.referral.kind for r in rows)),
        by_status=_counts(Counter(r.referral.status for r in rows)),
        by_outcome=_counts(Counter(outcome(r) for r in rows)),
        by_partner=sorted(
            (
                PartnerCount(tenant_id=p, name=partner_names.get(p, ""), count=sum(c.values()), by_outcome=dict(c))
                for p, c in partners.items()
            ),
            key=lambda p: (-p.count, p.name, str(p.tenant_id)),
        ),
        breakdown=sorted(
            (
                BreakdownRow(kind=k, partner_id=p, partner_name=partner_names.get(p, ""), outcome=o, count=n)
                for (k, p, o), n in breakdown.items()
            ),
            key=lambda b: (b.kind, b.partner_name, str(b.partner_id), b.outcome),
        ),
        time_to_accept=distribution(to_accept, ACCEPT_BUCKETS_HOURS, "hours"),
        time_to_complete=distribution(to_complete, COMPLETE_BUCKETS_DAYS, "days"),
        overdue=Overdue(
            now=sum(1 for r in rows if is_overdue(r.referral, now)),
            answered_late=answered_late,
            completed_late=sum(1 for r in rows if r.history.completed_at is not None and not r.history.on_time),
        ),
    )


def _counts(counter: Counter[str]) -> list[Count]:
    return [Count(key=k, count=n) for k, n in sorted(counter.items(), key=lambda i: (-i[1], i[0]))]


async def referral_report(ctx: Context, *, period: Period, boxes: tuple[Box, ...] = BOXES) -> ReferralReport:
    """The report on the caller's own referrals sent and/or received in `period`."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(
        resource_type="report",
        report="referrals",
        boxes=list(boxes),
        period_from=period.start.isoformat(),
        period_until=period.end.isoformat(),
    )
    now = deps.clock.now()
    report = ReferralReport(
        tenant_id=principal.tenant_id,
        period_from=period.start,
        period_until=period.end,
        time_zone=period.time_zone,
        generated_at=now,
    )
    for box in boxes:
        side = Side.SENDER if box == "outgoing" else Side.RECIPIENT
        query = history_query(Referral).where(Referral.tenant_id == principal.tenant_id, Referral.side == side.value)
        query = query.having(_requested_between(period))
        rows = [_Row(row[0], history_of(row, row[0].complete_by)) for row in await session.execute(query)]
        partner_ids = {r.referral.to_tenant_id if side is Side.SENDER else r.referral.from_tenant_id for r in rows}
        names = await _tenant_names(session, partner_ids)
        setattr(report, box, box_report(rows, names, side=side, now=now))
    return report


async def _tenant_names(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Partners' names from the directory (the tenant table is public within the platform)."""
    if not ids:
        return {}
    rows = await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(ids)))
    return {tenant_id: name for tenant_id, name in rows}


def _requested_between(period: Period) -> Any:
    requested = first_reached(Status.REQUESTED)
    return (requested >= period.start) & (requested < period.end)


# -- CSV --------------------------------------------------------------------------------------------------------------

CSV_COLUMNS: Final = ("box", "measure", "kind", "partner_id", "partner_name", "outcome", "bucket", "value")


def report_csv(report: ReferralReport) -> bytes:
    """The report in long form, one figure per line (RFC 4180), ready for a spreadsheet's pivot table.

    Every text cell is defused: `kind` and `outcome` come from partners' envelopes and `partner_name` from their
    profiles, so none of them may reach a spreadsheet as a formula.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")

    def write(*cells: Any) -> None:
        writer.writerow(_row(cells))

    write(*CSV_COLUMNS)
    for box in BOXES:
        section: BoxReport | None = getattr(report, box)
        if section is None:
            continue
        write(box, "total", "", "", "", "", "", section.total)
        for row in section.breakdown:
            write(box, "referrals", row.kind, row.partner_id, row.partner_name, row.outcome, "", row.count)
        for name, dist in (("hours_to_accept", section.time_to_accept), ("days_to_complete", section.time_to_complete)):
            for bucket in dist.buckets:
                write(box, name, "", "", "", "", bucket_label(bucket), bucket.count)
            write(box, f"{name}_count", "", "", "", "", "", dist.count)
            write(box, f"{name}_median", "", "", "", "", "", _number(dist.median))
            write(box, f"{name}_p90", "", "", "", "", "", _number(dist.p90))
        for name in ("now", "answered_late", "completed_late"):
            write(box, f"overdue_{name}", "", "", "", "", "", getattr(section.overdue, name))
    return out.getvalue().encode("utf-8")


def _row(cells: tuple[Any, ...]) -> list[Any]:
    """A CSV line: numbers as they are, every other cell as defused text."""
    return [c if isinstance(c, int | float) and not isinstance(c, bool) else _defused(str(c)) for c in cells]


def bucket_label(bucket: Bucket) -> str:
    low = f"{bucket.lower:g}"
    return f"{low}+" if bucket.upper is None else f"{low}-{bucket.upper:g}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _defused(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets (OWASP "CSV injection"): make it plain text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
