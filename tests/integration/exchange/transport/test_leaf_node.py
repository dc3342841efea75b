"""An agency's own node joined to the hub's NATS as a leaf node (deploy/nats/hub.conf and leaf.conf, real servers):
what its account lets it publish, and which inbox consumer it can read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from exchange.transport.envelopes import EnvelopeType
from exchange.transport.jetstream import (
    ENVELOPE_STREAM,
    InboxConsumer,
    JetStreamPublisher,
    ensure_inbox_consumer,
    inbox_durable,
    inbox_filter,
)
from exchange.transport.outbox import OutgoingEnvelope, subject_for
from gateway.bus import AUDIT_STREAM, Bus
from tests.integration.helpers.leaf import HUB_API, HubAndLeaf, hub_and_leaf
from tests.polling import eventually

AGENCY = uuid.uuid4()  # the tenant the agency's node hosts
HUB_AGENCY = uuid.uuid4()  # an agency on the hub
OTHER_AGENCY = uuid.uuid4()  # another agency on the hub
# What the node's account may not reach answers nothing; how long a refused request waits for an answer.
REFUSED_WITHIN_S = 2.0
# How a request nobody may answer fails: no server takes it (the import does not exist in the node's account).
REFUSED = (
    nats.js.errors.ServiceUnavailableError,
    nats.errors.NoRespondersError,
    TimeoutError,
    nats.errors.TimeoutError,
)


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[tuple[HubAndLeaf, Bus, Bus]]:
    """Both servers, the hub's Bus (it owns CB_ENVELOPES and creates the node's consumer, as a hub gateway with
    CASEBRIDGE_NATS_LEAF_TENANTS does) and the node's Bus (CASEBRIDGE_NATS_HUB_API)."""
    async with hub_and_leaf(tmp_path, AGENCY) as servers:
        hub = Bus(servers.hub_url, tmp_path / "unused-hub", 1)
        node = Bus(servers.leaf_url, tmp_path / "unused-node", 1, hub_api=HUB_API)
        await hub.start()
        try:
            for tenant in (AGENCY, OTHER_AGENCY):
                await ensure_inbox_consumer(hub.envelope_js, inbox_durable(tenant), inbox_filter(tenant))
            await node.start()
            try:
                yield servers, hub, node
            finally:
                await node.stop()
        finally:
            await hub.stop()


def _envelope(recipient: uuid.UUID, sender: uuid.UUID) -> OutgoingEnvelope:
    envelope_id = uuid.uuid4()
    return OutgoingEnvelope(
        envelope_id, subject_for(recipient, sender, EnvelopeType.REFERRAL_REQUESTED), f"token-{envelope_id}"
    )


async def _stored(hub: Bus) -> list[str]:
    """The subjects of every envelope on the hub's stream."""
    info = await hub.js.stream_info(ENVELOPE_STREAM, subjects_filter=">")
    return sorted((info.state.subjects or {}).keys())


