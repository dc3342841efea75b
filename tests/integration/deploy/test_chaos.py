"""Chaos on the local cluster (deploy/local-cluster): processes die mid-burst, and the exchange loses nothing.

One cluster for the module: 3 NATS nodes, PostgreSQL, two gateway nodes (`serve --workers 2` and a `worker` each)
and HAProxy; `up` and `down` are held to the JSON docs/operations.md gives them, and `down` must leave no process
behind. Each
scenario sends a burst of referrals through HAProxy, as an agency's system does (a retry after a failed request
carries the same Idempotency-Key), and SIGKILLs something once a third of them are answered: the envelope stream's
leader among the NATS nodes, a gateway node, the sealer leader, a worker process. The cluster's supervisor starts a
killed process again after its unit's RestartSec, as systemd's Restart=always does; the test itself never restarts
anything (it only holds a NATS node down, as `systemctl stop` would, until another has taken over its streams). Then
every referral answered 201 (or 200 for a repeat) must be in the recipient's incoming list exactly once and
receipted on the sender's side, and the audit log's next checkpoint must extend the last one (a consistency proof
between them verifies). With one NATS node down every send must be answered at its first attempt, neither refused
nor cut off; the new sealer's first seal must come within the dead leader's lease and a poll, by the database's own
timestamps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import nats
import nats.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import ClusterInfo
from sqlalchemy import func, select, text

from audit.merkle import verify_consistency
from audit.models import LEASE_ROW_ID, AuditSeal, AuditSealerLease
from audit.sealer import FOLLOWER_POLL_S
from deploy.local_cluster import start_time
from exchange.referrals.models import Referral, Side
from exchange.referrals.status import Status
from exchange.transport.jetstream import ENVELOPE_STREAM
from exchange.transport.models import OutboxEnvelope
from gateway.app import build_runtime
from gateway.bus import AUDIT_STREAM, READY_GRACE_S, READY_PROBE_EVERY_S, READY_TIMEOUT_S
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session, read_only_platform_session
from tests.integration.helpers.agencies import Agency, agency, dpo_of, open_case, referral_body
from tests.local_cluster import env_file, local_cluster
from tests.polling import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

# Each scenario's burst and the NATS election it waited for, at INFO (pytest --log-cli-level=INFO shows them).
logger = logging.getLogger(__name__)

BURST = 300
SENDERS = 16  # concurrent requests, as an agency's batch import would send them
FAULT_AFTER = BURST // 3  # answered sends before the fault strikes
ATTEMPTS = 120  # per referral; a pause of RETRY_S between them, so a minute of refusals before the test gives up
RETRY_S = 0.5
LEASE_S = 10.0  # the sealer's lease (audit/sealer.py)
SETTLE_WITHIN_S = 150.0  # a backlog drains within the relay's longest pause (60 s) once the bus is back
REPLICAS = 3  # every stream on every NATS node (CASEBRIDGE_NATS_REPLICAS in the cluster's environment)
STREAMS = (ENVELOPE_STREAM, AUDIT_STREAM)
# A JetStream API request gets this long; one made while the cluster elects a leader may time out and is asked again.
JS_REQUEST_S = 2.0
# Electing a stream leader among the two NATS nodes left takes a few of Raft's randomised election timeouts; a node
# started again catches up its replicas within about as long.
FAILOVER_WITHIN_S = 60.0
# The new sealer's first seal comes at most a follower's poll (FOLLOWER_POLL_S) after the dead leader's lease
# expired, plus this: the round takes its lease and selects the unsealed events before it stamps sealed_at, and its
# wakes are scheduled by an event loop on two cores that the burst keeps busy. Measured there: 0.1 s past the poll.
SEAL_TAKEOVER_SLACK_S = 3.0
# With every NATS node down, each web process's readiness lapses READY_GRACE_S after JetStream's last answer to its
# probe, which came at most a probe's interval and its request (READY_PROBE_EVERY_S + READY_TIMEOUT_S) before; and
# the test asks each node's readiness half a second apart.
BUS_LAPSE_SLACK_S = READY_PROBE_EVERY_S + READY_TIMEOUT_S + 0.5


@dataclass
class Cluster:
    dir: Path
    info: dict[str, Any]
    env: dict[str, str]  # the environment file `up` wrote, as an admin command reads it
    runtime: Runtime
    centre: Agency
    opeka: Agency
    dpo: Agency
    case: dict[str, Any]
    sent: set[str] = field(default_factory=set)  # every referral answered 201 or 200, over all scenarios
    checkpoint: tuple[int, bytes] | None = None  # size and root of the newest checkpoint checked so far
    # Every process `up` or `status` named, with its kernel start time (a later process may get the same id).
    processes: dict[int, str] = field(default_factory=dict)

    async def status(self) -> dict[str, Any]:
        code, out, err = await local_cluster("status", self.dir)
        assert code == 0, err
        status = dict(json.loads(out))
        self.processes |= _started(_pids(status))
        return status


def _pids(info: dict[str, Any]) -> list[int]:
    """Every process id in what `up` or `status` printed."""
    pids = [node["pid"] for node in info["nats"]] + [pid for node in info["nodes"] for pid in node["pids"]]
    return pids + [info[key] for key in ("postgres_pid", "haproxy_pid") if info.get(key)]


def _started(pids: list[int]) -> dict[int, str]:
    return {pid: started for pid in pids if (started := start_time(pid)) is not None}


def _casebridge_command(pid: int) -> str | None:
    """`serve` or `worker` for a casebridge process (`casebridge serve --workers 2`), else None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")
    except OSError:
        return None
    found = [argv[i + 1].decode() for i, arg in enumerate(argv[:-1]) if arg.endswith(b"casebridge")]
    return found[0] if found else None


