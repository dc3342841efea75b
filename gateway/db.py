"""The database engine, schema migrations and the master key file: persistence wiring for the gateway."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.settings import DatabaseSettings, PathSettings
from tenants.keys import MASTER_KEY_BYTES, MasterKey
from tenants.persistence import sqlite_begin_immediate, sqlite_pragmas

if TYPE_CHECKING:
    # Alembic is imported inside the functions that use it: the command line's administrative commands open the
    # database but never migrate it, and loading Alembic would cost each of them about a tenth of a second.
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
log = logging.getLogger("casebridge.gateway")


class MasterKeyError(RuntimeError):
    """The master key file is missing, unreadable or too widely readable."""


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    if settings.is_sqlite:
        from gateway.sqlite_driver import one_hop_dbapi

        # One connection: SQLite admits one writer at a time anyway, and queueing for the pool is an asyncio wait,
        # where contending connections would poll SQLite's lock with sleeps of up to 100 ms. Nothing may open a
        # second session while holding one (see tenants.keys.PublishedKeys).
        engine = create_async_engine(
            settings.url,
            # Both aiosqlite's thread and the event loop run statements, one at a time (gateway/sqlite_driver.py).
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            module=one_hop_dbapi(),  # at most one hand-off to SQLite's thread per statement (gateway/sqlite_driver.py)
        )
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", sqlite_begin_immediate)
        return engine
    # A fixed pool: under a burst, requests queue for a connection rather than each opening one of its own and
    # closing it again (a PostgreSQL backend per request). No ping per checkout, which would cost a round trip on
    # every request: a connection broken by a database restart fails its request once and is replaced.
    return create_async_engine(
        settings.url, pool_size=settings.pool_size, max_overflow=0, pool_timeout=30, pool_recycle=3600
    )


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def upgrade_schema(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations on the engine's own connection (usable from inside a running event loop)."""
    from alembic import command

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def schema_is_current(engine: AsyncEngine) -> bool:
    """True when the database is at the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    def current(connection: Connection) -> bool:
        script = ScriptDirectory.from_config(alembic_config())
        return MigrationContext.configure(connection).get_current_heads() == tuple(script.get_heads())

    async with engine.connect() as connection:
        return await connection.run_sync(current)


def ensure_data_dir(paths: PathSettings) -> None:
    paths.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def load_master_key(paths: PathSettings) -> MasterKey:
    """Read the master key; create it only when it is the embedded default and does not exist yet."""
    path = paths.master_key_file
    if not path.exists():
        if not paths.master_key_generated:
            raise MasterKeyError(f"master key file {path} does not exist (CASEBRIDGE_MASTER_KEY_FILE)")
        ensure_data_dir(paths)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(MASTER_KEY_BYTES))
        log.warning("created a new master key file at %s; keep it safe and out of database backups", path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(f"master key file {path} must be readable by its owner only (chmod 600)")
    data = path.read_bytes()
    if len(data) != MASTER_KEY_BYTES:
        raise MasterKeyError(f"master key file {path} must hold exactly {MASTER_KEY_BYTES} bytes")
    return MasterKey(data)
