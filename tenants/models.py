"""Tables of the tenants area: organisations, people, agency systems, key rings, sessions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

# The names the tables store live in tenants.vocabulary, which the command line's help loads without SQLAlchemy;
# importing them from here stays valid.
from tenants.calendar import DEFAULT_TIME_ZONE
from tenants.vocabulary import CLIENT_ROLES as CLIENT_ROLES
from tenants.vocabulary import KeyUse as KeyUse
from tenants.vocabulary import PlatformKeyUse as PlatformKeyUse
from tenants.vocabulary import Role as Role
from tenants.vocabulary import Scope as Scope
from tenants.vocabulary import TenantKind as TenantKind
from tenants.vocabulary import TenantStatus as TenantStatus


class Base(UUIDv7AuditBase):
    """Every casebridge table: UUIDv7 primary key, created_at/updated_at in UTC."""

    __abstract__ = True


class TenantScoped:
    """Mixin for rows that belong to exactly one tenant; PostgreSQL row-level security keys on `tenant_id`."""

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:  # noqa: N805 - SQLAlchemy declared_attr receives the class
        return mapped_column(ForeignKey("tenant.id", ondelete="RESTRICT"), index=True, nullable=False)


def fold(text: str) -> str:
    """A search key: case-folded (Unicode, not just ASCII), ё read as е, runs of spaces as one."""
    return " ".join(text.casefold().replace("ё", "е").split())


def directory_keys(
    name: str, slug: str, region: str | None, profile: dict[str, Any]
) -> tuple[str | None, str, str, str]:
    """(region_key, search_text, problem_keys, district_keys) of a directory profile; see `Tenant`."""
    services = [s for s in profile.get("services", []) if isinstance(s, dict)]
    address = profile.get("address") or {}
    words = [name, slug, region or "", *(str(v) for v in address.values() if v)]
    problems: set[str] = set()
    districts = {fold(str(d)).replace("|", " ") for d in profile.get("districts", [])}
    for service in services:
        words += [str(service.get(k) or "") for k in ("name", "description", "code")]
        problems.update(str(p) for p in service.get("problems", []))
        if service.get("code"):
            problems.add(str(service["code"]))
        districts.update(fold(str(d)).replace("|", " ") for d in service.get("districts", []))
    words += sorted(districts)

    def joined(terms: set[str]) -> str:
        return "|" + "|".join(sorted(t for t in terms if t)) + "|" if any(terms) else ""

    return fold(region) if region else None, fold(" ".join(w for w in words if w)), joined(problems), joined(districts)


class Tenant(Base):
    __tablename__ = "tenant"

    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    region: Mapped[str | None] = mapped_column(String(128), index=True, default=None)
    contacts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    service_profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=TenantStatus.ACTIVE)
    # Set at each suspension: access tokens issued and staff sessions begun before it stay dead after reactivation.
    sessions_valid_after: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # Case-folded in Python: SQLite's lower() and PostgreSQL's under the C locale fold ASCII only, not Cyrillic.
    region_key: Mapped[str | None] = mapped_column(String(128), index=True, default=None)
    search_text: Mapped[str] = mapped_column(Text, default="")
    # "|code|code|" and "|district|district|" (folded): exact-term filters as LIKE '%|term|%' on either database.
    problem_keys: Mapped[str] = mapped_column(Text, default="")
    district_keys: Mapped[str] = mapped_column(Text, default="")
    # The configured peer node (its name in CASEBRIDGE_PEERS) that hosts this agency; None: hosted here. A peer's
    # agency is a directory entry only: no keys of its own here, no staff, no audit log, nothing signed for it.
    peer: Mapped[str | None] = mapped_column(String(63), index=True, default=None)
    # IANA name (tenants.calendar.time_zone): the agency's days: when a deadline picked as a day ends, what "today"
    # is for its default deadlines, and the local time its pages and letters show.
    time_zone: Mapped[str] = mapped_column(String(64), default=DEFAULT_TIME_ZONE)

    def refresh_search_keys(self) -> None:
        keys = directory_keys(self.name, self.slug, self.region, self.service_profile or {})
        self.region_key, self.search_text, self.problem_keys, self.district_keys = keys

    @property
    def is_active(self) -> bool:
        return self.status == TenantStatus.ACTIVE

    @property
    def is_hosted_here(self) -> bool:
        return self.peer is None

    def issued_before_suspension(self, moment: dt.datetime) -> bool:
        """Whether a credential issued at `moment` (wall-clock time) predates the tenant's last suspension."""
        return self.sessions_valid_after is not None and moment < self.sessions_valid_after


