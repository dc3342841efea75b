"""Referrals between agencies: sending under the sharing policy, the status machine, and each side's copy."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from sqlalchemy import Select, and_, bindparam, func, insert, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from exchange.cases.access import access_case, access_subjects
from exchange.cases.datakeys import DataKey, sealed_context
from exchange.cases.models import Case, Consent, Subject
from exchange.cases.policy import Category, ConsentBasis, Deny, LegalBasis, ShareRequest, StatutoryBasis, decide
from exchange.cases.schemas import SubjectOut
from exchange.cases.services import (
    SUBJECT_FIELDS,
    active_recipient,
    case_contents,
    consent_policy_view,
    subject_fields,
)
from exchange.context import Context
from exchange.deps import ExchangeDeps
from exchange.errors import ConsentRequired, IdempotencyMismatch, TransitionNotAllowed
from exchange.letters.services import letter_summary, register_letter
from exchange.referrals.access import access_referral
from exchange.referrals.keys import referral_key
from exchange.referrals.models import Referral, ReferralKind, Side, TimelineEntry
from exchange.referrals.schemas import (
    ReferralIn,
    ReferralOut,
    ReferralSummary,
    StatutoryBasisIn,
    TimelineOut,
    TransitionIn,
)
from exchange.referrals.status import AWAITING_ANSWER, IN_HAND, Status, allowed
from exchange.transport.bodies import (
    AccessReceipt,
    LegalBasisBody,
    ReceiptActor,
    ReferralRequested,
    ReferralStatus,
)
from exchange.transport.outbox import enqueue
from tenants.access import access_tenant
from tenants.calendar import deadline, time_zone
from tenants.errors import InvalidInput
from tenants.pagination import by_id, decode_cursor, encode_cursor, scalars_page
from tenants.principal import Principal


def is_overdue(referral: Referral, now: dt.datetime) -> bool:
    """Not answered by respond_by, or not finished by complete_by (the same rule as the SQL filter below)."""
    if referral.status in AWAITING_ANSWER:
        return now > referral.respond_by
    if referral.status in IN_HAND:
        return now > referral.complete_by
    return False


# -- the sender ---------------------------------------------------------------------------------------------------


def request_hash(data: ReferralIn) -> str:
    return hashlib.sha256(msgspec.json.encode(data)).hexdigest()


async def sender_kind(session: AsyncSession, principal: Principal) -> str:
    """The acting agency's kind: some statutory provisions empower only certain kinds of sender."""
    return (await access_tenant(session, principal, principal.tenant_id, for_write=False)).kind


