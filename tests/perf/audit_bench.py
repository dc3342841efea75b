"""The audit figures of `make bench`: append rate, seal rate, `audit verify` rate and the subject access report.

``measure_audit`` runs against one database (a fresh SQLite file, or the PostgreSQL database it is given, migrated
here) through the same services the gateway uses: AuditLog, Sealer, verify_database,
exchange.reports.dpo.subject_report.
Appends are one event per transaction, as requests write them: on SQLite from one session at a time (one writer
process, as casebridge runs there); on PostgreSQL from several processes with several sessions each, as a
multi-process deployment writes them. Nothing here asserts on time.

Alone, ``python -m tests.perf.audit_bench [--quick]`` measures both configurations (PostgreSQL in a throwaway
cluster with fsync and synchronous commit on) and prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from queue import Queue
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.events import Action, Actor, Outcome
from audit.models import AuditEvent
from audit.sealer import Sealer
from audit.services import AccessScope, AuditLog, RequestContext
from audit.verify import verify_database
from exchange.cases import services as cases
from exchange.cases.models import SubjectRole
from exchange.cases.schemas import CaseIn, SubjectIn
from exchange.context import Context
from exchange.reports import dpo
from gateway.app import build_runtime
from gateway.db import create_engine, ensure_data_dir, upgrade_schema
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants import services
from tenants.clock import SystemClock
from tenants.models import Role, TenantKind
from tenants.persistence import make_sessionmaker, platform_session, tenant_session
from tenants.principal import ActorKind, Principal

ORIGIN = "bench.casebridge.local/audit"
BULK_BATCH = 5000  # events per transaction when filling the log
SUBJECTS = 10_000  # distinct pseudonyms the filler spreads events over
CHILD_EVERY = 10_000  # one event in this many touches the child the report is about
REPORT_RUNS = 15
CONTEXT = RequestContext(request_id="bench", source="127.0.0.1", user_agent="casebridge-bench")
# PostgreSQL appends: `serve --workers 2` plus one `worker` are three processes writing events, each with requests
# in flight on several pooled connections (the referral benchmark drives 16 clients).
PG_WRITER_PROCESSES = 3
PG_SESSIONS_PER_WRITER = 8
WARM_UP_PER_SESSION = 20  # appends per session before the clock starts: connections opened, statements prepared


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _benchmark_env(work: Path, database_url: str | None, pool_size: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")} | {
        "CASEBRIDGE_DATA_DIR": str(work / "audit-var"),
        "CASEBRIDGE_BASE_URL": "http://127.0.0.1:1",
        "CASEBRIDGE_DB_POOL_SIZE": str(pool_size),
    }
    if database_url is not None:
        env["CASEBRIDGE_DATABASE_URL"] = database_url
    return env


async def measure_audit(
    work: Path,
    *,
    log_events: int,
    append_events: int,
    log: Callable[[str], None],
    database_url: str | None = None,
) -> dict[str, Any]:
    """Fill a log of ``log_events`` events and measure each audit stage on it; returns the figures.

    ``database_url``: an empty PostgreSQL database (the tests' throwaway cluster will do); None: a fresh SQLite file
    under ``work``. The log is the database's whole audit trail, so the database must hold no other events.
    """
    env = _benchmark_env(work, database_url, PG_SESSIONS_PER_WRITER)
    settings = Settings.from_env(env)
    ensure_data_dir(settings.paths)
    engine = create_engine(settings.database)
    await upgrade_schema(engine)
    await engine.dispose()
    runtime = build_runtime(settings)
    try:
        return await _measure(runtime, env, log_events=log_events, append_events=append_events, log=log)
    finally:
        await runtime.engine.dispose()


@dataclass(frozen=True)
class _Writers:
    """Who appends: ``processes`` processes (0: this one) with ``sessions`` transactions in flight in each."""

    processes: int
    sessions: int

    def describe(self) -> str:
        where = "this process" if self.processes == 0 else f"{self.processes} processes"
        return f"{where}, {self.sessions} session{'s' if self.sessions > 1 else ''} in flight each"


async def _measure(
    runtime: Runtime, env: dict[str, str], *, log_events: int, append_events: int, log: Callable[[str], None]
) -> dict[str, Any]:
    dialect = runtime.engine.dialect.name
    async with platform_session(runtime.sessions) as session, session.begin():
        centre = await services.create_tenant(
            session,
            runtime.keyring,
            slug=f"audit-bench-{uuid.uuid4().hex[:8]}",
            name="Bench centre",
            kind=TenantKind.SOCIAL_CENTRE,
            region="Центральный район",
        )
        server = await _server_settings(session) if dialect == "postgresql" else {}
    dpo_principal = Principal(centre.id, ActorKind.USER, uuid.uuid4(), frozenset({Role.DPO}), None)
    specialist = Principal(centre.id, ActorKind.USER, uuid.uuid4(), frozenset({Role.SPECIALIST}), None)
    actor = Actor(kind="user", id=specialist.actor_id, tenant_id=centre.id, role=Role.SPECIALIST)
    audit = runtime.exchange.audit

    child_in = SubjectIn(ref="child 1", full_name="Бенч Ребёнок", role=SubjectRole.CHILD)
    async with tenant_session(runtime.sessions, centre.id) as session, session.begin():
        ctx = Context(session, runtime.exchange, specialist, _scope(runtime, actor, centre.id))
        case = await cases.create_case(ctx, data=CaseIn(title="bench", subjects=[child_in]))
    child = case.subjects[0].id
    (child_pseudonym,) = audit.pseudonyms(centre.id, [child])
    others = audit.pseudonyms(centre.id, [uuid.uuid4() for _ in range(SUBJECTS)])
    subjects = [child_pseudonym if n % CHILD_EVERY == 0 else others[n % len(others)] for n in range(CHILD_EVERY)]
    feed = _EventFeed(audit, actor, centre.id, subjects)

    # Append: one event per transaction, as every request writes its own.
    if dialect == "sqlite":
        writers = _Writers(processes=0, sessions=1)  # one writer process; SQLite commits serialise anyway
        appended = await _append(runtime.sessions, runtime.engine.sync_engine, feed, centre.id, append_events, 1)
    else:
        writers = _Writers(processes=PG_WRITER_PROCESSES, sessions=PG_SESSIONS_PER_WRITER)
        appended = await _append_in_processes(env, feed, centre.id, append_events, writers)
    log(
        f"audit: appended {appended.events} events one per transaction in {appended.seconds:.1f} s "
        f"({writers.describe()})"
    )

    # The rest of the log in bulk inserts: only to reach the size the verify and report figures are about.
    started = time.perf_counter()
    for first in range(appended.events, log_events, BULK_BATCH):
        async with tenant_session(runtime.sessions, centre.id) as session, session.begin():
            await audit.append_many(session, [feed.event(n) for n in range(first, min(first + BULK_BATCH, log_events))])
    bulk_s = time.perf_counter() - started
    log(f"audit: filled the log to {log_events} events in {bulk_s:.1f} s")

    sealer = Sealer(runtime.sessions, runtime.keyring, runtime.clock, origin=ORIGIN, batch_size=10_000)
    started = time.perf_counter()
    sealed = 0
    while batch := await sealer.seal_once():
        sealed += batch
    await sealer.checkpoint_once()
    seal_s = time.perf_counter() - started
    log(f"audit: sealed {sealed} events and signed a checkpoint in {seal_s:.1f} s")

    if dialect == "postgresql":
        # Statistics for the tables just filled, as autovacuum would gather within its next minute; without them the
        # planner takes the fresh tables for empty ones.
        async with runtime.engine.connect() as connection:
            await connection.execute(text("ANALYZE audit_event, audit_event_subject, audit_seal"))
            await connection.commit()
    async with platform_session(runtime.sessions) as session:
        total = await session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    started, cpu_started = time.perf_counter(), time.process_time()
    result = await verify_database(runtime.sessions, origin=ORIGIN, now=runtime.clock.now() + dt.timedelta(hours=1))
    verify_s, verify_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    if not result.ok:
        raise RuntimeError(f"audit verify found problems in the benchmark's own log: {result.problems[:3]}")
    log(f"audit: verified {total} events in {verify_s:.1f} s ({verify_cpu_s:.1f} s of this process's CPU)")

    report_ms: list[float] = []
    rows = 0
    for _ in range(REPORT_RUNS):
        started = time.perf_counter()
        async with tenant_session(runtime.sessions, centre.id) as session, session.begin():
            scope = _scope(
                runtime,
                Actor("user", dpo_principal.actor_id, centre.id, Role.DPO),
                centre.id,
                Action.AUDIT_SUBJECT_REPORT,
            )
            ctx = Context(session, runtime.exchange, dpo_principal, scope)
            report = await dpo.subject_report(
                ctx, subject_id=child, report_format="json", cursor=None, limit=dpo.MAX_REPORT_PAGE
            )
            scope.write(session)  # the report's own audit event, stored before the answer leaves, as in the API
        report_ms.append((time.perf_counter() - started) * 1000)
        rows = len(report.items)
    log(f"audit: subject report of {rows} rows over {total} events, median {statistics.median(report_ms):.1f} ms")

    return {
        "audit_append_per_s": _rate(appended.events, appended.seconds),
        "audit_verify_per_s": _rate(total, verify_s),
        "subject_report_ms": round(statistics.median(report_ms), 1),
        "audit_database": runtime.engine.dialect.name,
        "audit_database_settings": server,
        "audit_append_writers": writers.describe(),
        "audit_append_p50_ms": appended.percentile_ms(50),
        "audit_append_p99_ms": appended.percentile_ms(99),
        "audit_sql_per_append": round(appended.statements / appended.events, 2),
        "audit_append_cpu_ms": round(appended.cpu_seconds * 1000 / appended.events, 3),
        "audit_bulk_append_per_s": _rate(log_events - appended.events, bulk_s),
        "audit_seal_per_s": _rate(sealed, seal_s),
        "audit_verify_cpu_s": round(verify_cpu_s, 2),
        "audit_log_events": total,
        "subject_report_rows": rows,
        "subject_report_p90_ms": round(statistics.quantiles(report_ms, n=10)[-1], 1),
    }


async def _server_settings(session: AsyncSession) -> dict[str, str]:
    """The PostgreSQL settings the append figure depends on, reported beside it."""
    names = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
    return {name: str(await session.scalar(text(f"SHOW {name}"))) for name in names}


class _EventFeed:
    """The events the benchmark writes: reads of a referral by one specialist, one subject each."""

    def __init__(self, audit: AuditLog, actor: Actor, tenant_id: uuid.UUID, subjects: list[str]) -> None:
        self.audit, self.actor, self.tenant_id, self.subjects = audit, actor, tenant_id, subjects

    def fields(self, n: int) -> dict[str, Any]:
        return {
            "action": Action.EXCHANGE_REFERRAL_READ,
            "outcome": Outcome.SUCCESS,
            "actor": self.actor,
            "log_tenant_id": self.tenant_id,
            "context": CONTEXT,
            "resource_type": "referral",
            "resource_id": str(uuid.uuid4()),
            "subjects": (self.subjects[n % len(self.subjects)],),
            "purpose": "bench",
        }

    def event(self, n: int) -> Any:
        return self.audit.event(**self.fields(n))


@dataclass(frozen=True)
class _Appended:
    events: int
    seconds: float
    started_at: float  # time.monotonic() when the clock started: system-wide on Linux, so processes line up
    statements: int  # statements the engine executed for them (cursor executes; COMMIT is the driver's own call)
    latencies: list[float]  # seconds per transaction
    cpu_seconds: float  # CPU of the appending processes over the timed window (not the database server's)

    def percentile_ms(self, percent: int) -> float:
        ordered = sorted(self.latencies)
        return round(ordered[min(len(ordered) - 1, len(ordered) * percent // 100)] * 1000, 2) if ordered else 0.0


async def _append(
    sessions: async_sessionmaker[AsyncSession],
    engine: Engine,
    feed: _EventFeed,
    tenant_id: uuid.UUID,
    count: int,
    in_flight: int,
    start: Callable[[], Any] | None = None,
) -> _Appended:
    """Append ``count`` events, one per transaction, from ``in_flight`` concurrent sessions of this process.

    ``start``, when given, is awaited after the warm-up and before the clock starts (other processes line up there).
    """
    statements = 0

    def counted(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    async def one(n: int) -> float:
        began = time.perf_counter()
        async with tenant_session(sessions, tenant_id) as session, session.begin():
            feed.audit.append(session, **feed.fields(n))
        return time.perf_counter() - began

    async def loop(lane: int, share: int, out: list[float]) -> None:
        for n in range(share):
            out.append(await one(lane + n * in_flight))

    await asyncio.gather(*(loop(lane, WARM_UP_PER_SESSION, []) for lane in range(in_flight)))
    if start is not None:
        await start()
    event.listen(engine, "before_cursor_execute", counted)
    latencies: list[list[float]] = [[] for _ in range(in_flight)]
    started_at, started, cpu_started = time.monotonic(), time.perf_counter(), time.process_time()
    try:
        await asyncio.gather(
            *(loop(lane, count // in_flight + (lane < count % in_flight), latencies[lane]) for lane in range(in_flight))
        )
    finally:
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        event.remove(engine, "before_cursor_execute", counted)
    flat = [latency for lane in latencies for latency in lane]
    return _Appended(
        events=len(flat),
        seconds=seconds,
        started_at=started_at,
        statements=statements,
        latencies=flat,
        cpu_seconds=cpu_seconds,
    )


async def _append_in_processes(
    env: dict[str, str], feed: _EventFeed, tenant_id: uuid.UUID, count: int, writers: _Writers
) -> _Appended:
    """Append ``count`` events from ``writers.processes`` fresh interpreters (spawned, as gateway processes are)."""
    context = multiprocessing.get_context("spawn")
    ready: Queue[str] = context.Queue()  # type: ignore[assignment]  # a process queue has the same interface
    results: Queue[dict[str, Any]] = context.Queue()  # type: ignore[assignment]
    go = context.Event()
    share = [count // writers.processes + (i < count % writers.processes) for i in range(writers.processes)]
    processes = [
        context.Process(
            target=_writer_process,
            args=(env, str(tenant_id), feed.actor, feed.subjects, share[i], writers.sessions, ready, go, results),
            daemon=True,
        )
        for i in range(writers.processes)
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            await asyncio.to_thread(ready.get, timeout=120)
        go.set()
        outcomes = [await asyncio.to_thread(results.get, timeout=600) for _ in processes]
    finally:
        for process in processes:
            await asyncio.to_thread(process.join, 30)
    if failed := [o["error"] for o in outcomes if "error" in o]:
        raise RuntimeError(f"an audit writer process failed: {failed[0]}")
    started_at = min(o["started"] for o in outcomes)
    return _Appended(
        events=sum(o["events"] for o in outcomes),
        seconds=max(o["ended"] for o in outcomes) - started_at,
        started_at=started_at,
        statements=sum(o["statements"] for o in outcomes),
        latencies=[latency for o in outcomes for latency in o["latencies"]],
        cpu_seconds=sum(o["cpu_seconds"] for o in outcomes),
    )


def _writer_process(
    env: dict[str, str],
    tenant_id: str,
    actor: Actor,
    subjects: list[str],
    count: int,
    in_flight: int,
    ready: Queue[str],
    go: ProcessEvent,
    results: Queue[dict[str, Any]],
) -> None:
    """One writer process: its own engine and sessions, as a gateway process has; reports its window on ``results``."""
    try:
        results.put(asyncio.run(_write(env, uuid.UUID(tenant_id), actor, subjects, count, in_flight, ready, go)))
    except Exception as exc:  # reported to the parent, which stops the benchmark with it
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        ready.put("failed")


async def _write(
    env: dict[str, str],
    tenant_id: uuid.UUID,
    actor: Actor,
    subjects: list[str],
    count: int,
    in_flight: int,
    ready: Queue[str],
    go: ProcessEvent,
) -> dict[str, Any]:
    engine = create_engine(Settings.from_env(env).database)
    try:
        # The parent made the pseudonyms; this process only writes events that carry them.
        feed = _EventFeed(AuditLog(SystemClock(), _pseudonyms_come_from_the_parent), actor, tenant_id, subjects)

        async def start() -> None:
            ready.put("ready")
            await asyncio.to_thread(go.wait)

        appended = await _append(
            make_sessionmaker(engine), engine.sync_engine, feed, tenant_id, count, in_flight, start
        )
    finally:
        await engine.dispose()
    return {
        "events": appended.events,
        "started": appended.started_at,
        "ended": appended.started_at + appended.seconds,
        "statements": appended.statements,
        "latencies": appended.latencies,
        "cpu_seconds": appended.cpu_seconds,
    }


def _pseudonyms_come_from_the_parent(_tenant_id: uuid.UUID) -> bytes:
    raise RuntimeError("the benchmark's writer processes take the pseudonyms the parent made")


def _scope(
    runtime: Runtime, actor: Actor, tenant_id: uuid.UUID, action: Action = Action.EXCHANGE_CASE_CREATE
) -> AccessScope:
    return AccessScope(log=runtime.exchange.audit, actor=actor, log_tenant_id=tenant_id, action=action, context=CONTEXT)


# -- standalone: both configurations ---------------------------------------------------------------------------------


async def _both(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from tests.pg import ThrowawayPostgres  # only the standalone run makes its own cluster

    log_events, append_events = (100_000, 3_000) if quick else (1_000_000, 20_000)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="casebridge-audit-bench-") as work:
        log("audit: embedded SQLite")
        figures["sqlite"] = await measure_audit(
            Path(work) / "sqlite", log_events=log_events, append_events=append_events, log=log
        )
        with ThrowawayPostgres() as cluster:
            await _durable(cluster.admin_url)
            log("audit: PostgreSQL")
            figures["postgresql"] = await measure_audit(
                Path(work) / "postgresql",
                log_events=log_events,
                append_events=append_events,
                log=log,
                database_url=cluster.url,
            )
    return figures


async def _durable(admin_url: str) -> None:
    """Undo the throwaway cluster's shortcuts (fsync off, asynchronous commit): appends are measured as committed."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                await connection.execute(text(f"ALTER SYSTEM SET {setting} = on"))
            await connection.execute(text("SELECT pg_reload_conf()"))
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a 100,000-event log instead of 1,000,000")
    args = parser.parse_args()
    figures = asyncio.run(_both(args.quick, lambda line: print(line, file=sys.stderr, flush=True)))
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
