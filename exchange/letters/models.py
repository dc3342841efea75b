"""Tables of the letters area: each tenant's letter register and prefix, and the letter of each referral copy."""

from __future__ import annotations

import datetime as dt
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, TenantScoped


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
