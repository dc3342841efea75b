"""What the DPO's queries read beside each sealed event: derived from the event when written, checked against it.

The search (exchange/reports/dpo.py, the API and the web console), the subject access report, the review queue and the
anomaly rules filter, order and group on columns and rows stored next to the canonical event, not on the sealed
text itself. Each of them is a function of the sealed event, and ``audit verify`` recomputes it:

| stored beside the event | derived from the sealed event |
|---|---|
| `audit_event.id` | `id` (the seal names it; verify checks the content's `id` against it) |
| `audit_event.log_tenant_id` | `log_tenant` (also what row-level security and every DPO query scope on) |
| `audit_event.recorded_at` | `time` |
| `audit_event.action`, `.outcome` | `action`, `outcome` |
| `audit_event.actor_id`, `.actor_tenant_id` | `actor.id`, `actor.tenant` |
| `audit_event.resource_id` | `resource.id` |
| one `audit_event_subject` row per pseudonym | `subjects`, one row each, no more |
| an `audit_review_mark` on event E | a successful `audit:review:mark` of E (`resource.id`), as trail and reviewer |

Values are compared as the database driver returns them (``type_coerce``d to no type, so no conversion hides a
difference the queries would see): UUIDs as 16 bytes (SQLite's storage, PostgreSQL's ``uuid_send``), times as
SQLite's stored text or PostgreSQL's aware datetimes, strings as strings. An export file carries the same values as text
(``export_columns``), and reading it turns them back into that form (``imported_columns``).
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import uuid
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgspec
from sqlalchemy import ColumnElement, Select, Text, case, cast, func, literal_column, select, type_coerce
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import NullType

from audit.events import Action, Outcome
from audit.models import AuditEvent, AuditEventSubject

__all__ = [
    "COLUMNS",
    "Disagreement",
    "ReviewMarkRow",
    "SearchCheck",
    "SearchFields",
    "StoredColumns",
    "decode_fields",
    "event_columns",
    "export_columns",
    "id_number",
    "imported_columns",
    "raw_uuid",
    "sqlite_time",
    "with_stored_columns",
]


class _Actor(msgspec.Struct):
    kind: str
    id: uuid.UUID | None
    tenant: uuid.UUID | None


class _Resource(msgspec.Struct):
    id: str | None


class SearchFields(msgspec.Struct):
    """The members of a sealed event (schema version 1) that the stored search columns and rows are derived from."""

    id: uuid.UUID
    time: str  # RFC 3339, as the event schema writes it (kept as text: parsing it costs more than comparing it)
    log_tenant: uuid.UUID | None
    actor: _Actor
    action: str
    outcome: str
    resource: _Resource
    subjects: list[str]


decode_fields: Final = msgspec.json.Decoder(SearchFields).decode
"""Decode canonical JSON (text or UTF-8 bytes); raises msgspec.MsgspecError for content of another shape."""

COLUMNS: Final = ("log_tenant_id", "recorded_at", "action", "outcome", "actor_id", "actor_tenant_id", "resource_id")
"""The audit_event search columns, in the order ``StoredColumns`` holds them."""
_UUID_COLUMNS: Final = frozenset({"log_tenant_id", "actor_id", "actor_tenant_id"})


class StoredColumns(NamedTuple):
    """What is stored beside one event, as the driver returns it; ``subjects`` is the pseudonym rows' values.

    ``subjects`` may be the JSON array the verify query aggregates (text), None (no rows, on PostgreSQL) or a list.
    """

    log_tenant_id: object
    recorded_at: object
    action: object
    outcome: object
    actor_id: object
    actor_tenant_id: object
    resource_id: object
    subjects: object


@dataclass(frozen=True, slots=True)
class ReviewMarkRow:
    """One audit_review_mark row: which event it takes off the review queue, in whose trail, and by whom."""

    event_id: uuid.UUID
    log_tenant_id: uuid.UUID | None
    reviewer_kind: str
    reviewer_id: uuid.UUID | None
    at: dt.datetime


def event_columns(fields: SearchFields) -> dict[str, Any]:
    """The audit_event search columns of an event, as the writer inserts them: the only place they are derived."""
    return {
        "id": fields.id,
        "log_tenant_id": fields.log_tenant,
        "recorded_at": dt.datetime.fromisoformat(fields.time),
        "action": fields.action,
        "outcome": fields.outcome,
        "actor_id": fields.actor.id,
        "actor_tenant_id": fields.actor.tenant,
        "resource_id": fields.resource.id,
    }


def raw_uuid(column: ColumnElement[Any] | InstrumentedAttribute[Any], dialect: str) -> ColumnElement[Any]:
    """A UUID column as 16 bytes, as SQLite stores it; on PostgreSQL through ``uuid_send`` (its binary form), since
    asyncpg's UUID objects cost several times as much to make as bytes. Either way ``id_number`` reads it."""
    return type_coerce(func.uuid_send(column) if dialect == "postgresql" else column, NullType())


