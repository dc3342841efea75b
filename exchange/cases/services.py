"""Cases, their subjects and the family's consents: recorded by the centre that owns the case."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from exchange.cases.access import access_case, access_consent, access_document, access_subjects
from exchange.cases.datakeys import DataKey, DataKeys, sealed_context
from exchange.cases.lookup import PersonIndex, records_of
from exchange.cases.models import Case, Consent, Document, Subject
from exchange.cases.policy import Category, ConsentStatus, ConsentView, Relation, consent_giver_problem
from exchange.cases.schemas import CaseIn, CaseOut, CaseSummary, ConsentIn, ConsentOut, SubjectOut
from exchange.cases.uploads import checked_media_type
from exchange.context import Context
from exchange.deps import ExchangeDeps
from exchange.referrals.models import Referral, Side
from exchange.transport.bodies import ConsentWithdrawn
from exchange.transport.outbox import enqueue
from tenants.errors import Forbidden, InvalidInput, NotFound
from tenants.models import Role, Tenant, TenantStatus, User
from tenants.pagination import by_id, decode_cursor, encode_cursor, scalars_page
from tenants.principal import Principal

# Fields of a subject and the category that releases each to a recipient (docs/exchange.md).
# Who may be a case's key worker: the casework roles (an intake officer or a DPO works on no case of their own).
KEY_WORKER_ROLES: Final = (Role.SPECIALIST, Role.SUPERVISOR)
SUBJECT_FIELDS: dict[str, Category] = {
    "full_name": Category.IDENTITY,
    "birth_date": Category.IDENTITY,
    "identifiers": Category.IDENTITY,
    "address": Category.CONTACTS,
    "phone": Category.CONTACTS,
    "email": Category.CONTACTS,
    "role": Category.FAMILY,
    "education": Category.EDUCATION,
    "health": Category.HEALTH,
}


# -- cases ------------------------------------------------------------------------------------------------------


async def create_case(ctx: Context, *, data: CaseIn) -> CaseOut:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    if data.key_worker_id is not None:
        worker = await session.scalar(
            select(User).where(
                User.id == data.key_worker_id, User.tenant_id == principal.tenant_id, User.active.is_(True)
            )
        )
        if worker is None or not any(role in worker.roles for role in KEY_WORKER_ROLES):
            raise NotFound("No such key worker in this organisation.")
    refs = [s.ref for s in data.subjects]
    if len(set(refs)) != len(refs):
        raise InvalidInput("Each subject of a case needs its own ref.")
    case_id = uuid7()
    key, wrapped = await deps.datakeys.create(session, principal.tenant_id, sealed_context("case", case_id))
    now = deps.clock.now()
    case = Case(
        id=case_id,
        tenant_id=principal.tenant_id,
        # 40 random bits of the UUIDv7: a clash within one tenant is a one-in-a-million event at 1,500 cases.
        reference=f"C-{now:%Y}-{case_id.hex[-10:].upper()}",
        key_worker_id=data.key_worker_id,
        created_by_kind=principal.actor_kind.value,
        created_by_id=principal.actor_id,
        kek_kid=wrapped.kek_kid,
        data_key_wrapped=wrapped.wrapped,
    )
    needs = msgspec.to_builtins(data.needs) if data.needs else None
    case.sealed = key.seal(
        {"title": data.title, "summary": data.summary, "needs": needs}, context=sealed_context("case", case_id)
    )
    session.add(case)
    subjects = []
    for subject_in in data.subjects:
        subject = await _new_subject(session, deps, principal, case, subject_in)
        subjects.append(subject)
    await session.flush()
    audit.touched(
        resource_type="case",
        resource_id=case.id,
        subjects=deps.audit.pseudonyms(principal.tenant_id, [s.id for s in subjects]),
    )
    return await case_view(session, deps, case=case)


@dataclass(frozen=True, slots=True)
class KnownPerson:
    """A person of a new case whose full name and birth date are already on cases of the agency the caller may open."""

    position: int  # the person's place in `CaseIn.subjects`
    cases: tuple[CaseSummary, ...]


async def known_people(ctx: Context, *, data: CaseIn) -> list[KnownPerson]:
    """The people of `data` already on the caller's own agency's cases, before the case is opened.

    Only the caller's tenant is searched (`records_of`), only cases the caller may open are named, and nothing of
    them but their reference and title: the worker then opens the case to judge whether it is the same person.
    """
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    known, seen = [], set()
    for position, person in enumerate(data.subjects):
        if person.birth_date is None:
            continue  # a name alone is no match (lookup.digests)
        records = await records_of(
            session, deps.persons, principal, full_name=person.full_name, birth_date=person.birth_date
        )
        cases: dict[uuid.UUID, CaseSummary] = {}
        for case_id, subject_id in records:
            if case_id not in cases:
                try:
                    case = await access_case(session, principal, case_id, for_write=False)
                except (NotFound, Forbidden):
                    continue
                contents = await case_contents(session, deps, case)
                cases[case_id] = CaseSummary(
                    id=case.id, reference=case.reference, title=contents["title"], created_at=case.created_at
                )
            seen.add(subject_id)
        if cases:
            known.append(KnownPerson(position, tuple(cases.values())))
    audit.touched(
        resource_type="case",
        subjects=deps.audit.pseudonyms(principal.tenant_id, sorted(seen)),
        cases=sorted(str(c.id) for k in known for c in k.cases),
    )
    return known


async def _new_subject(
    session: AsyncSession, deps: ExchangeDeps, principal: Principal, case: Case, data: Any
) -> Subject:
    subject_id = uuid7()
    key, wrapped = await deps.datakeys.create(session, principal.tenant_id, sealed_context("subject", subject_id))
    fields = msgspec.to_builtins(data)
    fields.pop("ref")
    fields.pop("role")
    subject = Subject(
        id=subject_id,
        tenant_id=principal.tenant_id,
        case_id=case.id,
        ref=data.ref,
        role=data.role.value,
        kek_kid=wrapped.kek_kid,
        data_key_wrapped=wrapped.wrapped,
        sealed=key.seal(fields, context=sealed_context("subject", subject_id)),
    )
    deps.persons.index(subject, fields)
    session.add(subject)
    return subject


async def subject_key(session: AsyncSession, deps: ExchangeDeps, subject: Subject) -> DataKey:
    return await _subject_key(session, deps.datakeys, subject)


async def _subject_key(session: AsyncSession, datakeys: DataKeys, subject: Subject) -> DataKey:
    return await datakeys.open(session, subject.tenant_id, sealed_context("subject", subject.id), subject.wrapped_key)


async def subject_fields(session: AsyncSession, deps: ExchangeDeps, subject: Subject) -> dict[str, Any]:
    """All sealed fields of a subject plus its role; empty (but for the role) once the subject was erased."""
    return await _opened_fields(session, deps.datakeys, subject)


async def _opened_fields(session: AsyncSession, datakeys: DataKeys, subject: Subject) -> dict[str, Any]:
    if subject.sealed is None or subject.data_key_wrapped is None:
        return {"role": subject.role}
    key = await _subject_key(session, datakeys, subject)
    fields: dict[str, Any] = key.open(subject.sealed, context=sealed_context("subject", subject.id))
    return {**fields, "role": subject.role}


@dataclass(frozen=True, slots=True)
class IndexedBatch:
    # Per tenant: (subjects seen, subjects with a name-and-birth-date digest; the others lack a birth date or were
    # erased).
    by_tenant: dict[uuid.UUID, tuple[int, int]]
    seen: int
    last_id: uuid.UUID | None


async def index_subjects(
    session: AsyncSession, datakeys: DataKeys, persons: PersonIndex, *, after: uuid.UUID | None, limit: int
) -> IndexedBatch:
    """(Re)compute the lookup digests of up to `limit` subjects of every tenant, in id order after `after`.

    For rows recorded before the digests existed (`casebridge subjects index`); rows already indexed get the same
    digests again. The caller's session must see every tenant (the platform's scope).
    """
    query = select(Subject).order_by(Subject.id).limit(limit)
    if after is not None:
        query = query.where(Subject.id > after)
    subjects = list(await session.scalars(query))
    counts: dict[uuid.UUID, tuple[int, int]] = {}
    for subject in subjects:
        if subject.erased_at is not None or subject.sealed is None:
            subject.name_lookup = subject.snils_lookup = None
        else:
            persons.index(subject, await _opened_fields(session, datakeys, subject))
        seen, indexed = counts.get(subject.tenant_id, (0, 0))
        counts[subject.tenant_id] = (seen + 1, indexed + (subject.name_lookup is not None))
    return IndexedBatch(counts, len(subjects), subjects[-1].id if subjects else None)


async def case_contents(session: AsyncSession, deps: ExchangeDeps, case: Case) -> dict[str, Any]:
    if case.sealed is None:
        return {"title": "", "summary": None, "needs": None}
    key = await deps.datakeys.open(session, case.tenant_id, sealed_context("case", case.id), case.wrapped_key)
    contents: dict[str, Any] = key.open(case.sealed, context=sealed_context("case", case.id))
    return contents


async def case_view(session: AsyncSession, deps: ExchangeDeps, *, case: Case) -> CaseOut:
    contents = await case_contents(session, deps, case)
    subjects = (await session.scalars(select(Subject).where(Subject.case_id == case.id).order_by(Subject.id))).all()
    views = []
    for subject in subjects:
        fields = await subject_fields(session, deps, subject)
        views.append(SubjectOut(id=subject.id, ref=subject.ref, **fields))
    return CaseOut(
        id=case.id,
        reference=case.reference,
        title=contents["title"],
        key_worker_id=case.key_worker_id,
        subjects=views,
        summary=contents.get("summary"),
        needs=contents.get("needs"),
        created_at=case.created_at,
    )


async def read_case(ctx: Context, *, case_id: uuid.UUID) -> CaseOut:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="case", resource_id=case_id)
    case = await access_case(session, principal, case_id, for_write=False)
    view = await case_view(session, deps, case=case)
    audit.touched(subjects=deps.audit.pseudonyms(principal.tenant_id, [s.id for s in view.subjects]))
    return view


async def list_cases(ctx: Context, *, cursor: str | None, limit: int) -> tuple[list[CaseSummary], str | None]:
    """Newest first; UUIDv7 ids sort by creation time, so the last id is the cursor."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    query = select(Case).where(Case.tenant_id == principal.tenant_id)
    after = decode_cursor(cursor) if cursor else None
    page = await scalars_page(session, by_id(query, Case.id, after, newest_first=True), limit)
    items = []
    for case in page.rows:
        contents = await case_contents(session, deps, case)
        items.append(
            CaseSummary(id=case.id, reference=case.reference, title=contents["title"], created_at=case.created_at)
        )
    audit.touched(resource_type="case", cases=[str(c.id) for c in page.rows])
    return items, encode_cursor(page.last.id) if page.last else None


