"""RFC 9457 problem responses with stable `type` URIs for every error the gateway returns."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    SerializationException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from exchange.errors import ConsentRequired, IdempotencyMismatch
from exchange.letters.render import LetterUnavailable
from gateway.request_id import ensure_request_id
from tenants.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated, NotFound

log = logging.getLogger("casebridge.gateway")

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    title: str
    status: int

    @property
    def uri(self) -> str:
        # A relative reference (RFC 9457 §3.1.1): stable across deployments, resolvable on each node.
        return f"/problems/{self.slug}"


VALIDATION = ProblemType("validation", "The request is not valid", 400)
BAD_REQUEST = ProblemType("bad-request", "The request cannot be read", 400)
UNAUTHENTICATED = ProblemType("unauthenticated", "Authentication is required", 401)
INVALID_TOKEN = ProblemType("invalid-token", "The access token is not valid", 401)
INVALID_CLIENT = ProblemType("invalid-client", "The client could not be authenticated", 401)
FORBIDDEN = ProblemType("forbidden", "Not allowed", 403)
TENANT_SUSPENDED = ProblemType("tenant-suspended", "The organisation is suspended", 403)
CONSENT_REQUIRED = ProblemType("consent-required", "No consent or legal basis covers this share", 403)
NOT_FOUND = ProblemType("not-found", "Not found", 404)
METHOD_NOT_ALLOWED = ProblemType("method-not-allowed", "Method not allowed", 405)
CONFLICT = ProblemType("conflict", "The request conflicts with the current state", 409)
PAYLOAD_TOO_LARGE = ProblemType("payload-too-large", "The request body is too large", 413)
UNSUPPORTED_MEDIA_TYPE = ProblemType("unsupported-media-type", "Unsupported content type", 415)
IDEMPOTENCY_MISMATCH = ProblemType("idempotency-mismatch", "Idempotency-Key reused with a different body", 422)
RATE_LIMITED = ProblemType("rate-limited", "Too many requests", 429)
INTERNAL = ProblemType("internal", "Something went wrong on our side", 500)
UNAVAILABLE = ProblemType("unavailable", "The service is not ready", 503)

ALL_PROBLEMS = (
    VALIDATION, BAD_REQUEST, UNAUTHENTICATED, INVALID_TOKEN, INVALID_CLIENT, FORBIDDEN, TENANT_SUSPENDED,
    CONSENT_REQUIRED, NOT_FOUND, METHOD_NOT_ALLOWED, IDEMPOTENCY_MISMATCH, CONFLICT, PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE, RATE_LIMITED, INTERNAL, UNAVAILABLE,
)  # fmt: skip

_BY_STATUS = {p.status: p for p in reversed(ALL_PROBLEMS)}


class Problem(HTTPException):
    """Raise from a handler or guard to answer with a specific problem type."""

    def __init__(
        self,
        problem: ProblemType,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=problem.status, headers=headers)
        self.problem = problem
        self.members = extra or {}


def problem_response(
    request: Request[Any, Any, Any],
    problem: ProblemType,
    detail: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": problem.uri,
        "title": problem.title,
        "status": status or problem.status,
        "detail": detail,
        "instance": request.url.path,
    }
    body["request_id"] = ensure_request_id(request.scope)
    body.update(extra or {})
    return Response(body, status_code=status or problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _from_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[dict[str, Any]]:
    return problem_response(request, exc.problem, exc.detail, headers=exc.headers, extra=exc.members)


def _from_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = [
        {"field": str(e.get("key", "")), "message": str(e.get("message", ""))}
        for e in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(e, dict)
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
    return problem_response(request, VALIDATION, detail or "The request body or parameters are not valid.",
                            extra={"errors": errors})  # fmt: skip


def _from_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    problem = _BY_STATUS.get(exc.status_code, BAD_REQUEST if exc.status_code < 500 else INTERNAL)
    headers = dict(exc.headers or {})
    if isinstance(exc, TooManyRequestsException):
        # RFC 9110 §10.2.3: tell the client when to come back; the limiter's reset header holds the seconds left.
        headers["Retry-After"] = str(max(1, int(headers.get("RateLimit-Reset", "60"))))
        detail = "Too many requests from this client; retry after the number of seconds in Retry-After."
    elif isinstance(exc, NotFoundException):
        detail = "Nothing exists at this address."
    elif isinstance(exc.__cause__, SerializationException):
        problem = BAD_REQUEST
        detail = f"The request body is not valid JSON (malformed: {exc.detail})."
    elif exc.status_code == 413:
        detail = "The request body is larger than this server accepts."
    elif exc.status_code >= 500:
        detail = "The request could not be completed. Quote the request id when reporting this."
    else:
        detail = exc.detail or problem.title
    return problem_response(request, problem, detail, status=exc.status_code, headers=headers)


def _domain(problem: ProblemType) -> Callable[[Request[Any, Any, Any], Exception], Response[dict[str, Any]]]:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
        return problem_response(request, problem, str(exc))

    return handle


def _consent_required(request: Request[Any, Any, Any], exc: ConsentRequired) -> Response[dict[str, Any]]:
    deny = exc.deny
    members = {
        "code": deny.code.value,
        "subject_id": str(deny.subject_id) if deny.subject_id else None,
        "subject_ref": exc.subject_ref,
        "category": deny.category.value if deny.category else None,
        "task": exc.task,
    }
    return problem_response(
        request, CONSENT_REQUIRED, str(exc), extra={k: v for k, v in members.items() if v is not None}
    )


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # The traceback goes to the operator's log; the client gets only the request id.
    log.error("unhandled error", exc_info=exc, extra={"request_id": ensure_request_id(request.scope)})
    return problem_response(
        request, INTERNAL, "The request could not be completed. Quote the request id when reporting this.",
        status=HTTP_500_INTERNAL_SERVER_ERROR,
    )  # fmt: skip


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Problem: _from_problem,
    ValidationException: _from_validation,
    NotAuthorizedException: _from_http,
    PermissionDeniedException: _from_http,
    HTTPException: _from_http,
    ConsentRequired: _consent_required,
    IdempotencyMismatch: _domain(IDEMPOTENCY_MISMATCH),
    LetterUnavailable: _domain(UNAVAILABLE),
    NotFound: _domain(NOT_FOUND),
    Conflict: _domain(CONFLICT),
    InvalidInput: _domain(VALIDATION),
    NotAuthenticated: _domain(UNAUTHENTICATED),
    Forbidden: _domain(FORBIDDEN),
    Exception: _internal,
}
