"""Proves ``tests/pg.py`` gives a working, non-superuser, fully disposable PostgreSQL cluster."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

try:
    from tests.pg import ThrowawayPostgres, postgres_available, process_alive
except ModuleNotFoundError:
    # pytest's default "prepend" import mode puts only tests/integration on sys.path, not the repository root, so
    # `tests` is not importable unless the pytest config sets `pythonpath = ["."]`.  Fall back to adding it here.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from tests.pg import ThrowawayPostgres, postgres_available, process_alive

pytestmark = pytest.mark.postgres


def _require_postgres() -> None:
    available, reason = postgres_available()
    if available:
        return
    # In CI a missing PostgreSQL is a broken pipeline, not a reason to go green with everything skipped.
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pg() -> Iterator[ThrowawayPostgres]:
    _require_postgres()
    with ThrowawayPostgres() as cluster:
        yield cluster


@pytest.mark.asyncio
async def test_app_role_is_not_superuser_and_can_use_its_database(pg: ThrowawayPostgres) -> None:
    engine = create_async_engine(pg.url)
    try:
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT current_user"))).scalar_one() == "casebridge"
            # Superusers and BYPASSRLS roles skip row-level security; the app role must be subject to it.
            rolsuper, rolbypassrls = (
                await conn.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"))
            ).one()
            assert rolsuper is False
            assert rolbypassrls is False

            await conn.execute(text("CREATE TABLE widget (id int PRIMARY KEY, tenant text NOT NULL)"))
            await conn.execute(
                text("INSERT INTO widget (id, tenant) VALUES (:id, :tenant)"),
                [{"id": 1, "tenant": "a"}, {"id": 2, "tenant": "b"}],
            )
            rows = (await conn.execute(text("SELECT id, tenant FROM widget ORDER BY id"))).all()
            assert [tuple(row) for row in rows] == [(1, "a"), (2, "b")]

            # And RLS really applies to this role (FORCE, because it owns the table).
            await conn.execute(text("ALTER TABLE widget ENABLE ROW LEVEL SECURITY"))
            await conn.execute(text("ALTER TABLE widget FORCE ROW LEVEL SECURITY"))
            await conn.execute(text("CREATE POLICY only_a ON widget USING (tenant = 'a')"))
            assert (await conn.execute(text("SELECT id FROM widget"))).scalars().all() == [1]
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_create_database_gives_a_fresh_database_owned_by_the_app_role(pg: ThrowawayPostgres) -> None:
    url = pg.create_database("pg_fixture_extra")
    assert url == f"postgresql+asyncpg://casebridge@127.0.0.1:{pg.port}/pg_fixture_extra"
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            row = (await conn.execute(text("SELECT current_user, current_database()"))).one()
            assert tuple(row) == ("casebridge", "pg_fixture_extra")
            owner = (
                await conn.execute(
                    text(
                        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
                    )
                )
            ).scalar_one()
            assert owner == "casebridge"
            # Fresh: the table created in the main database is not here, and the owner can create its own.
            assert (await conn.execute(text("SELECT to_regclass('widget')"))).scalar_one() is None
            await conn.execute(text("CREATE TABLE t (x int)"))
    finally:
        await engine.dispose()

    with pytest.raises(ValueError, match="database name"):
        pg.create_database("Robert'); DROP TABLE students;--")


def test_stop_kills_postmaster_and_removes_directory() -> None:
    _require_postgres()
    cluster = ThrowawayPostgres().start()
    try:
        base_dir = cluster.base_dir
        postmaster_pid = int((cluster.data_dir / "postmaster.pid").read_text().splitlines()[0])
        assert process_alive(postmaster_pid)
    finally:
        cluster.stop()

    assert not process_alive(postmaster_pid)
    assert not base_dir.exists()
    cluster.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        _ = cluster.url