# -- consents ---------------------------------------------------------------------------------------------------


async def record_consent(ctx: Context, *, case_id: uuid.UUID, data: ConsentIn) -> ConsentOut:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="case", resource_id=case_id)
    case = await access_case(session, principal, case_id, for_write=True)
    (subject,) = await access_subjects(session, principal, case, [data.subject_id])
    audit.touched(subjects=deps.audit.pseudonyms(principal.tenant_id, [subject.id]))
    now = deps.clock.now()
    valid_from = _aware(data.valid_from, "valid_from") if data.valid_from else now
    valid_until = _aware(data.valid_until, "valid_until")
    if valid_until <= max(now, valid_from):
        raise InvalidInput("valid_until must be in the future and after valid_from.")
    if not data.recipients.tenants and not data.recipients.kinds:
        raise InvalidInput("Name at least one recipient agency or kind of agency.")
    await _check_recipient_tenants(session, data.recipients.tenants)
    fields = await subject_fields(session, deps, subject)
    birth_date = dt.date.fromisoformat(fields["birth_date"]) if fields.get("birth_date") else None
    problem = consent_giver_problem(
        subject_birth_date=birth_date, relation=Relation(data.given_by.relation), on=now.date(), rules=deps.age_rules
    )
    if problem:
        raise InvalidInput(problem)
    evidence_sha256 = None
    if data.evidence is not None:
        document = await access_document(session, principal, data.evidence.document_id, for_write=True)
        evidence_sha256 = document.sha256
    key = await subject_key(session, deps, subject)
    consent_id = uuid7()
    consent = Consent(
        id=consent_id,
        tenant_id=principal.tenant_id,
        case_id=case.id,
        subject_id=subject.id,
        relation=data.given_by.relation.value,
        given_by_sealed=key.seal({"name": data.given_by.name}, context=sealed_context("consent", consent_id)),
        purposes=sorted(set(data.purposes)),
        categories=sorted({c.value for c in data.categories}),
        recipient_tenants=sorted({str(t) for t in data.recipients.tenants}),
        recipient_kinds=sorted({k.value for k in data.recipients.kinds}),
        valid_from=valid_from,
        valid_until=valid_until,
        evidence_document_id=data.evidence.document_id if data.evidence else None,
        evidence_sha256=evidence_sha256,
        status=ConsentStatus.ACTIVE.value,
    )
    session.add(consent)
    await session.flush()
    audit.touched(
        resource_type="consent", resource_id=consent.id, purposes=consent.purposes, categories=consent.categories
    )
    return await consent_view(session, deps, consent, subject)


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        raise InvalidInput(f"{name} must carry a time zone (RFC 3339, e.g. 2027-01-31T00:00:00Z).")
    return value.astimezone(dt.UTC)


