"""Bulk referral history for the listing figures: copies of one referral the gateway wrote, made by the database.

Each seeded row is the sending tenant's copy of a referral as casebridge writes it, copied from a real one (same
case, recipient, categories, sealed contents and wrapped data key) with its own UUIDv7 ids, times and status.
The ids date from the two years before the run, so the benchmark's own referrals stay the newest. Listing reads
only columns in clear; the sealed contents are the template's, bound to the template's id, so opening a seeded
referral's detail would fail: these rows are history to list, not referrals to read. Their timelines, letters and
audit events are not seeded either, as no listing reads them.

`INSERT ... SELECT` over a generated series makes the rows inside the database, so no row crosses from Python:
on SQLite through the standard library's sqlite3 (ids from a registered function, in chunks), on PostgreSQL as
the cluster's superuser (the app role is subject to row-level security, which the seeding has no reason to go
through) on one connection per core, followed by `ANALYZE` as autovacuum would run soon after such a load.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import sqlite3
import time
import uuid

import asyncpg
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

from exchange.referrals.models import Referral
from exchange.referrals.status import Status
from tests.perf.processes import BenchError
from tests.pg import HOST, SUPERUSER, ThrowawayPostgres

HISTORY = dt.timedelta(days=730)
# The history a busy agency's outgoing box holds: mostly finished, some still in hand.
STATUS_MIX = (Status.COMPLETED,) * 5 + (
    Status.IN_PROGRESS,
    Status.ACCEPTED,
    Status.ON_HOLD,
    Status.RECEIVED,
    Status.REJECTED,
)
RESPOND_DAYS, COMPLETE_DAYS = 3, 30
PG_CONNECTIONS = 2  # one INSERT per core: the server makes the rows, so each insert is CPU-bound there
# Rows per SQLite transaction: the gateway's own writers (the sealer, the Workers) wait for at most one of them,
# well inside their 30 s busy timeout.
SQLITE_CHUNK = 100_000


def _status_sql(n: str) -> str:
    cases = " ".join(f"WHEN {k} THEN '{status}'" for k, status in enumerate(STATUS_MIX))
    return f"CASE {n} % {len(STATUS_MIX)} {cases} END"


def _outcome_sql(n: str) -> str:
    return f"CASE WHEN {n} % {len(STATUS_MIX)} < {STATUS_MIX.count(Status.COMPLETED)} THEN 'resolved' END"


def _span(count: int, now: dt.datetime) -> tuple[int, float]:
    """The first row's Unix milliseconds and the step between rows: `count` referrals evenly over HISTORY."""
    return int((now - HISTORY).timestamp() * 1000), HISTORY.total_seconds() * 1000 / max(count, 1)


# -- SQLite -------------------------------------------------------------------------------------------------------


def _sqlite_time(ms: str, days: int = 0) -> str:
    shift = f", '+{days} days'" if days else ""
    return f"strftime('%Y-%m-%d %H:%M:%S', {ms} / 1000, 'unixepoch'{shift}) || printf('.%06d', ({ms} % 1000) * 1000)"


_SQLITE_VARIED = {
    "id": "cb_uuid7(g.ms)",
    "exchange_id": "cb_uuid7(g.ms)",
    "created_at": _sqlite_time("g.ms"),
    "updated_at": _sqlite_time("g.ms"),
    "respond_by": _sqlite_time("g.ms", RESPOND_DAYS),
    "complete_by": _sqlite_time("g.ms", COMPLETE_DAYS),
    "respond_by_date": f"date(g.ms / 1000, 'unixepoch', '+{RESPOND_DAYS} days')",
    "complete_by_date": f"date(g.ms / 1000, 'unixepoch', '+{COMPLETE_DAYS} days')",
    "status": _status_sql("g.n"),
    "outcome_result": _outcome_sql("g.n"),
    "idempotency_key": "NULL",
    "request_hash": "NULL",
}


def _check_sqlite_times(connection: sqlite3.Connection) -> None:
    """The generated times must be spelled as the gateway's SQLAlchemy type stores them, or comparisons break."""
    ms = 1_733_000_000_123
    made = connection.execute(f"SELECT {_sqlite_time('?1')}", (ms,)).fetchone()[0]
    column = Referral.__table__.c["created_at"].type
    stored = column.dialect_impl(sqlite_dialect.dialect()).bind_processor(sqlite_dialect.dialect())
    expected = stored(dt.datetime.fromtimestamp(ms / 1000, dt.UTC)) if stored else None
    if made != expected:
        raise BenchError(f"seeded times would read {made!r} where the gateway stores {expected!r}")


