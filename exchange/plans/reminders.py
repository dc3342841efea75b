"""Deadline reminders: who must act on which referral soon (or is late), for dashboards and by email; and the
escalation of a referral left overdue to the agency's supervisors."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.events import Action, Actor, Outcome
from exchange.cases.models import Case
from exchange.context import Context
from exchange.deps import ExchangeDeps
from exchange.plans.mail import Mailer, MailError
from exchange.plans.models import ReminderSent
from exchange.plans.schemas import ReminderOut
from exchange.referrals.models import Referral, ReferralKind, Side
from exchange.referrals.services import referral_pseudonyms
from exchange.referrals.status import AWAITING_ANSWER, IN_HAND
from tenants.calendar import DEFAULT_TIME_ZONE, format_day, time_zone, today_in
from tenants.clock import Clock
from tenants.models import Role, Tenant, TenantStatus, User
from tenants.persistence import platform_session
from tenants.principal import ActorKind

log = logging.getLogger("casebridge.exchange")


class ReminderKind(enum.StrEnum):
    """Append-only: values are stored with each email sent."""

    RESPOND_DUE = "respond_due"
    RESPOND_OVERDUE = "respond_overdue"
    COMPLETE_DUE = "complete_due"
    COMPLETE_OVERDUE = "complete_overdue"


class Escalation(enum.StrEnum):
    """Append-only, stored like ReminderKind: emailed to a supervisor when a referral is still overdue on its
    `escalation_day`."""

    RESPOND_ESCALATED = "respond_escalated"
    COMPLETE_ESCALATED = "complete_escalated"


ESCALATES: Final = {
    ReminderKind.RESPOND_OVERDUE: Escalation.RESPOND_ESCALATED,
    ReminderKind.COMPLETE_OVERDUE: Escalation.COMPLETE_ESCALATED,
}


# An email the mail server refused is tried again this many times, this long apart at least.
MAX_ATTEMPTS: Final = 5
RETRY_AFTER: Final = dt.timedelta(minutes=10)
# The web page of one referral, under the node's base URL.
REFERRAL_PAGE: Final = "/referrals/{id}"


@dataclass(frozen=True, slots=True)
class Due:
    """One referral needing attention, and the people responsible for it at this agency."""

    referral: Referral
    kind: ReminderKind
    deadline: dt.datetime
    users: frozenset[uuid.UUID]
    # Set once the referral is escalated: the agency's day it was, and the supervisors it went to.
    escalated_on: dt.date | None = None
    supervisors: frozenset[uuid.UUID] = frozenset()

    @property
    def deadline_date(self) -> dt.date:
        """The deadline's day, as its sender picked it: what a person is told."""
        answering = self.kind in (ReminderKind.RESPOND_DUE, ReminderKind.RESPOND_OVERDUE)
        return self.referral.respond_by_date if answering else self.referral.complete_by_date

    def view(self) -> ReminderOut:
        referral = self.referral
        counterpart = referral.to_tenant_id if referral.side == Side.SENDER else referral.from_tenant_id
        return ReminderOut(
            referral_id=referral.exchange_id,
            reminder=self.kind.value,
            side=referral.side,
            kind=referral.kind,
            status=referral.status,
            case_ref=referral.case_ref,
            urgency=referral.urgency,
            deadline=self.deadline,
            deadline_date=self.deadline_date,
            counterpart_tenant_id=counterpart,
            escalated_on=self.escalated_on,
        )


def reminder_kind(referral: Referral, now: dt.datetime, lead: dt.timedelta) -> tuple[ReminderKind, dt.datetime] | None:
    """What is due on this side's copy: the recipient answers by respond_by; both sides watch complete_by.

    "Due" runs from `lead` before a deadline up to and including the deadline itself; after it, "overdue" (the
    same rule as `exchange.referrals.services.is_overdue`).
    """
    if referral.status in AWAITING_ANSWER:
        if now > referral.respond_by:
            return ReminderKind.RESPOND_OVERDUE, referral.respond_by
        if referral.side == Side.RECIPIENT and now >= referral.respond_by - lead:
            return ReminderKind.RESPOND_DUE, referral.respond_by
        return None
    if referral.status in IN_HAND:
        if now > referral.complete_by:
            return ReminderKind.COMPLETE_OVERDUE, referral.complete_by
        if now >= referral.complete_by - lead:
            return ReminderKind.COMPLETE_DUE, referral.complete_by
    return None


