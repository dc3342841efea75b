"""Opening a referral's letter (the API's letter.pdf and the web UI's download), through the referral's access rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select

from exchange.cases.models import Document
from exchange.cases.services import document_contents
from exchange.context import Context
from exchange.letters.services import PENDING, letter_of
from exchange.referrals.access import access_referral
from exchange.referrals.services import referral_pseudonyms, report_access
from tenants.errors import Conflict, NotFound


class LetterMissing(NotFound):
    """The referral exists for the caller but has no letter (or no longer keeps its PDF)."""


class LetterPending(Conflict):
    """The referral's letter is numbered but its PDF is not here yet (being laid out, or on its way): try later."""


@dataclass(frozen=True, slots=True)
class LetterFile:
    name: str
    content: bytes
    sha256: str | None
    registration_number: str
    signature: str  # valid | invalid | missing


async def read_letter(ctx: Context, *, referral_id: uuid.UUID) -> LetterFile:
    """The letter's PDF for the sender or the recipient; a partner's read is reported back to the sender."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="referral", resource_id=referral_id)
    referral = await access_referral(session, principal, referral_id, for_write=False)
    pseudonyms = await referral_pseudonyms(session, deps, referral)
    audit.touched(subjects=pseudonyms, purpose=referral.purpose, legal_basis=referral.legal_basis, side=referral.side)
    letter = await letter_of(session, referral)
    if letter is None:
        raise LetterMissing("This referral has no letter.")
    audit.touched(letter=letter.registration_number, signature=letter.verification)
    if letter.status == PENDING:
        raise LetterPending(
            "This referral's letter is not ready yet: it is being laid out and signed, or is on its way from the "
            "sending agency. Try again in a few seconds."
        )
    document = None
    if letter.document_id is not None:
        document = await session.scalar(
            select(Document).where(Document.id == letter.document_id, Document.tenant_id == referral.tenant_id)
        )
    if document is None or document.data_key_wrapped is None:
        raise LetterMissing(
            "This referral's letter is no longer kept here: it was erased after the family withdrew consent, "
            "or it arrived unreadable."
        )
    name, content = await document_contents(session, deps, document)
    await report_access(ctx, referral, pseudonyms)
    return LetterFile(name, content, letter.sha256, letter.registration_number, letter.verification or "missing")
