"""The transport on NATS JetStream: the relay's batch publisher and the inbox's durable batch consumer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import NotFoundError

from exchange.transport.outbox import OutgoingEnvelope

logger = logging.getLogger(__name__)

ENVELOPE_STREAM = "CB_ENVELOPES"
ENVELOPE_SUBJECTS = "cb.v1.>"
INBOX_DURABLE = "casebridge-inbox"

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


class JetStream(Protocol):
    """Whatever holds the process's JetStream context (the gateway's Bus)."""

    @property
    def js(self) -> JetStreamContext: ...


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
    """

    def __init__(
        self,
        bus: JetStream,
        handler: InboxBatchHandler,
        *,
        durable: str = INBOX_DURABLE,
        batch: int = 100,
        filter_subject: str = ENVELOPE_SUBJECTS,
        fetch_timeout: float = FETCH_TIMEOUT_S,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        reconnect_delay: float = 1.0,
    ) -> None:
        self._bus = bus
        self._handler = handler
        self.durable = durable
        self._batch = batch
        self._filter_subject = filter_subject
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
        config = ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_deliver=-1,
            filter_subject=self._filter_subject,
        )
        # Create-or-update, so a changed setting here reaches a consumer that already exists on the server.
        await self._bus.js.add_consumer(ENVELOPE_STREAM, config)
        return await self._bus.js.pull_subscribe_bind(durable=self.durable, stream=ENVELOPE_STREAM)

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


async def inbox_lag(bus: JetStream, *, durable: str = INBOX_DURABLE) -> tuple[int, int] | None:
    """The shared inbox consumer's lag: envelopes on the stream not yet handed to any inbox, and those handed out but
    not acknowledged yet (being applied, or to come again). None while no inbox has created the consumer."""
    try:
        info = await bus.js.consumer_info(ENVELOPE_STREAM, durable)
    except NotFoundError:
        return None
    return int(info.num_pending or 0), int(info.num_ack_pending or 0)
