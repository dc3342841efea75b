"""Envelope delivery over a real nats-server: publisher, durable inbox consumer, redelivery, restarts, the workers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import nats.errors
import pytest
from sqlalchemy import select
from uuid_utils.compat import uuid7

from exchange.transport.jetstream import STOP_GRACE_S, InboxConsumer, JetStreamPublisher
from exchange.transport.models import OutboxEnvelope
from exchange.transport.outbox import OutgoingEnvelope
from exchange.transport.relay import OutboxRelay
from gateway.bus import ENVELOPE_STREAM, Bus, nats_server_binary
from gateway.db import create_engine, upgrade_schema
from gateway.settings import DatabaseSettings
from gateway.workers import Worker, WorkerName, Workers
from tenants.clock import SystemClock
from tenants.models import Tenant
from tenants.persistence import make_sessionmaker, platform_session
from tests.polling import eventually

WITHIN_S = 10.0


class Recorder:
    """An inbox batch handler that keeps what it applied. It fails the first `failures` batches, as a dead database
    would, and leaves `later` unsettled for its first `later_for` deliveries, as an envelope that overtook its
    referral is."""

    def __init__(self, failures: int = 0, *, later: bytes | None = None, later_for: int = 0) -> None:
        self.applied: list[tuple[str, bytes]] = []
        self.calls = 0
        self.batches: list[int] = []
        self._failures = failures
        self._later, self._later_for = later, later_for

    async def __call__(self, messages: Sequence[tuple[str, bytes]]) -> list[bool]:
        self.calls += 1
        self.batches.append(len(messages))
        if self.calls <= self._failures:
            raise ConnectionRefusedError(f"database down while applying {messages[0][1]!r}")
        settled = []
        for subject, token in messages:
            if token == self._later and self._later_for > 0:
                self._later_for -= 1
                settled.append(False)
                continue
            self.applied.append((subject, token))
            settled.append(True)
        return settled

    @property
    def tokens(self) -> list[bytes]:
        return [token for _, token in self.applied]


class Route:
    """A subject tree and durable name of one test's own, so tests sharing the session's server never meet."""

    def __init__(self) -> None:
        self.root = f"cb.v2.{uuid.uuid4()}.{uuid.uuid4()}"
        self.durable = f"test-{uuid.uuid4().hex}"

    @property
    def subject(self) -> str:
        return f"{self.root}.receipt"

    @property
    def filter(self) -> str:
        return f"{self.root}.>"

    def consumer(
        self,
        bus: Bus,
        handler: Recorder,
        *,
        retry_base: float = 1.0,
        reconnect_delay: float = 1.0,
        fetch_timeout: float = 5.0,
    ) -> Worker:
        """The inbox consumer on this route, as the inbox Worker runs it."""
        consumer = InboxConsumer(
            bus,
            handler,
            durable=self.durable,
            filter_subjects=(self.filter,),
            retry_base=retry_base,
            reconnect_delay=reconnect_delay,
            fetch_timeout=fetch_timeout,
        )
        return Worker(WorkerName.INBOX, consumer, grace_s=STOP_GRACE_S)


async def publish(publisher: JetStreamPublisher, subject: str, token: bytes, *, envelope_id: str) -> None:
    """One envelope through the relay's batch publisher; raises what kept it off the stream."""
    (failure,) = await publisher.publish_batch([OutgoingEnvelope(uuid.UUID(envelope_id), subject, token.decode())])
    if failure is not None:
        raise failure


async def settled(bus: Bus, durable: str) -> bool:
    """Everything the consumer was given is acked and nothing is waiting for it."""
    info = await bus.js.consumer_info(ENVELOPE_STREAM, durable)
    return bool(info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0)


@pytest.fixture
async def bus(nats_url: str, tmp_path: Path) -> AsyncIterator[Bus]:
    bus = Bus(nats_url=nats_url, store_dir=tmp_path / "unused", stream_replicas=1)
    await bus.start()
    yield bus
    await bus.stop()


@pytest.fixture
async def route(bus: Bus) -> AsyncIterator[Route]:
    route = Route()
    yield route
    with contextlib.suppress(nats.errors.Error):
        await bus.js.delete_consumer(ENVELOPE_STREAM, route.durable)


async def test_every_published_envelope_reaches_the_handler_in_order(bus: Bus, route: Route) -> None:
    publisher, handler = JetStreamPublisher(bus), Recorder()
    consumer = route.consumer(bus, handler)
    tokens = [f"envelope-{n}".encode() for n in range(20)]
    for token in tokens[:10]:
        await publish(publisher, route.subject, token, envelope_id=str(uuid7()))
    consumer.start()
    try:
        for token in tokens[10:]:
            await publish(publisher, route.subject, token, envelope_id=str(uuid7()))
        await eventually(lambda: len(handler.applied) == len(tokens))
        await eventually(lambda: settled(bus, route.durable))
    finally:
        await consumer.stop()

    assert handler.tokens == tokens
    assert {subject for subject, _ in handler.applied} == {route.subject}


