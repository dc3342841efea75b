"""The bases each read of a person's data had at the moment it was made, for the no-active-basis anomaly rule.

The rule (audit/anomalies.py) compares reads with `Cover`s; this module builds them from the history the exchange
keeps, for the cases and referrals the window's reads opened (docs/audit.md, "Reads with no active basis"):

- **The agency's own case.** The agency holds its case on a basis of its own (the consent it records is the family's
  consent to *share* with other agencies), so the case's key worker and the one who opened it, and the agency's
  supervisors, read every category of every person of the case, for the case's whole life. Any other reader among
  its staff needs a consent of that person in force at the moment of the read (of any scope).
- **A referral it sent, read by the partner** (reported by an access receipt): while the referral was open (until
  its first final status), for the categories it shared, under the statute it was sent under or under those of the
  person's consents that were in force at the moment and whose scope reaches that partner, category and purpose.
- **A referral it received, read by its own staff**: while open and, if it came under consent, until the sender
  withdrew it (the copy is restricted then), for the categories received; and, from the moment the agency recorded
  a legal basis of its own for it, under that basis, with no end.

Key worker and creator are fixed when the case is opened (exchange/cases/services.py), so today's values are also
the ones in force at any earlier read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from audit.anomalies import BASIS_CHECKED_ACTIONS, Cover, EventSummary
from audit.events import Action, Outcome
from audit.models import AuditEvent, AuditEventSubject
from exchange.cases.models import Case, Consent, Subject
from exchange.cases.policy import Category, ConsentView
from exchange.cases.services import consent_policy_view
from exchange.deps import ExchangeDeps
from exchange.referrals.models import Referral, Side, TimelineEntry
from exchange.referrals.status import TERMINAL
from tenants.models import Role, Tenant

# Readers who hold every case of their own agency: supervision is their relationship to it (docs/security.md).
CASE_WIDE_ROLES = frozenset({Role.SUPERVISOR.value})
_CHUNK = 500
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class OwnCase:
    """One of the agency's cases: its people (id → pseudonym) and the staff who hold it (key worker, creator)."""

    tenant_id: uuid.UUID
    subjects: Mapping[uuid.UUID, str]
    workers: frozenset[uuid.UUID]


@dataclass(frozen=True, slots=True)
class SentReferral:
    """The sender's copy of a referral, as far as its partner's reads are judged."""

    partner_id: uuid.UUID
    partner_kind: str
    purpose: str
    categories: frozenset[str]
    statutory: bool
    subjects: Mapping[uuid.UUID, str]  # the sender's subject ids and their pseudonyms
    closed_at: dt.datetime | None  # the first final status, if any


@dataclass(frozen=True, slots=True)
class ReceivedReferral:
    """The recipient's copy of a referral, as far as its own staff's reads are judged."""

    tenant_id: uuid.UUID
    pseudonyms: frozenset[str]  # under the sender's key, as its `receive` event names them
    categories: frozenset[str]
    closed_at: dt.datetime | None
    consent_withdrawn_at: dt.datetime | None
    own_basis_at: dt.datetime | None  # when the recipient first recorded a legal basis of its own


def own_case_covers(case: OwnCase, consents: Iterable[ConsentView]) -> list[Cover]:
    """The case's own basis for those who hold it, and each person's consents for the rest of the agency's staff."""
    covers = []
    for pseudonym in case.subjects.values():
        covers.append(Cover(pseudonym, case.tenant_id, actors=case.workers))
        covers.append(Cover(pseudonym, case.tenant_id, roles=CASE_WIDE_ROLES))
    for consent in consents:
        period = consent.period_in_force()
        if period is not None and consent.subject_id in case.subjects:
            covers.append(Cover(case.subjects[consent.subject_id], case.tenant_id, start=period[0], end=period[1]))
    return covers


def sent_referral_covers(referral: SentReferral, consents: Iterable[ConsentView]) -> list[Cover]:
    """What let the partner read the data shared with it, and until when."""
    if referral.statutory:
        return [
            Cover(pseudonym, referral.partner_id, end=referral.closed_at, categories=referral.categories)
            for pseudonym in referral.subjects.values()
        ]
    covers = []
    for consent in consents:
        pseudonym = referral.subjects.get(consent.subject_id)
        period = consent.period_in_force()
        if pseudonym is None or period is None:
            continue
        reached = frozenset(
            category
            for category in referral.categories
            if category in set(Category)
            and consent.scope_covers(
                consent.subject_id,
                Category(category),
                recipient_tenant_id=referral.partner_id,
                recipient_kind=referral.partner_kind,
                purpose=referral.purpose,
            )
        )
        end = _first(period[1], referral.closed_at)
        if reached and (end is None or period[0] < end):
            covers.append(Cover(pseudonym, referral.partner_id, start=period[0], end=end, categories=reached))
    return covers


