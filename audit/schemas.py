"""Wire shapes of the DPO's audit API (docs/audit.md): event pages, subject access reports, review queue, anomalies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from tenants.schemas import Day, Strict


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
    # Every record of the person the report covers (one per case they appear in), oldest first, with its pseudonym:
    # a report by id covers that one; a lookup by name every record of the person found. `subject_id` is the first.
    subject_ids: list[uuid.UUID] = msgspec.field(default_factory=list)
    pseudonyms: list[str] = msgspec.field(default_factory=list)


class SubjectLookupIn(Strict, kw_only=True):
    """A person named by their details, to open their report: sent in the body, never in an address."""

    full_name: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    birth_date: Day
    # 11 digits, with or without the usual hyphens and space (123-456-789 01)
    snils: Annotated[str, msgspec.Meta(min_length=11, max_length=14, pattern=r"^[0-9 -]+$")] | None = None
    format: Literal["json", "csv", "pdf"] = "json"
    cursor: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None  # rows a page; None: the largest page


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
