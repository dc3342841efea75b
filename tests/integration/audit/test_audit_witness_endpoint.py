"""POST /witness/add-checkpoint (C2SP tlog-witness): a node co-signs a log it witnesses when the checkpoint extends what
it co-signed, answers 409 with its size to a wrong guess, and refuses, and records in its agency's trail, an old
checkpoint replayed and a history that does not extend the one it co-signed.

Here the node witnesses its own log, read from its own /.well-known/audit-log as it would read a peer's: the rules are
the same, and tests/integration/audit/test_audit_peer_witness.py runs two nodes witnessing each other over HTTPS.
"""

from __future__ import annotations

import json

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit import checkpoint as notes
from audit.cosignature import Cosigned, verify_cosignature
from audit.events import Action, Actor, Outcome
from audit.merkle import consistency_proof, leaf_hash, root_hash
from audit.models import AuditEvent, AuditSeal, AuditWitnessState
from audit.peer_witness import PeerLogs, WitnessService
from audit.tlog_witness import ADD_CHECKPOINT_PATH, SIZE_MEDIA_TYPE, format_add_checkpoint, parse_cosignatures
from gateway.runtime import Runtime
from gateway.workers import WorkerName
from tenants.models import KeyUse, PlatformKeyUse, PublishedKey, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.factories import make_tenant


async def _checkpoint(runtime: Runtime, tenant: Tenant) -> str:
    """One more event, sealed and signed into a new checkpoint, by hand."""
    async with platform_session(runtime.sessions) as session, session.begin():
        runtime.exchange.audit.append(
            session,
            action=Action.TENANTS_KEYS_ROTATE,
            outcome=Outcome.SUCCESS,
            actor=Actor(kind="operator", id=None, tenant_id=None, role=None),
            log_tenant_id=tenant.id,
        )
    while await runtime.sealer.seal_once():
        pass
    note = await runtime.sealer.checkpoint_once()
    assert note is not None
    return note


async def _leaves(runtime: Runtime) -> list[bytes]:
    async with platform_session(runtime.sessions) as session:
        return list(await session.scalars(select(AuditSeal.leaf_hash).order_by(AuditSeal.seq)))


async def _refusals(runtime: Runtime, tenant: Tenant) -> list[dict[str, object]]:
    async with platform_session(runtime.sessions) as session:
        events = await session.scalars(
            select(AuditEvent.canonical).where(
                AuditEvent.log_tenant_id == tenant.id, AuditEvent.action == Action.AUDIT_CHECKPOINT_REFUSE.value
            )
        )
        return [json.loads(event) for event in events]


async def _log_key(runtime: Runtime) -> Ed25519PrivateKey:
    async with platform_session(runtime.sessions) as session:
        (key,) = await runtime.keyring.usable_platform_keys(session, PlatformKeyUse.CHECKPOINT)
    private = runtime.keyring.platform_private_jwk(key).get_op_key("sign")
    assert isinstance(private, Ed25519PrivateKey)
    return private


