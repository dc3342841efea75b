"""Audit rows waiting in a session: written with Core inserts where the ORM would have flushed them.

`AuditLog.append` is synchronous and its callers rely on the event committing with their change, as an object
added to the session would. Building ORM objects for rows that are only ever inserted costs more than the insert
itself, so the rows wait in ``session.info`` instead and are written, in one insert per table for however many
events are waiting, at the moments the unit of work would have flushed them:

- before the transaction commits (and before a savepoint is released), so the events commit with the change and,
  for reads, are stored before the answer leaves (fail closed: an event that cannot be written fails the commit);
- before a savepoint begins, on the enclosing transaction, so a savepoint rolled back later keeps them;
- before any ORM statement or flush, so the session's own queries see its events, as autoflush would show them.

Events appended inside a transaction or savepoint that rolls back (or a session closed without committing) are
dropped with it, as pending objects are expunged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from audit.models import AuditEvent, AuditEventSubject

__all__ = ["add_rows", "insert_rows", "pending_events"]

_KEY: Final = "casebridge.audit.pending"
_EVENTS: Final[Table] = AuditEvent.__table__  # type: ignore[assignment]  # a declarative class's table is a Table
_SUBJECTS: Final[Table] = AuditEventSubject.__table__  # type: ignore[assignment]


@dataclass(slots=True)
class _Batch:
    """Rows appended while ``transaction`` (a root transaction or a savepoint) was the innermost one."""

    transaction: SessionTransaction
    events: list[dict[str, Any]] = field(default_factory=list)
    subjects: list[dict[str, Any]] = field(default_factory=list)


def add_rows(session: AsyncSession | Session, event_row: dict[str, Any], subject_rows: list[dict[str, Any]]) -> None:
    """Queue one event's rows in the innermost transaction of ``session`` (begun here if none is, as ``add`` does)."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    # Session.add begins a transaction the same way, so rows queued before any statement belong to it.
    transaction = sync.get_nested_transaction() or sync.get_transaction() or sync._autobegin_t()
    batches: list[_Batch] = sync.info.setdefault(_KEY, [])
    if not batches or batches[-1].transaction is not transaction:
        batches.append(_Batch(transaction))
    batches[-1].events.append(event_row)
    batches[-1].subjects.extend(subject_rows)


def pending_events(session: AsyncSession | Session) -> int:
    """How many events ``session`` holds that are not written yet."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    return sum(len(batch.events) for batch in sync.info.get(_KEY, ()))


def _write(session: Session, transaction: SessionTransaction | None = None) -> None:
    batches: list[_Batch] | None = session.info.get(_KEY)
    if not batches:
        return
    events = [row for batch in batches for row in batch.events]
    subjects = [row for batch in batches for row in batch.subjects]
    batches.clear()  # before executing: the inserts below must not find them again
    connection = transaction.connection(None) if transaction is not None else session.connection()
    # One row goes as a plain execute: the drivers' executemany paths cost more for a single parameter set.
    connection.execute(insert(_EVENTS), events[0] if len(events) == 1 else events)
    if subjects:
        connection.execute(insert(_SUBJECTS), subjects[0] if len(subjects) == 1 else subjects)


async def insert_rows(session: AsyncSession, events: list[dict[str, Any]], subjects: list[dict[str, Any]]) -> None:
    """Insert rows now, in ``session``'s transaction: one statement per table."""
    connection = await session.connection()
    await connection.execute(insert(_EVENTS), events)
    if subjects:
        await connection.execute(insert(_SUBJECTS), subjects)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    # Fires for the outermost commit and for each savepoint's release.
    _write(session)


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: UOWTransaction, _instances: object) -> None:
    _write(session)


@event.listens_for(Session, "do_orm_execute")
def _before_orm_statement(state: ORMExecuteState) -> None:
    _write(state.session)


@event.listens_for(Session, "after_transaction_create")
def _before_savepoint(session: Session, transaction: SessionTransaction) -> None:
    # The SAVEPOINT itself is emitted later, on first use: writing on the enclosing transaction puts the rows before it.
    if transaction.nested and transaction.parent is not None:
        _write(session, transaction.parent)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    batches: list[_Batch] | None = session.info.get(_KEY)
    if batches:
        # What is still queued for a transaction that has ended was never written: it rolled back, or was closed.
        batches[:] = [batch for batch in batches if batch.transaction is not transaction]
