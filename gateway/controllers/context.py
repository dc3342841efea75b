"""What every data handler needs: the acting principal, a transaction scoped to its tenant, and its audit scope."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from audit.events import Action, Actor, Outcome
from audit.services import AccessScope, RequestContext
from exchange.deps import ExchangeDeps
from exchange.errors import ConsentRequired
from gateway.auth.guards import AUDIT
from gateway.auth.middleware import confirm_client
from gateway.problems import UNAVAILABLE, Problem
from gateway.request_id import ensure_request_id
from gateway.runtime import Runtime
from tenants.errors import CasebridgeError, Forbidden, NotFound
from tenants.persistence import tenant_session
from tenants.principal import Principal


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal = request.scope["auth"]
    assert isinstance(principal, Principal)  # the API guards admit no request without one
    return principal


def exchange_deps(request: Request[Any, Any, Any]) -> ExchangeDeps:
    return runtime_of(request).exchange


def request_context(request: Request[Any, Any, Any]) -> RequestContext:
    client = request.client
    return RequestContext(
        request_id=ensure_request_id(request.scope),
        source=client.host if client else None,
        user_agent=request.headers.get("user-agent"),
    )


def actor_of(principal: Principal) -> Actor:
    return Actor(
        kind=principal.actor_kind.value,
        id=principal.actor_id,
        tenant_id=principal.tenant_id,
        role=sorted(principal.roles)[0] if principal.roles else None,
    )


def audit_of(request: Request[Any, Any, Any]) -> AccessScope:
    scope: AccessScope = request.scope["state"]["audit_scope"]
    return scope


@contextlib.asynccontextmanager
async def tenant_transaction(
    request: Request[Any, Any, Any], *, action: Action | None = None
) -> AsyncIterator[AsyncSession]:
    """One transaction confined (also by PostgreSQL row-level security) to the caller's tenant.

    The route's audit event is written inside it, so it commits with the change, and for reads it is stored
    before any data leaves: if the event cannot be written, the request fails and nothing is returned.
    A refusal (not found, forbidden, no consent) rolls the work back and is recorded in a transaction of its own.
    """
    runtime = runtime_of(request)
    principal = principal_of(request)
    # `action` overrides the route's declared action for a second, different operation in the same request (a page
    # that shows its form again after a refusal reads the case: that read is recorded as what it is).
    action = action or request.scope["route_handler"].opt[AUDIT]
    scope = AccessScope(
        log=runtime.exchange.audit, actor=actor_of(principal), log_tenant_id=principal.tenant_id, action=action,
        context=request_context(request),
    )  # fmt: skip
    request.scope["state"]["audit_scope"] = scope
    try:
        async with tenant_session(runtime.sessions, principal.tenant_id) as session, session.begin():
            await confirm_client(session, request.scope["state"])
            yield session
            scope.write(session)
        runtime.wake_after(session)
    except SQLAlchemyError as exc:
        # Fail closed: without a durable audit record (or the change itself), nothing is returned.
        raise Problem(UNAVAILABLE, "The request could not be recorded, so nothing was done or returned. "
                                   "Try again shortly.") from exc  # fmt: skip
    except CasebridgeError as exc:
        outcome = Outcome.DENIED if isinstance(exc, NotFound | Forbidden | ConsentRequired) else Outcome.ERROR
        async with tenant_session(runtime.sessions, principal.tenant_id) as session, session.begin():
            scope.write(session, outcome=outcome, reason=type(exc).__name__)
        raise
