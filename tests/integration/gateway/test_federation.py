"""A hub (two agencies) and an agency's own node (one agency) on loopback, each with its own database and master key.

The nodes know each other only through CASEBRIDGE_PEERS (pinned HTTPS: agencies and keys fetched from the peer) and
exchange envelopes over the hub's NATS and the node's leaf NATS (deploy/nats/hub.conf and leaf.conf, real servers):
the referral loop both ways, consent withdrawal and access receipts cross the federation, each node co-signs the
other's checkpoints, and the hub, with its database and master key, can open nothing addressed to the node's agency.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit.checkpoint import cosigner_name
from audit.cosignature import Cosigned, verify_cosignature
from audit.models import AuditCheckpoint, AuditCosignature
from exchange.transport.envelopes import OpenedEnvelope, RejectedEnvelope, RejectReason, open_envelope
from exchange.transport.models import DeadLetter, HeldEnvelope, OutboxEnvelope
from gateway.app import build_runtime, create_app
from gateway.bus import ENVELOPE_STREAM
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants.models import KeyUse, Role, Scope, Tenant, TenantKey, TenantKind
from tenants.peers import Peer
from tenants.persistence import platform_session
from tenants.pinning import pinned_client
from tests.environment import settings_for
from tests.factories import access_token, make_client, make_tenant
from tests.integration.helpers.agencies import Agency, open_case, referral_body, status_is
from tests.integration.helpers.leaf import HUB_API, hub_and_leaf
from tests.integration.helpers.nodes import Certificate, peers_file, served, throwaway_certificate
from tests.polling import eventually
from tests.processes import free_port

WITHIN_S = 60.0  # what crosses the federation: an envelope, a peer refresh, a checkpoint and its co-signature
EVENTS = "/api/v1/audit/events"


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    runtime: Runtime
    peer: Peer

    async def tenant(self, slug: str) -> Tenant:
        async with platform_session(self.runtime.sessions) as session:
            return (await session.scalars(select(Tenant).where(Tenant.slug == slug, Tenant.peer.is_(None)))).one()

    async def agency(self, api: Any, slug: str, role: str, scopes: list[str] | None = None) -> Agency:
        """An API client of the agency `slug` hosted here, in `role`, calling this node."""
        client = await make_client(self.runtime, await self.tenant(slug), role=role, scopes=scopes)
        return Agency(api, client, await access_token(api, client))

    async def peer_agencies(self) -> set[str]:
        async with platform_session(self.runtime.sessions) as session:
            return set(await session.scalars(select(Tenant.slug).where(Tenant.peer.is_not(None))))


async def _create_agencies(settings: Settings, *agencies: tuple[str, str]) -> list[uuid.UUID]:
    """The agencies a node hosts, made in its database with its master key before it starts: a peer accepts the
    keys it finds at its first fetch (trust on configuration), so they must be there by then."""
    runtime = build_runtime(settings, workers=())
    try:
        return [(await make_tenant(runtime, slug, kind=kind)).id for slug, kind in agencies]
    finally:
        await runtime.stop()


@pytest.fixture
async def federation(tmp_path: Path, _migrated_sqlite: Path) -> AsyncIterator[tuple[Node, Node]]:
    """The hub (semya and opeka) and the agency's node (kdn), served over HTTPS, each the other's peer."""
    names = ("hub", "node")
    ports = {name: free_port() for name in names}
    certificates: dict[str, Certificate] = {name: throwaway_certificate(tmp_path / "tls", name=name) for name in names}
    peers = {name: Peer(name, f"https://127.0.0.1:{ports[name]}", certificates[name].pin) for name in names}
    other = {"hub": "node", "node": "hub"}
    base: dict[str, dict[str, str]] = {}
    for name in names:
        database = tmp_path / name / "casebridge.db"
        database.parent.mkdir()
        shutil.copyfile(_migrated_sqlite, database)
        base[name] = {
            "database_url": f"sqlite+aiosqlite:///{database}",
            "CASEBRIDGE_BASE_URL": peers[name].url,
            "CASEBRIDGE_PEERS": str(peers_file(tmp_path / name / "peers.toml", peers[other[name]])),
            "CASEBRIDGE_PEER_REFRESH_SECONDS": "1",
        }

    def settings(name: str, nats_url: str | None, **extra: str) -> Settings:
        env = dict(base[name])
        return settings_for(env.pop("database_url"), tmp_path / name / "var", nats_url, **env, **extra)

    await _create_agencies(
        settings("hub", None), ("semya", TenantKind.SOCIAL_CENTRE), ("opeka", TenantKind.GUARDIANSHIP_BODY)
    )
    (kdn,) = await _create_agencies(settings("node", None), ("kdn", TenantKind.JUVENILE_COMMISSION))
    async with hub_and_leaf(tmp_path / "nats", kdn) as bus, contextlib.AsyncExitStack() as stack:
        apps = {
            "hub": create_app(settings("hub", bus.hub_url, CASEBRIDGE_NATS_LEAF_TENANTS=str(kdn))),
            "node": create_app(
                settings("node", bus.leaf_url, CASEBRIDGE_NATS_HUB_API=HUB_API, CASEBRIDGE_NATS_HOSTED_TENANTS=str(kdn))
            ),
        }
        for name, app in apps.items():
            await stack.enter_async_context(served(app, certificate=certificates[name], port=ports[name]))
        hub, node = (Node(name, apps[name].state.runtime, peers[name]) for name in names)
        # Each has fetched the other's agencies and keys over the pinned connection.
        await eventually(lambda: _has_peer_agencies(hub, {"kdn"}), within=WITHIN_S)
        await eventually(lambda: _has_peer_agencies(node, {"semya", "opeka"}), within=WITHIN_S)
        yield hub, node


async def _has_peer_agencies(node: Node, slugs: set[str]) -> bool:
    return await node.peer_agencies() == slugs


async def _loop(sender: Agency, recipient: Agency) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A consented referral from `sender` to `recipient` on the other node, accepted and completed there; the case,
    the consent and the referral's id once the sender has the outcome."""
    case, consent = await open_case(sender, recipient)
    sent = await sender.post("/api/v1/referrals", referral_body(case, recipient.id, ["identity", "family"]))
    assert sent.status_code == 201, sent.text
    referral_id: str = sent.json()["id"]
    await eventually(lambda: status_is(recipient, referral_id, "received"), within=WITHIN_S)
    await eventually(lambda: status_is(sender, referral_id, "received"), within=WITHIN_S)  # the receipt came back
    outcome = {"result": "resolved", "note": "Назначен опекун"}
    for step in ({"to": "accepted"}, {"to": "in-progress"}, {"to": "completed", "outcome": outcome}):
        moved = await recipient.post(f"/api/v1/referrals/{referral_id}/transition", step)
        assert moved.status_code == 200, moved.text
    await eventually(lambda: status_is(sender, referral_id, "completed"), within=WITHIN_S)
    done = (await sender.get(f"/api/v1/referrals/{referral_id}")).json()
    assert done["outcome"] == outcome
    assert [t["status"] for t in done["timeline"]] == ["requested", "received", "accepted", "in-progress", "completed"]
    return case, consent, referral_id


