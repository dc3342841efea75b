"""Audit tables: events are only ever inserted; sealing (sequence, chain, tree) lives in tables of its own."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from audit.merkle import HASH_SIZE
from tenants.models import Base


class AuditEvent(Base):
    """One event in its canonical JSON form (RFC 8785), plus columns copied out of it for searching."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_log_time", "log_tenant_id", "recorded_at"),)

    # Whose trail the event belongs to; NULL for the platform's own events (e.g. a token for an unknown client).
    log_tenant_id: Mapped[uuid.UUID | None] = mapped_column(index=True, default=None)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(index=True, default=None)
    actor_tenant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    resource_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    canonical: Mapped[str] = mapped_column(Text)


class AuditEventSubject(Base):
    """Which subject pseudonyms an event touched: the index behind the subject access report."""

    __tablename__ = "audit_event_subject"

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("audit_event.id"), index=True)
    pseudonym: Mapped[str] = mapped_column(String(40), index=True)


# The sealed log's own tables use natural keys (sequence number, tree size) instead of Base's UUID id and
# created/updated columns, so they derive from advanced-alchemy's key-less base on the same metadata.

# A log position: BIGINT on PostgreSQL because a busy log can outgrow 2**31 events; SQLite integers are 64-bit anyway.
_POSITION = BigInteger().with_variant(Integer(), "sqlite")


class AuditSeal(DefaultBase):
    """An event's place in the sealed log: its sequence number, its hash-chain link and its Merkle leaf hash.

    Written only by the sealer and only ever inserted; the event row itself is never updated.
    """

    __tablename__ = "audit_seal"
    __table_args__ = (
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint(f"length(chain_hash) = {HASH_SIZE}", name="chain_hash_size"),
        CheckConstraint(f"length(leaf_hash) = {HASH_SIZE}", name="leaf_hash_size"),
    )

    seq: Mapped[int] = mapped_column(_POSITION, primary_key=True, autoincrement=False)
    event_id: Mapped[uuid.UUID] = mapped_column(GUID(length=16), ForeignKey("audit_event.id"), unique=True)
    # SHA-256(previous chain_hash, or 32 zero bytes at seq 1 || the event's canonical UTF-8 bytes)
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(HASH_SIZE))
    # RFC 6962 leaf hash of the canonical bytes; leaf index = seq - 1
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(HASH_SIZE))
    sealed_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


class AuditCheckpoint(DefaultBase):
    """A signed checkpoint of the sealed log: the RFC 6962 root over its first `size` events, as a signed note."""

    __tablename__ = "audit_checkpoint"
    __table_args__ = (
        CheckConstraint("size >= 1", name="size_positive"),
        CheckConstraint(f"length(root) = {HASH_SIZE}", name="root_size"),
    )

    size: Mapped[int] = mapped_column(_POSITION, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(HASH_SIZE))
    note: Mapped[str] = mapped_column(Text)  # C2SP tlog-checkpoint body + Ed25519 signed-note signature
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


class AuditSealerLease(DefaultBase):
    """The one row saying which gateway process seals the log, and until when (leadership by lease)."""

    __tablename__ = "audit_sealer_lease"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


LEASE_ROW_ID = 1


class AuditLogName(DefaultBase):
    """One name the audit log has had: its C2SP origin, which is also the name its checkpoints are signed under.

    The first is fixed when the log is created (audit/identity.py); each later one only by
    `casebridge audit rename-origin`. Name `number` covers the checkpoints from `from_size` up to the next name's.
    Only ever inserted, like the checkpoints it names, so a rename never makes an older checkpoint unverifiable.
    """

    __tablename__ = "audit_log_name"
    __table_args__ = (
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("from_size >= 1", name="from_size_positive"),
    )

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(Text)
    from_size: Mapped[int] = mapped_column(_POSITION)
    adopted_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


