"""Wire shapes of the plans area (docs/api.md, "Multi-agency plans and reminders"); unknown fields are refused."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from exchange.cases.policy import Category
from exchange.cases.schemas import Purpose, ShortText, Text
from exchange.referrals.models import Urgency
from exchange.referrals.schemas import ConsentBasisIn, Deadline, DeadlineDay, StatutoryBasisIn
from tenants.schemas import Day, DeadlineIn, Strict


class PlanTaskIn(Strict, kw_only=True):
    """One task of a plan, addressed to one agency; it is sent as a referral of kind plan_task."""

    DEADLINES = ("complete_by", "respond_by")

    title: ShortText
    to_tenant_id: uuid.UUID
    expected_result: Text
    complete_by: DeadlineIn
    respond_by: DeadlineIn | None = None
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
    respond_by: Deadline
    complete_by: Deadline
    respond_by_date: DeadlineDay
    complete_by_date: DeadlineDay
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
    deadline: Deadline
    deadline_date: DeadlineDay
    counterpart_tenant_id: uuid.UUID
    # The agency's day the referral was escalated to its supervisors, left overdue that long (docs/api.md).
    escalated_on: Day | None = None


class ReminderList(msgspec.Struct, kw_only=True):
    items: list[ReminderOut]


# -- a case's individual care plan (internal to the agency: no wire of its own beyond its pages) --------------------

Need = Literal["client", "carers", "community"]
NEEDS: tuple[Need, ...] = ("client", "carers", "community")


class CareGoalIn(Strict, kw_only=True):
    """A goal drawn from one part of the needs assessment."""

    need: Need
    text: Text


class CareActionIn(Strict, kw_only=True):
    """An action towards a goal: what, who and by which day; `referral_id` names a referral of the case carrying it."""

    DEADLINES = ("due_by",)

    goal_id: uuid.UUID
    what: Text
    who: ShortText
    due_by: DeadlineIn
    referral_id: uuid.UUID | None = None


class CareReferralOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The referral carrying out an action, as the sender's copy has it: its status and, once finished, its outcome."""

    id: uuid.UUID
    kind: str
    status: str
    overdue: bool
    to_tenant_id: uuid.UUID
    outcome_result: str | None = None


class CareActionOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: uuid.UUID
    goal_id: uuid.UUID
    position: int
    what: str
    who: str
    due_by_date: dt.date
    due_by: dt.datetime
    overdue: bool
    done_at: dt.datetime | None = None
    referral: CareReferralOut | None = None


class CareGoalOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    position: int
    need: str
    text: str
    actions: list[CareActionOut]


class CarePlanOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A case's care plan; a case without one has no id and no goals yet."""

    case_id: uuid.UUID
    case_ref: str
    goals: list[CareGoalOut]
    overdue: int = 0
    id: uuid.UUID | None = None


class OverdueCareAction(msgspec.Struct, kw_only=True):
    """A late action for the dashboard: the case it belongs to, what is late and who was to do it."""

    action_id: uuid.UUID
    case_id: uuid.UUID
    case_ref: str
    what: str
    who: str
    due_by_date: dt.date
