"""The inbox applies a batch of envelopes in one transaction: good ones go through beside a bad one, which is parked.

The batch is handed to `Inbox.receive_batch` as the bus consumer would hand it over, made of genuine envelopes
(signed with the senders' real keys, encrypted to the recipient's) about referrals that really went through the
exchange before it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, select

from exchange.referrals.models import Referral, TimelineEntry
from exchange.transport.envelopes import EnvelopeType
from exchange.transport.models import DeadLetter, InboxEnvelope, OutboxEnvelope
from exchange.transport.outbox import OutgoingEnvelope
from gateway.runtime import Runtime
from tenants.persistence import platform_session
from tests.factories import forged_envelope, opened_envelope
from tests.integration.helpers.agencies import Agency, open_case, referral_body
from tests.polling import eventually


async def _sent_and_received(centre: Agency, recipient: Agency) -> uuid.UUID:
    """A referral from the centre that the recipient has applied and receipted."""
    case, _ = await open_case(centre, recipient)
    sent = await centre.post("/api/v1/referrals", referral_body(case, recipient.id, ["identity"]))
    assert sent.status_code == 201, sent.text
    referral_id: str = sent.json()["id"]

    async def received() -> bool:
        return bool((await centre.get(f"/api/v1/referrals/{referral_id}")).json()["status"] == "received")

    await eventually(received)
    return uuid.UUID(referral_id)


def _status(referral_id: uuid.UUID, status: str, **extra: str) -> dict[str, Any]:
    return {"referral_id": str(referral_id), "status": status, "at": dt.datetime.now(dt.UTC).isoformat(), **extra}


async def _state(runtime: Runtime, centre: Agency, envelope_ids: list[uuid.UUID]) -> dict[str, Any]:
    """Everything on the centre's side that applying these envelopes could have changed."""
    async with platform_session(runtime.sessions) as session:
        referrals = (
            await session.execute(
                select(Referral.exchange_id, Referral.status, Referral.outcome_result)
                .where(Referral.tenant_id == centre.id)
                .order_by(Referral.exchange_id)
            )
        ).all()
        timeline = (
            await session.execute(
                select(Referral.exchange_id, TimelineEntry.status)
                .join(Referral, Referral.id == TimelineEntry.referral_id)
                .where(Referral.tenant_id == centre.id)
                .order_by(TimelineEntry.at, TimelineEntry.id)
            )
        ).all()
        inbox = (
            await session.execute(
                select(InboxEnvelope.envelope_id, func.count())
                .where(InboxEnvelope.envelope_id.in_(envelope_ids))
                .group_by(InboxEnvelope.envelope_id)
            )
        ).all()
        parked = (
            await session.execute(
                select(
                    DeadLetter.envelope_id,
                    DeadLetter.reason,
                    DeadLetter.sender_tenant_id,
                    DeadLetter.recipient_tenant_id,
                )
            )
        ).all()
        receipts = (
            await session.execute(
                select(OutboxEnvelope.recipient_tenant_id, OutboxEnvelope.token)
                .where(OutboxEnvelope.tenant_id == centre.id, OutboxEnvelope.envelope_type == EnvelopeType.RECEIPT)
                .order_by(OutboxEnvelope.created_at, OutboxEnvelope.id)
            )
        ).all()
    return {
        "referrals": {row.exchange_id: (row.status, row.outcome_result) for row in referrals},
        "timeline": [tuple(row) for row in timeline],
        "inbox": {row.envelope_id: row[1] for row in inbox},
        "parked": [tuple(row) for row in parked],
        "receipts": [tuple(row) for row in receipts],
    }


