"""The transport on NATS JetStream: the relay's batch publisher and the inbox's durable batch consumer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import NotFoundError

from exchange.transport.outbox import OutgoingEnvelope

logger = logging.getLogger(__name__)

ENVELOPE_STREAM = "CB_ENVELOPES"
# cb.v1.<recipient>.<type> is the layout before the sender joined the subject: the stream keeps taking it so that
# envelopes published before an upgrade reach their inbox consumers (the relay sends old outbox rows on cb.v2).
ENVELOPE_SUBJECTS = ("cb.v2.>", "cb.v1.>")
INBOX_DURABLE_PREFIX = "casebridge-inbox-"

InboxBatchHandler = Callable[[Sequence[tuple[str, bytes]]], Awaitable[list[bool]]]
"""Applies a batch of envelopes (`Inbox.receive_batch`): for each, True when it is settled (applied, already seen
or parked) and False when it should come again later; raises only when none of them could be settled."""

# Longer than the slowest batch we expect to apply; a message still unacked after this is redelivered.
ACK_WAIT_S = 30.0
# How long one pull waits on the server; an idle consumer costs one small request per this interval.
FETCH_TIMEOUT_S = 5.0
# After stop is asked, the batch being applied gets this long to commit before the task is cancelled.
STOP_GRACE_S = 5.0
# How long the relay waits for the stream's acks of one batch before it counts the rest as not stored.
PUBLISH_TIMEOUT_S = 5.0


def inbox_durable(tenant: uuid.UUID) -> str:
    """The durable consumer holding the envelopes addressed to `tenant`: one per tenant, so that NATS can give an
    agency's own node its tenant's consumer and nothing else (deploy/nats/hub.conf)."""
    return f"{INBOX_DURABLE_PREFIX}{tenant}"


def inbox_filter(tenant: uuid.UUID) -> tuple[str, ...]:
    """The subjects of the envelopes addressed to `tenant` (`cb.v2.<recipient>.<sender>.<type>`, and the older
    `cb.v1.<recipient>.<type>`)."""
    return f"cb.v2.{tenant}.>", f"cb.v1.{tenant}.>"


class JetStream(Protocol):
    """Whatever holds the process's JetStream contexts (the gateway's Bus)."""

    @property
    def js(self) -> JetStreamContext: ...

    @property
    def envelope_js(self) -> JetStreamContext:
        """The JetStream API of the envelope stream: `js` on the hub, the hub's imported API on an agency's node."""
        ...


class JetStreamPublisher:
    """`exchange.transport.outbox.Publisher` on JetStream: the whole batch is sent, then the acks are collected."""

    def __init__(self, bus: JetStream, *, timeout: float = PUBLISH_TIMEOUT_S) -> None:
        self._bus = bus
        self._timeout = timeout

    async def publish_batch(self, envelopes: list[OutgoingEnvelope]) -> list[Exception | None]:
        js = self._bus.js
        outcomes: list[Exception | None] = [None] * len(envelopes)
        pending: dict[int, asyncio.Future[PubAck]] = {}
        for index, envelope in enumerate(envelopes):
            try:
                # Nats-Msg-Id makes a re-publish after a crash a no-op within the stream's duplicate window; the
                # expected stream turns a subject no stream captures into an error instead of a silent loss.
                pending[index] = await js.publish_async(
                    envelope.subject,
                    envelope.token.encode("ascii"),
                    wait_stall=self._timeout,
                    stream=ENVELOPE_STREAM,
                    headers={"Nats-Msg-Id": str(envelope.envelope_id)},
                )
            except Exception as exc:  # too large, not connected: this one is not stored, the rest may be
                outcomes[index] = exc
        if pending:
            await asyncio.wait(pending.values(), timeout=self._timeout)
        for index, future in pending.items():
            if not future.done():
                future.cancel()  # releases its place in the client's window of pending publishes
                outcomes[index] = TimeoutError()
            elif future.exception() is not None:
                outcomes[index] = future.exception()  # type: ignore[assignment]  # done with an exception
        return outcomes


class InboxConsumer:
    """A durable pull consumer on the envelope stream feeding `handler` a batch at a time, in stream order.

    A message is acked only after the handler returned (its batch has committed), so a crash anywhere means
    redelivery, and the inbox's idempotency by envelope id makes that harmless. A message the handler could not
    settle comes again after an exponential delay; `max_deliver` is unlimited because an envelope must never be
    dropped by the bus. Every replica uses the same durable, so JetStream shares the messages out between them.
    With `create` false it binds to a durable someone else made (an agency's node may not create consumers on the
    hub's stream).
    """

    def __init__(
        self,
        bus: JetStream,
        handler: InboxBatchHandler,
        *,
        durable: str,
        filter_subjects: tuple[str, ...],
        create: bool = True,
        batch: int = 100,
        fetch_timeout: float = FETCH_TIMEOUT_S,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        reconnect_delay: float = 1.0,
    ) -> None:
        self._bus = bus
        self._handler = handler
        self.durable = durable
        self._batch = batch
        self._filter_subjects = filter_subjects
        self._create = create
        self._fetch_timeout = fetch_timeout
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._reconnect_delay = reconnect_delay
        self._stopping = asyncio.Event()

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Consume until `stop` is set (the Worker's job); connection trouble is retried here, never raised."""
        self._stopping = stop
        # NATS restarts, a lost connection or a deleted consumer all land here: subscribe again after a pause.
        while not self._stopping.is_set():
            try:
                subscription = await self._subscribe()
            except Exception as exc:
                logger.warning("inbox consumer %s cannot subscribe (%s); retrying", self.durable, type(exc).__name__)
                await self._pause(self._reconnect_delay)
                continue
            try:
                await self._consume(subscription)
            except Exception as exc:
                logger.warning("inbox consumer %s lost the bus (%s); resubscribing", self.durable, type(exc).__name__)
                await self._pause(self._reconnect_delay)
            finally:
                with contextlib.suppress(Exception):  # the connection may be gone; the server then forgets it anyway
                    await subscription.unsubscribe()

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        js = self._bus.envelope_js
        if self._create:
            await ensure_inbox_consumer(js, self.durable, self._filter_subjects)
        return await js.pull_subscribe_bind(durable=self.durable, stream=ENVELOPE_STREAM)

    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            try:
                messages = await self._fetch(subscription)
            except TimeoutError:  # nothing arrived (or NATS is reconnecting): the normal idle case
                continue
            if messages:
                await self._deliver(messages)

    async def _fetch(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        """The next batch, or none when stop is asked first: an idle consumer must not hold up shutdown.

        Abandoning a pull is safe because run() then unsubscribes its inbox, and the server drops pull requests
        whose reply subject has lost its interest instead of delivering into them.
        """
        fetch = asyncio.ensure_future(subscription.fetch(self._batch, timeout=self._fetch_timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not fetch.done():
                fetch.cancel()
                await asyncio.wait({fetch})
        return [] if fetch.cancelled() else fetch.result()

    async def _deliver(self, messages: list[Msg]) -> None:
        try:
            settled = await self._handler([(message.subject, message.data) for message in messages])
        except Exception as exc:
            # Type, sequence and count only: the message, the subject's tenant and the envelope stay out of logs.
            logger.warning(
                "inbox consumer %s: a batch of %d failed (%s) from stream sequence %s; retrying",
                self.durable,
                len(messages),
                type(exc).__name__,
                messages[0].metadata.sequence.stream,
            )
            settled = [False] * len(messages)
        for message, done in zip(messages, settled, strict=True):
            if done:
                await message.ack()
            else:
                deliveries = max(message.metadata.num_delivered, 1)
                await message.nak(delay=min(self._retry_base * 2 ** min(deliveries - 1, 32), self._retry_max))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


async def ensure_inbox_consumer(js: JetStreamContext, durable: str, filter_subjects: tuple[str, ...]) -> None:
    """Create the durable, or update it to these settings when it exists already."""
    config = ConsumerConfig(
        durable_name=durable,
        name=durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_deliver=-1,
        filter_subjects=list(filter_subjects),
    )
    await js.add_consumer(ENVELOPE_STREAM, config)


class TenantInboxes:
    """The inbox Worker's job: one InboxConsumer per tenant whose envelopes this node consumes.

    `consumed()` names those tenants; it is asked again every `refresh_s`, so a tenant added while the node runs
    gets its consumer then (its envelopes wait in the stream meanwhile: the consumer starts from the first one).
    `prepared` are tenants hosted elsewhere (an agency's own node) whose consumers this node creates on the
    stream it owns and never reads. With `create` false (an agency's node) the consumers are bound, not created.
    """

    def __init__(
        self,
        bus: JetStream,
        handler: InboxBatchHandler,
        consumed: Callable[[], Awaitable[Collection[uuid.UUID]]],
        *,
        prepared: Collection[uuid.UUID] = (),
        create: bool = True,
        refresh_s: float = 2.0,
        reconnect_delay: float = 1.0,
    ) -> None:
        self._bus = bus
        self._handler = handler
        self._consumed = consumed
        self._prepared = frozenset(prepared)
        self._create = create
        self._refresh_s = refresh_s
        self._reconnect_delay = reconnect_delay

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        running: dict[uuid.UUID, asyncio.Task[None]] = {}
        unprepared = set(self._prepared)
        try:
            while not stop.is_set():
                unprepared = await self._prepare(unprepared)
                try:
                    tenants = set(await self._consumed()) - self._prepared
                except Exception as exc:  # the database is away: keep the consumers we have, ask again later
                    logger.warning("inbox cannot list the tenants it consumes (%s)", type(exc).__name__)
                    tenants = set(running)
                for tenant in tenants - running.keys():
                    consumer = InboxConsumer(
                        self._bus,
                        self._handler,
                        durable=inbox_durable(tenant),
                        filter_subjects=inbox_filter(tenant),
                        create=self._create,
                        reconnect_delay=self._reconnect_delay,
                    )
                    running[tenant] = asyncio.create_task(consumer.run(stop, wake), name=f"inbox:{consumer.durable}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._refresh_s)
        except BaseException:
            for task in running.values():  # cancelled after the grace period: so are the consumers
                task.cancel()
            raise
        finally:
            # Once stop is set each consumer finishes the batch it holds and returns.
            await asyncio.gather(*running.values(), return_exceptions=True)

    async def _prepare(self, tenants: set[uuid.UUID]) -> set[uuid.UUID]:
        """Create the consumers of tenants hosted elsewhere; those the bus refused now come again next round."""
        left: set[uuid.UUID] = set()
        for tenant in tenants:
            try:
                await ensure_inbox_consumer(self._bus.envelope_js, inbox_durable(tenant), inbox_filter(tenant))
            except Exception as exc:
                logger.warning("inbox consumer for a tenant hosted elsewhere not created (%s)", type(exc).__name__)
                left.add(tenant)
        return left


async def inbox_lag(bus: JetStream, tenants: Collection[uuid.UUID]) -> tuple[int, int] | None:
    """The lag of these tenants' inbox consumers, summed: envelopes on the stream not yet handed to an inbox, and
    those handed out but not acknowledged yet (being applied, or to come again). None while none of the consumers
    exists yet."""
    pending = unacknowledged = 0
    found = False
    for tenant in tenants:
        try:
            info = await bus.envelope_js.consumer_info(ENVELOPE_STREAM, inbox_durable(tenant))
        except NotFoundError:
            continue
        found = True
        pending += int(info.num_pending or 0)
        unacknowledged += int(info.num_ack_pending or 0)
    return (pending, unacknowledged) if found else None
