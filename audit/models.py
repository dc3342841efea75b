"""Audit tables: events are only ever inserted; sealing (sequence, chain, tree) lives in tables of its own."""

from __future__ import annotations

import datetime as dt
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

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
