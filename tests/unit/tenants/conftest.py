"""Fixtures of the tenants layer's unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from tests.unit.tenants.tables import Base


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    """A session on an in-memory SQLite database holding the throwaway tables of tests/unit/tenants/tables.py."""
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with async_sessionmaker(engine)() as session:
        yield session
    await engine.dispose()