async def test_the_same_envelope_id_published_twice_is_delivered_once(bus: Bus, route: Route) -> None:
    publisher, handler = JetStreamPublisher(bus), Recorder()
    envelope_id = str(uuid7())
    await publish(publisher, route.subject, b"envelope", envelope_id=envelope_id)
    # What the relay does after a crash between the bus's ack and marking the row sent.
    await publish(publisher, route.subject, b"envelope", envelope_id=envelope_id)
    await publish(publisher, route.subject, b"marker", envelope_id=str(uuid7()))

    consumer = route.consumer(bus, handler)
    consumer.start()
    try:
        await eventually(lambda: b"marker" in handler.tokens)
    finally:
        await consumer.stop()

    assert handler.tokens == [b"envelope", b"marker"]


async def test_a_failed_envelope_is_redelivered_then_acked_and_logged_without_content(
    bus: Bus, route: Route, caplog: pytest.LogCaptureFixture
) -> None:
    publisher, handler = JetStreamPublisher(bus), Recorder(failures=2)
    consumer = route.consumer(bus, handler, retry_base=0.1)
    consumer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="exchange.transport.jetstream"):
            await publish(publisher, route.subject, b"secret-envelope", envelope_id=str(uuid7()))
            await eventually(lambda: len(handler.applied) == 1)
        await eventually(lambda: settled(bus, route.durable))
    finally:
        await consumer.stop()

    assert handler.calls == 3
    assert handler.tokens == [b"secret-envelope"]
    assert caplog.text.count("a batch of 1 failed (ConnectionRefusedError)") == 2
    assert "secret" not in caplog.text
    assert route.root not in caplog.text, "the subject names the recipient tenant"


async def test_a_restarted_consumer_resumes_where_the_durable_left_off(bus: Bus, route: Route) -> None:
    publisher = JetStreamPublisher(bus)
    first, second = Recorder(), Recorder()
    consumer = route.consumer(bus, first)
    consumer.start()
    try:
        for n in range(3):
            await publish(publisher, route.subject, f"before-{n}".encode(), envelope_id=str(uuid7()))
        await eventually(lambda: len(first.applied) == 3)
        await eventually(lambda: settled(bus, route.durable))
    finally:
        started = time.monotonic()
        await consumer.stop()
    assert time.monotonic() - started < 0.5, "an idle consumer stops at once"

    for n in range(3):
        await publish(publisher, route.subject, f"while-down-{n}".encode(), envelope_id=str(uuid7()))
    consumer = route.consumer(bus, second)
    consumer.start()
    try:
        await publish(publisher, route.subject, b"after", envelope_id=str(uuid7()))
        await eventually(lambda: len(second.applied) == 4)
        await eventually(lambda: settled(bus, route.durable))
    finally:
        await consumer.stop()

    assert first.tokens == [b"before-0", b"before-1", b"before-2"]
    assert second.tokens == [b"while-down-0", b"while-down-1", b"while-down-2", b"after"]


async def test_the_consumer_hands_over_batches_and_redelivers_only_what_was_not_settled(bus: Bus, route: Route) -> None:
    publisher, handler = JetStreamPublisher(bus), Recorder(later=b"overtook", later_for=2)
    envelopes = [OutgoingEnvelope(uuid7(), route.subject, f"envelope-{n}") for n in range(50)]
    envelopes.insert(10, OutgoingEnvelope(uuid7(), route.subject, "overtook"))
    assert await publisher.publish_batch(envelopes) == [None] * 51  # one batch, acks pipelined
    consumer = route.consumer(bus, handler, retry_base=0.1)
    consumer.start()
    try:
        await eventually(lambda: b"overtook" in handler.tokens)
        await eventually(lambda: settled(bus, route.durable))
    finally:
        await consumer.stop()

    assert handler.tokens[:50] == [f"envelope-{n}".encode() for n in range(50)], "its neighbours were not held up"
    assert handler.tokens[50:] == [b"overtook"]
    assert max(handler.batches) > 1, "messages that were waiting together came together"


