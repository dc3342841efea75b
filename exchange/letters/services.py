"""A referral's letter: numbered when it is sent, laid out and signed after, accepted (verified) by the recipient."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from exchange.cases.datakeys import sealed_context
from exchange.cases.models import Document
from exchange.cases.policy import LegalBasis, StatutoryBasis
from exchange.cases.services import new_document
from exchange.deps import ExchangeDeps
from exchange.letters.models import Letter
from exchange.letters.numbering import next_registration_number
from exchange.letters.render import (
    LANGUAGES,
    MAX_LETTER_BYTES,
    Annex,
    LetterContent,
    LetterUnavailable,
    Party,
    content_from_json,
    content_to_json,
)
from exchange.letters.schemas import LetterOut
from exchange.letters.signing import LetterBinding, LetterCheck, Verification, sign_letter, verify_letter
from exchange.referrals.keys import referral_key
from exchange.referrals.models import Referral
from exchange.transport.bodies import LetterBody, LetterNotice, ReferralLetter
from exchange.transport.outbox import enqueue
from tenants.calendar import time_zone, today_in
from tenants.models import ApiClient, KeyUse, Role, Tenant, User
from tenants.principal import ActorKind, Principal

log = logging.getLogger("casebridge.exchange")

PDF: Final = "application/pdf"
# The roles a letter is signed in, most senior first, when the signer holds several.
_SIGNING_ROLES: Final = (Role.SUPERVISOR, Role.SPECIALIST, Role.INTAKE)
_SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
_MAX_NUMBER: Final = 64
_MAX_SIGNATURE: Final = 4096


class LetterAlreadyKept(ValueError):
    """A second letter for a referral whose letter has already arrived: never applied."""


def _party(tenant: Tenant) -> Party:
    """Letterhead lines from the tenant's directory profile, where it has published them."""
    contacts: Mapping[str, Any] = tenant.contacts or {}
    profile: Mapping[str, Any] = tenant.service_profile or {}
    address = contacts.get("address")
    structured = profile.get("address")
    if not address and isinstance(structured, Mapping):
        parts = (structured.get(k) for k in ("postal_code", "region", "city", "address_1"))
        address = ", ".join(str(p) for p in parts if p)
    return Party(
        name=tenant.name,
        region=tenant.region,
        address=str(address) if address else None,
        phone=str(contacts["phone"]) if contacts.get("phone") else None,
        email=str(contacts["email"]) if contacts.get("email") else None,
        website=str(contacts["website"]) if contacts.get("website") else None,
    )


async def _signer(session: AsyncSession, principal: Principal) -> tuple[str, str | None]:
    """The signer's name and role: a member of staff by name (or email), an agency system by its registered name."""
    role = next((r.value for r in _SIGNING_ROLES if r.value in principal.roles), None)
    if principal.actor_kind is ActorKind.USER:
        user = await session.scalar(
            select(User).where(User.id == principal.actor_id, User.tenant_id == principal.tenant_id)
        )
        return (user.display_name or user.email if user else "—"), role
    client = await session.scalar(
        select(ApiClient).where(ApiClient.id == principal.actor_id, ApiClient.tenant_id == principal.tenant_id)
    )
    return (client.name if client else "—"), role


def _annexes(shared: Mapping[str, Any]) -> tuple[Annex, ...]:
    annexes = [Annex("subjects", len(shared.get("subjects", [])))]
    if shared.get("needs"):
        annexes.append(Annex("needs"))
    if shared.get("summary"):
        annexes.append(Annex("summary"))
    return tuple(annexes)


def _file_name(registration_number: str) -> str:
    return registration_number.replace("/", "-") + ".pdf"


PENDING: Final = "pending"
READY: Final = "ready"


def _letter_context(letter_id: uuid.UUID) -> str:
    return sealed_context("letter", letter_id)