def with_stored_columns(query: Select[*tuple[Any, ...]], dialect: str) -> Select[*tuple[Any, ...]]:
    """``query`` (over audit_event rows) with their ``StoredColumns`` added, as the driver returns them.

    The pseudonym rows come as one JSON array per event, matched as the subject report joins them
    (``audit_event_subject.event_id = audit_event.id``), in the same statement: on SQLite by a subquery on the event
    id index per event; on PostgreSQL by one grouped pass over the table, hash-joined, which costs the server a
    third less than a subquery per event. On SQLite a value that is not text (SQLite stores whatever it is given)
    is aggregated as null, so it shows as a row the event does not name: ``pseudonym = :text`` never finds it.
    """
    raw = [
        raw_uuid(getattr(AuditEvent, name), dialect)
        if name in _UUID_COLUMNS
        else type_coerce(getattr(AuditEvent, name), NullType())
        for name in COLUMNS
    ]
    pseudonym = AuditEventSubject.pseudonym
    if dialect == "postgresql":
        # As text: the driver would parse json with the standard library's decoder, at several times msgspec's cost.
        rows = cast(func.json_agg(aggregate_order_by(pseudonym, pseudonym.collate("C"))), Text).label("subjects")
        grouped = select(AuditEventSubject.event_id, rows).group_by(AuditEventSubject.event_id).subquery()
        query = query.outerjoin(grouped, grouped.c.event_id == AuditEvent.id)
        return query.add_columns(*raw, type_coerce(grouped.c.subjects, NullType()))
    aggregate = func.json_group_array(case((func.typeof(pseudonym) == literal_column("'text'"), pseudonym)))
    subjects = select(type_coerce(aggregate, NullType())).where(AuditEventSubject.event_id == AuditEvent.id)
    return query.add_columns(*raw, subjects.scalar_subquery())


# -- comparing in the driver's terms --------------------------------------------------------------------------------


def id_number(value: object) -> int:
    """The 128-bit number of a UUID given as a UUID or as its 16 bytes; -1 (no UUID's number) for anything else."""
    if isinstance(value, uuid.UUID):
        return value.int
    if isinstance(value, bytes) and len(value) == 16:
        return int.from_bytes(value)
    return -1


def sqlite_time(time: dt.datetime) -> str:
    """How SQLAlchemy stores an aware time in SQLite: UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``, no offset."""
    return time.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_text(sealed: str) -> str:
    """``sqlite_time`` of an event's RFC 3339 time, cut out of the text in the two spellings the schema writes."""
    if len(sealed) == 27 and sealed[10] == "T" and sealed[19] == "." and sealed[26] == "Z":
        return f"{sealed[:10]} {sealed[11:26]}"  # 2026-03-02T09:15:00.123000Z
    if len(sealed) == 20 and sealed[10] == "T" and sealed[19] == "Z":
        return f"{sealed[:10]} {sealed[11:19]}.000000"  # 2026-03-02T09:15:01Z
    return sqlite_time(dt.datetime.fromisoformat(sealed))