async def test_a_batch_applies_its_good_envelopes_parks_the_bad_one_and_receipts_per_sender(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, kdn = agencies
    first, second = await _sent_and_received(centre, opeka), await _sent_and_received(centre, kdn)
    third = await _sent_and_received(centre, opeka)
    not_arrived = uuid.uuid4()

    async def envelope(sender: Agency, body: dict[str, Any]) -> OutgoingEnvelope:
        # Recorded in the sender's outbox as sent, so its receipt finds it; the test hands it to the inbox itself.
        return await forged_envelope(
            runtime,
            sender=sender.id,
            recipient=centre.id,
            envelope_type=EnvelopeType.REFERRAL_STATUS,
            body=body,
            exchange_id=uuid.UUID(body["referral_id"]),
        )

    batch = [
        await envelope(opeka, _status(first, "accepted")),
        await envelope(kdn, _status(second, "accepted")),
        # A move opeka may make, with an outcome nobody knows: never applicable, and its move must not stick.
        await envelope(opeka, _status(third, "rejected", outcome="teleported")),
        # Overtook the referral it is about, which may still come: not applicable yet.
        await envelope(opeka, _status(not_arrived, "accepted")),
        await envelope(opeka, _status(third, "accepted")),
    ]
    good, bad, early = [batch[0], batch[1], batch[4]], batch[2], batch[3]
    messages = [(e.subject, e.token.encode()) for e in batch]
    ids = [e.envelope_id for e in batch]
    before = await _state(runtime, centre, ids)

    assert await runtime.inbox.receive_batch(messages) == [True, True, True, False, True]

    after = await _state(runtime, centre, ids)
    # The good envelopes are applied, each once, the one after the bad envelope too.
    assert after["inbox"] == {e.envelope_id: 1 for e in good}
    assert {exchange_id: after["referrals"][exchange_id] for exchange_id in (first, second, third)} == {
        first: ("accepted", None),
        second: ("accepted", None),
        third: ("accepted", None),
    }
    for exchange_id in (first, second, third):
        moves = [status for referral, status in after["timeline"] if referral == exchange_id]
        assert moves == ["requested", "received", "accepted"], (exchange_id, moves)
    # The bad one is parked as a dead letter; the early one is neither applied nor parked: the bus brings it again.
    assert after["parked"] == [(bad.envelope_id, "unapplicable", opeka.id, centre.id)]
    assert early.envelope_id not in after["inbox"]
    # One receipt per sender for the batch, listing exactly the envelopes applied from it, in the batch's order.
    new_receipts = after["receipts"][len(before["receipts"]) :]
    assert sorted(recipient for recipient, _ in new_receipts) == sorted([opeka.id, kdn.id])
    for partner, listed in ((opeka, [batch[0], batch[4]]), (kdn, [batch[1]])):
        (token,) = [token for recipient, token in new_receipts if recipient == partner.id]
        receipt = await opened_envelope(runtime, token, sender=centre.id, recipient=partner.id)
        assert receipt.body["v"] == 2
        assert receipt.body["envelopes"] == [
            {"envelope_id": str(e.envelope_id), "type": EnvelopeType.REFERRAL_STATUS.value} for e in listed
        ]

    # The bus delivers the batch again (a lost ack): nothing is applied, parked or receipted twice.
    assert await runtime.inbox.receive_batch(messages) == [True, True, True, False, True]
    assert await _state(runtime, centre, ids) == after

    # The partners' nodes apply the receipts (the relay publishes them): exactly the applied envelopes are delivered.
    async def delivered() -> set[uuid.UUID] | None:
        async with platform_session(runtime.sessions) as session:
            done = set(
                await session.scalars(
                    select(OutboxEnvelope.envelope_id).where(
                        OutboxEnvelope.envelope_id.in_(ids), OutboxEnvelope.delivered_at.is_not(None)
                    )
                )
            )
        return done if len(done) >= len(good) else None

    assert await eventually(delivered) == {e.envelope_id for e in good}


async def test_an_envelope_on_a_subject_naming_other_tenants_is_parked(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    # NATS lets an agency's own node publish only subjects naming its tenant as the sender (deploy/nats/hub.conf);
    # the inbox holds the envelope's header to its subject, so a node cannot send as another agency by the header.
    centre, opeka, kdn = agencies
    first, second = await _sent_and_received(centre, opeka), await _sent_and_received(centre, opeka)

    async def envelope(referral_id: uuid.UUID) -> OutgoingEnvelope:
        return await forged_envelope(
            runtime,
            sender=opeka.id,
            recipient=centre.id,
            envelope_type=EnvelopeType.REFERRAL_STATUS,
            body=_status(referral_id, "accepted"),
            exchange_id=referral_id,
        )

    wrong, old_layout = await envelope(first), await envelope(second)
    messages = [
        # Published by kdn's node under its own name, with opeka's envelope inside.
        (f"cb.v2.{centre.id}.{kdn.id}.referral.status", wrong.token.encode()),
        # Published before the sender joined the subject (cb.v1.<recipient>.<type>), by a hub gateway.
        (f"cb.v1.{centre.id}.referral.status", old_layout.token.encode()),
    ]

    assert await runtime.inbox.receive_batch(messages) == [True, True]

    state = await _state(runtime, centre, [wrong.envelope_id, old_layout.envelope_id])
    assert state["parked"] == [(wrong.envelope_id, "wrong_subject", opeka.id, centre.id)]
    assert state["inbox"] == {old_layout.envelope_id: 1}
    assert state["referrals"][first] == ("received", None)
    assert state["referrals"][second] == ("accepted", None)


async def test_a_single_receipt_of_the_first_version_still_marks_its_envelope_delivered(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    """A node that has not moved to batched receipts answers each envelope with a receipt of version 1."""
    centre, opeka, _ = agencies
    referral_id = await _sent_and_received(centre, opeka)
    sent = await forged_envelope(
        runtime,
        sender=centre.id,
        recipient=opeka.id,
        envelope_type=EnvelopeType.REFERRAL_STATUS,
        body=_status(referral_id, "closed"),
        exchange_id=referral_id,
    )
    applied_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    receipt = await forged_envelope(
        runtime,
        sender=opeka.id,
        recipient=centre.id,
        envelope_type=EnvelopeType.RECEIPT,
        body={
            "envelope_id": str(sent.envelope_id),
            "type": EnvelopeType.REFERRAL_STATUS.value,
            "applied_at": applied_at.isoformat(),
        },
    )

    assert await runtime.inbox.receive_batch([(receipt.subject, receipt.token.encode())]) == [True]

    async with platform_session(runtime.sessions) as session:
        delivered_at = await session.scalar(
            select(OutboxEnvelope.delivered_at).where(OutboxEnvelope.envelope_id == sent.envelope_id)
        )
    assert delivered_at is not None
    assert delivered_at.replace(tzinfo=dt.UTC) == applied_at
    assert (await _state(runtime, centre, [receipt.envelope_id]))["inbox"] == {receipt.envelope_id: 1}
