"""Per-client rate limiting; the 429 problem adds Retry-After (see gateway.problems)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address

from tenants.principal import Principal


def rate_limit_identifier(request: Request[Any, Any, Any]) -> str:
    """Authenticated callers are limited per client or user, anonymous ones per address."""
    principal = request.scope.get("auth")
    if isinstance(principal, Principal):
        return f"{principal.actor_kind}:{principal.actor_id}"
    return f"addr:{get_remote_address(request)}"


def rate_limit_config(requests_per_minute: int) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=("minute", requests_per_minute),
        exclude=["/health/", "/schema", "/metrics"],
        identifier_for_request=rate_limit_identifier,
    )
