"""Tables of the exchange: cases, subjects, consents, documents, referrals, timelines, and the bus's outbox/inbox."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exchange.cases.datakeys import WrappedKey
from tenants.models import Base, TenantScoped


class SubjectRole(enum.StrEnum):
    CHILD = "child"
    PARENT = "parent"
    GUARDIAN = "guardian"
    OTHER = "other"


class ReferralKind(enum.StrEnum):
    REFERRAL = "referral"
    PETITION = "petition"
    DOCUMENT_REQUEST = "document_request"
    INFORMATION_LETTER = "information_letter"
    PLAN_TASK = "plan_task"


class OutcomeResult(enum.StrEnum):
    """How a completed referral ended (`Outcome.result` in exchange/schemas.py; `referral.outcome_result`)."""

    RESOLVED = "resolved"
    PARTIALLY_RESOLVED = "partially_resolved"
    NOT_RESOLVED = "not_resolved"
    REFERRED_ELSEWHERE = "referred_elsewhere"
    NO_CONTACT = "no_contact"


class Urgency(enum.StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Side(enum.StrEnum):
    SENDER = "sender"
    RECIPIENT = "recipient"


class SealedRecord:
    """Mixin: a record whose sensitive fields are sealed under its own data key, wrapped by the tenant's KEK."""

    kek_kid: Mapped[str] = mapped_column(String(64))
    data_key_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once crypto-shredded
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    @property
    def wrapped_key(self) -> WrappedKey:
        if self.data_key_wrapped is None:
            raise LookupError("this record's data key has been destroyed")
        return WrappedKey(self.kek_kid, self.data_key_wrapped)


class Case(SealedRecord, TenantScoped, Base):
    __tablename__ = "case_file"
    __table_args__ = (UniqueConstraint("tenant_id", "reference"),)

    # A short, non-personal reference the partner sees ("case_ref"); the title itself is sealed.
    reference: Mapped[str] = mapped_column(String(32))
    key_worker_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    created_by_kind: Mapped[str] = mapped_column(String(8))
    created_by_id: Mapped[uuid.UUID] = mapped_column()


class Subject(SealedRecord, TenantScoped, Base):
    __tablename__ = "case_subject"
    __table_args__ = (UniqueConstraint("case_id", "ref"),)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("case_file.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class Consent(TenantScoped, Base):
    """ISO/IEC TS 27560-style consent record. Immutable once active, except for withdrawal."""

    __tablename__ = "consent"

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("case_file.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("case_subject.id", ondelete="CASCADE"), index=True)
    relation: Mapped[str] = mapped_column(String(16))
    # Sealed with the subject's data key: who signed is personal data.
    given_by_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    categories: Mapped[list[str]] = mapped_column(JSON)
    recipient_tenants: Mapped[list[str]] = mapped_column(JSON)
    recipient_kinds: Mapped[list[str]] = mapped_column(JSON)
    valid_from: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    valid_until: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    evidence_document_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("document.id"), default=None)
    evidence_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default="active")
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    withdrawal_reason_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class Document(SealedRecord, TenantScoped, Base):
    """A file (signed consent form, attachment) sealed at rest; its name and bytes are in `sealed`/`content`."""

    __tablename__ = "document"

    media_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("case_file.id", ondelete="CASCADE"), default=None)
    referral_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("referral.id", ondelete="CASCADE"), default=None)


class Referral(SealedRecord, TenantScoped, Base):
    """One side's copy of a referral. Both sides share `exchange_id`; each keeps its own status and timeline."""

    __tablename__ = "referral"
    __table_args__ = (
        UniqueConstraint("tenant_id", "exchange_id", name="uq_referral_exchange_id"),
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_referral_idempotency_key"),
        # The outgoing and incoming lists page by id within one tenant's side (newest first).
        Index("ix_referral_tenant_side_id", "tenant_id", "side", "id"),
    )

    exchange_id: Mapped[uuid.UUID] = mapped_column(index=True)
    side: Mapped[str] = mapped_column(String(16))
    from_tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"))
    to_tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"))
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("case_file.id"), default=None)  # sender only
    case_ref: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(64))
    urgency: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    respond_by: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    complete_by: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    categories: Mapped[list[str]] = mapped_column(JSON)
    subject_ids: Mapped[list[str]] = mapped_column(JSON)  # the sender's subject ids
    consent_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # {"type": "consent"} or {"type": "statutory", "reference", "justification"}; the justification is sealed.
    legal_basis: Mapped[str] = mapped_column(String(16))
    statutory_reference: Mapped[str | None] = mapped_column(String(300), default=None)
    review_required: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome_result: Mapped[str | None] = mapped_column(String(32), default=None)
    # The recipient's own legal basis for keeping the data, recorded by the recipient (reference only in clear).
    recipient_basis_reference: Mapped[str | None] = mapped_column(String(300), default=None)
    consent_withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # After a consent withdrawal the recipient keeps ids, status and timeline but no personal fields.
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # The recipient's service (its directory profile's code) the referral asks for; the directory's per-service
    # figures are computed from it. A category code, not personal data, so it stays in clear like `purpose`.
    service_code: Mapped[str | None] = mapped_column(String(64), default=None)


