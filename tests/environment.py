"""What every test's service runs on: its settings, a clock tests move forward, and the shared nats-server's streams
emptied between tests. Fixtures in tests/conftest.py build on these; tests that make a service of their own use them
directly."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.js.errors
from litestar import Litestar

from exchange.transport.jetstream import INBOX_DURABLE_PREFIX
from gateway.bus import AUDIT_STREAM, ENVELOPE_STREAM
from gateway.settings import Settings

BASE_URL = "http://localhost"


class TravelClock:
    """The real time plus an offset that tests move forward (sessions, lockouts, key grace)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta


def settings_for(database_url: str, data_dir: Path, nats_url: str | None, **extra: str) -> Settings:
    env = {
        "CASEBRIDGE_DATA_DIR": str(data_dir),
        "CASEBRIDGE_DATABASE_URL": database_url,
        "CASEBRIDGE_BASE_URL": BASE_URL,
        **({"CASEBRIDGE_NATS_URL": nats_url} if nats_url else {}),
        # Letters in a thread of the test's own process: a worker process per test app would cost more than most
        # tests. The process pool has tests of its own (tests/unit/exchange/test_letters.py) and serves the e2e run.
        "CASEBRIDGE_PDF_PROCESSES": "0",
        **extra,
    }
    return Settings.from_env(env)


async def empty_bus(nats_url: str) -> None:
    """Tests share one nats-server: start each with empty streams and no inbox consumers, as a fresh node would."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        for stream in (ENVELOPE_STREAM, AUDIT_STREAM):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.purge_stream(stream)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            for consumer in await js.consumers_info(ENVELOPE_STREAM):
                if consumer.name.startswith(INBOX_DURABLE_PREFIX):
                    await js.delete_consumer(ENVELOPE_STREAM, consumer.name)
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def running_app(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan, started before the block and shut down after it; a startup failure is raised here."""
    started, stopping = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        # One task owns the lifespan from start to shutdown: anyio cancel scopes may not cross tasks,
        # and pytest runs a fixture's setup and teardown in different tasks.
        async with app.lifespan():
            started.set()
            await stopping.wait()

    holder = asyncio.create_task(hold(), name="app-lifespan")
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({holder, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if holder.done():
        waiter.cancel()
        holder.result()  # re-raises the startup failure
    try:
        yield
    finally:
        stopping.set()
        await holder
