"""Two nodes witness each other's audit logs over HTTPS (C2SP tlog-witness): each node's latest checkpoint carries the
other node's agencies' co-signatures, `casebridge audit verify` checks them, and a witness refuses, and records, an old
checkpoint replayed and a history that does not extend the one it co-signed."""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit import checkpoint as notes
from audit.events import Action, Actor, Outcome
from audit.merkle import consistency_proof, leaf_hash, root_hash
from audit.models import AuditCheckpoint, AuditEvent, AuditSeal, AuditWitnessState
from audit.tlog_witness import ADD_CHECKPOINT_PATH, SIZE_MEDIA_TYPE, format_add_checkpoint, parse_size
from gateway.app import create_app
from gateway.bus import EmbeddedNats
from gateway.runtime import Runtime
from gateway.workers import WorkerName
from tenants.models import KeyUse, PlatformKeyUse, PublishedKey, Tenant, TenantKind
from tenants.peers import Peer
from tenants.persistence import platform_session
from tenants.pinning import pinned_client
from tests.environment import empty_bus, settings_for
from tests.factories import make_tenant
from tests.integration.helpers.nodes import Certificate, peers_file, served, throwaway_certificate
from tests.polling import eventually
from tests.processes import free_port


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    runtime: Runtime
    url: str
    certificate: Certificate

    @property
    def peer(self) -> Peer:
        return Peer(name=self.name, url=self.url, pin=self.certificate.pin)


@pytest.fixture
async def node_nats(tmp_path: Path) -> AsyncIterator[str]:
    """The agency's node has a bus of its own: the hub's checkpoints are not its business."""
    server = EmbeddedNats(tmp_path / "node-nats" / "store")
    yield await server.start()
    await server.stop()


@pytest.fixture
async def nodes(
    database_url: str, _schema: None, nats_url: str, node_nats: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Node, Node]]:
    """The hub (the test's database, as `cli` sees it) and an agency's own node (SQLite), each the other's peer."""
    await empty_bus(nats_url)
    template: Path = request.getfixturevalue("_migrated_sqlite")
    node_db = tmp_path / "node.db"
    shutil.copyfile(template, node_db)
    ports = {"hub": free_port(), "node": free_port()}
    certificates = {name: throwaway_certificate(tmp_path / "tls", name=name) for name in ports}
    urls = {name: f"https://127.0.0.1:{port}" for name, port in ports.items()}
    other = {"hub": "node", "node": "hub"}
    files = {
        name: peers_file(
            tmp_path / f"{name}-peers.toml", Peer(other[name], urls[other[name]], certificates[other[name]].pin)
        )
        for name in ports
    }
    hub_settings = settings_for(
        database_url, tmp_path / "var", nats_url, CASEBRIDGE_BASE_URL=urls["hub"], CASEBRIDGE_PEERS=str(files["hub"])
    )
    node_settings = settings_for(
        f"sqlite+aiosqlite:///{node_db}",
        tmp_path / "node-var",
        node_nats,
        CASEBRIDGE_BASE_URL=urls["node"],
        CASEBRIDGE_PEERS=str(files["node"]),
    )
    hub_app, node_app = create_app(hub_settings), create_app(node_settings)
    async with contextlib.AsyncExitStack() as stack:
        for name, app in (("hub", hub_app), ("node", node_app)):
            await stack.enter_async_context(served(app, certificate=certificates[name], port=ports[name]))
        yield (
            Node("hub", hub_app.state.runtime, urls["hub"], certificates["hub"]),
            Node("node", node_app.state.runtime, urls["node"], certificates["node"]),
        )


async def _event(node: Node, tenant: Tenant) -> None:
    """Something for the node's log to seal and sign a new checkpoint over."""
    async with platform_session(node.runtime.sessions) as session, session.begin():
        node.runtime.exchange.audit.append(
            session,
            action=Action.TENANTS_KEYS_ROTATE,
            outcome=Outcome.SUCCESS,
            actor=Actor(kind="operator", id=None, tenant_id=None, role=None),
            log_tenant_id=tenant.id,
        )