async def _check_recipient_tenants(session: AsyncSession, tenant_ids: Sequence[uuid.UUID]) -> None:
    if not tenant_ids:
        return
    found = set(await session.scalars(select(Tenant.id).where(Tenant.id.in_(list(tenant_ids)))))
    if missing := [t for t in tenant_ids if t not in found]:
        raise InvalidInput(f"Unknown recipient agency {missing[0]}.")


async def consent_view(session: AsyncSession, deps: ExchangeDeps, consent: Consent, subject: Subject) -> ConsentOut:
    given_by_name = ""
    if subject.data_key_wrapped is not None:
        key = await subject_key(session, deps, subject)
        given_by_name = key.open(consent.given_by_sealed, context=sealed_context("consent", consent.id))["name"]
    return ConsentOut(
        id=consent.id,
        case_id=consent.case_id,
        subject_id=consent.subject_id,
        given_by={"name": given_by_name, "relation": consent.relation},
        purposes=consent.purposes,
        categories=consent.categories,
        recipients={"tenants": consent.recipient_tenants, "kinds": consent.recipient_kinds},
        valid_from=consent.valid_from,
        valid_until=consent.valid_until,
        status=effective_status(consent, deps.clock.now()),
        withdrawn_at=consent.withdrawn_at,
        evidence={"document_id": str(consent.evidence_document_id), "sha256": consent.evidence_sha256 or ""}
        if consent.evidence_document_id
        else None,
    )


