"""Route guards: every API route declares the scope and roles it needs in its `opt`, and these enforce them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.auth.middleware import AUTH_PROBLEM_STATE, confirm_client_now
from gateway.problems import FORBIDDEN, UNAUTHENTICATED, Problem
from tenants.principal import Principal

# Keys of a route handler's `opt`.
SCOPE = "scope"  # the OAuth scope a client token must carry
ROLES = "roles"  # roles of which the principal must hold at least one
PUBLIC = "public"  # True for routes anyone may call (health, metadata, sign-in)
AUDIT = "audit"  # the audit Action every call of the route records


def needs(scope: str, roles: Sequence[str], audit: str | None) -> dict[str, Any]:
    """A route's `opt`: the scope and roles it requires and the audit action it records (None: no tenant data)."""
    return {SCOPE: scope, ROLES: roles, AUDIT: audit}


def require_principal(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.opt.get(PUBLIC):
        return
    if not isinstance(connection.scope.get("auth"), Principal):
        problem = connection.scope.get("state", {}).get(AUTH_PROBLEM_STATE)
        if isinstance(problem, Problem):
            raise problem
        raise Problem(
            UNAUTHENTICATED,
            "Sign in, or send an access token from /oauth/token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


def enforce_scope_and_roles(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.opt.get(PUBLIC):
        return
    principal = connection.scope["auth"]
    assert isinstance(principal, Principal)  # require_principal runs first
    scope = handler.opt.get(SCOPE)
    roles: tuple[str, ...] = tuple(handler.opt.get(ROLES, ()))
    if scope is None or not roles:
        # A route that forgot to declare its needs is closed, not open.
        raise Problem(FORBIDDEN, "This operation is not available.")
    if not principal.has_scope(scope):
        raise Problem(
            FORBIDDEN,
            f"The access token lacks the '{scope}' scope.",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
    if not principal.has_role(*roles):
        raise Problem(FORBIDDEN, f"This operation needs one of the roles: {', '.join(roles)}.")


async def confirm_client_first(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Confirm the access token's client before a route that records no audit action runs; a route that records
    one confirms it in its own transaction (gateway.controllers.context.open_context)."""
    if not handler.opt.get(PUBLIC) and handler.opt.get(AUDIT) is None:
        await confirm_client_now(connection.app.state.runtime, connection.scope.setdefault("state", {}))


# The guards of every router (gateway.app): a route not declared public needs a principal with its scope and roles.
GUARDS = [require_principal, enforce_scope_and_roles, confirm_client_first]
