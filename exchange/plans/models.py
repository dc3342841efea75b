"""Tables of the plans area: multi-agency plans and their tasks, the deadline reminders already mailed, and the
cases' individual care plans with their goals and actions."""

from __future__ import annotations

import datetime as dt
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, Date, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exchange.cases.models import SealedRecord
from tenants.models import Base, TenantScoped


class Plan(SealedRecord, TenantScoped, Base):
    """A multi-agency plan (КИПР) for one case: its tasks go to partner agencies as referrals of kind plan_task."""

    __tablename__ = "plan"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key", name="uq_plan_idempotency_key"),)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("case_file.id"), index=True)
    case_ref: Mapped[str] = mapped_column(String(32))
    # The title is sealed under the plan's data key: it may name the family.
    period_from: Mapped[dt.date] = mapped_column(Date)
    period_until: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), index=True)
    auto_close: Mapped[bool] = mapped_column(Boolean, default=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    created_by_kind: Mapped[str] = mapped_column(String(8))
    created_by_id: Mapped[uuid.UUID] = mapped_column()
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)


class PlanTask(TenantScoped, Base):
    """One task of a plan; its status, deadlines and outcome live on the sender's copy of its referral."""

    __tablename__ = "plan_task"

    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plan.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referral.id"), unique=True)
    # Title and expected result, sealed under the plan's data key.
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class ReminderSent(TenantScoped, Base):
    """A deadline reminder emailed to one user: at most one per referral × kind × user, across restarts."""

    __tablename__ = "reminder_sent"
    __table_args__ = (UniqueConstraint("referral_id", "kind", "user_id", name="uq_reminder_sent_once"),)

    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referral.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set when the mail server refused or could not be reached: only such rows are tried again.
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)


class CarePlan(SealedRecord, TenantScoped, Base):
    """A case's individual care plan (the key worker's own plan of casework): internal to the agency, never sent.

    One per case. Its goals' and actions' texts are sealed under the plan's data key, as the case's own free text is.
    """

    __tablename__ = "care_plan"
    __table_args__ = (UniqueConstraint("tenant_id", "case_id", name="uq_care_plan_case"),)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("case_file.id", ondelete="CASCADE"), index=True)
    created_by_kind: Mapped[str] = mapped_column(String(8))
    created_by_id: Mapped[uuid.UUID] = mapped_column()


class CareGoal(TenantScoped, Base):
    """A goal of a care plan, drawn from one part of the case's needs assessment (client, carers, community)."""

    __tablename__ = "care_goal"

    care_plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("care_plan.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    need: Mapped[str] = mapped_column(String(16))
    # The goal's wording, sealed under the plan's data key.
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class CareAction(TenantScoped, Base):
    """An action towards a goal: what is done, by whom and by which day; a referral of the case may carry it out."""

    __tablename__ = "care_action"

    care_plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("care_plan.id", ondelete="CASCADE"), index=True)
    goal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("care_goal.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    # What is to be done and who does it, sealed under the plan's data key.
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # The day picked, and the end of that day in the agency's time zone (tenants.calendar.Deadline).
    due_on: Mapped[dt.date] = mapped_column(Date)
    due_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    referral_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("referral.id", ondelete="SET NULL"), default=None)
