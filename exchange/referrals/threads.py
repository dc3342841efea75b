"""The thread of a referral: messages with attachments, and the recipient's own legal basis for keeping data."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from exchange.cases.access import access_document
from exchange.cases.datakeys import sealed_context
from exchange.cases.models import Consent, Document
from exchange.cases.policy import Category, ConsentBasis, Deny, DenyCode, ShareRequest, decide
from exchange.cases.services import consent_policy_view, document_contents, new_document
from exchange.context import Context
from exchange.deps import ExchangeDeps
from exchange.errors import ConsentRequired
from exchange.referrals.access import access_referral
from exchange.referrals.keys import referral_key
from exchange.referrals.models import Referral, Side, ThreadMessage
from exchange.referrals.schemas import MessageIn, MessageOut, StatutoryBasisIn
from exchange.referrals.services import referral_pseudonyms, report_access
from exchange.transport.bodies import Attachment, ReferralMessage
from exchange.transport.outbox import enqueue
from tenants.errors import Forbidden, InvalidInput, NotFound
from tenants.models import Tenant

# Attachments travel inside the envelope; together they must leave room under the envelope body limit.
MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024
# A recipient's own basis is reviewed by its DPO: a reason of a few words would tell them nothing.
MIN_JUSTIFICATION = 20


async def read_document(ctx: Context, *, document_id: uuid.UUID) -> tuple[str, str, bytes]:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="document", resource_id=document_id)
    document = await access_document(session, principal, document_id, for_write=False)
    if document.data_key_wrapped is None:
        raise NotFound("No such document.")  # destroyed after a withdrawal: gone for good
    name, content = await document_contents(session, deps, document)
    if document.referral_id is not None:
        referral = await session.scalar(
            select(Referral).where(Referral.id == document.referral_id, Referral.tenant_id == principal.tenant_id)
        )
        if referral is not None:
            pseudonyms = await referral_pseudonyms(session, deps, referral)
            audit.touched(subjects=pseudonyms, referral=str(referral.exchange_id))
            await report_access(ctx, referral, pseudonyms)
    return name, document.media_type, content


async def post_message(ctx: Context, *, referral_id: uuid.UUID, data: MessageIn) -> MessageOut:
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="referral", resource_id=referral_id)
    referral = await access_referral(session, principal, referral_id, for_write=True)
    audit.touched(
        subjects=await referral_pseudonyms(session, deps, referral), attachments=[str(a) for a in data.attachments]
    )
    side = Side(referral.side)
    documents = [await access_document(session, principal, d, for_write=True) for d in dict.fromkeys(data.attachments)]
    if sum(d.size for d in documents) > MAX_ATTACHMENT_BYTES:
        raise InvalidInput(f"Attachments of one message may total at most {MAX_ATTACHMENT_BYTES // 1024} KiB.")
    if side is Side.SENDER:
        # Writing to the partner shares information about the family: the basis must still hold, now.
        await _ensure_basis_holds(session, deps, referral, with_documents=bool(documents))
    now = deps.clock.now()
    message_id = uuid7()
    key = await referral_key(session, deps, referral)
    session.add(
        ThreadMessage(
            tenant_id=referral.tenant_id,
            referral_id=referral.id,
            message_id=message_id,
            author_tenant_id=principal.tenant_id,
            at=now,
            body_sealed=key.seal({"body": data.body}, context=sealed_context("message", message_id)),
            attachment_ids=[str(d.id) for d in documents],
        )
    )
    attachments = []
    for document in documents:
        document.referral_id = referral.id
        name, content = await document_contents(session, deps, document)
        attachments.append(
            Attachment(
                name=name,
                media_type=document.media_type,
                sha256=document.sha256,
                content=base64.b64encode(content).decode(),
            )
        )
    counterpart = referral.to_tenant_id if side is Side.SENDER else referral.from_tenant_id
    message = ReferralMessage(
        referral_id=referral.exchange_id, message_id=message_id, at=now, body=data.body, attachments=attachments
    )
    await enqueue(session, deps, sender=principal.tenant_id, recipient=counterpart, body=message)
    await session.flush()
    return MessageOut(
        id=message_id,
        at=now,
        author_tenant_id=principal.tenant_id,
        body=data.body,
        attachments=[_attachment(d, a.name) for d, a in zip(documents, attachments, strict=True)],
    )


async def _ensure_basis_holds(
    session: AsyncSession, deps: ExchangeDeps, referral: Referral, *, with_documents: bool
) -> None:
    categories = {Category(c) for c in referral.categories}
    if with_documents and Category.DOCUMENTS not in categories:
        raise ConsentRequired(
            "This referral does not share documents: the family's consent for it does not cover 'documents'.",
            Deny(DenyCode.NO_CONSENT, "documents not covered", None, Category.DOCUMENTS),
            None,
        )
    if referral.legal_basis != "consent":
        return
    recipient = await session.scalar(select(Tenant).where(Tenant.id == referral.to_tenant_id))
    subject_ids = tuple(uuid.UUID(s) for s in referral.subject_ids)
    consents = await session.scalars(select(Consent).where(Consent.subject_id.in_(subject_ids)))
    decision = decide(
        ShareRequest(
            subject_ids=subject_ids,
            categories=frozenset(categories),
            recipient_tenant_id=referral.to_tenant_id,
            recipient_kind=recipient.kind if recipient else "",
            purpose=referral.purpose,
            basis=ConsentBasis(),
        ),
        [consent_policy_view(c) for c in consents],
        deps.clock.now(),
    )
    if isinstance(decision, Deny):
        raise ConsentRequired(
            "The consent this referral relies on no longer covers sharing with the partner; nothing was sent.",
            decision,
            None,
        )


def _attachment(document: Document, name: str) -> dict[str, Any]:
    return {
        "id": str(document.id),
        "name": name,
        "media_type": document.media_type,
        "size": document.size,
        "sha256": document.sha256,
    }


async def list_messages(
    ctx: Context, *, referral_id: uuid.UUID, page: tuple[int, int] | None = None
) -> list[MessageOut]:
    """The thread, oldest first; with `page` (offset, limit), that slice of it newest first (the staff page)."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="referral", resource_id=referral_id)
    referral = await access_referral(session, principal, referral_id, for_write=False)
    audit.touched(subjects=await referral_pseudonyms(session, deps, referral))
    key = await referral_key(session, deps, referral) if referral.data_key_wrapped else None
    query = select(ThreadMessage).where(ThreadMessage.referral_id == referral.id)
    if page is None:
        query = query.order_by(ThreadMessage.at)
    else:
        offset, limit = page
        query = query.order_by(ThreadMessage.at.desc(), ThreadMessage.id.desc()).offset(offset).limit(limit)
    messages = await session.scalars(query)
    views = []
    for message in messages:
        body = ""
        if key is not None and not referral.restricted:
            body = key.open(message.body_sealed, context=sealed_context("message", message.message_id))["body"]
        documents = []
        for document_id in message.attachment_ids:
            document = await session.scalar(
                select(Document).where(Document.id == uuid.UUID(document_id), Document.tenant_id == referral.tenant_id)
            )
            if document is not None and document.data_key_wrapped is not None:
                name, _ = await document_contents(session, deps, document)
                documents.append(_attachment(document, name))
        views.append(
            MessageOut(
                id=message.message_id,
                at=message.at,
                author_tenant_id=message.author_tenant_id,
                body=body,
                attachments=documents,
            )
        )
    return views


