"""Access functions for the cases area's rows, scoped to the caller's tenant (the shape is tenants/access.py's)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.cases.models import Case, Consent, Document, Subject
from tenants.access import RowAccess, written_by
from tenants.errors import NotFound
from tenants.models import Role
from tenants.principal import Principal

# Who may change a case, record consents and send referrals for the centre that owns the case.
CASE_WRITERS = (Role.SPECIALIST, Role.SUPERVISOR)

access_case = RowAccess(
    Case,
    Case.id,
    Case.tenant_id,
    missing="No such case.",
    permits=written_by(*CASE_WRITERS),
    refusal="Only a specialist or a supervisor may change a case.",
)
access_consent = RowAccess(
    Consent,
    Consent.id,
    Consent.tenant_id,
    missing="No such consent.",
    permits=written_by(*CASE_WRITERS),
    refusal="Only a specialist or a supervisor may change a consent.",
)
access_document = RowAccess(
    Document,
    Document.id,
    Document.tenant_id,
    missing="No such document.",
    permits=written_by(Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE),
    refusal="This role may not attach documents.",
)
# A subject by its id alone, as the DPO names one for a subject access report.
access_subject = RowAccess(
    Subject,
    Subject.id,
    Subject.tenant_id,
    missing="No such subject in this organisation's cases.",
    permits=written_by(*CASE_WRITERS),
    refusal="Only a specialist or a supervisor may change a case.",
)


async def access_subjects(
    session: AsyncSession, principal: Principal, case: Case, subject_ids: list[uuid.UUID]
) -> list[Subject]:
    """The named subjects of `case` (reached with `access_case`), in the order asked; any id not in it is missing."""
    rows = await session.scalars(
        select(Subject).where(Subject.case_id == case.id, Subject.tenant_id == principal.tenant_id)
    )
    by_id = {s.id: s for s in rows}
    missing = [i for i in subject_ids if i not in by_id]
    if missing:
        raise NotFound("No such subject in this case.")
    return [by_id[i] for i in subject_ids]