def _up_as_api_md_says(info: dict[str, Any]) -> None:
    """`up`'s object (docs/operations.md, "The local cluster"): HAProxy's and the database's URLs, 3 NATS nodes with
    url and pid, 2 gateway nodes with name, url and pids (web and worker), everything on loopback and running."""
    assert {"url", "database_url", "nats", "nodes"} <= set(info), sorted(info)
    urls = [info["url"], info["database_url"]] + [node["url"] for node in info["nats"] + info["nodes"]]
    assert {urlsplit(url).hostname for url in urls} == {"127.0.0.1"}, urls
    assert urlsplit(info["url"]).scheme == "http"
    assert urlsplit(info["database_url"]).scheme == "postgresql+asyncpg"
    assert len(info["nats"]) == 3, info["nats"]
    assert all({"url", "pid"} <= set(node) and urlsplit(node["url"]).scheme == "tls" for node in info["nats"])
    # Beyond the documented object: the server name JetStream gives.
    assert len({node["name"] for node in info["nats"]}) == 3
    assert len(info["nodes"]) == 2, info["nodes"]
    assert all({"name", "url", "pids"} <= set(node) for node in info["nodes"])
    assert len({node["name"] for node in info["nodes"]}) == 2
    for node in info["nodes"]:
        commands = sorted(filter(None, map(_casebridge_command, node["pids"])))
        assert commands == ["serve", "worker"], (node["name"], commands)
    pids = _pids(info)
    assert len(set(pids)) == len(pids), "two entries name one process"
    assert set(_started(pids)) == set(pids), "`up` named a process that is not running"


def _gone(pid: int, started: str) -> bool:
    """Whether the process that had `pid` at `started` has ended (its id may since have gone to another)."""
    return start_time(pid) != started or _dead(pid)


async def _down_stops_everything(cluster: Cluster) -> None:
    """`down` prints {"stopped": [...]} naming every process `up` started, and none of them is left running."""
    with contextlib.suppress(AssertionError):  # a cluster that died on its own has no status; `down` still answers
        await cluster.status()
    code, out, err = await local_cluster("down", cluster.dir)
    assert code == 0, f"local-cluster down failed: {err}"
    stopped = json.loads(out)
    assert set(stopped) == {"stopped"}, stopped
    expected = {node["name"] for node in cluster.info["nats"]} | {"haproxy", "postgres"}
    expected |= {f"{node['name']} {unit}" for node in cluster.info["nodes"] for unit in ("web", "worker")}
    assert sorted(stopped["stopped"]) == sorted(expected)

    def left() -> list[int]:
        return [pid for pid, started in cluster.processes.items() if not _gone(pid, started)]

    await eventually(lambda: not left(), within=30.0, what=lambda: f"processes still running after down: {left()}")


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    code, out, err = await local_cluster("up", directory)
    assert code == 0, f"local-cluster up failed: {err}"
    info = json.loads(out)
    runtime: Runtime | None = None
    running: Cluster | None = None
    try:
        processes = _started(_pids(info))
        _up_as_api_md_says(info)
        env = env_file(Path(info["env_file"]))
        runtime = build_runtime(Settings.from_env(env | {"CASEBRIDGE_DATA_DIR": str(directory / "test")}), workers=())
        async with httpx.AsyncClient(base_url=info["url"], timeout=30.0) as api:
            centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
            opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
            dpo = await dpo_of(api, runtime, centre)
            case, _ = await open_case(centre, opeka)
            running = Cluster(directory, info, env, runtime, centre, opeka, dpo, case, processes=processes)
            yield running
    finally:
        if runtime is not None:
            await runtime.engine.dispose()
        if running is not None:
            await _down_stops_everything(running)
        else:
            code, out, err = await local_cluster("down", directory)
            assert code == 0, f"local-cluster down failed: {err}"