def _same_id(stored: object, sealed: uuid.UUID | None) -> bool:
    if sealed is None:
        return stored is None
    if type(stored) is bytes:
        return len(stored) == 16 and int.from_bytes(stored) == sealed.int
    return isinstance(stored, uuid.UUID) and stored.int == sealed.int


def _same_time(stored: object, sealed: str) -> bool:
    try:
        if type(stored) is str:
            # SQLite compares times as this text: another spelling of the same instant sorts and filters otherwise.
            return stored == _sqlite_text(sealed)
        if isinstance(stored, dt.datetime) and stored.tzinfo is not None:
            return stored == dt.datetime.fromisoformat(sealed)
    except ValueError:
        pass  # a sealed time that is not RFC 3339: nothing stored can be derived from it
    return False


def _same_text(stored: object, sealed: str | None) -> bool:
    return stored is None if sealed is None else type(stored) is str and stored == sealed


_decode_array = msgspec.json.Decoder(list[Any]).decode


def _stored_subjects(stored: object) -> list[Any]:
    if stored is None:
        return []
    if isinstance(stored, str):
        try:
            return _decode_array(stored)
        except msgspec.MsgspecError:
            return [stored]
    return list(stored) if isinstance(stored, list | tuple) else [stored]


def columns_agree(fields: SearchFields, stored: Sequence[object]) -> bool:
    """Whether every audit_event search column holds the value derived from the sealed event (the common case).

    Runs once per event in ``audit verify``: the text columns are compared inline (a driver returns text as str,
    and no other value equals a str), the rest as ``disagreeing_columns`` does.
    """
    actor = fields.actor
    return (
        stored[2] == fields.action
        and stored[3] == fields.outcome
        and stored[6] == fields.resource.id
        and _same_id(stored[0], fields.log_tenant)
        and _same_id(stored[4], actor.id)
        and _same_id(stored[5], actor.tenant)
        and _same_time(stored[1], fields.time)
    )


def disagreeing_columns(fields: SearchFields, stored: Sequence[object]) -> list[str]:
    """The audit_event search columns whose stored value is not the one derived from the sealed event."""
    log_tenant_id, recorded_at, action, outcome, actor_id, actor_tenant_id, resource_id = stored[:7]
    wrong = []
    if not _same_id(log_tenant_id, fields.log_tenant):
        wrong.append("log_tenant_id")
    if not _same_time(recorded_at, fields.time):
        wrong.append("recorded_at")
    if not _same_text(action, fields.action):
        wrong.append("action")
    if not _same_text(outcome, fields.outcome):
        wrong.append("outcome")
    if not _same_id(actor_id, fields.actor.id):
        wrong.append("actor_id")
    if not _same_id(actor_tenant_id, fields.actor.tenant):
        wrong.append("actor_tenant_id")
    if not _same_text(resource_id, fields.resource.id):
        wrong.append("resource_id")
    return wrong


def subject_difference(sealed: Sequence[str], stored: object) -> tuple[int, int]:
    """(subjects of the sealed event with no pseudonym row, pseudonym rows the sealed event does not name).

    A second row for one pseudonym counts as a row the event does not name; so does a value that is not text.
    """
    rows = _stored_subjects(stored)
    if rows == sealed:
        return 0, 0
    wanted: collections.Counter[str | None] = collections.Counter(sealed)
    found: collections.Counter[str | None] = collections.Counter(v if type(v) is str else None for v in rows)
    missing, extra = wanted - found, found - wanted
    return missing.total(), extra.total()


# -- one pass over the sealed events ----------------------------------------------------------------------------------


class Disagreement(enum.StrEnum):
    """What verification reports when something stored beside an event disagrees with the sealed event."""

    COLUMN_CHANGED = "column_changed"  # a search column of the event row differs from the sealed event
    SUBJECT_DELETED = "subject_deleted"  # a subject the sealed event names has no pseudonym row
    SUBJECT_INSERTED = "subject_inserted"  # a pseudonym row the sealed event does not name
    REVIEW_DELETED = "review_deleted"  # a sealed review whose review mark is gone
    REVIEW_INSERTED = "review_inserted"  # a review mark that no sealed review accounts for


