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
from audit.merkle import verify_inclusion
from audit.models import AuditEvent
from gateway.runtime import Runtime
from tenants import services
from tenants.models import PlatformKeyUse, Role, TenantKind
from tenants.persistence import platform_session
from tests.factories import access_token, make_client
from tests.integration.test_referral_loop import Agency, agency, eventually, open_case


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

    centre_dpo = await _dpo_of(api, runtime, centre)

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


async def _dpo_of(api: httpx.AsyncClient, runtime: Runtime, owner: Agency) -> Agency:

    async with platform_session(runtime.sessions) as session:
        tenant = await services.tenant_by_slug(session, "semya")
    client = await make_client(runtime, tenant, scopes=["audit:read"], role=Role.DPO)
    assert client.tenant_id == owner.id
    return Agency(api, client, await access_token(api, client))
