"""The OAuth2 token endpoint for agency systems: client credentials with private_key_jwt (RFC 7523), on authlib."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.events import Action, Actor, Outcome
from audit.services import AuditLog, RequestContext
from gateway.auth.tokens import access_token_claims, sign_access_token
from gateway.settings import ServerSettings, TokenSettings
from tenants.algorithms import CLIENT_ASSERTION_ALGORITHMS
from tenants.clock import Clock
from tenants.keys import KeyRing
from tenants.models import ApiClient, PlatformKeyUse, Scope, Tenant, UsedAssertion
from tenants.persistence import platform_session

AUTH_METHOD = "private_key_jwt"
ASSERTION_ALGORITHMS = list(CLIENT_ASSERTION_ALGORITHMS)


@dataclass(slots=True)
class RegisteredClient(ClientMixin):  # type: ignore[misc] # authlib ships no type information
    """An API client as authlib sees it, loaded before authlib's synchronous checks run."""

    record: ApiClient
    tenant: Tenant

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        """Only scopes both registered for the client and asked for (all registered ones when none asked)."""
        registered = set(self.record.scopes)
        if not scope:
            return " ".join(sorted(registered))
        return " ".join(s for s in sorted(set(scope.split())) if s in registered)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == AUTH_METHOD and endpoint == "token"

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


@dataclass(slots=True)
class _TokenRequest:
    """What one token request preloaded from the database, for authlib's synchronous callbacks."""

    client: RegisteredClient | None
    used_jtis: set[str]
    accepted_jti: str | None = None
    accepted_exp: int | None = None


_current: contextvars.ContextVar[_TokenRequest] = contextvars.ContextVar("casebridge_token_request")


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc] # authlib ships no type information
    """RFC 7523 client authentication with the client's registered public key, jti replay refused."""

    CLIENT_AUTH_METHOD = AUTH_METHOD

    def __init__(self, *, token_endpoint: str, issuer: str, leeway: int, max_age: int) -> None:
        super().__init__(validate_jti=True, leeway=leeway)
        self._audiences = [token_endpoint, issuer]
        self._max_age = max_age

    def get_audiences(self) -> list[str]:
        return self._audiences

    def __call__(self, query_client: Any, request: OAuth2Request) -> RegisteredClient | None:
        if request.form.get("client_assertion") and _other_credentials(request):
            raise InvalidRequestError(description="Authenticate the client one way only: with the client assertion.")
        client: RegisteredClient | None = super().__call__(query_client, request)
        named = request.form.get("client_id")
        # RFC 7521 §4.2: a client_id sent beside the assertion must identify the client the assertion authenticates.
        if client is not None and named is not None and named != client.get_client_id():
            raise InvalidClientError(description="The client_id names another client than the client assertion.")
        return client

    def resolve_client_public_key(self, client: RegisteredClient) -> Key:
        jwk = client.record.public_jwk
        return OKPKey.import_key(jwk) if jwk.get("kty") == "OKP" else ECKey.import_key(jwk)

    def process_assertion_claims(self, assertion: str, resolve_key: Key) -> dict[str, Any]:
        # authlib's default decode allows only joserfc's "recommended" algorithms, which exclude EdDSA.
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except JoseError as exc:
            raise InvalidClientError(
                description="The client assertion's signature does not match the registered key."
            ) from exc
        self.verify_claims(token.claims)
        return dict(token.claims)

    def verify_claims(self, claims: dict[str, Any]) -> None:
        now = int(time.time())
        iat = claims.get("iat")
        if iat is not None and (not isinstance(iat, int | float) or iat > now + self.leeway):
            raise InvalidClientError(description="The client assertion was issued in the future.")
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > now + self._max_age + self.leeway:
            raise InvalidClientError(description="The client assertion lives longer than this server accepts.")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        request = _current.get()
        if not isinstance(jti, str) or not jti or jti in request.used_jtis:
            return False
        request.accepted_jti = jti
        request.accepted_exp = int(claims["exp"])
        return True


class ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc] # authlib ships no type information
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [AUTH_METHOD]


