"""Wire shapes of the exchange (API.md: Cases, Consents, Referrals); unknown fields are refused."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from exchange.cases.policy import Category, Relation
from exchange.models import ReferralKind, SubjectRole, Urgency
from tenants.models import TenantKind
from tenants.schemas import Day, Instant, Strict

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
Purpose = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class Identifiers(Strict, kw_only=True):
    snils: Annotated[str, msgspec.Meta(pattern=r"^\d{3}-\d{3}-\d{3} \d{2}$")] | None = None
    birth_certificate: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class SubjectIn(Strict, kw_only=True):
    ref: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    full_name: ShortText
    birth_date: Day | None = None
    role: SubjectRole
    identifiers: Identifiers = msgspec.field(default_factory=Identifiers)
    address: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    education: dict[str, Any] | None = None
    health: dict[str, Any] | None = None


class Needs(Strict, kw_only=True):
    client: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    carers: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    community: Annotated[str, msgspec.Meta(max_length=4000)] = ""


class CaseIn(Strict, kw_only=True):
    title: ShortText
    subjects: Annotated[list[SubjectIn], msgspec.Meta(min_length=1, max_length=20)]
    summary: Annotated[str, msgspec.Meta(max_length=20000)] | None = None
    needs: Needs | None = None
    key_worker_id: uuid.UUID | None = None


class SubjectOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: uuid.UUID
    ref: str
    role: str | None = None
    full_name: str | None = None
    birth_date: str | None = None
    identifiers: dict[str, Any] | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None
    education: dict[str, Any] | None = None
    health: dict[str, Any] | None = None


class CaseOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    reference: str
    title: str
    key_worker_id: uuid.UUID | None
    subjects: list[SubjectOut]
    summary: str | None
    needs: dict[str, str] | None
    created_at: dt.datetime


class CaseSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    reference: str
    title: str
    created_at: dt.datetime


class CasePage(msgspec.Struct, kw_only=True):
    items: list[CaseSummary]
    next_cursor: str | None


class GivenBy(Strict, kw_only=True):
    name: ShortText
    relation: Relation


class Recipients(Strict, kw_only=True):
    tenants: Annotated[list[uuid.UUID], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
    kinds: Annotated[list[TenantKind], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=list)


class Evidence(Strict, kw_only=True):
    document_id: uuid.UUID


class ConsentIn(Strict, kw_only=True):
    subject_id: uuid.UUID
    given_by: GivenBy
    purposes: Annotated[list[Purpose], msgspec.Meta(min_length=1, max_length=20)]
    categories: Annotated[list[Category], msgspec.Meta(min_length=1, max_length=8)]
    recipients: Recipients
    valid_until: Instant
    valid_from: Instant | None = None
    evidence: Evidence | None = None


class ConsentOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    case_id: uuid.UUID
    subject_id: uuid.UUID
    given_by: dict[str, str]
    purposes: list[str]
    categories: list[str]
    recipients: dict[str, list[str]]
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    status: str
    withdrawn_at: dt.datetime | None
    evidence: dict[str, str] | None


class ConsentPage(msgspec.Struct, kw_only=True):
    items: list[ConsentOut]


class WithdrawIn(Strict, kw_only=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class ConsentBasisIn(Strict, kw_only=True, tag="consent", tag_field="type"):
    pass


class StatutoryBasisIn(Strict, kw_only=True, tag="statutory", tag_field="type"):
    reference: ShortText
    justification: Text


class ReferralIn(Strict, kw_only=True):
    case_id: uuid.UUID
    to_tenant_id: uuid.UUID
    kind: ReferralKind
    purpose: Purpose
    problem: Text
    requested_service: Text
    urgency: Urgency
    respond_by: Instant
    complete_by: Instant
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


class TimelineOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str
    at: dt.datetime
    by_tenant_id: uuid.UUID
    note: str | None = None


class LetterOut(msgspec.Struct, kw_only=True):
    """A referral's letter: its registration number, the PDF's SHA-256 (hex), and the signature's verdict.

    While the letter is `pending` (numbered, not laid out yet on the sender; announced, not arrived yet on the
    recipient) `sha256` and `signature` are null.
    """

    registration_number: str
    sha256: str | None
    signature: Literal["valid", "invalid", "missing"] | None
    language: str
    status: Literal["pending", "ready"] = "ready"


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
    respond_by: dt.datetime
    complete_by: dt.datetime
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


class ReferralSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    kind: str
    status: str
    from_tenant_id: uuid.UUID
    to_tenant_id: uuid.UUID
    case_ref: str
    urgency: str
    respond_by: dt.datetime
    complete_by: dt.datetime
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


class DocumentOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    media_type: str
    size: int
    sha256: str


# -- multi-agency plans and reminders -----------------------------------------------------------------------------


class PlanTaskIn(Strict, kw_only=True):
    """One task of a plan, addressed to one agency; it is sent as a referral of kind plan_task."""

    title: ShortText
    to_tenant_id: uuid.UUID
    expected_result: Text
    complete_by: Instant
    respond_by: Instant | None = None
    purpose: Purpose
    problem: Text
    requested_service: Text
    urgency: Urgency = Urgency.ROUTINE
    subject_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=20)]
    categories: Annotated[list[Category], msgspec.Meta(min_length=1, max_length=8)]
    legal_basis: ConsentBasisIn | StatutoryBasisIn


PlanTasks = Annotated[list[PlanTaskIn], msgspec.Meta(min_length=1, max_length=50)]


class PlanIn(Strict, kw_only=True):
    case_id: uuid.UUID
    title: ShortText
    period_from: Day
    period_until: Day
    tasks: PlanTasks
    auto_close: bool = True


class PlanTasksIn(Strict, kw_only=True):
    tasks: PlanTasks


class PlanTaskOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: uuid.UUID
    position: int
    title: str
    expected_result: str
    referral_id: uuid.UUID
    to_tenant_id: uuid.UUID
    to_tenant_name: str
    status: str
    respond_by: dt.datetime
    complete_by: dt.datetime
    overdue: bool
    legal_basis: dict[str, str]
    last_change_at: dt.datetime
    outcome: dict[str, str] | None = None
    reason: str | None = None  # why a task was declined, failed or cancelled


class PlanOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    case_id: uuid.UUID
    case_ref: str
    title: str
    period_from: dt.date
    period_until: dt.date
    status: str
    auto_close: bool
    created_at: dt.datetime
    closed_at: dt.datetime | None
    progress: dict[str, int]
    overdue: int
    tasks: list[PlanTaskOut]


class PlanSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    case_ref: str
    title: str
    period_from: dt.date
    period_until: dt.date
    status: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    tasks: int
    done: int
    overdue: int


class PlanPage(msgspec.Struct, kw_only=True):
    items: list[PlanSummary]
    next_cursor: str | None


class ReminderOut(msgspec.Struct, kw_only=True):
    """A deadline that needs someone's attention; ids and dates only, never the family's data."""

    referral_id: uuid.UUID
    reminder: Literal["respond_due", "respond_overdue", "complete_due", "complete_overdue"]
    side: str
    kind: str
    status: str
    case_ref: str
    urgency: str
    deadline: dt.datetime
    counterpart_tenant_id: uuid.UUID


class ReminderList(msgspec.Struct, kw_only=True):
    items: list[ReminderOut]
