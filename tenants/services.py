"""Business operations on tenants, their people and agency systems."""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
import uuid
from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tenants import calendar, credentials
from tenants.calendar import DEFAULT_TIME_ZONE
from tenants.clock import Clock
from tenants.errors import Conflict, InvalidInput, NotFound
from tenants.keys import KeyRing, MasterKey, RotatedKeys
from tenants.models import (
    CLIENT_ROLES,
    ApiClient,
    Invitation,
    Role,
    Scope,
    Tenant,
    TenantKind,
    TenantStatus,
    User,
)
from tenants.staff_sessions import end_tenant_sessions

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Deliberately loose: one @, something on each side, a dot in the domain, no spaces.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failures: int
    lock_for: dt.timedelta


# -- tenants -----------------------------------------------------------------------------------


async def create_tenant(
    session: AsyncSession,
    keyring: KeyRing,
    *,
    slug: str,
    name: str,
    kind: str,
    region: str | None = None,
    contacts: dict[str, Any] | None = None,
    service_profile: dict[str, Any] | None = None,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> Tenant:
    calendar.time_zone(time_zone)  # UnknownTimeZone names the zone that is not one
    if not _SLUG.match(slug):
        raise InvalidInput(
            "The slug must be 1–63 lowercase letters, digits or hyphens, not starting or ending with a hyphen."
        )
    if kind not in TenantKind.__members__.values():
        allowed = ", ".join(k.value for k in TenantKind)
        raise InvalidInput(f"Unknown tenant kind {kind!r}; expected one of: {allowed}.")
    if not name.strip():
        raise InvalidInput("The tenant's name must not be empty.")
    if await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise Conflict(f"A tenant with the slug {slug!r} already exists.")
    tenant = Tenant(
        slug=slug,
        name=name.strip(),
        kind=kind,
        region=region,
        contacts=contacts or {},
        service_profile=service_profile or {},
        time_zone=time_zone,
    )
    tenant.refresh_search_keys()
    session.add(tenant)
    await session.flush()
    await keyring.create_tenant_keys(session, tenant.id)
    return tenant


async def tenant_by_slug(session: AsyncSession, slug: str) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"No tenant with the slug {slug!r}.")
    return tenant


async def hosted_tenants(session: AsyncSession) -> list[Tenant]:
    """The active agencies this node hosts (not its peers' agencies), by slug."""
    return list(
        await session.scalars(
            select(Tenant)
            .where(Tenant.peer.is_(None), Tenant.status == TenantStatus.ACTIVE.value)
            .order_by(Tenant.slug)
        )
    )


async def tenant_exists(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """Whether this node hosts the tenant (a peer node's agency is published by its own node, not here)."""
    query = select(Tenant.id).where(Tenant.id == tenant_id, Tenant.peer.is_(None))
    return await session.scalar(query) is not None


async def tenant_time_zone(session: AsyncSession, tenant_id: uuid.UUID) -> str:
    """The IANA name of the agency's clock (tenants/calendar.py); NotFound for a tenant this node does not host."""
    name = await session.scalar(select(Tenant.time_zone).where(Tenant.id == tenant_id, Tenant.peer.is_(None)))
    if name is None:
        raise NotFound("No such organisation.")
    return name


async def hosted_tenant_ids(session: AsyncSession) -> set[uuid.UUID]:
    """Every tenant this node hosts: not the directory rows of agencies hosted on a peer node."""
    return set(await session.scalars(select(Tenant.id).where(Tenant.peer.is_(None))))


async def set_tenant_status(session: AsyncSession, *, slug: str, status: str) -> Tenant:
    """Suspend or reactivate a tenant. A suspension ends every credential the tenant's people and systems hold:
    access tokens issued and staff sessions begun before it never work again, reactivated or not, and invitations
    not yet accepted are withdrawn. Clients and accounts themselves stay: they can obtain new ones after reactivation.
    """
    if status not in TenantStatus.__members__.values():
        raise InvalidInput(f"Unknown tenant status {status!r}; expected 'active' or 'suspended'.")
    # Under the row lock, a token being issued or a session being begun for the tenant (which share-lock the row)
    # either finishes before the moment below is taken, or waits and then sees the suspension.
    tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug).with_for_update())
    if tenant is None:
        raise NotFound(f"No tenant with the slug {slug!r}.")
    if status == TenantStatus.SUSPENDED:
        # Wall-clock time, not the injected clock: it is compared with access tokens' `iat` and session rows'
        # `created_at`, which are both wall-clock times.
        now = dt.datetime.now(dt.UTC)
        tenant.sessions_valid_after = now
        await end_tenant_sessions(session, tenant_id=tenant.id, at=now)
        await session.execute(
            update(Invitation)
            .where(
                Invitation.tenant_id == tenant.id, Invitation.accepted_at.is_(None), Invitation.withdrawn_at.is_(None)
            )
            .values(withdrawn_at=now)
        )
    tenant.status = status
    return tenant


