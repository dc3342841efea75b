"""The audit sealer: puts events in order, chains and hashes them, and signs checkpoints of the Merkle tree.

One gateway process at a time seals (leadership by a lease row, see ``Sealer._hold_lease``). Sealing only inserts
``audit_seal`` and ``audit_checkpoint`` rows; ``audit_event`` is never updated. Checkpoints are signed under the
log's stored name (audit/identity.py). docs/audit.md has the formats.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit import checkpoint as notes
from audit.identity import adopt_name, hold_naming_lock, load_names
from audit.merkle import (
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from audit.models import LEASE_ROW_ID, AuditCheckpoint, AuditEvent, AuditSeal, AuditSealerLease
from audit.verify import ZERO_HASH, snapshot_session
from tenants.clock import Clock
from tenants.errors import InvalidInput, NotFound
from tenants.keys import KeyRing
from tenants.models import PlatformKey, PlatformKeyUse
from tenants.persistence import platform_session

__all__ = [
    "CHECKPOINT_SUBJECT",
    "ConsistencyProof",
    "InclusionProof",
    "ProofUnavailable",
    "Publish",
    "SealIntegrityError",
    "Sealer",
    "SealerStatus",
    "SignedCheckpoint",
    "log_origin",
]

logger = logging.getLogger(__name__)

CHECKPOINT_SUBJECT = "cb.audit.checkpoint"
"""Bus subject every new signed checkpoint note is published on (stream CB_AUDIT), for outside witnesses."""

Publish = Callable[[str, bytes], Awaitable[None]]
"""Publishes (subject, payload) and returns once the bus has stored it; raises otherwise."""

# How far back (by UUIDv7 timestamp) from the newest sealed event the sealer looks for events that committed late.
# A request transaction lasting this long is not expected; anything older is found by a sweep over every event, at
# the start of every leadership term and then hourly, and `audit verify` reports it meanwhile.
LATE_COMMIT_WINDOW_S = 600.0
FULL_SWEEP_EVERY_S = 3600.0
# Back-off ceiling after failures, and how often a process that is not the leader asks for the lease.
MAX_BACKOFF_S = 30.0
FOLLOWER_POLL_S = 2.0
# A lease that lapsed less than this long ago counts as held for readiness: a follower takes it over within one
# FOLLOWER_POLL_S, and the load balancer must not take every node out for the hand-over (one missed poll allowed).
TAKEOVER_WITHIN_S = 2 * FOLLOWER_POLL_S
# After stop is asked the loop gets this long to seal, checkpoint and release the lease before it is cancelled.
STOP_GRACE_S = 10.0


def log_origin(base_url: str) -> str:
    """The name a new log is given: the node's host and port, then ``/audit``. Once the log has a name it keeps it
    (audit/identity.py), whatever the base URL of a process says later."""
    host = urlsplit(base_url).netloc
    if not host:
        raise ValueError("the base URL has no host")
    return f"{host}/audit"


class SealIntegrityError(RuntimeError):
    """The stored seals contradict themselves or an earlier checkpoint; the sealer will not sign over them."""


class ProofUnavailable(NotFound):
    """No proof can be given yet (or at all) for what was asked; the message says which."""


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    origin: str
    size: int
    root: bytes
    note: str  # the C2SP signed note, as published


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 6962 audit path of one sealed event in the tree of a signed checkpoint."""

    event_id: uuid.UUID
    seq: int
    leaf_index: int  # seq - 1
    leaf_hash: bytes
    size: int
    root: bytes
    proof: list[bytes]
    note: str  # the signed checkpoint note of `size`


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 6962 proof that the checkpoint of ``old_size`` is a prefix of the checkpoint of ``new_size``."""

    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    proof: list[bytes]
    old_note: str
    new_note: str


@dataclass(frozen=True, slots=True)
class SealerStatus:
    """For the readiness probe: whether the loop runs and when it last completed a round."""

    running: bool
    leader: bool
    healthy: bool
    last_round_ok_at: float | None  # time.monotonic()
    last_error: str | None  # exception type name only


def _default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _late_commit_floor(newest_sealed: uuid.UUID, window_s: float) -> uuid.UUID | None:
    """The smallest UUIDv7 id still worth looking at for unsealed events, or None to look at every event.

    UUIDv7 ids sort by their 48-bit millisecond timestamp (RFC 9562 §5.7) in both SQLite (BLOB) and PostgreSQL
    (uuid), so ``id >= floor`` is a primary-key range scan instead of an anti-join over the whole table.
    """
    if newest_sealed.version != 7:
        return None
    # min(): a clock far ahead on some node must not push the floor past events that are still arriving.
    newest_ms = min(newest_sealed.int >> 80, int(time.time() * 1000))
    floor_ms = max(newest_ms - int(window_s * 1000), 0)
    return uuid.UUID(int=floor_ms << 80)


async def sealer_lease_held(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> bool:
    """Whether some process holds a live sealing lease, or is taking over one that lapsed within
    TAKEOVER_WITHIN_S (for readiness where the sealer runs elsewhere)."""
    async with await snapshot_session(sessions) as session:
        expires_at = await session.scalar(
            select(AuditSealerLease.expires_at).where(AuditSealerLease.id == LEASE_ROW_ID)
        )
    return expires_at is not None and expires_at > now - dt.timedelta(seconds=TAKEOVER_WITHIN_S)


async def unsealed(session: AsyncSession) -> tuple[int, dt.datetime | None]:
    """Events not sealed yet, and when the oldest of them was recorded, for the operator's sealer-lag gauges.

    Counted, as the sealer's rounds look, among events from LATE_COMMIT_WINDOW_S before the newest sealed one on (a
    primary-key range rather than an anti-join over the whole log); an event that committed later than that shows
    only once the sealer's periodic full sweep has sealed it.
    """
    newest = await session.scalar(select(AuditSeal.event_id).order_by(AuditSeal.seq.desc()).limit(1))
    query = (
        select(func.count(), func.min(AuditEvent.recorded_at))
        .select_from(AuditEvent)
        .outerjoin(AuditSeal, AuditSeal.event_id == AuditEvent.id)
        .where(AuditSeal.seq.is_(None))
    )
    floor = None if newest is None else _late_commit_floor(newest, LATE_COMMIT_WINDOW_S)
    if floor is not None:
        query = query.where(AuditEvent.id >= floor)
    count, oldest = (await session.execute(query)).one()
    return int(count), oldest


class Sealer:
    """Seals audit events into the hash chain and Merkle tree and signs checkpoints, as leader of the lease."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keyring: KeyRing,
        clock: Clock,
        *,
        origin: str,
        every_events: int = 256,
        every_seconds: float = 5.0,
        publish: Publish | None = None,
        poll_seconds: float = 0.5,
        batch_size: int = 2000,
        lease_seconds: float = 10.0,
        holder: str | None = None,
    ) -> None:
        # The origin is also the checkpoint key's name: refuse one the signed-note rules forbid, now, not when signing.
        notes.key_id(origin, Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key())
        self._sessions = sessions
        self._keyring = keyring
        self._clock = clock
        # The name a new log gets. Once the log has one (its first leader gave it), `origin` is the name this sealer
        # last signed under or found stored.
        self._new_log_origin = origin
        self.origin = origin
        self._every_events = every_events
        self._every_seconds = every_seconds
        self._publish = publish
        self._poll = poll_seconds
        self._batch = batch_size
        self._lease = lease_seconds
        self.holder = holder or _default_holder()
        self._leader = False
        # True from the start of a leadership term (and hourly) until a sweep over every event left nothing unsealed.
        self._sweep = True
        self._swept_at = time.monotonic()
        # The tree over seals 1..size, caught up from stored leaf hashes (see _tree_at).
        self._tree = MerkleAccumulator()
        self._signing_key: tuple[str, Ed25519PrivateKey] | None = None
        self._unpublished: str | None = None
        self._sealed_since_checkpoint = 0
        self._last_checkpoint_at = time.monotonic()
        self._running = False
        self._started_at: float | None = None
        self._last_ok: float | None = None
        self._last_error: str | None = None

    # -- leadership ------------------------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this sealer held the lease at its last attempt."""
        return self._leader

    async def _hold_lease(self, session: AsyncSession) -> bool:
        """Take or renew the lease inside the caller's transaction; False when another live sealer holds it.

        On PostgreSQL the lease row is locked FOR UPDATE SKIP LOCKED: whoever holds the lock is sealing right now,
        so everyone else skips this round without waiting, and the row lock lasts until the sealing transaction
        commits, which is what keeps sequence numbers unique and gapless even while the lease changes hands. On
        SQLite every writing transaction already holds the database's single write lock (BEGIN IMMEDIATE). The
        lease on top of the lock keeps one leader for many rounds, so the in-memory tree and the publishing stay
        in one process. The primary key on seq and the unique event_id are the last line of defence.
        """
        now = self._clock.now()
        row = (
            await session.execute(
                select(AuditSealerLease.holder, AuditSealerLease.expires_at)
                .where(AuditSealerLease.id == LEASE_ROW_ID)
                .with_for_update(skip_locked=True)
            )
        ).first()
        if row is None:
            await self._restore_lease_row(session)
            return self._lose_lease()
        holder, expires_at = row
        if holder != self.holder and expires_at > now:
            return self._lose_lease()
        # Renew at half-life rather than every round: most rounds then write nothing.
        if holder != self.holder or (expires_at - now).total_seconds() < self._lease / 2:
            await session.execute(
                update(AuditSealerLease)
                .where(AuditSealerLease.id == LEASE_ROW_ID)
                .values(holder=self.holder, expires_at=now + _seconds(self._lease))
            )
        if not self._leader:
            logger.info("audit sealer %s is now the leader", self.holder)
            # The first leader of a new log names it and makes its checkpoint key, so both can be published before the
            # first checkpoint; every later term finds them stored and keeps them.
            self.origin = (await adopt_name(session, self._new_log_origin, at=now)).current or self.origin
            await self._checkpoint_key(session)
            self._leader = True
            self._sweep = True
        return True

    def _lose_lease(self) -> bool:
        if self._leader:
            logger.info("audit sealer %s is no longer the leader", self.holder)
        self._leader = False
        return False

    async def _restore_lease_row(self, session: AsyncSession) -> None:
        """Put the lease row back if it is missing (it is locked by another sealer more often than missing)."""
        dialect = session.get_bind().dialect.name
        values = {"id": LEASE_ROW_ID, "holder": "", "expires_at": self._clock.now()}
        if dialect == "postgresql":
            await session.execute(postgresql.insert(AuditSealerLease).values(values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            await session.execute(sqlite.insert(AuditSealerLease).values(values).on_conflict_do_nothing())

    async def release(self) -> None:
        """Give the lease up at once, so another process can take over without waiting for it to expire."""
        async with platform_session(self._sessions) as session, session.begin():
            await session.execute(
                update(AuditSealerLease)
                .where(AuditSealerLease.id == LEASE_ROW_ID, AuditSealerLease.holder == self.holder)
                .values(expires_at=self._clock.now())
            )
        self._leader = False

    # -- sealing ---------------------------------------------------------------------------------------------------

    async def seal_once(self) -> int:
        """Seal the next batch of unsealed events in one transaction; returns how many (0 when not the leader).

        Events are taken in (recorded_at, id) order and get the next sequence numbers; each seal holds
        chain_hash = SHA-256(previous chain_hash || canonical bytes), 32 zero bytes before seq 1, and
        leaf_hash = SHA-256(0x00 || canonical bytes).
        """
        async with platform_session(self._sessions) as session, session.begin():
            if not await self._hold_lease(session):
                return 0
            last = (
                await session.execute(
                    select(AuditSeal.seq, AuditSeal.chain_hash, AuditSeal.event_id)
                    .order_by(AuditSeal.seq.desc())
                    .limit(1)
                )
            ).first()
            seq, chain = (last.seq, last.chain_hash) if last else (0, ZERO_HASH)
            first_seq = seq + 1
            unsealed = (
                select(AuditEvent.id, AuditEvent.canonical)
                .outerjoin(AuditSeal, AuditSeal.event_id == AuditEvent.id)
                .where(AuditSeal.seq.is_(None))
            )
            floor = None if self._sweep or last is None else _late_commit_floor(last.event_id, LATE_COMMIT_WINDOW_S)
            if floor is not None:
                unsealed = unsealed.where(AuditEvent.id >= floor)
            events = (
                await session.execute(unsealed.order_by(AuditEvent.recorded_at, AuditEvent.id).limit(self._batch))
            ).all()
            sealed_at = self._clock.now()
            seals: list[dict[str, object]] = []
            leaves: list[bytes] = []
            for event_id, canonical in events:
                data = canonical.encode("utf-8")
                seq += 1
                chain = hashlib.sha256(chain + data).digest()
                leaves.append(leaf_hash(data))
                seals.append(
                    {
                        "seq": seq,
                        "event_id": event_id,
                        "chain_hash": chain,
                        "leaf_hash": leaves[-1],
                        "sealed_at": sealed_at,
                    }
                )
            if seals:
                await session.execute(insert(AuditSeal), seals)
        # Committed: only now may the in-memory tree move on (a rollback would have left it ahead of the table).
        if self._tree.size == first_seq - 1:
            self._tree.extend(leaves)
        if self._sweep and len(events) < self._batch:
            self._sweep, self._swept_at = False, time.monotonic()
        elif time.monotonic() - self._swept_at > FULL_SWEEP_EVERY_S:
            self._sweep = True
        self._sealed_since_checkpoint += len(seals)
        return len(seals)

    # -- checkpoints -----------------------------------------------------------------------------------------------

    async def checkpoint_once(self) -> str | None:
        """Sign and store a checkpoint of every sealed event when there are some beyond the last checkpoint.

        Returns the signed note, or None when there was nothing new or this process is not the leader. The note is
        then published (when a publisher was given); a failed publish is logged and retried by ``run``.
        """
        async with platform_session(self._sessions) as session, session.begin():
            if not await self._hold_lease(session):
                return None
            size = await session.scalar(select(func.max(AuditSeal.seq))) or 0
            checkpointed = await session.scalar(select(func.max(AuditCheckpoint.size))) or 0
            if size <= checkpointed:
                return None
            await hold_naming_lock(session)
            origin = (await load_names(session)).at(size)
            if origin is None:
                raise SealIntegrityError("the audit log's name is missing from audit_log_name")
            tree = await self._tree_at(session, size)
            root = tree.root()
            private_key = await self._checkpoint_key(session)
            note = notes.sign(notes.Checkpoint(origin, size, root), name=origin, private_key=private_key)
            session.add(AuditCheckpoint(size=size, root=root, note=note, created_at=self._clock.now()))
        self._tree = tree
        self.origin = origin
        self._sealed_since_checkpoint = 0
        self._last_checkpoint_at = time.monotonic()
        self._unpublished = note
        await self._publish_pending()
        return note

    async def _tree_at(self, session: AsyncSession, size: int) -> MerkleAccumulator:
        """The tree over seals 1..size, extended from the in-memory one with the stored leaf hashes.

        The first call in a process reads every leaf hash once (32 bytes per event: about a second per million);
        later calls read only the seals added since. Keeping just the accumulator in memory, rather than a copy
        of its state in the database, means there is no second record to trust: whenever the tree passes the size
        of a stored checkpoint its root must equal that checkpoint's, or the sealer refuses to sign anything.
        """
        current = self._tree if self._tree.size <= size else MerkleAccumulator()
        tree = MerkleAccumulator.from_state(current.size, current.state())
        if tree.size == size:
            return tree
        stored = await session.execute(
            select(AuditCheckpoint.size, AuditCheckpoint.root).where(
                AuditCheckpoint.size > tree.size, AuditCheckpoint.size <= size
            )
        )
        expected_roots = {checkpoint_size: root for checkpoint_size, root in stored}
        rows = await session.stream(
            select(AuditSeal.seq, AuditSeal.leaf_hash)
            .where(AuditSeal.seq > tree.size, AuditSeal.seq <= size)
            .order_by(AuditSeal.seq)
        )
        async for seq, leaf in rows:
            if seq != tree.size + 1:
                raise SealIntegrityError(f"the sealed log has no event at seq {tree.size + 1}")
            tree.append(leaf)
            expected = expected_roots.get(tree.size)
            if expected is not None and tree.root() != expected:
                self._tree = MerkleAccumulator()
                raise SealIntegrityError(f"the stored leaf hashes no longer match the checkpoint of size {tree.size}")
        if tree.size != size:
            raise SealIntegrityError(f"the sealed log has no event at seq {tree.size + 1}")
        return tree

    async def _checkpoint_key(self, session: AsyncSession) -> Ed25519PrivateKey:
        key: PlatformKey = await self._keyring.ensure_platform_key(session, PlatformKeyUse.CHECKPOINT)
        if self._signing_key is None or self._signing_key[0] != key.kid:
            private = self._keyring.platform_private_jwk(key).private_key
            if not isinstance(private, Ed25519PrivateKey):
                raise SealIntegrityError("the checkpoint key is not an Ed25519 key")
            self._signing_key = (key.kid, private)
        return self._signing_key[1]

    async def _publish_pending(self) -> None:
        note, self._unpublished = self._unpublished, None
        if note is None or self._publish is None:
            return
        try:
            await self._publish(CHECKPOINT_SUBJECT, note.encode("utf-8"))
        except Exception as exc:
            # Kept for the next round unless a newer checkpoint replaces it; witnesses only need the latest.
            self._unpublished = self._unpublished or note
            logger.warning("audit checkpoint not published (%s); will retry", type(exc).__name__)

    async def _latest_note(self) -> str | None:
        async with await snapshot_session(self._sessions) as session:
            return await session.scalar(select(AuditCheckpoint.note).order_by(AuditCheckpoint.size.desc()).limit(1))

    # -- the loop --------------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Seal about every ``poll_seconds`` and checkpoint every ``every_events`` events or ``every_seconds``.

        Never raises: a failing round is logged by exception type only (messages may carry SQL or data) and retried
        after a growing pause. When ``stop`` is set, seals and checkpoints what is left and gives up the lease.
        ``wake`` is not needed: sealing runs on its own clock.
        """
        self._started_at = time.monotonic()
        self._running = True
        try:
            await self._loop(stop)
        finally:
            self._running = False

    async def _loop(self, stop: asyncio.Event) -> None:
        delay = self._poll
        while not stop.is_set():
            try:
                await self._round()
                self._last_ok, self._last_error = time.monotonic(), None
                delay = self._poll if self._leader else max(self._poll, FOLLOWER_POLL_S)
            except Exception as exc:
                self._last_error = type(exc).__name__
                delay = min(max(delay, self._poll) * 2, MAX_BACKOFF_S)
                if isinstance(exc, SealIntegrityError):
                    logger.error("audit sealer stopped signing: %s", exc)  # our own message: seq numbers only
                else:
                    logger.warning("audit sealer round failed (%s); retrying in %.1f s", type(exc).__name__, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        await self._finish()

    async def _round(self) -> None:
        was_leader = self._leader
        await self.seal_once()
        if not self._leader:
            return
        if not was_leader:
            # A new term: republish the latest checkpoint (the bus deduplicates) in case the last leader could not.
            self._unpublished = await self._latest_note()
        due = self._sealed_since_checkpoint >= self._every_events or (
            time.monotonic() - self._last_checkpoint_at >= self._every_seconds
        )
        if due:
            await self.checkpoint_once()
            self._last_checkpoint_at = time.monotonic()
        await self._publish_pending()

    async def _finish(self) -> None:
        try:
            if self._leader:
                await self.seal_once()
                await self.checkpoint_once()
            await self.release()
        except Exception as exc:
            logger.warning("audit sealer could not finish cleanly (%s)", type(exc).__name__)

    def status(self) -> SealerStatus:
        running = self._running
        # No round completed for a few lease periods (since the last one, or since starting): the database is
        # unreachable or sealing fails.
        since = self._last_ok if self._last_ok is not None else self._started_at
        fresh = since is not None and time.monotonic() - since < max(3 * self._lease, 10.0)
        return SealerStatus(
            running=running,
            leader=self._leader,
            healthy=running and fresh,
            last_round_ok_at=self._last_ok,
            last_error=self._last_error,
        )

    # -- proofs for the API ----------------------------------------------------------------------------------------

    async def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The newest signed checkpoint (for ``GET /audit/checkpoints/latest``), or None before the first one."""
        async with await snapshot_session(self._sessions) as session:
            latest = await session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
        if latest is None:
            return None
        origin = latest.note.partition("\n")[0]  # the origin line: the log's name when it was signed
        return SignedCheckpoint(origin=origin, size=latest.size, root=latest.root, note=latest.note)

    async def inclusion(self, event_id: uuid.UUID, size: int | None = None) -> InclusionProof:
        """The audit path of a sealed event in the checkpoint of ``size`` (default: the latest checkpoint).

        Reads across every tenant: the caller checks first that the asker may see this event. O(size) hashing.
        Raises ProofUnavailable when the event is not sealed or not covered by such a checkpoint.
        """
        async with await snapshot_session(self._sessions) as session:
            seq = await session.scalar(select(AuditSeal.seq).where(AuditSeal.event_id == event_id))
            if seq is None:
                raise ProofUnavailable("the event is not sealed yet; try again in a few seconds")
            checkpoint = await self._checkpoint(session, size)
            if seq > checkpoint.size:
                raise ProofUnavailable("no signed checkpoint covers this event yet; try again in a few seconds")
            leaves = await _leaf_hashes(session, checkpoint.size)
        proof = inclusion_proof(leaves, seq - 1, checkpoint.size)
        if not verify_inclusion(leaves[seq - 1], seq - 1, checkpoint.size, proof, checkpoint.root):
            raise SealIntegrityError(f"the stored leaf hashes do not match the checkpoint of size {checkpoint.size}")
        return InclusionProof(
            event_id=event_id,
            seq=seq,
            leaf_index=seq - 1,
            leaf_hash=leaves[seq - 1],
            size=checkpoint.size,
            root=checkpoint.root,
            proof=proof,
            note=checkpoint.note,
        )

    async def consistency(self, old: int, new: int) -> ConsistencyProof:
        """Proof that the checkpoint of size ``old`` is a prefix of the checkpoint of size ``new``. O(new) hashing."""
        if not 1 <= old <= new:
            raise InvalidInput("the old size must be at least 1 and at most the new size")
        async with await snapshot_session(self._sessions) as session:
            older = await self._checkpoint(session, old)
            newer = await self._checkpoint(session, new)
            leaves = await _leaf_hashes(session, new)
        proof = consistency_proof(leaves, old, new)
        if not verify_consistency(old, new, older.root, newer.root, proof):
            raise SealIntegrityError(f"the checkpoints of sizes {old} and {new} are not consistent")
        return ConsistencyProof(
            old_size=old,
            new_size=new,
            old_root=older.root,
            new_root=newer.root,
            proof=proof,
            old_note=older.note,
            new_note=newer.note,
        )

    @staticmethod
    async def _checkpoint(session: AsyncSession, size: int | None) -> AuditCheckpoint:
        query = select(AuditCheckpoint)
        query = (
            query.order_by(AuditCheckpoint.size.desc()).limit(1)
            if size is None
            else query.where(AuditCheckpoint.size == size)
        )
        found = await session.scalar(query)
        if found is None:
            raise ProofUnavailable(
                "no checkpoint has been signed yet" if size is None else f"there is no checkpoint of size {size}"
            )
        return found


async def _leaf_hashes(session: AsyncSession, size: int) -> list[bytes]:
    rows = (
        await session.execute(
            select(AuditSeal.seq, AuditSeal.leaf_hash).where(AuditSeal.seq <= size).order_by(AuditSeal.seq)
        )
    ).all()
    if len(rows) != size or (rows and rows[-1].seq != size):
        raise SealIntegrityError(f"the sealed log is missing events below seq {size}")
    return [leaf for _, leaf in rows]


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)
