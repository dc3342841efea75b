"""What the staff pages need beside the API's operations: a case's referrals, consents and timeline a page at a time,
a page of the directory, the categories the referral composer may offer (decided by the sharing policy), an intake
officer's own referrals, and assigning an incoming referral."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import literal, null, select, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.cases.access import access_case
from exchange.cases.models import Case, Consent, Subject
from exchange.cases.policy import Category, ConsentBasis, Deny, DenyCode, LegalBasis, ShareRequest, decide
from exchange.cases.schemas import ConsentOut
from exchange.cases.services import KEY_WORKER_ROLES, active_recipient, consent_policy_view, consent_view
from exchange.context import Context
from exchange.referrals.access import access_referral
from exchange.referrals.models import Referral, Side
from exchange.referrals.schemas import ReferralSummary
from exchange.referrals.services import referral_pseudonyms, referral_summary, sender_kind
from exchange.reports.statistics import partner_figures
from tenants.directory import DirectoryQuery, directory_entry, search_directory
from tenants.errors import InvalidInput, NotFound
from tenants.models import Role, User
from tenants.pagination import by_id, rows_page, scalars_page
from tenants.principal import Principal
from tenants.schemas import DirectoryEntry

# Who works on an incoming referral: the roles that read and move referrals (not a DPO or an administrator).
ASSIGNABLE_ROLES: Final = (Role.INTAKE, Role.SUPERVISOR, Role.SPECIALIST)


async def case_referrals(
    ctx: Context, *, case_id: uuid.UUID, before_id: uuid.UUID | None, limit: int
) -> tuple[list[ReferralSummary], uuid.UUID | None]:
    """One page of the referrals sent about one of the caller's cases, newest first; then the next page's row id."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    case = await access_case(session, principal, case_id, for_write=False)
    query = select(Referral).where(
        Referral.tenant_id == principal.tenant_id, Referral.case_id == case.id, Referral.side == Side.SENDER
    )
    page = await scalars_page(session, by_id(query, Referral.id, before_id, newest_first=True), limit)
    now = deps.clock.now()
    items = [referral_summary(r, now) for r in page.rows]
    audit.touched(referrals=[str(r.id) for r in items])
    return items, page.last.id if page.last else None


async def case_consents(
    ctx: Context, *, case_id: uuid.UUID, after_id: uuid.UUID | None, limit: int
) -> tuple[list[ConsentOut], uuid.UUID | None]:
    """One page of a case's consents in the order they were recorded; then the next page's row id."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="case", resource_id=case_id)
    case = await access_case(session, principal, case_id, for_write=False)
    subjects = {s.id: s for s in await session.scalars(select(Subject).where(Subject.case_id == case.id))}
    audit.touched(subjects=deps.audit.pseudonyms(principal.tenant_id, subjects))
    query = select(Consent).where(Consent.case_id == case.id)
    page = await scalars_page(session, by_id(query, Consent.id, after_id, newest_first=False), limit)
    items = [await consent_view(session, deps, c, subjects[c.subject_id]) for c in page.rows]
    return items, page.last.id if page.last else None


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One line of a case's timeline: opened, a consent recorded (from its valid_from) or withdrawn."""

    what: str
    at: dt.datetime
    subject_id: uuid.UUID | None


async def case_timeline(ctx: Context, *, case_id: uuid.UUID, offset: int, limit: int) -> tuple[list[CaseEvent], bool]:
    """One page of a case's timeline, oldest first, and whether more follow. Reads no sealed field."""
    session, principal = ctx.session, ctx.principal
    case = await access_case(session, principal, case_id, for_write=False)
    # The first SELECT gives the union its column types (and so how each backend's values are read back): the
    # consent's own columns, with the case's creation time and no subject for the "opened" line.
    recorded = select(
        literal("consent").label("what"),
        Consent.valid_from.label("at"),
        Consent.subject_id.label("subject_id"),
        Consent.id.label("row_id"),
    ).where(Consent.case_id == case.id)
    opened = select(
        literal("opened"),
        type_coerce(Case.created_at, Consent.valid_from.type),
        type_coerce(null(), Consent.subject_id.type),
        type_coerce(Case.id, Consent.id.type),
    ).where(Case.id == case.id)
    withdrawn = select(literal("withdrawn"), Consent.withdrawn_at, Consent.subject_id, Consent.id).where(
        Consent.case_id == case.id, Consent.withdrawn_at.is_not(None)
    )
    events = union_all(recorded, opened, withdrawn).subquery()
    query = (
        select(events.c.what, events.c.at, events.c.subject_id)
        .order_by(events.c.at, events.c.row_id, events.c.what)
        .offset(offset)
    )
    page = await rows_page(session, query, limit)
    return [CaseEvent(str(what), at, subject_id) for what, at, subject_id in page.rows], page.more


async def directory_page(
    session: AsyncSession,
    query: DirectoryQuery,
    *,
    principal: Principal,
    now: dt.datetime,
    jwks_url: Callable[[uuid.UUID], str],
    offset: int,
    limit: int,
) -> tuple[list[DirectoryEntry], bool]:
    """One page of the directory search without the caller's own agency, by name, with each listed agency's figures.

    A platform-scoped session: public profiles and aggregate figures only. Figures are computed for the page's
    agencies alone, so a long directory costs one page of work.
    """
    tenants = [t for t in await search_directory(session, query) if t.id != principal.tenant_id]
    page = tenants[offset : offset + limit]
    computed = await partner_figures(session, partners=[t.id for t in page], now=now)
    entries = [
        directory_entry(
            t, jwks_url=jwks_url(t.id), stats=computed[t.id].overall, service_stats=computed[t.id].by_service
        )
        for t in page
    ]
    return entries, len(tenants) > offset + limit


