"""A node of the audit log for the sealing tests: one gateway's collaborators without HTTP or the bus, the events it
appends, and the raw SQL an insider with database access would use to tamper with what it sealed."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import BindParameter, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.events import Action, Actor, Outcome
from audit.models import AuditSeal
from audit.sealer import Sealer
from audit.services import AuditLog
from gateway.runtime import Runtime
from tenants.persistence import platform_session

Cli = Callable[..., Awaitable[tuple[int, dict[str, Any] | None, str]]]  # the `cli` fixture: (exit code, JSON, stderr)
Finding = tuple[str, int | None]  # (problem kind, seq) as `audit verify` prints them

TENANTS = (uuid.UUID("01960000-0000-7000-8000-00000000000a"), uuid.UUID("01960000-0000-7000-8000-00000000000b"))


@dataclass
class Node:
    """One gateway's collaborators without the HTTP app or the bus: enough to append, seal and verify."""

    runtime: Runtime
    sealer: Sealer

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.runtime.sessions


async def append_events(node: Node, count: int, *, at: dt.datetime | None = None) -> list[uuid.UUID]:
    """`count` events in the logs of the two TENANTS and the platform's own (every fifth); their ids."""
    audit: AuditLog = node.runtime.exchange.audit
    ids = []
    async with platform_session(node.sessions) as session, session.begin():
        for n in range(count):
            tenant = TENANTS[n % 2] if n % 5 else None  # every fifth one is the platform's own
            record = audit.append(
                session,
                action=Action.EXCHANGE_REFERRAL_READ if tenant else Action.TENANTS_TOKEN_REFUSE,
                outcome=Outcome.SUCCESS if tenant else Outcome.DENIED,
                actor=Actor(kind="user", id=uuid.uuid4(), tenant_id=tenant, role="intake"),
                log_tenant_id=tenant,
                subjects=audit.pseudonyms(tenant, [uuid.uuid4()]) if tenant else (),
                purpose="social_support",
                reason="Проверка" if n % 3 == 0 else None,
                extra={"n": n},
                at=at,
            )
            ids.append(record.id)
    return ids


async def seal_everything(sealer: Sealer) -> str | None:
    """Seal every event there is, then sign a checkpoint: its note, or None when there was nothing new."""
    while await sealer.seal_once():
        pass
    return await sealer.checkpoint_once()


async def execute(node: Node, sql: str, **params: Any) -> None:
    """Run ``sql`` as the database's owner would; parameters ending in ``id`` are UUIDs, ``at`` a time."""
    binds: list[BindParameter[Any]] = [bindparam(name, type_=GUID()) for name in params if name.endswith("id")]
    binds += [bindparam(name, type_=DateTimeUTC(timezone=True)) for name in params if name == "at"]
    async with platform_session(node.sessions) as session, session.begin():
        await session.execute(text(sql).bindparams(*binds), params)


async def event_at(node: Node, seq: int) -> uuid.UUID:
    """The id of the event sealed at `seq`."""
    async with platform_session(node.sessions) as session:
        event_id = await session.scalar(select(AuditSeal.event_id).where(AuditSeal.seq == seq))
    assert event_id is not None
    return event_id
