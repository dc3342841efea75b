"""RFC 9864's algorithm names over the real bus, on SQLite and PostgreSQL: a tenant whose keys an earlier release made
keeps exchanging, and an envelope an earlier release sealed (format version 1) is still applied after the upgrade."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest
from joserfc import jwe, jws
from joserfc.jwk import OKPKey
from sqlalchemy import select, update
from uuid_utils.compat import uuid7

from exchange.transport.envelopes import EnvelopeType, OpenedEnvelope, open_envelope
from exchange.transport.models import OutboxEnvelope
from exchange.transport.outbox import subject_for
from gateway.runtime import Runtime
from tenants.models import KeyUse, PublishedKey, TenantKey
from tenants.persistence import platform_session
from tests.integration.helpers.agencies import Agency, open_case, referral_body
from tests.polling import eventually

# Format version 1 names its signatures "EdDSA" (deprecated by RFC 9864); these tests read it on purpose.
reads_version_1 = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


async def _made_by_an_earlier_release(runtime: Runtime, tenant_id: uuid.UUID) -> None:
    """Record the tenant's signing key as the release before RFC 9864's names stored it: "alg": "EdDSA"."""
    async with platform_session(runtime.sessions) as session, session.begin():
        key = await session.scalar(
            select(TenantKey).where(TenantKey.tenant_id == tenant_id, TenantKey.use == KeyUse.SIGNING.value)
        )
        assert key is not None
        assert key.public_jwk is not None
        recorded = {**key.public_jwk, "alg": "EdDSA"}
        key.alg, key.public_jwk = "EdDSA", recorded
        await session.execute(update(PublishedKey).where(PublishedKey.kid == key.kid).values(public_jwk=recorded))
    # The key caches notice new keys, not rewritten ones: no release rewrites a key, only this test does.
    runtime.exchange.keyring.cache.forget()
    runtime.exchange.published.forget()


async def _signing_keys(api: httpx.AsyncClient, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    keys = (await api.get(f"/.well-known/tenants/{tenant_id}/jwks.json")).json()["keys"]
    return [k for k in keys if k["use"] == "sig"]


async def _detail_when(agency: Agency, referral_id: str, ready: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await agency.get(f"/api/v1/referrals/{referral_id}")
        detail = dict(response.json()) if response.status_code == 200 else None
        return detail if detail is not None and ready(detail) else None

    result: dict[str, Any] = await eventually(check)
    return result


async def test_a_tenant_whose_keys_an_earlier_release_made_keeps_exchanging(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime, api: httpx.AsyncClient
) -> None:
    centre, opeka, _ = agencies
    await _made_by_an_earlier_release(runtime, centre.id)
    # Its key has signatures under both names now, so its JWK names neither; a new key names "Ed25519".
    assert [set(k) for k in await _signing_keys(api, centre.id)] == [{"kty", "crv", "x", "kid", "use"}]
    assert [k["alg"] for k in await _signing_keys(api, opeka.id)] == ["Ed25519"]

    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity", "social_assessment"]))
    assert sent.status_code == 201, sent.text
    arrived = await _detail_when(opeka, sent.json()["id"], lambda d: (d.get("letter") or {}).get("status") == "ready")
    assert arrived["status"] == "received"
    assert arrived["letter"]["signature"] == "valid"  # signed as "Ed25519" with the key recorded as "EdDSA"


def _sealed_as_version_1(members: dict[str, Any], payload: bytes, signing_key: OKPKey, recipient_key: OKPKey) -> str:
    """An envelope as the release before format version 2 sealed it: cb.v 1, its JWS named "EdDSA"."""
    routing = {"cb.v": 1, **members}
    either_name = OKPKey.import_key({k: v for k, v in signing_key.as_dict(private=True).items() if k != "alg"})
    signed = jws.serialize_compact(
        {"alg": "EdDSA", "kid": signing_key.kid, "typ": "cb-envelope+jws", "cty": "json", **routing},
        payload,
        either_name,
        registry=jws.JWSRegistry(algorithms=["EdDSA"], strict_check_header=False),
    )
    protected = {
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "kid": recipient_key.kid,
        "typ": "cb-envelope+jwe",
        "cty": "JWT",
        **routing,
    }
    registry = jwe.JWERegistry(algorithms=["ECDH-ES+A256KW", "A256GCM"], strict_check_header=False)
    return jwe.encrypt_compact(protected, signed, recipient_key, registry=registry)


@reads_version_1
async def test_a_version_1_envelope_left_in_the_outbox_at_an_upgrade_is_applied(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    await _made_by_an_earlier_release(runtime, centre.id)
    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
    assert sent.status_code == 201, sent.text
    deps = runtime.exchange
    async with platform_session(runtime.sessions) as session:
        token = await session.scalar(
            select(OutboxEnvelope.token).where(
                OutboxEnvelope.tenant_id == centre.id,
                OutboxEnvelope.exchange_id == uuid.UUID(sent.json()["id"]),
                OutboxEnvelope.envelope_type == EnvelopeType.REFERRAL_REQUESTED.value,
            )
        )
        decryption = [
            deps.keyring.private_jwk(k)
            for k in await deps.keyring.usable_tenant_keys(session, opeka.id, KeyUse.ENCRYPTION)
        ]
        sender_keys = await deps.published.signing_keys(session, centre.id)
        signing = (await deps.keyring.usable_tenant_keys(session, centre.id, KeyUse.SIGNING))[0]
        encryption = await deps.published.encryption_key(session, opeka.id)
    assert token is not None
    assert encryption is not None
    opened = open_envelope(
        token, recipient=opeka.id, decryption_keys=decryption, sender_keys=lambda _: sender_keys, now=deps.clock.now()
    )
    assert isinstance(opened, OpenedEnvelope)
    assert opened.header.version == 2

    # The same kind of referral, sealed by the earlier release and still in its outbox when the nodes were upgraded.
    referral_id, envelope_id = uuid.uuid4(), uuid7()
    body = {k: v for k, v in opened.body.items() if k != "letter"} | {"referral_id": str(referral_id)}
    created_at = deps.clock.now().replace(microsecond=0)
    members = {
        "cb.eid": str(envelope_id),
        "cb.type": EnvelopeType.REFERRAL_REQUESTED.value,
        "cb.from": str(centre.id),
        "cb.to": str(opeka.id),
        "cb.iat": int(created_at.timestamp()),
    }
    old_token = _sealed_as_version_1(
        members,
        json.dumps(body, ensure_ascii=False).encode(),
        deps.keyring.private_jwk(signing),
        OKPKey.import_key(encryption),
    )
    async with platform_session(runtime.sessions) as session, session.begin():
        session.add(
            OutboxEnvelope(
                tenant_id=centre.id,
                envelope_id=envelope_id,
                envelope_type=EnvelopeType.REFERRAL_REQUESTED.value,
                recipient_tenant_id=opeka.id,
                exchange_id=referral_id,
                subject=subject_for(opeka.id, centre.id, EnvelopeType.REFERRAL_REQUESTED),
                token=old_token,
                next_attempt_at=created_at - dt.timedelta(seconds=1),
            )
        )
    runtime.wake_relay()

    arrived = await _detail_when(opeka, str(referral_id), lambda d: d["status"] == "received")
    assert arrived["from_tenant_id"] == str(centre.id)
