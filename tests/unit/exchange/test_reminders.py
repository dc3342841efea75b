"""Which reminder a referral needs at a given moment, and what its email says (and does not say)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from exchange.plans.reminders import Due, Escalation, ReminderKind, escalation_day, reminder_email, reminder_kind
from exchange.referrals.models import Referral, Side

RESPOND_BY = dt.datetime(2027, 3, 10, 12, 0, tzinfo=dt.UTC)
COMPLETE_BY = dt.datetime(2027, 4, 10, 12, 0, tzinfo=dt.UTC)
LEAD = dt.timedelta(hours=48)
SECOND = dt.timedelta(seconds=1)


def referral(status: str, side: Side) -> Referral:
    return Referral(
        id=uuid.uuid4(),
        exchange_id=uuid.uuid4(),
        side=side.value,
        status=status,
        kind="plan_task",
        respond_by=RESPOND_BY,
        complete_by=COMPLETE_BY,
        respond_by_date=RESPOND_BY.date(),
        complete_by_date=COMPLETE_BY.date(),
        case_ref="C-2027-00AB12CD34",
        urgency="routine",
        from_tenant_id=uuid.uuid4(),
        to_tenant_id=uuid.uuid4(),
    )


@pytest.mark.parametrize(
    ("status", "side", "now", "expected"),
    [
        # The recipient's answer: nothing until the lead time, due up to and at the deadline, overdue after it.
        ("received", Side.RECIPIENT, RESPOND_BY - LEAD - SECOND, None),
        ("received", Side.RECIPIENT, RESPOND_BY - LEAD, (ReminderKind.RESPOND_DUE, RESPOND_BY)),
        ("received", Side.RECIPIENT, RESPOND_BY, (ReminderKind.RESPOND_DUE, RESPOND_BY)),
        ("received", Side.RECIPIENT, RESPOND_BY + SECOND, (ReminderKind.RESPOND_OVERDUE, RESPOND_BY)),
        # The sender is not asked to answer; it hears only that the partner is late.
        ("requested", Side.SENDER, RESPOND_BY, None),
        ("received", Side.SENDER, RESPOND_BY + SECOND, (ReminderKind.RESPOND_OVERDUE, RESPOND_BY)),
        # Work in hand: both sides watch complete_by.
        ("accepted", Side.RECIPIENT, COMPLETE_BY - LEAD - SECOND, None),
        ("in-progress", Side.RECIPIENT, COMPLETE_BY - LEAD, (ReminderKind.COMPLETE_DUE, COMPLETE_BY)),
        ("on-hold", Side.SENDER, COMPLETE_BY, (ReminderKind.COMPLETE_DUE, COMPLETE_BY)),
        ("accepted", Side.SENDER, COMPLETE_BY + SECOND, (ReminderKind.COMPLETE_OVERDUE, COMPLETE_BY)),
        # A referral with a final status needs nobody.
        ("completed", Side.RECIPIENT, COMPLETE_BY + SECOND, None),
        ("rejected", Side.SENDER, RESPOND_BY + SECOND, None),
        ("cancelled", Side.RECIPIENT, RESPOND_BY, None),
    ],
)
def test_reminder_kind(status: str, side: Side, now: dt.datetime, expected: object) -> None:
    assert reminder_kind(referral(status, side), now, LEAD) == expected


@pytest.mark.parametrize(
    ("language", "words"),
    [
        # The deadline's day, as its sender picked it and every page shows it.
        ("ru", ("Напоминание", "срок ответа истёк", "задача межведомственного плана", "Срок: 10.03.2027")),
        ("en", ("Reminder", "the answer is overdue", "multi-agency plan task", "Deadline: 10 Mar 2027")),
        (None, ("Напоминание",)),
    ],
)
def test_reminder_email_names_the_referral_and_the_deadline_only(language: str | None, words: tuple[str]) -> None:
    item = referral("received", Side.RECIPIENT)
    text = reminder_email(
        Due(item, ReminderKind.RESPOND_OVERDUE, RESPOND_BY, frozenset()),
        language=language,
        base_url="https://cb.example.org/",
    )
    body = "\n".join(text.lines)
    for word in words:
        assert word in text.subject + body
    assert f"https://cb.example.org/referrals/{item.exchange_id}" in body
    assert str(item.exchange_id) in body
    # The case reference and the parties are not in it: only the referral's id, kind and deadline.
    assert item.case_ref not in body + text.subject
    assert str(item.from_tenant_id) not in body


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("kind", ["referral\r\nBcc: someone@example.org", "Семья Ивановых", "PLAN_TASK", ""])
def test_a_kind_that_is_not_known_never_reaches_the_email(language: str, kind: str) -> None:
    # On the receiving side the kind came from a partner's envelope: only the fixed word for it is written.
    item = referral("received", Side.RECIPIENT)
    item.kind = kind
    text = reminder_email(
        Due(item, ReminderKind.RESPOND_DUE, RESPOND_BY, frozenset()),
        language=language,
        base_url="https://cb.example.org/",
    )
    generic, day = ("referral", "10 Mar 2027") if language == "en" else ("направление", "10.03.2027")
    assert f"({generic}, {day})" in text.subject
    assert "\r" not in text.subject
    assert "\n" not in text.subject
    for line in text.lines:
        assert "\r" not in line
        assert "\n" not in line
    assert all(part not in text.subject + "\n".join(text.lines) for part in ("Bcc", "someone@", "Ивановых", "PLAN_"))


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("ru", ("срок ответа давно истёк, направление передано вам как руководителю", "Срок: 10.03.2027")),
        ("en", ("the answer is long overdue and is escalated to you as supervisor", "Deadline: 10 Mar 2027")),
    ],
)
def test_an_escalation_email_tells_the_supervisor_and_nothing_of_the_family(language: str, words: tuple[str]) -> None:
    item = referral("received", Side.SENDER)
    due = Due(item, ReminderKind.RESPOND_OVERDUE, RESPOND_BY, frozenset())
    text = reminder_email(
        due, language=language, base_url="https://cb.example.org/", escalation=Escalation.RESPOND_ESCALATED
    )
    body = "\n".join(text.lines)
    for word in words:
        assert word in text.subject + body
    assert item.case_ref not in body + text.subject


@pytest.mark.parametrize(
    ("after_days", "deadline", "escalated_on"),
    [
        (0, dt.date(2027, 3, 10), dt.date(2027, 3, 11)),  # the first day overdue
        (1, dt.date(2027, 3, 10), dt.date(2027, 3, 12)),
        (3, dt.date(2027, 2, 27), dt.date(2027, 3, 3)),  # across the end of February
    ],
)
def test_a_referral_is_escalated_after_full_days_overdue(
    after_days: int, deadline: dt.date, escalated_on: dt.date
) -> None:
    assert escalation_day(deadline, after_days) == escalated_on
