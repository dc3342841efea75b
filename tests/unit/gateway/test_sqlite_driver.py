"""The SQLite adapter behaves as a DBAPI cursor does for everything SQLAlchemy reads of it, runs on the event loop
only what cannot wait for another connection's lock, and leaves the loop free while BEGIN IMMEDIATE waits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db import create_engine
from gateway.settings import DatabaseSettings
from gateway.sqlite_driver import OneHopCursor
from tenants.persistence import READ_ONLY_OPTION, SQLITE_BUSY_TIMEOUT_MS


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "driver.db"


@pytest.fixture
async def engine(database: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{database}", pool_size=1))
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


def _register_whose_thread(sync: Connection) -> None:
    """A function SQLite calls back: it tells which thread ran the statement."""
    sync.connection.dbapi_connection.create_function("whose_thread", 0, threading.get_ident)  # type: ignore[union-attr]


async def _threads(connection: AsyncConnection) -> tuple[int, int]:
    """The threads a SELECT and an INSERT on `connection` ran on, as SQLite itself saw them."""
    await connection.run_sync(_register_whose_thread)
    selected = int((await connection.execute(text("SELECT whose_thread()"))).scalar_one())
    await connection.execute(text("INSERT INTO seen SELECT whose_thread()"))
    inserted = int((await connection.execute(text("SELECT max(thread) FROM seen"))).scalar_one())
    return selected, inserted


async def test_only_what_cannot_wait_for_a_lock_runs_on_the_event_loop(engine: AsyncEngine) -> None:
    loop_thread = threading.get_ident()
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE seen (thread INTEGER)"))
    async with engine.connect() as connection:
        await connection.execution_options(**{READ_ONLY_OPTION: True})  # its transaction begins DEFERRED
        selected, inserted = await _threads(connection)
        await connection.commit()
    # A read-only transaction's SELECT takes no lock a writer holds; a write in it might wait, on SQLite's thread.
    assert selected == loop_thread
    assert inserted != loop_thread
    async with engine.begin() as connection:  # BEGIN IMMEDIATE (tenants.persistence.sqlite_begin_immediate)
        assert await _threads(connection) == (loop_thread, loop_thread)
    async with engine.connect() as connection:
        # The commits that ran on the event loop are durable: a new transaction reads both rows.
        assert (await connection.execute(text("SELECT count(*) FROM seen"))).scalar() == 2


async def test_a_rollback_on_the_event_loop_leaves_nothing_behind(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE person (name TEXT)"))
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO person VALUES ('Анна')"))
        await connection.rollback()  # ROLLBACK of a transaction holding the write lock, on the event loop
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM person"))).scalar() == 0


async def test_waiting_for_another_process_s_write_lock_leaves_the_event_loop_free(
    engine: AsyncEngine, database: Path
) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE person (name TEXT)"))
    other = sqlite3.connect(database, isolation_level=None)  # another process's connection, as the CLI's would be
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO person VALUES ('Анна')")

    async def insert() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO person VALUES ('Борис')"))

    waiting = asyncio.create_task(insert())
    # The insert's BEGIN IMMEDIATE found the lock held (at once, with no busy timeout) and waits for it on SQLite's
    # thread: meanwhile other coroutines keep running.
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not waiting.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(waiting, timeout=30)
    async with engine.connect() as connection:
        names = (await connection.execute(text("SELECT name FROM person ORDER BY name"))).scalars().all()
    assert names == ["Анна", "Борис"]


async def test_the_busy_timeout_is_back_after_a_begin_tried_without_it(engine: AsyncEngine) -> None:
    """BEGIN IMMEDIATE is tried on the event loop with no busy timeout; what follows waits as configured."""
    async with engine.begin() as connection:
        timeout = (await connection.execute(text("PRAGMA busy_timeout"))).scalar_one()
    assert timeout == SQLITE_BUSY_TIMEOUT_MS
