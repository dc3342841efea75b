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
from tenants.errors import KeyUnavailable
from tenants.models import KeyUse

SUBJECT_PREFIX = "cb.v1"
# `session.info` key set when a transaction adds outbox rows: after its commit the relay has work.
OUTBOX_WRITTEN = "casebridge.outbox_written"


def subject_for(recipient: uuid.UUID, envelope_type: EnvelopeType) -> str:
    """`cb.v1.<recipient-tenant-id>.<type>`: routing needs nothing but ids and the type."""
    return f"{SUBJECT_PREFIX}.{recipient}.{envelope_type.value}"


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
    if not signing or signing[0].retired_at is not None or encryption is None:
        raise KeyUnavailable("the sender or the recipient has no active envelope key")
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
    subject = subject_for(recipient, body.TYPE)
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