def _seed_sqlite(path: str, tenant_id: uuid.UUID, count: int, now: dt.datetime) -> None:
    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    rng = random.Random(count)  # noqa: S311 - ids of benchmark rows, not secrets

    def uuid7(ms: int) -> bytes:
        """RFC 9562 UUIDv7 as the gateway stores ids (16 bytes): 48 bits of milliseconds, version, variant."""
        value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
        return value.to_bytes(16, "big")

    try:
        connection.create_function("cb_uuid7", 1, uuid7)
        connection.execute("PRAGMA busy_timeout=60000")
        # This connection only: no fsync at commit and no checkpoint midway; one checkpoint at the end.
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA wal_autocheckpoint=0")
        _check_sqlite_times(connection)
        template = connection.execute(
            "SELECT id FROM referral WHERE tenant_id = ? AND side = 'sender' ORDER BY id DESC LIMIT 1",
            (tenant_id.bytes,),
        ).fetchone()
        if template is None:
            raise BenchError("no referral of the sending tenant to copy (are ids no longer stored as 16 bytes?)")
        columns = [row[1] for row in connection.execute("PRAGMA table_info(referral)")]
        values = ", ".join(_SQLITE_VARIED.get(c, f"t.{c}") for c in columns)  # the table's own names: no quoting
        start_ms, step_ms = _span(count, now)
        statement = (
            "WITH RECURSIVE series(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM series WHERE n < ?), "
            "g AS (SELECT n, ? + CAST(n * ? AS INTEGER) AS ms FROM series) "
            f"INSERT INTO referral ({', '.join(columns)}) SELECT {values} FROM g, referral AS t WHERE t.id = ?"
        )
        for low in range(0, count, SQLITE_CHUNK):
            high = min(low + SQLITE_CHUNK, count)
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(statement, (low, high - 1, start_ms, step_ms, template[0]))
            connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


# -- PostgreSQL ---------------------------------------------------------------------------------------------------

# UUIDv7 text: 12 hex digits of Unix milliseconds, version 7, 12 random bits, variant 10 (8-b), 62 random bits.
_PG_UUID7 = (
    "(lpad(to_hex(g.ms), 12, '0') || '7' || substr(md5(random()::text), 1, 3) || "
    "to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15))::uuid"
)
_PG_VARIED = {
    "id": _PG_UUID7,
    "exchange_id": _PG_UUID7,
    "created_at": "to_timestamp(g.ms / 1000.0)",
    "updated_at": "to_timestamp(g.ms / 1000.0)",
    "respond_by": f"to_timestamp(g.ms / 1000.0) + interval '{RESPOND_DAYS} days'",
    "complete_by": f"to_timestamp(g.ms / 1000.0) + interval '{COMPLETE_DAYS} days'",
    "respond_by_date": f"(to_timestamp(g.ms / 1000.0) + interval '{RESPOND_DAYS} days')::date",
    "complete_by_date": f"(to_timestamp(g.ms / 1000.0) + interval '{COMPLETE_DAYS} days')::date",
    "status": _status_sql("g.n"),
    "outcome_result": _outcome_sql("g.n"),
    "idempotency_key": "NULL",
    "request_hash": "NULL",
}


async def _seed_postgres(
    cluster: ThrowawayPostgres, database: str, tenant_id: uuid.UUID, count: int, now: dt.datetime
) -> None:
    connections = [
        await asyncpg.connect(host=HOST, port=cluster.port, user=SUPERUSER, database=database, ssl=False)
        for _ in range(PG_CONNECTIONS)
    ]
    try:
        first = connections[0]
        template = await first.fetchval(
            "SELECT id FROM referral WHERE tenant_id = $1 AND side = 'sender' ORDER BY id DESC LIMIT 1", tenant_id
        )
        if template is None:
            raise BenchError("no referral of the sending tenant to copy")
        columns = [
            row["attname"]
            for row in await first.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'referral'::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum"
            )
        ]
        values = ", ".join(_PG_VARIED.get(c, f"t.{c}") for c in columns)  # the table's own names: no quoting
        statement = (
            f"INSERT INTO referral ({', '.join(columns)}) "
            f"SELECT {values} FROM (SELECT n, $2::bigint + (n * $3::float8)::bigint AS ms "
            "FROM generate_series($4::bigint, $5::bigint) AS n) AS g, referral AS t WHERE t.id = $1 ORDER BY g.n"
        )
        start_ms, step_ms = _span(count, now)
        bounds = [count * k // PG_CONNECTIONS for k in range(PG_CONNECTIONS + 1)]
        await asyncio.gather(
            *(
                connection.execute(statement, template, start_ms, step_ms, low, high - 1)
                for connection, low, high in zip(connections, bounds, bounds[1:], strict=False)
                if high > low
            )
        )
        await first.execute("ANALYZE referral")
    finally:
        for connection in connections:
            await connection.close()


async def seed_history(
    *, database_url: str, cluster: ThrowawayPostgres | None, tenant_id: uuid.UUID, count: int
) -> float:
    """Add `count` sent referrals to the tenant's outgoing box; returns the seconds it took."""
    began, now = time.perf_counter(), dt.datetime.now(dt.UTC)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        await asyncio.to_thread(_seed_sqlite, url.database or "", tenant_id, count, now)
    else:
        if cluster is None:
            raise BenchError("PostgreSQL seeding needs the benchmark's own cluster")
        await _seed_postgres(cluster, url.database or "", tenant_id, count, now)
    return time.perf_counter() - began
