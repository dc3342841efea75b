"""Agencies' nodes as witnesses: each checks a published checkpoint and co-signs it with its own key.

A witness co-signs a checkpoint only when the log's signature on it verifies and the tree it describes extends the
last checkpoint this agency co-signed (an RFC 6962 consistency proof, verified here). So the operator cannot show
one history to one agency and another to the next: two co-signatures of one size with different roots are proof
of it, and `audit verify` reports them. A refusal lands in the agency's own audit trail. Co-signatures are C2SP
``cosignature/v1`` (audit/cosignature.py), which standard witness tooling checks.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit import checkpoint as notes
from audit.checkpoint import cosigner_name
from audit.cosignature import cosignature
from audit.events import Action, Actor, Outcome
from audit.identity import load_names
from audit.merkle import consistency_proof, root_hash, verify_consistency
from audit.models import AuditCosignature, AuditSeal
from audit.services import AuditLog
from audit.verify import checkpoint_keys
from tenants.clock import Clock
from tenants.keys import KeyRing
from tenants.models import KeyUse, Tenant, TenantStatus
from tenants.persistence import platform_session

__all__ = ["CosignOutcome", "Witness", "cosignatures_at", "hosted_agencies", "one_at_a_time"]

logger = logging.getLogger(__name__)

Status = Literal["cosigned", "seen", "refused"]


@dataclass(frozen=True, slots=True)
class CosignOutcome:
    tenant_id: uuid.UUID
    size: int
    status: Status  # seen: this agency already co-signed this checkpoint or a later one
    detail: str = ""


class Witness:
    """Co-signs checkpoints for the agencies hosted on this node (``cosigners``; None: every active agency)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keyring: KeyRing,
        clock: Clock,
        audit: AuditLog,
        *,
        cosigners: Sequence[str] | None = None,
    ) -> None:
        self._sessions = sessions
        self._keyring = keyring
        self._clock = clock
        self._audit = audit
        self._cosigners = None if cosigners is None else frozenset(cosigners)

    async def witness(self, note_text: str) -> list[CosignOutcome]:
        """Check one published checkpoint note and co-sign it for every hosted agency that has not yet."""
        async with platform_session(self._sessions) as session, session.begin():
            await one_at_a_time(session, _COSIGN_LOCK)
            checkpoint = await self._log_signed(session, note_text)
            tenants = await hosted_agencies(session, self._cosigners)
            if checkpoint is None:
                for tenant in tenants:
                    self._refused(session, tenant, 0, "the checkpoint is not signed by the log's key")
                return [CosignOutcome(t.id, 0, "refused", "bad log signature") for t in tenants]
            leaves: list[bytes] | None = None
            outcomes = []
            for tenant in tenants:
                last = await session.scalar(
                    select(AuditCosignature)
                    .where(AuditCosignature.cosigner_tenant_id == tenant.id)
                    .order_by(AuditCosignature.size.desc())
                    .limit(1)
                )
                if last is not None and last.size >= checkpoint.size:
                    outcomes.append(await self._already(session, tenant, checkpoint))
                    continue
                if leaves is None:
                    leaves = await _leaf_hashes(session, checkpoint.size)
                problem = _inconsistency(leaves, checkpoint, last)
                if problem is not None:
                    self._refused(session, tenant, checkpoint.size, problem)
                    outcomes.append(CosignOutcome(tenant.id, checkpoint.size, "refused", problem))
                    continue
                await self._cosign(session, tenant, checkpoint)
                outcomes.append(CosignOutcome(tenant.id, checkpoint.size, "cosigned"))
        return outcomes

    async def _log_signed(self, session: AsyncSession, note_text: str) -> notes.Checkpoint | None:
        """The checkpoint when the log's key signed it under the log's name at its size (stored with the log)."""
        try:
            size = notes.parse_note(note_text).checkpoint.size
        except notes.CheckpointFormatError:
            return None
        origin = (await load_names(session)).at(size)
        if origin is None:
            return None
        for public_key in await checkpoint_keys(session):
            verified = notes.verify(note_text, name=origin, public_key=public_key)
            if isinstance(verified, notes.Checkpoint):
                return verified
        return None

    async def _already(self, session: AsyncSession, tenant: Tenant, checkpoint: notes.Checkpoint) -> CosignOutcome:
        same = await session.scalar(
            select(AuditCosignature.root).where(
                AuditCosignature.cosigner_tenant_id == tenant.id, AuditCosignature.size == checkpoint.size
            )
        )
        if same is not None and same != checkpoint.root:
            problem = f"this agency co-signed a different tree of size {checkpoint.size}: the log shows two histories"
            self._refused(session, tenant, checkpoint.size, problem)
            return CosignOutcome(tenant.id, checkpoint.size, "refused", problem)
        return CosignOutcome(tenant.id, checkpoint.size, "seen")

    async def _cosign(self, session: AsyncSession, tenant: Tenant, checkpoint: notes.Checkpoint) -> None:
        (key, *_) = await self._keyring.usable_tenant_keys(session, tenant.id, KeyUse.SIGNING)
        private_key = self._keyring.private_jwk(key).get_op_key("sign")
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("an agency's signing key is not an Ed25519 key")
        name, now = cosigner_name(tenant.id), self._clock.now()
        # Stored on its own (the checkpoint body and this agency's line): the log's signature is in audit_checkpoint.
        line = cosignature(checkpoint, name=name, private_key=private_key, timestamp=int(now.timestamp()))
        note = checkpoint.body() + "\n" + line.line()
        session.add(
            AuditCosignature(
                cosigner_tenant_id=tenant.id,
                size=checkpoint.size,
                root=checkpoint.root,
                key_name=name,
                note=note,
                created_at=now,
            )
        )

    def _refused(self, session: AsyncSession, tenant: Tenant, size: int, problem: str) -> None:
        logger.error("audit checkpoint of size %d not co-signed: %s", size, problem)
        self._audit.append(
            session,
            action=Action.AUDIT_CHECKPOINT_REFUSE,
            outcome=Outcome.ERROR,
            actor=Actor(kind="system", id=None, tenant_id=tenant.id, role=None),
            log_tenant_id=tenant.id,
            resource_type="audit_checkpoint",
            resource_id=str(size),
            reason=problem[:200],
        )


