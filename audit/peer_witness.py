"""This node as a C2SP tlog-witness of its peers' audit logs: ``add-checkpoint`` checked, recorded and co-signed.

A peer's node POSTs each new checkpoint of its log (audit/tlog_witness.py has the texts). The witness knows only the
logs of its configured peers, whose names and checkpoint keys it read from each peer's ``/.well-known/audit-log``
over the pinned peer connection (``PeerLogs``). It checks the log's signature, then that the tree extends the last
one co-signed here for that log (an RFC 6962 consistency proof), and co-signs with the key of every agency this node
hosts. What each agency co-signed last is kept per log origin and agency (``AuditWitnessState``), updated in the same
transaction as the check, so two requests can never roll the record back (the spec's race). A signed checkpoint that
does not extend that record (a second history, or an old one replayed) is refused and recorded in each agency's own
audit trail; so neither operator can show one history to one agency and another to the next.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit import checkpoint as notes
from audit.checkpoint import CheckpointFormatError, NoteSignature, cosigner_name, parse_verifier_key
from audit.cosignature import cosignature
from audit.events import Action, Actor, Outcome
from audit.merkle import verify_consistency
from audit.models import AuditWitnessState
from audit.services import AuditLog
from audit.tlog_witness import AddCheckpoint
from audit.witness import hosted_agencies, one_at_a_time
from tenants.clock import Clock
from tenants.keys import KeyRing
from tenants.models import KeyUse, Tenant
from tenants.persistence import platform_session

__all__ = [
    "Conflict",
    "Cosignatures",
    "FetchLog",
    "PeerLog",
    "PeerLogs",
    "Refused",
    "WitnessAnswer",
    "WitnessService",
    "decide",
]

logger = logging.getLogger(__name__)

RefusalStatus = Literal[400, 403, 404, 422]


@dataclass(frozen=True, slots=True)
class Cosignatures:
    """200: the hosted agencies' ``cosignature/v1`` lines on the checkpoint."""

    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class Conflict:
    """409: ``old`` is not the size last co-signed here (``size``), or the same size has another root here."""

    size: int
    detail: str
    evidence: bool  # the checkpoint contradicts the record (a second history, an old one replayed): recorded


@dataclass(frozen=True, slots=True)
class Refused:
    """403 (no trusted signature), 404 (unknown log) or 422 (the proof does not verify)."""

    status: RefusalStatus
    detail: str


WitnessAnswer = Cosignatures | Conflict | Refused


@dataclass(frozen=True, slots=True)
class PeerLog:
    """A log this node witnesses: each name it has had, with the checkpoint keys it signs under that name."""

    peer: str  # the configured peer's name
    keys: Mapping[str, tuple[Ed25519PublicKey, ...]]

    @classmethod
    def from_published(cls, peer: str, document: object) -> PeerLog:
        """From a peer's ``/.well-known/audit-log`` document; ValueError when it is not one."""
        if not isinstance(document, dict):
            raise ValueError("the audit-log document is not a JSON object")
        names = document.get("names")
        if not isinstance(names, list) or not names:
            raise ValueError("the audit-log document lists no names")
        keys: dict[str, tuple[Ed25519PublicKey, ...]] = {}
        for entry in names:
            origin = entry.get("origin") if isinstance(entry, dict) else None
            verifier_keys = entry.get("verifier_keys") if isinstance(entry, dict) else None
            if not isinstance(origin, str) or not isinstance(verifier_keys, list):
                raise ValueError("an audit-log name needs an origin and its verifier keys")
            parsed = []
            for text in verifier_keys:
                try:
                    name, key = parse_verifier_key(text)
                except CheckpointFormatError as exc:
                    raise ValueError(f"a verifier key of the log is malformed: {exc.detail}") from None
                if name != origin:
                    raise ValueError("a verifier key of the log is not named after its origin")
                parsed.append(key)
            keys[origin] = tuple(parsed)
        return cls(peer=peer, keys=keys)

    def signed(self, request: AddCheckpoint) -> bool:
        """Whether one of the log's keys signed the note under its origin (other signatures are ignored)."""
        origin = request.checkpoint.origin
        return any(
            isinstance(notes.verify(request.note, name=origin, public_key=key), notes.Checkpoint)
            for key in self.keys.get(origin, ())
        )


FetchLog = Callable[[], Awaitable[object]]
"""Reads one peer's ``/.well-known/audit-log`` JSON over the pinned peer connection."""

# A peer's document is read again at most this often when a checkpoint names an unknown origin or key (a rename or
# key rotation there), so unauthenticated requests cannot make this node hammer its peers.
REFRESH_S = 30.0


class PeerLogs:
    """The peers' logs, read from each peer on first need and again (rate-limited) when a checkpoint does not match."""

    def __init__(self, peers: Mapping[str, FetchLog]) -> None:
        self._peers = dict(peers)
        self._logs: dict[str, PeerLog] = {}
        self._fetched_at: dict[str, float] = {}

    @property
    def configured(self) -> bool:
        return bool(self._peers)

    async def find(self, request: AddCheckpoint) -> PeerLog | None:
        """The peer log that signed the request's checkpoint, or the one of that origin (signature not verified),
        or None when no peer's log has that origin."""
        origin = request.checkpoint.origin
        known = self._by_origin(origin)
        if known is not None and known.signed(request):
            return known
        await self._refresh()
        return self._by_origin(origin)

    def _by_origin(self, origin: str) -> PeerLog | None:
        return next((log for log in self._logs.values() if origin in log.keys), None)

    async def _refresh(self) -> None:
        now = time.monotonic()
        for peer, fetch in self._peers.items():
            if now - self._fetched_at.get(peer, -REFRESH_S) < REFRESH_S:
                continue
            self._fetched_at[peer] = now
            try:
                self._logs[peer] = PeerLog.from_published(peer, await fetch())
            except Exception as exc:  # one peer unreachable or wrong must not stop witnessing the others
                logger.warning("the audit log of peer %s could not be read (%s)", peer, type(exc).__name__)


