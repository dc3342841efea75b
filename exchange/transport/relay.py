"""The outbox relay: publishes committed outbox envelopes to the bus and marks them sent after the bus's ack."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exchange.transport.models import OutboxEnvelope
from exchange.transport.outbox import OutgoingEnvelope, Publisher, current_subject
from tenants.clock import Clock
from tenants.persistence import platform_session

log = logging.getLogger("casebridge.exchange")

# Claimed rows are hidden from other relays (gateway replicas) this long. A crash mid-batch therefore delays those
# envelopes by at most this much, and the re-publish still falls inside JetStream's 2-minute duplicate window.
CLAIM_FOR = dt.timedelta(seconds=30)
# 2**32 s is far beyond any sensible max_backoff; the cap only keeps the arithmetic finite for a row failing forever.
_MAX_EXPONENT = 32


def retry_delay(attempts: int, max_backoff: dt.timedelta) -> dt.timedelta:
    """Exponential backoff after the `attempts`-th failure: 2, 4, 8 ... seconds, capped at `max_backoff`."""
    return min(dt.timedelta(seconds=2 ** min(attempts, _MAX_EXPONENT)), max_backoff)


class OutboxRelay:
    """Moves outbox rows onto the bus in commit order; one instance per process, safe with several processes.

    No database transaction is held while publishing: SQLite takes its write lock at BEGIN, so a transaction open
    across network round trips (or a 5-second publish timeout) would stall every request handler. A pass therefore
    claims due rows in one short transaction, publishes them with none open, and marks the acked ones sent in one
    more. Marking per pass rather than per row costs one commit per `batch` envelopes instead of one per envelope;
    a crash between an ack and that commit only re-publishes the pass's envelopes, which JetStream drops as
    duplicates (Nats-Msg-Id = envelope id) and the recipient's inbox ignores by envelope id anyway.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        clock: Clock,
        *,
        batch: int = 200,
        max_backoff: dt.timedelta = dt.timedelta(seconds=60),
        poll_interval: float = 1.0,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._sessions = sessions
        self._publisher = publisher
        self._clock = clock
        self.batch = batch
        self._max_backoff = max_backoff
        self._poll_interval = poll_interval

    async def relay_once(self) -> int:
        """Publish up to `batch` due envelopes, all sent before any ack is awaited; return how many the bus acked.

        Acks are pipelined: the pass costs one round trip to the bus, not one per envelope. An envelope the bus
        refused is backed off (the first of them) or handed back for the next pass (the rest, in case only the
        first is at fault); every acked envelope is marked sent, all in one transaction.
        """
        due = await self._claim()
        if not due:
            return 0
        outcomes = await self._publisher.publish_batch(
            [OutgoingEnvelope(row.envelope_id, current_subject(row.subject, row.tenant_id), row.token) for row in due]
        )
        sent = [row.id for row, failure in zip(due, outcomes, strict=True) if failure is None]
        failed = [(row, failure) for row, failure in zip(due, outcomes, strict=True) if failure is not None]
        await self._settle(sent, failed)
        return len(sent)

    async def _claim(self) -> Sequence[OutboxEnvelope]:
        now = self._clock.now()
        async with platform_session(self._sessions) as session, session.begin():
            # SKIP LOCKED lets PostgreSQL replicas claim disjoint rows; SQLite serialises claims with BEGIN IMMEDIATE.
            rows = (
                await session.scalars(
                    select(OutboxEnvelope)
                    .where(OutboxEnvelope.sent_at.is_(None), OutboxEnvelope.next_attempt_at <= now)
                    .order_by(OutboxEnvelope.created_at, OutboxEnvelope.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await _set(session, [row.id for row in rows], next_attempt_at=now + CLAIM_FOR)
            return rows

    async def _settle(self, sent: list[uuid.UUID], failed: list[tuple[OutboxEnvelope, Exception]]) -> None:
        now = self._clock.now()
        async with platform_session(self._sessions) as session, session.begin():
            if sent:
                await _set(session, sent, sent_at=now)
            if failed:
                (row, exc), rest = failed[0], failed[1:]
                attempts = row.attempts + 1
                retry_at = now + retry_delay(attempts, self._max_backoff)
                # The class name only: exception messages can quote server replies or payload fragments.
                error = type(exc).__name__[:255]
                await _set(session, [row.id], attempts=attempts, next_attempt_at=retry_at, last_error=error)
                # Released, not backed off: if only the first is at fault (too large, say), the rest must not queue
                # behind it. If the bus is down, the next pass fails again and backs off the next one.
                if rest:
                    await _set(session, [other.id for other, _ in rest], next_attempt_at=now)
        if failed:
            delay = (retry_at - now).total_seconds()
            log.warning(
                "outbox relay: %d not stored (%s) after %d sent; retrying in %.0fs",
                len(failed),
                error,
                len(sent),
                delay,
            )

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Relay until `stop` is set: drain what is due, then sleep until `wake`, `poll_interval` or `stop`."""
        await drain_until_stopped(
            self.relay_once,
            batch=self.batch,
            stop=stop,
            wake=wake,
            poll_interval=self._poll_interval,
            max_backoff=self._max_backoff,
            what="outbox relay",
        )


async def _set(session: AsyncSession, ids: Sequence[uuid.UUID], **values: object) -> None:
    await session.execute(
        update(OutboxEnvelope)
        .where(OutboxEnvelope.id.in_(ids))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def drain_until_stopped(
    one_pass: Callable[[], Awaitable[int]],
    *,
    batch: int,
    stop: asyncio.Event,
    wake: asyncio.Event,
    poll_interval: float,
    max_backoff: dt.timedelta,
    what: str,
) -> None:
    """The loop of a background worker (the relay, the letter worker): run `one_pass` while it fills a whole
    `batch`, then sleep until `wake`, `poll_interval` or `stop`; a failing pass backs off instead of ending it."""
    failures = 0
    while not stop.is_set():
        # Cleared before the pass, so a wake() during it triggers another pass instead of being lost.
        wake.clear()
        try:
            while await one_pass() >= batch and not stop.is_set():
                pass
        except Exception as exc:  # the database is down or similar: the worker must outlive it
            failures += 1
            delay = min(poll_interval * 2 ** min(failures, _MAX_EXPONENT), max_backoff.total_seconds())
            log.warning("%s pass failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            # A wake() cannot help a broken database, so only stop cuts this wait short.
            await _first_of(stop, None, delay)
            continue
        failures = 0
        await _first_of(stop, wake, poll_interval)


async def _first_of(first: asyncio.Event, second: asyncio.Event | None, within_s: float) -> None:
    """Return when either event is set or after `within_s` seconds."""
    waiters = {asyncio.ensure_future(event.wait()) for event in (first, second) if event is not None}
    try:
        await asyncio.wait(waiters, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
