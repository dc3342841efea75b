"""What a request body must be before a handler reads it: of the media type its route takes, and JSON nested no deeper
than MAX_JSON_DEPTH (its size is bounded by CASEBRIDGE_MAX_BODY_BYTES before it is read at all).

`check_media_type` runs before every handler (the app's `before_request`); `BoundedRequest` is the app's request
class, whose JSON decoder refuses deep nesting before msgspec recurses into it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

from litestar import Request
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin  # Litestar's own; not exported
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import Schema
from litestar.params import BodyKwarg
from litestar.typing import FieldDefinition

from gateway.problems import BAD_REQUEST, UNSUPPORTED_MEDIA_TYPE, Problem
from tenants.schemas import Strict

# Deeper than any body casebridge takes (a case's subjects' free-form education and health blocks included), far
# shallower than the recursion that would exhaust the decoder's stack.
MAX_JSON_DEPTH: Final = 32
JSON: Final = "application/json"
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def accepts(declared: str, sent: str) -> bool:
    """Whether a body sent as `sent` (the Content-Type without parameters) is what a route declaring `declared`
    takes; JSON routes also take the structured `+json` types (RFC 6839), such as application/merge-patch+json, and a
    page's form with a file also takes the same form URL-encoded (as sent with no file)."""
    sent = sent.strip().lower()
    if declared == JSON:
        return sent == JSON or (sent.startswith("application/") and sent.endswith("+json"))
    if declared == RequestEncodingType.MULTI_PART:
        return sent in (RequestEncodingType.MULTI_PART, RequestEncodingType.URL_ENCODED)
    return sent == declared


@functools.cache
def declared_media_type(handler: HTTPRouteHandler) -> str | None:
    """The media type of the body a handler takes (its `data` parameter), or None when it takes none."""
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return None
    kwarg = data.kwarg_definition
    media_type = kwarg.media_type if isinstance(kwarg, BodyKwarg) else RequestEncodingType.JSON
    return media_type.value if isinstance(media_type, RequestEncodingType) else media_type


async def check_media_type(request: Request[Any, Any, Any]) -> None:
    """415 for a body of another media type than the route takes, or for one sent without a Content-Type."""
    declared = declared_media_type(request.route_handler)
    if declared is None:
        return
    sent = request.content_type[0]
    if not accepts(declared, sent):
        described = f"as {sent}" if sent else "without a Content-Type"
        raise Problem(
            UNSUPPORTED_MEDIA_TYPE,
            f"This route takes a body of type {declared}; it was sent {described}.",
            extra={"accepted": [declared]},
        )
    if declared == RequestEncodingType.MULTI_PART and sent == RequestEncodingType.URL_ENCODED:
        # Litestar's multipart reader takes a form already read (from the request's state) as it is: read it so.
        await request.form()


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # too few brackets to nest too deep: the common case costs two C-level scans
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub(b'""', body)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


class StrictBodySchemas(StructSchemaPlugin):
    """OpenAPI for request bodies (tenants.schemas.Strict): they refuse members they do not name, so the document
    says so (`additionalProperties: false`), as it says every other rule of the body."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return super().is_plugin_supported_field(field_definition) and field_definition.is_subclass_of(Strict)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


class BoundedRequest(Request[Any, Any, Any]):
    """Litestar's request, with a JSON decoder that refuses bodies nested deeper than MAX_JSON_DEPTH (400)."""

    async def json(self) -> Any:
        if json_depth(await self.body()) > MAX_JSON_DEPTH:
            raise Problem(
                BAD_REQUEST,
                f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels "
                "deep; casebridge takes no body that deep.",
            )
        return await super().json()
