"""GET /metrics for Prometheus: to the holder of the metrics token, or, when none is set, to this machine only."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get

from gateway.auth.guards import PUBLIC
from gateway.metrics import exposition, loopback
from gateway.problems import FORBIDDEN, UNAUTHENTICATED, Problem
from gateway.runtime import Runtime

# A request that came through a proxy is not from this machine, whatever address the proxy connected from.
_FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip")
# The text format every Prometheus reads (generate_latest writes it); Litestar adds the charset.
EXPOSITION_MEDIA_TYPE = "text/plain; version=0.0.4"


@get("/metrics", opt={PUBLIC: True}, include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    runtime: Runtime = request.app.state.runtime
    check_scraper(request, runtime.settings.operations.metrics_token)
    return Response(await exposition(runtime), media_type=EXPOSITION_MEDIA_TYPE)


def check_scraper(request: Request[Any, Any, Any], token: str | None) -> None:
    """Raise the problem a caller that may not read the metrics gets."""
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.casefold() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Problem(
                UNAUTHENTICATED,
                "Send the metrics token (CASEBRIDGE_METRICS_TOKEN) as a bearer token to read the metrics.",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return
    client = request.client.host if request.client else None
    if not loopback(client) or any(name in request.headers for name in _FORWARDED):
        raise Problem(
            FORBIDDEN,
            "Without CASEBRIDGE_METRICS_TOKEN the metrics are served only to clients on this machine that "
            "connect directly; set the token to scrape them from elsewhere.",
        )