async def _read_by(dpo: Agency, partner: Agency, referral_id: str) -> bool:
    """The sender's DPO sees, in its own agency's trail, the partner's read of what it shared (an access receipt)."""
    response = await dpo.get(EVENTS, params={"action": "exchange:referral:read", "resource_id": referral_id})
    assert response.status_code == 200, response.text
    return any(event["actor"]["tenant"] == str(partner.id) for event in response.json()["items"])


async def _restricted(recipient: Agency, referral_id: str) -> bool:
    copy = (await recipient.get(f"/api/v1/referrals/{referral_id}")).json()
    return bool(copy["restricted"]) and copy["subjects"] == [{"id": copy["subjects"][0]["id"], "ref": "child 1"}]


async def _published_signing_keys(peer: Peer, tenant: uuid.UUID) -> list[Ed25519PublicKey]:
    """An agency's signing keys as its own node publishes them (its JWKS URL), fetched over the pinned client."""
    async with pinned_client(peer) as client:
        reply = await client.get(f"/.well-known/tenants/{tenant}/jwks.json")
    assert reply.status_code == 200, reply.text
    keys = [OKPKey.import_key(jwk).get_op_key("verify") for jwk in reply.json()["keys"] if jwk["use"] == "sig"]
    return [key for key in keys if isinstance(key, Ed25519PublicKey)]


async def _cosigned_by(log: Node, witness: Node, agencies: list[uuid.UUID]) -> dict[uuid.UUID, Cosigned] | None:
    """For each agency the witness hosts, its co-signature of one of `log`'s signed checkpoints, kept on `log` and
    verified with the agency's keys as the witness publishes them; None until every agency has one."""
    found: dict[uuid.UUID, Cosigned] = {}
    async with platform_session(log.runtime.sessions) as session:
        signed = {size for size in await session.scalars(select(AuditCheckpoint.size))}
        rows = list(
            await session.scalars(select(AuditCosignature).where(AuditCosignature.cosigner_tenant_id.in_(agencies)))
        )
    for row in rows:
        if row.size not in signed:
            continue
        for key in await _published_signing_keys(witness.peer, row.cosigner_tenant_id):
            checked = verify_cosignature(row.note, name=cosigner_name(row.cosigner_tenant_id), public_key=key)
            if isinstance(checked, Cosigned):
                assert (checked.checkpoint.size, checked.checkpoint.root) == (row.size, row.root)
                found[row.cosigner_tenant_id] = checked
    return found if set(found) == set(agencies) else None


def _kid(token: str) -> str:
    header = token.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


