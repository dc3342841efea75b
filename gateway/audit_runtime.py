"""The co-signer Worker's job: reads signed checkpoints off the bus, has them co-signed for the agencies here, and
sends them to every peer's witness to be co-signed for the agencies there (audit/peer_cosign.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js.api import DeliverPolicy

from audit.peer_cosign import Submitter
from audit.sealer import CHECKPOINT_SUBJECT
from audit.witness import Witness
from gateway.bus import AUDIT_STREAM, Bus

logger = logging.getLogger(__name__)

RETRY_S = 2.0  # after the bus or the database failed; the next checkpoint arrives within seconds anyway
# A peer's witness that could not be reached, or whose co-signatures did not all verify yet (its agencies' keys not
# fetched yet), gets the latest checkpoint again this long after: a quiet log signs no new one to retry with.
PEER_RETRY_S = 10.0


class CheckpointWitnessing:
    """Co-signs, for the agencies hosted here, each checkpoint as it is seen on CB_AUDIT, and has the peers' witnesses
    co-sign it for theirs.

    An ordered consumer starting at the latest checkpoint: a witness needs each new tree in turn, not the history,
    and every checkpoint it does see is checked for consistency with the last one it co-signed.
    """

    def __init__(self, bus: Bus, witness: Witness | None, submitter: Submitter | None = None) -> None:
        self._bus = bus
        self._witness = witness
        self._submitter = submitter

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Follow the checkpoints until `stop` is set (a Worker's job); the bus or the database failing is retried."""
        while not stop.is_set():
            follower = asyncio.ensure_future(self._follow())
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

    async def _follow(self) -> None:
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
            retry: str | None = None  # the latest note, while a peer's witness still owes its co-signatures
            while True:
                try:
                    note = await asyncio.wait_for(notes.get(), None if retry is None else PEER_RETRY_S)
                except TimeoutError:
                    assert retry is not None
                    note = retry
                else:
                    while not notes.empty():  # only the newest matters: it is checked against the last co-signed tree
                        note = notes.get_nowait()
                    if self._witness is not None:
                        await self._witness.witness(note)
                retry = note if await self._submit(note) else None
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _submit(self, note: str) -> bool:
        """Send the note to the peers' witnesses; whether one of them should get it again later."""
        if self._submitter is None:
            return False
        again = False
        for submission in await self._submitter.submit(note):
            if submission.status != "cosigned" or submission.rejected:
                logger.warning(
                    "checkpoint of size %d not co-signed by peer %s (%s): %s",
                    submission.size,
                    submission.witness,
                    submission.status,
                    submission.detail or f"{submission.rejected} co-signatures did not verify",
                )
            again = again or submission.status == "unreachable" or bool(submission.rejected)
        return again
