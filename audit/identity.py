"""The audit log's name, its C2SP origin: fixed when the log is created, changed only by an audited rename.

Every checkpoint's origin line, and the key name its signature is made under, is the log's name at the checkpoint's
size: each name in ``audit_log_name`` covers the checkpoints from its ``from_size`` until the next name's. The name
is stored with the log, never derived from a process's own URL or port, so a command run with another
``CASEBRIDGE_BASE_URL``, or a deployment moved to its public address, signs and verifies under the same name; a
rename leaves the older checkpoints under the name they were signed with, so they stay verifiable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from audit.checkpoint import CheckpointFormatError, name_problem, parse_note
from audit.models import AuditCheckpoint, AuditLogName
from tenants.errors import InvalidInput

__all__ = [
    "MAX_ORIGIN_LENGTH",
    "LogName",
    "LogNames",
    "adopt_name",
    "hold_naming_lock",
    "load_names",
    "names_signed_under",
    "origin_problem",
    "rename",
]

MAX_ORIGIN_LENGTH = 255
"""Longest origin accepted for a new name, in characters (a host name is at most 253)."""


@dataclass(frozen=True, slots=True)
class LogName:
    origin: str
    from_size: int  # the smallest checkpoint size signed under this name

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "from_size": self.from_size}


@dataclass(frozen=True, slots=True)
class LogNames:
    """The names the log has had, in the order they were adopted; empty when the log has no name yet."""

    names: tuple[LogName, ...] = ()

    @classmethod
    def of(cls, origin: str | LogNames) -> LogNames:
        """``origin`` as a log that has had that one name from the start, or the names themselves."""
        return origin if isinstance(origin, LogNames) else cls((LogName(origin, 1),))

    @property
    def current(self) -> str | None:
        return self.names[-1].origin if self.names else None

    def at(self, size: int) -> str | None:
        """The name a checkpoint of ``size`` is signed under, or None when the log has no name."""
        found = None
        for name in self.names:
            if name.from_size <= size:
                found = name.origin
        return found

    def origins(self) -> list[str]:
        """Each distinct name, oldest first."""
        return list(dict.fromkeys(name.origin for name in self.names))


def names_signed_under(notes: Iterable[str]) -> LogNames:
    """The names checkpoint notes were signed under, as a log's names: each origin line in size order, a new name
    where it changes (as migration 0014 adopts them). A malformed note, or an origin no key can be named, names
    nothing (verification reports that note)."""
    checkpoints = []
    for text in notes:
        try:
            checkpoints.append(parse_note(text).checkpoint)
        except CheckpointFormatError:
            continue
    names: list[LogName] = []
    previous_size = 0
    for checkpoint in sorted(checkpoints, key=lambda c: c.size):
        if origin_problem(checkpoint.origin) is None and (not names or names[-1].origin != checkpoint.origin):
            names.append(LogName(checkpoint.origin, previous_size + 1))
        previous_size = checkpoint.size
    return LogNames(tuple(names))


def origin_problem(origin: object) -> str | None:
    """Why ``origin`` cannot name the log (a signed-note key name of at most 255 characters), or None."""
    problem = name_problem(origin)
    if problem is None and isinstance(origin, str) and len(origin) > MAX_ORIGIN_LENGTH:
        problem = f"the log's name must be at most {MAX_ORIGIN_LENGTH} characters"
    return problem


# pg_advisory_xact_lock key of naming: the first 8 bytes of SHA-256("casebridge/audit-log-name"), as a signed integer.
_NAMING_LOCK = int.from_bytes(hashlib.sha256(b"casebridge/audit-log-name").digest()[:8], "big", signed=True)


async def hold_naming_lock(session: AsyncSession) -> None:
    """Signing a checkpoint and renaming the log take turns until the caller's transaction ends, so no checkpoint is
    signed under a name that a rename committed meanwhile has replaced (SQLite's write lock, taken at BEGIN, already
    serialises them)."""
    if (await session.connection()).dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_NAMING_LOCK)))


async def load_names(session: AsyncSession) -> LogNames:
    rows = await session.execute(select(AuditLogName.origin, AuditLogName.from_size).order_by(AuditLogName.number))
    return LogNames(tuple(LogName(origin, from_size) for origin, from_size in rows))


async def adopt_name(session: AsyncSession, origin: str, *, at: dt.datetime) -> LogNames:
    """The log's names, after giving it ``origin`` as its first if it had none (the log is being created).

    A log that has a name keeps it, whatever ``origin`` says. ValueError for an ``origin`` that cannot be a name.
    """
    problem = origin_problem(origin)
    if problem:
        raise ValueError(problem)
    values = {"number": 1, "origin": origin, "from_size": 1, "adopted_at": at}
    dialect = (await session.connection()).dialect.name
    if dialect == "postgresql":
        await session.execute(postgresql.insert(AuditLogName).values(values).on_conflict_do_nothing())
    else:
        await session.execute(sqlite.insert(AuditLogName).values(values).on_conflict_do_nothing())
    return await load_names(session)


async def rename(session: AsyncSession, origin: str, *, at: dt.datetime) -> tuple[LogName, LogName]:
    """Give the log a new name from the next checkpoint on; returns the name it had and the new one.

    Checkpoints already signed keep their name. InvalidInput for a name the signed-note rules refuse, for the
    current name, and for a log that has no name yet (no sealer has run on this database).
    """
    problem = origin_problem(origin)
    if problem:
        raise InvalidInput(f"{origin!r} cannot name the audit log: {problem}")
    await hold_naming_lock(session)
    names = await load_names(session)
    if not names.names:
        raise InvalidInput("the audit log has no name yet: no casebridge process has sealed it in this database")
    if names.current == origin:
        raise InvalidInput(f"the audit log is already named {origin!r}")
    latest = await session.scalar(select(func.max(AuditCheckpoint.size))) or 0
    number = await session.scalar(select(func.max(AuditLogName.number))) or 0
    adopted = LogName(origin, latest + 1)
    session.add(AuditLogName(number=number + 1, origin=origin, from_size=adopted.from_size, adopted_at=at))
    await session.flush()
    return names.names[-1], adopted
