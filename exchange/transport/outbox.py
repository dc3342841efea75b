"""The transactional outbox: envelopes are sealed and stored in the same transaction as the change they announce."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Protocol

from joserfc.jwk import OKPKey
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from exchange.deps import ExchangeDeps
from exchange.transport.bodies import Body, encode_body
from exchange.transport.envelopes import EnvelopeHeader, EnvelopeType, seal
from exchange.transport.models import OutboxEnvelope
from tenants.errors import KeyUnavailable, PartnerKeysUnavailable
from tenants.models import KeyUse

SUBJECT_PREFIX = "cb.v2"
# `session.info` key set when a transaction adds outbox rows: after its commit the relay has work.
OUTBOX_WRITTEN = "casebridge.outbox_written"


def subject_for(recipient: uuid.UUID, sender: uuid.UUID, envelope_type: EnvelopeType) -> str:
    """`cb.v2.<recipient-tenant-id>.<sender-tenant-id>.<type>`: routing needs nothing but ids and the type, and the
    sender in the subject lets NATS permissions hold an agency's own node to sending as its own tenant only."""
    return f"{SUBJECT_PREFIX}.{recipient}.{sender}.{envelope_type.value}"


def subject_names(subject: str, recipient: uuid.UUID, sender: uuid.UUID) -> bool:
    """Whether `subject` is the envelope subject of `recipient` and `sender`. A `cb.v1.<recipient>.<type>` subject
    (published before the sender joined the subject) names the recipient only: NATS lets no agency's own node
    publish one (deploy/nats/hub.conf), so only the hub's gateways can have put it on the stream."""
    parts = subject.split(".")
    try:
        if len(parts) >= 5 and parts[:2] == ["cb", "v2"]:
            return (uuid.UUID(parts[2]), uuid.UUID(parts[3])) == (recipient, sender)
        if len(parts) >= 4 and parts[:2] == ["cb", "v1"]:
            return uuid.UUID(parts[2]) == recipient
    except ValueError:
        pass
    return False


def current_subject(subject: str, sender: uuid.UUID) -> str:
    """The subject to publish a stored outbox row on: rows written before the sender joined the subject
    (`cb.v1.<recipient>.<type>`, left unsent at an upgrade) are sent on the `cb.v2` layout the stream and the
    inboxes take."""
    prefix, _, rest = subject.partition(".v1.")
    if prefix != "cb" or not rest:
        return subject
    recipient, _, envelope_type = rest.partition(".")
    return f"{SUBJECT_PREFIX}.{recipient}.{sender}.{envelope_type}"


@dataclass(frozen=True, slots=True)
class OutgoingEnvelope:
    """One envelope ready for the bus, as the relay reads it from the outbox."""

    envelope_id: uuid.UUID
    subject: str
    token: str


class Publisher(Protocol):
    """Puts envelopes on the bus: all of them sent before any ack is awaited; for each, None once the bus has stored
    it (a JetStream ack), or why it was not stored."""

    async def publish_batch(self, envelopes: list[OutgoingEnvelope]) -> list[Exception | None]: ...


async def sealed_envelope(
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    sender: uuid.UUID,
    recipient: uuid.UUID,
    envelope_type: EnvelopeType,
    payload: bytes,
) -> tuple[EnvelopeHeader, str]:
    """A new envelope carrying `payload` (a JSON object) from `sender` to `recipient`: its header and token."""
    signing = await deps.keyring.usable_tenant_keys(session, sender, KeyUse.SIGNING)
    encryption = await deps.published.encryption_key(session, recipient)
    if encryption is None:
        # A partner on a peer node whose keys have not been fetched or accepted: the whole change rolls back.
        raise PartnerKeysUnavailable(
            "The partner agency's keys are not available on this node yet, so nothing was sent. Try again later; "
            "if this persists, ask the operator to check the partner's node (casebridge peers status)."
        )
    if not signing or signing[0].retired_at is not None:
        raise KeyUnavailable("the sender has no active envelope key")
    now = deps.clock.now().replace(microsecond=0)
    header = EnvelopeHeader(
        envelope_id=uuid7(), type=envelope_type, sender=sender, recipient=recipient, created_at=now.astimezone(dt.UTC)
    )
    token = seal(
        header,
        payload,
        signing_key=deps.keyring.private_jwk(signing[0]),
        recipient_key=OKPKey.import_key(encryption),
    )
    return header, token


async def enqueue(
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    sender: uuid.UUID,
    recipient: uuid.UUID,
    body: Body,
    exchange_id: uuid.UUID | None = None,
) -> OutgoingEnvelope:
    """Seal `body` from `sender` to `recipient` and add it to the outbox of the caller's transaction.

    A Core insert, not an ORM object: the row is written at once and nothing of it is needed again in this
    transaction, so the unit of work would only add its bookkeeping.
    """
    header, token = await sealed_envelope(
        session, deps, sender=sender, recipient=recipient, envelope_type=body.TYPE, payload=encode_body(body)
    )
    subject = subject_for(recipient, sender, body.TYPE)
    session.info[OUTBOX_WRITTEN] = True
    await session.execute(
        insert(OutboxEnvelope).values(
            tenant_id=sender,
            envelope_id=header.envelope_id,
            envelope_type=body.TYPE.value,
            recipient_tenant_id=recipient,
            exchange_id=exchange_id,
            subject=subject,
            token=token,
            next_attempt_at=header.created_at,
        )
    )
    return OutgoingEnvelope(header.envelope_id, subject, token)
