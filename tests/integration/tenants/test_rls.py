"""PostgreSQL row-level security: a transaction scoped to one tenant cannot see or write another's rows."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from exchange import EXCHANGE_TENANT_TABLES
from gateway.db import create_engine, upgrade_schema
from gateway.settings import DatabaseSettings
from tenants import services
from tenants.clock import SystemClock
from tenants.keys import KeyRing, MasterKey
from tenants.models import TENANT_SCOPED_TABLES, Tenant, User
from tenants.persistence import make_sessionmaker, platform_session, tenant_session
from tests.pg import ThrowawayPostgres

pytestmark = pytest.mark.postgres


@pytest.fixture
async def engine(postgres: ThrowawayPostgres) -> AsyncIterator[AsyncEngine]:
    url = postgres.create_database(f"rls_{uuid.uuid4().hex[:12]}")
    engine = create_engine(DatabaseSettings(url=url, pool_size=2))
    await upgrade_schema(engine)
    yield engine
    await engine.dispose()


async def _two_tenants(sessions: async_sessionmaker[AsyncSession]) -> tuple[Tenant, User, Tenant, User]:
    ring = KeyRing(MasterKey(os.urandom(32)), SystemClock(), grace=dt.timedelta(days=1))
    async with platform_session(sessions) as session, session.begin():
        a = await services.create_tenant(session, ring, slug="semya", name="Семья", kind="social_centre")
        b = await services.create_tenant(session, ring, slug="opeka", name="Опека", kind="guardianship_body")
        user_a, _ = await services.create_user(
            session, tenant=a, email="a@semya.test", roles=["intake"], password="a long enough passphrase"
        )
        user_b, _ = await services.create_user(
            session, tenant=b, email="b@opeka.test", roles=["intake"], password="a long enough passphrase"
        )
    return a, user_a, b, user_b


async def test_the_app_role_is_subject_to_row_level_security(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        superuser, bypass = (
            await connection.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"))
        ).one()
    assert not superuser
    assert not bypass


async def test_every_tenant_scoped_table_has_a_forced_policy(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        with_tenant_id = set(
            (
                await connection.execute(
                    text(
                        "SELECT table_name FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND column_name = 'tenant_id'"
                    )
                )
            ).scalars()
        )
        forced = set(
            (
                await connection.execute(
                    text("SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity")
                )
            ).scalars()
        )
    assert with_tenant_id == set(TENANT_SCOPED_TABLES) | set(EXCHANGE_TENANT_TABLES)
    assert with_tenant_id <= forced


async def test_a_tenant_cannot_read_another_tenants_rows(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    a, user_a, b, user_b = await _two_tenants(sessions)

    async with tenant_session(sessions, a.id) as session:
        # Even a query that names the other tenant's row explicitly finds nothing.
        assert await session.scalar(select(User).where(User.id == user_b.id)) is None
        assert [u.id for u in await session.scalars(select(User))] == [user_a.id]
        raw = await session.execute(text("SELECT count(*) FROM user_account WHERE tenant_id = :b"), {"b": b.id})
        assert raw.scalar() == 0
        keys = await session.execute(text("SELECT DISTINCT tenant_id FROM tenant_key"))
        assert [str(t) for t in keys.scalars()] == [str(a.id)]

    async with sessions() as unscoped:
        assert list(await unscoped.scalars(select(User))) == []


async def test_a_tenant_cannot_write_rows_for_another_tenant(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    a, _, b, user_b = await _two_tenants(sessions)
    async with tenant_session(sessions, a.id) as session:
        with pytest.raises(DBAPIError, match="row-level security"):
            async with session.begin():
                session.add(User(tenant_id=b.id, email="intruder@opeka.test", roles=["intake"], password_hash="x"))
    async with tenant_session(sessions, a.id) as session, session.begin():
        updated = await session.execute(
            text("UPDATE user_account SET active = false WHERE id = :id"), {"id": user_b.id}
        )
        assert updated.rowcount == 0  # type: ignore[attr-defined]
    async with platform_session(sessions) as session:
        still = await session.scalar(select(User).where(User.id == user_b.id))
        assert still is not None
        assert still.active
