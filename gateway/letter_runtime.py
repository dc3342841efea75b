"""The letter worker's task in the gateway process: lays out pending letters after their sends commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from exchange.letters.render import LetterUnavailable
from exchange.letters.worker import LetterWorker

logger = logging.getLogger(__name__)

# A letter being laid out when the app stops gets this long to be stored; then its task is cancelled (the letter
# stays pending and its claim lapses, so another start lays it out again).
STOP_GRACE_S: Final = 10.0


class LetterRuntime:
    """Starts and stops `LetterWorker.run` with the app; `wake()` after a commit that left a letter pending."""

    def __init__(self, worker: LetterWorker, *, poll_interval: float = 1.0) -> None:
        self.worker = worker
        self._poll_interval = poll_interval
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("letter worker already started")
        # Fresh events: the app may be built outside the loop that runs it, and an Event binds to its first loop.
        self._stop, self._wake = asyncio.Event(), asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="letter-worker")

    async def stop(self) -> None:
        """Finish the letter in hand (within the grace period) and return. Safe to call more than once."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
        if not task.done():
            logger.warning("letter worker did not stop within the grace period; cancelled")
            task.cancel()
        await asyncio.wait({task})

    async def _run(self) -> None:
        try:
            # Fonts and the stylesheet are prepared once, off the event loop, before the first letter needs them.
            await asyncio.to_thread(self.worker.warm_up)
        except LetterUnavailable:
            logger.error("letters cannot be laid out on this node: the PDF engine is not installed")
        await self.worker.run(self._stop, self._wake, poll_interval=self._poll_interval)
