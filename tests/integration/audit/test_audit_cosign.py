"""Agencies' nodes co-sign the audit checkpoints they see on the bus, and `audit verify` checks what they signed."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit import checkpoint as notes
from audit.cosignature import Cosigned, verify_cosignature
from audit.events import Action, Actor, Outcome
from audit.export import AuditExport, ExportError, export_database, read_export
from audit.models import AuditCheckpoint, AuditCosignature, AuditEvent
from audit.verify import ProblemKind, VerifyResult, verify_database, verify_log
from audit.witness import Witness
from gateway.app import build_runtime
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workers import WorkerName
from tenants.models import KeyUse, PlatformKeyUse, PublishedKey, Role, TenantKind
from tenants.persistence import platform_session
from tests.factories import make_tenant
from tests.integration.helpers.agencies import Agency, agency, dpo_of, open_case
from tests.polling import eventually


async def _agency_keys(runtime: Runtime, tenant_id: uuid.UUID) -> list[Ed25519PublicKey]:
    async with platform_session(runtime.sessions) as session:
        jwks = await session.scalars(
            select(PublishedKey.public_jwk).where(
                PublishedKey.owner_tenant_id == tenant_id, PublishedKey.use == KeyUse.SIGNING.value
            )
        )
        keys = [OKPKey.import_key(jwk).get_op_key("verify") for jwk in jwks]
    return [k for k in keys if isinstance(k, Ed25519PublicKey)]


async def _agency_private_key(runtime: Runtime, tenant_id: uuid.UUID) -> Ed25519PrivateKey:
    async with platform_session(runtime.sessions) as session:
        (key, *_) = await runtime.keyring.usable_tenant_keys(session, tenant_id, KeyUse.SIGNING)
    private = runtime.keyring.private_jwk(key).get_op_key("sign")
    assert isinstance(private, Ed25519PrivateKey)
    return private


async def _cosigned(dpo: Agency, *tenants: uuid.UUID) -> dict[str, object] | None:
    response = await dpo.get("/api/v1/audit/checkpoints/latest")
    if response.status_code != 200:
        return None
    body = response.json()
    signers = {c["tenant_id"] for c in body["cosignatures"]}
    return body if signers >= {str(t) for t in tenants} else None


async def _two_agencies(api: httpx.AsyncClient, runtime: Runtime) -> tuple[Agency, Agency, Agency]:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    await open_case(centre, opeka)
    return centre, opeka, await dpo_of(api, runtime, centre)


async def test_every_agency_cosigns_the_checkpoint_it_sees(api: httpx.AsyncClient, runtime: Runtime) -> None:
    centre, opeka, dpo = await _two_agencies(api, runtime)

    body = await eventually(lambda: _cosigned(dpo, centre.id, opeka.id), within=40)

    cosigned_note = str(body["cosigned_note"])
    assert cosigned_note.startswith(str(body["note"]).split("\n\n")[0])
    for tenant_id in (centre.id, opeka.id):
        (key,) = await _agency_keys(runtime, tenant_id)
        checked = verify_cosignature(cosigned_note, name=notes.cosigner_name(tenant_id), public_key=key)
        assert isinstance(checked, Cosigned)
        assert checked.checkpoint.size == body["size"]
        assert base64.b64encode(checked.checkpoint.root).decode() == body["root"]
        # C2SP cosignature/v1, timestamped: not the plain note signature agencies' nodes wrote before.
        assert checked.timestamp is not None
        assert abs(checked.timestamp - runtime.clock.now().timestamp()) < 3600
        plain = notes.verify(cosigned_note, name=notes.cosigner_name(tenant_id), public_key=key)
        assert isinstance(plain, notes.CheckpointProblem)
    result = await verify_database(runtime.sessions, origin=runtime.sealer.origin, now=runtime.clock.now())
    assert result.ok, result.problems


async def test_verify_reports_a_split_view_and_a_forged_cosignature(api: httpx.AsyncClient, runtime: Runtime) -> None:
    centre, opeka, dpo = await _two_agencies(api, runtime)
    body = await eventually(lambda: _cosigned(dpo, centre.id, opeka.id), within=40)
    size = int(str(body["size"]))
    await runtime.workers[WorkerName.SEALER].stop()  # no new checkpoints while the evidence is staged

    # The opeka's node co-signed trees this log does not contain: one where the log has another root (a second
    # history shown to that agency), and one longer than the log (the log was cut back after showing it).
    name = notes.cosigner_name(opeka.id)
    opeka_key = await _agency_private_key(runtime, opeka.id)
    async with platform_session(runtime.sessions) as session, session.begin():
        for other_size in (size - 1, size + 1000):
            other_tree = notes.Checkpoint(runtime.sealer.origin, other_size, bytes(range(32)))
            session.add(
                AuditCosignature(
                    cosigner_tenant_id=opeka.id,
                    size=other_size,
                    root=other_tree.root,
                    key_name=name,
                    note=notes.sign(other_tree, name=name, private_key=opeka_key),
                    created_at=runtime.clock.now(),
                )
            )
    result = await verify_database(runtime.sessions, origin=runtime.sealer.origin, now=runtime.clock.now())
    assert not result.ok
    assert {p.kind for p in result.problems} == {ProblemKind.NOT_EXTENDING, ProblemKind.TRUNCATED}

    async with platform_session(runtime.sessions) as session, session.begin():
        forged = await session.scalar(select(AuditCosignature).where(AuditCosignature.cosigner_tenant_id == centre.id))
        assert forged is not None
        forged.note = notes.sign(
            notes.Checkpoint(runtime.sealer.origin, forged.size, forged.root),
            name=notes.cosigner_name(centre.id),
            private_key=Ed25519PrivateKey.generate(),
        )
    result = await verify_database(runtime.sessions, origin=runtime.sealer.origin, now=runtime.clock.now())
    kinds = [p.kind for p in result.problems]
    assert ProblemKind.BAD_SIGNATURE in kinds
    assert any(str(centre.id) in p.detail for p in result.problems if p.kind is ProblemKind.BAD_SIGNATURE)


async def test_the_witness_refuses_a_rewritten_history(api: httpx.AsyncClient, runtime: Runtime) -> None:
    centre, opeka, dpo = await _two_agencies(api, runtime)
    body = await eventually(lambda: _cosigned(dpo, centre.id, opeka.id), within=40)
    await runtime.workers[WorkerName.SEALER].stop()
    await runtime.workers[WorkerName.COSIGNER].stop()
    async with platform_session(runtime.sessions) as session:
        (key,) = await runtime.keyring.usable_platform_keys(session, PlatformKeyUse.CHECKPOINT)
        size = int(str(body["size"]))
        checkpointed = await session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.size == size))
    assert checkpointed is not None
    log_key = runtime.keyring.platform_private_jwk(key).get_op_key("sign")
    assert isinstance(log_key, Ed25519PrivateKey)
    witness = Witness(runtime.sessions, runtime.keyring, runtime.clock, runtime.exchange.audit, cosigners=["opeka"])

    # Signed by the log's own key, but over a tree the sealed events do not make.
    rewritten = notes.sign(
        notes.Checkpoint(runtime.sealer.origin, size, bytes(32)), name=runtime.sealer.origin, private_key=log_key
    )
    [outcome] = await witness.witness(rewritten)
    assert (outcome.tenant_id, outcome.status) == (opeka.id, "refused")
    assert "two histories" in outcome.detail

    # A note no log key signed is refused before anything else is looked at.
    foreign = notes.sign(
        notes.Checkpoint(runtime.sealer.origin, size + 1, bytes(32)),
        name=runtime.sealer.origin,
        private_key=Ed25519PrivateKey.generate(),
    )
    [outcome] = await witness.witness(foreign)
    assert outcome.status == "refused"

    # The genuine checkpoint, seen again, is nothing new.
    [outcome] = await witness.witness(checkpointed.note)
    assert outcome.status == "seen"

    async with platform_session(runtime.sessions) as session:
        refusals = [
            json.loads(e.canonical)
            for e in await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.log_tenant_id == opeka.id, AuditEvent.action == "audit:checkpoint:refuse"
                )
            )
        ]
    assert len(refusals) == 2
    assert all(e["outcome"] == "error" for e in refusals)
    assert dt.datetime.fromisoformat(refusals[0]["time"])


def verify_with_cosignatures(export: AuditExport) -> VerifyResult:
    """The exported log verified with the keys and the cosignatures it carries."""
    return verify_log(
        export.events,
        export.checkpoints,
        origin=export.origin,
        public_keys=export.public_keys,
        cosignatures=export.cosignatures,
        cosigner_keys=export.cosigner_keys,
    )


async def test_the_export_carries_the_cosignatures_and_verifies_offline(
    api: httpx.AsyncClient, runtime: Runtime, tmp_path: Path
) -> None:
    centre, opeka, dpo = await _two_agencies(api, runtime)
    await eventually(lambda: _cosigned(dpo, centre.id, opeka.id), within=40)
    await runtime.workers[WorkerName.SEALER].stop()
    await runtime.workers[WorkerName.COSIGNER].stop()
    path = tmp_path / "audit.jsonl"
    await export_database(runtime.sessions, path, origin=runtime.sealer.origin, exported_at=runtime.clock.now())

    export = read_export(path)
    assert len(export.cosignatures) >= 2
    assert set(export.cosigner_keys) >= {notes.cosigner_name(centre.id), notes.cosigner_name(opeka.id)}
    clean = verify_with_cosignatures(export)
    assert clean.ok, clean.problems

    lines = path.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if '"type":"cosignature"' in line)
    edited = json.loads(lines[index])
    body, _, signature = edited["note"].partition("\n\n")
    edited["note"] = body + "\n\n" + signature[:-8] + "AAAAAAA\n"  # a different signature, same length
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join([*lines[:index], json.dumps(edited) + "\n", *lines[index + 1 :]]))
    export = read_export(tampered)
    result = verify_with_cosignatures(export)
    assert [p.kind for p in result.problems] == [ProblemKind.BAD_SIGNATURE]

    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("".join([*lines[:index], *lines[index + 1 :]]))
    with pytest.raises(ExportError, match="co-signatures"):
        read_export(dropped)


async def test_two_nodes_seeing_the_same_checkpoint_cosign_it_once(settings: Settings) -> None:
    """Several worker processes co-sign for the same agencies: one signs each checkpoint, the others see it signed."""
    node = build_runtime(settings, workers=())  # no Workers: this test seals and co-signs by hand
    try:
        centre = await make_tenant(node, "semya", kind=TenantKind.SOCIAL_CENTRE)
        opeka = await make_tenant(node, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
        async with platform_session(node.sessions) as session, session.begin():
            node.exchange.audit.append(
                session,
                action=Action.TENANTS_KEYS_ROTATE,
                outcome=Outcome.SUCCESS,
                actor=Actor(kind="operator", id=None, tenant_id=None, role=None),
                log_tenant_id=centre.id,
            )
        assert await node.sealer.seal_once() >= 1
        await node.sealer.checkpoint_once()
        async with platform_session(node.sessions) as session:
            note = await session.scalar(select(AuditCheckpoint.note).order_by(AuditCheckpoint.size.desc()).limit(1))
        assert note is not None
        witnesses = [
            Witness(node.sessions, node.keyring, node.clock, node.exchange.audit, cosigners=None) for _ in range(2)
        ]
        first, second = await asyncio.gather(*(witness.witness(note) for witness in witnesses))
        statuses = sorted(o.status for o in [*first, *second])
        assert statuses == ["cosigned", "cosigned", "seen", "seen"], (first, second)
        async with platform_session(node.sessions) as session:
            rows = list(await session.scalars(select(AuditCosignature.cosigner_tenant_id)))
        assert sorted(map(str, rows)) == sorted([str(centre.id), str(opeka.id)])
    finally:
        await node.engine.dispose()
