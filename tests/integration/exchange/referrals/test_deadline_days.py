"""Deadline days made before they were days: referrals stored by an earlier release (migration 0018) and envelopes
from an older node, which carry instants only, still show the day their sender picked."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import command
from sqlalchemy import Connection, select

from exchange.referrals.models import Referral
from exchange.transport.envelopes import EnvelopeType
from gateway.db import alembic_config, upgrade_schema
from gateway.runtime import Runtime
from tenants import services
from tenants.calendar import end_of_day, time_zone
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session
from tests.factories import forged_envelope
from tests.integration.helpers.agencies import agency, open_case, referral_body, status_is
from tests.polling import eventually

MOSCOW = time_zone("Europe/Moscow")


async def _copies(runtime: Runtime, exchange_id: uuid.UUID) -> list[Referral]:
    async with platform_session(runtime.sessions) as session:
        return list(await session.scalars(select(Referral).where(Referral.exchange_id == exchange_id)))


async def test_the_upgrade_keeps_each_stored_deadline_s_day_and_ends_it_with_that_day_in_moscow(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
    assert sent.status_code == 201, sent.text
    exchange_id = uuid.UUID(sent.json()["id"])
    await eventually(lambda: status_is(opeka, str(exchange_id), "received"))

    # Back to the schema before deadline days, with the deadlines an earlier release's pages stored for a day
    # picked as 30 and 31 December: 23:59 UTC of it, which is already the next day in Moscow.
    referral = sa.table(
        "referral",
        sa.column("exchange_id"),
        sa.column("respond_by", DateTimeUTC(timezone=True)),
        sa.column("complete_by", DateTimeUTC(timezone=True)),
    )
    old_respond, old_complete = (
        dt.datetime(2026, 12, 30, 23, 59, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC),
    )

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0017")
        if connection.dialect.name == "postgresql":  # every tenant's rows, past row-level security
            connection.execute(sa.text("SELECT set_config('app.tenant_id', '*', true)"))
        connection.execute(referral.update().values(respond_by=old_respond, complete_by=old_complete))

    await runtime.workers.stop()  # as a deployment is upgraded: nothing else using the tables meanwhile
    async with runtime.engine.begin() as connection:
        await connection.run_sync(downgrade)
    await upgrade_schema(runtime.engine)

    copies = await _copies(runtime, exchange_id)
    assert len(copies) == 2  # the sender's and the recipient's
    for copy in copies:
        assert (copy.respond_by_date, copy.complete_by_date) == (dt.date(2026, 12, 30), dt.date(2026, 12, 31))
        assert copy.complete_by == end_of_day(dt.date(2026, 12, 31), MOSCOW)
        assert copy.respond_by == end_of_day(dt.date(2026, 12, 30), MOSCOW)
    async with platform_session(runtime.sessions) as session:
        tenant = await services.tenant_by_slug(session, "opeka")
    assert tenant.time_zone == "Europe/Moscow"
    shown = (await opeka.get(f"/api/v1/referrals/{exchange_id}")).json()
    assert (shown["respond_by_date"], shown["complete_by_date"]) == ("2026-12-30", "2026-12-31")


async def test_a_referral_from_an_older_node_shows_the_utc_days_its_instants_fall_on(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    async with platform_session(runtime.sessions) as session, session.begin():
        await services.set_tenant_time_zone(session, slug="opeka", time_zone="Asia/Vladivostok")
    now = dt.datetime.now(dt.UTC)
    year = now.year + 1
    body: dict[str, Any] = {
        "referral_id": str(uuid.uuid4()),
        "case_ref": "CB-2026-000001",
        "kind": "referral",
        "purpose": "social_support",
        "urgency": "urgent",
        "categories": ["identity"],
        "legal_basis": {"type": "consent"},
        "requested_at": now.isoformat(),
        # As an older node's pages stored 30 and 31 December: 23:59 UTC, the next morning in Vladivostok.
        "respond_by": f"{year}-12-30T23:59:00Z",
        "complete_by": f"{year}-12-31T23:59:00Z",
        "problem": "Семья нуждается в помощи",
        "subject_pseudonyms": [],
    }
    envelope = await forged_envelope(
        runtime, sender=centre.id, recipient=opeka.id, envelope_type=EnvelopeType.REFERRAL_REQUESTED, body=body
    )
    await runtime.inbox.receive(envelope.subject, envelope.token.encode())
    shown = (await opeka.get(f"/api/v1/referrals/{body['referral_id']}")).json()
    assert (shown["respond_by_date"], shown["complete_by_date"]) == (f"{year}-12-30", f"{year}-12-31")
    assert shown["complete_by"] == f"{year}-12-31T23:59:00Z"  # overdue when the sender's copy is

    # A current node's envelope carries the days, and they are shown as they are.
    body |= {"referral_id": str(uuid.uuid4()), "respond_by_date": f"{year}-12-29", "complete_by_date": f"{year}-12-30"}
    envelope = await forged_envelope(
        runtime, sender=centre.id, recipient=opeka.id, envelope_type=EnvelopeType.REFERRAL_REQUESTED, body=body
    )
    await runtime.inbox.receive(envelope.subject, envelope.token.encode())
    shown = (await opeka.get(f"/api/v1/referrals/{body['referral_id']}")).json()
    assert (shown["respond_by_date"], shown["complete_by_date"]) == (f"{year}-12-29", f"{year}-12-30")
