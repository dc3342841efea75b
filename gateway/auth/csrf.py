"""CSRF protection for the staff pages: a double-submit cookie whose token is bound to the browser's staff session.

Litestar's CSRF middleware signs a random token with a deployment secret and accepts a form whose token equals the
cookie's. Signed with the secret alone, a token and cookie taken from one session pass beside another session's
cookie (one planted in a victim's browser, for instance). Here the signature also covers the session cookie, as
`HMAC(secret, nonce . SHA-256(session token))`: a token is good only together with the session it was issued to.

A browser whose session changes is given a token for the new one in the same response (`CsrfTokens.renew`, called
where the sign-in pages set or clear the session cookie), so the next form it sends is accepted; a page still open
from before the change is refused as an expired form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final

from litestar import Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import RequestEncodingType, ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

CSRF_COOKIE: Final = "cb_csrf"
FORM_FIELD: Final = "_csrf_token"  # the hidden field Litestar's `csrf_input` renders
HEADER: Final = "x-csrftoken"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths served to programs, which authenticate with bearer tokens (or, the witness, not at all) and never with the
# session cookie.
EXEMPT_PREFIXES: Final = ("/api/", "/oauth/", "/.well-known/", "/health/", "/problems/", "/witness/")
FAILED: Final = "CSRF token verification failed"  # gateway.web.errors shows it as an expired form

_NONCE_HEX: Final = 64


@dataclass(frozen=True, slots=True)
class CsrfTokens:
    """Issues and checks tokens bound to a session cookie's value (None: a browser with no session)."""

    secret: bytes
    session_cookie: str
    secure_cookie: bool

    def issue(self, session: str | None) -> str:
        nonce = secrets.token_hex(_NONCE_HEX // 2)
        return nonce + self._signature(nonce, session)

    def valid(self, token: str, session: str | None) -> bool:
        nonce, signature = token[:_NONCE_HEX], token[_NONCE_HEX:]
        expected = self._signature(nonce, session)
        return len(nonce) == _NONCE_HEX and hmac.compare_digest(signature.encode(), expected.encode())

    def cookie(self, token: str) -> Cookie:
        # HttpOnly: forms carry the token in a hidden field, so no script needs to read the cookie.
        return Cookie(
            key=CSRF_COOKIE, value=token, path="/", secure=self.secure_cookie, httponly=True, samesite="strict"
        )

    def renew(self, request: Request[Any, Any, Any], session: str | None) -> Cookie:
        """A token for the session a response begins or ends: its cookie, and the token the page it shows carries."""
        token = self.issue(session)
        ScopeState.from_scope(request.scope).csrf_token = token
        return self.cookie(token)

    def _signature(self, nonce: str, session: str | None) -> str:
        bound = hashlib.sha256(session.encode()).hexdigest() if session else ""
        return hmac.new(self.secret, f"{nonce}.{bound}".encode(), hashlib.sha256).hexdigest()


class SessionBoundCsrf(ASGIMiddleware):
    """Refuse an unsafe request to a page unless its token matches the CSRF cookie and both belong to its session."""

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = "exclude_from_csrf"

    def __init__(self, tokens: CsrfTokens) -> None:
        self.tokens = tokens
        self.should_bypass_for_scope = _exempt

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope=scope, receive=receive)
        session = request.cookies.get(self.tokens.session_cookie) or None
        cookie = request.cookies.get(CSRF_COOKIE)
        state = ScopeState.from_scope(scope)
        if request.method in SAFE_METHODS:
            if cookie is not None and self.tokens.valid(cookie, session):
                state.csrf_token = cookie
                await next_app(scope, receive, send)
            else:
                # No cookie yet, or one from another session (or none): this browser's session gets its own.
                state.csrf_token = self.tokens.issue(session)
                await next_app(scope, receive, self._setting_cookie(send, state.csrf_token))
            return
        submitted = request.headers.get(HEADER)
        if not submitted and request.content_type[0] in {
            RequestEncodingType.URL_ENCODED,
            RequestEncodingType.MULTI_PART,
        }:
            field = (await request.form()).get(FORM_FIELD)
            submitted = field if isinstance(field, str) else None
        if (
            submitted is None
            or cookie is None
            or not hmac.compare_digest(submitted.encode(), cookie.encode())
            or not self.tokens.valid(cookie, session)
        ):
            raise PermissionDeniedException(FAILED)
        state.csrf_token = submitted
        await next_app(scope, receive, send)

    def _setting_cookie(self, send: Send, token: str) -> Send:
        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers.add("set-cookie", self.tokens.cookie(token).to_header(header=""))
            await send(message)

        return send_with_cookie


def _exempt(scope: Scope) -> bool:
    return str(scope["path"]).startswith(EXEMPT_PREFIXES)
