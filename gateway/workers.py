"""Background work as Workers: one lifecycle (start, stop with a grace period, readiness) for every kind of job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Protocol

logger = logging.getLogger(__name__)


class WorkerName(StrEnum):
    """The Workers a process can run (docs/architecture.md, "Workers and processes"), in the order they start; they
    stop in reverse."""

    RELAY = "relay"
    INBOX = "inbox"
    SEALER = "sealer"
    LETTERS = "letters"
    REMINDERS = "reminders"
    COSIGNER = "cosigner"
    PEERS = "peers"


class Job(Protocol):
    """The body of a Worker: works until `stop` is set, then finishes what it holds and returns.

    `wake` is set when there may be new work (a commit added outbox rows or pending letters); a job that only works
    on a timer may ignore it. A job that raises, or returns before `stop`, is started again after a pause.
    """

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None: ...


# A job that keeps failing is started again after 1, 2, 4 ... seconds, at most this long.
RESTART_MAX_S = 30.0
# A job that ran this long before failing counts as having worked: its next failure pauses from the start again.
_STEADY_S = 60.0


class Worker:
    """Runs one job in a task of its own until stopped; restarts it when it fails, so nothing waits for a human."""

    def __init__(
        self,
        name: WorkerName,
        job: Job,
        *,
        grace_s: float,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.job = job
        self.grace_s = grace_s
        self._healthy = healthy
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self.restarts = 0

    def start(self) -> None:
        """Start the job; the bus and the database it needs must be set up first. A stopped Worker may start again."""
        if self._task is not None:
            raise RuntimeError(f"the {self.name} worker is already running")
        # Fresh events: the app may be built outside the loop that runs it, and an Event binds to its first loop.
        self._stop, self._wake = asyncio.Event(), asyncio.Event()
        self._task = asyncio.create_task(self._supervise(), name=f"worker:{self.name}")

    def wake(self) -> None:
        """Tell the job there may be new work now rather than at its next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Ask the job to finish, wait up to the grace period, then cancel it. Safe to call at any time, repeatedly."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        with contextlib.suppress(TimeoutError):
            # shield: the timeout must not cancel the job before we decide to; wait() below collects it either way.
            await asyncio.wait_for(asyncio.shield(task), self.grace_s)
        if not task.done():
            logger.warning("the %s worker did not stop within %.0f s; cancelled", self.name, self.grace_s)
            task.cancel()
        await asyncio.wait({task})

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def ready(self) -> bool:
        """Running, and the job's own health check (if it has one) passes."""
        return self.running and (self._healthy is None or self._healthy())

    async def _supervise(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                await self.job.run(self._stop, self._wake)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The type only: exception messages can carry SQL, server replies or data.
                logger.error("the %s worker failed (%s); starting it again", self.name, type(exc).__name__)
            else:
                if self._stop.is_set():
                    return
                logger.error("the %s worker ended on its own; starting it again", self.name)
            if time.monotonic() - began > _STEADY_S:
                pause = 1.0
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)
            pause = min(pause * 2, RESTART_MAX_S)


class Workers:
    """The Workers one process runs: started in the order given, stopped in reverse."""

    def __init__(self, workers: Iterable[Worker], *, remote_wake: Callable[[WorkerName], None] | None = None) -> None:
        self._workers = {worker.name: worker for worker in workers}
        # Wakes a Worker that runs in another process (a `casebridge worker`), when this one does not run it.
        self._remote_wake = remote_wake

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._workers.values())

    def __getitem__(self, name: WorkerName) -> Worker:
        return self._workers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._workers

    @property
    def names(self) -> tuple[WorkerName, ...]:
        return tuple(self._workers)

    def start(self) -> None:
        started: list[Worker] = []
        try:
            for worker in self:
                worker.start()
                started.append(worker)
        except BaseException:
            for worker in reversed(started):
                worker._stop.set()  # the loop is still running: stop() would need awaiting, so ask and let go
            raise

    async def stop(self) -> None:
        for worker in reversed(list(self)):
            try:
                await worker.stop()
            except Exception as exc:  # one Worker's trouble must not leave the others running
                logger.error("stopping the %s worker failed (%s)", worker.name, type(exc).__name__)

    def wake(self, *names: WorkerName) -> None:
        """There may be new work for these Workers: wake them here, or in the process that runs them."""
        for name in names:
            worker = self._workers.get(name)
            if worker is not None:
                worker.wake()
            elif self._remote_wake is not None:
                self._remote_wake(name)

    def status(self) -> Mapping[str, bool]:
        """Each Worker this process runs, and whether it is ready."""
        return {worker.name.value: worker.ready for worker in self}