async def test_the_node_sends_only_as_its_own_agency(federation: tuple[HubAndLeaf, Bus, Bus]) -> None:
    _, hub, node = federation
    assert not node.owns_envelope_stream
    publisher = JetStreamPublisher(node)
    own = _envelope(HUB_AGENCY, AGENCY)

    async def sent() -> bool:  # the node's interest reaches the hub a moment after the leaf connection
        return await publisher.publish_batch([own]) == [None]

    await eventually(sent)
    assert await _stored(hub) == [own.subject]

    forged = [_envelope(HUB_AGENCY, OTHER_AGENCY), _envelope(AGENCY, OTHER_AGENCY), _envelope(HUB_AGENCY, HUB_AGENCY)]
    outcomes = await publisher.publish_batch(forged)
    assert all(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    # Nothing of it was stored: the hub's stream still holds the one envelope.
    assert await _stored(hub) == [own.subject]
    assert (await hub.js.stream_info(ENVELOPE_STREAM)).state.messages == 1

    # The node keeps its own JetStream for its audit stream; the envelope stream is the hub's alone.
    assert (await node.js.stream_info(AUDIT_STREAM)).config.name == AUDIT_STREAM
    with pytest.raises(nats.js.errors.NotFoundError):
        await node.js.stream_info(ENVELOPE_STREAM)


async def test_the_node_pulls_and_acks_its_own_consumer_and_reads_nothing_else(
    federation: tuple[HubAndLeaf, Bus, Bus],
) -> None:
    servers, hub, node = federation
    for_node, for_other = _envelope(AGENCY, HUB_AGENCY), _envelope(OTHER_AGENCY, HUB_AGENCY)
    # Whatever the hub's stream carries is not published to the node's account: a plain subscription sees nothing.
    watcher = await nats.connect(servers.leaf_url)
    try:
        overhearing = await watcher.subscribe("cb.>")
        await watcher.flush()
        assert await JetStreamPublisher(hub).publish_batch([for_node, for_other]) == [None, None]

        applied: list[tuple[str, bytes]] = []

        async def handler(messages: Sequence[tuple[str, bytes]]) -> list[bool]:
            applied.extend(messages)
            return [True] * len(messages)

        consumer = InboxConsumer(
            node, handler, durable=inbox_durable(AGENCY), filter_subjects=inbox_filter(AGENCY), create=False
        )
        stop, wake = asyncio.Event(), asyncio.Event()
        running = asyncio.create_task(consumer.run(stop, wake))
        try:

            async def acknowledged() -> bool:
                info = await node.envelope_js.consumer_info(ENVELOPE_STREAM, inbox_durable(AGENCY))
                return bool(applied) and info.num_pending == 0 and info.num_ack_pending == 0

            await eventually(acknowledged)
        finally:
            stop.set()
            await running
        assert applied == [(for_node.subject, for_node.token.encode())]
        # The hub sees the same: the node's consumer is acknowledged, the other agency's untouched.
        mine = await hub.js.consumer_info(ENVELOPE_STREAM, inbox_durable(AGENCY))
        theirs = await hub.js.consumer_info(ENVELOPE_STREAM, inbox_durable(OTHER_AGENCY))
        assert (mine.num_pending, mine.num_ack_pending, mine.ack_floor.stream_seq) == (0, 0, 1)
        assert (theirs.num_pending, theirs.num_ack_pending, theirs.delivered.stream_seq) == (1, 0, 0)
        await watcher.flush()
        assert overhearing.pending_msgs == 0, "the node's account overheard the hub's envelopes"
    finally:
        await watcher.close()

    api = node.envelope_js
    refusals: dict[str, Callable[[], Awaitable[object]]] = {
        "read another agency's consumer": lambda: api.consumer_info(ENVELOPE_STREAM, inbox_durable(OTHER_AGENCY)),
        "list the streams": api.streams_info,
        "read the stream": lambda: api.stream_info(ENVELOPE_STREAM),
        "create a stream": lambda: api.add_stream(StreamConfig(name="CB_NODE", subjects=["cb.v2.>"])),
        "create a consumer": lambda: ensure_inbox_consumer(
            api, inbox_durable(OTHER_AGENCY), inbox_filter(OTHER_AGENCY)
        ),
        "delete its own consumer": lambda: api.delete_consumer(ENVELOPE_STREAM, inbox_durable(AGENCY)),
    }
    for what, request in refusals.items():
        try:
            await asyncio.wait_for(request(), REFUSED_WITHIN_S)
        except REFUSED:
            continue
        pytest.fail(f"the node could {what}")
    # Pulling from another agency's consumer brings nothing: the request reaches no server.
    other = await api.pull_subscribe_bind(durable=inbox_durable(OTHER_AGENCY), stream=ENVELOPE_STREAM)
    with pytest.raises(REFUSED):
        await other.fetch(1, timeout=REFUSED_WITHIN_S)
    await other.unsubscribe()
    theirs = await hub.js.consumer_info(ENVELOPE_STREAM, inbox_durable(OTHER_AGENCY))
    assert (theirs.num_pending, theirs.num_ack_pending) == (1, 0), "the other agency's envelope still waits for it"
