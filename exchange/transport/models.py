"""The transport's tables: the outbox, applied envelopes, envelopes held for a peer's keys, dead letters."""

from __future__ import annotations

import datetime as dt
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, TenantScoped


class OutboxEnvelope(TenantScoped, Base):
    """An envelope committed with the change it announces, waiting to be published (transactional outbox)."""

    __tablename__ = "outbox_envelope"

    envelope_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    envelope_type: Mapped[str] = mapped_column(String(32))
    recipient_tenant_id: Mapped[uuid.UUID] = mapped_column()
    # The referral the envelope is about, so its receipt can move the sender's copy to "received".
    exchange_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    subject: Mapped[str] = mapped_column(String(128))
    token: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None, index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)


class InboxEnvelope(TenantScoped, Base):
    """An envelope this node has applied; the unique id makes redelivery a no-op."""

    __tablename__ = "inbox_envelope"

    envelope_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    envelope_type: Mapped[str] = mapped_column(String(32))
    sender_tenant_id: Mapped[uuid.UUID] = mapped_column()
    applied_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


class DeadLetter(Base):
    """An envelope that could not be opened, verified or applied: parked with the reason, never applied."""

    __tablename__ = "dead_letter"

    envelope_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    subject: Mapped[str] = mapped_column(String(128))
    recipient_tenant_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    sender_tenant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(255))
    token: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


class HeldEnvelope(Base):
    """An envelope from a peer node's agency that waits, unopened, until the peer's keys are fetched or accepted;
    then it is applied (exactly once, like any envelope) and the row goes."""

    __tablename__ = "held_envelope"

    envelope_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    subject: Mapped[str] = mapped_column(String(128))
    recipient_tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    sender_tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # exchange.transport.held.HoldReason
    reason: Mapped[str] = mapped_column(String(32))
    token: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
