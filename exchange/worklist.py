"""What the staff pages need beside the API's operations: a case's referrals, the categories the referral composer
may offer (decided by the sharing policy), an intake officer's own referrals, and assigning an incoming referral."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from audit.services import AccessScope
from exchange.access import access_case, access_referral
from exchange.cases import active_recipient, consent_policy_view
from exchange.deps import ExchangeDeps
from exchange.models import Consent, Referral, Side, Subject
from exchange.policy import Category, ConsentBasis, Deny, DenyCode, LegalBasis, ShareRequest, decide
from exchange.referrals import is_overdue, referral_pseudonyms, sender_kind
from exchange.schemas import ReferralSummary
from tenants.errors import InvalidInput, NotFound
from tenants.models import Role, User
from tenants.principal import Principal


def summary_of(referral: Referral, now: dt.datetime) -> ReferralSummary:
    return ReferralSummary(
        id=referral.exchange_id,
        kind=referral.kind,
        status=referral.status,
        from_tenant_id=referral.from_tenant_id,
        to_tenant_id=referral.to_tenant_id,
        case_ref=referral.case_ref,
        urgency=referral.urgency,
        respond_by=referral.respond_by,
        complete_by=referral.complete_by,
        overdue=is_overdue(referral, now),
    )


async def case_referrals(
    session: AsyncSession, deps: ExchangeDeps, *, principal: Principal, audit: AccessScope, case_id: uuid.UUID
) -> list[ReferralSummary]:
    """The referrals sent about one of the caller's cases, newest first."""
    case = await access_case(session, principal, case_id, for_write=False)
    rows = await session.scalars(
        select(Referral)
        .where(Referral.tenant_id == principal.tenant_id, Referral.case_id == case.id, Referral.side == Side.SENDER)
        .order_by(Referral.id.desc())
    )
    now = deps.clock.now()
    items = [summary_of(r, now) for r in rows]
    audit.touched(referrals=[str(r.id) for r in items])
    return items


async def assigned_to(
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    principal: Principal,
    audit: AccessScope,
    cursor_id: uuid.UUID | None,
    limit: int,
) -> tuple[list[ReferralSummary], uuid.UUID | None]:
    """Incoming referrals assigned to the caller, newest first; the second value is the next page's row id."""
    query = (
        select(Referral)
        .where(
            Referral.tenant_id == principal.tenant_id,
            Referral.side == Side.RECIPIENT,
            Referral.assignee_id == principal.actor_id,
        )
        .order_by(Referral.id.desc())
        .limit(limit + 1)
    )
    if cursor_id is not None:
        query = query.where(Referral.id < cursor_id)
    rows = list(await session.scalars(query))
    page = rows[:limit]
    now = deps.clock.now()
    audit.touched(resource_type="referral", box="assigned", referrals=[str(r.exchange_id) for r in page])
    return [summary_of(r, now) for r in page], page[-1].id if len(rows) > limit else None


async def assign_referral(
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    principal: Principal,
    audit: AccessScope,
    referral_id: uuid.UUID,
    assignee_id: uuid.UUID | None,
) -> Referral:
    """Give an incoming referral to a worker of the recipient agency (None: nobody). The sender is not told."""
    audit.touched(resource_type="referral", resource_id=referral_id, assignee=str(assignee_id) if assignee_id else None)
    referral = await access_referral(session, principal, referral_id, for_write=True)
    if referral.side != Side.RECIPIENT:
        raise InvalidInput("Only the receiving agency assigns a referral to one of its workers.")
    if assignee_id is not None:
        worker = await session.scalar(
            select(User).where(User.id == assignee_id, User.tenant_id == principal.tenant_id, User.active.is_(True))
        )
        if worker is None:
            raise NotFound("No such worker in this organisation.")
    audit.touched(subjects=await referral_pseudonyms(session, deps, referral))
    referral.assignee_id = assignee_id
    await session.flush()
    return referral


async def assignable_staff(session: AsyncSession, *, principal: Principal) -> list[User]:
    """The caller's colleagues who can work on incoming referrals, by email."""
    users = await session.scalars(
        select(User).where(User.tenant_id == principal.tenant_id, User.active.is_(True)).order_by(User.email)
    )
    workers = (Role.INTAKE, Role.SUPERVISOR, Role.SPECIALIST)
    return [u for u in users if any(role in u.roles for role in workers)]


async def staff_names(
    session: AsyncSession, *, principal: Principal, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """How the caller's colleagues are shown: their display name, else their email."""
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
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    principal: Principal,
    audit: AccessScope,
    case_id: uuid.UUID,
    subject_ids: list[uuid.UUID],
    recipient_id: uuid.UUID,
    purpose: str,
    basis: LegalBasis | None = None,
) -> list[CategoryOffer]:
    """Each category on its own through the sharing policy, exactly as a send would decide it."""
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