async def send_referral(
    ctx: Context, *, data: ReferralIn, idempotency_key: str | None, plan: Mapping[str, str] | None = None
) -> tuple[Referral, bool]:
    """Send a referral if the policy permits every category for every subject; returns (referral, created).

    `plan` (task title, expected result, plan id) travels with a plan_task referral, sealed like its text.
    """
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    if idempotency_key is not None:
        await _hold_idempotency_key(session, principal.tenant_id, idempotency_key)
        existing = await session.scalar(
            select(Referral).where(
                Referral.tenant_id == principal.tenant_id, Referral.idempotency_key == idempotency_key
            )
        )
        if existing is not None:
            if existing.request_hash != request_hash(data):
                raise IdempotencyMismatch("This Idempotency-Key was already used with a different request body.")
            return existing, False
    audit.touched(
        resource_type="case",
        resource_id=data.case_id,
        purpose=data.purpose,
        legal_basis="statutory" if isinstance(data.legal_basis, StatutoryBasisIn) else "consent",
    )
    case = await access_case(session, principal, data.case_id, for_write=True)
    subjects = await access_subjects(session, principal, case, list(dict.fromkeys(data.subject_ids)))
    pseudonyms = deps.audit.pseudonyms(principal.tenant_id, [s.id for s in subjects])
    audit.touched(subjects=pseudonyms)
    recipient = await active_recipient(session, data.to_tenant_id)
    sender = await access_tenant(session, principal, principal.tenant_id, for_write=False)
    if recipient.id == principal.tenant_id:
        raise InvalidInput("A referral goes to another agency, not to one's own.")
    if data.service is not None:
        _check_service(recipient.service_profile or {}, data.service)
    now = deps.clock.now()
    zone = time_zone(sender.time_zone)
    respond_by, complete_by = deadline(data.respond_by, zone), deadline(data.complete_by, zone)
    if respond_by.at <= now:
        raise InvalidInput("respond_by must be today or a later day (in the agency's time zone).")
    if complete_by.day < respond_by.day:
        raise InvalidInput("complete_by must not be before respond_by.")
    basis: LegalBasis = (
        StatutoryBasis(data.legal_basis.reference, data.legal_basis.justification)
        if isinstance(data.legal_basis, StatutoryBasisIn)
        else ConsentBasis()
    )
    consents = await session.scalars(select(Consent).where(Consent.subject_id.in_([s.id for s in subjects])))
    decision = decide(
        ShareRequest(
            subject_ids=tuple(s.id for s in subjects),
            categories=frozenset(data.categories),
            recipient_tenant_id=recipient.id,
            recipient_kind=recipient.kind,
            purpose=data.purpose,
            basis=basis,
            sender_kind=sender.kind,
        ),
        [consent_policy_view(c) for c in consents],
        now,
    )
    if isinstance(decision, Deny):
        audit.touched(deny_code=decision.code.value, category=decision.category.value if decision.category else None)
        raise _consent_required(decision, subjects)
    exchange_id = uuid7()
    shared = await _projection(session, deps, case, subjects, decision.categories)
    text = {"problem": data.problem, "requested_service": data.requested_service}
    if isinstance(basis, StatutoryBasis):
        text["justification"] = basis.justification
    if plan is not None:
        shared["plan"] = dict(plan)
    referral = await new_copy(
        session,
        deps,
        principal.tenant_id,
        exchange_id=exchange_id,
        side=Side.SENDER,
        from_tenant_id=principal.tenant_id,
        to_tenant_id=recipient.id,
        case_ref=case.reference,
        kind=data.kind.value,
        purpose=data.purpose,
        urgency=data.urgency.value,
        respond_by=respond_by.at,
        complete_by=complete_by.at,
        respond_by_date=respond_by.day,
        complete_by_date=complete_by.day,
        categories=sorted(c.value for c in decision.categories),
        subject_ids=[str(s.id) for s in subjects],
        legal_basis=basis,
        review_required=decision.review_required,
        sealed={**text, **shared},
        case_id=case.id,
        service_code=data.service,
        idempotency_key=idempotency_key,
        request_hash=request_hash(data),
        consent_ids=sorted({str(c) for ids in decision.consents_by_subject.values() for c in ids}),
    )
    await add_timeline(session, referral, Status.REQUESTED, now, principal.tenant_id, None, None)
    # Numbered here, laid out and sent on by the letter worker after this transaction commits.
    letter = await register_letter(
        session,
        deps,
        principal=principal,
        referral=referral,
        sender=sender,
        addressee=recipient,
        shared={**text, **shared},
        basis=basis,
        language=data.letter_language,
    )
    await enqueue(
        session,
        deps,
        sender=principal.tenant_id,
        recipient=recipient.id,
        exchange_id=exchange_id,
        body=ReferralRequested(
            referral_id=exchange_id,
            kind=referral.kind,
            purpose=referral.purpose,
            urgency=referral.urgency,
            respond_by=respond_by.at,
            complete_by=complete_by.at,
            case_ref=case.reference,
            categories=referral.categories,
            legal_basis=_basis_body(basis),
            requested_at=now,
            subject_pseudonyms=list(pseudonyms),
            problem=data.problem,
            requested_service=data.requested_service,
            justification=basis.justification if isinstance(basis, StatutoryBasis) else None,
            subjects=shared["subjects"],
            needs=shared.get("needs"),
            summary=shared.get("summary"),
            plan=shared.get("plan"),
            service=data.service,
            letter=letter,
            respond_by_date=respond_by.day,
            complete_by_date=complete_by.day,
        ),
    )
    audit.touched(
        resource_type="referral",
        resource_id=exchange_id,
        recipient=str(recipient.id),
        categories=referral.categories,
        review_required=decision.review_required,
        letter=letter.registration_number,
    )
    await session.flush()
    return referral, True