class Finding(NamedTuple):
    kind: Disagreement
    seq: int | None
    detail: str


_REVIEW_MARK = Action.AUDIT_REVIEW_MARK.value
_SUCCESS = Outcome.SUCCESS.value


@dataclass(frozen=True, slots=True)
class _Review:
    seq: int | None  # None: an event not sealed yet
    event: SearchFields


@dataclass(slots=True)
class SearchCheck:
    """Checks, event by event in seq order, what is stored beside each sealed event; collects what disagrees.

    ``marks``: every review mark, or None when there are none to check (an export without them). Memory: one
    entry per review mark and per review event, which only statutory shares and break-glass uses get.
    """

    marks: Mapping[uuid.UUID, ReviewMarkRow] | None = None
    findings: list[Finding] = field(default_factory=list)
    _reviews: dict[uuid.UUID, list[_Review]] = field(default_factory=dict)

    def event(self, seq: int, fields: SearchFields, stored: Sequence[object]) -> None:
        """One sealed event whose content is the one sealed at ``seq``, with what is stored beside it."""
        if not columns_agree(fields, stored):
            wrong = ", ".join(disagreeing_columns(fields, stored))
            self._found(
                Disagreement.COLUMN_CHANGED,
                seq,
                f"event {fields.id} (seq {seq}): {wrong} on its row disagree with the sealed event",
            )
        if _stored_subjects(stored[7]) == fields.subjects:
            missing = extra = 0
        else:
            missing, extra = subject_difference(fields.subjects, stored[7])
        if missing:
            self._found(
                Disagreement.SUBJECT_DELETED,
                seq,
                f"event {fields.id} (seq {seq}) names {missing} "
                "subject(s) with no pseudonym row: their subject access reports leave it out",
            )
        if extra:
            self._found(
                Disagreement.SUBJECT_INSERTED,
                seq,
                f"event {fields.id} (seq {seq}) has {extra} pseudonym row(s) that the sealed event does not name",
            )
        if fields.action == _REVIEW_MARK:
            self._review(seq, fields)

    def content_unreadable(self, seq: int, event_id: uuid.UUID) -> None:
        """A sealed content that is not an event of this schema: nothing stored beside it can be derived."""
        self._found(
            Disagreement.COLUMN_CHANGED,
            seq,
            f"the content sealed at seq {seq} for event {event_id} is not "
            "a version-1 event: its row cannot be derived from it",
        )

    def _found(self, kind: Disagreement, seq: int | None, detail: str) -> None:
        self.findings.append(Finding(kind, seq, detail))

    def pending(self, fields: SearchFields) -> None:
        """An event not sealed yet (inside the sealing grace period): its review may account for a mark."""
        if fields.action == _REVIEW_MARK:
            self._review(None, fields)

    def _review(self, seq: int | None, fields: SearchFields) -> None:
        if self.marks is None or fields.outcome != _SUCCESS or fields.resource.id is None:
            return
        try:
            reviewed = uuid.UUID(fields.resource.id)
        except ValueError:
            return
        self._reviews.setdefault(reviewed, []).append(_Review(seq, fields))

    def finish(
        self, *, sealed_ids: Container[int] | None = None, unsealed_after: dt.datetime | None = None
    ) -> list[Finding]:
        """Everything found, the review marks matched against the reviews last.

        For an export, which holds neither unsealed events nor the marks of events not sealed yet: ``sealed_ids``
        (UUID numbers) are the events in it, whose marks it carries; a mark made after ``unsealed_after`` may have
        a review that was still waiting for its seal.
        """
        if self.marks is None:
            return self.findings
        for reviewed, reviews in self._reviews.items():
            if sealed_ids is not None and reviewed.int not in sealed_ids:
                continue
            # One successful review takes an event off the queue; a later one is possible only once its mark is gone.
            *earlier, latest = reviews
            for review in earlier:
                self._unmarked(reviewed, review)
            mark = self.marks.get(reviewed)
            if mark is None:
                self._unmarked(reviewed, latest)
            elif not _made_by(mark, latest.event):
                where = f"seq {latest.seq}" if latest.seq is not None else "an unsealed event"
                self._found(
                    Disagreement.REVIEW_INSERTED,
                    latest.seq,
                    f"the review mark on event {reviewed} does not "
                    f"match its review at {where} (another trail or reviewer)",
                )
        for reviewed, mark in self.marks.items():
            if reviewed not in self._reviews and (unsealed_after is None or mark.at <= unsealed_after):
                self._found(
                    Disagreement.REVIEW_INSERTED,
                    None,
                    f"event {reviewed} has a review mark that no sealed "
                    "review accounts for: it was taken off the review queue",
                )
        return self.findings

    def _unmarked(self, reviewed: uuid.UUID, review: _Review) -> None:
        if review.seq is None:
            return  # not sealed yet: checked once it is
        self._found(
            Disagreement.REVIEW_DELETED,
            review.seq,
            f"the review of event {reviewed} sealed at seq "
            f"{review.seq} has no review mark: the event is back in the review queue",
        )