def escalation_day(deadline_day: dt.date, after_days: int) -> dt.date:
    """The agency's day from which a referral still overdue is escalated: `after_days` full days after the first day
    it is overdue (0: that first day)."""
    return deadline_day + dt.timedelta(days=1 + after_days)


async def due_reminders(
    session: AsyncSession, *, tenant_id: uuid.UUID, now: dt.datetime, lead: dt.timedelta, escalate_after_days: int
) -> list[Due]:
    """Every reminder due in one tenant now, each with the users responsible for it, soonest deadline first.

    Recipient side: the assignee, or every intake officer while nobody is assigned. Sender side: the case's key
    worker, or the member of staff who opened the case. Only active users are reminded; when the person responsible
    has been deactivated, a reminder falls back to the active intake officers (recipient side) or to the active
    supervisors, else the active specialists (sender side), so that no deadline goes unwatched.

    A referral still overdue on its `escalation_day` in the agency's time zone is escalated to the agency's active
    supervisors not already responsible for it (none: it stays with the people responsible). Like the reminders,
    escalation is derived, never stored.
    """
    horizon = now + lead
    referrals = list(
        await session.scalars(
            select(Referral).where(
                Referral.tenant_id == tenant_id,
                or_(
                    and_(Referral.status.in_(AWAITING_ANSWER), Referral.respond_by <= horizon),
                    and_(Referral.status.in_(IN_HAND), Referral.complete_by <= horizon),
                ),
            )
        )
    )
    if not referrals:
        return []
    users = list(await session.scalars(select(User).where(User.tenant_id == tenant_id, User.active.is_(True))))
    active = {u.id for u in users}
    intake = frozenset(u.id for u in users if Role.INTAKE in u.roles)
    supervisors = frozenset(u.id for u in users if Role.SUPERVISOR in u.roles)
    senders_fallback = supervisors or frozenset(u.id for u in users if Role.SPECIALIST in u.roles)
    case_ids = {r.case_id for r in referrals if r.case_id is not None}
    cases = {
        c.id: c for c in await session.scalars(select(Case).where(Case.tenant_id == tenant_id, Case.id.in_(case_ids)))
    }
    zone = time_zone(await session.scalar(select(Tenant.time_zone).where(Tenant.id == tenant_id)) or DEFAULT_TIME_ZONE)
    today = today_in(zone, now)
    due = []
    for referral in referrals:
        found = reminder_kind(referral, now, lead)
        if found is None:
            continue
        if referral.side == Side.RECIPIENT:
            assignee = frozenset({referral.assignee_id}) if referral.assignee_id else frozenset()
            responsible = (assignee & active) or intake
        else:
            case = cases.get(referral.case_id) if referral.case_id else None
            responsible = (frozenset(_case_owner(case)) & active) or senders_fallback
        item = Due(referral, found[0], found[1], responsible)
        # A supervisor already responsible for it (the fallback above) has it on their dashboard as it is.
        escalated_to = supervisors - responsible
        if escalated_to and found[0] in ESCALATES:
            escalated_on = escalation_day(item.deadline_date, escalate_after_days)
            if today >= escalated_on:
                item = dataclasses.replace(item, escalated_on=escalated_on, supervisors=escalated_to)
        due.append(item)
    due.sort(key=lambda d: (d.deadline, d.referral.id))
    return due