def received_referral_covers(referral: ReceivedReferral) -> list[Cover]:
    """The referral itself while it stood, and the recipient's own legal basis from when it recorded one."""
    end = _first(referral.closed_at, referral.consent_withdrawn_at)
    covers = [
        Cover(pseudonym, referral.tenant_id, end=end, categories=referral.categories)
        for pseudonym in referral.pseudonyms
    ]
    if referral.own_basis_at is not None:
        covers += [
            Cover(pseudonym, referral.tenant_id, start=referral.own_basis_at, categories=referral.categories)
            for pseudonym in referral.pseudonyms
        ]
    return covers


def _first(*times: dt.datetime | None) -> dt.datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


# -- loading ----------------------------------------------------------------------------------------------------------


async def read_bases(
    session: AsyncSession, deps: ExchangeDeps, tenant_id: uuid.UUID, events: Sequence[EventSummary]
) -> tuple[list[EventSummary], list[Cover]]:
    """The covers for the cases and referrals that `events` read in `tenant_id`'s trail, and the events with the
    categories of referral reads recorded before events named them filled in from the referral."""
    checked = [e for e in events if e.action in BASIS_CHECKED_ACTIONS and e.reads_subject_data]
    case_ids = {i for e in checked if e.action == Action.EXCHANGE_CASE_READ if (i := _uuid(e.resource_id))}
    referral_ids = {i for e in checked if e.action == Action.EXCHANGE_REFERRAL_READ if (i := _uuid(e.resource_id))}
    referrals = await _referrals(session, tenant_id, referral_ids)
    sent = [r for r in referrals if r.side == Side.SENDER]
    received = [r for r in referrals if r.side == Side.RECIPIENT]
    case_ids |= {r.case_id for r in sent if r.case_id is not None}
    cases = await _own_cases(session, deps, tenant_id, case_ids)
    consents = await _consents(session, tenant_id, [s for c in cases for s in c.subjects])
    closed = await _closed_at(session, tenant_id, [r.id for r in referrals])

    covers: list[Cover] = []
    for case in cases:
        covers += own_case_covers(case, (c for s in case.subjects for c in consents.get(s, ())))
    kinds = await _tenant_kinds(session, {r.to_tenant_id for r in sent})
    for referral in sent:
        subjects = {uuid.UUID(s): _pseudonym(deps, tenant_id, uuid.UUID(s)) for s in referral.subject_ids}
        copy = SentReferral(
            partner_id=referral.to_tenant_id,
            partner_kind=kinds.get(referral.to_tenant_id, ""),
            purpose=referral.purpose,
            categories=frozenset(referral.categories),
            statutory=referral.legal_basis == "statutory",
            subjects=subjects,
            closed_at=closed.get(referral.id),
        )
        covers += sent_referral_covers(copy, (c for s in subjects for c in consents.get(s, ())))
    exchange_ids = [str(r.exchange_id) for r in received]
    pseudonyms = await _received_pseudonyms(session, tenant_id, exchange_ids)
    own_basis = await _first_event_times(session, tenant_id, Action.EXCHANGE_REFERRAL_BASIS, exchange_ids)
    for referral in received:
        key = str(referral.exchange_id)
        covers += received_referral_covers(
            ReceivedReferral(
                tenant_id=tenant_id,
                pseudonyms=frozenset(pseudonyms.get(key, ())),
                categories=frozenset(referral.categories),
                closed_at=closed.get(referral.id),
                consent_withdrawn_at=referral.consent_withdrawn_at,
                own_basis_at=own_basis.get(key),
            )
        )
    restricted = await _first_event_times(
        session,
        tenant_id,
        Action.EXCHANGE_CONSENT_WITHDRAWAL_APPLY,
        [str(r.exchange_id) for r in received if r.restricted],
    )
    shared = {str(r.exchange_id): (frozenset(r.categories), restricted.get(str(r.exchange_id))) for r in referrals}
    return [with_returned_categories(e, shared) for e in events], covers


def with_returned_categories(
    event: EventSummary, shared: Mapping[str, tuple[frozenset[str], dt.datetime | None]]
) -> EventSummary:
    """A referral read recorded before events named their categories returned what the referral carries, or nothing
    once its copy was restricted (from when the inbox applied the withdrawal, which the trail records)."""
    if event.categories is not None or event.action != Action.EXCHANGE_REFERRAL_READ:
        return event
    if (found := shared.get(event.resource_id or "")) is None:
        return event
    categories, restricted_at = found
    returned = frozenset() if restricted_at is not None and restricted_at <= event.time else categories
    return dataclasses.replace(event, categories=returned)


def _pseudonym(deps: ExchangeDeps, tenant_id: uuid.UUID, subject_id: uuid.UUID) -> str:
    (pseudonym,) = deps.audit.pseudonyms(tenant_id, [subject_id])
    return pseudonym


def _uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


