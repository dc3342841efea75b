"""Each request's audit events carry the outcome the request really had, `error` included.

A route's work runs in its request context (`open_context` in gateway.controllers.context), which notes here
what became of each of its transactions; `AuditOutcomes` completes the record when the response starts, before any
of its body is sent:

- a write (any method but GET, HEAD and OPTIONS) commits its event with the change, and so does an API route's
  read, whose answer is built before its transaction ends. Should the response still end in a 5xx, an `error`
  event is added beside it;
- a page's read waits for the response's status: `success`, or `error` for a 5xx (a page that could not be shown
  after its data was read). It is written in a transaction of its own before the data leaves; if it cannot be
  written, a 503 goes out instead and nothing read leaves (fail closed);
- a refusal or a fault rolls the work back and is recorded at once in a transaction of its own (`denied`, `error`);
- a route that declares an audit action and ends in a 5xx with nothing recorded (it failed before its transaction)
  gets an `error` event too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy.exc import SQLAlchemyError

from audit.events import Actor, Outcome
from audit.services import AccessScope, RequestContext
from gateway.auth.guards import AUDIT
from gateway.problems import UNAVAILABLE, Problem
from gateway.request_id import ensure_request_id
from tenants.persistence import tenant_session
from tenants.principal import Principal

log = logging.getLogger("casebridge.gateway")

READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_STATE: Final = "request_audit"
NOT_RECORDED: Final = "The request could not be recorded, so nothing was done or returned. Try again shortly."


@dataclass(slots=True)
class RequestAudit:
    """What one request's transactions left to record."""

    reads: list[AccessScope] = field(default_factory=list)  # a page's committed reads, awaiting the status
    written: list[AccessScope] = field(default_factory=list)  # events committed with their change
    settled: bool = False  # an event (or the attempt at one) made apart: a refusal or a fault


def request_audit(scope: Scope) -> RequestAudit:
    state = scope.setdefault("state", {})
    audit = state.get(_STATE)
    if not isinstance(audit, RequestAudit):
        audit = state[_STATE] = RequestAudit()
    return audit


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


async def record_apart(scope: Scope, access: AccessScope, outcome: Outcome, reason: str) -> None:
    """Record `access` in a transaction of its own, the request's having rolled back; a failure is logged (the
    request then fails anyway, so nothing unrecorded leaves)."""
    request_audit(scope).settled = True
    await _write(scope, [(access, outcome, reason)])


async def _write(scope: Scope, events: list[tuple[AccessScope, Outcome, str | None]]) -> bool:
    runtime = scope["litestar_app"].state.runtime
    try:
        async with tenant_session(runtime.sessions, events[0][0].log_tenant_id) as session, session.begin():
            for access, outcome, reason in events:
                access.write(session, outcome=outcome, reason=reason)
    except SQLAlchemyError as exc:
        log.warning(
            "audit events could not be recorded (%s)",
            type(exc).__name__,
            extra={"request_id": ensure_request_id(scope)},
        )
        return False
    return True


class AuditOutcomes(ASGIMiddleware):
    """Complete the request's audit record when its response starts (see the module's docstring)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        replaced = False

        async def send_recorded(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the body of a response that was not allowed to leave
            if message["type"] == "http.response.start" and not await _settle(scope, int(message["status"])):
                replaced = True
                await _unavailable(scope, receive, send)
                return
            await send(message)

        await next_app(scope, receive, send_recorded)


async def _settle(scope: Scope, status: int) -> bool:
    """Write what the request left to record; False when its reads' events could not be, and the response (not a
    5xx) would carry what was read."""
    audit = scope.get("state", {}).get(_STATE)
    failed = status >= 500
    reason = f"response {status}" if failed else None
    events: list[tuple[AccessScope, Outcome, str | None]] = []
    if isinstance(audit, RequestAudit):
        events += [(access, Outcome.ERROR if failed else Outcome.SUCCESS, reason) for access in audit.reads]
        if failed:
            events += [(access, Outcome.ERROR, reason) for access in audit.written]
    settled = isinstance(audit, RequestAudit) and audit.settled
    if failed and not events and not settled and (access := _route_access(scope)) is not None:
        events.append((access, Outcome.ERROR, reason))
    if not events:
        return True
    return await _write(scope, events) or failed


def _route_access(scope: Scope) -> AccessScope | None:
    """The route's own audit scope, for a request that failed before any transaction recorded it."""
    principal, handler = scope.get("auth"), scope.get("route_handler")
    action = handler.opt.get(AUDIT) if handler is not None else None
    if not isinstance(principal, Principal) or action is None:
        return None
    runtime = scope["litestar_app"].state.runtime
    request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope=scope)
    return AccessScope(
        log=runtime.exchange.audit,
        actor=actor_of(principal),
        log_tenant_id=principal.tenant_id,
        action=action,
        context=request_context(request),
    )


async def _unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 503 in place of a response whose reads could not be recorded, as the app answers that problem."""
    app = scope["litestar_app"]
    request: Request[Any, Any, Any] = app.request_class(scope=scope, receive=receive)
    problem = Problem(UNAVAILABLE, NOT_RECORDED)
    # The problem-details plugin answers every Problem (a ProblemDetailsException), for pages through their error page.
    response = app.exception_handlers[ProblemDetailsException](request, problem)
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)
