"""Verification runs of the live log: each `audit verify` and each DPO's "verify now" leaves one row behind."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from audit.models import AuditCheckpoint, AuditVerification
from audit.verify import VerifyResult


class Trigger(enum.StrEnum):
    CLI = "cli"
    CONSOLE = "console"


def record_verification(
    session: AsyncSession, result: VerifyResult, *, at: dt.datetime, trigger: Trigger
) -> AuditVerification:
    """Keep the outcome of one run; the problems themselves are printed by the command, not stored."""
    run = AuditVerification(
        at=at,
        trigger=trigger.value,
        ok=result.ok,
        size=result.size,
        root=result.root,
        problems=len(result.problems),
        pending=result.pending,
        checkpoints=result.checkpoints,
    )
    session.add(run)
    return run


async def latest_verification(session: AsyncSession) -> AuditVerification | None:
    return await session.scalar(
        select(AuditVerification).order_by(AuditVerification.at.desc(), AuditVerification.id.desc()).limit(1)
    )


async def latest_checkpoint(session: AsyncSession) -> AuditCheckpoint | None:
    """The newest signed checkpoint, with the time it was signed (the sealer's own view has no time)."""
    return await session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
