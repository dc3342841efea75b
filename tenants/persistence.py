"""Database sessions bound to one tenant's rows (PostgreSQL row-level security) or to the whole platform."""

from __future__ import annotations

import uuid
from typing import Any, Final

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

# `session.info` key holding the scope of every transaction the session begins.
SCOPE_KEY: Final = "casebridge.tenant_scope"
# Value of `app.tenant_id` that lets platform work (sign-in lookups, the token endpoint, the bus
# consumer) see every tenant's rows. Request handling always narrows to one tenant.
PLATFORM_SCOPE: Final = "*"
# Execution option marking a connection whose transaction only reads.
READ_ONLY_OPTION: Final = "casebridge_read_only"


class ScopedSession(Session):
    """A session that tells PostgreSQL, at the start of each transaction, whose rows it may see."""


@event.listens_for(ScopedSession, "after_begin")
def _set_tenant_scope(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        return
    scope = session.info.get(SCOPE_KEY)
    # An unscoped session sets nothing, and the policies then show it no tenant rows at all.
    if scope is not None:
        connection.execute(text("SELECT set_config('app.tenant_id', :scope, true)"), {"scope": scope})


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=ScopedSession)


def tenant_session(factory: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID) -> AsyncSession:
    session = factory()
    session.info[SCOPE_KEY] = str(tenant_id)
    return session


def platform_session(factory: async_sessionmaker[AsyncSession]) -> AsyncSession:
    session = factory()
    session.info[SCOPE_KEY] = PLATFORM_SCOPE
    return session


def narrow_to_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Scope the session's next transactions to one tenant (after authentication has found it)."""
    session.info[SCOPE_KEY] = str(tenant_id)


def rls_policy_sql(table: str) -> list[str]:
    """Statements that confine `table` to the transaction's tenant; FORCE applies them to the owner too."""
    setting = "current_setting('app.tenant_id', true)"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING ({setting} = '{PLATFORM_SCOPE}' OR tenant_id::text = {setting}) "
        f"WITH CHECK ({setting} = '{PLATFORM_SCOPE}' OR tenant_id::text = {setting})",
    ]


# Writers queue for SQLite's single write lock; under a burst a wait of several seconds is normal, not an error.
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL for concurrent readers, enforced foreign keys, and a wait instead of 'database is locked'."""
    # casebridge issues BEGIN itself (see sqlite_begin_immediate), so the driver must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_begin_immediate(connection: Connection) -> None:
    """Start every SQLite transaction holding the write lock.

    SQLite has no row locks. A deferred transaction that reads a row and then writes it fails outright when
    another connection committed in between, and two of them can both act on the same read (one recovery code
    spent twice). Taking the lock at BEGIN serialises read-modify-write transactions instead; SQLite allows
    one writer at a time anyway, and readers outside transactions are not blocked under WAL.
    """
    deferred = connection.get_execution_options().get(READ_ONLY_OPTION)
    connection.exec_driver_sql("BEGIN DEFERRED" if deferred else "BEGIN IMMEDIATE")


async def read_only_platform_session(factory: async_sessionmaker[AsyncSession]) -> AsyncSession:
    """A platform-scoped session for lookups only. On SQLite it begins DEFERRED and takes no write lock, so it does
    not hold up writers while it reads. Open it only while holding no other session: an SQLite process has one
    connection (gateway.db.create_engine)."""
    session = platform_session(factory)
    await session.connection(execution_options={READ_ONLY_OPTION: True})
    return session