class CasebridgeAuthorizationServer(AuthorizationServer):  # type: ignore[misc] # authlib ships no type information
    """authlib's authorization server bound to casebridge's clients and signing keys."""

    def __init__(self, *, server: ServerSettings, tokens: TokenSettings) -> None:
        super().__init__(scopes_supported=[s.value for s in Scope])
        self._signing_key: OKPKey | None = None
        self.register_grant(ClientCredentials)
        self.register_client_auth_method(
            AUTH_METHOD,
            PrivateKeyJwt(
                token_endpoint=server.token_endpoint,
                issuer=server.issuer,
                leeway=int(tokens.clock_skew.total_seconds()),
                max_age=int(tokens.assertion_max_age.total_seconds()),
            ),
        )
        ttl = int(tokens.access_token_ttl.total_seconds())
        self.register_token_generator(
            "default", BearerTokenGenerator(self._generate_access_token, expires_generator=lambda *_: ttl)
        )
        self._issuer = server.issuer
        self._ttl = ttl

    def use_signing_key(self, key: OKPKey) -> None:
        self._signing_key = key

    def _generate_access_token(self, client: RegisteredClient, grant_type: str, user: None, scope: str) -> str:
        if self._signing_key is None:
            raise RuntimeError("the token signing key has not been loaded")
        claims = access_token_claims(
            issuer=self._issuer,
            client_id=client.get_client_id(),
            tenant_id=client.tenant.id,
            role=client.record.role,
            scope=scope,
            now=int(time.time()),
            ttl_seconds=self._ttl,
        )
        return sign_access_token(claims, self._signing_key)

    def query_client(self, client_id: str) -> RegisteredClient | None:
        client = _current.get().client
        return client if client is not None and client.get_client_id() == client_id else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Access tokens are self-contained JWTs; nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No listeners."""

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        # The controller chooses the media type (JSON for tokens, problem+json for errors).
        kept = {name: value for name, value in dict(headers).items() if name.lower() != "content-type"}
        return status, dict(body), kept


@dataclass(frozen=True, slots=True)
class TokenResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class TokenEndpoint:
    """Preloads the asserted client from the database, runs authlib, then records the assertion's jti."""

    def __init__(
        self,
        *,
        server: ServerSettings,
        tokens: TokenSettings,
        sessions: async_sessionmaker[AsyncSession],
        keyring: KeyRing,
        clock: Clock,
        audit: AuditLog,
    ) -> None:
        self._audit = audit
        self._context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
            "casebridge_token_context", default=None
        )
        self._authorization_server = CasebridgeAuthorizationServer(server=server, tokens=tokens)
        self._token_endpoint = server.token_endpoint
        self._sessions = sessions
        self._keyring = keyring
        self._clock = clock

    async def load_signing_key(self) -> None:
        async with platform_session(self._sessions) as session, session.begin():
            key = await self._keyring.ensure_platform_key(session, PlatformKeyUse.ACCESS_TOKEN)
            self._authorization_server.use_signing_key(self._keyring.platform_private_jwk(key))

    async def issue(
        self, fields: Iterable[tuple[str, str]], headers: dict[str, str], context: RequestContext | None = None
    ) -> TokenResponse:
        """Issue a token for the posted form's `fields`, or refuse; either way the client's organisation's audit
        trail records it."""
        self._context.set(context)
        form: dict[str, str] = {}
        repeated: list[str] = []
        for name, value in fields:
            if name in form:
                repeated.append(name)
            form[name] = value
        response, client = await self._decide(form, headers, repeated)
        if response.status != 200:
            async with platform_session(self._sessions) as session, session.begin():
                self._audit.append(
                    session,
                    action=Action.TENANTS_TOKEN_REFUSE,
                    outcome=Outcome.DENIED,
                    actor=_client_actor(client),
                    log_tenant_id=client.tenant.id if client else None,
                    context=context,
                    reason=str(response.body.get("error_description") or response.body.get("error"))[:200],
                )
        return response

    async def _decide(
        self, form: dict[str, str], headers: dict[str, str], repeated: list[str]
    ) -> tuple[TokenResponse, RegisteredClient | None]:
        async with platform_session(self._sessions) as session:
            asserted = _peek_assertion(form.get("client_assertion", ""))
            client = await self._client(session, asserted.client_id) if asserted else None
            if repeated:
                # RFC 6749 §3.2: a parameter sent twice is ambiguous, and either reading of it may be the wrong one.
                twice = f"The parameter '{repeated[0]}' is sent more than once."
                return _refused("invalid_request", twice, 400), client
            if client is not None and not client.tenant.is_active:
                return _invalid_client("The client's organisation is suspended."), client
            if client is not None and client.record.revoked_at is not None:
                return _invalid_client("The client has been revoked."), client
            used = set()
            if client is not None and asserted is not None and await self._jti_used(session, client, asserted.jti):
                used.add(asserted.jti)
            context = _TokenRequest(client=client, used_jtis=used)
            token = _current.set(context)
            try:
                request = _FormRequest(self._token_endpoint, form, headers)
                status, body, response_headers = self._authorization_server.create_token_response(request)
            finally:
                _current.reset(token)
            if status != 200:
                status = 401 if body.get("error") == "invalid_client" else status
                return TokenResponse(status, body, response_headers), client
            if client is None or context.accepted_jti is None or context.accepted_exp is None:
                raise RuntimeError("authlib issued a token without authenticating a client")
            # Recorded in the same transaction as the jti: no token leaves without its audit event.
            self._audit.append(
                session,
                action=Action.TENANTS_TOKEN_ISSUE,
                outcome=Outcome.SUCCESS,
                actor=_client_actor(client),
                log_tenant_id=client.tenant.id,
                context=self._context.get(),
                extra={"scope": body.get("scope")},
            )
            if not await self._record_jti(session, client, context.accepted_jti, context.accepted_exp):
                return _invalid_client("The client assertion has been used before (jti)."), client
            return TokenResponse(status, body, response_headers), client

    async def _client(self, session: AsyncSession, client_id: uuid.UUID) -> RegisteredClient | None:
        # The tenant's row is share-locked until the token is issued or refused: a suspension running at the same time
        # waits, so the moment it records comes after this token's `iat` (tenants.services.set_tenant_status).
        row = (
            await session.execute(
                select(ApiClient, Tenant)
                .join(Tenant, Tenant.id == ApiClient.tenant_id)
                .where(ApiClient.id == client_id)
                .with_for_update(read=True, of=Tenant)
            )
        ).first()
        return RegisteredClient(row[0], row[1]) if row is not None else None

    async def _jti_used(self, session: AsyncSession, client: RegisteredClient, jti: str) -> bool:
        found = await session.scalar(
            select(UsedAssertion.id).where(UsedAssertion.client_id == client.record.id, UsedAssertion.jti == jti)
        )
        return found is not None

    async def _record_jti(self, session: AsyncSession, client: RegisteredClient, jti: str, exp: int) -> bool:
        """Store the jti; the unique constraint settles a race between two requests carrying the same one."""
        await session.execute(
            delete(UsedAssertion).where(
                UsedAssertion.client_id == client.record.id, UsedAssertion.expires_at < self._clock.now()
            )
        )
        session.add(
            UsedAssertion(client_id=client.record.id, jti=jti, expires_at=dt.datetime.fromtimestamp(exp, dt.UTC))
        )
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return False
        return True


