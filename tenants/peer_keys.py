"""Peer nodes' agencies and keys: fetched through the pinned client, kept in the directory and in `peer_key`.

A refresh reads the peer's node description and each agency's JWKS. It adds or updates a directory row for each
agency (marked as hosted on the peer), and records the keys. The first successful fetch after a peer is configured
accepts the keys it finds; a key seen for the first time later (or a kid whose key material changed) is recorded
unaccepted, and the peer is `keys_changed` until an operator accepts the keys. Only accepted keys seal or verify.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.errors import NotFound
from tenants.models import PeerKey, PeerNode, Tenant, TenantStatus
from tenants.peers import Peer
from tenants.pinning import PinMismatch
from tenants.schemas import NodeAgency, NodeDescription

log = logging.getLogger("casebridge.peers")

NODE_PATH = "/.well-known/casebridge-node"
_JWKS_PATH_PREFIX = "/.well-known/tenants/"
_KEY_USES = {"enc": "enc", "sig": "sig"}  # JWK "use" -> peer_key.use, as published_key stores them
_MAX_DOCUMENT_BYTES = 1024 * 1024


class PeerState(StrEnum):
    """Whether a peer's envelopes are applied. Stable values: shown in status and health, counted in metrics."""

    NEW = "new"  # configured, never fetched: nothing of it is known
    TRUSTED = "trusted"  # the last refresh worked and every key it lists is accepted
    UNREACHABLE = "unreachable"  # the last refresh failed (`problem` says why); its envelopes wait
    KEYS_CHANGED = "keys_changed"  # it lists a key not accepted yet; its envelopes wait for accept-keys


class PeerProblem(StrEnum):
    """Why the last refresh did not leave the peer trusted."""

    PIN_MISMATCH = "pin_mismatch"
    UNREACHABLE = "unreachable"
    BAD_RESPONSE = "bad_response"
    NEW_KEYS = "new_keys"