async def _hold_idempotency_key(session: AsyncSession, tenant_id: uuid.UUID, idempotency_key: str) -> None:
    """Hold the tenant's Idempotency-Key until this transaction ends.

    An agency system that retries while its first attempt still runs (it gave up waiting for the answer) then waits
    for that attempt and is answered with its referral, instead of failing on the key's unique constraint when the
    first attempt commits. SQLite transactions here hold the database's write lock from BEGIN, which does the same.
    """
    if (await session.connection()).dialect.name != "postgresql":
        return
    digest = hashlib.sha256(tenant_id.bytes + idempotency_key.encode()).digest()
    # A transaction-level advisory lock: released by the commit or rollback, however the transaction ends.
    await session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True))))


def _check_service(profile: Mapping[str, Any], code: str) -> None:
    """A referral may name one of the services the recipient publishes in the directory (by its code)."""
    services = [s for s in profile.get("services", []) if isinstance(s, Mapping)]
    codes = [str(s.get("code") or (s.get("problems") or [""])[0]) for s in services]
    if code not in codes:
        offered = ", ".join(c for c in codes if c) or "none"
        raise InvalidInput(f"The recipient offers no service with the code {code!r} (its services: {offered}).")


def _basis_body(basis: LegalBasis) -> LegalBasisBody:
    if isinstance(basis, StatutoryBasis):
        return LegalBasisBody(type="statutory", reference=basis.reference)
    return LegalBasisBody(type="consent")


def _consent_required(deny: Deny, subjects: list[Subject]) -> ConsentRequired:
    refs = {s.id: s.ref for s in subjects}
    subject_ref = refs.get(deny.subject_id) if deny.subject_id else None
    reason = deny.reason
    if deny.subject_id is not None and subject_ref is not None:
        # The policy names subjects by id; people reading the answer know them by their ref in the case.
        reason = reason.replace(str(deny.subject_id), f"'{subject_ref}'")
    return ConsentRequired(reason, deny, subject_ref)


async def _projection(
    session: AsyncSession, deps: ExchangeDeps, case: Any, subjects: list[Subject], categories: frozenset[Category]
) -> dict[str, Any]:
    """Only what the permitted categories release (data minimisation); a subject is always at least its ref."""
    projected = []
    for subject in subjects:
        fields = await subject_fields(session, deps, subject)
        released = {name: fields.get(name) for name, category in SUBJECT_FIELDS.items() if category in categories}
        projected.append({"ref": subject.ref, **{k: v for k, v in released.items() if v not in (None, {}, "")}})
    contents = await case_contents(session, deps, case)
    shared: dict[str, Any] = {"subjects": projected}
    if Category.SOCIAL_ASSESSMENT in categories and contents.get("needs"):
        shared["needs"] = contents["needs"]
    if Category.CASE_NOTES in categories and contents.get("summary"):
        shared["summary"] = contents["summary"]
    return shared


