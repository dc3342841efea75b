"""Issuing a referral's letter on the sending side and accepting it, verified, on the receiving side."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.cases import _sealed_document
from exchange.deps import ExchangeDeps
from exchange.letters.numbering import next_registration_number
from exchange.letters.render import LANGUAGES, MAX_LETTER_BYTES, Annex, LetterContent, LetterUnavailable, Party
from exchange.letters.signing import LetterBinding, LetterCheck, Verification, sign_letter, verify_letter
from exchange.models import Document, Letter, Referral
from exchange.policy import LegalBasis, StatutoryBasis
from exchange.schemas import LetterOut
from tenants.models import ApiClient, KeyUse, Role, Tenant, User
from tenants.principal import ActorKind, Principal

log = logging.getLogger("casebridge.exchange")

PDF: Final = "application/pdf"
# The roles a letter is signed in, most senior first, when the signer holds several.
_SIGNING_ROLES: Final = (Role.SUPERVISOR, Role.SPECIALIST, Role.INTAKE)
_SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
_MAX_NUMBER: Final = 64
_MAX_SIGNATURE: Final = 4096


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


async def _tenant(session: AsyncSession, tenant_id: Any) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.id == tenant_id))
    if tenant is None:
        raise LookupError("the tenant of a letter is not hosted here")
    return tenant


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


async def issue_letter(
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    principal: Principal,
    referral: Referral,
    shared: Mapping[str, Any],
    basis: LegalBasis,
    language: str,
) -> dict[str, Any]:
    """Number, lay out, sign and keep the letter of a referral being sent, in the sending transaction.

    `shared` is exactly what the referral's envelope carries (its text and the policy's projection), so the letter
    never says more than the referral. Returns the envelope's `letter` member.
    """
    if language not in LANGUAGES:
        raise ValueError("unsupported letter language")
    now = deps.clock.now()
    local = now.astimezone(deps.letters.zone)
    sender = await _tenant(session, principal.tenant_id)
    addressee = await _tenant(session, referral.to_tenant_id)
    signer_name, signer_role = await _signer(session, principal)
    signing = await deps.keyring.usable_tenant_keys(session, principal.tenant_id, KeyUse.SIGNING)
    if not signing or signing[0].retired_at is not None:
        raise LetterUnavailable("This agency has no active signing key, so its letter cannot be signed.")
    legal_basis = {"type": "consent"}
    if isinstance(basis, StatutoryBasis):
        legal_basis = {"type": "statutory", "reference": basis.reference, "justification": basis.justification}
    # Taken last before the layout: from here to commit, concurrent senders of this tenant wait for the counter.
    number = await next_registration_number(session, deps.clock, tenant_id=principal.tenant_id, year=local.year)
    registration_number = str(number)
    content = LetterContent(
        language=language, kind=referral.kind, registration_number=registration_number, date=local.date(),
        sender=_party(sender), addressee=_party(addressee), referral_id=referral.exchange_id,
        case_ref=referral.case_ref, purpose=referral.purpose, problem=str(shared.get("problem", "")),
        requested_service=str(shared.get("requested_service", "")), urgency=referral.urgency,
        respond_by=referral.respond_by.astimezone(deps.letters.zone),
        complete_by=referral.complete_by.astimezone(deps.letters.zone),
        legal_basis=legal_basis, categories=tuple(referral.categories), signer_name=signer_name,
        signer_role=signer_role, subjects=tuple(shared.get("subjects", [])), needs=shared.get("needs"),
        summary=shared.get("summary"), plan=shared.get("plan"), annexes=_annexes(shared),
    )  # fmt: skip
    pdf = await deps.letters.render(content)
    binding = LetterBinding(registration_number, referral.exchange_id, principal.tenant_id, referral.to_tenant_id)
    signature = sign_letter(pdf, binding, signing_key=deps.keyring.private_jwk(signing[0]), issued_at=now)
    # A self-check against the keys partners will use: a letter that would not verify is never sent.
    check = verify_letter(pdf, signature, binding, await deps.published.signing_keys(session, principal.tenant_id))
    if check.verification is not Verification.VALID:
        raise LetterUnavailable("The letter could not be signed with this agency's published key.")
    name = _file_name(registration_number)
    document = await _sealed_document(session, deps, principal.tenant_id, name, PDF, pdf)
    document.referral_id = referral.id
    digest = hashlib.sha256(pdf).hexdigest()
    session.add(
        Letter(
            tenant_id=principal.tenant_id, referral_id=referral.id, registration_number=registration_number,
            register_year=number.year, register_number=number.number, language=language, sha256=digest,
            signature=signature, signing_kid=check.kid, verification=check.verification.value,
            document_id=document.id,
        )
    )  # fmt: skip
    return {
        "v": 1, "registration_number": registration_number, "language": language, "name": name, "media_type": PDF,
        "sha256": digest, "signature": signature, "content": base64.b64encode(pdf).decode("ascii"),
    }  # fmt: skip


def _received_pdf(member: Mapping[str, Any]) -> bytes | None:
    content = member.get("content")
    if not isinstance(content, str) or len(content) > MAX_LETTER_BYTES * 4 // 3 + 4:
        return None
    try:
        pdf = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return None
    return pdf if pdf.startswith(b"%PDF-") else None


async def accept_letter(
    session: AsyncSession, deps: ExchangeDeps, referral: Referral, member: Any
) -> LetterCheck | None:
    """Keep the letter that came with a received referral, with the verdict on its signature.

    A letter that fails verification is still kept (and shown as invalid): the referral itself came in an envelope
    the sender signed, and the recipient must be able to see what it was sent. None when no letter came.
    """
    if member is None:
        return None
    malformed = not isinstance(member, Mapping)
    member = {} if malformed else member
    number = member.get("registration_number")
    registration_number = number if isinstance(number, str) and 0 < len(number) <= _MAX_NUMBER else ""
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
    if check.verification is not Verification.VALID:
        log.warning("received letter not verified: %s", check.reason)
    document_id = None
    if pdf is not None:
        name = _file_name(registration_number) if registration_number else "letter.pdf"
        document = await _sealed_document(session, deps, referral.tenant_id, name, PDF, pdf)
        document.referral_id = referral.id
        document_id = document.id
    declared = member.get("sha256")
    digest = hashlib.sha256(pdf).hexdigest() if pdf is not None else (
        declared if isinstance(declared, str) and _SHA256_HEX.fullmatch(declared) else "")  # fmt: skip
    session.add(
        Letter(
            tenant_id=referral.tenant_id, referral_id=referral.id, registration_number=registration_number,
            language=language, sha256=digest, signature=signature, signing_kid=check.kid,
            verification=check.verification.value, document_id=document_id,
        )
    )  # fmt: skip
    return check


async def letter_of(session: AsyncSession, referral: Referral) -> Letter | None:
    letter: Letter | None = await session.scalar(
        select(Letter).where(Letter.referral_id == referral.id, Letter.tenant_id == referral.tenant_id)
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
        signature=cast("Literal['valid', 'invalid', 'missing']", letter.verification),
        language=letter.language,
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