async def _hub_tokens_for(hub: Node, recipient: uuid.UUID) -> list[str]:
    """Every envelope addressed to `recipient` that the hub stored (its database) or relayed (its stream)."""
    async with platform_session(hub.runtime.sessions) as session:
        tokens = list(
            await session.scalars(select(OutboxEnvelope.token).where(OutboxEnvelope.recipient_tenant_id == recipient))
        )
        tokens += await session.scalars(select(HeldEnvelope.token).where(HeldEnvelope.recipient_tenant_id == recipient))
        tokens += await session.scalars(select(DeadLetter.token).where(DeadLetter.recipient_tenant_id == recipient))
    js = hub.runtime.bus.js
    state = (await js.stream_info(ENVELOPE_STREAM)).state
    for sequence in range(state.first_seq, state.last_seq + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            message = await js.get_msg(ENVELOPE_STREAM, sequence)
            if message.subject.startswith(f"cb.v2.{recipient}."):
                tokens.append(message.data.decode("ascii"))
    return tokens


async def _hub_decryption_keys(hub: Node) -> list[OKPKey]:
    """Every encryption key the hub's master key unwraps, whichever agency it is for."""
    async with platform_session(hub.runtime.sessions) as session:
        rows = list(await session.scalars(select(TenantKey).where(TenantKey.use == KeyUse.ENCRYPTION.value)))
    return [hub.runtime.keyring.private_jwk(row) for row in rows]


def _open_with(token: str, key: OKPKey, recipient: uuid.UUID, hub: Node) -> OpenedEnvelope | RejectedEnvelope:
    """`token` opened with `key` as if it were the key the token names (the hub's best attempt)."""
    relabelled = OKPKey.import_key({**key.as_dict(private=True), "kid": _kid(token)})
    return open_envelope(
        token,
        recipient=recipient,
        decryption_keys=[relabelled],
        sender_keys=lambda _: [],
        now=hub.runtime.clock.now(),
    )


async def test_two_nodes_exchange_over_the_federation_and_the_hub_cannot_read_the_nodes_envelopes(
    federation: tuple[Node, Node],
) -> None:
    hub, node = federation
    async with pinned_client(hub.peer) as hub_api, pinned_client(node.peer) as node_api:
        semya = await hub.agency(hub_api, "semya", Role.SPECIALIST)
        opeka = await hub.agency(hub_api, "opeka", Role.INTAKE)
        kdn_intake = await node.agency(node_api, "kdn", Role.INTAKE)
        kdn = await node.agency(node_api, "kdn", Role.SPECIALIST)
        semya_dpo = await hub.agency(hub_api, "semya", Role.DPO, [Scope.AUDIT_READ])
        kdn_dpo = await node.agency(node_api, "kdn", Role.DPO, [Scope.AUDIT_READ])

        # The whole loop, from a hub agency to the node's and back the other way.
        _, consent, to_node = await _loop(semya, kdn_intake)
        _, _, to_hub = await _loop(kdn, opeka)

        # Each sender's DPO sees the partner's reads on the other node, from the access receipts.
        await eventually(lambda: _read_by(semya_dpo, kdn_intake, to_node), within=WITHIN_S)
        await eventually(lambda: _read_by(kdn_dpo, opeka, to_hub), within=WITHIN_S)

        # The parent withdraws consent at the hub: the node's copy keeps no personal data.
        withdrawn = await semya.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": "Мать отозвала согласие"})
        assert withdrawn.status_code == 200, withdrawn.text
        await eventually(lambda: _restricted(kdn_intake, to_node), within=WITHIN_S)

    # Each node's checkpoints carry the co-signatures of the other node's agencies, verifying with their own keys.
    hub_agencies = [semya.id, opeka.id]
    assert await eventually(lambda: _cosigned_by(hub, node, [kdn.id]), within=WITHIN_S)
    assert await eventually(lambda: _cosigned_by(node, hub, hub_agencies), within=WITHIN_S)

    # Zero knowledge: nothing addressed to the node's agency opens with any key the hub's master key unwraps.
    keys = await _hub_decryption_keys(hub)
    assert keys
    tokens = await _hub_tokens_for(hub, kdn.id)
    assert len(tokens) >= 6  # the referral, its receipt's answer, the moves, the withdrawal: in the outbox and stream
    for token in tokens:
        for key in keys:
            opened = _open_with(token, key, kdn.id, hub)
            assert isinstance(opened, RejectedEnvelope), "the hub opened an envelope addressed to the node's agency"
            assert opened.reason is RejectReason.DECRYPTION_FAILED
    # The same attempt with the key a hub agency's envelope names gets past decryption (only the sender's keys,
    # withheld here, stop it): the refusals above are the keys', not the attempt's.
    async with platform_session(hub.runtime.sessions) as session:
        opeka_keys = {
            row.kid: row
            for row in await session.scalars(
                select(TenantKey).where(TenantKey.tenant_id == opeka.id, TenantKey.use == KeyUse.ENCRYPTION.value)
            )
        }
    to_opeka = [t for t in await _hub_tokens_for(hub, opeka.id) if _kid(t) in opeka_keys]
    assert to_opeka
    control = _open_with(to_opeka[0], hub.runtime.keyring.private_jwk(opeka_keys[_kid(to_opeka[0])]), opeka.id, hub)
    assert isinstance(control, RejectedEnvelope)
    assert control.reason is RejectReason.UNKNOWN_SENDER_KEY
