"""Wire shapes of the DPO's audit API (API.md: Audit): event pages, subject access reports, review queue, anomalies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec

from tenants.schemas import Strict


class EventPage(msgspec.Struct, kw_only=True):
    # Each item is the event's canonical JSON (audit/events.py, schema version "v"), parsed: new members may appear.
    items: list[dict[str, Any]]
    next_cursor: str | None


class ReportRow(msgspec.Struct, kw_only=True):
    """One access to the subject's data: who (tenant, actor, role), what, with what result, why and when."""

    event_id: uuid.UUID
    time: dt.datetime
    actor_tenant_id: uuid.UUID | None
    actor_tenant_name: str | None
    actor_kind: str
    actor_id: uuid.UUID | None
    role: str | None
    action: str
    outcome: str
    purpose: str | None
    legal_basis: str | None
    resource_type: str | None
    resource_id: str | None


class SubjectReport(msgspec.Struct, kw_only=True):
    subject_id: uuid.UUID
    pseudonym: str
    generated_at: dt.datetime
    items: list[ReportRow]
    next_cursor: str | None


class ReviewItem(msgspec.Struct, kw_only=True):
    # Why the event is in the queue: "statutory_share", "recipient_basis", "break_glass".
    reasons: list[str]
    event: dict[str, Any]


class ReviewPage(msgspec.Struct, kw_only=True):
    items: list[ReviewItem]
    next_cursor: str | None


class ReviewIn(Strict, kw_only=True):
    note: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class ReviewOut(msgspec.Struct, kw_only=True):
    event_id: uuid.UUID
    reviewer_kind: str
    reviewer_id: uuid.UUID
    at: dt.datetime
    note: str | None


class AnomalyOut(msgspec.Struct, kw_only=True):
    rule: str
    actor_id: uuid.UUID
    actor_tenant_id: uuid.UUID | None
    window_start: dt.datetime
    window_end: dt.datetime
    count: int
    event_ids: list[uuid.UUID]


class AnomalyPage(msgspec.Struct, kw_only=True):
    since: dt.datetime
    until: dt.datetime
    items: list[AnomalyOut]