async def set_tenant_time_zone(session: AsyncSession, *, slug: str, time_zone: str) -> Tenant:
    """Move an agency to another IANA time zone. Deadlines already set keep their day and the moment it ends."""
    calendar.time_zone(time_zone)
    tenant = await tenant_by_slug(session, slug)
    tenant.time_zone = time_zone
    return tenant


async def rotate_keys(session: AsyncSession, keyring: KeyRing, *, slug: str) -> RotatedKeys:
    tenant = await tenant_by_slug(session, slug)
    return await keyring.rotate_tenant_keys(session, tenant.id)


# -- people ------------------------------------------------------------------------------------


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise InvalidInput("That is not a valid email address.")
    return email


def _known_names(names: Sequence[str], known: Set[str], *, holder: str, kind: str, expected: str) -> list[str]:
    """`names` sorted, once each, if there is at least one and each is `known`; else the reason, for a person."""
    if not names:
        raise InvalidInput(f"A {holder} needs at least one {kind}.")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(f"Unknown {kind} {unknown[0]!r}; expected {expected}.")
    return sorted(set(names))


def _checked_roles(roles: Sequence[str], allowed: frozenset[str] | None = None) -> list[str]:
    known = allowed or frozenset(Role)
    return _known_names(roles, known, holder="user", kind="role", expected=f"one of: {', '.join(sorted(known))}")


async def create_user(
    session: AsyncSession,
    *,
    tenant: Tenant,
    email: str,
    roles: Sequence[str],
    password: str | None,
    display_name: str | None = None,
) -> tuple[User, str | None]:
    """Create a user. Without a password, a one-time password is generated and returned (never stored in clear).

    Either way the user must choose a new password and enrol a second factor at first sign-in.
    """
    email = normalise_email(email)
    checked = _checked_roles(roles)
    one_time = None
    if password is None:
        password = one_time = credentials.one_time_password()
    elif problem := credentials.password_problem(password):
        raise InvalidInput(problem)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("A user with this email address already exists.")
    user = User(
        tenant_id=tenant.id,
        email=email,
        display_name=display_name,
        roles=checked,
        password_hash=credentials.hash_password(password),
        must_change_password=True,
    )
    session.add(user)
    await session.flush()
    return user, one_time


# -- agency systems ----------------------------------------------------------------------------


def validate_public_jwk(jwk: Any) -> dict[str, Any]:
    """A client's registered key: public only, Ed25519 (signing as Ed25519 or EdDSA) or P-256 (ES256)."""
    if not isinstance(jwk, dict):
        raise InvalidInput("The JWK must be a JSON object.")
    if "d" in jwk:
        raise InvalidInput("The JWK contains a private key; register only the public part.")
    try:
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            public = OKPKey.import_key(jwk).as_dict(private=False)
        elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            public = ECKey.import_key(jwk).as_dict(private=False)
        else:
            raise InvalidInput("The JWK must be an Ed25519 (kty OKP) or P-256 (kty EC) public key.")
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidInput("The JWK is malformed and cannot be read as a public key.") from exc
    return {k: v for k, v in jwk.items() if k in {"kid", "alg", "use"}} | public


def _checked_scopes(scopes: Sequence[str]) -> list[str]:
    known = {s.value for s in Scope}
    return _known_names(scopes, known, holder="client", kind="scope", expected=f"some of: {' '.join(sorted(known))}")


async def create_client(
    session: AsyncSession,
    *,
    tenant: Tenant,
    name: str,
    public_jwk: Any,
    scopes: Sequence[str],
    role: str = Role.SPECIALIST,
) -> ApiClient:
    if not name.strip():
        raise InvalidInput("The client's name must not be empty.")
    (checked_role,) = _checked_roles([role], frozenset(CLIENT_ROLES))
    client = ApiClient(
        tenant_id=tenant.id,
        name=name.strip(),
        public_jwk=validate_public_jwk(public_jwk),
        scopes=_checked_scopes(scopes),
        role=checked_role,
    )
    session.add(client)
    await session.flush()
    return client