# -- the burst and what must hold after it ---------------------------------------------------------------------------


@dataclass
class Burst:
    """One burst's referrals, and how often a send had to be retried: answered 5xx (by HAProxy, or by a gateway whose
    database or bus was away) or cut off (HAProxy closing the connection to a node that died, or a timeout)."""

    ids: list[str] = field(default_factory=list)
    refused: int = 0
    cut_off: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # 5xx status -> how many
    errors: dict[str, int] = field(default_factory=dict)  # transport error type -> how many
    seconds: float = 0.0  # from the first send to the last answer

    def __str__(self) -> str:
        return (
            f"{len(self.ids)} of {BURST} referrals answered in {self.seconds:.1f} s; retried after {self.refused} "
            f"answers 5xx {self.statuses} and {self.cut_off} requests cut off {self.errors}"
        )


@contextlib.contextmanager
def _reported(burst: Burst) -> Iterator[None]:
    """Whatever fails while a burst is sent or checked says how that burst's sends were answered."""
    try:
        yield
    except Exception as exc:
        exc.add_note(f"the burst: {burst}")
        raise


async def _send(cluster: Cluster, body: dict[str, Any], burst: Burst) -> str:
    """One referral, sent until it is answered 201 (or 200: a repeat found the first attempt committed)."""
    key = uuid.uuid4().hex
    last = "no answer"
    for _ in range(ATTEMPTS):
        try:
            response = await cluster.centre.post("/api/v1/referrals", body, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:  # HAProxy cut the connection to a node that died
            last = type(exc).__name__
            burst.cut_off += 1
            burst.errors[last] = burst.errors.get(last, 0) + 1
        else:
            if response.status_code in (200, 201):
                return str(response.json()["id"])
            # 502/503 from HAProxy or a gateway whose database or bus is away; anything else is a real refusal.
            assert response.status_code >= 500, response.text
            last = str(response.status_code)
            burst.refused += 1
            burst.statuses[response.status_code] = burst.statuses.get(response.status_code, 0) + 1
        await asyncio.sleep(RETRY_S)
    raise AssertionError(f"a referral was refused {ATTEMPTS} times; the last answer: {last}")


async def _burst(cluster: Cluster, burst: Burst, fault: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
    body = referral_body(cluster.case, cluster.opeka.id, ["identity", "family"])
    remaining = list(range(BURST))
    struck: asyncio.Task[None] | None = None

    async def sender() -> None:
        nonlocal struck
        while remaining:
            remaining.pop()
            burst.ids.append(await _send(cluster, body, burst))
            if len(burst.ids) == FAULT_AFTER and fault is not None:
                struck = asyncio.create_task(fault())

    started = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    burst.seconds = time.monotonic() - started
    if struck is not None:
        await struck
    assert len(set(burst.ids)) == BURST, "two sends were answered with one referral"
    cluster.sent.update(burst.ids)


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


@dataclass(frozen=True)
class LeaseLeft:
    """The lease a dead sealer left, and how far it had sealed, read from one snapshot of the database."""

    holder: str
    expires_at: dt.datetime
    sealed: int  # the highest seq sealed


async def _lease_left(cluster: Cluster) -> LeaseLeft:
    async with await read_only_platform_session(cluster.runtime.sessions) as session:
        lease = (
            await session.execute(
                select(AuditSealerLease.holder, AuditSealerLease.expires_at).where(AuditSealerLease.id == LEASE_ROW_ID)
            )
        ).one()
        sealed = await session.scalar(select(func.max(AuditSeal.seq)))
    return LeaseLeft(lease.holder, lease.expires_at, int(sealed or 0))


async def _first_seal_after(cluster: Cluster, seq: int) -> dt.datetime:
    async with await read_only_platform_session(cluster.runtime.sessions) as session:
        sealed_at = await session.scalar(
            select(AuditSeal.sealed_at).where(AuditSeal.seq > seq).order_by(AuditSeal.seq).limit(1)
        )
    assert sealed_at is not None, f"nothing was sealed after seq {seq}"
    return sealed_at


def _dead(pid: int) -> bool:
    """Whether `pid` has stopped running: gone, or a zombie (then it can commit nothing more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


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


async def _scenario(
    cluster: Cluster, fault: Callable[[], Coroutine[Any, Any, None]] | None, *, retries_allowed: bool
) -> None:
    """A burst with `fault` striking mid-way, then what must hold after it. Without `retries_allowed` every send must
    be answered at its first attempt; with it (a node that dies takes its requests with it) they are counted and
    reported with anything that fails."""
    await _baseline_checkpoint(cluster)
    burst = Burst()
    with _reported(burst):
        await _burst(cluster, burst, fault)
        if not retries_allowed:
            # Neither refused nor cut off: the gateways stay ready through the streams' election (READY_GRACE_S in
            # gateway/bus.py), and a node HAProxy marks down would still finish its requests (docs/testing.md).
            assert (burst.refused, burst.cut_off) == (0, 0), "a send was refused or cut off"
        await _delivered_exactly_once(cluster, burst.ids)
        await _checkpoint_extends_the_last(cluster)
        await _all_running(cluster)
    scenario = fault.__qualname__.partition(".")[0] if fault else "no fault"  # the scenario that defines the fault
    logger.info("%s: %s", scenario, burst)


# -- the NATS cluster, asked directly --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _jetstream(cluster: Cluster) -> AsyncIterator[JetStreamContext]:
    """JetStream through the cluster's NATS URL (all three nodes), trusting its CA as the gateways do."""
    tls = ssl.create_default_context(cafile=cluster.env["SSL_CERT_FILE"])
    servers = cluster.env["CASEBRIDGE_NATS_URL"].split(",")
    nc = await nats.connect(servers, tls=tls, connect_timeout=5, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
    try:
        yield nc.jetstream(timeout=JS_REQUEST_S)
    finally:
        await nc.close()


async def _stream_cluster(js: JetStreamContext, stream: str) -> ClusterInfo | None:
    """The stream's leader and replicas, or None while it has no leader (or the request finds no node to answer)."""
    try:
        info = await js.stream_info(stream)
    except nats.errors.Error:  # timeouts, no responders, JetStream's 503 while it elects
        return None
    assert info.config.num_replicas == REPLICAS, f"{stream} has {info.config.num_replicas} replicas"
    return info.cluster if info.cluster is not None and info.cluster.leader else None


async def _replicated_on_every_node(cluster: Cluster) -> None:
    """Each stream has REPLICAS replicas: a leader and the two other NATS nodes as replicas, caught up."""
    names = {node["name"] for node in cluster.info["nats"]}
    async with _jetstream(cluster) as js:
        for stream in STREAMS:

            async def caught_up(stream: str = stream) -> ClusterInfo | None:
                found = await _stream_cluster(js, stream)
                return found if found is not None and all(p.current for p in found.replicas or []) else None

            found = await eventually(caught_up, within=FAILOVER_WITHIN_S, what=f"{stream} led and caught up")
            replicas = [peer.name for peer in found.replicas or []]
            assert len(replicas) == REPLICAS - 1, (stream, found.leader, replicas)
            assert {found.leader, *replicas} == names, (stream, found.leader, replicas)


# -- the scenarios, run in order by the one test at the end, on the one cluster ---------------------------------------


async def _the_envelope_stream_leader_killed_mid_burst(cluster: Cluster) -> None:
    """The node leading CB_ENVELOPES dies, so the other two must elect a leader while sends go on; none is refused."""
    held = cluster.dir / "held"
    held.mkdir(exist_ok=True)

    async def fault() -> None:
        async with _jetstream(cluster) as js:
            leader = await eventually(lambda: _stream_cluster(js, ENVELOPE_STREAM), what="CB_ENVELOPES led")
            name = leader.leader
            pid = next(node["pid"] for node in (await cluster.status())["nats"] if node["name"] == name)
            # Held down until another node leads: started again after its pause, it could win the election back.
            (held / name).touch()
            try:
                _kill(pid)
                killed = time.monotonic()

                async def elected() -> ClusterInfo | None:
                    found = await _stream_cluster(js, ENVELOPE_STREAM)
                    return found if found is not None and found.leader != name else None

                await eventually(elected, within=FAILOVER_WITHIN_S, what=f"CB_ENVELOPES led by another than {name}")
                logger.info("CB_ENVELOPES led again %.1f s after its leader %s died", time.monotonic() - killed, name)
            finally:
                (held / name).unlink()

    await _scenario(cluster, fault, retries_allowed=False)
    await _replicated_on_every_node(cluster)


async def _a_gateway_node_killed_mid_burst(cluster: Cluster) -> None:
    async def fault() -> None:
        _kill(*(await cluster.status())["nodes"][0]["pids"])

    await _scenario(cluster, fault, retries_allowed=True)


async def _the_sealer_leader_killed_mid_burst(cluster: Cluster) -> None:
    """Another sealer takes over once the dead one's lease expires: its first seal is stamped no later than a
    follower's poll after the expiry the lease row held when the leader died (both times from the database)."""
    left: list[LeaseLeft] = []

    async def fault() -> None:
        holder, pid = await _lease(cluster)
        assert pid in [p for node in (await cluster.status())["nodes"] for p in node["pids"]], holder
        _kill(pid)
        await eventually(lambda: _dead(pid), within=10.0, what=f"the sealer leader (pid {pid}) dead")
        left.append(await _lease_left(cluster))
        assert left[0].holder == holder, "the lease changed hands before it expired"

    await _scenario(cluster, fault, retries_allowed=True)
    holder, _ = await _lease(cluster)
    assert holder != left[0].holder, "the killed sealer still holds the lease"
    resumed = await _first_seal_after(cluster, left[0].sealed)
    after_expiry_s = (resumed - left[0].expires_at).total_seconds()
    assert after_expiry_s >= 0, f"seq {left[0].sealed + 1} was sealed {-after_expiry_s:.1f} s inside another's lease"
    bound_s = FOLLOWER_POLL_S + SEAL_TAKEOVER_SLACK_S
    assert after_expiry_s <= bound_s, (
        f"sealing resumed {after_expiry_s:.1f} s after the lease expired (bound {bound_s})"
    )


async def _a_worker_process_killed_mid_burst(cluster: Cluster) -> None:
    async def fault() -> None:
        _, leader = await _lease(cluster)
        status = await cluster.status()
        # The worker that does not lead the sealer: its relay and inbox are what this scenario takes away.
        workers = [node["pids"] for node in status["nodes"]]
        target = next((pids for pids in workers if leader not in pids), workers[1])
        _kill(*[pid for pid in target if _casebridge_command(pid) == "worker"])

    await _scenario(cluster, fault, retries_allowed=True)


async def _every_node_reports_the_bus_down(status: dict[str, Any]) -> None:
    """A bus that stays away turns readiness off on every gateway node within READY_GRACE_S of its last answer, so
    the burst after it goes to nodes that are all unready (which HAProxy then sends to as its backups)."""
    stopped = time.monotonic()

    async def bus_down(url: str) -> bool:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(f"{url}/health/ready")
        return response.status_code == 503 and "bus" in response.json()["down"]

    reported: set[str] = set()  # a node's two web processes lapse apart: one answer naming the bus is enough

    async def every_node_reported() -> bool:
        for node in status["nodes"]:
            if node["name"] not in reported and await bus_down(node["url"]):
                reported.add(node["name"])
        return len(reported) == len(status["nodes"])

    await eventually(
        every_node_reported,
        within=READY_GRACE_S + BUS_LAPSE_SLACK_S,
        every=0.5,
        what=lambda: f"every gateway node reporting the bus down (so far: {sorted(reported)})",
    )
    logger.info("every gateway node reported the bus down %.1f s after NATS stopped", time.monotonic() - stopped)


async def _sends_commit_to_the_outbox_while_every_nats_node_is_down(cluster: Cluster) -> None:
    await _baseline_checkpoint(cluster)
    held = cluster.dir / "held"
    held.mkdir(exist_ok=True)
    status = await cluster.status()
    names = [node["name"] for node in status["nats"]]
    for name in names:
        (held / name).touch()  # the supervisor leaves a held service stopped (systemctl stop)
    for node in status["nats"]:
        os.kill(node["pid"], signal.SIGTERM)
    burst = Burst()
    with _reported(burst):
        try:
            await _every_node_reports_the_bus_down(status)
            await _burst(cluster, burst, None)
            async with await read_only_platform_session(cluster.runtime.sessions) as session:
                waiting = await session.scalar(
                    select(func.count()).select_from(OutboxEnvelope).where(OutboxEnvelope.sent_at.is_(None))
                )
            assert (waiting or 0) >= BURST, "the sends did not wait in the outbox"
        finally:
            for name in names:
                (held / name).unlink()
        await _delivered_exactly_once(cluster, burst.ids)
        await _checkpoint_extends_the_last(cluster)
        await _all_running(cluster)
    logger.info("every NATS node down: %s", burst)


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
    await _replicated_on_every_node(cluster)
    await _the_envelope_stream_leader_killed_mid_burst(cluster)
    await _a_gateway_node_killed_mid_burst(cluster)
    await _the_sealer_leader_killed_mid_burst(cluster)
    await _a_worker_process_killed_mid_burst(cluster)
    await _sends_commit_to_the_outbox_while_every_nats_node_is_down(cluster)