class _FormRequest(OAuth2Request):  # type: ignore[misc] # authlib ships no type information
    """A token request as authlib's framework integrations present one: a POSTed form, no query."""

    def __init__(self, uri: str, form: dict[str, str], headers: dict[str, str]) -> None:
        super().__init__("POST", uri, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True, slots=True)
class _Asserted:
    client_id: uuid.UUID
    jti: str


def _peek_assertion(assertion: str) -> _Asserted | None:
    """The client and jti an assertion names, read before verification only to find the client's key."""
    try:
        claims = json.loads(jws.extract_compact(assertion.encode()).payload)
        return _Asserted(uuid.UUID(str(claims["sub"])), str(claims.get("jti", "")))
    except (JoseError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _client_actor(client: RegisteredClient | None) -> Actor:
    if client is None:
        return Actor(kind="client", id=None, tenant_id=None, role=None)
    return Actor(kind="client", id=client.record.id, tenant_id=client.tenant.id, role=client.record.role)


def _invalid_client(description: str) -> TokenResponse:
    return _refused("invalid_client", description, 401)


def _refused(error: str, description: str, status: int) -> TokenResponse:
    return TokenResponse(
        status, {"error": error, "error_description": description}, {"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _other_credentials(request: OAuth2Request) -> bool:
    """Whether the request also carries a client secret (RFC 6749 §2.3.1, in the Authorization header or the form)."""
    headers = {name.lower() for name in dict(request.headers)}
    return "authorization" in headers or "client_secret" in request.form