def _case_owner(case: Case | None) -> Iterable[uuid.UUID]:
    if case is None:
        return ()
    if case.key_worker_id is not None:
        return (case.key_worker_id,)
    return (case.created_by_id,) if case.created_by_kind == ActorKind.USER else ()


async def reminders_for(
    ctx: Context, *, now: dt.datetime, lead: dt.timedelta, escalate_after_days: int
) -> list[ReminderOut]:
    """The caller's reminders: a person sees those they are responsible for, a supervisor all of the agency's
    (those escalated to them among them, `escalated_on` set).

    An agency system (API client) acts for the agency as a whole: it sees the reminders of the side its role
    works on (intake: incoming referrals; specialist: outgoing).
    """
    session, principal, audit = ctx.session, ctx.principal, ctx.audit
    due = await due_reminders(
        session, tenant_id=principal.tenant_id, now=now, lead=lead, escalate_after_days=escalate_after_days
    )
    if principal.has_role(Role.SUPERVISOR):
        mine = due
    elif principal.actor_kind == ActorKind.USER:
        mine = [d for d in due if principal.actor_id in d.users]
    else:
        sides = {Side.RECIPIENT.value} if principal.has_role(Role.INTAKE) else set()
        sides |= {Side.SENDER.value} if principal.has_role(Role.SPECIALIST) else set()
        mine = [d for d in due if d.referral.side in sides]
    audit.touched(resource_type="referral", referrals=[str(d.referral.exchange_id) for d in mine])
    return [d.view() for d in mine]


# -- email --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailText:
    subject: str
    lines: Sequence[str]


_KIND_NAMES = {
    "ru": {
        "referral": "направление",
        "petition": "ходатайство",
        "document_request": "межведомственный запрос",
        "information_letter": "информационное письмо",
        "plan_task": "задача межведомственного плана",
    },
    "en": {
        "referral": "referral",
        "petition": "petition",
        "document_request": "document request",
        "information_letter": "information letter",
        "plan_task": "multi-agency plan task",
    },
}
_WHAT = {
    "ru": {
        ReminderKind.RESPOND_DUE: "приближается срок ответа",
        ReminderKind.RESPOND_OVERDUE: "срок ответа истёк",
        ReminderKind.COMPLETE_DUE: "приближается срок исполнения",
        ReminderKind.COMPLETE_OVERDUE: "срок исполнения истёк",
        Escalation.RESPOND_ESCALATED: "срок ответа давно истёк, направление передано вам как руководителю",
        Escalation.COMPLETE_ESCALATED: "срок исполнения давно истёк, направление передано вам как руководителю",
    },
    "en": {
        ReminderKind.RESPOND_DUE: "the answer is due soon",
        ReminderKind.RESPOND_OVERDUE: "the answer is overdue",
        ReminderKind.COMPLETE_DUE: "completion is due soon",
        ReminderKind.COMPLETE_OVERDUE: "completion is overdue",
        Escalation.RESPOND_ESCALATED: "the answer is long overdue and is escalated to you as supervisor",
        Escalation.COMPLETE_ESCALATED: "completion is long overdue and is escalated to you as supervisor",
    },
}