async def test_a_batch_with_an_envelope_the_bus_refuses_stores_the_others(bus: Bus, route: Route) -> None:
    publisher, handler = JetStreamPublisher(bus), Recorder()
    stray = OutgoingEnvelope(uuid7(), "cb.nowhere.receipt", "no stream captures this subject")
    good = [OutgoingEnvelope(uuid7(), route.subject, f"envelope-{n}") for n in range(3)]
    outcomes = await publisher.publish_batch([good[0], stray, good[1], good[2]])
    assert outcomes[0] is None
    assert outcomes[2:] == [None, None]
    assert isinstance(outcomes[1], Exception)
    consumer = route.consumer(bus, handler)
    consumer.start()
    try:
        await eventually(lambda: len(handler.applied) == 3)
    finally:
        await consumer.stop()
    assert handler.tokens == [b"envelope-0", b"envelope-1", b"envelope-2"]


class StandaloneNats:
    """A nats-server of this test's own on a fixed port, so it can be stopped and started again at the same URL."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = ["-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        self._proc = await asyncio.create_subprocess_exec(
            nats_server_binary(), *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )

        async def answers() -> bool:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return True
            return False

        await eventually(answers, within=WITHIN_S, what="the standalone nats-server to accept connections")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), WITHIN_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_nats_outage_fails_publishes_and_the_consumer_carries_on_after_a_restart(tmp_path: Path) -> None:
    server = StandaloneNats(tmp_path / "store")
    await server.start()
    bus = Bus(nats_url=server.url, store_dir=tmp_path / "unused", stream_replicas=1)
    route, handler = Route(), Recorder()
    try:
        await bus.start()
        publisher = JetStreamPublisher(bus, timeout=1.0)
        # A pull in flight when the server died is only given up at its timeout: that bounds the recovery time.
        consumer = route.consumer(bus, handler, reconnect_delay=0.2, fetch_timeout=1.0)
        consumer.start()
        try:
            await publish(publisher, route.subject, b"before", envelope_id=str(uuid7()))
            await eventually(lambda: handler.tokens == [b"before"])
            await eventually(lambda: settled(bus, route.durable))

            await server.stop()
            retried = str(uuid7())
            started = time.monotonic()
            with pytest.raises((nats.errors.Error, TimeoutError)):
                await publish(publisher, route.subject, b"during", envelope_id=retried)
            assert time.monotonic() - started < 3.0, "the publish timeout bounds an outage's cost to the relay"

            await server.start()
            # The relay re-publishes what failed, under the same id. The failed attempt may also have reached the
            # server from the client's reconnect buffer: either way the handler sees the envelope once.
            await eventually(lambda: bus.nc.is_connected)
            await publish(publisher, route.subject, b"during", envelope_id=retried)
            await publish(publisher, route.subject, b"after", envelope_id=str(uuid7()))
            await eventually(lambda: b"after" in handler.tokens)
        finally:
            await consumer.stop()
        assert handler.tokens == [b"before", b"during", b"after"]
    finally:
        await bus.stop()
        await server.stop()


async def test_workers_relay_outbox_rows_to_the_inbox_handler_and_mark_them_sent(
    bus: Bus, route: Route, tmp_path: Path
) -> None:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}", pool_size=1))
    await upgrade_schema(engine)
    sessions = make_sessionmaker(engine)
    handler = Recorder()
    relay = OutboxRelay(sessions, JetStreamPublisher(bus), SystemClock(), poll_interval=30.0)
    consumer = InboxConsumer(bus, handler, durable=route.durable, filter_subjects=(route.filter,))
    workers = Workers([Worker(WorkerName.RELAY, relay, grace_s=5.0), Worker(WorkerName.INBOX, consumer, grace_s=5.0)])
    try:
        workers.start()
        async with platform_session(sessions) as session, session.begin():
            tenant = Tenant(slug="semya", name="Семья", kind="social_centre")
            session.add(tenant)
            await session.flush()
            now = dt.datetime.now(dt.UTC)
            rows = [
                OutboxEnvelope(
                    tenant_id=tenant.id,
                    envelope_id=uuid7(),
                    envelope_type="receipt",
                    recipient_tenant_id=uuid.uuid4(),
                    subject=route.subject,
                    token=f"envelope-{n}",
                    next_attempt_at=now,
                    created_at=now + dt.timedelta(microseconds=n),
                )
                for n in range(3)
            ]
            session.add_all(rows)
        # Well inside the 30-second poll: only the wake can have sent them this soon.
        workers.wake(WorkerName.RELAY)
        await eventually(lambda: len(handler.applied) == 3, within=5.0)

        assert handler.tokens == [b"envelope-0", b"envelope-1", b"envelope-2"]

        async def all_sent() -> bool:
            async with platform_session(sessions) as session:
                unsent = await session.scalars(select(OutboxEnvelope.id).where(OutboxEnvelope.sent_at.is_(None)))
                return not unsent.all()

        await eventually(all_sent)
    finally:
        await workers.stop()
        await workers.stop()  # idempotent
        await engine.dispose()