async def assigned_to(
    ctx: Context, *, cursor_id: uuid.UUID | None, limit: int
) -> tuple[list[ReferralSummary], uuid.UUID | None]:
    """Incoming referrals assigned to the caller, newest first; the second value is the next page's row id."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    query = select(Referral).where(
        Referral.tenant_id == principal.tenant_id,
        Referral.side == Side.RECIPIENT,
        Referral.assignee_id == principal.actor_id,
    )
    page = await scalars_page(session, by_id(query, Referral.id, cursor_id, newest_first=True), limit)
    now = deps.clock.now()
    audit.touched(resource_type="referral", box="assigned", referrals=[str(r.exchange_id) for r in page.rows])
    return [referral_summary(r, now) for r in page.rows], page.last.id if page.last else None


async def assign_referral(ctx: Context, *, referral_id: uuid.UUID, assignee_id: uuid.UUID | None) -> Referral:
    """Give an incoming referral to a worker of the recipient agency (None: nobody). The sender is not told."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="referral", resource_id=referral_id, assignee=str(assignee_id) if assignee_id else None)
    referral = await access_referral(session, principal, referral_id, for_write=True)
    if referral.side != Side.RECIPIENT:
        raise InvalidInput("Only the receiving agency assigns a referral to one of its workers.")
    if assignee_id is not None:
        worker = await session.scalar(
            select(User).where(User.id == assignee_id, User.tenant_id == principal.tenant_id, User.active.is_(True))
        )
        if worker is None or not any(role in worker.roles for role in ASSIGNABLE_ROLES):
            raise NotFound("No such worker in this organisation.")
    audit.touched(subjects=await referral_pseudonyms(session, deps, referral))
    referral.assignee_id = assignee_id
    await session.flush()
    return referral


async def assignee_of(ctx: Context, *, referral_id: uuid.UUID) -> uuid.UUID | None:
    """Who in the caller's organisation the referral copy is assigned to, if anyone."""
    return (await access_referral(ctx.session, ctx.principal, referral_id, for_write=False)).assignee_id


async def assignable_staff(ctx: Context) -> list[User]:
    """The caller's colleagues who can work on incoming referrals, by email."""
    session, principal = ctx.session, ctx.principal
    users = await session.scalars(
        select(User).where(User.tenant_id == principal.tenant_id, User.active.is_(True)).order_by(User.email)
    )
    return [u for u in users if any(role in u.roles for role in ASSIGNABLE_ROLES)]


async def key_workers(ctx: Context) -> list[User]:
    """The caller's colleagues who can be a case's key worker (active, in a casework role), by email."""
    session, principal = ctx.session, ctx.principal
    users = await session.scalars(
        select(User).where(User.tenant_id == principal.tenant_id, User.active.is_(True)).order_by(User.email)
    )
    return [u for u in users if any(role in u.roles for role in KEY_WORKER_ROLES)]


async def staff_names(ctx: Context, *, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """How the caller's colleagues are shown: their display name, else their email."""
    session, principal = ctx.session, ctx.principal
    if not user_ids:
        return {}
    users = await session.scalars(select(User).where(User.tenant_id == principal.tenant_id, User.id.in_(user_ids)))
    return {u.id: u.display_name or u.email for u in users}


@dataclass(frozen=True, slots=True)
class CategoryOffer:
    """Whether the composer may offer a category for the chosen subjects, recipient, purpose and basis, and why not."""

    category: Category
    allowed: bool
    code: DenyCode | None = None
    subject_ref: str | None = None


async def offered_categories(
    ctx: Context,
    *,
    case_id: uuid.UUID,
    subject_ids: list[uuid.UUID],
    recipient_id: uuid.UUID,
    purpose: str,
    basis: LegalBasis | None = None,
) -> list[CategoryOffer]:
    """Each category on its own through the sharing policy, exactly as a send would decide it."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    case = await access_case(session, principal, case_id, for_write=False)
    subjects = list(
        await session.scalars(select(Subject).where(Subject.case_id == case.id, Subject.id.in_(subject_ids)))
    )
    audit.touched(subjects=deps.audit.pseudonyms(principal.tenant_id, [s.id for s in subjects]))
    recipient = await active_recipient(session, recipient_id)
    consents = [
        consent_policy_view(c)
        for c in await session.scalars(select(Consent).where(Consent.subject_id.in_([s.id for s in subjects])))
    ]
    refs = {s.id: s.ref for s in subjects}
    sending_kind = await sender_kind(session, principal)
    now = deps.clock.now()
    offers = []
    for category in Category:
        if not subjects:
            offers.append(CategoryOffer(category, False, DenyCode.NO_SUBJECTS))
            continue
        decision = decide(
            ShareRequest(
                subject_ids=tuple(s.id for s in subjects),
                categories=frozenset({category}),
                recipient_tenant_id=recipient.id,
                recipient_kind=recipient.kind,
                purpose=purpose,
                basis=basis or ConsentBasis(),
                sender_kind=sending_kind,
            ),
            consents,
            now,
        )
        if isinstance(decision, Deny):
            ref = refs.get(decision.subject_id) if decision.subject_id else None
            offers.append(CategoryOffer(category, False, decision.code, ref))
        else:
            offers.append(CategoryOffer(category, True))
    return offers
