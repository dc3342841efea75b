"""The Worker lifecycle: start in order, stop in reverse within a grace period, restart a failed job, wake."""

from __future__ import annotations

import asyncio

import pytest

from gateway.workers import Worker, WorkerName, Workers
from tests.polling import eventually


class Job:
    """Records what happens to it; `fail` raises that many times first, `stubborn` ignores stop."""

    def __init__(self, name: str, log: list[str], *, fail: int = 0, stubborn: bool = False) -> None:
        self.name, self.log, self.fail, self.stubborn = name, log, fail, stubborn
        self.runs = 0
        self.woken = asyncio.Event()

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        self.runs += 1
        self.log.append(f"start {self.name}")
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the database is away")
        while not stop.is_set():
            waiting = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiting:
                waiter.cancel()
            if wake.is_set():
                wake.clear()
                self.woken.set()
        if self.stubborn:
            await asyncio.Event().wait()  # never finishes on its own: only cancelling ends it
        self.log.append(f"stop {self.name}")


async def test_workers_start_in_order_stop_in_reverse_and_may_start_again() -> None:
    log: list[str] = []
    jobs = [Job(name.value, log) for name in (WorkerName.RELAY, WorkerName.INBOX, WorkerName.SEALER)]
    workers = Workers(Worker(WorkerName(job.name), job, grace_s=1.0) for job in jobs)
    workers.start()
    await eventually(lambda: len(log) == 3)
    assert log == ["start relay", "start inbox", "start sealer"]
    assert workers.status() == {"relay": True, "inbox": True, "sealer": True}

    await workers.stop()
    assert log[3:] == ["stop sealer", "stop inbox", "stop relay"]
    assert workers.status() == {"relay": False, "inbox": False, "sealer": False}
    await workers.stop()  # stopping twice is harmless

    workers[WorkerName.INBOX].start()
    await eventually(lambda: log[-1] == "start inbox")
    assert workers.status()["inbox"]
    await workers.stop()


async def test_a_failing_job_is_started_again_without_anyone_doing_anything(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    job = Job("relay", log, fail=1)
    worker = Worker(WorkerName.RELAY, job, grace_s=1.0)
    worker.start()
    try:
        await eventually(lambda: job.runs == 2)
        assert worker.restarts == 1
        assert worker.ready
        assert "the relay worker failed (RuntimeError); starting it again" in caplog.text
        assert "database" not in caplog.text  # the exception's type only, never its message
    finally:
        await worker.stop()


async def test_a_job_that_ignores_stop_is_cancelled_after_its_grace_period(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    worker = Worker(WorkerName.LETTERS, Job("letters", log, stubborn=True), grace_s=0.1)
    worker.start()
    await eventually(lambda: log == ["start letters"])
    async with asyncio.timeout(2):
        await worker.stop()
    assert not worker.running
    assert "stop letters" not in log
    assert "did not stop within" in caplog.text


async def test_readiness_includes_the_jobs_own_health() -> None:
    healthy = True
    worker = Worker(WorkerName.SEALER, Job("sealer", []), grace_s=1.0, healthy=lambda: healthy)
    assert not worker.ready  # not started
    worker.start()
    try:
        await eventually(lambda: worker.running)
        assert worker.ready
        healthy = False
        assert not worker.ready
    finally:
        await worker.stop()


async def test_a_wake_reaches_the_local_worker_or_goes_to_the_process_that_runs_it() -> None:
    woken_elsewhere: list[WorkerName] = []
    relay = Job("relay", [])
    workers = Workers([Worker(WorkerName.RELAY, relay, grace_s=1.0)], remote_wake=woken_elsewhere.append)
    workers.start()
    try:
        await asyncio.sleep(0)
        workers.wake(WorkerName.RELAY, WorkerName.LETTERS)
        async with asyncio.timeout(2):
            await relay.woken.wait()
        assert woken_elsewhere == [WorkerName.LETTERS]
    finally:
        await workers.stop()