# pg_advisory_xact_lock key of witnessing peers' logs: the first 8 bytes of SHA-256("casebridge/peer-witness").
_PEER_WITNESS_LOCK = int.from_bytes(hashlib.sha256(b"casebridge/peer-witness").digest()[:8], "big", signed=True)
# Refusals recorded per process before the oldest are forgotten: a replayed request is recorded once, not per replay.
_RECORDED_MAX = 4096


class WitnessService:
    """Answers add-checkpoint for the agencies hosted here (``cosigners``; None: every active agency)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keyring: KeyRing,
        clock: Clock,
        audit: AuditLog,
        logs: PeerLogs,
        *,
        cosigners: Sequence[str] | None = None,
    ) -> None:
        self._sessions = sessions
        self._keyring = keyring
        self._clock = clock
        self._audit = audit
        self._logs = logs
        self._cosigners = cosigners
        self._recorded: dict[tuple[str, int, bytes, str], None] = {}

    async def add_checkpoint(self, request: AddCheckpoint) -> WitnessAnswer:
        """Check ``request`` and co-sign its checkpoint, or say why not (tlog-witness's statuses)."""
        log = await self._logs.find(request)
        checkpoint = request.checkpoint
        if log is None:
            return Refused(404, f"this node witnesses no log named {checkpoint.origin!r}")
        if not log.signed(request):
            return Refused(403, "the checkpoint carries no valid signature by the log's keys")
        async with platform_session(self._sessions) as session, session.begin():
            await one_at_a_time(session, _PEER_WITNESS_LOCK)
            agencies = await hosted_agencies(session, self._cosigners)
            if not agencies:
                return Refused(404, "no agency on this node witnesses other logs")
            states = {
                state.cosigner_tenant_id: state
                for state in await session.scalars(
                    select(AuditWitnessState).where(AuditWitnessState.log_origin == checkpoint.origin)
                )
            }
            answer = decide(request, [states[a.id] for a in agencies if a.id in states])
            if answer is not None:
                self._record(session, agencies, request, answer)
                return answer
            signatures = [await self._cosign(session, agency, request, states.get(agency.id)) for agency in agencies]
        return Cosignatures(tuple(signatures))

    async def _cosign(
        self, session: AsyncSession, agency: Tenant, request: AddCheckpoint, state: AuditWitnessState | None
    ) -> NoteSignature:
        checkpoint, now = request.checkpoint, self._clock.now()
        (key, *_) = await self._keyring.usable_tenant_keys(session, agency.id, KeyUse.SIGNING)
        private_key = self._keyring.private_jwk(key).get_op_key("sign")
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("an agency's signing key is not an Ed25519 key")
        if state is None:
            state = AuditWitnessState(log_origin=checkpoint.origin, cosigner_tenant_id=agency.id)
            session.add(state)
        state.size, state.root, state.note, state.updated_at = checkpoint.size, checkpoint.root, request.note, now
        return cosignature(
            checkpoint, name=cosigner_name(agency.id), private_key=private_key, timestamp=int(now.timestamp())
        )

    def _record(
        self, session: AsyncSession, agencies: Sequence[Tenant], request: AddCheckpoint, answer: Conflict | Refused
    ) -> None:
        """A refusal of a signed checkpoint is evidence against the log: each agency's trail keeps it, once per
        checkpoint and reason. A 409 that only corrects the log's guess of the size (after a restart) is not."""
        checkpoint = request.checkpoint
        if isinstance(answer, Conflict) and not answer.evidence:
            return
        key = (checkpoint.origin, checkpoint.size, checkpoint.root, answer.detail)
        if key in self._recorded:
            return
        self._recorded[key] = None
        if len(self._recorded) > _RECORDED_MAX:
            del self._recorded[next(iter(self._recorded))]
        logger.error("a peer's audit checkpoint of size %d was not co-signed: %s", checkpoint.size, answer.detail)
        for agency in agencies:
            self._audit.append(
                session,
                action=Action.AUDIT_CHECKPOINT_REFUSE,
                outcome=Outcome.ERROR,
                actor=Actor(kind="system", id=None, tenant_id=agency.id, role=None),
                log_tenant_id=agency.id,
                resource_type="peer_audit_checkpoint",
                resource_id=str(checkpoint.size),
                reason=f"{checkpoint.origin}: {answer.detail}"[:200],
            )


def decide(request: AddCheckpoint, states: Sequence[AuditWitnessState]) -> Conflict | Refused | None:
    """Why the checkpoint may not be co-signed given what the hosted agencies co-signed of this log, or None.

    The node's record of a log is its largest co-signed tree: every hosted agency co-signs from it, including one
    that joined (or was reactivated) since, as all of them share this node and its checks.
    """
    checkpoint = request.checkpoint
    latest = max(states, key=lambda state: state.size, default=None)
    size = 0 if latest is None else latest.size
    if checkpoint.size < size:
        return Conflict(size, f"an older checkpoint (size {checkpoint.size}) than the one co-signed here", True)
    if latest is not None and checkpoint.size == size and checkpoint.root != latest.root:
        return Conflict(size, f"another tree of size {size} was co-signed here: the log shows two histories", True)
    if request.old != size:
        return Conflict(size, f"the old size {request.old} is not the size co-signed here", False)
    if latest is None or checkpoint.size == size:
        return None
    if not verify_consistency(size, checkpoint.size, latest.root, checkpoint.root, request.proof):
        return Refused(422, f"the checkpoint of size {checkpoint.size} does not extend the one of size {size}")
    return None
