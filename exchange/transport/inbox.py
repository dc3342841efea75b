"""The inbox: open, verify and apply each envelope exactly once, in batches; receipts; park what cannot be applied."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.events import Action, Actor, Outcome
from exchange.cases.datakeys import sealed_context
from exchange.deps import ExchangeDeps
from exchange.letters.services import accept_letter, expect_letter, forget_letter
from exchange.plans.services import settle_plan_of
from exchange.referrals.keys import referral_key
from exchange.referrals.models import OutcomeResult, Referral, ReferralKind, Side
from exchange.referrals.services import add_timeline, new_copy
from exchange.referrals.status import Status, allowed
from exchange.referrals.threads import apply_message, forget_shared_thread
from exchange.transport.bodies import (
    AccessReceipt,
    AppliedEnvelope,
    Body,
    BodyError,
    ConsentWithdrawn,
    Receipt,
    ReceiptBatch,
    ReferralLetter,
    ReferralMessage,
    ReferralRequested,
    ReferralStatus,
    decode_body,
)
from exchange.transport.envelopes import (
    EnvelopeHeader,
    EnvelopeType,
    OpenedEnvelope,
    RejectedEnvelope,
    RejectReason,
    open_envelope,
    peek_header,
)
from exchange.transport.held import HoldReason, hold, hold_reason
from exchange.transport.models import DeadLetter, InboxEnvelope, OutboxEnvelope
from exchange.transport.outbox import OUTBOX_WRITTEN, enqueue, subject_names
from tenants.keys import KeyRing
from tenants.models import KeyUse, Tenant
from tenants.peer_keys import peer_of_tenants, peer_states
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


@dataclass(slots=True)
class _Arrival:
    subject: str
    token: str
    header: EnvelopeHeader | None


class Inbox:
    """Applies envelopes in batches: one transaction per batch, a savepoint per envelope, one receipt per sender."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        deps: ExchangeDeps,
        *,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._deps = deps
        # Called after a batch that added envelopes (its receipts) to the outbox has committed.
        self._on_outbox = on_outbox

    async def receive(self, subject: str, token: bytes) -> None:
        """Apply one envelope. Raises NotYetApplicable when it must come again later (it overtook its referral)."""
        (settled,) = await self.receive_batch([(subject, token)])
        if not settled:
            raise NotYetApplicable("the envelope cannot be applied yet")

    async def receive_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Apply a batch of envelopes in one transaction; for each, whether it is settled.

        Settled means applied, seen before, or parked as a dead letter; an envelope that overtook the one it
        depends on is not settled (the bus brings it again) until it is a day old, when it is parked. Each envelope
        is applied in a savepoint of its own, so one that fails leaves its neighbours applied. The applied
        envelopes are answered with one signed receipt per sender. Raises only when the batch as a whole cannot be
        committed (the database is unavailable): then nothing of it happened, and the bus redelivers all of it.
        """
        arrivals = [_Arrival(subject, text, peek_header(text)) for subject, text in _tokens(messages)]
        settled = [True] * len(arrivals)
        now = self._deps.clock.now()
        async with platform_session(self._sessions) as session, session.begin():
            ids = [a.header.envelope_id for a in arrivals if a.header is not None]
            seen = await _already_seen(session, ids)
            hosted = set(
                await session.scalars(
                    select(Tenant.id).where(
                        Tenant.id.in_({a.header.recipient for a in arrivals if a.header}), Tenant.peer.is_(None)
                    )
                )
            )
            # Senders on peer nodes: their envelopes are opened only while their node's keys are trusted.
            senders = {a.header.sender for a in arrivals if a.header}
            peer_of = await peer_of_tenants(session, senders)
            states = {name: node.state for name, node in (await peer_states(session)).items()} if peer_of else {}
            # A sender in no directory row may be an agency of a peer not fetched yet: its envelope waits, unopened.
            strangers = senders - set(await session.scalars(select(Tenant.id).where(Tenant.id.in_(senders))))
            applied: dict[tuple[uuid.UUID, uuid.UUID], list[AppliedEnvelope]] = {}
            for index, arrival in enumerate(arrivals):
                header = arrival.header
                if header is None:
                    await self._park(session, arrival, "malformed", "the envelope's outer header cannot be read")
                elif header.envelope_id in seen:
                    continue  # applied (or parked) before: a redelivery
                elif header.recipient not in hosted:
                    await self._park(session, arrival, "wrong_recipient", "the recipient is not hosted here")
                elif not subject_names(arrival.subject, header.recipient, header.sender):
                    # NATS lets an agency's node publish only with its own tenant as the subject's sender; the
                    # header must say the same, or that permission would prove nothing.
                    await self._park(session, arrival, "wrong_subject", "the subject names other tenants")
                elif header.sender in peer_of and (reason := hold_reason(states.get(peer_of[header.sender]))):
                    seen.add(header.envelope_id)
                    await self._hold(session, arrival, header, reason, now)
                else:
                    seen.add(header.envelope_id)  # the same envelope twice in one batch is applied once
                    from_peer = header.sender in peer_of or header.sender in strangers
                    outcome = await self._apply_one(session, arrival, header, now, from_peer=from_peer)
                    if outcome is _Outcome.APPLIED and header.type is not EnvelopeType.RECEIPT:
                        applied.setdefault((header.recipient, header.sender), []).append(
                            AppliedEnvelope(envelope_id=header.envelope_id, type=header.type.value)
                        )
                    settled[index] = outcome is not _Outcome.LATER
            for (recipient, sender), envelopes in applied.items():
                await enqueue(
                    session,
                    self._deps,
                    sender=recipient,
                    recipient=sender,
                    body=ReceiptBatch(v=2, envelopes=envelopes, applied_at=now),
                )
        if session.info.get(OUTBOX_WRITTEN):
            self._on_outbox()
        return settled

    async def _apply_one(
        self, session: AsyncSession, arrival: _Arrival, header: EnvelopeHeader, now: dt.datetime, *, from_peer: bool
    ) -> _Outcome:
        opened = await self._open(session, arrival.token, header)
        if isinstance(opened, RejectedEnvelope) and from_peer and opened.reason is RejectReason.UNKNOWN_SENDER_KEY:
            # Signed with a key the peer's node has not listed to us (yet): its next refresh may bring it.
            await self._hold(session, arrival, header, HoldReason.UNKNOWN_SENDER_KEY, now)
            return _Outcome.HELD
        if isinstance(opened, RejectedEnvelope):
            await self._park(session, arrival, opened.reason.value, opened.detail)
            return _Outcome.PARKED
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(InboxEnvelope).values(
                        tenant_id=header.recipient,
                        envelope_id=header.envelope_id,
                        envelope_type=header.type.value,
                        sender_tenant_id=header.sender,
                        applied_at=now,
                    )
                )
                try:
                    body = decode_body(header.type, opened.payload)
                except BodyError as exc:
                    raise Unapplicable(str(exc)) from exc
                try:
                    await self._apply(session, opened, body)
                except (KeyError, ValueError, TypeError) as exc:
                    raise Unapplicable("the envelope's body is incomplete or malformed") from exc
        except IntegrityError:
            return _Outcome.APPLIED_ELSEWHERE  # applied meanwhile by another consumer: nothing more to do
        except Unapplicable as exc:
            await self._park(session, arrival, "unapplicable", str(exc))
            return _Outcome.PARKED
        except NotYetApplicable as exc:
            if now - header.created_at > RETRY_OUT_OF_ORDER_FOR:
                await self._park(session, arrival, "unapplicable", str(exc))
                return _Outcome.PARKED
            return _Outcome.LATER
        except SQLAlchemyError:
            raise  # the connection or the transaction is gone: the whole batch comes again
        except Exception as exc:  # a fault of ours with this one envelope: its neighbours still go through
            log.error("envelope not applied (%s); it will come again", type(exc).__name__)
            return _Outcome.LATER
        return _Outcome.APPLIED

    async def _open(
        self, session: AsyncSession, token: str, header: EnvelopeHeader
    ) -> OpenedEnvelope | RejectedEnvelope:
        opened = await self._open_with_known_keys(session, token, header)
        if isinstance(opened, RejectedEnvelope) and opened.reason in _MAYBE_NEW_KEY:
            # A key rotated in another process moments ago may not be in this process's cache yet: look again.
            self._deps.published.forget()
            self._deps.keyring.cache.forget()
            opened = await self._open_with_known_keys(session, token, header)
        return opened

    async def _open_with_known_keys(
        self, session: AsyncSession, token: str, header: EnvelopeHeader
    ) -> OpenedEnvelope | RejectedEnvelope:
        keyring: KeyRing = self._deps.keyring
        recipient, sender = header.recipient, header.sender
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

    async def _hold(
        self, session: AsyncSession, arrival: _Arrival, header: EnvelopeHeader, reason: HoldReason, now: dt.datetime
    ) -> None:
        await hold(
            session,
            envelope_id=header.envelope_id,
            subject=arrival.subject,
            sender=header.sender,
            recipient=header.recipient,
            token=arrival.token,
            reason=reason,
            now=now,
        )

    async def _park(self, session: AsyncSession, arrival: _Arrival, reason: str, detail: str) -> None:
        """Keep an envelope that can never be applied as a dead letter (audited), in the batch's transaction."""
        log.warning("envelope parked: %s", reason)
        header = arrival.header
        hosted = header is not None and reason != "wrong_recipient"
        self._deps.audit.append(
            session,
            action=Action.EXCHANGE_ENVELOPE_PARK,
            outcome=Outcome.ERROR,
            actor=SYSTEM_ACTOR,
            log_tenant_id=header.recipient if header is not None and hosted else None,
            resource_type="envelope",
            resource_id=str(header.envelope_id) if header else None,
            reason=reason,
            extra={"sender": str(header.sender)} if header else {},
        )
        await session.execute(
            insert(DeadLetter).values(
                envelope_id=header.envelope_id if header else None,
                subject=arrival.subject[:128],
                recipient_tenant_id=header.recipient if header else None,
                sender_tenant_id=header.sender if header else None,
                reason=reason,
                detail=detail[:255],
                token=arrival.token,
                received_at=self._deps.clock.now(),
            )
        )

    async def _apply(self, session: AsyncSession, opened: OpenedEnvelope, body: Body) -> None:
        match body:
            case ReferralRequested():
                await self._referral_requested(session, opened.header, body)
            case ReferralStatus():
                await self._referral_status(session, opened.header, body)
            case ReferralMessage():
                await self._referral_message(session, opened.header, body)
            case AccessReceipt():
                await self._access_receipt(session, opened.header, body)
            case ConsentWithdrawn():
                await self._consent_withdrawn(session, opened.header, body)
            case Receipt() | ReceiptBatch():
                await self._receipt(session, opened.header, body)
            case ReferralLetter():
                await self._referral_letter(session, opened.header, body)
            case _:
                raise Unapplicable(f"this node does not apply {opened.header.type.value} envelopes")

    async def _referral_requested(self, session: AsyncSession, header: EnvelopeHeader, body: ReferralRequested) -> None:
        basis: dict[str, str] = {"type": body.legal_basis.type}
        if body.legal_basis.reference is not None:
            basis["reference"] = body.legal_basis.reference
        sealed: dict[str, Any] = {
            "problem": body.problem,
            "requested_service": body.requested_service,
            "subjects": body.subjects,
        }
        sealed |= {k: v for k, v in (("needs", body.needs), ("summary", body.summary), ("plan", body.plan)) if v}
        sealed["pseudonyms"] = list(body.subject_pseudonyms)
        referral = await new_copy(
            session,
            self._deps,
            header.recipient,
            exchange_id=body.referral_id,
            side=Side.RECIPIENT,
            from_tenant_id=header.sender,
            to_tenant_id=header.recipient,
            case_ref=body.case_ref,
            kind=ReferralKind(body.kind).value,
            purpose=body.purpose,
            urgency=body.urgency,
            respond_by=body.respond_by,
            complete_by=body.complete_by,
            respond_by_date=body.respond_by_date or body.respond_by.astimezone(dt.UTC).date(),
            complete_by_date=body.complete_by_date or body.complete_by.astimezone(dt.UTC).date(),
            categories=list(body.categories),
            subject_ids=[],
            legal_basis=basis,
            review_required=body.legal_basis.type == "statutory",
            sealed=sealed,
            service_code=body.service[:64] if body.service else None,
        )
        await add_timeline(session, referral, Status.REQUESTED, body.requested_at, header.sender, None, None)
        await add_timeline(session, referral, Status.RECEIVED, self._deps.clock.now(), header.recipient, None, None)
        # The letter comes in a referral.letter envelope of its own once the sender has laid it out.
        await expect_letter(session, referral, body.letter)
        self._deps.audit.append(
            session,
            action=Action.EXCHANGE_REFERRAL_RECEIVE,
            outcome=Outcome.SUCCESS,
            actor=SYSTEM_ACTOR,
            log_tenant_id=header.recipient,
            resource_type="referral",
            resource_id=str(body.referral_id),
            subjects=tuple(sealed["pseudonyms"]),
            purpose=referral.purpose,
            legal_basis=referral.legal_basis,
            extra={
                "sender": str(header.sender),
                "categories": referral.categories,
                **({"letter": "pending"} if body.letter is not None else {}),
            },
        )

    async def _referral_letter(self, session: AsyncSession, header: EnvelopeHeader, body: ReferralLetter) -> None:
        """The sender's signed letter for a referral received earlier (or still on its way: retried until it is)."""
        referral = await self._counterpart_copy(session, header, body.referral_id)
        if referral.side != Side.RECIPIENT:
            raise Unapplicable("only the agency that sent a referral sends its letter")
        check = await accept_letter(session, self._deps, referral, body.letter)
        key = await referral_key(session, self._deps, referral)
        contents = key.open(referral.sealed, context=sealed_context("referral", referral.id)) if referral.sealed else {}
        self._deps.audit.append(
            session,
            action=Action.EXCHANGE_LETTER_RECEIVE,
            outcome=Outcome.SUCCESS,
            actor=SYSTEM_ACTOR,
            log_tenant_id=header.recipient,
            resource_type="referral",
            resource_id=str(referral.exchange_id),
            subjects=tuple(contents.get("pseudonyms", [])),
            purpose=referral.purpose,
            legal_basis=referral.legal_basis,
            extra={
                "sender": str(header.sender),
                "letter": check.verification.value,
                **({"erased": True} if referral.restricted else {}),
            },
        )

    async def _counterpart_copy(
        self, session: AsyncSession, header: EnvelopeHeader, exchange_id: uuid.UUID
    ) -> Referral:
        referral = await session.scalar(
            select(Referral).where(Referral.tenant_id == header.recipient, Referral.exchange_id == exchange_id)
        )
        counterpart = (
            None
            if referral is None
            else (referral.to_tenant_id if referral.side == Side.SENDER else referral.from_tenant_id)
        )
        if referral is not None and counterpart != header.sender:
            raise Unapplicable("the referral with that id is not shared with the sender")
        if referral is None:
            # Envelopes can overtake each other (retries, several gateways): the referral itself may still come.
            raise NotYetApplicable("no referral with that id has arrived yet")
        return referral

    async def _referral_status(self, session: AsyncSession, header: EnvelopeHeader, body: ReferralStatus) -> None:
        referral = await self._counterpart_copy(session, header, body.referral_id)
        target = body.status
        their_side = Side.RECIPIENT if referral.side == Side.SENDER else Side.SENDER
        # The receipt that marks "received" may arrive after the recipient's first answer: treat it as received.
        current = (
            Status.RECEIVED if referral.status == Status.REQUESTED and their_side is Side.RECIPIENT else referral.status
        )
        if not any(allowed(source, target, their_side) for source in Status):
            raise Unapplicable(f"a {their_side.value} never moves a referral to that status")
        if not allowed(current, target, their_side):
            # A later move overtook an earlier one (accepted after in-progress): wait for the one in between.
            raise NotYetApplicable(f"the move does not follow '{referral.status}' yet")
        key = await referral_key(session, self._deps, referral)
        referral.status = target
        if body.outcome:
            referral.outcome_result = OutcomeResult(body.outcome).value  # ValueError: unknown, not applicable
        await add_timeline(session, referral, target, body.at, header.sender, body.note, key)
        await settle_plan_of(session, self._deps, referral)

    async def _referral_message(self, session: AsyncSession, header: EnvelopeHeader, body: ReferralMessage) -> None:
        referral = await self._counterpart_copy(session, header, body.referral_id)
        if referral.restricted:
            raise Unapplicable("the referral's shared data was withdrawn; its thread takes no more content")
        try:
            await apply_message(session, self._deps, referral, header.sender, body)
        except ValueError as exc:
            raise Unapplicable("the message or one of its attachments is malformed") from exc

    async def _access_receipt(self, session: AsyncSession, header: EnvelopeHeader, body: AccessReceipt) -> None:
        """A partner reports that someone there opened data this tenant shared: record it in this tenant's trail."""
        referral = await self._counterpart_copy(session, header, body.referral_id)
        if referral.side != Side.SENDER:
            raise Unapplicable("only the agency that shared a referral receives access receipts for it")
        action = Action(body.action)
        if action not in PARTNER_READ_ACTIONS:
            raise Unapplicable("an access receipt reports reads only")
        self._deps.audit.append(
            session,
            action=action,
            outcome=Outcome.SUCCESS,
            actor=Actor(kind=body.actor.kind, id=body.actor.id, tenant_id=header.sender, role=body.actor.role),
            log_tenant_id=referral.tenant_id,
            resource_type="referral",
            resource_id=str(referral.exchange_id),
            subjects=tuple(body.subjects),
            purpose=body.purpose,
            extra={
                "reported_by": str(header.sender),
                "receipt": str(header.envelope_id),
                "partner_resource": body.resource,
                # What the partner's read of the referral returned: what was shared with it (docs/audit.md).
                **({"categories": sorted(referral.categories)} if action is Action.EXCHANGE_REFERRAL_READ else {}),
                **({"own_basis": body.own_basis} if body.own_basis else {}),
            },
            at=body.at,
        )

    async def _consent_withdrawn(self, session: AsyncSession, header: EnvelopeHeader, body: ConsentWithdrawn) -> None:
        for exchange_id in body.referral_ids:
            referral = await self._counterpart_copy(session, header, exchange_id)
            referral.consent_withdrawn_at = body.withdrawn_at
            if referral.recipient_basis_reference:
                continue  # the recipient recorded its own legal basis: it keeps the data
            # Crypto-shred the shared personal data; ids, status and timeline stay.
            referral.restricted = True
            key = await referral_key(session, self._deps, referral)
            context = sealed_context("referral", referral.id)
            contents = key.open(referral.sealed, context=context) if referral.sealed else {}
            kept = {k: contents[k] for k in ("problem", "requested_service", "pseudonyms") if k in contents}
            kept["subjects"] = [{"ref": s.get("ref")} for s in contents.get("subjects", [])]
            referral.sealed = key.seal(kept, context=context)
            await forget_shared_thread(session, self._deps, referral)
            await forget_letter(session, referral)
            self._deps.audit.append(
                session,
                action=Action.EXCHANGE_CONSENT_WITHDRAWAL_APPLY,
                outcome=Outcome.SUCCESS,
                actor=SYSTEM_ACTOR,
                log_tenant_id=referral.tenant_id,
                resource_type="referral",
                resource_id=str(referral.exchange_id),
                subjects=tuple(kept.get("pseudonyms", [])),
                extra={"consent": str(body.consent_id)},
            )

    async def _receipt(self, session: AsyncSession, header: EnvelopeHeader, body: Receipt | ReceiptBatch) -> None:
        """The partner applied envelopes this tenant sent it: mark them delivered, and referrals `received`."""
        listed = [body.envelope_id] if isinstance(body, Receipt) else [e.envelope_id for e in body.envelopes]
        sent = {
            row.envelope_id: row
            for row in await session.scalars(
                select(OutboxEnvelope).where(
                    OutboxEnvelope.tenant_id == header.recipient, OutboxEnvelope.envelope_id.in_(listed)
                )
            )
        }
        if len(sent) != len(set(listed)) or any(row.recipient_tenant_id != header.sender for row in sent.values()):
            raise Unapplicable("the receipt is for an envelope this tenant did not send to its signer")
        for row in sent.values():
            row.delivered_at = body.applied_at
        referred = [
            row.exchange_id
            for row in sent.values()
            if row.envelope_type == EnvelopeType.REFERRAL_REQUESTED.value and row.exchange_id is not None
        ]
        if not referred:
            return
        for referral in await session.scalars(
            select(Referral).where(
                Referral.tenant_id == header.recipient,
                Referral.exchange_id.in_(referred),
                Referral.side == Side.SENDER.value,
            )
        ):
            if referral.status == Status.REQUESTED:
                referral.status = Status.RECEIVED
                await add_timeline(session, referral, Status.RECEIVED, body.applied_at, header.sender, None, None)


class _Outcome(enum.Enum):
    APPLIED = enum.auto()
    APPLIED_ELSEWHERE = enum.auto()
    PARKED = enum.auto()
    HELD = enum.auto()
    LATER = enum.auto()


# An envelope refused for a key this process has not seen may be under a key rotated in another process just now.
_MAYBE_NEW_KEY = frozenset({RejectReason.UNKNOWN_RECIPIENT_KEY, RejectReason.UNKNOWN_SENDER_KEY})


def _tokens(messages: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
    return [(subject, token.decode("ascii", errors="replace")) for subject, token in messages]


async def _already_seen(session: AsyncSession, envelope_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these envelopes were applied or parked before (by this node or another)."""
    if not envelope_ids:
        return set()
    applied = await session.scalars(
        select(InboxEnvelope.envelope_id).where(InboxEnvelope.envelope_id.in_(envelope_ids))
    )
    parked = await session.scalars(select(DeadLetter.envelope_id).where(DeadLetter.envelope_id.in_(envelope_ids)))
    return {*applied, *(envelope_id for envelope_id in parked if envelope_id is not None)}
