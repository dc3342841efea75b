"""What the database does per send, per read, per listing and per applied envelope: statements counted in-process.

The app is built by gateway.app.create_app against a fresh database of the configuration's kind, with its own
nats-server, and driven through httpx's ASGI transport in the benchmark's own task, with every Worker running
in-process. SQLAlchemy's `before_cursor_execute` hook counts each statement the driver executes (BEGIN,
SAVEPOINT and PostgreSQL's set_config included; COMMIT and ROLLBACK are not cursor statements). A statement is
put down to the request being made when the benchmark's context variable names one; otherwise to the asyncio task
that ran it, so the inbox's statements are those of the task whose name or coroutine says `inbox`.

The same run keeps one referral.requested, one receipt and one referral.letter body, opened with the recipient's
keys, for the crypto floor (crypto_floor.py) to seal and open again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from exchange.transport.envelopes import EnvelopeType, OpenedEnvelope, open_envelope
from exchange.transport.models import OutboxEnvelope
from gateway.app import create_app
from gateway.bus import EmbeddedNats
from gateway.runtime import Runtime
from tenants.models import KeyUse
from tenants.persistence import platform_session
from tests.environment import running_app
from tests.perf.crypto_floor import ReferralBodies
from tests.perf.processes import BenchError
from tests.perf.stacks import (
    Progress,
    bearer,
    expect,
    migrated_settings,
    progress,
    referral_body,
    seed_agencies,
    server_env,
)
from tests.pg import ThrowawayPostgres

REQUEST: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_request", default=None)
BASE_URL = "http://localhost"
WARM_UP_SENDS = 3


class StatementCounter:
    """Statements per label: the request in REQUEST, else `inbox` or the name of the task that ran them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)

    def _count(self, *_: Any) -> None:
        self.counts[REQUEST.get() or _task_label()] += 1

    def reset(self) -> None:
        self.counts.clear()


def _task_label() -> str:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return "outside the event loop"
    if task is None:
        return "outside any task"
    name, coroutine = task.get_name(), getattr(task.get_coro(), "__qualname__", "")
    if "inbox" in f"{name} {coroutine}".lower():
        return "inbox"
    return coroutine if name.startswith("Task-") else f"{name} ({coroutine})"


@contextlib.contextmanager
def request(label: str) -> Iterator[None]:
    token = REQUEST.set(label)
    try:
        yield
    finally:
        REQUEST.reset(token)


async def _settled(runtime: Runtime, sender: uuid.UUID, recipient: uuid.UUID, limit_s: float) -> Progress:
    """Wait until every referral sent has its letter at the recipient and its receipt back at the sender, or until
    `limit_s` has passed: the counts are then of the envelopes applied by that time."""
    deadline = time.perf_counter() + limit_s
    with request("benchmark's own polling"):
        now = await progress(runtime, sender, recipient)
        while not now.settled and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)  # other tasks' and the layout pool's writes: nothing to wait on but the clock
            now = await progress(runtime, sender, recipient)
        if now.settled:
            await asyncio.sleep(0.5)  # the letters' receipts come a little after the letters
        return await progress(runtime, sender, recipient)


async def _opened_bodies(runtime: Runtime, sender: uuid.UUID, recipient: uuid.UUID) -> ReferralBodies:
    """The bodies of one referral's envelopes as they travelled, opened with the recipient's (or sender's) keys."""
    keyring, published, clock = runtime.keyring, runtime.exchange.published, runtime.exchange.clock
    async with platform_session(runtime.sessions) as session:

        async def opened(envelope_type: EnvelopeType, origin: uuid.UUID, target: uuid.UUID) -> dict[str, Any]:
            token = await session.scalar(
                select(OutboxEnvelope.token)
                .where(OutboxEnvelope.envelope_type == envelope_type.value, OutboxEnvelope.tenant_id == origin)
                .limit(1)
            )
            keys = [
                keyring.private_jwk(k) for k in await keyring.usable_tenant_keys(session, target, KeyUse.ENCRYPTION)
            ]
            signing = await published.signing_keys(session, origin)
            result = open_envelope(
                token or "", recipient=target, decryption_keys=keys, sender_keys=lambda _: signing, now=clock.now()
            )
            if not isinstance(result, OpenedEnvelope):
                raise BenchError(f"the benchmark could not open a {envelope_type.value} envelope: {result.detail}")
            return result.body

        return ReferralBodies(
            requested=await opened(EnvelopeType.REFERRAL_REQUESTED, sender, recipient),
            receipt=await opened(EnvelopeType.RECEIPT, recipient, sender),
            letter=await opened(EnvelopeType.REFERRAL_LETTER, sender, recipient),
        )


