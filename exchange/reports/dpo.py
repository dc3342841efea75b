"""What a data-protection officer asks of the audit trail: search, subject access reports, review queue, anomalies.

Every query reads only the caller's own trail (`log_tenant_id` = the caller's tenant): its own staff and systems,
and the partners' reads of data it shared, which access receipts record there. On PostgreSQL row-level security
enforces the same. Pages run newest first by (recorded_at, id); a cursor is the last row's pair. The module lives
in the exchange because it reads the exchange's subjects, consents and referrals beside the audit trail.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVarTuple

import msgspec
from sqlalchemy import Row, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from audit import anomalies
from audit.access import access_event
from audit.events import Action, Outcome
from audit.models import AuditEvent, AuditEventSubject, ReviewMark
from audit.schemas import ReportRow, ReviewItem, ReviewOut, SubjectLookupIn, SubjectReport
from exchange.cases.access import access_subject
from exchange.cases.lookup import NoMatch, SeveralPeople, find_person
from exchange.context import Context
from exchange.reports.basis import read_bases
from tenants.calendar import check_calendar
from tenants.errors import Conflict, InvalidInput, NotFound
from tenants.models import Tenant
from tenants.pagination import (
    Page,
    check_limit,
    decode_time_cursor,
    encode_time_cursor,
    newest_first_by_time,
    rows_page,
)

Ts = TypeVarTuple("Ts")

MAX_PAGE = 500
# A subject access report is cut into pages of at most this many rows, each with a cursor to the next.
MAX_REPORT_PAGE = 10_000
# The anomaly rules load the events of one window into memory: bound the window and what it may hold.
MAX_ANOMALY_SPAN = dt.timedelta(days=31)
DEFAULT_ANOMALY_SPAN = dt.timedelta(days=1)
MAX_ANOMALY_ROWS = 500_000

# Review queue: shares made or received under a statute, a recipient's own statutory basis, break-glass uses.
STATUTORY_SHARE, RECIPIENT_BASIS, BREAK_GLASS = "statutory_share", "recipient_basis", "break_glass"
_SHARE_ACTIONS = (Action.EXCHANGE_REFERRAL_SEND.value, Action.EXCHANGE_REFERRAL_RECEIVE.value)
# Canonical JSON (RFC 8785) has no insignificant whitespace, so these fragments match the members exactly; the
# parsed event is checked again before it is listed.
_STATUTORY_FRAGMENT = '"legal_basis":"statutory"'
_BREAK_GLASS_FRAGMENT = '"break_glass":'


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Search criteria; all optional. `since` is inclusive, `until` exclusive; both must carry a UTC offset."""

    actor_id: uuid.UUID | None = None
    subject_id: uuid.UUID | None = None  # the caller's own subject id, searched as its pseudonym
    resource_id: str | None = None
    action: Action | None = None
    outcome: Outcome | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


# -- search -----------------------------------------------------------------------------------------------------------


