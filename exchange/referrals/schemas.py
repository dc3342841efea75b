"""Wire shapes of the referrals area (docs/api.md); unknown fields are refused."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from exchange.cases.policy import Category
from exchange.cases.schemas import Purpose, ShortText, SubjectOut, Text
from exchange.letters.schemas import LetterOut
from exchange.referrals.models import ReferralKind, Urgency
from tenants.schemas import DeadlineIn, Strict

# A deadline as the API shows it: the instant it is overdue after (RFC 3339 UTC), and the day to show for it.
Deadline = Annotated[
    dt.datetime,
    msgspec.Meta(description="The end of the deadline's day in the sender's time zone: overdue after this instant."),
]
DeadlineDay = Annotated[
    dt.date,
    msgspec.Meta(description="The deadline's day, as the sender picked it: show this day, not the instant's date."),
]


class ConsentBasisIn(Strict, kw_only=True, tag="consent", tag_field="type"):
    pass


class StatutoryBasisIn(Strict, kw_only=True, tag="statutory", tag_field="type"):
    reference: ShortText
    justification: Text


class ReferralIn(Strict, kw_only=True):
    DEADLINES = ("respond_by", "complete_by")

    case_id: uuid.UUID
    to_tenant_id: uuid.UUID
    kind: ReferralKind
    purpose: Purpose
    problem: Text
    requested_service: Text
    urgency: Urgency
    respond_by: DeadlineIn
    complete_by: DeadlineIn
    subject_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=20)]
    categories: Annotated[list[Category], msgspec.Meta(min_length=1, max_length=8)]
    legal_basis: ConsentBasisIn | StatutoryBasisIn
    # Optional: the code of one of the recipient's services in the directory.
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    # The language of the referral's letter (exchange/letters), chosen by the sender.
    letter_language: Literal["ru", "en"] = "ru"


class Outcome(Strict, kw_only=True):
    result: Literal["resolved", "partially_resolved", "not_resolved", "referred_elsewhere", "no_contact"]
    note: Annotated[str, msgspec.Meta(max_length=4000)] = ""


class TransitionIn(Strict, kw_only=True):
    to: Literal["accepted", "rejected", "in-progress", "on-hold", "completed", "failed", "cancelled"]
    reason: Annotated[str, msgspec.Meta(max_length=4000)] | None = None
    outcome: Outcome | None = None


class AssignmentIn(Strict, kw_only=True):
    """Who at the receiving agency works on the referral: a colleague's user id, or null for nobody."""

    assignee_id: uuid.UUID | None


class TimelineOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str
    at: dt.datetime
    by_tenant_id: uuid.UUID
    note: str | None = None


class ReferralOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: uuid.UUID
    kind: str
    status: str
    from_tenant_id: uuid.UUID
    to_tenant_id: uuid.UUID
    case_ref: str
    purpose: str
    problem: str
    requested_service: str
    urgency: str
    respond_by: Deadline
    complete_by: Deadline
    respond_by_date: DeadlineDay
    complete_by_date: DeadlineDay
    overdue: bool
    categories: list[str]
    legal_basis: dict[str, str]
    subjects: list[SubjectOut]
    timeline: list[TimelineOut]
    restricted: bool
    case_id: uuid.UUID | None = None
    needs: dict[str, str] | None = None
    summary: str | None = None
    outcome: dict[str, str] | None = None
    plan: dict[str, str] | None = None  # a plan_task's task title, expected result and plan id
    service: str | None = None  # the recipient's service code the referral asks for
    letter: LetterOut | None = None  # the signed letter's register entry; None for a referral without one
    # The recipient's own legal basis for keeping the data ({"reference", "justification"}), once it recorded one.
    own_basis: dict[str, str] | None = None
    assignee_id: uuid.UUID | None = None  # the receiving agency's worker on it; never told to the sender


class ReferralSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    kind: str
    status: str
    from_tenant_id: uuid.UUID
    to_tenant_id: uuid.UUID
    case_ref: str
    urgency: str
    respond_by: Deadline
    complete_by: Deadline
    respond_by_date: DeadlineDay
    complete_by_date: DeadlineDay
    overdue: bool


class ReferralPage(msgspec.Struct, kw_only=True):
    items: list[ReferralSummary]
    next_cursor: str | None


class MessageIn(Strict, kw_only=True):
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=20000)]
    attachments: Annotated[list[uuid.UUID], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)


class MessageOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    at: dt.datetime
    author_tenant_id: uuid.UUID
    body: str
    attachments: list[dict[str, Any]]


class MessagePage(msgspec.Struct, kw_only=True):
    items: list[MessageOut]
