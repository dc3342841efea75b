"""Throwaway tables for the unit tests of the tenants layer's database helpers (pagination, access functions)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Row(Base):
    """A row with a UUIDv7 id and a time, paged by either."""

    __tablename__ = "row"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Note(Base):
    """A tenant-scoped row, reached by an access function."""

    __tablename__ = "note"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    text: Mapped[str] = mapped_column(String(16))