async def search_events(
    ctx: Context, *, criteria: EventFilter, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    check_limit(limit, MAX_PAGE)
    _check_window(criteria.since, criteria.until)
    query = select(AuditEvent.id, AuditEvent.recorded_at, AuditEvent.canonical).where(
        AuditEvent.log_tenant_id == principal.tenant_id
    )
    pseudonym = None
    if criteria.subject_id is not None:
        (pseudonym,) = deps.audit.pseudonyms(principal.tenant_id, [criteria.subject_id])
        query = query.join(AuditEventSubject, AuditEventSubject.event_id == AuditEvent.id).where(
            AuditEventSubject.pseudonym == pseudonym
        )
    if criteria.actor_id is not None:
        query = query.where(AuditEvent.actor_id == criteria.actor_id)
    if criteria.resource_id is not None:
        query = query.where(AuditEvent.resource_id == criteria.resource_id)
    if criteria.action is not None:
        query = query.where(AuditEvent.action == criteria.action.value)
    if criteria.outcome is not None:
        query = query.where(AuditEvent.outcome == criteria.outcome.value)
    if criteria.since is not None:
        query = query.where(AuditEvent.recorded_at >= criteria.since)
    if criteria.until is not None:
        query = query.where(AuditEvent.recorded_at < criteria.until)
    page = await rows_page(session, _newest_first(query, cursor), limit)
    # The filters go into the trail; a subject only as its pseudonym, so the search shows in that person's report.
    audit.touched(
        resource_type="audit_event",
        subjects=[pseudonym] if pseudonym else [],
        filters={k: v for k, v in _filter_record(criteria).items() if v is not None},
        returned=len(page.rows),
    )
    return [json.loads(r.canonical) for r in page.rows], _next_cursor(page)


def _filter_record(criteria: EventFilter) -> dict[str, str | None]:
    return {
        "actor": str(criteria.actor_id) if criteria.actor_id else None,
        "resource_id": criteria.resource_id,
        "action": criteria.action.value if criteria.action else None,
        "outcome": criteria.outcome.value if criteria.outcome else None,
        "since": criteria.since.isoformat() if criteria.since else None,
        "until": criteria.until.isoformat() if criteria.until else None,
    }


# -- subject access report --------------------------------------------------------------------------------------------


async def subject_report(
    ctx: Context, *, subject_id: uuid.UUID, report_format: str, cursor: str | None, limit: int
) -> SubjectReport:
    """Every access to one of the caller's subjects recorded in its trail, newest first, one page at a time.

    Index-driven: the pseudonym index gives the event ids, the primary key the events, so the cost follows the
    subject's own events, not the size of the log.
    """
    check_limit(limit, MAX_REPORT_PAGE)
    ctx.audit.touched(resource_type="subject", format=str(report_format))
    await access_subject(ctx.session, ctx.principal, subject_id, for_write=False)
    return await _report(ctx, (subject_id,), cursor=cursor, limit=limit)


async def lookup_report(ctx: Context, *, person: SubjectLookupIn) -> SubjectReport:
    """The report of the caller's own person with exactly these details (exchange/cases/lookup.py), every record of
    theirs together; a lookup that finds no one, or cannot tell two people apart, says so and names no one."""
    limit = MAX_REPORT_PAGE if person.limit is None else person.limit
    check_limit(limit, MAX_REPORT_PAGE)
    # What was asked stays out of the trail: only whether a SNILS was given, and what came of it.
    ctx.audit.touched(resource_type="subject", format=person.format, snils_given=person.snils is not None)
    match = await find_person(
        ctx.session,
        ctx.deps.persons,
        ctx.principal,
        full_name=person.full_name,
        birth_date=person.birth_date,
        snils=person.snils,
    )
    ctx.audit.touched(match=match.result)
    if isinstance(match, NoMatch):
        raise NotFound(
            "No person with this full name and birth date (and SNILS, when given) is in this organisation's cases. "
            "Check the spelling and the date."
        )
    if isinstance(match, SeveralPeople):
        raise Conflict("More than one person has this full name and birth date: add the person's SNILS.")
    return await _report(ctx, match.subject_ids, cursor=person.cursor, limit=limit)


async def _report(ctx: Context, subject_ids: tuple[uuid.UUID, ...], *, cursor: str | None, limit: int) -> SubjectReport:
    """One page of the report over the records `subject_ids` (already reached by an access check), newest first."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    pseudonyms = [deps.audit.pseudonyms(principal.tenant_id, [s])[0] for s in subject_ids]
    audit.touched(subjects=sorted(pseudonyms))
    query = select(AuditEvent.id, AuditEvent.recorded_at, AuditEvent.canonical).where(
        AuditEvent.log_tenant_id == principal.tenant_id
    )
    if len(pseudonyms) == 1:
        query = query.join(AuditEventSubject, AuditEventSubject.event_id == AuditEvent.id).where(
            AuditEventSubject.pseudonym == pseudonyms[0]
        )
    else:  # an event touching two records of the person is listed once
        touching = select(AuditEventSubject.event_id).where(AuditEventSubject.pseudonym.in_(pseudonyms))
        query = query.where(AuditEvent.id.in_(touching))
    page = await rows_page(session, _newest_first(query, cursor), limit)
    events = [json.loads(r.canonical) for r in page.rows]
    names = await _tenant_names(session, {e["actor"]["tenant"] for e in events if e["actor"]["tenant"]})
    audit.touched(returned=len(events))
    return SubjectReport(
        subject_id=subject_ids[0],
        pseudonym=pseudonyms[0],
        generated_at=deps.clock.now(),
        items=[_report_row(e, names) for e in events],
        next_cursor=_next_cursor(page),
        subject_ids=list(subject_ids),
        pseudonyms=pseudonyms,
    )


def _report_row(event: Mapping[str, Any], tenant_names: Mapping[str, str]) -> ReportRow:
    actor, resource = event["actor"], event["resource"]
    return ReportRow(
        event_id=uuid.UUID(event["id"]),
        time=dt.datetime.fromisoformat(event["time"]),
        actor_tenant_id=uuid.UUID(actor["tenant"]) if actor["tenant"] else None,
        actor_tenant_name=tenant_names.get(actor["tenant"]) if actor["tenant"] else None,
        actor_kind=actor["kind"],
        actor_id=uuid.UUID(actor["id"]) if actor["id"] else None,
        role=actor["role"],
        action=event["action"],
        outcome=event["outcome"],
        purpose=event["purpose"],
        legal_basis=event["legal_basis"],
        resource_type=resource["type"],
        resource_id=resource["id"],
    )


async def _tenant_names(session: AsyncSession, tenant_ids: set[str]) -> dict[str, str]:
    if not tenant_ids:
        return {}
    rows = await session.execute(
        select(Tenant.id, Tenant.name).where(Tenant.id.in_([uuid.UUID(t) for t in tenant_ids]))
    )
    return {str(r.id): r.name for r in rows}


# -- review queue -----------------------------------------------------------------------------------------------------


def review_reasons(event: Mapping[str, Any]) -> list[str]:
    """Why a DPO must look at this event; empty when it needs no review."""
    if event.get("outcome") != Outcome.SUCCESS:
        return []
    reasons = []
    if event.get("action") in _SHARE_ACTIONS and event.get("legal_basis") == "statutory":
        reasons.append(STATUTORY_SHARE)
    if event.get("action") == Action.EXCHANGE_REFERRAL_BASIS:
        reasons.append(RECIPIENT_BASIS)
    if (event.get("extra") or {}).get("break_glass"):
        reasons.append(BREAK_GLASS)
    return reasons


async def review_queue(ctx: Context, *, cursor: str | None, limit: int) -> tuple[list[ReviewItem], str | None]:
    """Events in the caller's trail that need a DPO's review and have none yet, newest first."""
    session, principal, audit = ctx.session, ctx.principal, ctx.audit
    check_limit(limit, MAX_PAGE)
    candidates = or_(
        (AuditEvent.action.in_(_SHARE_ACTIONS) & AuditEvent.canonical.contains(_STATUTORY_FRAGMENT, autoescape=True)),
        AuditEvent.action == Action.EXCHANGE_REFERRAL_BASIS.value,
        AuditEvent.canonical.contains(_BREAK_GLASS_FRAGMENT, autoescape=True),
    )
    query = (
        select(AuditEvent.id, AuditEvent.recorded_at, AuditEvent.canonical)
        .outerjoin(ReviewMark, ReviewMark.event_id == AuditEvent.id)
        .where(
            AuditEvent.log_tenant_id == principal.tenant_id,
            AuditEvent.outcome == Outcome.SUCCESS.value,
            ReviewMark.id.is_(None),
            candidates,
        )
    )
    page = await rows_page(session, _newest_first(query, cursor), limit)
    items = []
    for row in page.rows:
        event = json.loads(row.canonical)
        if reasons := review_reasons(event):
            items.append(ReviewItem(reasons=reasons, event=event))
    audit.touched(resource_type="audit_event", returned=len(items))
    return items, _next_cursor(page)


async def mark_reviewed(ctx: Context, *, event_id: uuid.UUID, note: str | None) -> ReviewOut:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="audit_event", resource_id=event_id)
    event = await access_event(session, principal, event_id, for_write=True)
    if not review_reasons(json.loads(event.canonical)):
        raise Conflict("This event is not in the review queue: only statutory shares and break-glass uses are.")
    if await session.scalar(select(ReviewMark.id).where(ReviewMark.event_id == event_id)) is not None:
        raise Conflict("This event has already been reviewed.")
    mark = ReviewMark(
        log_tenant_id=principal.tenant_id,
        event_id=event_id,
        reviewer_kind=principal.actor_kind.value,
        reviewer_id=principal.actor_id,
        at=deps.clock.now(),
        note=note,
    )
    session.add(mark)
    await session.flush()
    return ReviewOut(
        event_id=event_id, reviewer_kind=mark.reviewer_kind, reviewer_id=mark.reviewer_id, at=mark.at, note=note
    )


# -- anomalies --------------------------------------------------------------------------------------------------------


async def find_anomalies(
    ctx: Context, *, thresholds: anomalies.Thresholds, since: dt.datetime | None, until: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime, list[anomalies.Flag]]:
    """The anomaly rules over the caller's trail in [since, until) (default: the last 24 hours); each read is judged
    against the bases in force when it was made (exchange/reports/basis.py)."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    now = deps.clock.now()
    _check_window(since, until)
    until = until or now
    since = since or until - DEFAULT_ANOMALY_SPAN
    if until - since > MAX_ANOMALY_SPAN:
        raise InvalidInput(f"Look at most {MAX_ANOMALY_SPAN.days} days at a time.")
    audit.touched(resource_type="audit_event", since=since.isoformat(), until=until.isoformat())
    events = await _summaries(session, principal.tenant_id, since, until)
    events, covers = await read_bases(session, deps, principal.tenant_id, events)
    flags = anomalies.detect(events, thresholds, covers)
    audit.touched(flags=len(flags))
    return since, until, flags


class _SealedActor(msgspec.Struct):
    role: str | None = None


class _SealedRead(msgspec.Struct):
    """What the basis rule reads of a sealed read event beyond its columns: the reader's role, and `extra`."""

    actor: _SealedActor
    extra: dict[str, Any] = {}


async def _summaries(
    session: AsyncSession, tenant_id: uuid.UUID, since: dt.datetime, until: dt.datetime
) -> list[anomalies.EventSummary]:
    in_window = (
        AuditEvent.log_tenant_id == tenant_id,
        AuditEvent.recorded_at >= since,
        AuditEvent.recorded_at < until,
    )
    query = (
        select(
            AuditEvent.id,
            AuditEvent.recorded_at,
            AuditEvent.action,
            AuditEvent.outcome,
            AuditEvent.actor_id,
            AuditEvent.actor_tenant_id,
            AuditEvent.resource_id,
            AuditEventSubject.pseudonym,
        )
        .outerjoin(AuditEventSubject, AuditEventSubject.event_id == AuditEvent.id)
        .where(
            *in_window,
            or_(AuditEvent.action.in_(anomalies.READ_ACTIONS), AuditEvent.outcome == Outcome.DENIED.value),
        )
        .limit(MAX_ANOMALY_ROWS + 1)
    )
    rows = (await session.execute(query)).all()
    if len(rows) > MAX_ANOMALY_ROWS:
        raise InvalidInput("There are too many events in this window to check at once; choose a shorter one.")
    subjects: dict[uuid.UUID, set[str]] = {}
    first: dict[uuid.UUID, Any] = {}
    for row in rows:
        first.setdefault(row.id, row)
        if row.pseudonym is not None:
            subjects.setdefault(row.id, set()).add(row.pseudonym)
    # The sealed text only of the reads the basis rule judges, once each (not once per subject row).
    sealed = {
        event_id: msgspec.json.decode(canonical, type=_SealedRead)
        for event_id, canonical in await session.execute(
            select(AuditEvent.id, AuditEvent.canonical).where(
                *in_window,
                AuditEvent.action.in_(anomalies.BASIS_CHECKED_ACTIONS),
                AuditEvent.outcome == Outcome.SUCCESS.value,
            )
        )
    }
    return [_summary(r, subjects.get(r.id, set()), sealed.get(r.id)) for r in first.values()]


def _summary(row: Any, subjects: set[str], sealed: _SealedRead | None) -> anomalies.EventSummary:
    categories = sealed.extra.get("categories") if sealed else None
    own_basis = sealed.extra.get("own_basis") if sealed else None
    return anomalies.EventSummary(
        id=row.id,
        time=row.recorded_at,
        action=row.action,
        outcome=row.outcome,
        actor_id=row.actor_id,
        actor_tenant_id=row.actor_tenant_id,
        subjects=frozenset(subjects),
        resource_id=row.resource_id,
        actor_role=sealed.actor.role if sealed else None,
        categories=frozenset(map(str, categories)) if isinstance(categories, list) else None,
        reader_basis=own_basis if isinstance(own_basis, str) and own_basis else None,
    )


# -- pages and cursors ------------------------------------------------------------------------------------------------


def _newest_first(query: Select[*Ts], cursor: str | None) -> Select[*Ts]:
    """`query` newest first by (recorded_at, id), from the event after `cursor` on."""
    after = decode_time_cursor(cursor) if cursor else None
    return newest_first_by_time(query, AuditEvent.recorded_at, AuditEvent.id, after)


def _next_cursor(page: Page[Row[*tuple[Any, ...]]]) -> str | None:
    return encode_time_cursor(page.last.recorded_at, page.last.id) if page.last else None


def _check_window(since: dt.datetime | None, until: dt.datetime | None) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.utcoffset() is None:
            raise InvalidInput(f"'{name}' must be an RFC 3339 time with an offset, e.g. 2026-11-01T00:00:00Z.")
        # Windows and time zones are computed around these times: only the accepted calendar has them all.
        check_calendar(name, value)
    if since is not None and until is not None and since >= until:
        raise InvalidInput("'since' must be earlier than 'until'.")
