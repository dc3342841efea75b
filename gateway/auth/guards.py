"""Route guards: every API route declares the scope and roles it needs in its `opt`, and these enforce them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.auth.middleware import AUTH_PROBLEM_STATE
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


def require_principal(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
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


API_GUARDS = [require_principal, enforce_scope_and_roles]