async def register_letter(
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    principal: Principal,
    referral: Referral,
    sender: Tenant,
    addressee: Tenant,
    shared: Mapping[str, Any],
    basis: LegalBasis,
    language: str,
) -> LetterNotice:
    """Number the letter of a referral being sent and keep it pending, in the sending transaction.

    Everything the letter will say is fixed here and sealed with the pending row: `shared` is exactly what the
    referral's envelope carries (its text and the policy's projection), so the letter never says more than the
    referral. The layout, the signature and the PDF's journey to the recipient are the letter worker's, after the
    commit (`render_pending`). Returns the referral envelope's `letter` member, which announces the letter.
    """
    if language not in LANGUAGES:
        raise ValueError("unsupported letter language")
    if deps.letters.unavailable is not None:
        raise deps.letters.unavailable
    now = deps.clock.now()
    # The letter's date and registration year are the sending agency's today.
    today = today_in(time_zone(sender.time_zone), now)
    signer_name, signer_role = await _signer(session, principal)
    signing = await deps.keyring.usable_tenant_keys(session, principal.tenant_id, KeyUse.SIGNING)
    if not signing or signing[0].retired_at is not None:
        raise LetterUnavailable("This agency has no active signing key, so its letter cannot be signed.")
    legal_basis = {"type": "consent"}
    if isinstance(basis, StatutoryBasis):
        legal_basis = {"type": "statutory", "reference": basis.reference, "justification": basis.justification}
    # Taken last: from here to commit, concurrent senders of this tenant wait for the counter (no layout in between).
    number = await next_registration_number(
        session, deps.clock, tenant_id=principal.tenant_id, year=today.year, slug=sender.slug
    )
    registration_number = str(number)
    content = LetterContent(
        language=language,
        kind=referral.kind,
        registration_number=registration_number,
        date=today,
        sender=_party(sender),
        addressee=_party(addressee),
        referral_id=referral.exchange_id,
        case_ref=referral.case_ref,
        purpose=referral.purpose,
        problem=str(shared.get("problem", "")),
        requested_service=str(shared.get("requested_service", "")),
        urgency=referral.urgency,
        respond_by=referral.respond_by_date,
        complete_by=referral.complete_by_date,
        legal_basis=legal_basis,
        categories=tuple(referral.categories),
        signer_name=signer_name,
        signer_role=signer_role,
        subjects=tuple(shared.get("subjects", [])),
        needs=shared.get("needs"),
        summary=shared.get("summary"),
        plan=shared.get("plan"),
        annexes=_annexes(shared),
    )
    letter_id = uuid7()
    key = await referral_key(session, deps, referral)
    session.info[LETTER_PENDING] = True
    session.add(
        Letter(
            id=letter_id,
            tenant_id=principal.tenant_id,
            referral_id=referral.id,
            registration_number=registration_number,
            register_year=number.year,
            register_number=number.number,
            language=language,
            status=PENDING,
            issued_at=now,
            next_attempt_at=now,
            attempts=0,
            content_sealed=key.seal(content_to_json(content), context=_letter_context(letter_id)),
        )
    )
    return LetterNotice(
        v=1, registration_number=registration_number, language=language, name=_file_name(registration_number)
    )


# `session.info` key set when a transaction leaves a letter pending: after its commit the letter layout has work.
LETTER_PENDING: Final = "casebridge.letter_pending"


# -- the letter worker (sender side): no transaction is open while a letter is laid out ----------------------------


@dataclass(frozen=True, slots=True)
class PendingLetter:
    """What the worker read of one pending letter before closing its session to lay it out."""

    letter_id: uuid.UUID
    tenant_id: uuid.UUID
    content: LetterContent


