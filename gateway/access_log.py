"""One access line and one metrics observation per HTTP request, named by the route's template, never its path.

A path carries ids (a referral's, a case's) and the secret of an invitation link, and a query string carries search
terms (a DPO may search for a colleague's address): neither is logged nor counted. The route template
(`/api/v1/referrals/{referral_id}`) says what was asked for; the request id ties the line to the caller's report.

RequestObserver wraps the application's whole ASGI handler, outside routing, so requests for paths that match no
route (counted as `unmatched`) and 405s are seen too. Litestar's PrometheusMiddleware runs inside routing, as every
Litestar middleware does, and would miss those.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from litestar.enums import ScopeType

from gateway.logs import REQUEST_ID
from gateway.request_id import ensure_request_id

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from gateway.metrics import HttpMetrics

log = logging.getLogger("casebridge.access")

UNMATCHED: Final = "unmatched"
# Methods are counted by name only when standard, so a caller cannot add label values at will.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestObserver:
    """Times each HTTP request to its last byte, counts it in `metrics` and writes its access line."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        context = REQUEST_ID.set(ensure_request_id(scope))
        started = time.perf_counter()
        status = 500  # what the client gets if the application fails before answering (the server answers 500)

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            seconds = time.perf_counter() - started
            route = str(scope.get("path_template") or UNMATCHED)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.observe(method, route, status, seconds)
            log.info(
                "%s %s %d %.1f ms",
                method,
                route,
                status,
                seconds * 1000,
                extra={"method": method, "route": route, "status": status, "duration_ms": round(seconds * 1000, 1)},
            )
            REQUEST_ID.reset(context)
