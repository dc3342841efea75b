"""The transactional outbox: envelopes are sealed and stored in the same transaction as the change they announce."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from joserfc.jwk import OKPKey
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from exchange.deps import ExchangeDeps
from exchange.envelopes import EnvelopeHeader, EnvelopeType, seal
from exchange.models import OutboxEnvelope
from tenants.errors import KeyUnavailable
from tenants.models import KeyUse

SUBJECT_PREFIX = "cb.v1"


def subject_for(recipient: uuid.UUID, envelope_type: EnvelopeType) -> str:
    """`cb.v1.<recipient-tenant-id>.<type>`: routing needs nothing but ids and the type."""
    return f"{SUBJECT_PREFIX}.{recipient}.{envelope_type.value}"


class Publisher(Protocol):
    """Puts one envelope on the bus and returns only once the bus has stored it (a JetStream ack)."""

    async def publish(self, subject: str, token: bytes, *, envelope_id: str) -> None: ...


async def enqueue(
    session: AsyncSession,
    deps: ExchangeDeps,
    *,
    sender: uuid.UUID,
    recipient: uuid.UUID,
    envelope_type: EnvelopeType,
    body: Mapping[str, Any],
    exchange_id: uuid.UUID | None = None,
) -> OutboxEnvelope:
    """Seal `body` from `sender` to `recipient` and add it to the outbox of the caller's transaction."""
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
        body,
        signing_key=deps.keyring.private_jwk(signing[0]),
        recipient_key=OKPKey.import_key(encryption),
    )
    row = OutboxEnvelope(
        tenant_id=sender,
        envelope_id=header.envelope_id,
        envelope_type=envelope_type.value,
        recipient_tenant_id=recipient,
        exchange_id=exchange_id,
        subject=subject_for(recipient, envelope_type),
        token=token,
        next_attempt_at=now,
    )
    session.add(row)
    return row
