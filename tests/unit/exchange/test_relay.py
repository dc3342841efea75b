"""The outbox relay on a real SQLite database with an in-memory bus: order, marking, backoff, due times, recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from exchange.transport.models import OutboxEnvelope
from exchange.transport.outbox import OutgoingEnvelope
from exchange.transport.relay import CLAIM_FOR, OutboxRelay, retry_delay
from gateway.db import create_engine, upgrade_schema
from gateway.settings import DatabaseSettings
from tenants.clock import FixedClock
from tenants.models import Tenant
from tenants.persistence import make_sessionmaker, platform_session
from tests.polling import eventually

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
RECIPIENT = uuid.UUID("0190f2c4-0000-7000-8000-000000000001")


class BusDown(ConnectionError):
    """What the in-memory bus raises; the message stands in for server text that must not reach the database."""


class WatchedEvent(asyncio.Event):
    """An Event that tells when someone starts waiting on it: the relay is asleep once it waits for a wake."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.awaited.set()
        return await super().wait()


class MemoryPublisher:
    """A Publisher that keeps what it was given, and fails while `down` or for the envelope ids in `refused`."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []
        self.down = False
        self.refused: set[str] = set()

    async def publish_batch(self, envelopes: list[OutgoingEnvelope]) -> list[Exception | None]:
        outcomes: list[Exception | None] = []
        for envelope in envelopes:
            if self.down or str(envelope.envelope_id) in self.refused:
                outcomes.append(BusDown(f"no servers available for {envelope.subject} (Иванова Мария)"))
                continue
            self.published.append((envelope.subject, envelope.token.encode(), str(envelope.envelope_id)))
            outcomes.append(None)
        return outcomes

    @property
    def ids(self) -> list[str]:
        return [envelope_id for _, _, envelope_id in self.published]


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}", pool_size=1))
    await upgrade_schema(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def tenant(sessions: async_sessionmaker[AsyncSession]) -> Tenant:
    async with platform_session(sessions) as session, session.begin():
        tenant = Tenant(slug="semya", name="Семья", kind="social_centre")
        session.add(tenant)
    return tenant


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def bus() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def relay(sessions: async_sessionmaker[AsyncSession], bus: MemoryPublisher, clock: FixedClock) -> OutboxRelay:
    return OutboxRelay(sessions, bus, clock, batch=10, max_backoff=dt.timedelta(seconds=60), poll_interval=30.0)


async def add_envelopes(
    sessions: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    count: int,
    *,
    created: dt.datetime = NOW - dt.timedelta(minutes=5),
    due: dt.datetime = NOW,
    subject: str = f"cb.v2.{RECIPIENT}.{{sender}}.receipt",
) -> list[OutboxEnvelope]:
    """`count` outbox rows created one second apart, inserted newest first so only created_at can order them."""
    rows = [
        OutboxEnvelope(
            tenant_id=tenant.id,
            envelope_id=uuid7(),
            envelope_type="receipt",
            recipient_tenant_id=RECIPIENT,
            subject=subject.format(sender=tenant.id),
            token=f"header.key.iv.ciphertext-{n}.tag",
            next_attempt_at=due,
            created_at=created + dt.timedelta(seconds=n),
        )
        for n in range(count)
    ]
    async with platform_session(sessions) as session, session.begin():
        session.add_all(reversed(rows))
    return rows


async def stored(sessions: async_sessionmaker[AsyncSession]) -> dict[str, OutboxEnvelope]:
    async with platform_session(sessions) as session:
        return {str(row.envelope_id): row for row in await session.scalars(select(OutboxEnvelope))}


def ids(rows: list[OutboxEnvelope]) -> list[str]:
    return [str(row.envelope_id) for row in rows]


async def test_publishes_in_commit_order_with_envelope_ids_and_marks_sent(
    relay: OutboxRelay, bus: MemoryPublisher, sessions: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    rows = await add_envelopes(sessions, tenant, 3)

    assert await relay.relay_once() == 3

    assert bus.ids == ids(rows)
    subject = f"cb.v2.{RECIPIENT}.{tenant.id}.receipt"
    assert bus.published[0] == (subject, b"header.key.iv.ciphertext-0.tag", ids(rows)[0])
    after = await stored(sessions)
    assert all(row.sent_at == NOW and row.attempts == 0 and row.last_error is None for row in after.values())
    assert await relay.relay_once() == 0, "a sent envelope is never published again"
    assert len(bus.published) == 3


async def test_a_row_left_with_a_version_1_subject_is_sent_on_the_current_layout(
    relay: OutboxRelay, bus: MemoryPublisher, sessions: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    # Written before the sender joined the subject and still unsent at the upgrade.
    (row,) = await add_envelopes(sessions, tenant, 1, subject=f"cb.v1.{RECIPIENT}.receipt")

    assert await relay.relay_once() == 1

    assert bus.published == [(f"cb.v2.{RECIPIENT}.{tenant.id}.receipt", row.token.encode(), str(row.envelope_id))]


async def test_a_pass_takes_at_most_batch_envelopes(
    sessions: async_sessionmaker[AsyncSession], bus: MemoryPublisher, clock: FixedClock, tenant: Tenant
) -> None:
    rows = await add_envelopes(sessions, tenant, 5)
    relay = OutboxRelay(sessions, bus, clock, batch=2)

    assert [await relay.relay_once() for _ in range(4)] == [2, 2, 1, 0]
    assert bus.ids == ids(rows)


async def test_envelopes_not_yet_due_are_skipped_until_they_are(
    relay: OutboxRelay,
    bus: MemoryPublisher,
    sessions: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    clock: FixedClock,
) -> None:
    later = await add_envelopes(sessions, tenant, 1, due=NOW + dt.timedelta(seconds=30))
    now = await add_envelopes(sessions, tenant, 1, created=NOW)

    assert await relay.relay_once() == 1
    assert bus.ids == ids(now)

    clock.advance(dt.timedelta(seconds=30))
    assert await relay.relay_once() == 1
    assert bus.ids == ids(now) + ids(later)


async def test_a_refused_envelope_is_backed_off_the_rest_sent_and_only_the_error_class_recorded(
    relay: OutboxRelay, bus: MemoryPublisher, sessions: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    first, second, third, fourth = await add_envelopes(sessions, tenant, 4)
    bus.refused |= {str(second.envelope_id), str(third.envelope_id)}

    assert await relay.relay_once() == 2  # the whole batch is sent before any ack is awaited

    after = await stored(sessions)
    assert after[str(first.envelope_id)].sent_at == after[str(fourth.envelope_id)].sent_at == NOW
    failed = after[str(second.envelope_id)]
    assert failed.sent_at is None
    assert failed.attempts == 1
    assert failed.next_attempt_at == NOW + dt.timedelta(seconds=2)
    assert failed.last_error == "BusDown", "exception text may carry personal data or server details"
    released = after[str(third.envelope_id)]
    assert (released.sent_at, released.attempts, released.last_error) == (None, 0, None)
    assert released.next_attempt_at == NOW, "only the first refusal is backed off; the others are tried again at once"
    assert bus.ids == [str(first.envelope_id), str(fourth.envelope_id)]


async def test_one_failing_envelope_does_not_hold_back_the_others(
    relay: OutboxRelay, bus: MemoryPublisher, sessions: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    poison, *others = await add_envelopes(sessions, tenant, 3)
    bus.refused.add(str(poison.envelope_id))

    assert await relay.relay_once() == 2
    assert await relay.relay_once() == 0, "the refused one waits out its backoff"

    assert bus.ids == ids(others)


async def test_backoff_doubles_up_to_the_cap_and_recovery_sends_everything(
    relay: OutboxRelay,
    bus: MemoryPublisher,
    sessions: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    clock: FixedClock,
) -> None:
    (row,) = await add_envelopes(sessions, tenant, 1)
    bus.down = True
    delays = []
    for _ in range(7):
        assert await relay.relay_once() == 0
        after = (await stored(sessions))[str(row.envelope_id)]
        delays.append((after.next_attempt_at - clock.now()).total_seconds())
        assert await relay.relay_once() == 0, "not due again before its backoff has passed"
        clock.advance(after.next_attempt_at - clock.now())
    assert delays == [2, 4, 8, 16, 32, 60, 60]

    bus.down = False
    more = await add_envelopes(sessions, tenant, 2, created=NOW)
    assert await relay.relay_once() == 3
    assert bus.ids == ids([row, *more])
    after = (await stored(sessions))[str(row.envelope_id)]
    assert (after.attempts, after.sent_at, after.last_error) == (7, clock.now(), "BusDown")


@pytest.mark.parametrize(("attempts", "seconds"), [(1, 2), (2, 4), (5, 32), (6, 60), (7, 60), (10_000, 60)])
def test_retry_delay(attempts: int, seconds: int) -> None:
    assert retry_delay(attempts, dt.timedelta(seconds=60)) == dt.timedelta(seconds=seconds)


async def test_claimed_envelopes_are_invisible_to_another_relay(
    relay: OutboxRelay,
    bus: MemoryPublisher,
    sessions: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    clock: FixedClock,
) -> None:
    """A relay that crashed after claiming: its envelopes wait out the claim, then go out (deduplicated by id)."""

    class Crash(BaseException):
        pass

    class CrashingPublisher(MemoryPublisher):
        async def publish_batch(self, envelopes: list[OutgoingEnvelope]) -> list[Exception | None]:
            await super().publish_batch(envelopes)
            raise Crash  # acked by the bus, then the process died before marking anything sent

    rows = await add_envelopes(sessions, tenant, 2)
    with pytest.raises(Crash):
        await OutboxRelay(sessions, CrashingPublisher(), clock).relay_once()

    assert await relay.relay_once() == 0
    clock.advance(CLAIM_FOR)
    assert await relay.relay_once() == 2
    assert bus.ids == ids(rows)


async def test_run_drains_then_sleeps_until_woken_and_stops(
    relay: OutboxRelay, bus: MemoryPublisher, sessions: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    rows = await add_envelopes(sessions, tenant, 25)  # more than one batch of 10
    stop, wake = asyncio.Event(), WatchedEvent()
    task = asyncio.create_task(relay.run(stop, wake))
    try:
        await eventually(lambda: len(bus.published) == 25)
        assert bus.ids == ids(rows)
        await eventually(wake.awaited.is_set, what="the relay asleep after its drain")

        late = await add_envelopes(sessions, tenant, 1, created=NOW)
        assert len(bus.published) == 25, "between wakes the relay waits for its poll interval"
        assert not task.done()
        wake.set()
        await eventually(lambda: len(bus.published) == 26)
        assert bus.ids[-1] == ids(late)[0]
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task


async def test_run_survives_a_broken_database(
    tmp_path: Path, bus: MemoryPublisher, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'late.db'}", pool_size=1))
    sessions = make_sessionmaker(engine)
    relay = OutboxRelay(sessions, bus, clock, max_backoff=dt.timedelta(milliseconds=50), poll_interval=30.0)
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(relay.run(stop, wake))
    try:
        # No schema yet: every pass fails, and the relay must keep going rather than die.
        with caplog.at_level(logging.WARNING, logger="casebridge.exchange"):
            await eventually(lambda: caplog.text.count("outbox relay pass failed (OperationalError)") >= 2)
        assert not task.done()

        await upgrade_schema(engine)
        async with platform_session(sessions) as session, session.begin():
            tenant = Tenant(slug="semya", name="Семья", kind="social_centre")
            session.add(tenant)
        rows = await add_envelopes(sessions, tenant, 2)
        wake.set()  # cuts the 30-second poll short, if a pass already found the new schema still empty
        await eventually(lambda: len(bus.published) == 2)
        assert bus.ids == ids(rows)
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task
        await engine.dispose()
