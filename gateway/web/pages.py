"""What every staff page shares: route options, the layout's context, flash messages, redirects and form errors.

A page touching tenant data is declared like an API route, `opt=needs(scope, roles, audit_action)` (through
`page(...)`), runs its work in `open_context` and calls the same exchange services as the API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import msgspec
from litestar import Request, Response
from litestar.datastructures import CacheControlHeader, Cookie, ResponseHeader
from litestar.response import Redirect, Template

from audit.events import Action
from exchange.cases.uploads import ALLOWED_MEDIA_TYPES, UnsupportedDocument
from exchange.errors import ConsentRequired, TransitionNotAllowed
from gateway.auth.guards import PUBLIC, needs
from gateway.auth.middleware import STAFF_STATE, StaffIdentity
from gateway.runtime import Runtime
from gateway.validation import FieldError, field_error, sentence
from gateway.web.i18n import LANGUAGE_COOKIE, N_, gettext_for, language_of
from tenants.calendar import DAY_RANGE, FIRST_DAY, LAST_DAY, OutOfCalendar
from tenants.errors import CasebridgeError, Conflict, Forbidden, InvalidInput, NotFound
from tenants.models import Role
from tenants.principal import Principal

FLASH_COOKIE: Final = "cb_flash"

# No script runs on these pages, and nothing is framed or loaded from elsewhere.
SECURITY_HEADERS: Final = [
    ResponseHeader(
        name="Content-Security-Policy",
        value="default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
]


class PageOptions(TypedDict):
    opt: dict[str, Any]
    include_in_schema: bool
    cache_control: CacheControlHeader
    response_headers: Sequence[ResponseHeader]


def page(scope: str, roles: Sequence[str], audit: Action | None) -> PageOptions:
    """Route options of a signed-in page: the same `needs(...)` as an API route, kept out of caches and OpenAPI."""
    return PageOptions(
        opt=needs(scope, roles, audit),
        include_in_schema=False,
        cache_control=CacheControlHeader(no_store=True),
        response_headers=SECURITY_HEADERS,
    )


# Sign-in pages and the language switcher: open to anyone (each handler checks the session itself).
PUBLIC_PAGE: Final = PageOptions(
    opt={PUBLIC: True},
    include_in_schema=False,
    cache_control=CacheControlHeader(no_store=True),
    response_headers=SECURITY_HEADERS,
)


# -- navigation --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str  # an N_-marked msgid, translated by the layout
    roles: frozenset[str]


_WORKERS = frozenset({Role.SPECIALIST, Role.SUPERVISOR})
NAVIGATION: Final = (
    NavItem("/dashboard", N_("Dashboard"), _WORKERS),
    NavItem("/cases", N_("Cases"), _WORKERS),
    NavItem("/inbox", N_("Inbox"), frozenset({Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE})),
    NavItem("/reports", N_("Reports"), frozenset({Role.SPECIALIST, Role.INTAKE, Role.SUPERVISOR, Role.TENANT_ADMIN})),
    NavItem("/dpo", N_("Audit console"), frozenset({Role.DPO})),
    NavItem("/admin", N_("Administration"), frozenset({Role.TENANT_ADMIN})),
)


def start_page(roles: Sequence[str] | frozenset[str]) -> str | None:
    """Where a member of staff lands after signing in: the first navigation entry their roles open."""
    for item in NAVIGATION:
        if item.roles.intersection(roles):
            return item.path
    return None


def _navigation(request: Request[Any, Any, Any], principal: Principal | None) -> list[dict[str, Any]]:
    if principal is None:
        return []
    path = request.url.path
    return [
        {"path": item.path, "label": item.label, "current": path == item.path or path.startswith(item.path + "/")}
        for item in NAVIGATION
        if item.roles.intersection(principal.roles)
    ]


# -- rendering ---------------------------------------------------------------------------------------------------


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def translator(request: Request[Any, Any, Any]) -> Callable[..., str]:
    """`_` for Python code in a page handler, in the request's language."""
    return gettext_for(language_of(request))


