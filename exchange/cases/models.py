"""Tables of the cases area: cases, their subjects, the family's consents and the documents kept with them."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exchange.cases.datakeys import WrappedKey
from tenants.models import Base, TenantScoped


class SubjectRole(enum.StrEnum):
    CHILD = "child"
    PARENT = "parent"
    GUARDIAN = "guardian"
    OTHER = "other"


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
    __table_args__ = (
        UniqueConstraint("case_id", "ref"),
        Index("ix_case_subject_name_lookup", "tenant_id", "name_lookup"),
    )

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("case_file.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # Keyed digests a DPO finds the person by (exchange/cases/lookup.py); never the name or SNILS themselves.
    name_lookup: Mapped[str | None] = mapped_column(String(64), default=None)
    snils_lookup: Mapped[str | None] = mapped_column(String(64), default=None)


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
