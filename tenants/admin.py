"""The tenant administrator's work: inviting staff, their roles and second factors, deactivation, API clients, keys.

Every operation takes the acting principal and reaches rows only through the access functions, so a user or a
client of another organisation answers exactly like a missing one. The operator's command line uses the
`*_by_operator` variants, which act on a row already found by slug and email or id and skip the principal's checks.
Auditing is the caller's: the gateway records each route's event in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advanced_alchemy.service.pagination import OffsetPagination
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tenants import calendar, credentials, services
from tenants.access import access_client, access_tenant, access_user
from tenants.clock import Clock
from tenants.errors import Conflict, Forbidden, InvalidInput, NotFound
from tenants.keys import KeyRing, RotatedKeys
from tenants.models import ApiClient, Invitation, Role, Tenant, TenantKey, User
from tenants.principal import Principal
from tenants.staff_sessions import end_all_sessions

MAX_PAGE = 100
# 256 bits: the link is the invitee's only credential until they choose a password.
_TOKEN_BYTES = 32
ADDRESS_UNAVAILABLE = (
    "This email address cannot be used for a new account here. If the person already has a casebridge account, "
    "ask the platform operator."
)


class InvitationState(enum.StrEnum):
    PENDING = "pending"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class StaffMember:
    """One row of the administrator's user list."""

    user: User
    invitation: InvitationState | None  # None: the account is in use (or was made by the operator)

    @property
    def second_factor_enrolled(self) -> bool:
        return self.user.totp_enabled


