"""Test data made through the real services: tenants, users, API clients, their access tokens, and envelopes."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import OKPKey

from exchange.transport.envelopes import EnvelopeType, OpenedEnvelope, open_envelope
from exchange.transport.models import OutboxEnvelope
from exchange.transport.outbox import OutgoingEnvelope, sealed_envelope, subject_for
from gateway.runtime import Runtime
from tenants import services
from tenants.calendar import DEFAULT_TIME_ZONE
from tenants.models import KeyUse, Role, Scope, Tenant, TenantKind, User
from tenants.persistence import platform_session

ALL_SCOPES = [s.value for s in Scope]
PASSWORD = "correct horse battery staple"


@dataclass
class ClientKey:
    client_id: str
    tenant_id: uuid.UUID
    key: OKPKey


async def make_tenant(
    runtime: Runtime,
    slug: str | None = None,
    *,
    kind: str = TenantKind.SOCIAL_CENTRE,
    region: str | None = "Центральный район",
    name: str | None = None,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> Tenant:
    slug = slug or f"t-{uuid.uuid4().hex[:8]}"
    async with platform_session(runtime.sessions) as session, session.begin():
        return await services.create_tenant(
            session,
            runtime.keyring,
            slug=slug,
            name=name or f"Agency {slug}",
            kind=kind,
            region=region,
            time_zone=time_zone,
        )


async def make_user(
    runtime: Runtime,
    tenant: Tenant,
    *,
    roles: list[str] | None = None,
    email: str | None = None,
    password: str = PASSWORD,
    display_name: str | None = None,
) -> User:
    async with platform_session(runtime.sessions) as session, session.begin():
        user, _ = await services.create_user(
            session,
            tenant=tenant,
            email=email or f"u{uuid.uuid4().hex[:8]}@example.org",
            roles=roles or [Role.SPECIALIST],
            password=password,
            display_name=display_name,
        )
        return user


async def make_client(
    runtime: Runtime, tenant: Tenant, *, scopes: list[str] | None = None, role: str = Role.SPECIALIST
) -> ClientKey:
    key = OKPKey.generate_key("Ed25519", {"kid": uuid.uuid4().hex[:8]})
    async with platform_session(runtime.sessions) as session, session.begin():
        client = await services.create_client(
            session,
            tenant=tenant,
            name="agency system",
            public_jwk=key.as_dict(private=False),
            scopes=scopes or ALL_SCOPES,
            role=role,
        )
        return ClientKey(client.client_id, tenant.id, key)


def client_assertion(client: ClientKey, audience: str, *, alg: str = "Ed25519", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
    } | overrides
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {"alg": alg, **({"kid": client.key.kid} if client.key.kid else {})}
    return jwt.encode(header, claims, client.key, algorithms=[alg])


def token_form(client: ClientKey, assertion: str, scope: str | None = None) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    if scope is not None:
        form["scope"] = scope
    return form


async def access_token(api: httpx.AsyncClient, client: ClientKey, scope: str | None = None) -> str:
    token_endpoint = f"{api.base_url}/oauth/token"
    response = await api.post("/oauth/token", data=token_form(client, client_assertion(client, token_endpoint), scope))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def forged_envelope(
    runtime: Runtime,
    *,
    sender: uuid.UUID,
    recipient: uuid.UUID,
    envelope_type: EnvelopeType,
    body: Any,
    exchange_id: uuid.UUID | None = None,
    relay: bool = False,
) -> OutgoingEnvelope:
    """A genuine envelope (signed with the sender's real key, encrypted to the recipient's) around any body, as
    another node's software might send it, recorded in the sender's outbox (so its receipt finds it). With `relay`
    the relay publishes it; without, it is marked sent, for a test to hand to the inbox itself."""
    payload = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    async with platform_session(runtime.sessions) as session, session.begin():
        header, token = await sealed_envelope(
            session, runtime.exchange, sender=sender, recipient=recipient, envelope_type=envelope_type, payload=payload
        )
        envelope = OutgoingEnvelope(header.envelope_id, subject_for(recipient, sender, envelope_type), token)
        session.add(
            OutboxEnvelope(
                tenant_id=sender,
                envelope_id=header.envelope_id,
                envelope_type=envelope_type.value,
                recipient_tenant_id=recipient,
                exchange_id=exchange_id,
                subject=envelope.subject,
                token=token,
                next_attempt_at=header.created_at,
                sent_at=None if relay else header.created_at,
            )
        )
    return envelope


async def opened_envelope(runtime: Runtime, token: str, *, sender: uuid.UUID, recipient: uuid.UUID) -> OpenedEnvelope:
    """An envelope this node sent (an outbox row's token), opened with the recipient's real keys as its node would."""
    deps = runtime.exchange
    async with platform_session(runtime.sessions) as session:
        decryption = [
            deps.keyring.private_jwk(k)
            for k in await deps.keyring.usable_tenant_keys(session, recipient, KeyUse.ENCRYPTION)
        ]
        sender_keys = await deps.published.signing_keys(session, sender)
    opened = open_envelope(
        token,
        recipient=recipient,
        decryption_keys=decryption,
        sender_keys=lambda tenant: sender_keys if tenant == sender else [],
        now=deps.clock.now(),
    )
    assert isinstance(opened, OpenedEnvelope), opened
    return opened


def role_for_path(path: str) -> str:
    """Who sends a request to `path`: the role that may use it, so requests get past 403s too."""
    if path.startswith("/api/v1/audit"):
        return Role.DPO
    if path.startswith(("/api/v1/directory/profile", "/api/v1/reports")) or path.endswith("/assignment"):
        return Role.SUPERVISOR
    return Role.SPECIALIST