def layout_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    auth = request.scope.get("auth")
    principal = auth if isinstance(auth, Principal) else None
    staff = request.scope.get("state", {}).get(STAFF_STATE)
    return {
        "lang": language_of(request),
        "staff": staff if isinstance(staff, StaffIdentity) and principal is not None else None,
        "navigation": _navigation(request, principal),
        "flashes": read_flashes(request),
        "current_path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "labels": LABELS,
    }


def render(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    cookies: Sequence[Cookie] = (),
    **context: Any,
) -> Response[Any]:
    """A page in the layout; any flash message is shown once and its cookie cleared."""
    base = layout_context(request)
    if clash := base.keys() & context.keys():
        raise ValueError(f"page context may not replace the layout's {sorted(clash)}")
    cleared = [_expired(request, FLASH_COOKIE)] if request.cookies.get(FLASH_COOKIE) else []
    return Template(
        template,
        context={**base, **context},
        status_code=status,
        cookies=[*cookies, *cleared],
        headers={h.name: str(h.value) for h in SECURITY_HEADERS},
    )


def redirect(
    request: Request[Any, Any, Any],
    path: str,
    *,
    success: str | None = None,
    error: str | None = None,
    cookies: Sequence[Cookie] = (),
) -> Response[Any]:
    """303 to `path` (so a reload never re-submits), carrying a translated confirmation or error for the next page."""
    extra = list(cookies)
    messages = [("success", success)] if success else []
    messages += [("error", error)] if error else []
    if messages:
        extra.append(_flash_cookie(request, messages))
    return Redirect(path, status_code=303, cookies=extra or None)


def local_path(candidate: str | None, default: str = "/") -> str:
    """Only a path on this site: never another origin (`//host`, `/\\host`) a form field could smuggle in."""
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return default
    return candidate


# -- flash messages: a short signed cookie read by the next page -------------------------------------------------


def _flash_key(request: Request[Any, Any, Any]) -> bytes:
    return runtime_of(request).master_key.derive("casebridge/flash/v1")


def _flash_cookie(request: Request[Any, Any, Any], messages: list[tuple[str, str]]) -> Cookie:
    payload = base64.urlsafe_b64encode(json.dumps(messages, ensure_ascii=False).encode()).decode()
    signature = hmac.new(_flash_key(request), payload.encode(), hashlib.sha256).hexdigest()
    return _cookie(request, FLASH_COOKIE, f"{payload}.{signature}", max_age=120)