@dataclass(frozen=True, slots=True)
class Invited:
    user: User
    token: str  # shown once, inside the link the administrator hands over; only its hash is stored
    expires_at: dt.datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_page(offset: int, limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidInput(f"A page holds 1 to {MAX_PAGE} rows and starts at 0 or later.")


def _checked_roles(roles: Sequence[str]) -> list[str]:
    if not roles:
        raise InvalidInput("A user needs at least one role.")
    known = {r.value for r in Role}
    if unknown := [r for r in roles if r not in known]:
        raise InvalidInput(f"Unknown role {unknown[0]!r}; expected some of: {', '.join(sorted(known))}.")
    return sorted(set(roles))


def _require_admin(principal: Principal) -> None:
    if not principal.has_role(Role.TENANT_ADMIN):
        raise Forbidden("Only the organisation's administrator may manage its staff, systems and keys.")


# -- the organisation -------------------------------------------------------------------------------------------------


async def organisation(session: AsyncSession, *, principal: Principal) -> Tenant:
    """The administrator's own organisation, with its settings."""
    _require_admin(principal)
    return await access_tenant(session, principal, principal.tenant_id, for_write=True)


async def set_time_zone(session: AsyncSession, *, principal: Principal, time_zone: str) -> Tenant:
    """Move the organisation to another IANA time zone (UnknownTimeZone for a name that is none). Deadlines already
    set keep their day and the moment it ends (tenants.services.set_tenant_time_zone, the operator's way)."""
    calendar.time_zone(time_zone)
    tenant = await organisation(session, principal=principal)
    tenant.time_zone = time_zone
    return tenant


# -- staff ------------------------------------------------------------------------------------------------------------


async def list_staff(
    session: AsyncSession, clock: Clock, *, principal: Principal, offset: int, limit: int
) -> OffsetPagination[StaffMember]:
    """The organisation's staff by email, with whether each has yet to accept an invitation."""
    _require_admin(principal)
    _check_page(offset, limit)
    mine = User.tenant_id == principal.tenant_id
    total = await session.scalar(select(func.count()).select_from(User).where(mine)) or 0
    users = list(await session.scalars(select(User).where(mine).order_by(User.email).offset(offset).limit(limit)))
    open_invitations = await session.scalars(
        select(Invitation).where(
            Invitation.tenant_id == principal.tenant_id,
            Invitation.user_id.in_([u.id for u in users]),
            Invitation.accepted_at.is_(None),
            Invitation.withdrawn_at.is_(None),
        )
    )
    now = clock.now()
    states: dict[uuid.UUID, InvitationState] = {}
    for invitation in open_invitations:
        state = InvitationState.PENDING if invitation.expires_at > now else InvitationState.EXPIRED
        if states.get(invitation.user_id) is not InvitationState.PENDING:
            states[invitation.user_id] = state
    return OffsetPagination(
        items=[StaffMember(u, states.get(u.id)) for u in users], limit=limit, offset=offset, total=total
    )


async def staff_member(session: AsyncSession, clock: Clock, *, principal: Principal, user_id: uuid.UUID) -> StaffMember:
    user = await access_user(session, principal, user_id, for_write=True)
    invitations = await session.scalars(
        select(Invitation.expires_at).where(
            Invitation.user_id == user.id, Invitation.accepted_at.is_(None), Invitation.withdrawn_at.is_(None)
        )
    )
    now = clock.now()
    expiries = list(invitations)
    state = None
    if expiries:
        state = InvitationState.PENDING if max(expiries) > now else InvitationState.EXPIRED
    return StaffMember(user, state)


async def invite_user(
    session: AsyncSession,
    clock: Clock,
    *,
    principal: Principal,
    email: str,
    roles: Sequence[str],
    display_name: str | None,
    valid_for: dt.timedelta,
) -> Invited:
    """Create an account that nobody can sign in to until the invitee opens the link and chooses a password."""
    tenant = await access_tenant(session, principal, principal.tenant_id, for_write=False)
    _require_admin(principal)
    name = (display_name or "").strip() or None
    if name is not None and len(name) > 255:
        raise InvalidInput("The name may be at most 255 characters long.")
    # The initial password is random and never shown: the invitation link is the only way in.
    # Addresses are unique across the platform, but an administrator sees only their own organisation (on PostgreSQL
    # row-level security hides the others, so only the unique index notices). Both cases answer alike, so an
    # invitation never reveals that an address is in use at another organisation.
    try:
        async with session.begin_nested():
            user, _ = await services.create_user(
                session, tenant=tenant, email=email, roles=roles, password=None, display_name=name
            )
    except (Conflict, IntegrityError):
        raise Conflict(ADDRESS_UNAVAILABLE) from None
    token, expires_at = _add_invitation(session, clock, user, invited_by=principal.actor_id, valid_for=valid_for)
    await session.flush()
    return Invited(user, token, expires_at)


async def reissue_invitation(
    session: AsyncSession, clock: Clock, *, principal: Principal, user_id: uuid.UUID, valid_for: dt.timedelta
) -> Invited:
    """A fresh link for someone who has not accepted yet; earlier links stop working."""
    user = await access_user(session, principal, user_id, for_write=True)
    if not user.active:
        raise Conflict("This account is deactivated; reactivate it before inviting again.")
    if user.last_login_at is not None or not user.must_change_password:
        raise Conflict("This person has already signed in; an invitation is only for a new account.")
    await _withdraw_invitations(session, clock, user)
    token, expires_at = _add_invitation(session, clock, user, invited_by=principal.actor_id, valid_for=valid_for)
    await session.flush()
    return Invited(user, token, expires_at)


def _add_invitation(
    session: AsyncSession, clock: Clock, user: User, *, invited_by: uuid.UUID | None, valid_for: dt.timedelta
) -> tuple[str, dt.datetime]:
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    expires_at = clock.now() + valid_for
    session.add(
        Invitation(
            tenant_id=user.tenant_id,
            user_id=user.id,
            token_hash=_hash(token),
            invited_by=invited_by,
            expires_at=expires_at,
        )
    )
    return token, expires_at


async def _withdraw_invitations(session: AsyncSession, clock: Clock, user: User) -> None:
    now = clock.now()
    for invitation in await session.scalars(
        select(Invitation).where(
            Invitation.user_id == user.id, Invitation.accepted_at.is_(None), Invitation.withdrawn_at.is_(None)
        )
    ):
        invitation.withdrawn_at = now


async def open_invitation(session: AsyncSession, clock: Clock, *, token: str) -> tuple[Invitation, User] | None:
    """The live invitation behind a link, with its account; None when unknown, used, withdrawn or expired.

    Runs in a platform-scoped session: the link is all the invitee has, so it cannot be narrowed to a tenant first.
    """
    if not token or len(token) > 128:
        return None
    row = (
        await session.execute(
            select(Invitation, User)
            .join(User, User.id == Invitation.user_id)
            .where(Invitation.token_hash == _hash(token))
            .with_for_update()
        )
    ).first()
    if row is None:
        return None
    invitation, user = row
    usable = (
        invitation.accepted_at is None
        and invitation.withdrawn_at is None
        and invitation.expires_at > clock.now()
        and user.active
    )
    return (invitation, user) if usable else None


async def accept_invitation(
    session: AsyncSession, clock: Clock, *, token: str, password: str, confirmation: str
) -> User:
    """Spend the link: the invitee's chosen password replaces the random one; the second factor comes next."""
    found = await open_invitation(session, clock, token=token)
    if found is None:
        raise NotFound("This invitation link is not valid any more. Ask your administrator for a new one.")
    invitation, user = found
    if password != confirmation:
        raise InvalidInput("The two passwords do not match.")
    if problem := credentials.password_problem(password):
        raise InvalidInput(problem)
    user.password_hash = credentials.hash_password(password)
    user.must_change_password = False
    user.failed_logins = 0
    user.locked_until = None
    invitation.accepted_at = clock.now()
    return user


async def set_roles(session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, roles: Sequence[str]) -> User:
    user = await access_user(session, principal, user_id, for_write=True)
    checked = _checked_roles(roles)
    # The acting administrator never demotes or deactivates themselves, so the organisation always keeps one.
    if user.id == principal.actor_id and Role.TENANT_ADMIN not in checked:
        raise Conflict("You cannot remove your own administrator role; ask another administrator to do it.")
    user.roles = checked
    return user


async def reset_second_factor(session: AsyncSession, clock: Clock, *, principal: Principal, user_id: uuid.UUID) -> User:
    """The person enrols a new authenticator at their next sign-in; every session they have ends now."""
    user = await access_user(session, principal, user_id, for_write=True)
    if user.id == principal.actor_id:
        raise Conflict("You cannot reset your own second factor; ask another administrator to do it.")
    return await reset_second_factor_by_operator(session, clock, user=user)


async def reset_second_factor_by_operator(session: AsyncSession, clock: Clock, *, user: User) -> User:
    services.reset_second_factor(user)
    await end_all_sessions(session, clock, user=user)
    return user


async def set_active(
    session: AsyncSession, clock: Clock, *, principal: Principal, user_id: uuid.UUID, active: bool
) -> User:
    user = await access_user(session, principal, user_id, for_write=True)
    if not active and user.id == principal.actor_id:
        raise Conflict("You cannot deactivate your own account; ask another administrator to do it.")
    return await set_active_by_operator(session, clock, user=user, active=active)


async def set_active_by_operator(session: AsyncSession, clock: Clock, *, user: User, active: bool) -> User:
    """Deactivation ends every session and unsent invitation at once; a deactivated account cannot sign in."""
    if user.active == active:
        raise Conflict("The account is already active." if active else "The account is already deactivated.")
    user.active = active
    if not active:
        await end_all_sessions(session, clock, user=user)
        await _withdraw_invitations(session, clock, user)
    else:
        user.failed_logins = 0
        user.locked_until = None
    return user


async def user_by_email(session: AsyncSession, *, tenant_id: uuid.UUID, email: str) -> User:
    """For the operator's command line: a user of one tenant by email address."""
    user = await session.scalar(
        select(User).where(User.tenant_id == tenant_id, User.email == services.normalise_email(email))
    )
    if user is None:
        raise NotFound("No user with this email address in that organisation.")
    return user


# -- agency systems ---------------------------------------------------------------------------------------------------


async def list_clients(
    session: AsyncSession, *, principal: Principal, offset: int, limit: int
) -> OffsetPagination[ApiClient]:
    """The organisation's API clients: active ones first, then revoked, each group newest first."""
    _require_admin(principal)
    _check_page(offset, limit)
    mine = ApiClient.tenant_id == principal.tenant_id
    total = await session.scalar(select(func.count()).select_from(ApiClient).where(mine)) or 0
    clients = await session.scalars(
        select(ApiClient)
        .where(mine)
        .order_by(ApiClient.revoked_at.is_not(None), ApiClient.created_at.desc(), ApiClient.id)
        .offset(offset)
        .limit(limit)
    )
    return OffsetPagination(items=list(clients), limit=limit, offset=offset, total=total)


async def register_client(
    session: AsyncSession, *, principal: Principal, name: str, public_jwk: Any, scopes: Sequence[str], role: str
) -> ApiClient:
    tenant = await access_tenant(session, principal, principal.tenant_id, for_write=False)
    _require_admin(principal)
    if len(name) > 255:
        raise InvalidInput("The name may be at most 255 characters long.")
    return await services.create_client(
        session, tenant=tenant, name=name, public_jwk=public_jwk, scopes=scopes, role=role
    )


async def revoke_client(
    session: AsyncSession, clock: Clock, *, principal: Principal, client_id: uuid.UUID
) -> ApiClient:
    client = await access_client(session, principal, client_id, for_write=True)
    return revoke_client_by_operator(clock, client=client)


def revoke_client_by_operator(clock: Clock, *, client: ApiClient) -> ApiClient:
    """From now on the client gets no new tokens, and the tokens it holds are refused at their next use."""
    if client.revoked_at is not None:
        raise Conflict("This client has already been revoked.")
    client.revoked_at = clock.now()
    return client


async def client_by_id(session: AsyncSession, *, tenant_id: uuid.UUID, client_id: str) -> ApiClient:
    """For the operator's command line: a client of one tenant by its client_id."""
    try:
        wanted = uuid.UUID(client_id)
    except ValueError:
        raise InvalidInput("A client_id is a UUID, as `client create` printed it.") from None
    client = await session.scalar(select(ApiClient).where(ApiClient.id == wanted, ApiClient.tenant_id == tenant_id))
    if client is None:
        raise NotFound("No API client with this client_id in that organisation.")
    return client


# -- keys -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the administrator sees of a key: never key material, only its id, purpose and dates."""

    kid: str
    use: str
    created_at: dt.datetime
    retired_at: dt.datetime | None
    usable_until: dt.datetime | None


async def list_keys(session: AsyncSession, clock: Clock, *, principal: Principal) -> list[KeyInfo]:
    """The organisation's keys still in use: the active ones, retired ones within their grace period, and retired
    data key-encryption keys (kept for as long as data wrapped under them exists)."""
    _require_admin(principal)
    now = clock.now()
    rows = await session.scalars(
        select(TenantKey)
        .where(TenantKey.tenant_id == principal.tenant_id)
        .order_by(TenantKey.retired_at.is_not(None), TenantKey.created_at.desc(), TenantKey.use)
    )
    return [
        KeyInfo(k.kid, k.use, k.created_at, k.retired_at, k.usable_until)
        for k in rows
        if k.retired_at is None or k.usable_until is None or k.usable_until > now
    ]


async def rotate_keys(session: AsyncSession, keyring: KeyRing, *, principal: Principal) -> RotatedKeys:
    tenant = await access_tenant(session, principal, principal.tenant_id, for_write=False)
    _require_admin(principal)
    return await keyring.rotate_tenant_keys(session, tenant.id)