def _kind_name(kind: str, lang: str) -> str:
    """The kind in words from a fixed table. On the receiving side the kind came from a partner's envelope: text
    that is not a known kind becomes the generic word and never reaches a header or the body."""
    names = _KIND_NAMES[lang]
    return names.get(kind, names[ReferralKind.REFERRAL.value])


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def reminder_email(due: Due, *, language: str | None, base_url: str, escalation: Escalation | None = None) -> MailText:
    """The email for one reminder (or, with `escalation`, its escalation to a supervisor): the referral's id, kind
    and deadline and a link; nothing about the family."""
    lang = "en" if (language or "").lower().startswith("en") else "ru"
    referral = due.referral
    what = _WHAT[lang][escalation or due.kind]
    kind_name = _kind_name(referral.kind, lang)
    deadline = format_day(due.deadline_date, lang)
    link = base_url.rstrip("/") + REFERRAL_PAGE.format(id=referral.exchange_id)
    if lang == "en":
        return MailText(
            subject=_one_line(f"casebridge: {what} ({kind_name}, {deadline})"),
            lines=(
                f"Reminder: {what}.",
                "",
                f"Referral: {referral.exchange_id}",
                f"Kind: {kind_name}",
                f"Deadline: {deadline}",
                "",
                f"Open it in casebridge: {link}",
                "",
                "This message was sent automatically and holds no details of the family.",
            ),
        )
    return MailText(
        subject=_one_line(f"casebridge: {what} ({kind_name}, {deadline})"),
        lines=(
            f"Напоминание: {what}.",
            "",
            f"Направление: {referral.exchange_id}",
            f"Вид: {kind_name}",
            f"Срок: {deadline}",
            "",
            f"Открыть в casebridge: {link}",
            "",
            "Письмо отправлено автоматически и не содержит сведений о семье.",
        ),
    )