def effective_status(consent: Consent, now: dt.datetime) -> str:
    """Expiry is a matter of time: an active consent past valid_until reads as expired without any job running."""
    if consent.status == ConsentStatus.ACTIVE and consent.valid_until is not None and consent.valid_until <= now:
        return ConsentStatus.EXPIRED.value
    return consent.status


def consent_policy_view(consent: Consent) -> ConsentView:
    return ConsentView(
        id=consent.id,
        subject_id=consent.subject_id,
        status=ConsentStatus(consent.status),
        purposes=frozenset(consent.purposes),
        categories=frozenset(Category(c) for c in consent.categories),
        recipient_tenants=frozenset(uuid.UUID(t) for t in consent.recipient_tenants),
        recipient_kinds=frozenset(consent.recipient_kinds),
        valid_from=consent.valid_from,
        valid_until=consent.valid_until,
        withdrawn_at=consent.withdrawn_at,
    )


async def list_consents(ctx: Context, *, case_id: uuid.UUID) -> list[ConsentOut]:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="case", resource_id=case_id)
    case = await access_case(session, principal, case_id, for_write=False)
    subjects = {s.id: s for s in await session.scalars(select(Subject).where(Subject.case_id == case.id))}
    audit.touched(subjects=deps.audit.pseudonyms(principal.tenant_id, subjects))
    consents = await session.scalars(select(Consent).where(Consent.case_id == case.id).order_by(Consent.id))
    return [await consent_view(session, deps, c, subjects[c.subject_id]) for c in consents]