def _made_by(mark: ReviewMarkRow, review: SearchFields) -> bool:
    return (
        mark.log_tenant_id == review.log_tenant
        and mark.reviewer_kind == review.actor.kind
        and mark.reviewer_id == review.actor.id
    )


# -- the export's text form -----------------------------------------------------------------------------------------


class Unusable(msgspec.Struct, frozen=True):
    """In an export: a stored value of the wrong type for its column (possible on SQLite), never equal to any value."""

    stored_as: str


def _export_id(value: object) -> str | Unusable | None:
    if value is None:
        return None
    number = id_number(value)
    return str(uuid.UUID(int=number)) if number >= 0 else Unusable(type(value).__name__)


def _export_time(value: object) -> str | Unusable:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return Unusable("text")
        if parsed.tzinfo is None and sqlite_time(parsed.replace(tzinfo=dt.UTC)) == value:
            return parsed.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
        return Unusable("text")
    return Unusable(type(value).__name__)


def _export_text(value: object) -> str | Unusable | None:
    return value if value is None or type(value) is str else Unusable(type(value).__name__)


def export_columns(stored: Sequence[object]) -> dict[str, Any]:
    """The stored columns and pseudonym rows of one event as an export writes them (JSON-ready)."""
    values: dict[str, Any] = {}
    for name, value in zip(COLUMNS, stored[:7], strict=True):
        if name in _UUID_COLUMNS:
            values[name] = _export_id(value)
        elif name == "recorded_at":
            values[name] = _export_time(value)
        else:
            values[name] = _export_text(value)
    values["subjects"] = [_export_text(value) for value in _stored_subjects(stored[7])]
    return values


_UNUSABLE: Final = object()  # what an Unusable value reads back as: equal to nothing


def imported_columns(values: Sequence[object], subjects: Sequence[object]) -> StoredColumns:
    """The inverse of ``export_columns``: the values (in ``COLUMNS`` order) as the driver would have returned them."""

    def read(name: str, value: object) -> object:
        if value is None:
            return None
        if type(value) is not str:
            return _UNUSABLE
        if name not in _UUID_COLUMNS and name != "recorded_at":
            return value
        try:
            return uuid.UUID(value) if name in _UUID_COLUMNS else dt.datetime.fromisoformat(value)
        except ValueError:
            return _UNUSABLE

    log_tenant_id, recorded_at, action, outcome, actor_id, actor_tenant_id, resource_id = (
        read(name, value) for name, value in zip(COLUMNS, values, strict=True)
    )
    rows = [value if type(value) is str else _UNUSABLE for value in subjects]
    return StoredColumns(log_tenant_id, recorded_at, action, outcome, actor_id, actor_tenant_id, resource_id, rows)