class TimelineEntry(TenantScoped, Base):
    __tablename__ = "referral_timeline"

    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referral.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    by_tenant_id: Mapped[uuid.UUID] = mapped_column()
    # Sealed with the referral's data key: a reason or outcome note may name people.
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class ThreadMessage(TenantScoped, Base):
    __tablename__ = "referral_message"
    __table_args__ = (UniqueConstraint("tenant_id", "message_id"),)

    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referral.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[uuid.UUID] = mapped_column()  # shared by both sides' copies
    author_tenant_id: Mapped[uuid.UUID] = mapped_column()
    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    attachment_ids: Mapped[list[str]] = mapped_column(JSON, default=list)


class Plan(SealedRecord, TenantScoped, Base):
    """A multi-agency plan (КИПР) for one case: its tasks go to partner agencies as referrals of kind plan_task."""

    __tablename__ = "plan"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key", name="uq_plan_idempotency_key"),)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("case_file.id"), index=True)
    case_ref: Mapped[str] = mapped_column(String(32))
    # The title is sealed under the plan's data key: it may name the family.
    period_from: Mapped[dt.date] = mapped_column(Date)
    period_until: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), index=True)
    auto_close: Mapped[bool] = mapped_column(Boolean, default=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    created_by_kind: Mapped[str] = mapped_column(String(8))
    created_by_id: Mapped[uuid.UUID] = mapped_column()
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)


class PlanTask(TenantScoped, Base):
    """One task of a plan; its status, deadlines and outcome live on the sender's copy of its referral."""

    __tablename__ = "plan_task"

    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plan.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referral.id"), unique=True)
    # Title and expected result, sealed under the plan's data key.
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class ReminderSent(TenantScoped, Base):
    """A deadline reminder emailed to one user: at most one per referral × kind × user, across restarts."""

    __tablename__ = "reminder_sent"
    __table_args__ = (UniqueConstraint("referral_id", "kind", "user_id", name="uq_reminder_sent_once"),)

    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referral.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set when the mail server refused or could not be reached: only such rows are tried again.
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)


class LetterSequence(TenantScoped, Base):
    """A tenant's letter register for one year: the last registration number it issued (gap-free, see letters)."""

    __tablename__ = "letter_sequence"
    __table_args__ = (UniqueConstraint("tenant_id", "year", name="uq_letter_sequence_year"),)

    year: Mapped[int] = mapped_column(Integer)
    last_number: Mapped[int] = mapped_column(Integer)


class LetterPrefix(TenantScoped, Base):
    """The prefix a tenant chose for its registration numbers; without a row it is derived from the tenant's slug."""

    __tablename__ = "letter_prefix"
    __table_args__ = (UniqueConstraint("tenant_id", name="uq_letter_prefix_tenant"),)

    prefix: Mapped[str] = mapped_column(String(16))


class Letter(TenantScoped, Base):
    """The signed letter of one side's copy of a referral; the PDF itself is a sealed Document."""

    __tablename__ = "referral_letter"
    __table_args__ = (
        UniqueConstraint("referral_id", name="uq_referral_letter_referral"),
        # The issuing side's register entry: a number is never given twice. Recipients keep what senders wrote.
        UniqueConstraint("tenant_id", "register_year", "register_number", name="uq_referral_letter_register"),
    )

    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referral.id", ondelete="CASCADE"))
    registration_number: Mapped[str] = mapped_column(String(64))
    register_year: Mapped[int | None] = mapped_column(Integer, default=None)  # issuing side only
    register_number: Mapped[int | None] = mapped_column(Integer, default=None)  # issuing side only
    language: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)  # None while pending
    signature: Mapped[str | None] = mapped_column(Text, default=None)  # detached compact JWS over the SHA-256
    signing_kid: Mapped[str | None] = mapped_column(String(64), default=None)
    verification: Mapped[str | None] = mapped_column(String(16), default=None)  # valid | invalid | missing
    document_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("document.id"), default=None)
    # pending (numbered, not laid out yet on the sender; announced, not arrived yet on the recipient) | ready
    status: Mapped[str] = mapped_column(String(16), default="ready", index=True)
    # Sender side, while pending: the letter's whole content (sealed under the referral's data key), so the
    # letter worker lays out exactly what was numbered in the sending transaction; cleared once stored.
    content_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    issued_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)  # the send
    # The letter worker's claim and backoff on the sender side (like the outbox relay's).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_error: Mapped[str | None] = mapped_column(String(64), default=None)


def sealed_context(kind: str, record_id: uuid.UUID) -> str:
    return f"casebridge/{kind}/v1/{record_id}"


EXCHANGE_TENANT_TABLES = (
    "case_file",
    "case_subject",
    "consent",
    "document",
    "referral",
    "referral_timeline",
    "referral_message",
    "outbox_envelope",
    "inbox_envelope",
    "plan",
    "plan_task",
    "reminder_sent",
    "letter_sequence",
    "letter_prefix",
    "referral_letter",
)
