"""Request ids: every response carries one, and problem documents quote it so a report can be traced."""

from __future__ import annotations

import re
import uuid

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def ensure_request_id(scope: Scope) -> str:
    """The request's id: the caller's well-formed X-Request-Id, or a new one, fixed on first use."""
    state = scope.setdefault("state", {})
    request_id = state.get("request_id")
    if request_id is None:
        incoming = dict(scope.get("headers", [])).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = state["request_id"] = incoming if _SAFE_REQUEST_ID.match(incoming) else str(uuid.uuid4())
    return str(request_id)


async def add_request_id(message: Message, scope: Scope) -> None:
    """`before_send` hook: runs for every response, including those for routes that do not exist."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = ensure_request_id(scope)
