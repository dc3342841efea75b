"""The exchange's bus workers: the JetStream publisher, the durable inbox consumer, and their start/stop wiring."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from gateway.bus import ENVELOPE_STREAM, ENVELOPE_SUBJECTS, Bus

logger = logging.getLogger(__name__)

InboxHandler = Callable[[str, bytes], Awaitable[None]]
"""Applies one envelope (`Inbox.receive(subject, token)`); raises only when it should be redelivered."""

# Longer than the slowest envelope we expect to apply; a message still unacked after this is redelivered.
ACK_WAIT_S = 30.0
# How long one pull waits on the server; an idle consumer costs one small request per this interval.
FETCH_TIMEOUT_S = 5.0
# After stop is asked, an envelope being applied gets this long to finish before the task is cancelled.
STOP_GRACE_S = 5.0


class JetStreamPublisher:
    """`exchange.outbox.Publisher` on JetStream: returns once the stream has stored the envelope, raises otherwise."""

    def __init__(self, bus: Bus, *, timeout: float = 5.0) -> None:
        self._bus = bus
        self._timeout = timeout

    async def publish(self, subject: str, token: bytes, *, envelope_id: str) -> None:
        # Nats-Msg-Id makes a re-publish after a crash a no-op within the stream's duplicate window; the expected
        # stream turns a subject no stream captures into an error instead of a message that silently vanishes.
        await self._bus.js.publish(
            subject, token, timeout=self._timeout, stream=ENVELOPE_STREAM, headers={"Nats-Msg-Id": envelope_id}
        )


class InboxConsumer:
    """A durable pull consumer on the envelope stream feeding `handler`, one message at a time, in stream order.

    A message is acked only after the handler returned (it has committed), so a crash anywhere means redelivery,
    and the handler's idempotency by envelope id makes that harmless. A failing handler gets the message again
    after an exponential delay; `max_deliver` is unlimited because an envelope must never be dropped by the bus.
    """

    def __init__(
        self,
        bus: Bus,
        handler: InboxHandler,
        *,
        durable: str = "casebridge-inbox",
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
        await self._run()

    async def _run(self) -> None:
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
            for index, message in enumerate(messages):
                if self._stopping.is_set():
                    # Handed back at once so the next consumer need not wait out ack_wait for them.
                    for unhandled in messages[index:]:
                        await unhandled.nak()
                    return
                await self._deliver(message)

    async def _fetch(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        """The next batch, or none when stop() is asked first: an idle consumer must not hold up shutdown.

        Abandoning a pull is safe because _run then unsubscribes its inbox, and the server drops pull requests
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

    async def _deliver(self, message: Msg) -> None:
        try:
            await self._handler(message.subject, message.data)
        except Exception as exc:
            # Type, sequence and count only: the message, the subject's tenant and the envelope stay out of logs.
            deliveries = max(message.metadata.num_delivered, 1)
            delay = min(self._retry_base * 2 ** min(deliveries - 1, 32), self._retry_max)
            logger.warning(
                "inbox consumer %s: handler failed (%s) on stream sequence %s, delivery %d; retrying in %.1fs",
                self.durable,
                type(exc).__name__,
                message.metadata.sequence.stream,
                deliveries,
                delay,
            )
            await message.nak(delay=delay)
            return
        await message.ack()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
