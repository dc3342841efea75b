"""RFC 9457 problem responses with stable `type` URIs for every error the gateway returns."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    SerializationException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from exchange.cases.uploads import ALLOWED_MEDIA_TYPES, UnsupportedDocument
from exchange.errors import ConsentRequired, IdempotencyMismatch
from exchange.letters.render import LetterUnavailable
from gateway.request_id import ensure_request_id
from gateway.validation import FieldError, from_litestar, sentence
from tenants.calendar import DAY_RANGE, OutOfCalendar
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
    VALIDATION,
    BAD_REQUEST,
    UNAUTHENTICATED,
    INVALID_TOKEN,
    INVALID_CLIENT,
    FORBIDDEN,
    TENANT_SUSPENDED,
    CONSENT_REQUIRED,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    IDEMPOTENCY_MISMATCH,
    CONFLICT,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    RATE_LIMITED,
    INTERNAL,
    UNAVAILABLE,
)

_BY_STATUS = {p.status: p for p in reversed(ALL_PROBLEMS)}


class FieldErrorDocument(msgspec.Struct, kw_only=True):
    """One entry of a validation problem's `errors`: the field, a stable code, a sentence, and the limit if any."""

    field: str
    code: str
    message: str
    limit: str | None = None


class ProblemDocument(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document as casebridge sends it; some types add members of their own (RFC 9457 §3.2)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldErrorDocument] | None = None


# Every operation in the OpenAPI document answers these as problem documents, besides what it declares itself.
PROBLEM_RESPONSES: dict[int, ResponseSpec] = {
    problem.status: ResponseSpec(
        data_container=ProblemDocument,
        media_type=PROBLEM_MEDIA_TYPE,
        description=problem.title,
        generate_examples=False,
    )
    for problem in reversed(ALL_PROBLEMS)
}


def document_problems(app: Litestar) -> None:
    """Declare the problem responses on every route in the OpenAPI document (replacing Litestar's own description of
    its validation errors, which is not what casebridge sends); a response a handler declares itself is kept."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.include_in_schema:
                handler.responses = {**PROBLEM_RESPONSES, **(handler.responses or {})}


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
    # The validator's own words stay inside: each failure becomes a sentence naming its field (gateway/validation.py),
    # and `errors` gives programs the field, a stable code and the limit.
    errors = from_litestar(exc.extra, exc.detail)
    detail = " ".join(sentence(e) for e in errors)
    return problem_response(
        request,
        VALIDATION,
        detail or "The request body or parameters are not valid.",
        extra={"errors": [e.as_member() for e in errors]},
    )


def _out_of_calendar(request: Request[Any, Any, Any], exc: OutOfCalendar) -> Response[dict[str, Any]]:
    error = FieldError(exc.field, "calendar", DAY_RANGE)
    return problem_response(request, VALIDATION, sentence(error), extra={"errors": [error.as_member()]})


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
        detail = "The request body is not valid JSON: it is malformed or cut short."
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


def _unsupported_document(request: Request[Any, Any, Any], exc: UnsupportedDocument) -> Response[dict[str, Any]]:
    members = {"declared": exc.declared, "found": exc.found, "accepted": sorted(ALLOWED_MEDIA_TYPES)}
    return problem_response(request, UNSUPPORTED_MEDIA_TYPE, str(exc), extra=members)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # The traceback goes to the operator's log; the client gets only the request id.
    log.error("unhandled error", exc_info=exc, extra={"request_id": ensure_request_id(request.scope)})
    return problem_response(
        request,
        INTERNAL,
        "The request could not be completed. Quote the request id when reporting this.",
        status=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Problem: _from_problem,
    ValidationException: _from_validation,
    NotAuthorizedException: _from_http,
    PermissionDeniedException: _from_http,
    HTTPException: _from_http,
    ConsentRequired: _consent_required,
    OutOfCalendar: _out_of_calendar,
    UnsupportedDocument: _unsupported_document,
    IdempotencyMismatch: _domain(IDEMPOTENCY_MISMATCH),
    LetterUnavailable: _domain(UNAVAILABLE),
    NotFound: _domain(NOT_FOUND),
    Conflict: _domain(CONFLICT),
    InvalidInput: _domain(VALIDATION),
    NotAuthenticated: _domain(UNAUTHENTICATED),
    Forbidden: _domain(FORBIDDEN),
    Exception: _internal,
}