def read_flashes(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw or "." not in raw:
        return []
    payload, _, signature = raw.rpartition(".")
    expected = hmac.new(_flash_key(request), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        return []
    try:
        messages = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (ValueError, json.JSONDecodeError):
        return []
    return [{"kind": str(kind), "text": str(text)} for kind, text in messages if kind in ("success", "error")]


def _cookie(request: Request[Any, Any, Any], key: str, value: str, *, max_age: int) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path="/",
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=runtime_of(request).settings.server.secure_cookies,
    )


def _expired(request: Request[Any, Any, Any], key: str) -> Cookie:
    cookie = _cookie(request, key, "", max_age=0)
    cookie.expires = 0
    return cookie


def language_cookie(request: Request[Any, Any, Any], language: str) -> Cookie:
    return _cookie(request, LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600)


# -- errors of a form --------------------------------------------------------------------------------------------


def error_text(request: Request[Any, Any, Any], exc: CasebridgeError) -> str:
    """A translated message for a refusal by a service; the service's own words follow where they add detail."""
    _ = translator(request)
    if isinstance(exc, ConsentRequired):
        category = exc.deny.category.value if exc.deny.category else None
        if exc.subject_ref and category:
            return _(
                "No active consent covers sharing '%(category)s' data of %(subject)s with this recipient. "
                "Untick the category or record the family's consent first.",
                category=_(CATEGORY_LABELS.get(category, category)),
                subject=exc.subject_ref,
            )
        return _("No consent or legal basis covers this share, so nothing was sent.")
    if isinstance(exc, OutOfCalendar):
        return invalid_field_text(request, FieldError(exc.field, "calendar", DAY_RANGE))
    if isinstance(exc, UnsupportedDocument) and exc.found is not None and exc.declared in ALLOWED_MEDIA_TYPES:
        return _(
            "The file's content does not match its type: choose the original file, or save it again in its real format."
        )
    if isinstance(exc, UnsupportedDocument):
        return _("casebridge takes PDF documents, JPEG and PNG images and plain text: choose a file of one of these.")
    if isinstance(exc, TransitionNotAllowed):
        return _("This action is not possible in the referral's current status. The page shows the status now.")
    if isinstance(exc, NotFound):
        return _("It was not found. It may have been removed, or it belongs to another organisation.")
    if isinstance(exc, Forbidden):
        return _("You are not allowed to do this.")
    if isinstance(exc, InvalidInput | Conflict):
        return _("This could not be saved: %(detail)s", detail=str(exc))
    return _("This could not be done. Try again, and quote the time if you report it.")


# The forms' own labels of the request fields a validation sentence names (the last part of the field's path).
FIELD_LABELS: Final = {
    "title": N_("Title"),
    "subjects": N_("People in the case"),
    "full_name": N_("Full name"),
    "ref": N_("Short reference"),
    "birth_date": N_("Date of birth"),
    "role": N_("Role in the case"),
    "summary": N_("Case notes"),
    "client": N_("The client's needs"),
    "carers": N_("The carers' potential"),
    "community": N_("The community's resources"),
    "need": N_("Part of the needs assessment"),
    "text": N_("Goal"),
    "goal_id": N_("Goal"),
    "what": N_("What is to be done"),
    "who": N_("Who does it"),
    "due_by": N_("By"),
    "referral_id": N_("Carried out by referral"),
    "subject_id": N_("Whose data"),
    "name": N_("Full name of the person who signed"),
    "relation": N_("Relation to the person"),
    "purposes": N_("Purposes"),
    "categories": N_("Data to share"),
    "recipients": N_("Recipients"),
    "tenants": N_("Agencies"),
    "kinds": N_("Kind of agency"),
    "valid_until": N_("Valid until"),
    "to_tenant_id": N_("Agency"),
    "kind": N_("Kind of document"),
    "purpose": N_("Purpose"),
    "problem": N_("The problem"),
    "requested_service": N_("What you ask the agency to do"),
    "urgency": N_("Urgency"),
    "respond_by": N_("Answer by"),
    "complete_by": N_("Complete by"),
    "subject_ids": N_("About whom"),
    "legal_basis": N_("Legal basis"),
    "reference": N_("Legal reference"),
    "justification": N_("Justification for sharing without consent"),
    "reason": N_("Reason for declining"),
    "note": N_("Note"),
    "result": N_("Outcome for the family"),
    "period_from": N_("Plan from"),
    "period_until": N_("Plan until"),
    "expected_result": N_("Result expected"),
}


def invalid_field_text(request: Request[Any, Any, Any], error: FieldError) -> str:
    """A validation failure in the user's language, naming the field by its label on the form."""
    _ = translator(request)
    name = error.field.rpartition(".")[2].partition("[")[0]
    if error.field and name not in FIELD_LABELS:  # a field the page fills in itself, not one the user sees
        return _("The form could not be read. Reload the page and fill it in again.")
    label = _(FIELD_LABELS[name]) if error.field else ""
    return sentence(FieldError(label, error.code, error.limit), _)


def invalid_form_text(request: Request[Any, Any, Any], exc: msgspec.ValidationError) -> str:
    """What is wrong with a form whose fields the request's schema refused: the validator's words stay inside."""
    return invalid_field_text(request, field_error(str(exc)))


def day_error(request: Request[Any, Any, Any], label: str | None = None) -> str:
    """The message of a date field holding no date of the accepted calendar (tenants/calendar.py); `label` is the
    field's label (an N_-marked msgid) where the message is not shown next to the field."""
    _ = translator(request)
    first, last = FIRST_DAY.isoformat(), LAST_DAY.isoformat()
    if label is None:
        return _("Enter a date from %(first)s to %(last)s, such as 2026-03-01.", first=first, last=last)
    return _(
        "%(field)s: enter a date from %(first)s to %(last)s, such as 2026-03-01.",
        field=_(label),
        first=first,
        last=last,
    )


# Labels shown for the service's codes; templates translate them with `_()`.
CATEGORY_LABELS: Final = {
    "identity": N_("Identity (name, date of birth, identifiers)"),
    "contacts": N_("Contacts (address, phone, email)"),
    "family": N_("Family (roles and relations)"),
    "education": N_("Education"),
    "health": N_("Health (special category)"),
    "social_assessment": N_("Needs assessment"),
    "case_notes": N_("Case notes"),
    "documents": N_("Documents"),
}
STATUS_LABELS: Final = {
    "draft": N_("Draft"),
    "requested": N_("Sent"),
    "received": N_("Received"),
    "accepted": N_("Accepted"),
    "rejected": N_("Declined"),
    "in-progress": N_("In progress"),
    "on-hold": N_("On hold"),
    "completed": N_("Completed"),
    "failed": N_("Failed"),
    "cancelled": N_("Cancelled"),
}
KIND_LABELS: Final = {
    "referral": N_("Referral"),
    "petition": N_("Petition"),
    "document_request": N_("Document request"),
    "information_letter": N_("Information letter"),
    "plan_task": N_("Plan task"),
}
URGENCY_LABELS: Final = {"routine": N_("Routine"), "urgent": N_("Urgent"), "emergency": N_("Emergency")}
OUTCOME_LABELS: Final = {
    "resolved": N_("Resolved"),
    "partially_resolved": N_("Partially resolved"),
    "not_resolved": N_("Not resolved"),
    "referred_elsewhere": N_("Referred elsewhere"),
    "no_contact": N_("No contact with the family"),
}
ROLE_LABELS: Final = {
    "specialist": N_("Specialist"),
    "intake": N_("Intake officer"),
    "supervisor": N_("Supervisor"),
    "dpo": N_("Data protection officer"),
    "tenant_admin": N_("Organisation administrator"),
}
SUBJECT_ROLE_LABELS: Final = {
    "child": N_("Child"),
    "parent": N_("Parent"),
    "guardian": N_("Guardian"),
    "other": N_("Other"),
}
RELATION_LABELS: Final = {
    "self": N_("The person themselves"),
    "parent": N_("Parent"),
    "guardian": N_("Guardian"),
    "representative": N_("Legal representative"),
}
TENANT_KIND_LABELS: Final = {
    "social_centre": N_("Social service centre"),
    "guardianship_body": N_("Guardianship body"),
    "juvenile_commission": N_("Juvenile commission"),
    "education": N_("School or college"),
    "health": N_("Clinic or hospital"),
    "police_juvenile_unit": N_("Police juvenile unit"),
    "employment": N_("Employment centre"),
    "ngo": N_("Non-profit organisation"),
}
PURPOSE_LABELS: Final = {
    "social_support": N_("Social support of the family"),
    "child_protection": N_("Protection of the child"),
    "education_support": N_("Support in education"),
    "health_care": N_("Health care"),
}
LABELS: Final = {
    "categories": CATEGORY_LABELS,
    "statuses": STATUS_LABELS,
    "kinds": KIND_LABELS,
    "urgencies": URGENCY_LABELS,
    "outcomes": OUTCOME_LABELS,
    "roles": ROLE_LABELS,
    "subject_roles": SUBJECT_ROLE_LABELS,
    "relations": RELATION_LABELS,
    "tenant_kinds": TENANT_KIND_LABELS,
    "purposes": PURPOSE_LABELS,
    # The three parts of a case's needs assessment, which a care plan's goals are drawn from.
    "needs": {k: FIELD_LABELS[k] for k in ("client", "carers", "community")},
}
