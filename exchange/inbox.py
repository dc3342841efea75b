"""The inbox: open, verify and apply each envelope exactly once, answer with a receipt, park what cannot be applied."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.events import Action, Actor, Outcome
from exchange.deps import ExchangeDeps
from exchange.envelopes import (
    EnvelopeHeader,
    EnvelopeType,
    OpenedEnvelope,
    RejectedEnvelope,
    open_envelope,
    peek_header,
)
from exchange.letters.services import accept_letter, expect_letter, forget_letter
from exchange.messages import apply_message, forget_shared_thread
from exchange.models import (
    DeadLetter,
    InboxEnvelope,
    OutboxEnvelope,
    OutcomeResult,
    Referral,
    ReferralKind,
    Side,
    sealed_context,
)
from exchange.outbox import enqueue
from exchange.plans import settle_plan_of
from exchange.referrals import (
    ALL_STATUSES,
    RECEIVED,
    REQUESTED,
    _add_timeline,
    _new_copy,
    _referral_key,
    allowed,
)
from tenants.keys import KeyRing
from tenants.models import KeyUse, Tenant
from tenants.persistence import platform_session

log = logging.getLogger("casebridge.exchange")
# What a partner's access receipt may report: opening shared data, nothing else.
PARTNER_READ_ACTIONS = frozenset(
    {Action.EXCHANGE_REFERRAL_READ, Action.EXCHANGE_DOCUMENT_READ, Action.EXCHANGE_LETTER_READ}
)
# This node acting on its own (applying envelopes), not on behalf of a person or an agency system.
SYSTEM_ACTOR = Actor(kind="system", id=None, tenant_id=None, role=None)


class Unapplicable(Exception):
    """An authentic envelope that can never be applied here (malformed body, a move the sender may not make)."""


class NotYetApplicable(Exception):
    """An authentic envelope that overtook the one it depends on (a status before its referral): try again later."""


# How long an envelope that overtook its predecessor is retried before it is parked.
RETRY_OUT_OF_ORDER_FOR = dt.timedelta(days=1)


class Inbox:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], deps: ExchangeDeps) -> None:
        self._sessions = sessions
        self._deps = deps

    async def receive(self, subject: str, token: bytes) -> None:
        """Apply one envelope; commits its own transaction. Raises only when the database is unavailable."""
        text = token.decode("ascii", errors="replace")
        header = peek_header(text)
        async with platform_session(self._sessions) as session:
            if header is not None and await _already_seen(session, header.envelope_id):
                return
            if header is None:
                await self._park(
                    session, subject, text, None, "malformed", "the envelope's outer header cannot be read"
                )
                return
            recipient = await session.scalar(select(Tenant).where(Tenant.id == header.recipient))
            if recipient is None:
                await self._park(session, subject, text, header, "wrong_recipient", "the recipient is not hosted here")
                return
            opened = await self._open(session, text, header.recipient, header.sender)
            if isinstance(opened, RejectedEnvelope):
                await self._park(session, subject, text, header, opened.reason.value, opened.detail)
                return
            try:
                async with session.begin_nested():
                    session.add(InboxEnvelope(
                        tenant_id=header.recipient, envelope_id=header.envelope_id, envelope_type=header.type.value,
                        sender_tenant_id=header.sender, applied_at=self._deps.clock.now(),
                    ))  # fmt: skip
                    await session.flush()
                    try:
                        await self._apply(session, opened)
                    except (KeyError, ValueError, TypeError) as exc:
                        raise Unapplicable("the envelope's body is incomplete or malformed") from exc
                    if header.type is not EnvelopeType.RECEIPT:
                        await enqueue(
                            session, self._deps, sender=header.recipient,
                            recipient=header.sender, envelope_type=EnvelopeType.RECEIPT,
                            body={"envelope_id": str(header.envelope_id), "type": header.type.value,
                                  "applied_at": self._deps.clock.now().isoformat()},
                        )  # fmt: skip
                await session.commit()
            except IntegrityError:
                await session.rollback()  # applied concurrently by another consumer: nothing more to do
            except Unapplicable as exc:
                await session.rollback()
                await self._park(session, subject, text, header, "unapplicable", str(exc))
            except NotYetApplicable as exc:
                await session.rollback()
                if self._deps.clock.now() - header.created_at > RETRY_OUT_OF_ORDER_FOR:
                    await self._park(session, subject, text, header, "unapplicable", str(exc))
                    return
                raise  # not acknowledged: the bus redelivers it with backoff

    async def _open(
        self, session: AsyncSession, token: str, recipient: uuid.UUID, sender: uuid.UUID
    ) -> OpenedEnvelope | RejectedEnvelope:
        keyring: KeyRing = self._deps.keyring
        decryption = [
            keyring.private_jwk(k) for k in await keyring.usable_tenant_keys(session, recipient, KeyUse.ENCRYPTION)
        ]
        sender_jwks = await self._deps.published.signing_keys(session, sender)
        return open_envelope(
            token,
            recipient=recipient,
            decryption_keys=decryption,
            sender_keys=lambda tenant: sender_jwks if tenant == sender else [],
            now=self._deps.clock.now(),
        )

    async def _park(
        self, session: AsyncSession, subject: str, token: str, header: EnvelopeHeader | None, reason: str, detail: str
    ) -> None:
        log.warning("envelope parked: %s", reason)
        hosted = header is not None and await session.scalar(select(Tenant.id).where(Tenant.id == header.recipient))
        self._deps.audit.append(
            session, action=Action.EXCHANGE_ENVELOPE_PARK, outcome=Outcome.ERROR, actor=SYSTEM_ACTOR,
            log_tenant_id=header.recipient if header is not None and hosted else None,
            resource_type="envelope", resource_id=str(header.envelope_id) if header else None, reason=reason,
            extra={"sender": str(header.sender)} if header else {},
        )  # fmt: skip
        session.add(
            DeadLetter(
                envelope_id=header.envelope_id if header else None,
                subject=subject[:128],
                recipient_tenant_id=header.recipient if header else None,
                sender_tenant_id=header.sender if header else None,
                reason=reason,
                detail=detail[:255],
                token=token,
                received_at=self._deps.clock.now(),
            )
        )
        await session.commit()

    async def _apply(self, session: AsyncSession, opened: OpenedEnvelope) -> None:
        handlers = {
            EnvelopeType.REFERRAL_REQUESTED: self._referral_requested,
            EnvelopeType.REFERRAL_STATUS: self._referral_status,
            EnvelopeType.REFERRAL_MESSAGE: self._referral_message,
            EnvelopeType.ACCESS_RECEIPT: self._access_receipt,
            EnvelopeType.CONSENT_WITHDRAWN: self._consent_withdrawn,
            EnvelopeType.RECEIPT: self._receipt,
            EnvelopeType.REFERRAL_LETTER: self._referral_letter,
        }
        handler = handlers.get(opened.header.type)
        if handler is None:
            raise Unapplicable(f"this node does not apply {opened.header.type.value} envelopes yet")
        await handler(session, opened)

    async def _referral_requested(self, session: AsyncSession, opened: OpenedEnvelope) -> None:
        body, header = opened.body, opened.header
        try:
            exchange_id = uuid.UUID(body["referral_id"])
            basis = dict(body["legal_basis"])
            respond_by = dt.datetime.fromisoformat(body["respond_by"])
            complete_by = dt.datetime.fromisoformat(body["complete_by"])
            requested_at = dt.datetime.fromisoformat(body["requested_at"])
            kept = ("problem", "requested_service", "subjects", "needs", "summary", "plan")
            sealed: dict[str, Any] = {k: body[k] for k in kept if k in body}
            sealed["pseudonyms"] = [str(p) for p in body.get("subject_pseudonyms", [])]
            referral = await _new_copy(
                session, self._deps, header.recipient, exchange_id=exchange_id, side=Side.RECIPIENT,
                from_tenant_id=header.sender, to_tenant_id=header.recipient, case_ref=str(body["case_ref"]),
                kind=ReferralKind(body["kind"]).value, purpose=str(body["purpose"]), urgency=str(body["urgency"]),
                respond_by=respond_by, complete_by=complete_by, categories=list(body["categories"]),
                subject_ids=[], legal_basis=basis, review_required=basis.get("type") == "statutory",
                sealed=sealed, service_code=str(body["service"])[:64] if body.get("service") else None,
            )  # fmt: skip
        except (KeyError, ValueError, TypeError) as exc:
            raise Unapplicable("the referral body is incomplete") from exc
        _add_timeline(session, referral, REQUESTED, requested_at, header.sender, None, None)
        _add_timeline(session, referral, RECEIVED, self._deps.clock.now(), header.recipient, None, None)
        # The letter comes in a referral.letter envelope of its own once the sender has laid it out.
        await expect_letter(session, referral, body.get("letter"))
        self._deps.audit.append(
            session, action=Action.EXCHANGE_REFERRAL_RECEIVE, outcome=Outcome.SUCCESS, actor=SYSTEM_ACTOR,
            log_tenant_id=header.recipient, resource_type="referral", resource_id=str(exchange_id),
            subjects=tuple(sealed["pseudonyms"]), purpose=referral.purpose, legal_basis=referral.legal_basis,
            extra={"sender": str(header.sender), "categories": referral.categories,
                   **({"letter": "pending"} if isinstance(body.get("letter"), dict) else {})},
        )  # fmt: skip

    async def _referral_letter(self, session: AsyncSession, opened: OpenedEnvelope) -> None:
        """The sender's signed letter for a referral received earlier (or still on its way: retried until it is)."""
        header = opened.header
        referral = await self._counterpart_copy(session, opened, str(opened.body.get("referral_id")))
        if referral.side != Side.RECIPIENT:
            raise Unapplicable("only the agency that sent a referral sends its letter")
        check = await accept_letter(session, self._deps, referral, opened.body.get("letter"))
        key = await _referral_key(session, self._deps, referral)
        contents = key.open(referral.sealed, context=sealed_context("referral", referral.id)) if referral.sealed else {}
        self._deps.audit.append(
            session, action=Action.EXCHANGE_LETTER_RECEIVE, outcome=Outcome.SUCCESS, actor=SYSTEM_ACTOR,
            log_tenant_id=header.recipient, resource_type="referral", resource_id=str(referral.exchange_id),
            subjects=tuple(contents.get("pseudonyms", [])), purpose=referral.purpose,
            legal_basis=referral.legal_basis,
            extra={"sender": str(header.sender), "letter": check.verification.value,
                   **({"erased": True} if referral.restricted else {})},
        )  # fmt: skip

    async def _counterpart_copy(self, session: AsyncSession, opened: OpenedEnvelope, referral_id: str) -> Referral:
        header = opened.header
        referral = await session.scalar(
            select(Referral).where(
                Referral.tenant_id == header.recipient, Referral.exchange_id == uuid.UUID(referral_id)
            )
        )
        counterpart = None if referral is None else (
            referral.to_tenant_id if referral.side == Side.SENDER else referral.from_tenant_id)  # fmt: skip
        if referral is not None and counterpart != header.sender:
            raise Unapplicable("the referral with that id is not shared with the sender")
        if referral is None:
            # Envelopes can overtake each other (retries, several gateways): the referral itself may still come.
            raise NotYetApplicable("no referral with that id has arrived yet")
        return referral

    async def _referral_status(self, session: AsyncSession, opened: OpenedEnvelope) -> None:
        body = opened.body
        referral = await self._counterpart_copy(session, opened, str(body.get("referral_id")))
        target = str(body.get("status"))
        their_side = Side.RECIPIENT if referral.side == Side.SENDER else Side.SENDER
        # The receipt that marks "received" may arrive after the recipient's first answer: treat it as received.
        current = RECEIVED if referral.status == REQUESTED and their_side is Side.RECIPIENT else referral.status
        if not any(allowed(source, target, their_side) for source in ALL_STATUSES):
            raise Unapplicable(f"a {their_side.value} never moves a referral to '{target}'")
        if not allowed(current, target, their_side):
            # A later move overtook an earlier one (accepted after in-progress): wait for the one in between.
            raise NotYetApplicable(f"'{target}' does not follow '{referral.status}' yet")
        key = await _referral_key(session, self._deps, referral)
        referral.status = target
        if body.get("outcome"):
            referral.outcome_result = OutcomeResult(body["outcome"]).value  # ValueError: unknown, not applicable
        _add_timeline(session, referral, target, dt.datetime.fromisoformat(body["at"]), opened.header.sender,
                      body.get("note"), key)  # fmt: skip
        await settle_plan_of(session, self._deps, referral)

    async def _referral_message(self, session: AsyncSession, opened: OpenedEnvelope) -> None:
        referral = await self._counterpart_copy(session, opened, str(opened.body.get("referral_id")))
        if referral.restricted:
            raise Unapplicable("the referral's shared data was withdrawn; its thread takes no more content")
        try:
            await apply_message(session, self._deps, referral, opened)
        except (KeyError, ValueError, TypeError) as exc:
            raise Unapplicable("the message or one of its attachments is malformed") from exc

    async def _access_receipt(self, session: AsyncSession, opened: OpenedEnvelope) -> None:
        """A partner reports that someone there opened data this tenant shared: record it in this tenant's trail."""
        body = opened.body
        referral = await self._counterpart_copy(session, opened, str(body.get("referral_id")))
        if referral.side != Side.SENDER:
            raise Unapplicable("only the agency that shared a referral receives access receipts for it")
        action = Action(str(body["action"]))
        if action not in PARTNER_READ_ACTIONS:
            raise Unapplicable("an access receipt reports reads only")
        actor = body.get("actor") or {}
        self._deps.audit.append(
            session, action=action, outcome=Outcome.SUCCESS,
            actor=Actor(kind=str(actor.get("kind")), id=uuid.UUID(actor["id"]) if actor.get("id") else None,
                        tenant_id=opened.header.sender, role=actor.get("role")),
            log_tenant_id=referral.tenant_id, resource_type="referral", resource_id=str(referral.exchange_id),
            subjects=tuple(str(s) for s in body.get("subjects", [])), purpose=body.get("purpose"),
            extra={"reported_by": str(opened.header.sender), "receipt": str(opened.header.envelope_id),
                   "partner_resource": body.get("resource")},
            at=dt.datetime.fromisoformat(str(body["at"])),
        )  # fmt: skip

    async def _consent_withdrawn(self, session: AsyncSession, opened: OpenedEnvelope) -> None:
        for referral_id in opened.body.get("referral_ids", []):
            referral = await self._counterpart_copy(session, opened, str(referral_id))
            referral.consent_withdrawn_at = dt.datetime.fromisoformat(opened.body["withdrawn_at"])
            if referral.recipient_basis_reference:
                continue  # the recipient recorded its own legal basis: it keeps the data
            # Crypto-shred the shared personal data; ids, status and timeline stay.
            referral.restricted = True
            key = await _referral_key(session, self._deps, referral)
            context = sealed_context("referral", referral.id)
            contents = key.open(referral.sealed, context=context) if referral.sealed else {}
            kept = {k: contents[k] for k in ("problem", "requested_service", "pseudonyms") if k in contents}
            kept["subjects"] = [{"ref": s.get("ref")} for s in contents.get("subjects", [])]
            referral.sealed = key.seal(kept, context=context)
            await forget_shared_thread(session, self._deps, referral)
            await forget_letter(session, referral)
            self._deps.audit.append(
                session, action=Action.EXCHANGE_CONSENT_WITHDRAWAL_APPLY, outcome=Outcome.SUCCESS, actor=SYSTEM_ACTOR,
                log_tenant_id=referral.tenant_id, resource_type="referral", resource_id=str(referral.exchange_id),
                subjects=tuple(kept.get("pseudonyms", [])), extra={"consent": str(opened.body.get("consent_id"))},
            )  # fmt: skip

    async def _receipt(self, session: AsyncSession, opened: OpenedEnvelope) -> None:
        try:
            envelope_id = uuid.UUID(str(opened.body["envelope_id"]))
        except (KeyError, ValueError) as exc:
            raise Unapplicable("the receipt names no envelope") from exc
        sent = await session.scalar(
            select(OutboxEnvelope).where(
                OutboxEnvelope.envelope_id == envelope_id, OutboxEnvelope.tenant_id == opened.header.recipient
            )
        )
        if sent is None or sent.recipient_tenant_id != opened.header.sender:
            raise Unapplicable("the receipt is for an envelope this tenant did not send to its signer")
        sent.delivered_at = dt.datetime.fromisoformat(str(opened.body["applied_at"]))
        if sent.envelope_type != EnvelopeType.REFERRAL_REQUESTED.value or sent.exchange_id is None:
            return
        referral = await session.scalar(
            select(Referral).where(Referral.tenant_id == sent.tenant_id, Referral.exchange_id == sent.exchange_id)
        )
        if referral is not None and referral.status == REQUESTED:
            referral.status = RECEIVED
            _add_timeline(session, referral, RECEIVED, sent.delivered_at, opened.header.sender, None, None)


async def _already_seen(session: AsyncSession, envelope_id: uuid.UUID) -> bool:
    applied = await session.scalar(select(InboxEnvelope.id).where(InboxEnvelope.envelope_id == envelope_id))
    if applied is not None:
        return True
    parked = await session.scalar(select(DeadLetter.id).where(DeadLetter.envelope_id == envelope_id))
    return parked is not None
