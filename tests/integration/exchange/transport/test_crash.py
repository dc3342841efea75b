"""Crash tests: SIGKILL a casebridge process or the nats-server in the middle of a burst of referrals.

After the crash every referral the sender committed is delivered exactly once: one recipient copy per referral,
every outbox envelope published and applied once, every sender copy marked `received` by the recipient's receipt,
each letter laid out once, and nothing left waiting for a human.

Two layouts of a node. One process (`casebridge serve` doing everything, on SQLite and PostgreSQL): the gateway is
killed and started again, as systemd would, or nats-server is. The process layout on PostgreSQL
(docs/architecture.md, "Workers and processes": `serve --workers 2` with no Worker of its own beside two `casebridge
worker` processes): a web process is killed and `serve` replaces it; the worker process leading the audit sealer is
killed and never started again, so the other takes its work over (its relay claims and letter claims lapse after 30
s, the messages it had not acked are delivered again after the consumer's 30 s ack wait, its sealer lease expires
after 10 s); or nats-server is killed and started again, and every process reconnects on its own.

Everything runs as real processes: `casebridge db upgrade`, `casebridge serve`, `casebridge worker` and a nats-server
of the test's own on a fixed port and store directory (so it can be killed and started again at the same URL). The
test process seeds tenants through the services and reads both sides' rows straight from the database.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from audit.models import LEASE_ROW_ID, AuditEvent, AuditSeal, AuditSealerLease
from exchange.letters.models import Letter
from exchange.referrals.models import Referral, Side, TimelineEntry
from exchange.transport.envelopes import EnvelopeType
from exchange.transport.jetstream import INBOX_DURABLE_PREFIX
from exchange.transport.models import DeadLetter, InboxEnvelope, OutboxEnvelope
from gateway.app import build_runtime
from gateway.bus import ENVELOPE_STREAM
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session
from tests.factories import access_token, make_client, make_tenant
from tests.integration.helpers.agencies import referral_body
from tests.pg import ThrowawayPostgres
from tests.polling import eventually
from tests.processes import CASEBRIDGE, START_WITHIN_S, Gateway, NatsServer, WorkerProcess, free_port


@dataclass(frozen=True)
class Scenario:
    """A node's process layout and the burst of referrals it takes while one of its processes is killed."""

    name: str
    burst: int  # referrals
    kill_after: int  # accepted referrals before the kill
    concurrency: int  # requests in flight at once, so some are cut off by the kill
    burst_within_s: float  # the whole burst, including the crash and what follows it
    web_processes: int = 1  # `serve --workers N`
    worker_processes: int = 0  # `casebridge worker` processes; with any, the web processes run no Worker

    def variables(self) -> dict[str, str]:
        return {"CASEBRIDGE_IN_PROCESS_WORKERS": "none"} if self.worker_processes else {}


# The restart of the one process is inside the burst's bound: on a loaded machine it alone has taken half a minute.
ONE_PROCESS = Scenario("one process", burst=60, kill_after=20, concurrency=4, burst_within_s=150.0)
# Two worker processes, so that one survives the kill; a third of the burst in, so the kill finds every Worker busy;
# 32 requests in flight keep both web processes busy, so the burst is over sooner than with a few.
PROCESS_LAYOUT = Scenario(
    "serve --workers 2, 2 workers",
    burst=300,
    kill_after=100,
    concurrency=32,
    burst_within_s=120.0,
    web_processes=2,
    worker_processes=2,
)

# Long enough that only the crash cuts an attempt off: the checks count the attempts cut off, and on a busy machine
# an answer may take more than a few seconds without anything being wrong.
REQUEST_TIMEOUT_S = 60.0
# Longer than the relay's 5 s publish timeout, so publishing fails and the relay backs off (2**attempts s, up to
# 60 s per envelope) instead of merely waiting out the outage; short enough that the backoff stays a few seconds.
NATS_OUTAGE_S = 7.0
# Delivery after the burst: a process killed mid-pass leaves claimed rows hidden for 30 s (relay CLAIM_FOR, and the
# letter worker's CLAIM_FOR) and unacked messages are redelivered after 30 s (consumer ACK_WAIT_S), so recovery may
# legitimately take ~30 s, plus the backlog of letters and envelopes the burst left.
DELIVERY_WITHIN_S = 150.0
# Until the inbox consumer has nothing pending and nothing unacked: a lost ack costs another ACK_WAIT_S.
SETTLE_WITHIN_S = 45.0
TEST_WITHIN_S = 300.0  # everything above, end to end
POLL_S = 0.25  # each check reads several tables or asks the processes: not more often than this


