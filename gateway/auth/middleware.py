"""Per-request context: a request id on every response, and the acting principal resolved from its credentials."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.middleware.authentication import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth.tokens import InvalidAccessToken
from gateway.problems import INVALID_TOKEN, TENANT_SUSPENDED, UNAUTHENTICATED, Problem
from tenants.persistence import READ_ONLY_OPTION, platform_session, tenant_session
from tenants.principal import ActorKind, Principal
from tenants.services import client_identity
from tenants.staff_sessions import find_session

if TYPE_CHECKING:
    from gateway.runtime import Runtime

SESSION_COOKIE = "cb_session"
STAFF_STATE = "staff"  # key in the scope state holding the signed-in StaffIdentity, for the web pages
SESSION_ENDED_STATE = "session_ended"  # set when the session cookie names a session that has ended
# Set for a bearer token whose client and tenant are still to be confirmed in the database (`confirm_client`).
CLIENT_CHECK_STATE = "client_check"
AUTH_PROBLEM_STATE = "auth_problem"  # the Problem a rejected credential raised, for the guards to answer with


@dataclass(frozen=True, slots=True)
class ClientCheck:
    """A verified access token's client, still to be looked up: revoked, deleted or of a suspended tenant."""

    tenant_id: uuid.UUID
    client_id: uuid.UUID
    issued_at: dt.datetime


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """What the web pages show of the signed-in member of staff, read with the session (no second lookup)."""

    email: str
    display_name: str | None
    tenant_name: str
    language: str | None
    time_zone: str  # the agency's (tenants.calendar.time_zone): the pages' days and times


class PrincipalMiddleware(AbstractAuthenticationMiddleware):
    """Resolve a bearer token or a staff session cookie to a Principal; guards decide what it may do.

    A missing or rejected credential leaves no principal and records why (`AUTH_PROBLEM_STATE`), so a guarded route
    can say precisely what was wrong while public routes (`opt={PUBLIC: True}`) still work: nothing is refused here.
    Every HTTP request is resolved, public pages included, because their layout shows who is signed in.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, scopes={ScopeType.HTTP}, exclude_http_methods=())

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        runtime: Runtime = connection.app.state.runtime
        state = connection.scope.setdefault("state", {})
        principal: Principal | None = None
        problem: Problem | None = None
        api = connection.scope["path"].startswith("/api/")
        try:
            if authorization := connection.headers.get("authorization", ""):
                principal = await _from_bearer(runtime, authorization, state)
                if not api:
                    # Only the API's routes are known to confirm the client before reading data.
                    await confirm_client_now(runtime, state)
            # Cookies never authenticate the API: its routes are exempt from CSRF checks, so a session
            # cookie there would let any web page act as the signed-in user.
            elif not api and (cookie := connection.cookies.get(session_cookie_name(runtime))):
                principal = await _from_session(runtime, cookie, state)
        except Problem as exc:
            problem = exc
        state[AUTH_PROBLEM_STATE] = problem
        return AuthenticationResult(user=principal, auth=principal)


def session_cookie_name(runtime: Runtime) -> str:
    # The __Host- prefix pins the cookie to this origin and path /, but browsers accept it only over HTTPS.
    return f"__Host-{SESSION_COOKIE}" if runtime.settings.server.secure_cookies else SESSION_COOKIE


async def _from_bearer(runtime: Runtime, authorization: str, state: dict[str, Any]) -> Principal:
    """The principal a valid access token names. Whether its client is still registered and unrevoked, and its
    tenant active, is confirmed before the request reaches any data (`confirm_client`), in the request's own
    transaction where it has one: a revoked client's tokens stop working at once, at no extra transaction."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(UNAUTHENTICATED, "Use 'Authorization: Bearer <access token>'.")
    try:
        claims = await runtime.token_verifier.verify(token.strip())
    except InvalidAccessToken as exc:
        raise Problem(INVALID_TOKEN, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from exc
    state[CLIENT_CHECK_STATE] = ClientCheck(
        claims.tenant_id, claims.client_id, dt.datetime.fromtimestamp(claims.issued_at, dt.UTC)
    )
    return Principal(
        tenant_id=claims.tenant_id,
        actor_kind=ActorKind.CLIENT,
        actor_id=claims.client_id,
        roles=frozenset({claims.role}),
        scopes=claims.scopes,
    )


async def confirm_client(session: AsyncSession, state: dict[str, Any]) -> None:
    """Refuse the request unless its access token's client still exists, is not revoked and its tenant is active
    and has not been suspended since the token was issued.

    Run once per request, in the request's transaction (gateway.controllers.context.open_context) or, for a
    route that has none, on a session of its own (`confirm_client_now`); nothing else is done before it.
    """
    check = state.pop(CLIENT_CHECK_STATE, None)
    if not isinstance(check, ClientCheck):
        return
    identity = await client_identity(session, tenant_id=check.tenant_id, client_id=check.client_id)
    if identity is None or identity[0].revoked_at is not None:
        raise Problem(INVALID_TOKEN, "The client this token was issued to no longer exists or has been revoked.")
    if not identity[1].is_active:
        raise Problem(TENANT_SUSPENDED, "The organisation this client belongs to is suspended.")
    # Read with the client, so it costs no statement: a suspension ends the tokens issued before it, for good.
    if identity[1].issued_before_suspension(check.issued_at):
        raise Problem(
            INVALID_TOKEN,
            "The token was issued before the organisation was suspended; get a new one.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


async def confirm_client_now(runtime: Runtime, state: dict[str, Any]) -> None:
    """`confirm_client` on a session of its own, for a route that opens no tenant transaction."""
    check = state.get(CLIENT_CHECK_STATE)
    if not isinstance(check, ClientCheck):
        return
    async with tenant_session(runtime.sessions, check.tenant_id) as session:
        # Only a lookup: on SQLite it must not queue for the write lock behind every other request.
        await session.connection(execution_options={READ_ONLY_OPTION: True})
        await confirm_client(session, state)


async def _from_session(runtime: Runtime, token: str, state: dict[str, Any]) -> Principal | None:
    async with platform_session(runtime.sessions) as session, session.begin():
        active = await find_session(session, runtime.clock, runtime.session_policy, token=token)
    if active is None:
        state[SESSION_ENDED_STATE] = True  # a cookie naming no live session: it expired or was ended
    if active is None or not active.fully_signed_in:
        return None
    state[STAFF_STATE] = StaffIdentity(
        email=active.user.email,
        display_name=active.user.display_name,
        tenant_name=active.tenant.name,
        language=active.user.language,
        time_zone=active.tenant.time_zone,
    )
    return Principal(
        tenant_id=active.tenant.id,
        actor_kind=ActorKind.USER,
        actor_id=active.user.id,
        roles=frozenset(active.user.roles),
        scopes=None,
    )


def principal_of(scope: dict[str, Any]) -> Principal | None:
    principal = scope.get("auth")
    return principal if isinstance(principal, Principal) else None