# Built once: it runs on every API request.
_CLIENT_IDENTITY = (
    select(ApiClient, Tenant)
    .join(Tenant, Tenant.id == ApiClient.tenant_id)
    .where(ApiClient.id == bindparam("client_id"), ApiClient.tenant_id == bindparam("tenant_id"))
)


async def client_identity(
    session: AsyncSession, *, tenant_id: uuid.UUID, client_id: uuid.UUID
) -> tuple[ApiClient, Tenant] | None:
    """The client a verified access token names, with its tenant, for the per-request status checks."""
    row = (await session.execute(_CLIENT_IDENTITY, {"client_id": client_id, "tenant_id": tenant_id})).first()
    return (row[0], row[1]) if row is not None else None


# -- signing in --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    needs_password_change: bool
    needs_enrolment: bool


@dataclass(frozen=True, slots=True)
class SignInRefused:
    reason: str  # "invalid" | "locked" | "suspended"
    locked_until: dt.datetime | None = None
    # The account the attempt named, when there is one: its organisation's audit trail records the refusal.
    # Never shown to the person signing in, who learns only `reason`.
    user: User | None = None
    # True when this very attempt locked the account (the lockout is an event of its own in the audit trail).
    locked_now: bool = False


SignInResult = SignedIn | SignInRefused


async def sign_in(
    session: AsyncSession, clock: Clock, policy: LockoutPolicy, *, email: str, password: str
) -> SignInResult:
    """Check an email and password, counting failures towards a temporary lockout."""
    now = clock.now()
    # Locked for the rest of the transaction: parallel guesses must each count towards the lockout.
    user = await session.scalar(select(User).where(User.email == email.strip().lower()).with_for_update())
    if user is None or not user.active:
        # Spend the same time as a real check so response time does not reveal which emails exist.
        credentials.verify_password(_dummy_hash(), password)
        return SignInRefused("invalid", user=user)
    # Checked even while the account is locked, so a locked account spends the same time on every attempt.
    password_ok = credentials.verify_password(user.password_hash, password)
    if _locked(user, now):
        return _attempt_while_locked(user, now, policy)
    if not password_ok:
        return _record_failure(user, now, policy)
    tenant = await session.scalar(select(Tenant).where(Tenant.id == user.tenant_id))
    if tenant is None:
        return SignInRefused("invalid", user=user)
    if not tenant.is_active:
        return SignInRefused("suspended", user=user)
    return SignedIn(user, user.must_change_password, not user.totp_enabled)


