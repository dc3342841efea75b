"""The co-signer Worker's job: reads signed checkpoints off the bus and has them co-signed for the agencies here."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js.api import DeliverPolicy

from audit.sealer import CHECKPOINT_SUBJECT
from audit.witness import Witness
from gateway.bus import AUDIT_STREAM, Bus

logger = logging.getLogger(__name__)

RETRY_S = 2.0  # after the bus or the database failed; the next checkpoint arrives within seconds anyway


class CheckpointWitnessing:
    """Co-signs, for the agencies hosted here, each checkpoint as it is seen on CB_AUDIT.

    An ordered consumer starting at the latest checkpoint: a witness needs each new tree in turn, not the history,
    and every checkpoint it does see is checked for consistency with the last one it co-signed.
    """

    def __init__(self, bus: Bus, witness: Witness) -> None:
        self._bus = bus
        self._witness = witness

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Follow the checkpoints until `stop` is set (a Worker's job); the bus or the database failing is retried."""
        while not stop.is_set():
            follower = asyncio.ensure_future(self._follow(self._witness))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({follower, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                follower.cancel()
                await asyncio.wait({follower})
            if not follower.cancelled() and follower.exception() is not None:
                logger.warning("checkpoint witness interrupted (%s); retrying", type(follower.exception()).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_S)

    async def _follow(self, witness: Witness) -> None:
        notes: asyncio.Queue[str] = asyncio.Queue()

        async def received(message: object) -> None:
            notes.put_nowait(message.data.decode("utf-8", errors="replace"))  # type: ignore[attr-defined]

        subscription = await self._bus.js.subscribe(
            CHECKPOINT_SUBJECT,
            cb=received,
            stream=AUDIT_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST,
        )
        try:
            while True:
                note = await notes.get()
                while not notes.empty():  # only the newest matters: it is checked against the last co-signed tree
                    note = notes.get_nowait()
                await witness.witness(note)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
