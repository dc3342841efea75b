"""Deadline reminders on the dashboard and by email, through a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import uuid
import zoneinfo
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from audit.events import Action
from audit.models import AuditEvent
from audit.services import AccessScope, RequestContext
from exchange.context import Context
from exchange.plans.mail import SmtpMailer, SmtpServer
from exchange.plans.models import ReminderSent
from exchange.plans.reminders import ReminderMail, reminders_for
from exchange.referrals.models import Referral
from gateway.app import build_runtime
from gateway.audit_capture import actor_of
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workers import WorkerName
from tenants.admin import set_active_by_operator
from tenants.models import Role, Tenant, TenantKind, User
from tenants.persistence import platform_session, tenant_session
from tenants.principal import ActorKind, Principal
from tests.environment import TravelClock
from tests.factories import make_user
from tests.integration.helpers.agencies import (
    CHILD_NAME,
    PARENT_NAME,
    Agency,
    agency,
    key_worker_referral,
)
from tests.integration.helpers.mail import Sink, settings_with, smtp
from tests.polling import eventually


@pytest.fixture
def mail_enabled() -> bool:
    return True


@pytest.fixture
async def settings(
    database_url: str, tmp_path: Path, nats_url: str, smtp_sink: tuple[Sink, int], mail_enabled: bool
) -> Settings:
    return await settings_with(
        database_url,
        tmp_path / "var",
        nats_url,
        CASEBRIDGE_REMINDER_INTERVAL_SECONDS="1",
        CASEBRIDGE_REMINDER_LEAD_HOURS="48",
        **(smtp(smtp_sink[1]) if mail_enabled else {}),
    )


async def centre_and_opeka(api: Any, runtime: Runtime) -> tuple[Agency, Agency]:
    """A social centre's specialist and a guardianship body's intake officer, each of their own agency."""
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    return centre, opeka


def smtp_mail(runtime: Runtime, clock: TravelClock, port: int) -> ReminderMail:
    server = SmtpServer("127.0.0.1", port, "cb@example.org", starttls=False)
    return ReminderMail(
        runtime.sessions,
        clock,
        SmtpMailer(server),
        deps=runtime.exchange,
        lead=runtime.settings.reminders.lead,
        escalate_after_days=runtime.settings.reminders.escalate_after_days,
        base_url=runtime.settings.server.base_url,
    )


async def staff(runtime: Runtime, agency_: Agency, role: str, address: str, language: str | None) -> User:
    async with platform_session(runtime.sessions) as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.id == agency_.id))
    assert tenant is not None
    user = await make_user(runtime, tenant, roles=[role], email=address)
    async with platform_session(runtime.sessions) as session, session.begin():
        row = await session.scalar(select(User).where(User.id == user.id))
        assert row is not None
        row.language = language
    return user


async def deadline_of(agency_: Agency, referral_id: str, name: str) -> dt.datetime:
    """The instant a referral's deadline ends: the end of its day in the sender's time zone (tenants.calendar)."""
    response = await agency_.get(f"/api/v1/referrals/{referral_id}")
    assert response.status_code == 200, response.text
    return dt.datetime.fromisoformat(response.json()[name])


def travel_to(clock: TravelClock, moment: dt.datetime) -> None:
    clock.advance(moment - clock.now())


async def dashboard(agency_: Agency) -> list[tuple[str, str, str]]:
    response = await agency_.get("/api/v1/reminders")
    assert response.status_code == 200, response.text
    return [(r["referral_id"], r["reminder"], r["side"]) for r in response.json()["items"]]


async def of_user(runtime: Runtime, user: User, role: str) -> list[tuple[str, str]]:
    principal = Principal(user.tenant_id, ActorKind.USER, user.id, frozenset({role}), None)
    # The reminders route's read, its event left unwritten: only what the person sees is compared.
    scope = AccessScope(
        log=runtime.exchange.audit,
        actor=actor_of(principal),
        log_tenant_id=user.tenant_id,
        action=Action.EXCHANGE_REMINDER_LIST,
        context=RequestContext(None, None, None),
    )
    async with tenant_session(runtime.sessions, user.tenant_id) as session:
        ctx = Context(session, runtime.exchange, principal, scope)
        items = await reminders_for(
            ctx,
            now=runtime.clock.now(),
            lead=runtime.settings.reminders.lead,
            escalate_after_days=runtime.settings.reminders.escalate_after_days,
        )
    return [(str(r.referral_id), r.reminder) for r in items]


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return f"{message['Subject']}\n{body.get_content()}"


async def test_reminders_are_shown_and_emailed_once(
    api: Any, runtime: Runtime, clock: TravelClock, smtp_sink: tuple[Sink, int]
) -> None:
    sink = smtp_sink[0]
    centre, opeka = await centre_and_opeka(api, runtime)
    key_worker = await staff(runtime, centre, Role.SPECIALIST, "worker@semya.example.org", None)
    intake = await staff(runtime, opeka, Role.INTAKE, "intake@opeka.example.org", "en")
    referral_id = await key_worker_referral(centre, opeka, key_worker)  # respond_by in 3 days, complete_by in 30
    respond_by = await deadline_of(centre, referral_id, "respond_by")
    complete_by = await deadline_of(centre, referral_id, "complete_by")

    # Before the lead time: nothing on anyone's dashboard, nothing mailed.
    assert await dashboard(opeka) == []
    assert await of_user(runtime, intake, Role.INTAKE) == []
    assert await runtime.reminders.run_once() == 0

    # 47 hours before respond_by: the recipient's intake officer must answer soon; the sender waits.
    travel_to(clock, respond_by - dt.timedelta(hours=47))
    assert await dashboard(opeka) == [(referral_id, "respond_due", "recipient")]
    assert await of_user(runtime, intake, Role.INTAKE) == [(referral_id, "respond_due")]
    assert await dashboard(centre) == []
    assert await of_user(runtime, key_worker, Role.SPECIALIST) == []

    # The gateway's own worker mails it, in the officer's language, with no family data in it.
    await eventually(lambda: _count(sink, 1))
    (message,) = sink.messages
    assert message["To"] == "intake@opeka.example.org"
    assert message["From"] == "casebridge@example.org"
    text = text_of(message)
    assert "the answer is due soon" in text
    assert referral_id in text
    assert f"http://localhost/referrals/{referral_id}" in text
    for private in (CHILD_NAME, PARENT_NAME, "Семья", "Иванов"):
        assert private not in text
    # Neither the next round nor a restarted gateway mails it again.
    assert await runtime.reminders.run_once() == 0
    restarted = build_runtime(runtime.settings, clock=clock, workers=())  # the same node, started again
    try:
        assert await restarted.reminders.run_once() == 0
    finally:
        await restarted.engine.dispose()
    assert len(sink.messages) == 1

    # After respond_by: overdue for the intake officer and, on the sending side, for the case's key worker.
    travel_to(clock, respond_by + dt.timedelta(hours=1))
    assert await dashboard(opeka) == [(referral_id, "respond_overdue", "recipient")]
    assert await dashboard(centre) == [(referral_id, "respond_overdue", "sender")]
    assert await of_user(runtime, key_worker, Role.SPECIALIST) == [(referral_id, "respond_overdue")]
    await eventually(lambda: _count(sink, 3))
    by_recipient = {m["To"]: text_of(m) for m in sink.messages[1:]}
    assert "срок ответа истёк" in by_recipient["worker@semya.example.org"]
    assert "the answer is overdue" in by_recipient["intake@opeka.example.org"]

    # Accepted, the answer is no longer due; two days before complete_by both sides see completion coming.
    accepted = await opeka.post(f"/api/v1/referrals/{referral_id}/transition", {"to": "accepted"})
    assert accepted.status_code == 200, accepted.text
    assert await dashboard(opeka) == []

    async def sender_sees_accepted() -> bool:
        return bool((await centre.get(f"/api/v1/referrals/{referral_id}")).json()["status"] == "accepted")

    await eventually(sender_sees_accepted)
    travel_to(clock, complete_by - dt.timedelta(hours=47))
    assert await dashboard(opeka) == [(referral_id, "complete_due", "recipient")]
    assert await dashboard(centre) == [(referral_id, "complete_due", "sender")]
    await eventually(lambda: _count(sink, 5))

    async def all_recorded() -> list[ReminderSent] | None:
        async with platform_session(runtime.sessions) as session:
            rows = list(await session.scalars(select(ReminderSent)))
        return rows if all(r.sent_at is not None for r in rows) else None

    rows = await eventually(all_recorded)
    assert sorted((r.kind, r.user_id == key_worker.id) for r in rows) == [
        ("complete_due", False),
        ("complete_due", True),
        ("respond_due", False),
        ("respond_overdue", False),
        ("respond_overdue", True),
    ]
    assert all(r.last_error is None and r.attempts == 1 for r in rows)
    assert await runtime.reminders.run_once() == 0
    assert len(sink.messages) == 5


@pytest.mark.parametrize("mail_enabled", [False])
async def test_without_smtp_reminders_are_shown_but_not_mailed(
    api: Any, runtime: Runtime, clock: TravelClock, smtp_sink: tuple[Sink, int]
) -> None:
    centre, opeka = await centre_and_opeka(api, runtime)
    key_worker = await staff(runtime, centre, Role.SPECIALIST, "worker@semya.example.org", None)
    await staff(runtime, opeka, Role.INTAKE, "intake@opeka.example.org", None)
    referral_id = await key_worker_referral(centre, opeka, key_worker)
    travel_to(clock, await deadline_of(centre, referral_id, "respond_by") + dt.timedelta(hours=1))
    assert await dashboard(opeka) == [(referral_id, "respond_overdue", "recipient")]
    assert not runtime.reminders.enabled
    assert WorkerName.REMINDERS not in runtime.workers
    assert await runtime.reminders.run_once() == 0
    async with platform_session(runtime.sessions) as session:
        assert list(await session.scalars(select(ReminderSent))) == []
    assert smtp_sink[0].messages == []


async def _count(sink: Sink, n: int) -> bool:
    assert len(sink.messages) <= n, [m["Subject"] for m in sink.messages]
    return len(sink.messages) == n


@pytest.mark.parametrize("mail_enabled", [False])
async def test_a_refused_email_is_retried_later_and_then_sent_once(
    api: Any, runtime: Runtime, clock: TravelClock, smtp_sink: tuple[Sink, int]
) -> None:
    sink, port = smtp_sink
    centre, opeka = await centre_and_opeka(api, runtime)
    key_worker = await staff(runtime, centre, Role.SPECIALIST, "worker@semya.example.org", None)
    await staff(runtime, opeka, Role.INTAKE, "intake@opeka.example.org", None)
    referral_id = await key_worker_referral(centre, opeka, key_worker)
    travel_to(clock, await deadline_of(centre, referral_id, "respond_by") - dt.timedelta(hours=47))
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down, up = smtp_mail(runtime, clock, closed), smtp_mail(runtime, clock, port)
    assert await down.run_once() == 0
    async with platform_session(runtime.sessions) as session:
        (row,) = list(await session.scalars(select(ReminderSent)))
    assert row.sent_at is None
    assert row.last_error is not None
    assert "@" not in row.last_error
    # Too soon to try again; ten minutes later the server is back and the message goes, once.
    assert await up.run_once() == 0
    clock.advance(dt.timedelta(minutes=11))
    assert await up.run_once() == 1
    assert await up.run_once() == 0
    assert [m["To"] for m in sink.messages] == ["intake@opeka.example.org"]
    async with platform_session(runtime.sessions) as session:
        (row,) = list(await session.scalars(select(ReminderSent)))
    assert row.sent_at is not None
    assert row.attempts == 2


async def deactivate(runtime: Runtime, user: User) -> None:
    async with platform_session(runtime.sessions) as session, session.begin():
        row = await session.scalar(select(User).where(User.id == user.id))
        assert row is not None
        await set_active_by_operator(session, runtime.clock, user=row, active=False)


@pytest.mark.parametrize("mail_enabled", [False])
async def test_a_deactivated_person_s_reminders_go_to_colleagues(
    api: Any, runtime: Runtime, clock: TravelClock, smtp_sink: tuple[Sink, int]
) -> None:
    sink, port = smtp_sink
    centre, opeka = await centre_and_opeka(api, runtime)
    key_worker = await staff(runtime, centre, Role.SPECIALIST, "worker@semya.example.org", None)
    colleague = await staff(runtime, centre, Role.SPECIALIST, "colleague@semya.example.org", None)
    intake = await staff(runtime, opeka, Role.INTAKE, "intake@opeka.example.org", None)
    assignee = await staff(runtime, opeka, Role.SPECIALIST, "assignee@opeka.example.org", None)
    referral_id = await key_worker_referral(centre, opeka, key_worker)
    async with platform_session(runtime.sessions) as session, session.begin():
        copy = await session.scalar(
            select(Referral).where(Referral.tenant_id == opeka.id, Referral.exchange_id == uuid.UUID(referral_id))
        )
        assert copy is not None
        copy.assignee_id = assignee.id  # as the intake page's "assign" does
    # Past respond_by: overdue on both sides.
    travel_to(clock, await deadline_of(centre, referral_id, "respond_by") + dt.timedelta(hours=1))
    assert await of_user(runtime, assignee, Role.SPECIALIST) == [(referral_id, "respond_overdue")]
    assert await of_user(runtime, intake, Role.INTAKE) == []
    assert await of_user(runtime, key_worker, Role.SPECIALIST) == [(referral_id, "respond_overdue")]
    assert await of_user(runtime, colleague, Role.SPECIALIST) == []

    # The assignee and the key worker leave: the intake officers and, with no supervisor, the specialists take over.
    await deactivate(runtime, assignee)
    await deactivate(runtime, key_worker)
    assert await of_user(runtime, intake, Role.INTAKE) == [(referral_id, "respond_overdue")]
    assert await of_user(runtime, colleague, Role.SPECIALIST) == [(referral_id, "respond_overdue")]
    assert await smtp_mail(runtime, clock, port).run_once() == 2
    assert sorted(m["To"] for m in sink.messages) == ["colleague@semya.example.org", "intake@opeka.example.org"]

    # Once the agency has a supervisor, the supervisor is the one reminded of its outgoing referrals.
    await staff(runtime, centre, Role.SUPERVISOR, "head@semya.example.org", None)
    clock.advance(dt.timedelta(days=1))
    assert await of_user(runtime, colleague, Role.SPECIALIST) == []
    assert await smtp_mail(runtime, clock, port).run_once() == 1
    assert sink.messages[-1]["To"] == "head@semya.example.org"


@pytest.mark.parametrize("mail_enabled", [False])
async def test_a_message_that_cannot_be_built_is_recorded_and_the_rest_still_go(
    api: Any, runtime: Runtime, clock: TravelClock, smtp_sink: tuple[Sink, int], caplog: pytest.LogCaptureFixture
) -> None:
    sink, port = smtp_sink
    centre, opeka = await centre_and_opeka(api, runtime)
    key_worker = await staff(runtime, centre, Role.SPECIALIST, "worker@semya.example.org", None)
    broken = await staff(runtime, opeka, Role.INTAKE, "broken@opeka.example.org", None)
    await staff(runtime, opeka, Role.INTAKE, "intake@opeka.example.org", None)
    referral_id = await key_worker_referral(centre, opeka, key_worker)
    # An address stored before it was checked: an email header refuses it (ValueError, not a MailError).
    bad_address = "broken@opeka.example.org\r\nBcc: someone@example.org"
    async with platform_session(runtime.sessions) as session, session.begin():
        row = await session.scalar(select(User).where(User.id == broken.id))
        assert row is not None
        row.email = bad_address
    travel_to(clock, await deadline_of(centre, referral_id, "respond_by") + dt.timedelta(hours=1))
    mail = smtp_mail(runtime, clock, port)
    with caplog.at_level(logging.WARNING):
        assert await mail.run_once() == 2
    assert sorted(m["To"] for m in sink.messages) == ["intake@opeka.example.org", "worker@semya.example.org"]
    async with platform_session(runtime.sessions) as session:
        failed = await session.scalar(select(ReminderSent).where(ReminderSent.user_id == broken.id))
    assert failed is not None
    assert (failed.sent_at, failed.last_error, failed.attempts) == (None, "ValueError", 1)
    assert "broken@" not in caplog.text
    assert "someone@" not in caplog.text
    # It is tried again later like a refused message, and fails the same way; the others are not sent twice.
    clock.advance(dt.timedelta(minutes=11))
    assert await mail.run_once() == 0
    async with platform_session(runtime.sessions) as session:
        failed = await session.scalar(select(ReminderSent).where(ReminderSent.user_id == broken.id))
    assert failed is not None
    assert (failed.last_error, failed.attempts) == ("ValueError", 2)
    assert len(sink.messages) == 2


async def escalations(runtime: Runtime, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with platform_session(runtime.sessions) as session:
        rows = await session.scalars(
            select(AuditEvent.canonical).where(
                AuditEvent.log_tenant_id == tenant_id, AuditEvent.action == Action.EXCHANGE_REFERRAL_ESCALATE
            )
        )
        return [json.loads(r) for r in rows]


async def reminders_of(agency_: Agency) -> list[tuple[str, str, str | None]]:
    response = await agency_.get("/api/v1/reminders")
    assert response.status_code == 200, response.text
    return [(r["referral_id"], r["reminder"], r["escalated_on"]) for r in response.json()["items"]]


async def test_a_referral_left_overdue_is_escalated_to_the_supervisor_once(
    api: Any, runtime: Runtime, clock: TravelClock, smtp_sink: tuple[Sink, int]
) -> None:
    sink = smtp_sink[0]
    centre, opeka = await centre_and_opeka(api, runtime)
    head = await staff(runtime, centre, Role.SUPERVISOR, "head@semya.example.org", "en")
    await staff(runtime, opeka, Role.INTAKE, "intake@opeka.example.org", None)
    key_worker = await staff(runtime, centre, Role.SPECIALIST, "worker@semya.example.org", None)
    referral_id = await key_worker_referral(centre, opeka, key_worker)
    respond_by = await deadline_of(centre, referral_id, "respond_by")
    day = respond_by.astimezone(zoneinfo.ZoneInfo("Europe/Moscow")).date()  # the agencies' default time zone

    # The first day overdue (CASEBRIDGE_ESCALATE_AFTER_DAYS=1): the people responsible are reminded, no one else.
    travel_to(clock, respond_by + dt.timedelta(hours=23))
    assert await reminders_of(centre) == [(referral_id, "respond_overdue", None)]
    await eventually(lambda: _count(sink, 2))
    assert await escalations(runtime, centre.id) == []

    # Still overdue on the next day of the agency: escalated to its supervisor, on the dashboard and by email.
    travel_to(clock, respond_by + dt.timedelta(hours=25))
    escalated_on = (day + dt.timedelta(days=2)).isoformat()
    assert await reminders_of(centre) == [(referral_id, "respond_overdue", escalated_on)]
    assert await of_user(runtime, head, Role.SUPERVISOR) == [(referral_id, "respond_overdue")]
    await eventually(lambda: _count(sink, 3))
    escalation = sink.messages[-1]
    assert escalation["To"] == "head@semya.example.org"
    text = text_of(escalation)
    assert "the answer is long overdue and is escalated to you as supervisor" in text
    assert f"http://localhost/referrals/{referral_id}" in text
    for private in (CHILD_NAME, PARENT_NAME, "Семья", "Иванов"):
        assert private not in text
    # The receiving agency has no supervisor: its copy stays with its intake officer.
    assert await reminders_of(opeka) == [(referral_id, "respond_overdue", None)]

    # Recorded once, by casebridge itself; neither the next round nor another process escalates it again.
    (event,) = await escalations(runtime, centre.id)
    assert event["actor"]["kind"] == "system"
    assert event["resource"] == {"type": "referral", "id": referral_id}
    assert event["extra"]["supervisor"] == str(head.id)
    assert event["extra"]["escalated_on"] == escalated_on
    assert event["subjects"]
    assert await runtime.reminders.run_once() == 0
    restarted = build_runtime(runtime.settings, clock=clock, workers=())
    try:
        assert await restarted.reminders.run_once() == 0
    finally:
        await restarted.engine.dispose()
    assert len(sink.messages) == 3
    assert len(await escalations(runtime, centre.id)) == 1