def _chunks(items: Sequence[_T], size: int = _CHUNK) -> list[list[_T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def _referrals(session: AsyncSession, tenant_id: uuid.UUID, exchange_ids: set[uuid.UUID]) -> list[Referral]:
    found: list[Referral] = []
    for chunk in _chunks(sorted(exchange_ids)):
        found += await session.scalars(
            select(Referral).where(Referral.tenant_id == tenant_id, Referral.exchange_id.in_(chunk))
        )
    return found


async def _own_cases(
    session: AsyncSession, deps: ExchangeDeps, tenant_id: uuid.UUID, case_ids: set[uuid.UUID]
) -> list[OwnCase]:
    cases: dict[uuid.UUID, Case] = {}
    people: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for chunk in _chunks(sorted(case_ids)):
        for case in await session.scalars(select(Case).where(Case.tenant_id == tenant_id, Case.id.in_(chunk))):
            cases[case.id] = case
        rows = await session.execute(
            select(Subject.id, Subject.case_id).where(Subject.tenant_id == tenant_id, Subject.case_id.in_(chunk))
        )
        for subject_id, case_id in rows:
            people[case_id].append(subject_id)
    return [
        OwnCase(
            tenant_id=tenant_id,
            subjects={s: _pseudonym(deps, tenant_id, s) for s in people[case.id]},
            workers=frozenset(w for w in (case.key_worker_id, case.created_by_id) if w is not None),
        )
        for case in cases.values()
    ]


async def _consents(
    session: AsyncSession, tenant_id: uuid.UUID, subject_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[ConsentView]]:
    """Every consent ever recorded for these people, withdrawn and expired ones too: the history is the point."""
    found: dict[uuid.UUID, list[ConsentView]] = defaultdict(list)
    for chunk in _chunks(subject_ids):
        for consent in await session.scalars(
            select(Consent).where(Consent.tenant_id == tenant_id, Consent.subject_id.in_(chunk))
        ):
            found[consent.subject_id].append(consent_policy_view(consent))
    return found


async def _closed_at(
    session: AsyncSession, tenant_id: uuid.UUID, referral_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dt.datetime]:
    """When each referral copy first reached a final status, from its own timeline."""
    closed: dict[uuid.UUID, dt.datetime] = {}
    for chunk in _chunks(referral_ids):
        rows = await session.execute(
            select(TimelineEntry.referral_id, func.min(TimelineEntry.at))
            .where(
                TimelineEntry.tenant_id == tenant_id,
                TimelineEntry.referral_id.in_(chunk),
                TimelineEntry.status.in_([s.value for s in TERMINAL]),
            )
            .group_by(TimelineEntry.referral_id)
        )
        closed.update({referral_id: at for referral_id, at in rows})
    return closed


async def _tenant_kinds(session: AsyncSession, tenant_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not tenant_ids:
        return {}
    rows = await session.execute(select(Tenant.id, Tenant.kind).where(Tenant.id.in_(sorted(tenant_ids))))
    return {tenant_id: kind for tenant_id, kind in rows}


async def _received_pseudonyms(
    session: AsyncSession, tenant_id: uuid.UUID, exchange_ids: list[str]
) -> dict[str, set[str]]:
    """The people of each received referral, as the recipient's `receive` event named them."""
    found: dict[str, set[str]] = defaultdict(set)
    for chunk in _chunks(exchange_ids):
        rows = await session.execute(
            select(AuditEvent.resource_id, AuditEventSubject.pseudonym)
            .join(AuditEvent, AuditEvent.id == AuditEventSubject.event_id)
            .where(
                AuditEvent.log_tenant_id == tenant_id,
                AuditEvent.action == Action.EXCHANGE_REFERRAL_RECEIVE.value,
                AuditEvent.resource_id.in_(chunk),
            )
        )
        for resource_id, pseudonym in rows:
            if resource_id is not None:
                found[resource_id].add(pseudonym)
    return found


async def _first_event_times(
    session: AsyncSession, tenant_id: uuid.UUID, action: Action, resource_ids: list[str]
) -> dict[str, dt.datetime]:
    """When `action` first succeeded on each resource in the trail: a recipient recording its own legal basis for a
    referral, the inbox restricting a copy after a withdrawal (the copy says only that it happened)."""
    found: dict[str, dt.datetime] = {}
    for chunk in _chunks(resource_ids):
        rows = await session.execute(
            select(AuditEvent.resource_id, func.min(AuditEvent.recorded_at))
            .where(
                AuditEvent.log_tenant_id == tenant_id,
                AuditEvent.action == action.value,
                AuditEvent.outcome == Outcome.SUCCESS.value,
                AuditEvent.resource_id.in_(chunk),
            )
            .group_by(AuditEvent.resource_id)
        )
        found.update({resource_id: at for resource_id, at in rows if resource_id is not None})
    return found
