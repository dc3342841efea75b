"""How much the transport has not done yet, for the operator's gauges: the outbox's unsent envelopes and the parked."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.transport.models import DeadLetter, OutboxEnvelope


async def unsent(session: AsyncSession) -> tuple[int, dt.datetime | None]:
    """Envelopes committed to the outbox that JetStream has not acknowledged yet, and when the oldest was committed."""
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(OutboxEnvelope.created_at)).where(OutboxEnvelope.sent_at.is_(None))
        )
    ).one()
    return int(count), oldest


async def parked_by_reason(session: AsyncSession) -> dict[str, int]:
    """Envelopes parked as dead letters, by reason (a fixed vocabulary: RejectReason and the inbox's own three)."""
    rows = await session.execute(select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason))
    return {reason: int(count) for reason, count in rows.all()}
