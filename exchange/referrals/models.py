"""Tables of the referrals area: each side's copy of a referral, its timeline and its thread of messages."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exchange.cases.models import SealedRecord
from tenants.models import Base, TenantScoped


class ReferralKind(enum.StrEnum):
    REFERRAL = "referral"
    PETITION = "petition"
    DOCUMENT_REQUEST = "document_request"
    INFORMATION_LETTER = "information_letter"
    PLAN_TASK = "plan_task"


class OutcomeResult(enum.StrEnum):
    """How a completed referral ended (`Outcome.result` in exchange/referrals/schemas.py; `referral.outcome_result`)."""

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
    # Each deadline twice (tenants.calendar.Deadline): the day everyone is shown, picked at the sender, and the end
    # of that day in the sender's time zone, which overdue checks and filters compare with. The recipient gets both
    # in the envelope: it may not know the sender's zone, and must not show the day shifted into its own.
    respond_by: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    complete_by: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    respond_by_date: Mapped[dt.date] = mapped_column(Date)
    complete_by_date: Mapped[dt.date] = mapped_column(Date)
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
