"""Wire shapes of the reports area (docs/api.md): a period's referrals counted by kind, status, outcome, partner."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import msgspec


class Count(msgspec.Struct, kw_only=True):
    key: str
    count: int


class PartnerCount(msgspec.Struct, kw_only=True):
    tenant_id: uuid.UUID
    name: str
    count: int
    by_outcome: dict[str, int]


class BreakdownRow(msgspec.Struct, kw_only=True):
    kind: str
    partner_id: uuid.UUID
    partner_name: str
    outcome: str
    count: int


class Bucket(msgspec.Struct, kw_only=True):
    lower: float
    upper: float | None
    count: int


class Distribution(msgspec.Struct, kw_only=True):
    unit: Literal["hours", "days"]
    count: int
    median: float | None
    p90: float | None
    buckets: list[Bucket]


class Overdue(msgspec.Struct, kw_only=True):
    now: int  # still open and past respond_by (awaiting an answer) or complete_by (in hand)
    answered_late: int  # accepted or rejected after respond_by
    completed_late: int  # completed after complete_by


class BoxReport(msgspec.Struct, kw_only=True):
    total: int
    by_kind: list[Count]
    by_status: list[Count]
    by_outcome: list[Count]
    by_partner: list[PartnerCount]
    breakdown: list[BreakdownRow]
    time_to_accept: Distribution
    time_to_complete: Distribution
    overdue: Overdue


class ReferralReport(msgspec.Struct, kw_only=True):
    tenant_id: uuid.UUID
    period_from: dt.datetime = msgspec.field(name="from")
    period_until: dt.datetime = msgspec.field(name="until")
    time_zone: str
    generated_at: dt.datetime
    outgoing: BoxReport | None = None
    incoming: BoxReport | None = None