def _per(count: int, times: int) -> float | None:
    return round(count / times, 1) if times else None


async def measure_statements(
    kind: str,
    work: Path,
    *,
    cluster: ThrowawayPostgres | None,
    requests: int,
    limit_s: float,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], ReferralBodies]:
    """Statements per send, read and listing (each the mean of `requests`), and per envelope the inbox applied."""
    nats = EmbeddedNats(work / "nats" / "store")
    try:
        url = await nats.start()
        database_url = None if cluster is None else cluster.create_database("statements")
        settings = await migrated_settings(server_env(work, 1, url, database_url) | {"CASEBRIDGE_BASE_URL": BASE_URL})
        app = create_app(settings)
        runtime: Runtime = app.state.runtime
        counter = StatementCounter(runtime.engine)
        async with (
            running_app(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
        ):
            centre, opeka = await seed_agencies(runtime)
            headers = await bearer(http, centre)
            body = await referral_body(http, headers, opeka)

            async def send(n: int) -> str:
                answer = await http.post(
                    "/api/v1/referrals", json=body, headers=headers | {"Idempotency-Key": f"statements-{n}"}
                )
                return str(expect(answer, 201, "send a referral")["id"])

            for n in range(WARM_UP_SENDS):  # the first send fills caches, and its letter starts the layout pool
                await send(n)
            before = await _settled(runtime, centre.tenant_id, opeka.tenant_id, limit_s)
            counter.reset()
            ids = []
            for n in range(WARM_UP_SENDS, WARM_UP_SENDS + requests):
                with request("send"):
                    ids.append(await send(n))
            after = await _settled(runtime, centre.tenant_id, opeka.tenant_id, limit_s)
            applied = after.applied - before.applied
            delivery = dict(counter.counts)
            for referral_id in ids:
                with request("read"):
                    expect(await http.get(f"/api/v1/referrals/{referral_id}", headers=headers), 200, "read")
            for _ in ids:
                with request("list"):
                    expect(await http.get("/api/v1/referrals?box=outgoing", headers=headers), 200, "list")
            bodies = await _opened_bodies(runtime, centre.tenant_id, opeka.tenant_id)
    finally:
        await nats.stop()
    counts = counter.counts
    background = {label: n for label, n in delivery.items() if label not in ("send", "benchmark's own polling")}
    # None rather than 0 when no task names the inbox: its statements are then among the other tasks'.
    inbox = delivery.get("inbox")
    per_envelope = _per(inbox, applied) if inbox is not None else None
    log(
        f"{kind}: statements per send {_per(counts['send'], requests)}, per read {_per(counts['read'], requests)}, "
        f"per envelope {per_envelope} ({applied} envelopes applied)"
    )
    return {
        "sql_per_send": _per(counts["send"], requests),
        "sql_per_read": _per(counts["read"], requests),
        "sql_per_list": _per(counts["list"], requests),
        "sql_per_envelope": per_envelope,
        # Every statement from the first measured send until all were delivered (the Workers' periodic ones too),
        # per referral.
        "sql_per_referral_all": _per(counts["send"] + sum(background.values()), requests),
        "sql_background_by_task": background,
        "sql_envelopes_applied": applied,
        "sql_all_delivered": after.settled,
        "sql_requests_each": requests,
    }, bodies
