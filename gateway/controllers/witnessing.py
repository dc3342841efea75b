"""Public audit witnessing (API.md): the log's verifier key and its latest signed checkpoint, without authentication.

Neither holds personal data (docs/audit.md, "Witnessing the log"); reading them is not audited, as reading the JWKS
is not: an event per witness poll would only call for the next checkpoint.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get

from audit.publication import cosigned_checkpoint, published_log
from gateway.auth.guards import PUBLIC
from gateway.controllers.context import runtime_of
from tenants.errors import NotFound
from tenants.persistence import read_only_platform_session

CHECKPOINT_PATH = "/audit/checkpoint"
# Witnesses poll: a cached checkpoint would only hold them back (a new one is signed every few seconds).
_FRESH = {"Cache-Control": "no-cache"}


@get("/.well-known/audit-log", opt={PUBLIC: True}, tags=["audit"], summary="The audit log's name and verifier keys")
async def audit_log(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    async with await read_only_platform_session(runtime_of(request).sessions) as session:
        published = await published_log(session)
    if published is None:
        raise NotFound("The audit log has not been started yet; try again in a few seconds.")
    base_url = runtime_of(request).settings.server.base_url
    return Response({**published.to_json(), "checkpoint_url": f"{base_url}{CHECKPOINT_PATH}"}, headers=_FRESH)


@get(
    CHECKPOINT_PATH,
    opt={PUBLIC: True},
    tags=["audit"],
    media_type=MediaType.TEXT,
    summary="The latest signed checkpoint with its co-signatures (C2SP signed note)",
)
async def checkpoint(request: Request[Any, Any, Any]) -> Response[str]:
    async with await read_only_platform_session(runtime_of(request).sessions) as session:
        note = await cosigned_checkpoint(session)
    if note is None:
        raise NotFound("No checkpoint has been signed yet; try again in a few seconds.")
    return Response(note, media_type=MediaType.TEXT, headers=_FRESH)
