"""Access functions for exchange records: the only way to reach them, scoped to the caller's tenant."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.cases.models import Case, Consent, Document, Subject
from exchange.plans.models import Plan
from exchange.referrals.models import Referral, Side
from tenants.errors import Forbidden, NotFound
from tenants.models import Role
from tenants.principal import Principal

# Who may change a case, record consents and send referrals for the centre that owns the case.
CASE_WRITERS = (Role.SPECIALIST, Role.SUPERVISOR)
# Who may act on a referral: the sender's case workers, the recipient's intake officers and supervisors.
REFERRAL_ACTORS = {Side.SENDER: (Role.SPECIALIST, Role.SUPERVISOR), Side.RECIPIENT: (Role.INTAKE, Role.SUPERVISOR)}


async def access_case(session: AsyncSession, principal: Principal, case_id: uuid.UUID, *, for_write: bool) -> Case:
    case = await session.scalar(select(Case).where(Case.id == case_id, Case.tenant_id == principal.tenant_id))
    if case is None:
        raise NotFound("No such case.")
    if for_write and not principal.has_role(*CASE_WRITERS):
        raise Forbidden("Only a specialist or a supervisor may change a case.")
    return case


async def access_subjects(
    session: AsyncSession, principal: Principal, case: Case, subject_ids: list[uuid.UUID]
) -> list[Subject]:
    """The named subjects of `case`, in the order asked; any id not in this case is reported as missing."""
    rows = await session.scalars(
        select(Subject).where(Subject.case_id == case.id, Subject.tenant_id == principal.tenant_id)
    )
    by_id = {s.id: s for s in rows}
    missing = [i for i in subject_ids if i not in by_id]
    if missing:
        raise NotFound("No such subject in this case.")
    return [by_id[i] for i in subject_ids]


async def access_consent(
    session: AsyncSession, principal: Principal, consent_id: uuid.UUID, *, for_write: bool
) -> Consent:
    consent = await session.scalar(
        select(Consent).where(Consent.id == consent_id, Consent.tenant_id == principal.tenant_id)
    )
    if consent is None:
        raise NotFound("No such consent.")
    if for_write and not principal.has_role(*CASE_WRITERS):
        raise Forbidden("Only a specialist or a supervisor may change a consent.")
    return consent


async def access_document(
    session: AsyncSession, principal: Principal, document_id: uuid.UUID, *, for_write: bool
) -> Document:
    document = await session.scalar(
        select(Document).where(Document.id == document_id, Document.tenant_id == principal.tenant_id)
    )
    if document is None:
        raise NotFound("No such document.")
    if for_write and not principal.has_role(Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE):
        raise Forbidden("This role may not attach documents.")
    return document


# Built once: every read of a referral starts here, and building the statement costs more than running it on SQLite.
_REFERRAL_BY_EXCHANGE_ID = select(Referral).where(
    Referral.exchange_id == bindparam("exchange_id"), Referral.tenant_id == bindparam("tenant_id")
)


async def access_referral(
    session: AsyncSession, principal: Principal, referral_id: uuid.UUID, *, for_write: bool
) -> Referral:
    """One side's copy of a referral, by the id both sides share. The other tenant's copy is never reachable."""
    referral = await session.scalar(
        _REFERRAL_BY_EXCHANGE_ID, {"exchange_id": referral_id, "tenant_id": principal.tenant_id}
    )
    if referral is None:
        raise NotFound("No such referral.")
    if for_write and not principal.has_role(*REFERRAL_ACTORS[Side(referral.side)]):
        raise Forbidden("This role may not act on this side of the referral.")
    return referral


async def access_plan(session: AsyncSession, principal: Principal, plan_id: uuid.UUID, *, for_write: bool) -> Plan:
    """A multi-agency plan of the caller's tenant; the issuing centre's case workers may change it."""
    plan = await session.scalar(select(Plan).where(Plan.id == plan_id, Plan.tenant_id == principal.tenant_id))
    if plan is None:
        raise NotFound("No such plan.")
    if for_write and not principal.has_role(*CASE_WRITERS):
        raise Forbidden("Only a specialist or a supervisor may change a plan.")
    return plan