def _locked(user: User, now: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def _record_failure(user: User, now: dt.datetime, policy: LockoutPolicy) -> SignInRefused:
    user.failed_logins += 1
    if user.failed_logins >= policy.max_failures:
        user.failed_logins = 0
        user.locked_until = now + policy.lock_for
        return SignInRefused("locked", user.locked_until, user=user, locked_now=True)
    return SignInRefused("invalid", user=user)


def _attempt_while_locked(user: User, now: dt.datetime, policy: LockoutPolicy) -> SignInRefused:
    """Any attempt on a locked account, right or wrong: the same answer, and it counts as a failure.

    Were a right password answered differently, or a wrong one not counted, the lock would let an attacker go on
    guessing at the rate limit and tell when a guess was right. Counting every attempt alike keeps even the moment the
    lock is renewed (after `max_failures` attempts during it) independent of what was typed.
    """
    refused = _record_failure(user, now, policy)
    return refused if refused.locked_now else SignInRefused("locked", user.locked_until, user=user)


@functools.cache
def _dummy_hash() -> str:
    return credentials.hash_password(secrets.token_urlsafe(16))


async def pass_second_factor(
    session: AsyncSession, master: MasterKey, clock: Clock, policy: LockoutPolicy, *, user: User, code: str
) -> SignInResult:
    """Check a TOTP code or a recovery code; failures count towards the same lockout as passwords."""
    # Under a row lock, two browsers cannot both spend one recovery code or one TOTP step.
    await _lock(session, user)
    now = clock.now()
    if _locked(user, now):
        return _attempt_while_locked(user, now, policy)
    if user.totp_enabled and user.totp_secret_wrapped is not None:
        secret = master.unwrap(user.totp_secret_wrapped, context=_totp_context(user.id))
        match = credentials.match_totp(secret, code, at_unix=now.timestamp(), last_step=user.totp_last_step)
        if match is not None:
            user.totp_last_step = match.step
            return _succeeded(user, now)
        remaining = credentials.consume_recovery_code(user.recovery_code_hashes, code)
        if remaining is not None:
            user.recovery_code_hashes = remaining
            return _succeeded(user, now)
    return _record_failure(user, now, policy)


async def _lock(session: AsyncSession, user: User) -> None:
    """Re-read `user` under a row lock (pending changes are flushed first, not lost)."""
    await session.flush()
    await session.refresh(user, with_for_update=True)


def _succeeded(user: User, now: dt.datetime) -> SignedIn:
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    return SignedIn(user, user.must_change_password, not user.totp_enabled)


def _totp_context(user_id: uuid.UUID) -> str:
    return f"casebridge/totp/v1/{user_id}"


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    secret_text: str
    uri: str


def begin_totp_enrolment(master: MasterKey, *, user: User, issuer: str) -> TotpEnrolment:
    """Store a fresh, not yet active secret; it becomes active once the user proves they hold it."""
    secret = credentials.new_totp_secret()
    user.totp_secret_wrapped = master.wrap(secret, context=_totp_context(user.id))
    user.totp_enabled = False
    user.totp_last_step = None
    return TotpEnrolment(
        credentials.totp_secret_text(secret), credentials.totp_uri(secret, account=user.email, issuer=issuer)
    )


def pending_totp_enrolment(master: MasterKey, *, user: User, issuer: str) -> TotpEnrolment | None:
    if user.totp_enabled or user.totp_secret_wrapped is None:
        return None
    secret = master.unwrap(user.totp_secret_wrapped, context=_totp_context(user.id))
    return TotpEnrolment(
        credentials.totp_secret_text(secret), credentials.totp_uri(secret, account=user.email, issuer=issuer)
    )


async def confirm_totp_enrolment(
    session: AsyncSession, master: MasterKey, clock: Clock, *, user: User, code: str
) -> list[str] | None:
    """Activate the pending secret when `code` matches; returns the recovery codes to show once."""
    await _lock(session, user)
    if user.totp_enabled or user.totp_secret_wrapped is None:
        return None
    secret = master.unwrap(user.totp_secret_wrapped, context=_totp_context(user.id))
    match = credentials.match_totp(secret, code, at_unix=clock.now().timestamp(), last_step=None)
    if match is None:
        return None
    codes = credentials.new_recovery_codes()
    user.totp_enabled = True
    user.totp_last_step = match.step
    user.recovery_code_hashes = [credentials.recovery_code_hash(c) for c in codes]
    user.failed_logins = 0
    user.last_login_at = clock.now()
    return codes


def reset_second_factor(user: User) -> None:
    """An administrator's reset: the user enrols again at next sign-in."""
    user.totp_enabled = False
    user.totp_secret_wrapped = None
    user.totp_last_step = None
    user.recovery_code_hashes = []


WRONG_CURRENT_PASSWORD = "The current password is not correct."  # noqa: S105 - a message, not a password


def change_password(user: User, *, current: str, new: str) -> None:
    """Replace the password of someone who knows the current one (set-up and tests; staff use `change_own_password`)."""
    if not credentials.verify_password(user.password_hash, current):
        raise InvalidInput(WRONG_CURRENT_PASSWORD)
    _replace_password(user, current=current, new=new)


async def change_own_password(
    session: AsyncSession, clock: Clock, policy: LockoutPolicy, *, user: User, current: str, new: str
) -> SignInRefused | None:
    """A signed-in user's password change. The current password is checked as at sign-in: a wrong one counts
    towards the lockout, and while the account is locked every attempt is refused alike (a stolen session must not
    become a way to guess the password). Raises InvalidInput when the new password cannot be used."""
    await _lock(session, user)
    now = clock.now()
    current_ok = credentials.verify_password(user.password_hash, current)
    if _locked(user, now):
        return _attempt_while_locked(user, now, policy)
    if not current_ok:
        return _record_failure(user, now, policy)
    _replace_password(user, current=current, new=new)
    user.failed_logins = 0
    return None


def _replace_password(user: User, *, current: str, new: str) -> None:
    if problem := credentials.password_problem(new):
        raise InvalidInput(problem)
    if new == current:
        raise InvalidInput("The new password must differ from the current one.")
    user.password_hash = credentials.hash_password(new)
    user.must_change_password = False


STAFF_LANGUAGES = frozenset({"ru", "en"})


def set_language(user: User, language: str) -> None:
    """Save the language a member of staff reads the web pages in."""
    if language not in STAFF_LANGUAGES:
        raise InvalidInput(f"Unknown language {language!r}; use one of: {', '.join(sorted(STAFF_LANGUAGES))}.")
    user.language = language
