"""Public audit witnessing (docs/audit.md): the log's verifier key and its latest signed checkpoint, without
authentication; and this node as a C2SP tlog-witness of its peers' logs (``POST /witness/add-checkpoint``).

None of it holds personal data (docs/audit.md, "Witnessing the log"); reading them is not audited, as reading the JWKS
is not: an event per witness poll would only call for the next checkpoint. A witness's refusal of a signed checkpoint
is recorded in each hosted agency's trail (audit/peer_witness.py).
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get, post

from audit.peer_witness import Conflict, Cosignatures, Refused
from audit.publication import cosigned_checkpoint, published_log
from audit.tlog_witness import (
    ADD_CHECKPOINT_PATH,
    MAX_REQUEST_SIZE,
    SIZE_MEDIA_TYPE,
    WitnessFormatError,
    format_cosignatures,
    format_size,
    parse_add_checkpoint,
)
from gateway.auth.guards import PUBLIC
from gateway.controllers.context import runtime_of
from gateway.problems import BAD_REQUEST, FORBIDDEN, INCONSISTENT_CHECKPOINT, NOT_FOUND, Problem, ProblemType
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


_REFUSALS: dict[int, ProblemType] = {403: FORBIDDEN, 404: NOT_FOUND, 422: INCONSISTENT_CHECKPOINT}


@post(
    ADD_CHECKPOINT_PATH,
    opt={PUBLIC: True},
    tags=["audit"],
    status_code=200,
    request_max_body_size=MAX_REQUEST_SIZE,
    summary="Co-sign a peer node's audit checkpoint (C2SP tlog-witness add-checkpoint)",
)
async def add_checkpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """200: the co-signature lines of the agencies hosted here; 409 (`text/x.tlog.size`): the size last co-signed;
    problems: 400 malformed, 403 not signed by the log, 404 not a peer's log, 422 not extending what was co-signed."""
    witness = runtime_of(request).peer_witness
    if witness is None:
        raise Problem(NOT_FOUND, "This node witnesses no other node's audit log: no peers are configured.")
    try:
        submitted = parse_add_checkpoint(await request.body())
    except WitnessFormatError as exc:
        raise Problem(BAD_REQUEST, f"The add-checkpoint request is malformed: {exc.detail}.") from None
    answer = await witness.add_checkpoint(submitted)
    if isinstance(answer, Cosignatures):
        return Response(format_cosignatures(answer.signatures), media_type=MediaType.TEXT)
    if isinstance(answer, Conflict):
        # Exactly this Content-Type, with no charset parameter (which Litestar adds to text/ types on its own).
        headers = {"Content-Type": SIZE_MEDIA_TYPE}
        return Response(format_size(answer.size), status_code=409, media_type=SIZE_MEDIA_TYPE, headers=headers)
    refused: Refused = answer
    raise Problem(_REFUSALS[refused.status], refused.detail[:1].upper() + refused.detail[1:] + ".")