async def new_copy(
    session: AsyncSession,
    deps: ExchangeDeps,
    tenant_id: uuid.UUID,
    *,
    exchange_id: uuid.UUID,
    side: Side,
    legal_basis: LegalBasis | Mapping[str, str],
    sealed: dict[str, Any],
    **columns: Any,
) -> Referral:
    referral_id = uuid7()
    context = sealed_context("referral", referral_id)
    key, wrapped = await deps.datakeys.create(session, tenant_id, context)
    basis_type = (
        "statutory"
        if isinstance(legal_basis, StatutoryBasis)
        or (isinstance(legal_basis, Mapping) and legal_basis.get("type") == "statutory")
        else "consent"
    )
    reference = (
        legal_basis.reference
        if isinstance(legal_basis, StatutoryBasis)
        else (legal_basis.get("reference") if isinstance(legal_basis, Mapping) else None)
    )
    referral = Referral(
        id=referral_id,
        tenant_id=tenant_id,
        exchange_id=exchange_id,
        side=side.value,
        status=Status.RECEIVED if side is Side.RECIPIENT else Status.REQUESTED,
        legal_basis=basis_type,
        statutory_reference=reference,
        kek_kid=wrapped.kek_kid,
        data_key_wrapped=wrapped.wrapped,
        sealed=key.seal(sealed, context=context),
        **columns,
    )
    session.add(referral)
    await session.flush()
    return referral


async def add_timeline(
    session: AsyncSession,
    referral: Referral,
    status: str,
    at: dt.datetime,
    by_tenant: uuid.UUID,
    note: str | None,
    key: DataKey | None,
) -> None:
    """One entry of the copy's timeline: a Core insert, as nothing reads the entry back in this transaction."""
    note_sealed = None
    if note and key is not None:
        note_sealed = key.seal({"note": note}, context=sealed_context("timeline", referral.id))
    await session.execute(
        insert(TimelineEntry).values(
            tenant_id=referral.tenant_id,
            referral_id=referral.id,
            status=status,
            at=at,
            by_tenant_id=by_tenant,
            note_sealed=note_sealed,
        )
    )


# -- both sides -------------------------------------------------------------------------------------------------


async def transition_referral(ctx: Context, *, referral_id: uuid.UUID, data: TransitionIn) -> Referral:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="referral", resource_id=referral_id, to=data.to)
    referral = await access_referral(session, principal, referral_id, for_write=True)
    audit.touched(subjects=await referral_pseudonyms(session, deps, referral))
    side = Side(referral.side)
    current = referral.status
    if not allowed(current, data.to, side):
        raise TransitionNotAllowed(f"The {side.value} cannot move this referral from '{current}' to '{data.to}'.")
    target = Status(data.to)
    if target is Status.COMPLETED and data.outcome is None:
        raise InvalidInput("Completing a referral needs an outcome (result and note).")
    if target is Status.REJECTED and not (data.reason or "").strip():
        raise InvalidInput("Declining a referral needs a reason.")
    now = deps.clock.now()
    note = data.outcome.note if data.outcome else data.reason
    key = await referral_key(session, deps, referral)
    referral.status = data.to
    if data.outcome is not None:
        referral.outcome_result = data.outcome.result
    await add_timeline(session, referral, data.to, now, principal.tenant_id, note, key)
    counterpart = referral.to_tenant_id if side is Side.SENDER else referral.from_tenant_id
    status = ReferralStatus(
        referral_id=referral.exchange_id,
        status=data.to,
        at=now,
        note=note or None,
        outcome=data.outcome.result if data.outcome is not None else None,
    )
    await enqueue(session, deps, sender=principal.tenant_id, recipient=counterpart, body=status)
    await session.flush()
    return referral


# Built once: every view of a referral reads its timeline.
_TIMELINE = (
    select(TimelineEntry)
    .where(TimelineEntry.referral_id == bindparam("referral_id"))
    .order_by(TimelineEntry.at, TimelineEntry.id)
)


