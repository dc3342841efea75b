"""The audit figures of `make bench`: append rate, seal rate, `audit verify` rate and the subject access report.

Runs in-process against a fresh SQLite database made by the migrations, through the same services the gateway
uses (AuditLog, Sealer, verify_database, exchange.dpo.subject_report). Nothing here asserts on time.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from audit.events import Action, Actor, AuditEventRecord, Outcome
from audit.models import AuditEvent
from audit.sealer import Sealer
from audit.services import AccessScope, RequestContext
from audit.verify import verify_database
from exchange import cases, dpo
from exchange.schemas import CaseIn, SubjectIn, SubjectRole
from gateway.app import build_runtime
from gateway.db import create_engine, ensure_data_dir, upgrade_schema
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants import services
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session, tenant_session
from tenants.principal import ActorKind, Principal

ORIGIN = "bench.casebridge.local/audit"
BULK_BATCH = 5000  # events per transaction when filling the log
SUBJECTS = 10_000  # distinct pseudonyms the filler spreads events over
CHILD_EVERY = 10_000  # one event in this many touches the child the report is about
REPORT_RUNS = 15
CONTEXT = RequestContext(request_id="bench", source="127.0.0.1", user_agent="casebridge-bench")


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


async def measure_audit(
    work: Path, *, log_events: int, append_events: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Fill a log of ``log_events`` events and measure each audit stage on it; returns the figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")} | {
        "CASEBRIDGE_DATA_DIR": str(work / "audit-var"), "CASEBRIDGE_BASE_URL": "http://127.0.0.1:1",
    }  # fmt: skip
    settings = Settings.from_env(env)
    ensure_data_dir(settings.paths)
    engine = create_engine(settings.database)
    await upgrade_schema(engine)
    await engine.dispose()
    runtime = build_runtime(settings)
    try:
        return await _measure(runtime, log_events=log_events, append_events=append_events, log=log)
    finally:
        await runtime.engine.dispose()


async def _measure(
    runtime: Runtime, *, log_events: int, append_events: int, log: Callable[[str], None]
) -> dict[str, Any]:
    async with platform_session(runtime.sessions) as session, session.begin():
        centre = await services.create_tenant(
            session, runtime.keyring, slug="semya", name="Bench centre", kind=TenantKind.SOCIAL_CENTRE,
            region="Центральный район",
        )  # fmt: skip
    dpo_principal = Principal(centre.id, ActorKind.USER, uuid.uuid4(), frozenset({Role.DPO}), None)
    specialist = Principal(centre.id, ActorKind.USER, uuid.uuid4(), frozenset({Role.SPECIALIST}), None)
    actor = Actor(kind="user", id=specialist.actor_id, tenant_id=centre.id, role=Role.SPECIALIST)
    audit = runtime.exchange.audit

    child_in = SubjectIn(ref="child 1", full_name="Бенч Ребёнок", role=SubjectRole.CHILD)
    async with tenant_session(runtime.sessions, centre.id) as session, session.begin():
        case = await cases.create_case(
            session, runtime.exchange, principal=specialist, audit=_scope(runtime, actor, centre.id),
            data=CaseIn(title="bench", subjects=[child_in]),
        )  # fmt: skip
    child = case.subjects[0].id
    (child_pseudonym,) = audit.pseudonyms(centre.id, [child])
    others = audit.pseudonyms(centre.id, [uuid.uuid4() for _ in range(SUBJECTS)])

    def event(n: int) -> AuditEventRecord:
        subject = child_pseudonym if n % CHILD_EVERY == 0 else others[n % len(others)]
        return audit.event(
            action=Action.EXCHANGE_REFERRAL_READ, outcome=Outcome.SUCCESS, actor=actor, log_tenant_id=centre.id,
            context=CONTEXT, resource_type="referral", resource_id=str(uuid.uuid4()), subjects=(subject,),
            purpose="bench",
        )  # fmt: skip

    def append(session: Any, n: int) -> None:
        record = event(n)
        audit.append(
            session, action=record.action, outcome=record.outcome, actor=record.actor,
            log_tenant_id=record.log_tenant_id, context=CONTEXT, resource_type="referral",
            resource_id=record.resource_id, subjects=record.subjects, purpose=record.purpose,
        )  # fmt: skip

    # Append: one event per transaction, as every request writes its own (SQLite commits serialise on one writer).
    started = time.perf_counter()
    for n in range(append_events):
        async with tenant_session(runtime.sessions, centre.id) as session, session.begin():
            append(session, n)
    append_s = time.perf_counter() - started
    log(f"audit: appended {append_events} events one per transaction in {append_s:.1f} s")

    # The rest of the log in bulk inserts: only to reach the size the verify and report figures are about.
    started = time.perf_counter()
    for first in range(append_events, log_events, BULK_BATCH):
        async with tenant_session(runtime.sessions, centre.id) as session, session.begin():
            await audit.append_many(session, [event(n) for n in range(first, min(first + BULK_BATCH, log_events))])
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

    async with platform_session(runtime.sessions) as session:
        total = await session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    started = time.perf_counter()
    result = await verify_database(runtime.sessions, origin=ORIGIN, now=runtime.clock.now() + dt.timedelta(hours=1))
    verify_s = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"audit verify found problems in the benchmark's own log: {result.problems[:3]}")
    log(f"audit: verified {total} events in {verify_s:.1f} s")

    report_ms: list[float] = []
    rows = 0
    for _ in range(REPORT_RUNS):
        started = time.perf_counter()
        async with tenant_session(runtime.sessions, centre.id) as session, session.begin():
            scope = _scope(runtime, Actor("user", dpo_principal.actor_id, centre.id, Role.DPO), centre.id,
                           Action.AUDIT_SUBJECT_REPORT)  # fmt: skip
            report = await dpo.subject_report(
                session, runtime.exchange, principal=dpo_principal, audit=scope, subject_id=child,
                report_format="json", cursor=None, limit=dpo.MAX_REPORT_PAGE,
            )  # fmt: skip
            scope.write(session)  # the report's own audit event, stored before the answer leaves, as in the API
        report_ms.append((time.perf_counter() - started) * 1000)
        rows = len(report.items)
    log(f"audit: subject report of {rows} rows over {total} events, median {statistics.median(report_ms):.1f} ms")

    return {
        "audit_append_per_s": _rate(append_events, append_s),
        "audit_verify_per_s": _rate(total, verify_s),
        "subject_report_ms": round(statistics.median(report_ms), 1),
        "audit_bulk_append_per_s": _rate(log_events - append_events, bulk_s),
        "audit_seal_per_s": _rate(sealed, seal_s),
        "audit_log_events": total,
        "subject_report_rows": rows,
        "subject_report_p90_ms": round(statistics.quantiles(report_ms, n=10)[-1], 1),
    }


def _scope(
    runtime: Runtime, actor: Actor, tenant_id: uuid.UUID, action: Action = Action.EXCHANGE_CASE_CREATE
) -> AccessScope:
    return AccessScope(log=runtime.exchange.audit, actor=actor, log_tenant_id=tenant_id, action=action, context=CONTEXT)
