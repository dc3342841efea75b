"""The checkpoint witness of one gateway process: reads signed checkpoints off the bus and has them co-signed."""

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

    def __init__(self, bus: Bus, witness: Witness | None) -> None:
        self._bus = bus
        self._witness = witness
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self._witness is None or self._task is not None:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._witness), name="checkpoint-witness")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self, witness: Witness) -> None:
        while not self._stop.is_set():
            try:
                await self._follow(witness)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("checkpoint witness interrupted (%s); retrying", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), RETRY_S)

    async def _follow(self, witness: Witness) -> None:
        notes: asyncio.Queue[str] = asyncio.Queue()

        async def received(message: object) -> None:
            notes.put_nowait(message.data.decode("utf-8", errors="replace"))  # type: ignore[attr-defined]

        subscription = await self._bus.js.subscribe(
            CHECKPOINT_SUBJECT, cb=received, stream=AUDIT_STREAM, ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST,
        )  # fmt: skip
        try:
            while not self._stop.is_set():
                note = await notes.get()
                while not notes.empty():  # only the newest matters: it is checked against the last co-signed tree
                    note = notes.get_nowait()
                await witness.witness(note)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
