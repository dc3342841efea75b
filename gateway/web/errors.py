"""Errors on staff pages: a page in the user's language (or the sign-in page), never a problem document or trace.

`BrowserErrorPages` wraps every exception handler of the app, the problem-details plugin's included: requests for pages
get HTML, everything under the API prefixes keeps its RFC 9457 problem documents unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins import InitPlugin
from litestar.types import ExceptionHandlersMap

from exchange.errors import ConsentRequired, IdempotencyMismatch
from gateway.auth.middleware import SESSION_ENDED_STATE
from gateway.request_id import ensure_request_id
from gateway.web.pages import redirect, render, translator
from tenants.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated, NotFound

log = logging.getLogger("casebridge.gateway")

# Paths served to programs; everything else is a page for people.
NOT_PAGES: Final = (
    "/api/",
    "/oauth/",
    "/.well-known/",
    "/health/",
    "/problems/",
    "/schema",
    "/static/",
    "/metrics",
    "/witness/",
)
LOGIN: Final = "/login"


def is_page(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    return not path.startswith(NOT_PAGES) and path != "/schema"


def _status_of(exc: Exception) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Forbidden | ConsentRequired):
        return 403
    if isinstance(exc, NotAuthenticated):
        return 401
    if isinstance(exc, InvalidInput | Conflict | IdempotencyMismatch | ValidationException):
        return 400
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 500


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status = _status_of(exc)
    if status == 401:
        # A session cookie that no longer signs anyone in: the session ended (idle or lifetime), so say so.
        expired = bool(request.scope.get("state", {}).get(SESSION_ENDED_STATE))
        response = redirect(request, LOGIN + ("?expired=1" if expired else ""))
        # An error handler's answer does not get the route's cache options.
        response.headers["Cache-Control"] = "no-store"
        return response
    _ = translator(request)
    if status == 404 or status == 405:
        title = _("Page not found")
        message = _(
            "There is nothing at this address, or it belongs to another organisation. Check the link, or "
            "go back to the start page."
        )
    elif status == 403 and isinstance(exc, HTTPException) and "CSRF" in str(exc.detail):
        title = _("The form has expired")
        message = _("For your safety the form could not be accepted. Go back, reload the page and send it again.")
    elif status == 403:
        title = _("Not allowed")
        message = _(
            "Your role does not give access to this page. Ask your organisation's administrator if you need it."
        )
    elif status == 429:
        title = _("Too many requests")
        message = _("Wait a minute, then try again.")
    elif status == 413:
        title = _("The file is too large")
        message = _("The upload is larger than casebridge accepts. Choose a smaller file.")
    elif status < 500:
        title = _("The request could not be handled")
        message = _("Go back, check the form and try again.")
    else:
        log.error("unhandled error on a page", exc_info=exc, extra={"request_id": ensure_request_id(request.scope)})
        title = _("Something went wrong")
        message = _(
            "casebridge could not complete this. Nothing was changed. Try again in a moment; if it "
            "happens again, tell your administrator the reference below."
        )
    page = render(
        request,
        "error.html",
        status=status,
        title=title,
        message=message,
        status_code=status,
        reference=ensure_request_id(request.scope),
    )
    page.headers["Cache-Control"] = "no-store"
    return page


Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def _for_browsers(api_handler: Handler) -> Handler:
    def handle(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
        if not is_page(request):
            return api_handler(request, exc)
        try:
            return error_page(request, exc)
        except Exception:  # rendering the error page failed too: the API's answer is better than none
            log.exception("error page failed", extra={"request_id": ensure_request_id(request.scope)})
            return api_handler(request, exc)

    return handle


def for_browsers(handlers: ExceptionHandlersMap) -> ExceptionHandlersMap:
    return {key: _for_browsers(handler) for key, handler in handlers.items()}


class BrowserErrorPages(InitPlugin):
    """Listed after the problem-details plugin, so the handlers it installs are wrapped too."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.exception_handlers = for_browsers(app_config.exception_handlers)
        return app_config
