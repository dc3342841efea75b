"""Staff sessions: random bearer tokens kept only as hashes, with absolute and idle expiry."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.clock import Clock
from tenants.errors import NotAuthenticated
from tenants.models import StaffSession, Tenant, User

# Sliding idle expiry is written back at most this often, so reads do not each cost a write.
_TOUCH_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    lifetime: dt.timedelta
    idle: dt.timedelta
    # A session past the password only can do nothing but finish signing in, so it need not outlive the time it
    # takes to set up an authenticator app; the full lifetime starts once the second factor is passed.
    pending: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class ActiveSession:
    record: StaffSession
    user: User
    tenant: Tenant

    @property
    def fully_signed_in(self) -> bool:
        """Second factor passed and no password change pending: the session may use the service."""
        return self.record.second_factor_passed and not self.user.must_change_password


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_session(
    session: AsyncSession, clock: Clock, policy: SessionPolicy, *, user: User, second_factor_passed: bool
) -> tuple[str, StaffSession]:
    """Begin a session under a new random token; returns the token for the cookie.

    The tenant's row is share-locked first, so a suspension running at the same time either waits for this session
    (and then ends it) or has already happened (and no session begins).
    """
    tenant = await session.scalar(select(Tenant).where(Tenant.id == user.tenant_id).with_for_update(read=True))
    if tenant is None or not tenant.is_active:
        raise NotAuthenticated("The organisation's access to casebridge is suspended.")
    now = clock.now()
    token = secrets.token_urlsafe(32)
    lifetime = policy.lifetime if second_factor_passed else min(policy.lifetime, policy.pending)
    record = StaffSession(
        tenant_id=user.tenant_id,
        user_id=user.id,
        token_hash=_hash(token),
        second_factor_passed=second_factor_passed,
        expires_at=now + lifetime,
        idle_expires_at=now + min(policy.idle, lifetime),
    )
    session.add(record)
    await session.flush()
    return token, record


async def find_session(
    session: AsyncSession, clock: Clock, policy: SessionPolicy, *, token: str
) -> ActiveSession | None:
    """The live session for a cookie token; None when unknown, ended, expired, begun before its tenant's last
    suspension, or when its user or tenant is inactive."""
    if not token or len(token) > 128:
        return None
    row = (
        await session.execute(
            select(StaffSession, User, Tenant)
            .join(User, User.id == StaffSession.user_id)
            .join(Tenant, Tenant.id == StaffSession.tenant_id)
            .where(StaffSession.token_hash == _hash(token))
        )
    ).first()
    if row is None:
        return None
    record, user, tenant = row
    now = clock.now()
    if record.ended_at is not None or record.expires_at <= now or record.idle_expires_at <= now:
        return None
    if not user.active or not tenant.is_active or tenant.issued_before_suspension(record.created_at):
        return None
    new_idle = min(now + policy.idle, record.expires_at)
    if new_idle - record.idle_expires_at >= _TOUCH_EVERY:
        record.idle_expires_at = new_idle
    return ActiveSession(record, user, tenant)


def end_session(clock: Clock, record: StaffSession) -> None:
    record.ended_at = clock.now()


async def end_all_sessions(session: AsyncSession, clock: Clock, *, user: User) -> None:
    """After a password change or a second-factor reset, every other device must sign in again."""
    now = clock.now()
    for record in await session.scalars(
        select(StaffSession).where(StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))
    ):
        record.ended_at = now


async def end_tenant_sessions(session: AsyncSession, *, tenant_id: uuid.UUID, at: dt.datetime) -> None:
    """A suspension: every session of the tenant's staff ends (and would stay dead on reactivation anyway)."""
    await session.execute(
        update(StaffSession)
        .where(StaffSession.tenant_id == tenant_id, StaffSession.ended_at.is_(None))
        .values(ended_at=at)
    )
