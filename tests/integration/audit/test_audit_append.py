"""Appending on SQLite and PostgreSQL: an event commits with its transaction, and only with it.

``AuditLog.append`` queues the event's rows in the session and writes them with one insert per table where the
unit of work would have flushed objects: before commit, before a savepoint begins or is released, before any ORM
statement. These tests hold that to what callers rely on.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from audit.events import Action, Actor, AuditEventRecord, Outcome
from audit.models import AuditEvent, AuditEventSubject
from audit.pending import add_rows, pending_events
from audit.services import AuditLog, event_rows
from gateway.app import build_runtime
from gateway.runtime import Runtime
from tenants import services
from tenants.models import Tenant, TenantKind
from tenants.persistence import platform_session, tenant_session
from tests.conftest import settings_for

ACTOR = Actor(kind="user", id=uuid.UUID("01960000-0000-7000-8000-0000000000a1"), tenant_id=None, role="intake")


@pytest.fixture
async def runtime(database_url: str, _schema: None, tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings_for(database_url, tmp_path / "var", None))
    yield runtime
    await runtime.engine.dispose()


def append(runtime: Runtime, session: AsyncSession, tenant_id: uuid.UUID | None = None, **extra: int) -> uuid.UUID:
    audit: AuditLog = runtime.exchange.audit
    record = audit.append(
        session,
        action=Action.EXCHANGE_REFERRAL_READ,
        outcome=Outcome.SUCCESS,
        actor=ACTOR,
        log_tenant_id=tenant_id,
        resource_type="referral",
        resource_id=str(uuid.uuid4()),
        subjects=audit.pseudonyms(tenant_id, [uuid.uuid4(), uuid.uuid4()]) if tenant_id else (),
        extra=dict(extra),
    )
    return record.id


async def stored(runtime: Runtime) -> dict[uuid.UUID, int]:
    """Every stored event and how many subject rows it has."""
    async with platform_session(runtime.sessions) as session:
        rows = await session.execute(
            select(AuditEvent.id, func.count(AuditEventSubject.id))
            .outerjoin(AuditEventSubject, AuditEventSubject.event_id == AuditEvent.id)
            .group_by(AuditEvent.id)
        )
        return {event_id: subjects for event_id, subjects in rows}


async def new_tenant(session: AsyncSession, runtime: Runtime, slug: str) -> Tenant:
    return await services.create_tenant(
        session, runtime.keyring, slug=slug, name=slug, kind=TenantKind.SOCIAL_CENTRE, region="Центральный район"
    )


async def test_events_commit_with_the_change_and_carry_their_subjects(runtime: Runtime) -> None:
    async with platform_session(runtime.sessions) as session, session.begin():
        tenant = await new_tenant(session, runtime, "semya")
        first = append(runtime, session, tenant.id)
        second = append(runtime, session)
        assert pending_events(session) == 2
    assert await stored(runtime) == {first: 2, second: 0}


async def test_a_transaction_that_rolls_back_takes_its_events_along(runtime: Runtime) -> None:
    async def refused() -> None:
        async with platform_session(runtime.sessions) as session, session.begin():
            await new_tenant(session, runtime, "semya")
            append(runtime, session)
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await refused()
    assert await stored(runtime) == {}


async def test_a_savepoint_keeps_what_came_before_it_and_drops_only_its_own(runtime: Runtime) -> None:
    async def bad_envelope(session: AsyncSession) -> None:
        async with session.begin_nested():
            append(runtime, session, n=2)
            raise RuntimeError("bad envelope")

    async with platform_session(runtime.sessions) as session, session.begin():
        before = append(runtime, session, n=1)
        with pytest.raises(RuntimeError, match="bad envelope"):
            await bad_envelope(session)
        async with session.begin_nested():
            kept = append(runtime, session, n=3)
        after = append(runtime, session, n=4)
    assert set(await stored(runtime)) == {before, kept, after}


async def test_the_sessions_own_queries_see_its_events_before_commit(runtime: Runtime) -> None:
    async with platform_session(runtime.sessions) as session, session.begin():
        event_id = append(runtime, session)
        assert await session.scalar(select(func.count()).where(AuditEvent.id == event_id)) == 1
        assert pending_events(session) == 0


async def test_events_appended_before_any_statement_commit_with_the_first_transaction(runtime: Runtime) -> None:
    async with platform_session(runtime.sessions) as session:
        event_id = append(runtime, session)
        await session.commit()
    assert set(await stored(runtime)) == {event_id}


async def test_events_of_a_session_closed_without_commit_are_dropped(runtime: Runtime) -> None:
    async with platform_session(runtime.sessions) as session:
        append(runtime, session)
    assert pending_events(session) == 0  # not carried into the session's next transaction
    await session.commit()
    assert await stored(runtime) == {}


async def test_an_event_that_cannot_be_written_fails_the_commit_and_the_change(runtime: Runtime) -> None:
    record = AuditEventRecord(
        id=uuid.uuid4(),
        time=runtime.clock.now(),
        log_tenant_id=None,
        actor=ACTOR,
        action=Action.TENANTS_TOKEN_REFUSE,
        outcome=Outcome.DENIED,
    )

    async def twice() -> None:
        async with platform_session(runtime.sessions) as session, session.begin():
            await new_tenant(session, runtime, "semya")
            add_rows(session, event_rows(record)[0], [])
            add_rows(session, event_rows(record)[0], [])  # the same id twice: the insert fails

    with pytest.raises(IntegrityError):
        await twice()
    async with platform_session(runtime.sessions) as session:
        assert await session.scalar(select(func.count()).select_from(Tenant)) == 0
    assert await stored(runtime) == {}


async def test_many_events_in_one_transaction_are_one_insert_per_table(runtime: Runtime) -> None:
    inserts: list[str] = []

    def seen(_connection: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.startswith("INSERT"):
            inserts.append(statement.split("(")[0].split()[-1])

    async with platform_session(runtime.sessions) as session, session.begin():
        tenant = await new_tenant(session, runtime, "semya")
    event.listen(runtime.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with platform_session(runtime.sessions) as session, session.begin():
            ids = [append(runtime, session, tenant.id, n=n) for n in range(5)]
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", seen)
    assert inserts == ["audit_event", "audit_event_subject"]
    assert await stored(runtime) == dict.fromkeys(ids, 2)


async def test_a_tenant_session_appends_to_its_own_trail(runtime: Runtime) -> None:
    async with platform_session(runtime.sessions) as session, session.begin():
        tenant = await new_tenant(session, runtime, "semya")
    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        event_id = append(runtime, session, tenant.id)
    assert await stored(runtime) == {event_id: 2}
