"""A DPO can fetch the signed checkpoint and prove that an event of its own trail is in the log."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit import checkpoint as notes
from audit.merkle import verify_consistency, verify_inclusion
from audit.models import AuditEvent
from gateway.runtime import Runtime
from tenants.models import PlatformKeyUse, Role, TenantKind
from tenants.persistence import platform_session
from tests.integration.helpers.agencies import agency, dpo_of, open_case
from tests.polling import eventually


async def _checkpoint_key(runtime: Runtime) -> Ed25519PublicKey:
    async with platform_session(runtime.sessions) as session:
        (key,) = await runtime.keyring.usable_platform_keys(session, PlatformKeyUse.CHECKPOINT)
    public = OKPKey.import_key(key.public_jwk).get_op_key("verify")
    assert isinstance(public, Ed25519PublicKey)
    return public


async def test_checkpoint_and_inclusion_proof(api: httpx.AsyncClient, runtime: Runtime) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    dpo = await agency(api, runtime, "semya-dpo", TenantKind.SOCIAL_CENTRE, Role.DPO)
    await open_case(centre, opeka)
    async with platform_session(runtime.sessions) as session:
        event = await session.scalar(
            select(AuditEvent).where(AuditEvent.log_tenant_id == centre.id, AuditEvent.action == "exchange:case:create")
        )
    assert event is not None
    # The DPO belongs to another tenant in this test, so first prove the foreign event looks missing.
    foreign = await dpo.get(f"/api/v1/audit/events/{event.id}/proof")
    assert foreign.status_code == 404

    centre_dpo = await dpo_of(api, runtime, centre)

    async def proof() -> dict[str, object] | None:
        response = await centre_dpo.get(f"/api/v1/audit/events/{event.id}/proof")
        return response.json() if response.status_code == 200 else None

    body = await eventually(proof, within=30)
    latest = (await centre_dpo.get("/api/v1/audit/checkpoints/latest")).json()
    signed = notes.verify(str(body["note"]), name=str(latest["origin"]), public_key=await _checkpoint_key(runtime))
    assert isinstance(signed, notes.Checkpoint)
    assert signed.size == body["size"]
    assert base64.b64encode(signed.root).decode() == body["root"]
    leaf = base64.b64decode(str(body["leaf_hash"]))
    path = [base64.b64decode(h) for h in body["proof"]]  # type: ignore[attr-defined]
    assert verify_inclusion(leaf, int(body["leaf_index"]), int(body["size"]), path, signed.root)  # type: ignore[arg-type]
    tampered = [*path[:-1], bytes(32)]
    assert not verify_inclusion(leaf, int(body["leaf_index"]), int(body["size"]), tampered, signed.root)  # type: ignore[arg-type]
    assert json.loads(event.canonical)["id"] == str(event.id)
    assert (await centre_dpo.get(f"/api/v1/audit/events/{uuid.uuid4()}/proof")).status_code == 404


async def test_consistency_proof_between_two_checkpoints(api: httpx.AsyncClient, runtime: Runtime) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    await open_case(centre, opeka)
    centre_dpo = await dpo_of(api, runtime, centre)

    async def signed_after(size: int) -> notes.Checkpoint | None:
        response = await centre_dpo.get("/api/v1/audit/checkpoints/latest")
        if response.status_code != 200 or response.json()["size"] <= size:
            return None
        key = await _checkpoint_key(runtime)
        checkpoint = notes.verify(response.json()["note"], name=response.json()["origin"], public_key=key)
        assert isinstance(checkpoint, notes.Checkpoint)
        return checkpoint

    older = await eventually(lambda: signed_after(0), within=30)
    await open_case(centre, opeka)  # more events, so a later checkpoint has to extend the first
    newer = await eventually(lambda: signed_after(older.size), within=30)

    response = await centre_dpo.get(
        "/api/v1/audit/checkpoints/consistency", params={"old": older.size, "new": newer.size}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["old_size"], body["new_size"]) == (older.size, newer.size)
    assert base64.b64decode(body["old_root"]) == older.root
    assert base64.b64decode(body["new_root"]) == newer.root
    path = [base64.b64decode(h) for h in body["proof"]]
    assert verify_consistency(older.size, newer.size, older.root, newer.root, path)
    if path:
        assert not verify_consistency(older.size, newer.size, older.root, newer.root, [*path[:-1], bytes(32)])
    assert not verify_consistency(older.size, newer.size, bytes(32), newer.root, path)

    backwards = await centre_dpo.get(
        "/api/v1/audit/checkpoints/consistency", params={"old": newer.size, "new": older.size}
    )
    assert backwards.status_code == 400
    assert backwards.headers["content-type"].startswith("application/problem+json")
    beyond = await centre_dpo.get("/api/v1/audit/checkpoints/consistency", params={"old": older.size, "new": 10**9})
    assert beyond.status_code == 404
    assert "no checkpoint of size" in beyond.json()["detail"]
    for params in ({"old": "0", "new": "1"}, {"old": "x", "new": "1"}, {"new": "1"}):
        malformed = await centre_dpo.get("/api/v1/audit/checkpoints/consistency", params=params)
        assert malformed.status_code == 400, params
