"""Chaos on the local cluster (deploy/local-cluster): processes die mid-burst, and the exchange loses nothing.

One cluster for the module: 3 NATS nodes, PostgreSQL, two gateway nodes (`serve --workers 2` and a `worker` each)
and HAProxy. Each scenario sends a burst of referrals through HAProxy, as an agency's system does (a retry after a
failed request carries the same Idempotency-Key), and SIGKILLs something once a third of them are answered. The
cluster's supervisor starts a killed process again after its unit's RestartSec, as systemd's Restart=always does;
the test itself never restarts anything. Then every referral answered 201 (or 200 for a repeat) must be in the
recipient's incoming list exactly once and receipted on the sender's side, and the audit log's next checkpoint must
extend the last one (a consistency proof between them verifies).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select, text

from audit.merkle import verify_consistency
from exchange.referrals.models import Referral, Side
from exchange.referrals.status import Status
from exchange.transport.models import OutboxEnvelope
from gateway.app import build_runtime
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session, read_only_platform_session
from tests.integration.helpers.agencies import Agency, agency, dpo_of, open_case, referral_body
from tests.local_cluster import env_file, local_cluster
from tests.polling import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

BURST = 300
SENDERS = 16  # concurrent requests, as an agency's batch import would send them
FAULT_AFTER = BURST // 3  # answered sends before the fault strikes
ATTEMPTS = 120  # per referral; a pause of RETRY_S between them, so a minute of refusals before the test gives up
RETRY_S = 0.5
LEASE_S = 10.0  # the sealer's lease (audit/sealer.py)
SETTLE_WITHIN_S = 150.0  # a backlog drains within the relay's longest pause (60 s) once the bus is back
NATS_NODES = ("nats-1", "nats-2", "nats-3")


@dataclass
class Cluster:
    dir: Path
    info: dict[str, Any]
    runtime: Runtime
    centre: Agency
    opeka: Agency
    dpo: Agency
    case: dict[str, Any]
    sent: set[str] = field(default_factory=set)  # every referral answered 201 or 200, over all scenarios
    checkpoint: tuple[int, bytes] | None = None  # size and root of the newest checkpoint checked so far

    async def status(self) -> dict[str, Any]:
        code, out, err = await local_cluster("status", self.dir)
        assert code == 0, err
        return dict(json.loads(out))


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    code, out, err = await local_cluster("up", directory)
    assert code == 0, f"local-cluster up failed: {err}"
    info = json.loads(out)
    runtime: Runtime | None = None
    try:
        env = env_file(Path(info["env_file"])) | {"CASEBRIDGE_DATA_DIR": str(directory / "test")}
        runtime = build_runtime(Settings.from_env(env), workers=())
        async with httpx.AsyncClient(base_url=info["url"], timeout=30.0) as api:
            centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
            opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
            dpo = await dpo_of(api, runtime, centre)
            case, _ = await open_case(centre, opeka)
            yield Cluster(directory, info, runtime, centre, opeka, dpo, case)
    finally:
        if runtime is not None:
            await runtime.engine.dispose()
        code, out, err = await local_cluster("down", directory)
        assert code == 0, f"local-cluster down failed: {err}"


# -- the burst and what must hold after it ---------------------------------------------------------------------------


async def _send(cluster: Cluster, body: dict[str, Any]) -> str:
    """One referral, sent until it is answered 201 (or 200: a repeat found the first attempt committed)."""
    key = uuid.uuid4().hex
    last = "no answer"
    for _ in range(ATTEMPTS):
        try:
            response = await cluster.centre.post("/api/v1/referrals", body, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:  # HAProxy cut the connection to a node that died
            last = type(exc).__name__
        else:
            if response.status_code in (200, 201):
                return str(response.json()["id"])
            # 502/503 from HAProxy or a gateway whose database or bus is away; anything else is a real refusal.
            assert response.status_code >= 500, response.text
            last = str(response.status_code)
        await asyncio.sleep(RETRY_S)
    raise AssertionError(f"a referral was refused {ATTEMPTS} times; the last answer: {last}")


async def _burst(cluster: Cluster, fault: Callable[[], Coroutine[Any, Any, None]] | None) -> list[str]:
    body = referral_body(cluster.case, cluster.opeka.id, ["identity", "family"])
    remaining, answered = list(range(BURST)), []
    struck: asyncio.Task[None] | None = None

    async def sender() -> None:
        nonlocal struck
        while remaining:
            remaining.pop()
            answered.append(await _send(cluster, body))
            if len(answered) == FAULT_AFTER and fault is not None:
                struck = asyncio.create_task(fault())

    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    if struck is not None:
        await struck
    assert len(set(answered)) == BURST, "two sends were answered with one referral"
    cluster.sent.update(answered)
    return answered


async def _counts(cluster: Cluster, ids: list[str]) -> tuple[int, int]:
    """(recipient copies, sender copies receipted) among `ids`."""
    exchange_ids = [uuid.UUID(i) for i in ids]
    async with await read_only_platform_session(cluster.runtime.sessions) as session:
        copies = select(func.count()).select_from(Referral).where(Referral.exchange_id.in_(exchange_ids))
        delivered = await session.scalar(
            copies.where(Referral.tenant_id == cluster.opeka.id, Referral.side == Side.RECIPIENT)
        )
        receipted = await session.scalar(
            copies.where(
                Referral.tenant_id == cluster.centre.id,
                Referral.side == Side.SENDER,
                Referral.status == Status.RECEIVED,
            )
        )
    return int(delivered or 0), int(receipted or 0)


async def _listed(agency: Agency, box: str) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        params: dict[str, Any] = {"box": box, "limit": 200} | ({"cursor": cursor} if cursor else {})
        response = await agency.get("/api/v1/referrals", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items


async def _delivered_exactly_once(cluster: Cluster, ids: list[str]) -> None:
    async def settled() -> bool:
        return await _counts(cluster, ids) == (len(ids), len(ids))

    await eventually(settled, within=SETTLE_WITHIN_S, every=0.5, what=lambda: f"delivered and receipted of {len(ids)}")
    incoming = [item["id"] for item in await _listed(cluster.opeka, "incoming")]
    assert len(incoming) == len(set(incoming)), "the recipient lists a referral twice"
    assert set(incoming) == cluster.sent, "the recipient's list differs from what the sender was answered"
    outgoing = {item["id"]: item["status"] for item in await _listed(cluster.centre, "outgoing")}
    assert set(outgoing) == cluster.sent
    assert {outgoing[i] for i in ids} == {"received"}, "a referral's receipt did not come back"


def _note(note: str) -> tuple[int, bytes]:
    """Size and root of a C2SP checkpoint note (origin, size, base64 root, then the signatures)."""
    lines = note.split("\n")
    return int(lines[1]), base64.b64decode(lines[2])


async def _latest_checkpoint(cluster: Cluster) -> tuple[int, bytes] | None:
    response = await cluster.dpo.get("/api/v1/audit/checkpoints/latest")
    if response.status_code == 404:  # none signed yet
        return None
    assert response.status_code == 200, response.text
    return _note(response.json()["note"])


async def _checkpoint_extends_the_last(cluster: Cluster) -> None:
    """A checkpoint newer than the one checked last is signed, and it extends that one (RFC 6962 consistency)."""
    old = cluster.checkpoint

    async def newer() -> tuple[int, bytes] | None:
        latest = await _latest_checkpoint(cluster)
        return latest if latest is not None and (old is None or latest[0] > old[0]) else None

    new = await eventually(newer, within=LEASE_S * 6, every=0.5, what="a newer signed checkpoint")
    if old is not None:
        response = await cluster.dpo.get("/api/v1/audit/checkpoints/consistency", params={"old": old[0], "new": new[0]})
        assert response.status_code == 200, response.text
        found = response.json()
        assert _note(found["old_note"]) == old
        assert _note(found["new_note"]) == new
        proof = [base64.b64decode(h) for h in found["proof"]]
        assert verify_consistency(old[0], new[0], old[1], new[1], proof)
    cluster.checkpoint = new


async def _baseline_checkpoint(cluster: Cluster) -> None:
    """The checkpoint a scenario's next one must extend: the one the scenario before checked last, so the scenarios
    chain one consistency proof after another; the first one takes the newest signed so far."""
    if cluster.checkpoint is None:
        await _checkpoint_extends_the_last(cluster)


async def _lease(cluster: Cluster) -> tuple[str, int]:
    """The sealer lease's holder and the process id it names (audit/sealer.py: host:pid:random)."""
    async with platform_session(cluster.runtime.sessions) as session:
        holder = str(await session.scalar(text("SELECT holder FROM audit_sealer_lease WHERE id = 1")))
    return holder, int(holder.split(":")[1]) if holder.count(":") == 2 else 0