async def referral_view(ctx: Context, referral: Referral) -> ReferralOut:
    session, deps = ctx.session, ctx.deps
    now = deps.clock.now()
    contents: dict[str, Any] = {}
    key: DataKey | None = None
    if referral.sealed is not None and referral.data_key_wrapped is not None:
        key = await referral_key(session, deps, referral)
        contents = key.open(referral.sealed, context=sealed_context("referral", referral.id))
    entries = await session.scalars(_TIMELINE, {"referral_id": referral.id})
    timeline = []
    for entry in entries:
        note = None
        if entry.note_sealed is not None and key is not None:
            note = key.open(entry.note_sealed, context=sealed_context("timeline", referral.id))["note"]
        timeline.append(TimelineOut(status=entry.status, at=entry.at, by_tenant_id=entry.by_tenant_id, note=note))
    subject_ids = referral.subject_ids if referral.side == Side.SENDER else [None] * len(contents.get("subjects", []))
    subjects = [
        SubjectOut(id=uuid.UUID(sid) if sid else _recipient_subject_id(referral, s["ref"]), **s)
        for sid, s in zip(subject_ids, contents.get("subjects", []), strict=False)
    ]
    basis = {"type": referral.legal_basis}
    if referral.statutory_reference:
        basis["reference"] = referral.statutory_reference
    outcome = None
    if referral.outcome_result:
        outcome_note = next((t.note for t in reversed(timeline) if t.status == Status.COMPLETED and t.note), "")
        outcome = {"result": referral.outcome_result, "note": outcome_note or ""}
    return ReferralOut(
        **_summary_fields(referral, now),
        purpose=referral.purpose,
        problem=contents.get("problem", ""),
        requested_service=contents.get("requested_service", ""),
        categories=referral.categories,
        legal_basis=basis,
        subjects=subjects,
        timeline=timeline,
        restricted=referral.restricted,
        case_id=referral.case_id,
        needs=contents.get("needs"),
        summary=contents.get("summary"),
        outcome=outcome,
        plan=contents.get("plan"),
        service=referral.service_code,
        letter=await letter_summary(session, referral),
        own_basis=_own_basis(referral, contents),
        assignee_id=referral.assignee_id if referral.side == Side.RECIPIENT else None,
    )


def _own_basis(referral: Referral, contents: dict[str, Any]) -> dict[str, str] | None:
    if referral.side != Side.RECIPIENT or not referral.recipient_basis_reference:
        return None
    return {
        "reference": referral.recipient_basis_reference,
        "justification": str(contents.get("own_basis_justification", "")),
    }


def _recipient_subject_id(referral: Referral, ref: str) -> uuid.UUID:
    """A stable id for a shared subject on the recipient's side that reveals nothing of the sender's ids."""
    return uuid.uuid5(referral.exchange_id, ref)


async def read_referral(ctx: Context, *, referral_id: uuid.UUID) -> ReferralOut:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="referral", resource_id=referral_id)
    referral = await access_referral(session, principal, referral_id, for_write=False)
    pseudonyms = await referral_pseudonyms(session, deps, referral)
    audit.touched(subjects=pseudonyms, purpose=referral.purpose, legal_basis=referral.legal_basis, side=referral.side)
    # What the read returns of those people: a restricted copy keeps their refs only (the anomaly rules judge this).
    audit.touched(categories=[] if referral.restricted else sorted(referral.categories))
    view = await referral_view(ctx, referral)
    await report_access(ctx, referral, pseudonyms)
    return view


async def report_access(ctx: Context, referral: Referral, pseudonyms: list[str]) -> None:
    """Tell the sharing agency who at this agency opened what it shared (an access.receipt for its audit trail)."""
    session, deps, audit = ctx.session, ctx.deps, ctx.audit
    if referral.side != Side.RECIPIENT or referral.restricted:
        return
    actor = audit.actor
    await enqueue(
        session,
        deps,
        sender=referral.tenant_id,
        recipient=referral.from_tenant_id,
        body=AccessReceipt(
            referral_id=referral.exchange_id,
            action=audit.action.value,
            at=deps.clock.now(),
            actor=ReceiptActor(kind=actor.kind, id=actor.id, role=actor.role),
            purpose=referral.purpose,
            subjects=pseudonyms,
            resource=str(audit.resource_id) if audit.resource_id is not None else None,
            own_basis=referral.recipient_basis_reference,
        ),
    )