class User(TenantScoped, Base):
    __tablename__ = "user_account"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(255), default=None)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # TOTP secret wrapped by the master key (AES-256-GCM, bound to the user id).
    totp_secret_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Last accepted TOTP time step: a code is never accepted twice (RFC 6238 §5.2).
    totp_last_step: Mapped[int | None] = mapped_column(Integer, default=None)
    # SHA-256 of each unused recovery code; codes are random, so a fast hash suffices.
    recovery_code_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # The language the staff pages are shown in ("ru", "en"); None: the browser's Accept-Language decides.
    language: Mapped[str | None] = mapped_column(String(8), default=None)


class ApiClient(TenantScoped, Base):
    __tablename__ = "api_client"

    name: Mapped[str] = mapped_column(String(255))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    role: Mapped[str] = mapped_column(String(32), default=Role.SPECIALIST)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    @property
    def client_id(self) -> str:
        return str(self.id)


class UsedAssertion(Base):
    """`jti` values of client assertions already accepted, kept until the assertion expires (RFC 7523 §3)."""

    __tablename__ = "used_assertion"
    __table_args__ = (UniqueConstraint("client_id", "jti"),)

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_client.id", ondelete="CASCADE"))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class TenantKey(TenantScoped, Base):
    """One key of a tenant's ring. The private part is stored only wrapped by the master key."""

    __tablename__ = "tenant_key"

    kid: Mapped[str] = mapped_column(String(64), unique=True)
    use: Mapped[str] = mapped_column(String(8))
    alg: Mapped[str] = mapped_column(String(32))
    public_jwk: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    wrapped_private: Mapped[bytes] = mapped_column(LargeBinary)
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # After this moment a retired key is no longer offered for verification or decryption.
    usable_until: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class PublishedKey(Base):
    """The public half of a tenant's envelope key: directory data any tenant's transaction may read.

    Kept apart from `tenant_key` (which row-level security confines to its tenant, as it holds wrapped private
    keys) so that sealing an envelope for a partner needs no second connection while a transaction is open.
    """

    __tablename__ = "published_key"

    owner_tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="RESTRICT"), index=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    use: Mapped[str] = mapped_column(String(8))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    usable_until: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class PlatformKey(Base):
    """The gateway's own signing keys (access tokens, audit checkpoints)."""

    __tablename__ = "platform_key"

    kid: Mapped[str] = mapped_column(String(64), unique=True)
    use: Mapped[str] = mapped_column(String(16))
    alg: Mapped[str] = mapped_column(String(32))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    wrapped_private: Mapped[bytes] = mapped_column(LargeBinary)
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    usable_until: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class PeerNode(Base):
    """What this node last learnt of a configured peer node, and whether its envelopes may be applied now."""

    __tablename__ = "peer_node"

    name: Mapped[str] = mapped_column(String(63), unique=True)
    # tenants.peer_keys.PeerState; the reason of the last refresh that failed is one of PeerProblem.
    state: Mapped[str] = mapped_column(String(24))
    problem: Mapped[str | None] = mapped_column(String(32), default=None)
    node_name: Mapped[str | None] = mapped_column(String(255), default=None)
    # Slugs of the peer's agencies that a local agency already has: not added to the directory (docs/operations.md).
    slug_collisions: Mapped[list[str]] = mapped_column(JSON, default=list)
    checked_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    fetched_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class PeerKey(Base):
    """A public envelope key of a peer's agency, as fetched over the pinned connection from its JWKS URL.

    Only accepted keys seal or verify envelopes. The first fetch after a peer is configured accepts what it finds
    (trust on configuration); a key first seen later waits for `casebridge peers accept-keys`.
    """

    __tablename__ = "peer_key"
    __table_args__ = (UniqueConstraint("owner_tenant_id", "kid"),)

    peer: Mapped[str] = mapped_column(String(63), index=True)
    owner_tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="RESTRICT"), index=True)
    kid: Mapped[str] = mapped_column(String(64))
    use: Mapped[str] = mapped_column(String(8))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # The peer no longer lists the key: it verifies nothing more.
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class StaffSession(TenantScoped, Base):
    """A signed-in member of staff. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "staff_session"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    second_factor_passed: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    idle_expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class Invitation(TenantScoped, Base):
    """A one-time link the tenant's administrator hands to a new member of staff; only its SHA-256 is stored.

    The invitee chooses a password through it, then enrols a second factor at the ordinary sign-in pages.
    """

    __tablename__ = "staff_invitation"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(default=None)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # Set when a newer invitation replaces this one, or the account is deactivated before it was accepted.
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


# Tables whose rows belong to one tenant; the migration puts a row-level security policy on each.
TENANT_SCOPED_TABLES = ("user_account", "api_client", "tenant_key", "staff_session", "staff_invitation")