# pg_advisory_xact_lock key of co-signing: the first 8 bytes of SHA-256("casebridge/cosign"), as a signed integer.
_COSIGN_LOCK = int.from_bytes(hashlib.sha256(b"casebridge/cosign").digest()[:8], "big", signed=True)


async def one_at_a_time(session: AsyncSession, lock: int) -> None:
    """Every process that co-signs for an agency sees each checkpoint: one at a time (per ``lock``), so the later one
    finds it co-signed already instead of co-signing it twice (SQLite's write lock, taken at BEGIN, already
    serialises)."""
    if (await session.connection()).dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(lock)))


async def hosted_agencies(session: AsyncSession, cosigners: Collection[str] | None) -> list[Tenant]:
    """The active agencies whose node this is and that co-sign checkpoints here (``cosigners``: their slugs; None:
    every active agency)."""
    # A peer node's agency (Tenant.peer) co-signs on its own node, never here.
    query = select(Tenant).where(Tenant.status == TenantStatus.ACTIVE, Tenant.peer.is_(None)).order_by(Tenant.slug)
    if cosigners is not None:
        query = query.where(Tenant.slug.in_(cosigners))
    return list(await session.scalars(query))


def _inconsistency(leaves: Sequence[bytes], checkpoint: notes.Checkpoint, last: AuditCosignature | None) -> str | None:
    """Why the checkpoint may not be co-signed, or None: its root must be the tree over the sealed leaves, and
    that tree must extend the one this agency co-signed last."""
    if len(leaves) < checkpoint.size:
        return f"the log holds {len(leaves)} sealed events, fewer than the checkpoint's {checkpoint.size}"
    if root_hash(leaves[: checkpoint.size]) != checkpoint.root:
        return f"the checkpoint of size {checkpoint.size} does not match the sealed events"
    if last is None:
        return None
    proof = consistency_proof(leaves, last.size, checkpoint.size)
    if not verify_consistency(last.size, checkpoint.size, last.root, checkpoint.root, proof):
        return f"the checkpoint of size {checkpoint.size} does not extend the one of size {last.size} co-signed before"
    return None


async def _leaf_hashes(session: AsyncSession, size: int) -> list[bytes]:
    rows = await session.execute(select(AuditSeal.leaf_hash).where(AuditSeal.seq <= size).order_by(AuditSeal.seq))
    return list(rows.scalars())


async def cosignatures_at(sessions: async_sessionmaker[AsyncSession], size: int) -> list[AuditCosignature]:
    """The agencies' co-signatures of the checkpoint of ``size``, oldest first."""
    async with platform_session(sessions) as session:
        rows = await session.scalars(
            select(AuditCosignature).where(AuditCosignature.size == size).order_by(AuditCosignature.created_at)
        )
        return list(rows)
