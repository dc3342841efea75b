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
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin
from litestar.routes import HTTPRoute
from litestar.types import ExceptionHandlersMap

from exchange.cases.uploads import ALLOWED_MEDIA_TYPES, UnsupportedDocument
from exchange.errors import ConsentRequired, IdempotencyMismatch
from exchange.letters.render import LetterUnavailable
from gateway.request_id import ensure_request_id
from gateway.validation import FieldError, from_litestar, sentence
from tenants.calendar import DAY_RANGE, OutOfCalendar
from tenants.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated, NotFound, PartnerKeysUnavailable

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
INCONSISTENT_CHECKPOINT = ProblemType(
    "inconsistent-checkpoint", "The checkpoint does not extend the tree co-signed before", 422
)
RATE_LIMITED = ProblemType("rate-limited", "Too many requests", 429)
INTERNAL = ProblemType("internal", "Something went wrong on our side", 500)
UNAVAILABLE = ProblemType("unavailable", "The service is not ready", 503)
PARTNER_KEYS_UNAVAILABLE = ProblemType("partner-keys-unavailable", "The partner's keys are not available yet", 503)

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
    INCONSISTENT_CHECKPOINT,
    CONFLICT,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    RATE_LIMITED,
    INTERNAL,
    UNAVAILABLE,
    PARTNER_KEYS_UNAVAILABLE,
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


class Problem(ProblemDetailsException):
    """Raise from a handler or guard to answer with a specific problem type.

    The document's members and their order are casebridge's (docs/api.md, "Refusals"): `type`, `title`, `status`,
    `detail`, `instance` (the request's path, known only when answering) and `request_id`, then any of the type's own
    members.
    """

    def __init__(
        self,
        problem: ProblemType,
        detail: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            detail=detail,
            status_code=status or problem.status,
            headers=headers,
            extra=extra or {},
            type_=problem.uri,
            title=problem.title,
        )
        self.problem = problem

    def to_response(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body: dict[str, Any] = {
            "type": self.type_,
            "title": self.title,
            "status": self.status_code,
            "detail": self.detail,
            "instance": request.url.path,
            "request_id": ensure_request_id(request.scope),
        }
        body.update(self.extra if isinstance(self.extra, dict) else {})
        return Response(body, status_code=self.status_code, media_type=PROBLEM_MEDIA_TYPE, headers=self.headers)


def problem_response(
    request: Request[Any, Any, Any],
    problem: ProblemType,
    detail: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    """The problem document of a route that answers with one rather than raising (the OAuth token endpoint)."""
    return Problem(problem, detail, status=status, headers=headers, extra=extra).to_response(request)


def _from_validation(exc: ValidationException) -> Problem:
    # The validator's own words stay inside: each failure becomes a sentence naming its field (gateway/validation.py),
    # and `errors` gives programs the field, a stable code and the limit.
    errors = from_litestar(exc.extra, exc.detail)
    detail = " ".join(sentence(e) for e in errors)
    return Problem(
        VALIDATION,
        detail or "The request body or parameters are not valid.",
        extra={"errors": [e.as_member() for e in errors]},
    )


def _out_of_calendar(exc: OutOfCalendar) -> Problem:
    error = FieldError(exc.field, "calendar", DAY_RANGE)
    return Problem(VALIDATION, sentence(error), extra={"errors": [error.as_member()]})


def _from_http(exc: HTTPException) -> Problem:
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
    return Problem(problem, detail, status=exc.status_code, headers=headers)


def _domain(problem: ProblemType) -> Callable[[Exception], Problem]:
    def convert(exc: Exception) -> Problem:
        return Problem(problem, str(exc))

    return convert


def _consent_required(exc: ConsentRequired) -> Problem:
    deny = exc.deny
    members = {
        "code": deny.code.value,
        "subject_id": str(deny.subject_id) if deny.subject_id else None,
        "subject_ref": exc.subject_ref,
        "category": deny.category.value if deny.category else None,
        "task": exc.task,
    }
    return Problem(CONSENT_REQUIRED, str(exc), extra={k: v for k, v in members.items() if v is not None})


def _unsupported_document(exc: UnsupportedDocument) -> Problem:
    members = {"declared": exc.declared, "found": exc.found, "accepted": sorted(ALLOWED_MEDIA_TYPES)}
    return Problem(UNSUPPORTED_MEDIA_TYPE, str(exc), extra=members)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # Not a conversion of the problem-details plugin: those see only the exception, and the traceback must reach the
    # operator's log together with the request id the client is given.
    log.error("unhandled error", exc_info=exc, extra={"request_id": ensure_request_id(request.scope)})
    return problem_response(
        request, INTERNAL, "The request could not be completed. Quote the request id when reporting this."
    )


# Every exception that reaches a client as a problem document, and the Problem it becomes.
PROBLEM_DETAILS = ProblemDetailsPlugin(
    ProblemDetailsConfig(
        exception_to_problem_detail_map={
            ValidationException: _from_validation,
            NotAuthorizedException: _from_http,
            PermissionDeniedException: _from_http,
            HTTPException: _from_http,
            ConsentRequired: _consent_required,
            OutOfCalendar: _out_of_calendar,
            UnsupportedDocument: _unsupported_document,
            IdempotencyMismatch: _domain(IDEMPOTENCY_MISMATCH),
            LetterUnavailable: _domain(UNAVAILABLE),
            PartnerKeysUnavailable: _domain(PARTNER_KEYS_UNAVAILABLE),
            NotFound: _domain(NOT_FOUND),
            Conflict: _domain(CONFLICT),
            InvalidInput: _domain(VALIDATION),
            NotAuthenticated: _domain(UNAUTHENTICATED),
            Forbidden: _domain(FORBIDDEN),
        }
    )
)
# Anything else is a fault of casebridge's (`Problem` itself is the plugin's own ProblemDetailsException).
EXCEPTION_HANDLERS: ExceptionHandlersMap = {Exception: _internal}
