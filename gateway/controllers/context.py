"""Each request's context: the acting principal, a transaction scoped to its tenant, and its audit scope.

An API route receives it as `ctx`, injected by the API router (`CONTEXT`); a staff page opens it where its work
starts (`open_context`), since a page shows its form again or lays itself out only after that work has committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final

from litestar import Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import SQLAlchemyError

from audit.events import Action, Outcome
from audit.services import AccessScope
from exchange.context import Context
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
    assert isinstance(principal, Principal)  # the guards admit no request without one
    return principal


@contextlib.asynccontextmanager
async def open_context(
    request: Request[Any, Any, Any], *, action: Action | None = None, answered: bool = False
) -> AsyncIterator[Context]:
    """One transaction confined (also by PostgreSQL row-level security) to the caller's tenant.

    A write's audit event is written inside it, so it commits with the change. So is a read's when the caller says
    the answer is already built once the work returns (`answered`, an API route: see `provide_context`): its
    outcome is then known, and the read costs one transaction. Otherwise (a page, laid out after its work has
    committed) a read's event is written when the response starts, with the outcome the request had, before any
    data leaves (gateway.audit_capture). Either way, if it cannot be written, nothing is returned. A refusal (not
    found, forbidden, no consent) or a fault rolls the work back and is recorded in a transaction of its own, as
    `denied` or `error`.
    """
    runtime = runtime_of(request)
    principal = principal_of(request)
    # `action` overrides the route's declared action for a second, different operation in the same request (a page
    # that shows its form again after a refusal reads the case: that read is recorded as what it is).
    scope = AccessScope(
        log=runtime.exchange.audit,
        actor=actor_of(principal),
        log_tenant_id=principal.tenant_id,
        action=action or request.scope["route_handler"].opt[AUDIT],
        context=request_context(request),
    )
    waits_for_status = request.method in READ_METHODS and not answered
    try:
        async with tenant_session(runtime.sessions, principal.tenant_id) as session, session.begin():
            await confirm_client(session, request.scope["state"])
            yield Context(session=session, deps=runtime.exchange, principal=principal, audit=scope)
            if not waits_for_status:
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
    (audit.reads if waits_for_status else audit.written).append(scope)


async def provide_context(request: Request[Any, Any, Any]) -> AsyncGenerator[Context, None]:
    """The route's context for the whole of its handler, as `open_context` describes.

    Litestar (2.x, litestar/routes/http.py) resolves this before the handler runs and finishes it when the handler
    has returned and its response is built, before any of it is sent: so the commit, and with it the audit record
    of a read (`answered`: the handler's outcome is known by then), come before the data leaves. An exception from
    the handler is thrown in at the `yield` (litestar/_kwargs/cleanup.py), so it rolls the work back and is
    recorded as if raised inside `open_context`.
    """
    async with open_context(request, answered=True) as ctx:
        yield ctx


def _cleanup_problem(request: Request[Any, Any, Any], exc: ExceptionGroup[Exception]) -> Response[Any]:
    """Answer the exception the context's cleanup raised in place of the handler's (the 503 of an unrecordable
    request): Litestar hands it on wrapped in an ExceptionGroup, which is answered as its one exception would be."""
    inner = exc.exceptions[0] if len(exc.exceptions) == 1 else exc
    handlers = request.route_handler.resolve_exception_handlers()
    # The app answers every Exception (gateway.problems.EXCEPTION_HANDLERS); the most specific handler wins.
    handler = next(handlers[cls] for cls in type(inner).__mro__[1 if inner is exc else 0 :] if cls in handlers)
    response: Response[Any] = handler(request, inner)
    return response


# The router-level registration of the context: a handler names `ctx: NamedDependency[Context]` to receive it.
CONTEXT: Final = {"ctx": Provide(provide_context)}
# The staff pages' router offers who is signed in: a page names `principal: NamedDependency[Principal]` to receive it
# (its transaction it opens itself, with open_context).
PRINCIPAL: Final = {"principal": Provide(principal_of, sync_to_thread=False)}
CONTEXT_PROBLEMS: Final[ExceptionHandlersMap] = {ExceptionGroup: _cleanup_problem}