class ReminderMail:
    """Emails each due reminder to each responsible person at most once (per referral × kind × person), and each
    escalation to each supervisor it goes to, once too; an escalation emailed is recorded in the agency's audit
    trail as `exchange:referral:escalate`, in the transaction that claims the email.

    A row in `reminder_sent` is committed *before* the message is handed to the mail server, so neither a restart
    nor a second gateway replica sends it again. A message the server refused is retried a few times; one whose
    fate is unknown (the process died while sending) is not, because a duplicate is worse than one missing email
    when the same reminder is on the person's dashboard anyway.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        mailer: Mailer | None,
        *,
        deps: ExchangeDeps,
        lead: dt.timedelta,
        escalate_after_days: int,
        base_url: str,
        every: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self._sessions = sessions
        self._deps = deps
        self._escalate_after_days = escalate_after_days
        self.every_s = every.total_seconds()
        self._clock = clock
        self._mailer = mailer
        self._lead = lead
        self._base_url = base_url

    @property
    def enabled(self) -> bool:
        return self._mailer is not None

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Send what is due every `every` until `stop` is set (a Worker's job; `wake` is not needed)."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the database or the mail server is away: try again next round
                log.warning("reminder pass failed (%s); retrying in %.0fs", type(exc).__name__, self.every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    async def run_once(self) -> int:
        """Send what is due now; returns how many messages the mail server accepted."""
        if self._mailer is None:
            return 0
        async with platform_session(self._sessions) as session:
            hosted = (Tenant.status == TenantStatus.ACTIVE, Tenant.peer.is_(None))  # a peer's agencies: their node's
            tenants = list(await session.scalars(select(Tenant.id).where(*hosted)))
        sent = 0
        for tenant_id in tenants:
            try:
                sent += await self._tenant(tenant_id)
            except Exception as exc:  # one tenant's failure (its data, a lost connection) must not starve the others
                log.warning("reminder pass for one tenant failed (%s)", type(exc).__name__)
        return sent

    async def _tenant(self, tenant_id: uuid.UUID) -> int:
        assert self._mailer is not None
        now = self._clock.now()
        async with platform_session(self._sessions) as session:
            due = await due_reminders(
                session, tenant_id=tenant_id, now=now, lead=self._lead, escalate_after_days=self._escalate_after_days
            )
            if not due:
                return 0
            people = {u.id: u for u in await session.scalars(select(User).where(User.tenant_id == tenant_id))}
            done = {
                (row.referral_id, row.kind, row.user_id): row
                for row in await session.scalars(
                    select(ReminderSent).where(
                        ReminderSent.tenant_id == tenant_id,
                        ReminderSent.referral_id.in_([d.referral.id for d in due]),
                    )
                )
            }
        sent = 0
        for item in due:
            emails: list[tuple[ReminderKind | Escalation, uuid.UUID]] = [(item.kind, u) for u in sorted(item.users)]
            if item.escalated_on is not None:
                emails += [(ESCALATES[item.kind], user_id) for user_id in sorted(item.supervisors)]
            for kind, user_id in emails:
                previous = done.get((item.referral.id, kind.value, user_id))
                if previous is not None and not _retry_due(previous, now):
                    continue
                if not await self._claim(tenant_id, item, kind, user_id, previous, now):
                    continue
                sent += await self._send(item, kind, people[user_id])
        return sent

    async def _claim(
        self,
        tenant_id: uuid.UUID,
        item: Due,
        kind: ReminderKind | Escalation,
        user_id: uuid.UUID,
        previous: ReminderSent | None,
        now: dt.datetime,
    ) -> bool:
        """Record the intent to send, committed first; False when another process got there before."""
        try:
            async with platform_session(self._sessions) as session, session.begin():
                if previous is None:
                    session.add(
                        ReminderSent(
                            tenant_id=tenant_id,
                            referral_id=item.referral.id,
                            kind=kind.value,
                            user_id=user_id,
                            claimed_at=now,
                            attempts=1,
                        )
                    )
                    if isinstance(kind, Escalation):
                        await self._record_escalation(session, tenant_id, item, user_id)
                    return True
                row = await session.scalar(
                    select(ReminderSent).where(ReminderSent.id == previous.id).with_for_update(skip_locked=True)
                )
                if row is None or not _retry_due(row, now):
                    return False
                row.claimed_at, row.attempts, row.last_error = now, row.attempts + 1, None
                return True
        except IntegrityError:
            return False

    async def _record_escalation(
        self, session: AsyncSession, tenant_id: uuid.UUID, item: Due, supervisor: uuid.UUID
    ) -> None:
        """casebridge itself escalates: a system event, committed with the claim, so once per supervisor."""
        referral = item.referral
        self._deps.audit.append(
            session,
            action=Action.EXCHANGE_REFERRAL_ESCALATE,
            outcome=Outcome.SUCCESS,
            actor=Actor(kind="system", id=None, tenant_id=tenant_id, role=None),
            log_tenant_id=tenant_id,
            resource_type="referral",
            resource_id=str(referral.exchange_id),
            subjects=tuple(await referral_pseudonyms(session, self._deps, referral)),
            extra={
                "reminder": item.kind.value,
                "deadline_date": item.deadline_date.isoformat(),
                "escalated_on": item.escalated_on.isoformat() if item.escalated_on else None,
                "supervisor": str(supervisor),
            },
        )

    async def _send(self, item: Due, kind: ReminderKind | Escalation, user: User) -> int:
        assert self._mailer is not None
        error: str | None = None
        try:
            escalation = kind if isinstance(kind, Escalation) else None
            text = reminder_email(item, language=user.language, base_url=self._base_url, escalation=escalation)
            message = EmailMessage()
            message["To"] = user.email
            message["Subject"] = text.subject
            message.set_content("\n".join(text.lines))
            await self._mailer.send(message)
        except Exception as exc:  # a stored address a header refuses, an encoding, the mail server: record, go on
            # Class names only: an exception's text can quote the address or other personal data.
            cause = exc.__cause__
            error = type(exc).__name__ + (f"({type(cause).__name__})" if isinstance(exc, MailError) and cause else "")
            log.warning("reminder email not sent (%s); it is retried later", error)
        async with platform_session(self._sessions) as session, session.begin():
            row = await session.scalar(
                select(ReminderSent).where(
                    ReminderSent.referral_id == item.referral.id,
                    ReminderSent.kind == kind.value,
                    ReminderSent.user_id == user.id,
                )
            )
            if row is not None:
                row.sent_at = None if error else self._clock.now()
                row.last_error = error[:255] if error else None
        return 0 if error else 1


def _retry_due(row: ReminderSent, now: dt.datetime) -> bool:
    return (
        row.sent_at is None
        and row.last_error is not None
        and row.attempts < MAX_ATTEMPTS
        and now >= row.claimed_at + RETRY_AFTER
    )