class _RefreshFailed(Exception):
    def __init__(self, problem: PeerProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class FetchedAgency:
    agency: NodeAgency
    keys: list[dict[str, Any]]


async def fetch(client: httpx.AsyncClient) -> tuple[NodeDescription, list[FetchedAgency]]:
    """The peer's description and each agency's public keys; _RefreshFailed says why not."""
    description = msgspec.convert(await _get_json(client, NODE_PATH), NodeDescription, strict=False)
    fetched = []
    for agency in description.tenants:
        path = urlsplit(agency.jwks_url).path
        if not path.startswith(_JWKS_PATH_PREFIX):
            raise _RefreshFailed(PeerProblem.BAD_RESPONSE)
        document = await _get_json(client, path)
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise _RefreshFailed(PeerProblem.BAD_RESPONSE)
        fetched.append(FetchedAgency(agency, [k for k in keys if _usable_public_key(k)]))
    return description, fetched


async def _get_json(client: httpx.AsyncClient, path: str) -> Any:
    try:
        response = await client.get(path, headers={"Accept": "application/json"})
    except PinMismatch:
        raise _RefreshFailed(PeerProblem.PIN_MISMATCH) from None
    except httpx.HTTPError:
        raise _RefreshFailed(PeerProblem.UNREACHABLE) from None
    if response.status_code != 200 or len(response.content) > _MAX_DOCUMENT_BYTES:
        raise _RefreshFailed(PeerProblem.UNREACHABLE)
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        raise _RefreshFailed(PeerProblem.BAD_RESPONSE) from None


def _usable_public_key(jwk: Any) -> bool:
    """An OKP public key with a kid and a use: what a casebridge tenant publishes. A private member is refused."""
    return (
        isinstance(jwk, dict)
        and jwk.get("kty") == "OKP"
        and jwk.get("use") in _KEY_USES
        and isinstance(jwk.get("kid"), str)
        and 0 < len(jwk["kid"]) <= 64
        and "d" not in jwk
    )


@dataclass(frozen=True, slots=True)
class RefreshResult:
    name: str
    state: PeerState
    problem: PeerProblem | None
    agencies: int
    new_keys: int
    slug_collisions: list[str]


async def refresh_peer(
    session: AsyncSession, peer: Peer, client: httpx.AsyncClient, *, now: dt.datetime
) -> RefreshResult:
    """Fetch the peer and record what it says, in the caller's transaction; a failed fetch changes only its state.

    The fetch comes first, so no statement (and on SQLite no lock) waits on the network.
    """
    try:
        description, fetched = await fetch(client)
        failure = None
    except (_RefreshFailed, msgspec.ValidationError) as exc:
        failure = exc
    node = await _node(session, peer.name)
    if failure is not None:
        problem = failure.problem if isinstance(failure, _RefreshFailed) else PeerProblem.BAD_RESPONSE
        log.warning("peer refresh failed: %s", problem.value)
        node.state, node.problem, node.checked_at = PeerState.UNREACHABLE.value, problem.value, now
        return RefreshResult(peer.name, PeerState.UNREACHABLE, problem, 0, 0, list(node.slug_collisions))
    first = node.fetched_at is None
    collisions, listed, new_keys = [], set(), 0
    for item in fetched:
        tenant = await _directory_row(session, peer, item.agency)
        if tenant is None:
            collisions.append(item.agency.slug)
            continue
        listed.add(tenant.id)
        new_keys += await _record_keys(session, peer, tenant.id, item.keys, accept=first, now=now)
    for gone in await session.scalars(select(Tenant).where(Tenant.peer == peer.name, Tenant.id.not_in(listed))):
        gone.status = TenantStatus.SUSPENDED.value  # the peer no longer hosts it: no referrals to it
        await _record_keys(session, peer, gone.id, [], accept=False, now=now)
    pending = await pending_keys(session, peer.name)
    state = PeerState.KEYS_CHANGED if pending else PeerState.TRUSTED
    node.state, node.problem = state.value, (PeerProblem.NEW_KEYS.value if pending else None)
    node.node_name, node.slug_collisions = description.name[:255], sorted(collisions)
    node.checked_at = node.fetched_at = now
    return RefreshResult(
        peer.name, state, PeerProblem.NEW_KEYS if pending else None, len(listed), new_keys, sorted(collisions)
    )


async def _node(session: AsyncSession, name: str) -> PeerNode:
    node = await session.scalar(select(PeerNode).where(PeerNode.name == name))
    if node is None:
        node = PeerNode(name=name, state=PeerState.NEW.value, slug_collisions=[])
        session.add(node)
        await session.flush()
    return node


async def _directory_row(session: AsyncSession, peer: Peer, agency: NodeAgency) -> Tenant | None:
    """The agency's directory row, added or brought up to date; None when its id or slug is a local agency's or
    another peer's (reported, never overwritten)."""
    tenant = await session.scalar(select(Tenant).where(Tenant.id == agency.id))
    if tenant is not None and tenant.peer != peer.name:
        return None
    same_slug = await session.scalar(select(Tenant.id).where(Tenant.slug == agency.slug, Tenant.id != agency.id))
    if same_slug is not None:
        return None
    if tenant is None:
        tenant = Tenant(id=agency.id, slug=agency.slug, peer=peer.name, contacts={})
        session.add(tenant)
    tenant.slug, tenant.name, tenant.kind, tenant.region = agency.slug, agency.name, agency.kind, agency.region
    tenant.service_profile = agency.service_profile
    tenant.status = TenantStatus.ACTIVE.value
    tenant.refresh_search_keys()
    await session.flush()
    return tenant


async def _record_keys(
    session: AsyncSession,
    peer: Peer,
    tenant_id: uuid.UUID,
    keys: list[dict[str, Any]],
    *,
    accept: bool,
    now: dt.datetime,
) -> int:
    """Record the agency's listed keys; how many were not seen before (or changed under the same kid)."""
    known = {row.kid: row for row in await session.scalars(select(PeerKey).where(PeerKey.owner_tenant_id == tenant_id))}
    new = 0
    for jwk in keys:
        row = known.pop(jwk["kid"], None)
        if row is not None and row.public_jwk == jwk and row.use == jwk["use"]:
            row.withdrawn_at = None
            continue
        new += 1
        if row is None:
            row = PeerKey(peer=peer.name, owner_tenant_id=tenant_id, kid=jwk["kid"])
            session.add(row)
        row.use, row.public_jwk, row.withdrawn_at = _KEY_USES[jwk["use"]], jwk, None
        row.accepted_at = now if accept else None
    for row in known.values():
        if row.withdrawn_at is None:
            row.withdrawn_at = now
    await session.flush()
    return new


async def pending_keys(session: AsyncSession, name: str) -> list[PeerKey]:
    """The peer's listed keys no one has accepted yet."""
    rows = await session.scalars(
        select(PeerKey).where(PeerKey.peer == name, PeerKey.accepted_at.is_(None), PeerKey.withdrawn_at.is_(None))
    )
    return list(rows)


async def accept_keys(session: AsyncSession, name: str, *, now: dt.datetime) -> list[str]:
    """Accept the peer's pending keys (the operator checked the change with the peer); their kids. NotFound when the
    peer was never fetched, and an empty list when nothing waits."""
    node = await session.scalar(select(PeerNode).where(PeerNode.name == name))
    if node is None or node.fetched_at is None:
        raise NotFound(f"No keys of the peer {name!r} have been fetched yet; run 'casebridge peers refresh' first.")
    pending = await pending_keys(session, name)
    for key in pending:
        key.accepted_at = now
    if node.state == PeerState.KEYS_CHANGED:
        node.state, node.problem = PeerState.TRUSTED.value, None
    return sorted(key.kid for key in pending)


async def peer_states(session: AsyncSession) -> dict[str, PeerNode]:
    return {node.name: node for node in await session.scalars(select(PeerNode))}


async def peer_of_tenants(session: AsyncSession, tenant_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Which of these tenants are a peer's, and which peer's."""
    if not tenant_ids:
        return {}
    rows = await session.execute(
        select(Tenant.id, Tenant.peer).where(Tenant.id.in_(tenant_ids), Tenant.peer.is_not(None))
    )
    return {tenant_id: peer for tenant_id, peer in rows.all() if peer is not None}