async def apply_message(
    session: AsyncSession, deps: ExchangeDeps, referral: Referral, author: uuid.UUID, message: ReferralMessage
) -> None:
    """Store the partner's message and its attachments under this tenant's own data keys (ValueError: malformed)."""
    documents = []
    for attachment in message.attachments:
        content = base64.b64decode(attachment.content, validate=True)
        if hashlib.sha256(content).hexdigest() != attachment.sha256:
            raise ValueError("an attachment does not match its digest")
        document = await new_document(
            session, deps, referral.tenant_id, attachment.name, attachment.media_type, content, referral_id=referral.id
        )
        documents.append(document)
    key = await referral_key(session, deps, referral)
    session.add(
        ThreadMessage(
            tenant_id=referral.tenant_id,
            referral_id=referral.id,
            message_id=message.message_id,
            author_tenant_id=author,
            at=message.at,
            body_sealed=key.seal({"body": message.body}, context=sealed_context("message", message.message_id)),
            attachment_ids=[str(d.id) for d in documents],
        )
    )


async def forget_shared_thread(session: AsyncSession, deps: ExchangeDeps, referral: Referral) -> None:
    """After a withdrawal: the partner's messages and attachments are personal data the recipient may not keep."""
    key = await referral_key(session, deps, referral)
    messages = await session.scalars(
        select(ThreadMessage).where(
            ThreadMessage.referral_id == referral.id, ThreadMessage.author_tenant_id != referral.tenant_id
        )
    )
    for message in messages:
        message.body_sealed = key.seal({"body": ""}, context=sealed_context("message", message.message_id))
        for document_id in message.attachment_ids:
            document = await session.scalar(select(Document).where(Document.id == uuid.UUID(document_id)))
            if document is not None:
                document.data_key_wrapped = None  # crypto-shredding: the sealed bytes can never be opened again
                document.content = b""
                document.sealed = None


async def record_own_basis(ctx: Context, *, referral_id: uuid.UUID, data: StatutoryBasisIn) -> Referral:
    """The recipient's own legal basis for keeping what it received, should the family withdraw consent."""
    session, deps, principal, audit = ctx.session, ctx.deps, ctx.principal, ctx.audit
    audit.touched(resource_type="referral", resource_id=referral_id, legal_basis="statutory", reference=data.reference)
    referral = await access_referral(session, principal, referral_id, for_write=True)
    if referral.side != Side.RECIPIENT:
        raise Forbidden("Only the receiving agency records its own legal basis for keeping the data.")
    if len(data.justification.strip()) < MIN_JUSTIFICATION:
        raise InvalidInput(f"Explain the legal basis in at least {MIN_JUSTIFICATION} characters.")
    if referral.restricted:
        raise InvalidInput("The shared data was already removed after the family withdrew consent.")
    key = await referral_key(session, deps, referral)
    context = sealed_context("referral", referral.id)
    contents = key.open(referral.sealed, context=context) if referral.sealed else {}
    contents["own_basis_justification"] = data.justification
    referral.sealed = key.seal(contents, context=context)
    referral.recipient_basis_reference = data.reference
    referral.review_required = True  # a DPO reviews every basis other than consent
    return referral