@dataclass
class Node:
    """One casebridge node: its processes, and the in-process runtime used to seed and inspect its database."""

    runtime: Runtime
    gateway: Gateway
    workers: list[WorkerProcess]
    nats: NatsServer

    async def start(self) -> None:
        # All at once: the web processes become ready once a worker's sealer holds the lease.
        await asyncio.gather(self.gateway.start(), *(worker.start() for worker in self.workers))

    def diagnosis(self) -> str:
        return "\n".join([self.gateway.log_tail(), *(w.log_tail() for w in self.workers), self.nats.log_tail()])


@contextlib.asynccontextmanager
async def node(database_url: str, tmp: Path, scenario: Scenario) -> AsyncIterator[Node]:
    key_file = tmp / "master.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    nats_server = NatsServer(tmp)
    port = free_port()
    variables = {
        "CASEBRIDGE_DATABASE_URL": database_url,
        "CASEBRIDGE_DATA_DIR": str(tmp / "var"),
        "CASEBRIDGE_MASTER_KEY_FILE": str(key_file),
        "CASEBRIDGE_NATS_URL": nats_server.url,
        "CASEBRIDGE_HOST": "127.0.0.1",
        "CASEBRIDGE_PORT": str(port),
        "CASEBRIDGE_BASE_URL": f"http://127.0.0.1:{port}",
        "CASEBRIDGE_RATE_LIMIT_PER_MINUTE": "1000000",
        **scenario.variables(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")} | variables
    gateway = Gateway(env, port, tmp / "gateway.log", web_processes=scenario.web_processes)
    workers = [WorkerProcess(env, tmp / f"worker-{n}.log") for n in range(1, scenario.worker_processes + 1)]
    async with contextlib.AsyncExitStack() as cleanup:
        # Run in reverse: the gateway and the workers are killed before the nats-server they talk to.
        cleanup.push_async_callback(nats_server.kill)
        for child in (*workers, gateway):
            cleanup.push_async_callback(child.kill)
        await nats_server.start()
        upgrade = await asyncio.create_subprocess_exec(
            CASEBRIDGE, "db", "upgrade", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(upgrade.communicate(), 120)
        assert upgrade.returncode == 0, output.decode()
        # The test's own view of the same database and master key, for seeding and for counting rows.
        runtime = build_runtime(Settings.from_env(variables))
        cleanup.push_async_callback(runtime.engine.dispose)
        yield Node(runtime, gateway, workers, nats_server)


class Agency:
    def __init__(self, api: httpx.AsyncClient, tenant_id: uuid.UUID, token: str) -> None:
        self.api, self.id = api, tenant_id
        self.headers = {"Authorization": f"Bearer {token}"}

    async def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return await self.api.post(path, json=body, headers={**self.headers, **headers})


async def open_case(centre: Agency, recipient: uuid.UUID) -> dict[str, Any]:
    case = await centre.post(
        "/api/v1/cases",
        {
            "title": "Семья Петровых",
            "subjects": [
                {"ref": "child 1", "full_name": "Петров Иван Сергеевич", "birth_date": "2014-02-03", "role": "child"}
            ],
        },
    )
    assert case.status_code == 201, case.text
    body: dict[str, Any] = case.json()
    consent = await centre.post(
        f"/api/v1/cases/{body['id']}/consents",
        {
            "subject_id": body["subjects"][0]["id"],
            "given_by": {"name": "Петрова Анна", "relation": "parent"},
            "purposes": ["social_support"],
            "categories": ["identity", "family"],
            "recipients": {"tenants": [str(recipient)], "kinds": []},
            "valid_until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).isoformat(),
        },
    )
    assert consent.status_code == 201, consent.text
    return body


@dataclass
class Burst:
    """What the sending agency's system saw: the referral id per Idempotency-Key, and how each was answered."""

    accepted: dict[int, str] = field(default_factory=dict)
    created: int = 0  # 201: created by this request
    replayed: int = 0  # 200: created by an earlier attempt whose answer was lost in the crash
    transport_errors: int = 0  # attempts cut off by the crash (connection refused, reset, timed out)
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def __str__(self) -> str:
        counts = {"accepted": len(self.accepted), "created": self.created, "replayed": self.replayed}
        return json.dumps({**counts, "transport_errors": self.transport_errors, "kill_due": self.reached.is_set()})


async def send_burst(centre: Agency, case: dict[str, Any], to: uuid.UUID, burst: Burst, scenario: Scenario) -> None:
    """Send the scenario's referrals, `concurrency` at a time, as an agency system would: an attempt the crash cut
    off is retried with the same Idempotency-Key until the node answers, so no referral is sent twice or given up."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(scenario.burst):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body = referral_body(
                case, to, ["identity", "family"], problem=f"Направление {n} из серии", urgency="routine"
            )
            while True:
                try:
                    response = await centre.post("/api/v1/referrals", body, **{"Idempotency-Key": f"crash-{n:04d}"})
                except httpx.TransportError:
                    burst.transport_errors += 1
                    await asyncio.sleep(0.1)
                    continue
                break
            assert response.status_code in (200, 201), f"referral {n}: {response.status_code} {response.text}"
            if response.status_code == 201:
                burst.created += 1
            else:
                burst.replayed += 1
            burst.accepted[n] = response.json()["id"]
            if len(burst.accepted) >= scenario.kill_after:
                burst.reached.set()

    await asyncio.gather(*(worker() for _ in range(scenario.concurrency)))


@dataclass
class Tally:
    """Both sides' rows, read straight from the database."""

    sender: dict[uuid.UUID, str]  # exchange id -> status of the sender's copy
    recipient: collections.Counter[uuid.UUID]  # exchange id -> number of recipient copies
    timeline: dict[tuple[str, uuid.UUID], list[str]]  # (side, exchange id) -> statuses in order
    outbox: dict[uuid.UUID, tuple[str, bool, bool]]  # envelope id -> (type, sent, delivered)
    inbox: collections.Counter[uuid.UUID]  # envelope id -> rows applied
    dead_letters: int
    # (side, exchange id) -> (letter status, register number on the sender side) per letter row
    letters: list[tuple[str, uuid.UUID, str, int | None]] = field(default_factory=list)

    def ready_letters(self, side: str) -> set[uuid.UUID]:
        return {exchange_id for s, exchange_id, status, _ in self.letters if s == side and status == "ready"}

    def delivered(self, burst: int) -> bool:
        """All `burst` sender referrals have their recipient copy and their receipt, and every envelope was sent and
        applied."""
        return (
            len(self.sender) == burst
            and set(self.recipient) == set(self.sender)
            and all(status == "received" for status in self.sender.values())
            and all(sent for _, sent, _ in self.outbox.values())
            and set(self.inbox) == set(self.outbox)
            # Each letter laid out after its send, signed, sent on and checked by the recipient.
            and self.ready_letters(Side.SENDER.value) == set(self.sender)
            and self.ready_letters(Side.RECIPIENT.value) == set(self.sender)
        )

    def summary(self) -> str:
        return (
            f"sender={len(self.sender)} received={sum(s == 'received' for s in self.sender.values())} "
            f"recipient={len(self.recipient)} (rows {sum(self.recipient.values())}) outbox={len(self.outbox)} "
            f"unsent={sum(not sent for _, sent, _ in self.outbox.values())} inbox={len(self.inbox)} "
            f"(rows {sum(self.inbox.values())}) dead_letters={self.dead_letters} "
            f"letters ready={len(self.ready_letters(Side.SENDER.value))}/"
            f"{len(self.ready_letters(Side.RECIPIENT.value))}"
        )


async def tally(runtime: Runtime, centre: uuid.UUID, opeka: uuid.UUID) -> Tally:
    async with platform_session(runtime.sessions) as session, session.begin():
        referrals = (
            await session.execute(select(Referral.tenant_id, Referral.side, Referral.exchange_id, Referral.status))
        ).all()
        # Joined, not matched up in Python: on PostgreSQL each statement sees its own snapshot (READ COMMITTED).
        entries = (
            await session.execute(
                select(Referral.side, Referral.exchange_id, TimelineEntry.status)
                .join(Referral, Referral.id == TimelineEntry.referral_id)
                .order_by(TimelineEntry.at, TimelineEntry.id)
            )
        ).all()
        outbox = (
            await session.execute(
                select(
                    OutboxEnvelope.envelope_id,
                    OutboxEnvelope.envelope_type,
                    OutboxEnvelope.sent_at,
                    OutboxEnvelope.delivered_at,
                )
            )
        ).all()
        inbox = (
            await session.execute(select(InboxEnvelope.envelope_id, func.count()).group_by(InboxEnvelope.envelope_id))
        ).all()
        dead_letters = await session.scalar(select(func.count()).select_from(DeadLetter))
        letters = (
            await session.execute(
                select(Referral.side, Referral.exchange_id, Letter.status, Letter.register_number).join(
                    Referral, Referral.id == Letter.referral_id
                )
            )
        ).all()
    # Plain strings: an Enum member does not hash like its value, so it would miss as a dict or set key.
    sender_side, recipient_side = Side.SENDER.value, Side.RECIPIENT.value
    sender = {r.exchange_id: r.status for r in referrals if (r.tenant_id, str(r.side)) == (centre, sender_side)}
    recipient = collections.Counter(
        r.exchange_id for r in referrals if (r.tenant_id, str(r.side)) == (opeka, recipient_side)
    )
    expected = {(centre, sender_side), (opeka, recipient_side)}
    others = [r for r in referrals if (r.tenant_id, str(r.side)) not in expected]
    assert not others, f"referral rows on an unexpected side: {others}"
    timeline: dict[tuple[str, uuid.UUID], list[str]] = collections.defaultdict(list)
    for entry in entries:
        timeline[(str(entry.side), entry.exchange_id)].append(entry.status)
    return Tally(
        sender=sender,
        recipient=recipient,
        timeline=dict(timeline),
        outbox={
            row.envelope_id: (row.envelope_type, row.sent_at is not None, row.delivered_at is not None)
            for row in outbox
        },
        inbox=collections.Counter({row.envelope_id: row[1] for row in inbox}),
        dead_letters=int(dead_letters or 0),
        letters=[(str(row.side), row.exchange_id, row.status, row.register_number) for row in letters],
    )


async def timed(check: Callable[[], Awaitable[bool]], within: float, what: Callable[[], str]) -> float:
    """Wait for `check` as tests.polling.eventually does, every POLL_S; return the seconds it took (the test reports
    how long each step of the recovery took)."""
    started = time.monotonic()
    await eventually(check, within=within, every=POLL_S, what=what)
    return time.monotonic() - started


async def consumer_settled(nats_url: str) -> tuple[bool, str]:
    """The gateway's inbox consumers have nothing left to deliver and nothing unacked; and the stream's size."""
    nc = await nats.connect(nats_url, allow_reconnect=False, connect_timeout=2)
    try:
        js = nc.jetstream()
        inboxes = [c for c in await js.consumers_info(ENVELOPE_STREAM) if c.name.startswith(INBOX_DURABLE_PREFIX)]
        pending = sum(c.num_pending or 0 for c in inboxes)
        ack_pending = sum(c.num_ack_pending or 0 for c in inboxes)
        redelivered = sum(c.num_redelivered or 0 for c in inboxes)
        stream = await js.stream_info(ENVELOPE_STREAM)
        state = (
            f"consumers={len(inboxes)} pending={pending} ack_pending={ack_pending} redelivered={redelivered} "
            f"stream_messages={stream.state.messages}"
        )
        return bool(inboxes and pending == 0 and ack_pending == 0), state
    finally:
        await nc.close()


async def stream_messages(nats_url: str) -> int:
    nc = await nats.connect(nats_url, allow_reconnect=False, connect_timeout=2)
    try:
        return int((await nc.jetstream().stream_info(ENVELOPE_STREAM)).state.messages)
    finally:
        await nc.close()


async def sealer_leader(runtime: Runtime) -> int:
    """The process id of the sealer holding the audit lease (its holder is "host:pid:nonce")."""
    async with platform_session(runtime.sessions) as session:
        holder = await session.scalar(select(AuditSealerLease.holder).where(AuditSealerLease.id == LEASE_ROW_ID))
    assert holder, "no sealer has ever held the lease"
    return int(holder.rsplit(":", 2)[1])


async def audit_sealed(runtime: Runtime) -> tuple[bool, str]:
    """Every audit event is sealed, once, with sequence numbers 1..n: the sealer caught up with the burst."""
    async with platform_session(runtime.sessions) as session:
        events = await session.scalar(select(func.count()).select_from(AuditEvent))
        seals, last = (await session.execute(select(func.count(), func.max(AuditSeal.seq)))).one()
    return events == seals == (last or 0), f"events={events} seals={seals} last_seq={last}"


async def ready(gateway: Gateway) -> bool:
    """`/health/ready` answers 200: the database, the bus and a sealer holding its lease, every Worker it runs up."""
    fresh = httpx.Limits(max_keepalive_connections=0)  # ask whichever web process takes the connection
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5.0, limits=fresh) as probe:
        with contextlib.suppress(httpx.TransportError):
            return (await probe.get("/health/ready")).status_code == 200
    return False


@dataclass
class Crash:
    """What the crash did, as the checks after the burst need it."""

    accepted_at_kill: int = -1
    accepted_at_restart: int = -1  # nats: accepted while the bus was down
    killed_pid: int = 0
    survivors: list[WorkerProcess] = field(default_factory=list)  # worker: the worker processes left running

    def __str__(self) -> str:
        shown = {"accepted_at_kill": self.accepted_at_kill, "accepted_at_restart": self.accepted_at_restart}
        return json.dumps({k: v for k, v in shown.items() if v >= 0})


async def crash(victim: str, cb: Node, burst: Burst, timings: dict[str, float]) -> Crash:
    """Once the burst is `kill_after` referrals in, SIGKILL the victim; then only what the layout itself does."""
    await burst.reached.wait()
    crashed = Crash()
    match victim:
        case "gateway":  # one process: started again from outside, as systemd does
            await cb.gateway.kill()
            crashed.accepted_at_kill = len(burst.accepted)
            restarting = time.monotonic()
            await cb.gateway.start()
            timings["gateway_restart"] = time.monotonic() - restarting
        case "web":  # `serve --workers N` replaces a web process that dies
            crashed.killed_pid = cb.gateway.kill_web_process()
            crashed.accepted_at_kill = len(burst.accepted)

            async def replaced() -> bool:
                return cb.gateway.replaced(crashed.killed_pid)

            timings["web_replaced"] = await timed(
                replaced, START_WITHIN_S, lambda: f"the dead web process was not replaced\n{cb.diagnosis()}"
            )
        case "worker":  # the leader of the sealer, so its lease must change hands too; nobody starts it again
            leader = await sealer_leader(cb.runtime)
            (killed,) = [worker for worker in cb.workers if worker.pid == leader]
            crashed.survivors = [worker for worker in cb.workers if worker is not killed]
            crashed.killed_pid = killed.pid
            await killed.kill()
            crashed.accepted_at_kill = len(burst.accepted)
        case "nats":  # an outage of the one server; every casebridge process reconnects by itself
            await cb.nats.kill()
            crashed.accepted_at_kill = len(burst.accepted)
            await asyncio.sleep(NATS_OUTAGE_S)
            crashed.accepted_at_restart = len(burst.accepted)
            restarting = time.monotonic()
            await cb.nats.start()
            timings["nats_restart"] = time.monotonic() - restarting
        case _:
            pytest.fail(f"no such victim: {victim}")
    return crashed


def check_the_crash(victim: str, cb: Node, burst: Burst, crashed: Crash, scenario: Scenario) -> None:
    """The kill happened mid-burst, and the processes that should have lived through it did."""
    assert crashed.accepted_at_kill >= scenario.kill_after
    assert crashed.accepted_at_kill < scenario.burst, "the burst was over before the kill"
    # Nothing was started by hand but the victim of the one-process layout and nats-server.
    assert cb.gateway.starts == (2 if victim == "gateway" else 1)
    assert cb.gateway.running, f"serve died\n{cb.diagnosis()}"
    if victim == "worker":
        assert [worker.running for worker in cb.workers] == [worker in crashed.survivors for worker in cb.workers]
    else:
        assert all(worker.running for worker in cb.workers), f"a worker died\n{cb.diagnosis()}"
    assert all(worker.starts == 1 for worker in cb.workers)
    if victim in ("gateway", "web"):
        # The acid test of the kill: some attempts were cut off and had to be retried against another process.
        assert burst.transport_errors > 0, "the kill cut off no request; it was not mid-burst"
    else:
        assert burst.transport_errors == 0, f"the web processes must keep answering while {victim} is down"
    if victim == "nats":
        assert crashed.accepted_at_restart > crashed.accepted_at_kill, "no referral was accepted while NATS was down"


@pytest.mark.parametrize("victim", ["gateway", "nats"])
async def test_every_referral_is_delivered_exactly_once_after_a_crash_mid_burst(
    victim: str, database_url: str, tmp_path: Path
) -> None:
    await crash_mid_burst(ONE_PROCESS, victim, database_url, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize("victim", ["web", "worker", "nats"])
async def test_the_process_layout_delivers_every_referral_exactly_once_after_a_crash_mid_burst(
    victim: str, postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    database_url = postgres.create_database(f"crash_{uuid.uuid4().hex[:16]}")
    await crash_mid_burst(PROCESS_LAYOUT, victim, database_url, tmp_path)


async def crash_mid_burst(scenario: Scenario, victim: str, database_url: str, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    began = time.monotonic()
    async with asyncio.timeout(TEST_WITHIN_S), node(database_url, tmp_path, scenario) as cb:
        runtime, gateway, nats_server = cb.runtime, cb.gateway, cb.nats
        centre_tenant = await make_tenant(runtime, "semya", kind=TenantKind.SOCIAL_CENTRE)
        opeka_tenant = await make_tenant(runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
        centre_client = await make_client(runtime, centre_tenant, role=Role.SPECIALIST)
        centre_id, opeka_id = centre_tenant.id, opeka_tenant.id
        timings["seed"] = time.monotonic() - began

        await cb.start()
        timings["setup"] = time.monotonic() - began

        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=REQUEST_TIMEOUT_S) as api:
            centre = Agency(api, centre_id, await access_token(api, centre_client))
            case = await open_case(centre, opeka_id)

            burst = Burst()
            bursting = time.monotonic()
            # The crash task finishes its restart even when the burst is over before it; a failure cancels both.
            try:
                async with asyncio.timeout(scenario.burst_within_s), asyncio.TaskGroup() as group:
                    group.create_task(send_burst(centre, case, opeka_id, burst, scenario))
                    crashing = group.create_task(crash(victim, cb, burst, timings))
            except TimeoutError:
                pytest.fail(
                    f"the burst was not over within {scenario.burst_within_s:g} s: {burst} {timings}\n{cb.diagnosis()}"
                )
            timings["burst_with_crash"] = time.monotonic() - bursting
            crashed = crashing.result()

        assert len(burst.accepted) == scenario.burst
        check_the_crash(victim, cb, burst, crashed, scenario)

        last: list[Tally] = []

        async def delivered() -> bool:
            last[:] = [await tally(runtime, centre_id, opeka_id)]
            return last[0].delivered(scenario.burst)

        timings["delivery"] = await timed(
            delivered,
            DELIVERY_WITHIN_S,
            lambda: f"referrals not all delivered: {last[0].summary() if last else '-'}\n{cb.diagnosis()}",
        )

        # Nothing the bus still holds may be applied later: wait until the inbox consumer has acked everything.
        settle_state = [""]

        async def settled() -> bool:
            done, settle_state[0] = await consumer_settled(nats_server.url)
            return done

        timings["settle"] = await timed(
            settled, SETTLE_WITHIN_S, lambda: f"inbox consumer not settled: {settle_state[0]}\n{cb.diagnosis()}"
        )
        sealing = [""]

        async def sealed() -> bool:
            done, sealing[0] = await audit_sealed(runtime)
            return done

        timings["sealed"] = await timed(
            sealed, SETTLE_WITHIN_S, lambda: f"audit events left unsealed: {sealing[0]}\n{cb.diagnosis()}"
        )
        # Every process is back in service by itself: bus reconnected, a sealer leading, every Worker up.
        timings["ready"] = await timed(
            lambda: ready(gateway), START_WITHIN_S, lambda: f"the node is not ready\n{cb.diagnosis()}"
        )
        if victim == "worker":
            assert await sealer_leader(runtime) in [worker.pid for worker in crashed.survivors]
        final = await tally(runtime, centre_id, opeka_id)
        on_the_bus = await stream_messages(nats_server.url)

    timings["total"] = time.monotonic() - began
    # The timings are part of what this test reports (visible with -s, or -rA under xdist).
    backend = make_url(database_url).get_backend_name()
    print(
        f"\n[{scenario.name} on {backend}, {victim}] {json.dumps({k: round(v, 1) for k, v in timings.items()})} "
        f"created={burst.created} replayed={burst.replayed} transport_errors={burst.transport_errors} "
        f"crash={crashed} {final.summary()} stream_messages={on_the_bus}"
    )
    check_exactly_once(final, burst, scenario.burst, on_the_bus)


def check_exactly_once(final: Tally, burst: Burst, expected: int, on_the_bus: int) -> None:
    # The sender's database is the ground truth: every Idempotency-Key made exactly one referral, and every answer
    # the agency system got names one of them.
    assert len(final.sender) == expected, final.summary()
    assert {uuid.UUID(i) for i in burst.accepted.values()} == set(final.sender)
    assert burst.created + burst.replayed == expected
    # No loss, no duplicates: one recipient copy per sender referral.
    assert set(final.recipient) == set(final.sender), final.summary()
    assert all(count == 1 for count in final.recipient.values()), final.recipient.most_common(3)
    assert sum(final.recipient.values()) == len(final.sender)
    # The receipt came back exactly once: received on the sender side, each copy's timeline with no repeats.
    assert set(final.sender.values()) == {"received"}
    for exchange_id in final.sender:
        assert final.timeline[(Side.SENDER.value, exchange_id)] == ["requested", "received"], exchange_id
        assert final.timeline[(Side.RECIPIENT.value, exchange_id)] == ["requested", "received"], exchange_id
    # The outbox: one referral.requested and one referral.letter per referral, all published, and receipts for
    # them. The inbox answers each batch with one receipt per sender, so there are at most as many receipts as
    # envelopes received, and the receipts together cover every one of them (each is marked delivered).
    types = collections.Counter(kind for kind, _, _ in final.outbox.values())
    receipts = types.pop(EnvelopeType.RECEIPT.value, 0)
    assert types == {EnvelopeType.REFERRAL_REQUESTED.value: expected, EnvelopeType.REFERRAL_LETTER.value: expected}
    assert 1 <= receipts <= 2 * expected, receipts
    answered = [delivered for kind, _, delivered in final.outbox.values() if kind != EnvelopeType.RECEIPT.value]
    assert all(answered), f"{answered.count(False)} envelopes have no delivery receipt"
    # One letter per copy, laid out once although the crash hit mid-layout; the register has no gaps or repeats.
    assert len(final.letters) == 2 * expected
    numbers = sorted(n for side, _, _, n in final.letters if side == Side.SENDER.value and n is not None)
    assert numbers == list(range(1, expected + 1)), numbers
    assert all(sent for _, sent, _ in final.outbox.values())
    referral_type = EnvelopeType.REFERRAL_REQUESTED.value
    requested = [delivered for kind, _, delivered in final.outbox.values() if kind == referral_type]
    assert all(requested), f"{requested.count(False)} referral envelopes have no delivery receipt"
    # The inbox: exactly one row per applied envelope, and every envelope sent was applied.
    assert set(final.inbox) == set(final.outbox)
    assert all(count == 1 for count in final.inbox.values()), final.inbox.most_common(3)
    assert final.dead_letters == 0
    # JetStream kept each envelope once (Nats-Msg-Id deduplication of the relay's re-publishes).
    assert on_the_bus == len(final.outbox)