async def test_the_witness_cosigns_what_extends_its_record_and_refuses_the_rest(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The Workers would seal and sign on their own; here every checkpoint is made by hand.
    await runtime.workers[WorkerName.SEALER].stop()
    await runtime.workers[WorkerName.COSIGNER].stop()
    opeka = await make_tenant(runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
    first = await _checkpoint(runtime, opeka)

    unconfigured = await api.post(ADD_CHECKPOINT_PATH, content=format_add_checkpoint(0, [], first))
    assert unconfigured.status_code == 404
    assert unconfigured.headers["content-type"] == "application/problem+json"

    async def own_log() -> object:
        return (await api.get("/.well-known/audit-log")).json()

    runtime.peer_witness = WitnessService(
        runtime.sessions, runtime.keyring, runtime.clock, runtime.exchange.audit, PeerLogs({"self": own_log})
    )

    async def witness(body: bytes) -> httpx.Response:
        return await api.post(ADD_CHECKPOINT_PATH, content=body)

    # The first checkpoint of a log is taken from size 0; the answer is the agency's cosignature/v1 line.
    answer = await witness(format_add_checkpoint(0, [], first))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    checkpoint = notes.parse_note(first).checkpoint
    cosigned = parse_cosignatures(answer.content, checkpoint.body())
    async with platform_session(runtime.sessions) as session:
        jwk = await session.scalar(
            select(PublishedKey.public_jwk).where(
                PublishedKey.owner_tenant_id == opeka.id, PublishedKey.use == KeyUse.SIGNING.value
            )
        )
    assert jwk is not None
    key = OKPKey.import_key(jwk).get_op_key("verify")
    assert isinstance(key, Ed25519PublicKey)
    checked = verify_cosignature(cosigned, name=notes.cosigner_name(opeka.id), public_key=key)
    assert isinstance(checked, Cosigned)
    assert checked.timestamp is not None

    # A log that guessed the witness's size wrong learns it (409, text/x.tlog.size), and that is not recorded.
    second = await _checkpoint(runtime, opeka)
    size, new_size = checkpoint.size, notes.parse_note(second).checkpoint.size
    guessed = await witness(format_add_checkpoint(0, [], second))
    assert guessed.status_code == 409
    assert guessed.headers["content-type"] == SIZE_MEDIA_TYPE
    assert guessed.content == f"{size}\n".encode()
    leaves = await _leaves(runtime)
    extended = await witness(format_add_checkpoint(size, consistency_proof(leaves, size, new_size), second))
    assert extended.status_code == 200, extended.text
    # The same checkpoint again is co-signed again.
    again = await witness(format_add_checkpoint(new_size, [], second))
    assert again.status_code == 200
    assert await _refusals(runtime, opeka) == []

    # The first checkpoint replayed: 409 with the size co-signed since, recorded.
    replayed = await witness(format_add_checkpoint(0, [], first))
    assert replayed.status_code == 409
    assert replayed.content == f"{new_size}\n".encode()

    # Another history signed with the log's own key: a longer tree over other events with an honest proof over them
    # (422), and another tree of the co-signed size (409). Both recorded.
    log_key = await _log_key(runtime)
    origin = checkpoint.origin
    forked = [*leaves[: new_size - 1], *(leaf_hash(b"rewritten %d" % i) for i in range(5))]
    longer = notes.sign(notes.Checkpoint(origin, new_size + 4, root_hash(forked)), name=origin, private_key=log_key)
    inconsistent = await witness(
        format_add_checkpoint(new_size, consistency_proof(forked, new_size, new_size + 4), longer)
    )
    assert inconsistent.status_code == 422, inconsistent.text
    assert inconsistent.json()["type"] == "/problems/inconsistent-checkpoint"
    split_tree = notes.Checkpoint(origin, new_size, root_hash(forked[:new_size]))
    split = await witness(format_add_checkpoint(new_size, [], notes.sign(split_tree, name=origin, private_key=log_key)))
    assert split.status_code == 409
    assert split.content == f"{new_size}\n".encode()

    # The same refusal again is not recorded twice.
    assert (await witness(format_add_checkpoint(0, [], first))).status_code == 409
    refusals = await _refusals(runtime, opeka)
    assert len(refusals) == 3, refusals
    assert all(r["outcome"] == "error" for r in refusals)
    assert {r["resource"]["type"] for r in refusals} == {"peer_audit_checkpoint"}  # type: ignore[index]

    # What the spec answers without a record: not a known log (404), not signed by its key (403), malformed (400).
    stranger = notes.Checkpoint("elsewhere.example/audit", 3, bytes(32))
    unknown = await witness(
        format_add_checkpoint(0, [], notes.sign(stranger, name=stranger.origin, private_key=log_key))
    )
    forged_tree = notes.Checkpoint(origin, new_size + 1, bytes(32))
    forged = notes.sign(forged_tree, name=origin, private_key=Ed25519PrivateKey.generate())
    unsigned = await witness(format_add_checkpoint(new_size, [], forged))
    malformed = await witness(b"old 1\n\nnot a checkpoint\n")
    assert (unknown.status_code, unsigned.status_code, malformed.status_code) == (404, 403, 400)
    for problem in (unknown, unsigned, malformed):
        assert problem.headers["content-type"] == "application/problem+json"
    assert len(await _refusals(runtime, opeka)) == 3

    # The record did not move: what the agency co-signed last is the genuine second checkpoint.
    async with platform_session(runtime.sessions) as session:
        (state,) = await session.scalars(select(AuditWitnessState))
    assert (state.log_origin, state.cosigner_tenant_id, state.size) == (origin, opeka.id, new_size)
    assert state.root == notes.parse_note(second).checkpoint.root
    assert state.note == second
