"""The letters Worker's job: lays out the letters sends leave pending, after their transactions commit."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from exchange.letters.render import LetterUnavailable
from exchange.letters.worker import LetterWorker

logger = logging.getLogger(__name__)

# A letter being laid out when the process stops gets this long to be stored; then its task is cancelled (the letter
# stays pending and its claim lapses, so another start lays it out again).
STOP_GRACE_S: Final = 10.0


class LetterLayout:
    """Prepares the layout engine once, then runs `LetterWorker.run` until stopped."""

    def __init__(self, worker: LetterWorker) -> None:
        self.worker = worker

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        try:
            # Fonts and templates are prepared once, off the event loop, before the first letter needs them.
            await asyncio.to_thread(self.worker.warm_up)
        except LetterUnavailable:
            logger.error("letters cannot be laid out on this node: the PDF engine is not installed")
        await self.worker.run(stop, wake)
