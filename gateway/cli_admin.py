"""The command line's administrative commands: organisations, staff, agency systems, key rings and demo data.

They need the database, the key ring, the clock and the audit log, and nothing else of what gateway.app builds for
the service (the web application, the bus, the letter renderer), so `AdminContext` builds only those.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from joserfc.jwk import OKPKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from audit import identity
from audit.events import Action, Actor, Outcome, pseudonym_key
from audit.services import AuditLog
from gateway.cli import CliError
from gateway.db import create_engine, ensure_data_dir, load_master_key
from gateway.settings import Settings
from gateway.urls import tenant_jwks_url
from tenants import admin, services
from tenants.clock import Clock, SystemClock
from tenants.keys import KeyRing, MasterKey
from tenants.models import Role, Scope, Tenant, TenantKind
from tenants.peers import Peer
from tenants.persistence import make_sessionmaker, platform_session
from tenants.schemas import ClientCreated, KeysRotated, TenantCreated, UserCreated


@dataclass(frozen=True, slots=True)
class AdminContext:
    """What an operator's command works with; built as gateway.app.build_runtime builds the same parts."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    keyring: KeyRing
    audit: AuditLog
    master_key: MasterKey


def build_admin_context(settings: Settings) -> AdminContext:
    """Reads the master key (creating it only at the embedded default path, as the service does); makes the engine."""
    ensure_data_dir(settings.paths)
    clock = SystemClock()
    master_key = load_master_key(settings.paths)
    engine = create_engine(settings.database)
    return AdminContext(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        clock=clock,
        keyring=KeyRing(master_key, clock, grace=settings.tokens.key_grace),
        audit=AuditLog(clock, lambda tenant_id: pseudonym_key(master_key, tenant_id)),
        master_key=master_key,
    )


async def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    context = build_admin_context(settings)
    try:
        return await _HANDLERS[(args.command, args.action)](context, args)
    finally:
        await context.engine.dispose()


