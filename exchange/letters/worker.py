"""The letter worker: lays out the letters sends left pending, with no database transaction open during the layout.

A send only numbers its letter and keeps it pending (exchange.letters.services.register_letter), so the sending
transaction never waits for a layout. Each pass here claims a batch of due pending letters in one short transaction,
reads their sealed content (one read-only session, closed again), lays them out side by side across the PDF pool's
processes, and stores each one as soon as it is laid out: its PDF, signature and `referral.letter` envelope in one
more short transaction of its own. Crash-safe: a letter stays pending until its storing transaction commits, a claim
lapses after `claim_for`, and storing is store-once (a second worker that laid out the same letter stores and sends
nothing). A letter that fails is noted and retried on its own; its neighbours in the batch are stored regardless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exchange.deps import ExchangeDeps
from exchange.letters.models import Letter
from exchange.letters.services import (
    PENDING,
    PendingLetter,
    claim_pending,
    note_render_failure,
    pending_content,
    store_rendered,
)
from exchange.transport.relay import drain_until_stopped, retry_delay
from tenants.persistence import platform_session, read_only_platform_session

log = logging.getLogger("casebridge.exchange")

# A claimed letter is hidden from other workers (gateway replicas) this long: far more than laying out a batch takes
# (a few milliseconds a letter, a second at worst under load), so a letter is laid out twice only after a crash, and
# then stored once. A crashed node's letters therefore wait at most this long for another worker (or the restarted
# one).
CLAIM_FOR: Final = dt.timedelta(seconds=30)
MAX_BACKOFF: Final = dt.timedelta(minutes=5)
# Letters claimed and laid out at once: enough to keep every process of the PDF pool busy while the finished ones are
# stored, few enough that the batch's stores do not queue long for the database's connections.
BATCH: Final = 16


class LetterWorker:
    """Renders pending letters; one instance per process, safe with several processes."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        deps: ExchangeDeps,
        *,
        batch: int = BATCH,
        claim_for: dt.timedelta = CLAIM_FOR,
        max_backoff: dt.timedelta = MAX_BACKOFF,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._sessions = sessions
        self._deps = deps
        self.batch = batch
        self._claim_for = claim_for
        self._max_backoff = max_backoff
        self._on_stored = on_stored

    def warm_up(self) -> None:
        """Prepare the layout engine (blocking: run it in a thread); raises LetterUnavailable without one."""
        self._deps.letters.warm_up()

    async def render_once(self, stop: asyncio.Event | None = None) -> int:
        """Claim up to `batch` due letters and lay them out together; returns how many were claimed.

        When `stop` is already set once the claim is made, the claim is handed back untouched; otherwise the whole
        batch is finished (its layouts take milliseconds).
        """
        claimed = await self._claim()
        if not claimed:
            return 0
        if stop is not None and stop.is_set():
            await self._release(claimed)
            return len(claimed)
        contents = await self._read(claimed)
        await asyncio.gather(*(self._lay_out_and_store(letter_id, contents.get(letter_id)) for letter_id in claimed))
        return len(claimed)

    async def render(self, letter_id: uuid.UUID) -> bool:
        """Lay out, sign and store one pending letter; True when this call stored it. Failures are noted, not raised."""
        contents = await self._read([letter_id])
        return await self._lay_out_and_store(letter_id, contents.get(letter_id))

    async def _read(self, letter_ids: list[uuid.UUID]) -> dict[uuid.UUID, PendingLetter | Exception | None]:
        """The sealed content of each letter, in one read-only session (closed before any layout starts)."""
        contents: dict[uuid.UUID, PendingLetter | Exception | None] = {}
        try:
            async with await read_only_platform_session(self._sessions) as session:
                for letter_id in letter_ids:
                    try:
                        contents[letter_id] = await pending_content(session, self._deps, letter_id)
                    except Exception as exc:  # a key that will not open: this letter fails, not its batch
                        contents[letter_id] = exc
        except Exception as exc:  # the database is away: every letter not read yet fails this time
            contents.update({letter_id: exc for letter_id in letter_ids if letter_id not in contents})
        return contents

    async def _lay_out_and_store(self, letter_id: uuid.UUID, pending: PendingLetter | Exception | None) -> bool:
        if pending is None:
            return False  # stored meanwhile (by another worker) or gone with its referral
        if isinstance(pending, Exception):
            await self._failed(letter_id, pending)
            return False
        try:
            # No session, no connection, no transaction while the layout runs: other requests write freely.
            pdf = await self._deps.letters.render(pending.content)
            async with platform_session(self._sessions) as session, session.begin():
                stored = await store_rendered(session, self._deps, letter_id, pdf)
        except Exception as exc:  # the engine, a key or the database: the letter stays pending and is tried again
            await self._failed(letter_id, exc)
            return False
        if stored:
            self._on_stored()  # its referral.letter envelope is in the outbox: let the relay publish it now
        return stored

    async def _claim(self) -> list[uuid.UUID]:
        now = self._deps.clock.now()
        # A read-only look first: most wakes find nothing, and on SQLite this takes no write lock.
        async with await read_only_platform_session(self._sessions) as session:
            due = await session.scalar(
                select(Letter.id)
                .where(Letter.status == PENDING, Letter.content_sealed.is_not(None), Letter.next_attempt_at <= now)
                .limit(1)
            )
        if due is None:
            return []
        async with platform_session(self._sessions) as session, session.begin():
            return await claim_pending(session, now, limit=self.batch, claim_for=self._claim_for)

    async def _release(self, letter_ids: list[uuid.UUID]) -> None:
        async with platform_session(self._sessions) as session, session.begin():
            await session.execute(
                update(Letter)
                .where(Letter.id.in_(letter_ids), Letter.status == PENDING)
                .values(next_attempt_at=self._deps.clock.now())
                .execution_options(synchronize_session=False)
            )

    async def _failed(self, letter_id: uuid.UUID, exc: Exception) -> None:
        error = type(exc).__name__  # the class only: messages could quote letter content
        try:
            async with platform_session(self._sessions) as session, session.begin():
                attempts = await session.scalar(select(Letter.attempts).where(Letter.id == letter_id))
                delay = retry_delay(int(attempts or 0) + 1, self._max_backoff)
                await note_render_failure(session, letter_id, error, self._deps.clock.now(), delay)
        except Exception as noted:  # the database is away too: the claim lapses and the letter is tried again
            log.warning("letter worker could not note a failure (%s)", type(noted).__name__)
            return
        log.warning("letter not rendered (%s); retrying in %.0fs", error, delay.total_seconds())

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, *, poll_interval: float = 1.0) -> None:
        """Render until `stop` is set: drain what is due, then sleep until `wake`, `poll_interval` or `stop`."""
        await drain_until_stopped(
            lambda: self.render_once(stop),
            batch=self.batch,
            stop=stop,
            wake=wake,
            poll_interval=poll_interval,
            max_backoff=self._max_backoff,
            what="letter worker",
        )