# Tables the application may only add to and read (PostgreSQL grants; see append_only_grants_sql).
class AuditCosignature(DefaultBase):
    """A tenant node's co-signature of a checkpoint it checked: the checkpoint body plus that node's signature line.

    Public evidence, like the checkpoints themselves, so a platform table: every agency may compare what the others
    signed. Two co-signatures of one size with different roots prove that the log showed two histories.
    """

    __tablename__ = "audit_cosignature"
    __table_args__ = (CheckConstraint(f"length(root) = {HASH_SIZE}", name="root_size"),)

    cosigner_tenant_id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True)
    size: Mapped[int] = mapped_column(_POSITION, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(HASH_SIZE))
    key_name: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text)  # checkpoint body, blank line, the cosigner's signature line
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


class AuditWitnessState(DefaultBase):
    """The latest checkpoint of another node's audit log that an agency hosted here co-signed (audit/peer_witness.py).

    One row per log origin and co-signing agency, replaced as the log grows: tlog-witness keeps only the latest. The
    note is the checkpoint as the log signed it, kept as evidence should the log later show another history.
    """

    __tablename__ = "audit_witness_state"
    __table_args__ = (CheckConstraint(f"length(root) = {HASH_SIZE}", name="root_size"),)

    log_origin: Mapped[str] = mapped_column(Text, primary_key=True)
    cosigner_tenant_id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True)
    size: Mapped[int] = mapped_column(_POSITION)
    root: Mapped[bytes] = mapped_column(LargeBinary(HASH_SIZE))
    note: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


# Migration 0005 grants from this tuple, so it stays as 0005 knew it; later tables get the same grants in their own
# migration (0012: audit_cosignature, 0014: audit_log_name).
APPEND_ONLY_TABLES = ("audit_event", "audit_event_subject", "audit_seal", "audit_checkpoint")


def append_only_grants_sql(role: str) -> list[str]:
    """Statements that leave `role` only INSERT and SELECT on the audit tables (and UPDATE on the lease row).

    Run by the table owner. `role` must be a plain lower-case identifier; it is interpolated, not bound.
    """
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError("role must be a lower-case SQL identifier")
    tables = ", ".join(APPEND_ONLY_TABLES)
    return [
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {tables} FROM {role}",
        f"GRANT INSERT, SELECT ON {tables} TO {role}",
        f"REVOKE DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_sealer_lease FROM {role}",
        f"GRANT INSERT, SELECT, UPDATE ON audit_sealer_lease TO {role}",
    ]


class ReviewMark(Base):
    """A data-protection officer's review of one event from the review queue (statutory shares, break-glass uses).

    Marks live beside the log, never in it: the event itself stays as sealed. The review is itself an audit event.
    """

    __tablename__ = "audit_review_mark"

    # Whose trail the reviewed event is in; row-level security keys on it, as on audit_event.
    log_tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("audit_event.id"), unique=True)
    reviewer_kind: Mapped[str] = mapped_column(String(8))
    reviewer_id: Mapped[uuid.UUID] = mapped_column()
    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    note: Mapped[str | None] = mapped_column(Text, default=None)


class AuditVerification(Base):
    """One verification of the live log (`casebridge audit verify` or a DPO's "verify now"), kept for the console.

    The whole log is verified, every tenant's events together, so the row belongs to the platform: it records only
    counts and the recomputed root, never who asked (the asking DPO's own trail records that) or what was found.
    """

    __tablename__ = "audit_verification"

    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    trigger: Mapped[str] = mapped_column(String(16))  # "cli" | "console"
    ok: Mapped[bool] = mapped_column()
    size: Mapped[int] = mapped_column(_POSITION)
    root: Mapped[bytes] = mapped_column(LargeBinary(HASH_SIZE))
    problems: Mapped[int] = mapped_column(Integer)
    pending: Mapped[int] = mapped_column(Integer)
    checkpoints: Mapped[int] = mapped_column(Integer)