async def _tenant_create(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    async with platform_session(context.sessions) as session, session.begin():
        tenant = await services.create_tenant(
            session,
            context.keyring,
            slug=args.slug,
            name=args.name,
            kind=args.kind,
            region=args.region,
            time_zone=args.time_zone,
        )
        created = TenantCreated(
            id=tenant.id,
            slug=tenant.slug,
            name=tenant.name,
            kind=tenant.kind,
            jwks_url=tenant_jwks_url(context.settings.server.base_url, tenant.id),
        )
    return _plain(created)


async def _tenant_update(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    async with platform_session(context.sessions) as session, session.begin():
        tenant = await services.set_tenant_time_zone(session, slug=args.slug, time_zone=args.time_zone)
        return {"id": str(tenant.id), "slug": tenant.slug, "time_zone": tenant.time_zone}


def _tenant_status(status: str) -> Callable[[AdminContext, argparse.Namespace], Awaitable[dict[str, Any]]]:
    async def run(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
        async with platform_session(context.sessions) as session, session.begin():
            tenant = await services.set_tenant_status(session, slug=args.slug, status=status)
            return {"id": str(tenant.id), "slug": tenant.slug, "status": tenant.status}

    return run


async def _user_create(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    password = _read_password() if args.password_stdin else None
    async with platform_session(context.sessions) as session, session.begin():
        tenant = await services.tenant_by_slug(session, args.tenant)
        user, one_time = await services.create_user(
            session, tenant=tenant, email=args.email, roles=args.role, password=password
        )
        result = _plain(UserCreated(id=user.id, tenant_id=tenant.id, email=user.email, roles=user.roles))
    if one_time is not None:
        result["one_time_password"] = one_time
    return result


def _read_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CliError("--password-stdin was given but no password arrived on standard input")
    return password


async def _client_create(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    try:
        jwk = json.loads(args.jwk_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read the JWK file {args.jwk_file}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CliError(f"the JWK file {args.jwk_file} is not valid JSON (line {exc.lineno})") from exc
    async with platform_session(context.sessions) as session, session.begin():
        tenant = await services.tenant_by_slug(session, args.tenant)
        client = await services.create_client(
            session, tenant=tenant, name=args.name, public_jwk=jwk, scopes=args.scopes.split(), role=args.role
        )
        return _plain(
            ClientCreated(client_id=client.client_id, tenant_id=tenant.id, scopes=client.scopes, role=client.role)
        )


_OPERATOR = Actor(kind="operator", id=None, tenant_id=None, role=None)


def _operator_did(
    context: AdminContext,
    session: AsyncSession,
    action: Action,
    *,
    log_tenant_id: uuid.UUID | None,
    resource_type: str,
    resource_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """What an operator's command did, in the trail of the tenant it touched (None: the platform's own)."""
    context.audit.append(
        session,
        action=action,
        outcome=Outcome.SUCCESS,
        actor=_OPERATOR,
        log_tenant_id=log_tenant_id,
        resource_type=resource_type,
        resource_id=resource_id,
        extra=extra,
    )


def _user_change(action: str) -> Callable[[AdminContext, argparse.Namespace], Awaitable[dict[str, Any]]]:
    async def run(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
        clock = context.clock
        async with platform_session(context.sessions) as session, session.begin():
            tenant = await services.tenant_by_slug(session, args.tenant)
            user = await admin.user_by_email(session, tenant_id=tenant.id, email=args.email)
            if action == "reset-second-factor":
                await admin.reset_second_factor_by_operator(session, clock, user=user)
                audited = Action.TENANTS_USER_SECOND_FACTOR_RESET
            else:
                await admin.set_active_by_operator(session, clock, user=user, active=action == "activate")
                audited = Action.TENANTS_USER_REACTIVATE if action == "activate" else Action.TENANTS_USER_DEACTIVATE
            _operator_did(
                context,
                session,
                audited,
                log_tenant_id=tenant.id,
                resource_type="user",
                resource_id=str(user.id),
            )
            return {
                "id": str(user.id),
                "tenant_id": str(tenant.id),
                "email": user.email,
                "active": user.active,
                "second_factor_enrolled": user.totp_enabled,
            }

    return run


async def _client_revoke(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    async with platform_session(context.sessions) as session, session.begin():
        tenant = await services.tenant_by_slug(session, args.tenant)
        client = await admin.client_by_id(session, tenant_id=tenant.id, client_id=args.client_id)
        admin.revoke_client_by_operator(context.clock, client=client)
        _operator_did(
            context,
            session,
            Action.TENANTS_CLIENT_REVOKE,
            log_tenant_id=tenant.id,
            resource_type="api_client",
            resource_id=client.client_id,
        )
        revoked_at = client.revoked_at.isoformat() if client.revoked_at else None
        return {"client_id": client.client_id, "tenant_id": str(tenant.id), "revoked_at": revoked_at}


async def _keys_rotate(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    async with platform_session(context.sessions) as session, session.begin():
        rotated = await services.rotate_keys(session, context.keyring, slug=args.tenant)
        context.audit.append(
            session,
            action=Action.TENANTS_KEYS_ROTATE,
            outcome=Outcome.SUCCESS,
            actor=Actor(kind="operator", id=None, tenant_id=None, role=None),
            log_tenant_id=rotated.tenant_id,
            resource_type="key_ring",
            resource_id=str(rotated.tenant_id),
            extra={"enc_kid": rotated.enc_kid, "sig_kid": rotated.sig_kid},
        )
    return _plain(KeysRotated(tenant_id=rotated.tenant_id, enc_kid=rotated.enc_kid, sig_kid=rotated.sig_kid))


def _configured_peer(context: AdminContext, name: str) -> Peer:
    peer = context.settings.peers.named(name)
    if peer is None:
        raise CliError(f"no peer named {name!r} in the peers file (CASEBRIDGE_PEERS)")
    return peer


# gateway.peering reads held envelopes (the exchange area) and tenants.peer_keys loads the HTTP client, which no
# other admin command needs: both are imported where they are used.


async def _peers_status(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from gateway.peering import peers_report

    return await peers_report(context.sessions, context.settings.peers.peers)


async def _peers_refresh(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    """Fetch now; envelopes held for a peer are applied by the peers Worker of the running service at its next round."""
    from gateway.peering import peers_report
    from gateway.peering import refresh as refresh_one

    peers = [_configured_peer(context, args.name)] if args.name else list(context.settings.peers.peers)
    if not peers:
        raise CliError("no peers are configured (CASEBRIDGE_PEERS)")
    for peer in peers:
        await refresh_one(context.sessions, context.clock, peer)
    return await peers_report(context.sessions, context.settings.peers.peers)


async def _peers_accept_keys(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from tenants.peer_keys import accept_keys

    peer = _configured_peer(context, args.name)
    async with platform_session(context.sessions) as session, session.begin():
        kids = await accept_keys(session, peer.name, now=context.clock.now())
        if not kids:
            raise CliError(f"the peer {peer.name!r} lists no key waiting to be accepted")
        _operator_did(
            context,
            session,
            Action.TENANTS_PEER_KEYS_ACCEPT,
            log_tenant_id=None,
            resource_type="peer",
            resource_id=peer.name,
            extra={"kids": kids},
        )
    return {"peer": peer.name, "accepted": kids}


async def _audit_rename_origin(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    """docs/audit.md, "Renaming the log": the next checkpoint is signed under the new name; older ones keep theirs."""
    async with platform_session(context.sessions) as session, session.begin():
        previous, adopted = await identity.rename(session, args.to, at=context.clock.now())
        _operator_did(
            context,
            session,
            Action.AUDIT_LOG_RENAME,
            log_tenant_id=None,
            resource_type="audit_log",
            extra={"from": previous.origin, "to": adopted.origin, "from_size": adopted.from_size},
        )
    return {"origin": adopted.origin, "previous": previous.origin, "from_size": adopted.from_size}


# Subjects indexed per transaction: each needs its data key opened; short transactions keep writers waiting little.
_INDEX_BATCH = 500


async def _subjects_index(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    """docs/operations.md, "Finding people by name": fill the lookup digests of subjects recorded before them."""
    # The cases area's operations load the rest of the exchange, which no other admin command needs.
    from exchange.cases.datakeys import DataKeys
    from exchange.cases.lookup import PersonIndex, lookup_key_purpose
    from exchange.cases.services import index_subjects

    seen = indexed = 0
    after = None
    datakeys = DataKeys(context.keyring)
    persons = PersonIndex(lambda tenant_id: context.master_key.derive(lookup_key_purpose(tenant_id)))
    while True:
        async with platform_session(context.sessions) as session, session.begin():
            batch = await index_subjects(session, datakeys, persons, after=after, limit=_INDEX_BATCH)
            # Indexing opens each subject's sealed details: each tenant's trail records it, with counts only.
            for tenant_id, (tenant_seen, tenant_indexed) in batch.by_tenant.items():
                _operator_did(
                    context,
                    session,
                    Action.EXCHANGE_SUBJECTS_INDEX,
                    log_tenant_id=tenant_id,
                    resource_type="subject",
                    extra={"subjects": tenant_seen, "indexed": tenant_indexed},
                )
        seen += batch.seen
        indexed += sum(i for _, i in batch.by_tenant.values())
        after = batch.last_id
        if batch.seen < _INDEX_BATCH:
            return {"subjects": seen, "indexed": indexed, "without_digest": seen - indexed}


_DEMO_TENANTS = (
    ("semya", "Центр социальной помощи семье и детям «Семья»", TenantKind.SOCIAL_CENTRE),
    ("opeka", "Отдел опеки и попечительства", TenantKind.GUARDIANSHIP_BODY),
    ("kdn", "Комиссия по делам несовершеннолетних и защите их прав", TenantKind.JUVENILE_COMMISSION),
)
_DEMO_REGION = "Центральный район"
_DEMO_ROLES = (Role.SPECIALIST, Role.INTAKE, Role.DPO, Role.TENANT_ADMIN)


async def _demo_seed(context: AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    """Three agencies, four people each, one API client each. Passwords go to the terminal only."""
    async with platform_session(context.sessions) as session, session.begin():
        if await session.scalar(select(Tenant.id).limit(1)) is not None:
            if args.if_empty:
                return {"seeded": False, "reason": "tenants already exist"}
            raise CliError("the database already has tenants; demo data goes only into an empty database")
        seeded = [await _seed_tenant(context, session, *spec) for spec in _DEMO_TENANTS]
    return {"seeded": True, "sign_in": f"{context.settings.server.base_url}/login", "tenants": seeded}


async def _seed_tenant(
    context: AdminContext, session: AsyncSession, slug: str, name: str, kind: TenantKind
) -> dict[str, Any]:
    tenant = await services.create_tenant(
        session, context.keyring, slug=slug, name=name, kind=kind, region=_DEMO_REGION
    )
    users = []
    for role in _DEMO_ROLES:
        user, one_time = await services.create_user(
            session, tenant=tenant, email=f"{role.value.replace('_', '-')}@{slug}.demo", roles=[role], password=None
        )
        users.append({"email": user.email, "roles": user.roles, "one_time_password": one_time})
    private = OKPKey.generate_key("Ed25519", {"kid": f"{slug}-demo-client"})
    client = await services.create_client(
        session,
        tenant=tenant,
        name=f"{slug} demo system",
        public_jwk=private.as_dict(private=False),
        scopes=[s.value for s in Scope],
        role=Role.SPECIALIST,
    )
    key_file = _write_private_jwk(context.settings.paths.data_dir / "demo" / f"{slug}-client.jwk", private)
    return {
        "id": str(tenant.id),
        "slug": slug,
        "name": name,
        "kind": kind.value,
        "users": users,
        "client": {"client_id": client.client_id, "private_jwk_file": str(key_file)},
    }


def _write_private_jwk(path: Path, key: OKPKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(key.as_dict(private=True), handle)
    return path


def _plain(value: msgspec.Struct) -> dict[str, Any]:
    return msgspec.to_builtins(value)  # type: ignore[no-any-return]


_HANDLERS: dict[tuple[str, str], Callable[[AdminContext, argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    ("tenant", "create"): _tenant_create,
    ("audit", "rename-origin"): _audit_rename_origin,
    ("tenant", "update"): _tenant_update,
    ("tenant", "suspend"): _tenant_status("suspended"),
    ("tenant", "activate"): _tenant_status("active"),
    ("user", "create"): _user_create,
    ("client", "create"): _client_create,
    ("client", "revoke"): _client_revoke,
    ("user", "deactivate"): _user_change("deactivate"),
    ("user", "activate"): _user_change("activate"),
    ("user", "reset-second-factor"): _user_change("reset-second-factor"),
    ("keys", "rotate"): _keys_rotate,
    ("peers", "status"): _peers_status,
    ("peers", "refresh"): _peers_refresh,
    ("peers", "accept-keys"): _peers_accept_keys,
    ("demo", "seed"): _demo_seed,
    ("subjects", "index"): _subjects_index,
}