async def referral_pseudonyms(session: AsyncSession, deps: ExchangeDeps, referral: Referral) -> list[str]:
    """The subjects' pseudonyms under the sending tenant's key, which both sides' audit events use."""
    if referral.side == Side.SENDER:
        return list(deps.audit.pseudonyms(referral.tenant_id, [uuid.UUID(s) for s in referral.subject_ids]))
    if referral.sealed is None or referral.data_key_wrapped is None:
        return []
    key = await referral_key(session, deps, referral)
    contents = key.open(referral.sealed, context=sealed_context("referral", referral.id))
    return [str(p) for p in contents.get("pseudonyms", [])]


async def list_referrals(
    ctx: Context,
    *,
    box: str,
    status: str | None,
    overdue: bool | None,
    cursor: str | None,
    limit: int,
    kind: ReferralKind | None = None,
    shared_by: uuid.UUID | None = None,
) -> tuple[list[ReferralSummary], str | None]:
    """One page of a box, newest first; `kind` keeps one kind only (the pages' list of plan tasks given to us), and
    `shared_by` the outgoing referrals of the cases that member of staff has (the pages' "shared by me")."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    side = Side.SENDER if box == "outgoing" else Side.RECIPIENT
    query = select(Referral).where(Referral.tenant_id == principal.tenant_id, Referral.side == side.value)
    if shared_by is not None:
        query = query.where(Referral.case_id.in_(cases_of_worker(principal.tenant_id, shared_by)))
    if kind is not None:
        query = query.where(Referral.kind == kind.value)
    if status:
        if status not in set(Status):
            raise InvalidInput(f"Unknown status {status!r}.")
        query = query.where(Referral.status == status)
    now = deps.clock.now()
    if overdue is not None:
        late = or_(
            and_(Referral.status.in_(AWAITING_ANSWER), Referral.respond_by < now),
            and_(Referral.status.in_(IN_HAND), Referral.complete_by < now),
        )
        query = query.where(late if overdue else not_(late))
    after = decode_cursor(cursor) if cursor else None
    page = await scalars_page(session, by_id(query, Referral.id, after, newest_first=True), limit)
    items = [referral_summary(r, now) for r in page.rows]
    audit.touched(resource_type="referral", box=box, referrals=[str(r.exchange_id) for r in page.rows])
    return items, encode_cursor(page.last.id) if page.last else None


def cases_of_worker(tenant_id: uuid.UUID, user_id: uuid.UUID) -> Select[uuid.UUID]:
    """The ids of a tenant's cases a member of staff has: as key worker, or as the one who opened a case without one
    (the person reminded of its referrals: exchange.plans.reminders)."""
    return select(Case.id).where(
        Case.tenant_id == tenant_id,
        or_(
            Case.key_worker_id == user_id,
            and_(Case.key_worker_id.is_(None), Case.created_by_kind == "user", Case.created_by_id == user_id),
        ),
    )


def referral_summary(referral: Referral, now: dt.datetime) -> ReferralSummary:
    """A referral as a row of a list: its parties, urgency, deadlines and whether it is overdue at ``now``."""
    return ReferralSummary(**_summary_fields(referral, now))


def _summary_fields(referral: Referral, now: dt.datetime) -> dict[str, Any]:
    """What a list row shows of a referral, which the whole referral shows too (ReferralSummary's fields)."""
    return {
        "id": referral.exchange_id,
        "kind": referral.kind,
        "status": referral.status,
        "from_tenant_id": referral.from_tenant_id,
        "to_tenant_id": referral.to_tenant_id,
        "case_ref": referral.case_ref,
        "urgency": referral.urgency,
        "respond_by": referral.respond_by,
        "complete_by": referral.complete_by,
        "respond_by_date": referral.respond_by_date,
        "complete_by_date": referral.complete_by_date,
        "overdue": is_overdue(referral, now),
    }
