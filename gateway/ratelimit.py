"""Per-client rate limiting with a Retry-After header on 429 (RFC 9110 §10.2.3)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware, get_remote_address

from tenants.principal import Principal


class RetryAfterRateLimitMiddleware(RateLimitMiddleware):
    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        headers = super().create_response_headers(cache_object)
        headers["Retry-After"] = str(max(1, cache_object.reset - int(time.time())))
        return headers


def rate_limit_identifier(request: Request[Any, Any, Any]) -> str:
    """Authenticated callers are limited per client or user, anonymous ones per address."""
    principal = request.scope.get("auth")
    if isinstance(principal, Principal):
        return f"{principal.actor_kind}:{principal.actor_id}"
    return f"addr:{get_remote_address(request)}"


def rate_limit_config(requests_per_minute: int) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=("minute", requests_per_minute),
        exclude=["/health/", "/schema"],
        identifier_for_request=rate_limit_identifier,
        middleware_class=RetryAfterRateLimitMiddleware,
    )
