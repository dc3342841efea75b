"""The one-hand-off SQLite adapter behaves as a DBAPI cursor does for everything SQLAlchemy reads of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import create_engine
from gateway.settings import DatabaseSettings
from gateway.sqlite_driver import OneHopCursor


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}", pool_size=1))
    yield engine
    await engine.dispose()


async def test_rows_counts_ids_and_many_come_back_as_from_sqlite(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.dbapi_connection.cursor(), OneHopCursor)  # type: ignore[union-attr]
        await connection.execute(text("CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
        inserted = await connection.execute(text("INSERT INTO person (name) VALUES ('Анна')"))
        assert inserted.lastrowid == 1
        await connection.execute(
            text("INSERT INTO person (name) VALUES (:name)"), [{"name": "Борис"}, {"name": "Вера"}]
        )
        changed = await connection.execute(text("UPDATE person SET name = name || '!' WHERE id > 1"))
        assert changed.rowcount == 2
        rows = (await connection.execute(text("SELECT id, name FROM person ORDER BY id"))).all()
        assert [tuple(row) for row in rows] == [(1, "Анна"), (2, "Борис!"), (3, "Вера!")]
        empty = await connection.execute(text("SELECT name FROM person WHERE id = 99"))
        assert empty.first() is None
        assert list(empty.keys()) == ["name"]


async def test_errors_surface_as_sqlalchemys_and_the_connection_stays_usable(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("CREATE TABLE person (name TEXT UNIQUE)"))
        await connection.execute(text("INSERT INTO person VALUES ('Анна')"))
        with pytest.raises(IntegrityError):
            await connection.execute(text("INSERT INTO person VALUES ('Анна')"))
        with pytest.raises(OperationalError):
            await connection.execute(text("SELECT * FROM nowhere"))
        assert (await connection.execute(text("SELECT count(*) FROM person"))).scalar() == 1