def _kill(*pids: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile: a web process following its supervisor
            os.kill(pid, signal.SIGKILL)


async def _all_running(cluster: Cluster) -> None:
    """The supervisor has started again everything that was killed, and every node is back in HAProxy's rotation."""

    async def running() -> bool:
        status = await cluster.status()
        for node in status["nodes"]:
            async with httpx.AsyncClient(timeout=5.0) as client:
                try:
                    if (await client.get(f"{node['url']}/health/ready")).status_code != 200:
                        return False
                except httpx.TransportError:
                    return False
        return all(n["pid"] for n in status["nats"])

    await eventually(running, within=120.0, every=0.5, what="every process running and ready again")


async def _scenario(cluster: Cluster, fault: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
    await _baseline_checkpoint(cluster)
    ids = await _burst(cluster, fault)
    await _delivered_exactly_once(cluster, ids)
    await _checkpoint_extends_the_last(cluster)
    await _all_running(cluster)


# -- the scenarios, run in order by the one test at the end, on the one cluster ---------------------------------------


async def _a_nats_node_killed_mid_burst(cluster: Cluster) -> None:
    async def fault() -> None:
        _kill((await cluster.status())["nats"][0]["pid"])

    await _scenario(cluster, fault)


async def _a_gateway_node_killed_mid_burst(cluster: Cluster) -> None:
    async def fault() -> None:
        _kill(*(await cluster.status())["nodes"][0]["pids"])

    await _scenario(cluster, fault)


async def _the_sealer_leader_killed_mid_burst(cluster: Cluster) -> None:
    killed: list[str] = []

    async def fault() -> None:
        holder, pid = await _lease(cluster)
        assert pid in [p for node in (await cluster.status())["nodes"] for p in node["pids"]], holder
        _kill(pid)
        killed.append(holder)

    await _scenario(cluster, fault)
    holder, _ = await _lease(cluster)
    assert holder != killed[0], "the killed sealer still holds the lease"


async def _a_worker_process_killed_mid_burst(cluster: Cluster) -> None:
    async def fault() -> None:
        _, leader = await _lease(cluster)
        status = await cluster.status()
        # The worker that does not lead the sealer: its relay and inbox are what this scenario takes away.
        workers = [node["pids"] for node in status["nodes"]]
        target = next((pids for pids in workers if leader not in pids), workers[1])
        _kill(*[pid for pid in target if _is_worker(pid)])

    await _scenario(cluster, fault)


def _is_worker(pid: int) -> bool:
    try:
        return b"casebridge\x00worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def _sends_commit_to_the_outbox_while_every_nats_node_is_down(cluster: Cluster) -> None:
    await _baseline_checkpoint(cluster)
    held = cluster.dir / "held"
    held.mkdir(exist_ok=True)
    status = await cluster.status()
    for name in NATS_NODES:
        (held / name).touch()  # the supervisor leaves a held service stopped (systemctl stop)
    for node in status["nats"]:
        os.kill(node["pid"], signal.SIGTERM)
    try:
        ids = await _burst(cluster, None)
        async with await read_only_platform_session(cluster.runtime.sessions) as session:
            waiting = await session.scalar(
                select(func.count()).select_from(OutboxEnvelope).where(OutboxEnvelope.sent_at.is_(None))
            )
        assert (waiting or 0) >= BURST, "the sends did not wait in the outbox"
    finally:
        for name in NATS_NODES:
            (held / name).unlink()
    await _delivered_exactly_once(cluster, ids)
    await _checkpoint_extends_the_last(cluster)
    await _all_running(cluster)


async def _the_gateways_connect_as_the_least_privileged_role(cluster: Cluster) -> None:
    url = cluster.info["database_url"].replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url, ssl=False)
    try:
        role = await connection.fetchrow(
            "SELECT current_user AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert (role["name"], role["rolsuper"], role["rolbypassrls"]) == ("casebridge_app", False, False)
        owner = await connection.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'referral'")
        assert owner == "casebridge"
        # Row-level security in force: outside a tenant's (or the platform's) scope no referral is visible.
        assert await connection.fetchval("SELECT count(*) FROM referral") == 0
        for statement in ("UPDATE audit_event SET canonical = canonical", "DELETE FROM audit_seal"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
    finally:
        await connection.close()


async def test_the_cluster_loses_nothing_when_its_processes_die(cluster: Cluster) -> None:
    """Every scenario, in order, in one test: pytest-xdist hands the tests of a module to any of its workers, and each
    worker would start a cluster of its own (with pytest 9, xdist's loadgroup no longer keeps a group together)."""
    await _the_gateways_connect_as_the_least_privileged_role(cluster)
    await _a_nats_node_killed_mid_burst(cluster)
    await _a_gateway_node_killed_mid_burst(cluster)
    await _the_sealer_leader_killed_mid_burst(cluster)
    await _a_worker_process_killed_mid_burst(cluster)
    await _sends_commit_to_the_outbox_while_every_nats_node_is_down(cluster)
