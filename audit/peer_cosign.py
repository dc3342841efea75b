"""The log's side of cross-node witnessing: each new checkpoint goes to every peer's witness, and what they co-sign
is kept with the local co-signatures.

For each peer the submitter sends ``add-checkpoint`` (audit/tlog_witness.py) with the consistency proof from the size
it believes the witness is at; a 409 names the witness's size, and the request is sent once more from there. Each
returned ``cosignature/v1`` line is checked against the public keys of the agency it names (the peer's agencies,
whose keys this node fetched from the peer's JWKS over the pinned connection: ``cosigner_public_keys``); a line that
does not verify is reported and dropped. Those that verify are stored as ``AuditCosignature`` rows, so
``GET /audit/checkpoint`` serves them and ``audit verify`` checks them like any other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit import checkpoint as notes
from audit.cosignature import Cosigned, verify_cosignature
from audit.merkle import consistency_proof
from audit.models import AuditCosignature, AuditSeal
from audit.tlog_witness import (
    SIZE_MEDIA_TYPE,
    WitnessFormatError,
    format_add_checkpoint,
    parse_cosignatures,
    parse_size,
)
from audit.verify import cosigner_public_keys
from tenants.clock import Clock
from tenants.persistence import platform_session

__all__ = ["PeerWitness", "Post", "Submission", "Submitter", "WitnessReply"]

logger = logging.getLogger(__name__)

_COSIGNER_PREFIX = "casebridge-cosigner/"


@dataclass(frozen=True, slots=True)
class WitnessReply:
    """A witness's answer to add-checkpoint: its status, Content-Type (without parameters) and body."""

    status: int
    media_type: str
    body: bytes


Post = Callable[[bytes], Awaitable[WitnessReply]]
"""Sends one add-checkpoint body to a witness (over the pinned peer connection) and returns its answer."""


@dataclass(frozen=True, slots=True)
class PeerWitness:
    """A peer's witness: the peer's configured name and how to reach its add-checkpoint endpoint."""

    name: str
    post: Post


SubmissionStatus = Literal["cosigned", "refused", "unreachable"]


@dataclass(frozen=True, slots=True)
class Submission:
    """What one witness did with one checkpoint: who co-signed (agency ids), and any lines that did not verify."""

    witness: str
    size: int
    status: SubmissionStatus
    cosigners: tuple[uuid.UUID, ...] = ()
    rejected: int = 0  # signature lines that named no known agency key or did not verify
    detail: str = ""


class Submitter:
    """Sends each checkpoint to every peer's witness and stores the co-signatures that verify."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, witnesses: Sequence[PeerWitness]
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._witnesses = tuple(witnesses)
        # The size each witness last co-signed, as far as this process knows; 0 until it says (a 409 corrects it).
        self._sizes: dict[str, int] = {}

    @property
    def witnesses(self) -> tuple[PeerWitness, ...]:
        return self._witnesses

    async def submit(self, note: str) -> list[Submission]:
        """Have ``note`` (a checkpoint the sealer signed) co-signed by every peer's witness, one after the other."""
        if not self._witnesses:
            return []
        checkpoint = notes.parse_note(note).checkpoint
        leaves = await self._leaf_hashes(checkpoint.size)
        return [await self._submit_to(witness, note, checkpoint, leaves) for witness in self._witnesses]

    async def _submit_to(
        self, witness: PeerWitness, note: str, checkpoint: notes.Checkpoint, leaves: Sequence[bytes]
    ) -> Submission:
        size = checkpoint.size
        old = self._sizes.get(witness.name, 0)
        for _ in range(2):  # the first guess, then once more from the size a 409 names
            if old > size:
                return Submission(witness.name, size, "refused", detail=f"the witness is at size {old}, beyond this")
            body = format_add_checkpoint(old, consistency_proof(leaves, old, size), note)
            try:
                reply = await witness.post(body)
            except Exception as exc:  # a peer down must not stop the others; its next checkpoint tries again
                return Submission(witness.name, size, "unreachable", detail=type(exc).__name__)
            if reply.status == 200:
                self._sizes[witness.name] = size
                return await self._store(witness, checkpoint, reply.body)
            if reply.status != 409 or reply.media_type != SIZE_MEDIA_TYPE:
                return Submission(witness.name, size, "refused", detail=f"the witness answered {reply.status}")
            try:
                witness_size = parse_size(reply.body)
            except WitnessFormatError as exc:
                return Submission(witness.name, size, "refused", detail=exc.detail)
            self._sizes[witness.name] = witness_size
            if witness_size == old:  # the same size with another root there: a second history, not a wrong guess
                break
            old = witness_size
        return Submission(witness.name, size, "refused", detail=f"the witness holds another tree of size {old}")

    async def _store(self, witness: PeerWitness, checkpoint: notes.Checkpoint, body: bytes) -> Submission:
        size = checkpoint.size
        try:
            cosigned = notes.parse_note(parse_cosignatures(body, checkpoint.body()))
        except (WitnessFormatError, notes.CheckpointFormatError) as exc:
            detail = exc.detail
            logger.warning("the witness of peer %s sent a malformed answer: %s", witness.name, detail)
            return Submission(witness.name, size, "refused", detail=detail)
        by_agency = {agency: line for line in cosigned.signatures if (agency := _agency(line.name)) is not None}
        rejected = len(cosigned.signatures) - len(by_agency)
        stored: list[uuid.UUID] = []
        async with platform_session(self._sessions) as session, session.begin():
            keys = await cosigner_public_keys(session, sorted(by_agency))
            existing = set(
                await session.scalars(
                    select(AuditCosignature.cosigner_tenant_id).where(
                        AuditCosignature.size == size, AuditCosignature.cosigner_tenant_id.in_(sorted(by_agency))
                    )
                )
            )
            for agency, line in by_agency.items():
                text = checkpoint.body() + "\n" + line.line()
                if not any(
                    isinstance(verify_cosignature(text, name=line.name, public_key=key), Cosigned)
                    for key in keys.get(line.name, ())
                ):
                    rejected += 1
                    continue
                stored.append(agency)
                if agency not in existing:
                    session.add(
                        AuditCosignature(
                            cosigner_tenant_id=agency,
                            size=size,
                            root=checkpoint.root,
                            key_name=line.name,
                            note=text,
                            created_at=self._clock.now(),
                        )
                    )
        if rejected:
            logger.warning("the witness of peer %s sent %d co-signatures that do not verify", witness.name, rejected)
        if not stored:
            return Submission(witness.name, size, "refused", rejected=rejected, detail="no co-signature verified")
        return Submission(witness.name, size, "cosigned", cosigners=tuple(stored), rejected=rejected)

    async def _leaf_hashes(self, size: int) -> list[bytes]:
        async with platform_session(self._sessions) as session:
            rows = await session.scalars(
                select(AuditSeal.leaf_hash).where(AuditSeal.seq <= size).order_by(AuditSeal.seq)
            )
            return list(rows)


def _agency(name: str) -> uuid.UUID | None:
    """The agency a co-signer name ``casebridge-cosigner/<id>`` stands for, or None for any other name."""
    if not name.startswith(_COSIGNER_PREFIX):
        return None
    try:
        agency = uuid.UUID(name[len(_COSIGNER_PREFIX) :])
    except ValueError:
        return None
    return agency if notes.cosigner_name(agency) == name else None
