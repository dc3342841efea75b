"""Appending to the audit trail: events are written in the caller's transaction, so they commit with the change."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Required, TypedDict, Unpack

from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from audit.canonical import canonical_json
from audit.derived import decode_fields, event_columns
from audit.events import Action, Actor, AuditEventRecord, Outcome, pseudonym
from audit.pending import add_rows, insert_rows
from tenants.clock import Clock


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str | None
    source: str | None
    user_agent: str | None


class EventFields(TypedDict, total=False):
    """What the one who records an event says about it; the log adds its id and, unless ``at`` is given, its time."""

    action: Required[Action]
    outcome: Required[Outcome]
    actor: Required[Actor]
    log_tenant_id: Required[uuid.UUID | None]
    context: RequestContext | None
    resource_type: str | None
    resource_id: str | None
    subjects: tuple[str, ...]
    purpose: str | None
    legal_basis: str | None
    reason: str | None
    extra: dict[str, Any] | None
    at: dt.datetime | None


class AuditLog:
    """Builds events (pseudonymising subjects with the owning tenant's key) and adds them to a session."""

    def __init__(self, clock: Clock, pseudonym_key: Callable[[uuid.UUID], bytes]) -> None:
        self._clock = clock
        self._derive = pseudonym_key
        # A tenant's pseudonym key never changes (the audit log would stop linking a person's accesses): derived once.
        self._keys: dict[uuid.UUID, bytes] = {}

    def _key(self, owner_tenant_id: uuid.UUID) -> bytes:
        key = self._keys.get(owner_tenant_id)
        if key is None:
            key = self._keys[owner_tenant_id] = self._derive(owner_tenant_id)
        return key

    def pseudonyms(self, owner_tenant_id: uuid.UUID, subject_ids: Iterable[uuid.UUID]) -> tuple[str, ...]:
        key = self._key(owner_tenant_id)
        return tuple(sorted({pseudonym(key, s) for s in subject_ids}))

    def append(self, session: AsyncSession, **fields: Unpack[EventFields]) -> AuditEventRecord:
        """Add one event to ``session``: it commits (or rolls back) with the change it records."""
        record = self.event(**fields)
        add_rows(session, *event_rows(record))
        return record

    def event(self, **fields: Unpack[EventFields]) -> AuditEventRecord:
        """The event as it would be written, with its id and time; not yet in any session."""
        context = fields.get("context")
        return AuditEventRecord(
            id=uuid7(),
            time=fields.get("at") or self._clock.now(),
            log_tenant_id=fields["log_tenant_id"],
            actor=fields["actor"],
            action=fields["action"],
            outcome=fields["outcome"],
            resource_type=fields.get("resource_type"),
            resource_id=fields.get("resource_id"),
            subjects=fields.get("subjects", ()),
            purpose=fields.get("purpose"),
            legal_basis=fields.get("legal_basis"),
            reason=fields.get("reason"),
            request_id=context.request_id if context else None,
            source=context.source if context else None,
            user_agent=context.user_agent if context else None,
            extra=fields.get("extra") or {},
        )

    @staticmethod
    async def append_many(session: AsyncSession, records: Sequence[AuditEventRecord]) -> None:
        """Insert many events built by ``event`` now, in two statements (imports and the benchmark's fill)."""
        if records:
            rows = [event_rows(record) for record in records]
            await insert_rows(session, [event for event, _ in rows], [row for _, subjects in rows for row in subjects])


@dataclass(slots=True)
class AccessScope:
    """What one request touched, reported by the operation and written as one event before its transaction commits.

    Operations call `touched(...)`; the gateway supplies the action, the actor and the request context.
    """

    log: AuditLog
    actor: Actor
    log_tenant_id: uuid.UUID
    action: Action
    context: RequestContext
    resource_type: str | None = None
    resource_id: str | None = None
    subjects: set[str] = field(default_factory=set)
    purpose: str | None = None
    legal_basis: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def touched(
        self,
        *,
        resource_type: str | None = None,
        resource_id: uuid.UUID | str | None = None,
        subjects: Iterable[str] = (),
        purpose: str | None = None,
        legal_basis: str | None = None,
        **extra: Any,
    ) -> None:
        self.resource_type = resource_type or self.resource_type
        self.resource_id = str(resource_id) if resource_id is not None else self.resource_id
        self.subjects.update(subjects)
        self.purpose = purpose or self.purpose
        self.legal_basis = legal_basis or self.legal_basis
        self.extra.update(extra)

    def write(self, session: AsyncSession, *, outcome: Outcome = Outcome.SUCCESS, reason: str | None = None) -> None:
        self.log.append(
            session,
            action=self.action,
            outcome=outcome,
            actor=self.actor,
            log_tenant_id=self.log_tenant_id,
            context=self.context,
            resource_type=self.resource_type,
            resource_id=self.resource_id,
            subjects=tuple(sorted(self.subjects)),
            purpose=self.purpose,
            legal_basis=self.legal_basis,
            reason=reason,
            extra=self.extra,
        )


def event_rows(record: AuditEventRecord) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The event's row and its pseudonym rows, every searched value taken from the canonical text that is sealed
    (audit/derived.py), so that `audit verify` recomputes exactly what was written."""
    canonical = canonical_json(record.to_json())
    fields = decode_fields(canonical)
    stamp = dt.datetime.now(dt.UTC)  # the rows' own bookkeeping columns, as the ORM would have filled them
    event = {"created_at": stamp, "updated_at": stamp, **event_columns(fields), "canonical": canonical.decode()}
    subjects = [
        {"id": uuid7(), "event_id": fields.id, "pseudonym": name, "created_at": stamp, "updated_at": stamp}
        for name in fields.subjects
    ]
    return event, subjects