async def withdraw_consent(ctx: Context, *, consent_id: uuid.UUID, reason: str) -> ConsentOut:
    """Withdraw at once: no new share relies on it from now on, and every recipient that holds data under it is told."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="consent", resource_id=consent_id)
    consent = await access_consent(session, principal, consent_id, for_write=True)
    audit.touched(subjects=deps.audit.pseudonyms(principal.tenant_id, [consent.subject_id]))
    if consent.status != ConsentStatus.ACTIVE:
        raise InvalidInput("Only an active consent can be withdrawn.")
    subject = await session.scalar(select(Subject).where(Subject.id == consent.subject_id))
    if subject is None:
        raise NotFound("No such consent.")
    now = deps.clock.now()
    consent.status = ConsentStatus.WITHDRAWN.value
    consent.withdrawn_at = now
    key = await subject_key(session, deps, subject)
    consent.withdrawal_reason_sealed = key.seal(
        {"reason": reason}, context=sealed_context("consent-withdrawal", consent.id)
    )
    shared = await session.scalars(
        select(Referral).where(Referral.case_id == consent.case_id, Referral.side == Side.SENDER.value)
    )
    by_recipient: dict[uuid.UUID, list[str]] = {}
    for referral in shared:
        if str(consent.id) in referral.consent_ids:
            by_recipient.setdefault(referral.to_tenant_id, []).append(str(referral.exchange_id))
    for recipient, exchange_ids in by_recipient.items():
        withdrawn = ConsentWithdrawn(
            consent_id=consent.id, referral_ids=[uuid.UUID(i) for i in sorted(exchange_ids)], withdrawn_at=now
        )
        await enqueue(session, deps, sender=principal.tenant_id, recipient=recipient, body=withdrawn)
    await session.flush()
    return await consent_view(session, deps, consent, subject)


# -- documents --------------------------------------------------------------------------------------------------


async def store_document(ctx: Context, *, name: str, media_type: str, content: bytes, max_bytes: int) -> Document:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    if not content:
        raise InvalidInput("The document is empty.")
    if len(content) > max_bytes:
        raise InvalidInput(f"The document is larger than {max_bytes // 1024} KiB.")
    media_type = checked_media_type(media_type, content)
    if not name.strip() or len(name) > 255:
        raise InvalidInput("The document needs a file name of at most 255 characters.")
    document = await new_document(session, deps, principal.tenant_id, name.strip(), media_type, content)
    audit.touched(resource_type="document", resource_id=document.id, size=document.size)
    return document


async def new_document(
    session: AsyncSession,
    deps: ExchangeDeps,
    tenant_id: uuid.UUID,
    name: str,
    media_type: str,
    content: bytes,
    *,
    referral_id: uuid.UUID | None = None,
) -> Document:
    """A document of `tenant_id` sealed under a data key of its own: an upload, an attachment received, a letter."""
    document_id = uuid7()
    context = sealed_context("document", document_id)
    key, wrapped = await deps.datakeys.create(session, tenant_id, context)
    document = Document(
        id=document_id,
        tenant_id=tenant_id,
        media_type=media_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=key.seal_bytes(content, context=context),
        kek_kid=wrapped.kek_kid,
        data_key_wrapped=wrapped.wrapped,
        sealed=key.seal({"name": name}, context=context),
        referral_id=referral_id,
    )
    session.add(document)
    await session.flush()
    return document


async def document_contents(session: AsyncSession, deps: ExchangeDeps, document: Document) -> tuple[str, bytes]:
    context = sealed_context("document", document.id)
    key = await deps.datakeys.open(session, document.tenant_id, context, document.wrapped_key)
    name = key.open(document.sealed, context=context)["name"] if document.sealed else ""
    return str(name), key.open_bytes(document.content, context=context)


async def active_recipient(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.id == tenant_id))
    if tenant is None or tenant.status != TenantStatus.ACTIVE:
        raise NotFound("No such recipient agency.")
    return tenant