async def _signing_keys(node: Node, tenant_id: uuid.UUID) -> list[Ed25519PublicKey]:
    async with platform_session(node.runtime.sessions) as session:
        jwks = await session.scalars(
            select(PublishedKey.public_jwk).where(
                PublishedKey.owner_tenant_id == tenant_id, PublishedKey.use == KeyUse.SIGNING.value
            )
        )
        keys = [OKPKey.import_key(jwk).get_op_key("verify") for jwk in jwks]
    return [key for key in keys if isinstance(key, Ed25519PublicKey)]


async def _witness(node: Node, body: bytes) -> httpx.Response:
    async with pinned_client(node.peer) as client:
        return await client.post(ADD_CHECKPOINT_PATH, content=body)


async def _refusals(node: Node, tenant: Tenant) -> list[dict[str, object]]:
    async with platform_session(node.runtime.sessions) as session:
        events = await session.scalars(
            select(AuditEvent.canonical).where(
                AuditEvent.log_tenant_id == tenant.id, AuditEvent.action == Action.AUDIT_CHECKPOINT_REFUSE.value
            )
        )
        return [json.loads(event) for event in events]


async def _three_agencies(hub: Node, node: Node) -> tuple[Tenant, Tenant, Tenant]:
    semya = await make_tenant(hub.runtime, "semya", kind=TenantKind.SOCIAL_CENTRE)
    opeka = await make_tenant(hub.runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
    kdn = await make_tenant(node.runtime, "kdn", kind=TenantKind.JUVENILE_COMMISSION)
    await _event(hub, semya)
    await _event(node, kdn)
    return semya, opeka, kdn


async def _witnessed(witness: Node, log: Node, *agencies: Tenant, beyond: int = 0) -> list[AuditWitnessState] | None:
    """What `witness` co-signed, for `agencies`, of the latest checkpoint of `log`'s log, once it has (and it is
    larger than `beyond`)."""
    async with platform_session(log.runtime.sessions) as session:
        latest = await session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
    if latest is None or latest.size <= beyond:
        return None
    origin = notes.parse_note(latest.note).checkpoint.origin
    async with platform_session(witness.runtime.sessions) as session:
        states = list(
            await session.scalars(
                select(AuditWitnessState).where(
                    AuditWitnessState.log_origin == origin, AuditWitnessState.size == latest.size
                )
            )
        )
    if {s.cosigner_tenant_id for s in states} != {a.id for a in agencies}:
        return None
    assert all(s.root == latest.root and s.note == latest.note for s in states)
    return states


async def test_each_node_witnesses_the_others_log_over_https(nodes: tuple[Node, Node]) -> None:
    hub, node = nodes
    semya, opeka, kdn = await _three_agencies(hub, node)

    # The hub sends its checkpoints to the node's witness, which co-signs them for its agency, and the other way
    # round: each witness keeps, per agency, the latest checkpoint of the other's log it co-signed.
    (state,) = await eventually(lambda: _witnessed(node, hub, kdn), within=60)
    assert state.log_origin == f"{hub.url.removeprefix('https://')}/audit"
    await eventually(lambda: _witnessed(hub, node, semya, opeka), within=60)

    # The log grows, and the witnesses follow it with consistency proofs from what they co-signed.
    await _event(hub, opeka)
    await eventually(lambda: _witnessed(node, hub, kdn, beyond=state.size), within=60)
    assert await _refusals(node, kdn) == []


async def _log_key(hub: Node) -> Ed25519PrivateKey:
    async with platform_session(hub.runtime.sessions) as session:
        (key,) = await hub.runtime.keyring.usable_platform_keys(session, PlatformKeyUse.CHECKPOINT)
    private = hub.runtime.keyring.platform_private_jwk(key).get_op_key("sign")
    assert isinstance(private, Ed25519PrivateKey)
    return private


async def _hub_log(hub: Node) -> tuple[list[str], list[bytes]]:
    async with platform_session(hub.runtime.sessions) as session:
        checkpoints = list(await session.scalars(select(AuditCheckpoint.note).order_by(AuditCheckpoint.size)))
        leaves = list(await session.scalars(select(AuditSeal.leaf_hash).order_by(AuditSeal.seq)))
    return checkpoints, leaves


async def test_a_replayed_checkpoint_and_another_history_are_refused_and_recorded(nodes: tuple[Node, Node]) -> None:
    hub, node = nodes
    _, opeka, kdn = await _three_agencies(hub, node)
    (first,) = await eventually(lambda: _witnessed(node, hub, kdn), within=60)
    await _event(hub, opeka)  # a second checkpoint, so there is an older one to replay
    await eventually(lambda: _witnessed(node, hub, kdn, beyond=first.size), within=60)
    await hub.runtime.workers[WorkerName.SEALER].stop()  # the hub signs nothing more while the evidence is staged
    await hub.runtime.workers[WorkerName.COSIGNER].stop()
    checkpoints, leaves = await _hub_log(hub)
    origin = notes.parse_note(checkpoints[0]).checkpoint.origin
    async with platform_session(node.runtime.sessions) as session:
        state = await session.scalar(select(AuditWitnessState).where(AuditWitnessState.log_origin == origin))
    assert state is not None
    size = state.size
    assert notes.parse_note(checkpoints[0]).checkpoint.size < size

    # The hub's first checkpoint, replayed as its node sent it then: 409 with the size co-signed since.
    replayed = await _witness(node, format_add_checkpoint(0, [], checkpoints[0]))
    assert replayed.status_code == 409
    assert replayed.headers["content-type"].startswith(SIZE_MEDIA_TYPE)
    assert parse_size(replayed.content) == size

    # A second history, signed with the hub's own log key: a longer tree over other events, with an honest proof
    # over those events from the co-signed size (422), and another tree of the co-signed size itself (409).
    log_key = await _log_key(hub)
    forked = [*leaves[: size - 1], *(leaf_hash(b"rewritten %d" % i) for i in range(5))]
    longer = notes.Checkpoint(origin, size + 4, root_hash(forked[: size + 4]))
    inconsistent = await _witness(
        node,
        format_add_checkpoint(
            size, consistency_proof(forked, size, size + 4), notes.sign(longer, name=origin, private_key=log_key)
        ),
    )
    assert inconsistent.status_code == 422, inconsistent.text
    assert inconsistent.json()["type"] == "/problems/inconsistent-checkpoint"
    other_root = notes.Checkpoint(origin, size, root_hash(forked[:size]))
    split = await _witness(
        node, format_add_checkpoint(size, [], notes.sign(other_root, name=origin, private_key=log_key))
    )
    assert split.status_code == 409
    assert parse_size(split.content) == size

    # Each refusal is in the node's agency's own trail; the same refusal again is not recorded twice.
    assert (await _witness(node, format_add_checkpoint(0, [], checkpoints[0]))).status_code == 409
    refusals = await _refusals(node, kdn)
    assert len(refusals) == 3, refusals
    assert {r["resource"]["type"] for r in refusals} == {"peer_audit_checkpoint"}  # type: ignore[index]
    assert all(r["outcome"] == "error" for r in refusals)

    # What the spec answers without a record: not a peer's log (404), not signed by its key (403), malformed (400).
    stranger = notes.Checkpoint("elsewhere.example/audit", 3, bytes(32))
    unknown = await _witness(
        node, format_add_checkpoint(0, [], notes.sign(stranger, name=stranger.origin, private_key=log_key))
    )
    forged = notes.sign(
        notes.Checkpoint(origin, size + 1, bytes(32)), name=origin, private_key=Ed25519PrivateKey.generate()
    )
    unsigned = await _witness(node, format_add_checkpoint(size, [], forged))
    malformed = await _witness(node, b"old 1\n\nnot a checkpoint\n")
    assert (unknown.status_code, unsigned.status_code, malformed.status_code) == (404, 403, 400)
    for answer in (unknown, unsigned, malformed):
        assert answer.headers["content-type"] == "application/problem+json"
    assert len(await _refusals(node, kdn)) == 3

    # The record did not move: the genuine log goes on being co-signed from where it was.
    async with platform_session(node.runtime.sessions) as session:
        after = await session.scalar(select(AuditWitnessState).where(AuditWitnessState.log_origin == origin))
    assert after is not None
    assert (after.size, after.root) == (size, state.root)
