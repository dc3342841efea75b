"""What a request must be before a handler reads it: a body of the media type its route takes, JSON nested no deeper
than MAX_JSON_DEPTH (its size is bounded by CASEBRIDGE_MAX_BODY_BYTES before it is read at all), and no NUL character
(U+0000) in its text, which PostgreSQL cannot store and no person types.

`check_request` runs before every handler (the app's `before_request`); `BoundedRequest` is the app's request class,
whose JSON and form decoders refuse deep nesting and NUL characters before a handler sees them.
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
# A JSON escape of U+0000: `\u0000` after an even number of other backslashes (`\\u0000` is a backslash and "u0000").
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
NUL_REFUSED: Final = (
    "The request holds a NUL character (U+0000); casebridge stores no text with one. Remove it and send again."
)


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


async def check_request(request: Request[Any, Any, Any]) -> None:
    """400 for a NUL character in the path or query; 415 for a body of another media type than the route takes."""
    if b"%00" in request.scope["query_string"] or "\x00" in request.scope["path"]:
        raise Problem(BAD_REQUEST, NUL_REFUSED)
    await check_media_type(request)


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
    if declared in (RequestEncodingType.URL_ENCODED, RequestEncodingType.MULTI_PART):
        # Read here, by BoundedRequest, which refuses a NUL in a field: Litestar's readers then take the form as read
        # (from the request's state), which is also how a form sent with no file reaches a multipart route.
        await request.form()


def holds_nul(json_body: bytes) -> bool:
    """Whether a JSON text holds U+0000 in a string or a member name (a raw NUL byte is not JSON at all)."""
    return b"\\u0000" in json_body and _NUL_ESCAPE.search(json_body) is not None


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
    """Litestar's request, with decoders that refuse JSON nested deeper than MAX_JSON_DEPTH and text holding a NUL
    character (400)."""

    async def json(self) -> Any:
        body = await self.body()
        if json_depth(body) > MAX_JSON_DEPTH:
            raise Problem(
                BAD_REQUEST,
                f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels "
                "deep; casebridge takes no body that deep.",
            )
        if holds_nul(body):
            raise Problem(BAD_REQUEST, NUL_REFUSED)
        return await super().json()

    async def form(self) -> Any:
        form = await super().form()
        # Uploaded files may hold any byte; the text fields beside them (and every URL-encoded field) may not.
        if any(isinstance(value, str) and "\x00" in value for _, value in form.multi_items()):
            raise Problem(BAD_REQUEST, NUL_REFUSED)
        return form