async def claim_pending(
    session: AsyncSession, now: dt.datetime, *, limit: int, claim_for: dt.timedelta
) -> list[uuid.UUID]:
    """Claim up to `limit` due pending letters (hidden from other workers for `claim_for`), oldest first."""
    ids = list(
        await session.scalars(
            select(Letter.id)
            .where(Letter.status == PENDING, Letter.content_sealed.is_not(None), Letter.next_attempt_at <= now)
            .order_by(Letter.next_attempt_at, Letter.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        await session.execute(
            update(Letter)
            .where(Letter.id.in_(ids))
            .values(next_attempt_at=now + claim_for)
            .execution_options(synchronize_session=False)
        )
    return ids


async def pending_content(session: AsyncSession, deps: ExchangeDeps, letter_id: uuid.UUID) -> PendingLetter | None:
    """The content of a letter still pending, opened with its referral's data key; None once it is stored."""
    row = (
        await session.execute(
            select(Letter, Referral).join(Referral, Referral.id == Letter.referral_id).where(Letter.id == letter_id)
        )
    ).first()
    if row is None:
        return None
    letter, referral = row
    if letter.status != PENDING or letter.content_sealed is None:
        return None
    key = await referral_key(session, deps, referral)
    data = key.open(letter.content_sealed, context=_letter_context(letter.id))
    return PendingLetter(letter.id, letter.tenant_id, content_from_json(data))


async def store_rendered(session: AsyncSession, deps: ExchangeDeps, letter_id: uuid.UUID, pdf: bytes) -> bool:
    """Sign and keep a laid-out letter and queue it for the recipient, in the caller's (short) transaction.

    Store-once: only a letter still pending takes a PDF, and the row is locked (PostgreSQL) or the database is
    (SQLite) from this read to commit, so a second worker that laid out the same letter stores nothing and sends
    nothing. The signature's `cb.iat` is the send time, so a retry after a crash signs the same way. Returns
    whether this call stored the letter.
    """
    row = (
        await session.execute(
            select(Letter, Referral)
            .join(Referral, Referral.id == Letter.referral_id)
            .where(Letter.id == letter_id)
            .with_for_update(of=Letter)
        )
    ).first()
    if row is None:
        return False
    letter, referral = row
    if letter.status != PENDING:
        return False
    signing = await deps.keyring.usable_tenant_keys(session, letter.tenant_id, KeyUse.SIGNING)
    if not signing or signing[0].retired_at is not None:
        raise LetterUnavailable("This agency has no active signing key, so its letter cannot be signed.")
    binding = LetterBinding(
        letter.registration_number, referral.exchange_id, referral.from_tenant_id, referral.to_tenant_id
    )
    issued_at = letter.issued_at or deps.clock.now()
    signature = sign_letter(pdf, binding, signing_key=deps.keyring.private_jwk(signing[0]), issued_at=issued_at)
    # A self-check against the keys partners will use: a letter that would not verify is never sent.
    check = verify_letter(pdf, signature, binding, await deps.published.signing_keys(session, letter.tenant_id))
    if check.verification is not Verification.VALID:
        raise LetterUnavailable("The letter could not be signed with this agency's published key.")
    name = _file_name(letter.registration_number)
    document = await new_document(session, deps, letter.tenant_id, name, PDF, pdf, referral_id=referral.id)
    digest = hashlib.sha256(pdf).hexdigest()
    letter.status, letter.sha256, letter.signature = READY, digest, signature
    letter.signing_kid, letter.verification, letter.document_id = check.kid, check.verification.value, document.id
    letter.content_sealed, letter.next_attempt_at, letter.last_error = None, None, None
    sent = LetterBody(
        v=1,
        registration_number=letter.registration_number,
        language=letter.language,
        name=name,
        media_type=PDF,
        sha256=digest,
        signature=signature,
        content=base64.b64encode(pdf).decode("ascii"),
    )
    await enqueue(
        session,
        deps,
        sender=referral.from_tenant_id,
        recipient=referral.to_tenant_id,
        exchange_id=referral.exchange_id,
        body=ReferralLetter(referral_id=referral.exchange_id, letter=sent),
    )
    return True


async def note_render_failure(
    session: AsyncSession, letter_id: uuid.UUID, error: str, now: dt.datetime, retry_in: dt.timedelta
) -> None:
    """A layout or store that failed: the letter stays pending and is tried again after `retry_in`."""
    letter = await session.scalar(select(Letter).where(Letter.id == letter_id, Letter.status == PENDING))
    if letter is not None:
        letter.attempts += 1
        letter.next_attempt_at = now + retry_in
        letter.last_error = error[:64]


# -- the recipient -----------------------------------------------------------------------------------------------


def _announced_number(member: Mapping[str, Any]) -> str:
    number = member.get("registration_number")
    return number if isinstance(number, str) and 0 < len(number) <= _MAX_NUMBER else ""


async def expect_letter(session: AsyncSession, referral: Referral, notice: LetterNotice | None) -> None:
    """A received referral announces its letter (`letter` of referral.requested): keep it as pending until the
    `referral.letter` envelope brings the PDF. Nothing when the referral announces none."""
    if notice is None:
        return
    language = notice.language if notice.language in LANGUAGES else "ru"
    number = notice.registration_number if 0 < len(notice.registration_number) <= _MAX_NUMBER else ""
    session.add(
        Letter(
            tenant_id=referral.tenant_id,
            referral_id=referral.id,
            registration_number=number,
            language=language,
            status=PENDING,
        )
    )


def _received_pdf(member: Mapping[str, Any]) -> bytes | None:
    content = member.get("content")
    if not isinstance(content, str) or len(content) > MAX_LETTER_BYTES * 4 // 3 + 4:
        return None
    try:
        pdf = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return None
    return pdf if pdf.startswith(b"%PDF-") else None


async def accept_letter(session: AsyncSession, deps: ExchangeDeps, referral: Referral, member: Any) -> LetterCheck:
    """Keep the letter a `referral.letter` envelope brought for a received referral, with the verdict on its signature.

    A letter that fails verification is still kept (and shown as invalid): the envelope itself is signed by the
    sender, and the recipient must be able to see what it was sent. After the family withdrew consent the PDF is
    not kept at all (the register entry and the verdict are). Raises LetterAlreadyKept for a second letter.
    """
    existing = await letter_of(session, referral)
    if existing is not None and existing.status != PENDING:
        raise LetterAlreadyKept("the referral already has its letter")
    malformed = not isinstance(member, Mapping)
    member = {} if malformed else member
    registration_number = _announced_number(member)
    signature = member.get("signature")
    signature = signature if isinstance(signature, str) and len(signature) <= _MAX_SIGNATURE else None
    language = member.get("language") if member.get("language") in LANGUAGES else "ru"
    pdf = _received_pdf(member)
    binding = LetterBinding(registration_number, referral.exchange_id, referral.from_tenant_id, referral.to_tenant_id)
    sender_keys = await deps.published.signing_keys(session, referral.from_tenant_id)
    check = verify_letter(pdf, signature, binding, sender_keys)
    if malformed:
        check = LetterCheck(Verification.INVALID, "the letter member is not a JSON object")
    if not registration_number and check.verification is Verification.VALID:
        check = LetterCheck(Verification.INVALID, "the letter names no registration number", check.kid)
    announced = existing.registration_number if existing is not None else ""
    if announced and announced != registration_number and check.verification is Verification.VALID:
        check = LetterCheck(
            Verification.INVALID, "the letter's number is not the one its referral announced", check.kid
        )
    if check.verification is not Verification.VALID:
        log.warning("received letter not verified: %s", check.reason)
    document_id = None
    if pdf is not None and not referral.restricted:
        name = _file_name(registration_number) if registration_number else "letter.pdf"
        document = await new_document(session, deps, referral.tenant_id, name, PDF, pdf, referral_id=referral.id)
        document_id = document.id
    declared = member.get("sha256")
    digest = (
        hashlib.sha256(pdf).hexdigest()
        if pdf is not None
        else (declared if isinstance(declared, str) and _SHA256_HEX.fullmatch(declared) else "")
    )
    letter = existing or Letter(tenant_id=referral.tenant_id, referral_id=referral.id)
    letter.registration_number = registration_number or announced
    letter.language, letter.sha256, letter.signature, letter.signing_kid = language, digest, signature, check.kid
    letter.verification, letter.document_id, letter.status = check.verification.value, document_id, READY
    if existing is None:
        session.add(letter)
    return check


_LETTER_OF = select(Letter).where(
    Letter.referral_id == bindparam("referral_id"), Letter.tenant_id == bindparam("tenant_id")
)


async def letter_of(session: AsyncSession, referral: Referral) -> Letter | None:
    letter: Letter | None = await session.scalar(
        _LETTER_OF, {"referral_id": referral.id, "tenant_id": referral.tenant_id}
    )
    return letter


async def letter_summary(session: AsyncSession, referral: Referral) -> LetterOut | None:
    """The letter's register entry and signature verdict for the referral's detail; None when it has none."""
    letter = await letter_of(session, referral)
    if letter is None:
        return None
    return LetterOut(
        registration_number=letter.registration_number,
        sha256=letter.sha256,
        signature=cast("Literal['valid', 'invalid', 'missing'] | None", letter.verification),
        language=letter.language,
        status=cast("Literal['pending', 'ready']", letter.status),
    )


async def forget_letter(session: AsyncSession, referral: Referral) -> None:
    """After the family withdrew consent: the PDF names people, so the recipient's copy is crypto-shredded.

    The register entry (number, hash, signature verdict) stays, as the referral's own text and timeline do.
    """
    letter = await letter_of(session, referral)
    if letter is None or letter.document_id is None:
        return
    document = await session.scalar(
        select(Document).where(Document.id == letter.document_id, Document.tenant_id == referral.tenant_id)
    )
    if document is not None:
        document.data_key_wrapped = None
        document.content = b""
        document.sealed = None


async def waiting_layout(session: AsyncSession) -> int:
    """Sent letters numbered and pending, whose PDF the letter worker has not stored yet (claimed ones included)."""
    count = await session.scalar(
        select(func.count()).select_from(Letter).where(Letter.status == PENDING, Letter.content_sealed.is_not(None))
    )
    return int(count or 0)
