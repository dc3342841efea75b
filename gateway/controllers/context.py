"""What every data handler needs: the acting principal, a transaction scoped to its tenant, and its audit scope."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from audit.events import Action, Outcome
from audit.services import AccessScope
from exchange.deps import ExchangeDeps
from exchange.errors import ConsentRequired
from gateway.audit_capture import NOT_RECORDED, READ_METHODS, record_apart, request_audit

# Defined beside the middleware that completes each request's record; handlers and pages import them from here.
from gateway.audit_capture import actor_of as actor_of
from gateway.audit_capture import request_context as request_context
from gateway.auth.guards import AUDIT
from gateway.auth.middleware import confirm_client
from gateway.problems import UNAVAILABLE, Problem
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


def audit_of(request: Request[Any, Any, Any]) -> AccessScope:
    scope: AccessScope = request.scope["state"]["audit_scope"]
    return scope


@contextlib.asynccontextmanager
async def tenant_transaction(
    request: Request[Any, Any, Any], *, action: Action | None = None
) -> AsyncIterator[AsyncSession]:
    """One transaction confined (also by PostgreSQL row-level security) to the caller's tenant.

    A write's audit event is written inside it, so it commits with the change. A read's event is written when the
    response starts, with the outcome the request had, before any data leaves (gateway.audit_capture): if it
    cannot be written, nothing is returned. A refusal (not found, forbidden, no consent) or a fault rolls the work
    back and is recorded in a transaction of its own, as `denied` or `error`.
    """
    runtime = runtime_of(request)
    principal = principal_of(request)
    # `action` overrides the route's declared action for a second, different operation in the same request (a page
    # that shows its form again after a refusal reads the case: that read is recorded as what it is).
    action = action or request.scope["route_handler"].opt[AUDIT]
    scope = AccessScope(
        log=runtime.exchange.audit,
        actor=actor_of(principal),
        log_tenant_id=principal.tenant_id,
        action=action,
        context=request_context(request),
    )
    request.scope["state"]["audit_scope"] = scope
    read = request.method in READ_METHODS
    try:
        async with tenant_session(runtime.sessions, principal.tenant_id) as session, session.begin():
            await confirm_client(session, request.scope["state"])
            yield session
            if not read:
                scope.write(session)
        runtime.wake_after(session)
    except SQLAlchemyError as exc:
        await record_apart(request.scope, scope, Outcome.ERROR, type(exc).__name__)
        # Fail closed: without a durable audit record (or the change itself), nothing is returned.
        raise Problem(UNAVAILABLE, NOT_RECORDED) from exc
    except CasebridgeError as exc:
        outcome = Outcome.DENIED if isinstance(exc, NotFound | Forbidden | ConsentRequired) else Outcome.ERROR
        await record_apart(request.scope, scope, outcome, type(exc).__name__)
        raise
    except HTTPException as exc:
        # Refused by the gateway inside the transaction (a revoked client's token, a conflict): a refusal as above.
        outcome = Outcome.DENIED if exc.status_code < 500 else Outcome.ERROR
        await record_apart(
            request.scope, scope, outcome, exc.problem.slug if isinstance(exc, Problem) else type(exc).__name__
        )
        raise
    except Exception as exc:
        # A fault (a bug, a broken invariant): the work is rolled back, and the trail says the attempt failed.
        await record_apart(request.scope, scope, Outcome.ERROR, type(exc).__name__)
        raise
    audit = request_audit(request.scope)
    (audit.reads if read else audit.written).append(scope)
