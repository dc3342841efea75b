"""POST /oauth/token: access tokens for agency systems (client credentials, private_key_jwt)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from gateway.auth.guards import PUBLIC
from gateway.controllers.context import request_context
from gateway.problems import BAD_REQUEST, INVALID_CLIENT, UNSUPPORTED_MEDIA_TYPE, ProblemType, problem_response
from gateway.runtime import Runtime

_FORM = "application/x-www-form-urlencoded"


@post("/oauth/token", opt={PUBLIC: True}, tags=["oauth"], summary="Issue an access token", status_code=200)
async def token(request: Request[Any, Any, Any]) -> Response[Any]:
    if request.content_type[0] != _FORM:
        return problem_response(request, UNSUPPORTED_MEDIA_TYPE, f"Send the token request as {_FORM}.")
    form = await request.form()
    fields = [(key, str(value)) for key, value in form.multi_items()]
    runtime: Runtime = request.app.state.runtime
    result = await runtime.token_endpoint.issue(fields, dict(request.headers), request_context(request))
    if result.status == 200:
        return Response(result.body, status_code=200, headers=result.headers)
    # RFC 6749 §5.2 error members, inside an RFC 9457 problem document so both kinds of client understand it.
    problem: ProblemType = INVALID_CLIENT if result.body.get("error") == "invalid_client" else BAD_REQUEST
    return problem_response(
        request,
        problem,
        str(result.body.get("error_description") or result.body.get("error")),
        status=result.status,
        headers=result.headers,
        extra={"error": result.body.get("error"), "error_description": result.body.get("error_description")},
    )
