"""Envelopes from a peer node's agency held, unopened, while the peer's keys cannot be trusted; released once they can.

The inbox holds an envelope instead of opening it when its sender's node is not `trusted` (never fetched, its keys
cannot be fetched, or it lists keys no one has accepted), or when it is signed with a key the peer does not list
(yet). The peers Worker releases held envelopes of trusted peers through the inbox, which applies each exactly once
by its id, as it applies any envelope; a released envelope the inbox holds again stays held.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from enum import StrEnum

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exchange.transport.models import DeadLetter, HeldEnvelope, InboxEnvelope
from tenants.models import PeerNode, Tenant
from tenants.peer_keys import PeerState
from tenants.persistence import platform_session

log = logging.getLogger("casebridge.exchange")
RELEASE_BATCH = 200


class HoldReason(StrEnum):
    """Why an envelope waits. Stable values: they are shown in health and counted in metrics."""

    KEYS_NOT_FETCHED = "keys_not_fetched"
    PEER_UNREACHABLE = "peer_unreachable"
    KEYS_CHANGED = "keys_changed"
    UNKNOWN_SENDER_KEY = "unknown_sender_key"


def hold_reason(state: str | None) -> HoldReason | None:
    """Why an envelope from a peer in `state` (None: never fetched) must wait, or None when it may be opened."""
    if state == PeerState.TRUSTED:
        return None
    if state == PeerState.KEYS_CHANGED:
        return HoldReason.KEYS_CHANGED
    if state == PeerState.UNREACHABLE:
        return HoldReason.PEER_UNREACHABLE
    return HoldReason.KEYS_NOT_FETCHED


async def hold(
    session: AsyncSession,
    *,
    envelope_id: uuid.UUID,
    subject: str,
    sender: uuid.UUID,
    recipient: uuid.UUID,
    token: str,
    reason: HoldReason,
    now: dt.datetime,
) -> None:
    """Keep the envelope for later, in the caller's transaction (once: a redelivery updates the reason)."""
    log.warning("envelope held: %s", reason.value)
    row = await session.scalar(select(HeldEnvelope).where(HeldEnvelope.envelope_id == envelope_id))
    if row is not None:
        row.reason = reason.value
        return
    session.add(
        HeldEnvelope(
            envelope_id=envelope_id,
            subject=subject[:128],
            sender_tenant_id=sender,
            recipient_tenant_id=recipient,
            reason=reason.value,
            token=token,
            received_at=now,
        )
    )
    await session.flush()


async def releasable(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, bytes]]:
    """Held envelopes whose sender's node is trusted now, oldest first: (subject, token) for the inbox."""
    async with platform_session(sessions) as session:
        rows = await session.execute(
            select(HeldEnvelope.subject, HeldEnvelope.token)
            .join(Tenant, Tenant.id == HeldEnvelope.sender_tenant_id)
            .join(PeerNode, PeerNode.name == Tenant.peer)
            .where(PeerNode.state == PeerState.TRUSTED.value)
            .order_by(HeldEnvelope.received_at)
            .limit(RELEASE_BATCH)
        )
        return [(subject, token.encode("ascii")) for subject, token in rows.all()]


async def forget_settled(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Drop held envelopes the inbox has since applied or parked; how many."""
    async with platform_session(sessions) as session, session.begin():
        done = select(InboxEnvelope.envelope_id).union(
            select(DeadLetter.envelope_id).where(DeadLetter.envelope_id.is_not(None))
        )
        result = await session.execute(delete(HeldEnvelope).where(HeldEnvelope.envelope_id.in_(done)))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]  # a DELETE's result has a rowcount


async def held_by_reason(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(HeldEnvelope.reason, func.count()).group_by(HeldEnvelope.reason))
    return {reason: int(count) for reason, count in rows.all()}
