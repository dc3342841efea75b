"""Ed25519-signed JWT access tokens (RFC 9068 profile): issued by the token endpoint, checked on every API call."""

from __future__ import annotations

import collections
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from tenants.algorithms import SIGNATURE_ALG, VERIFIED_ALGORITHMS, accepted, verification_key

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 media type, not a secret
TOKEN_ALGORITHMS = [SIGNATURE_ALG]  # what tokens are signed with (the server metadata lists it)
# A verifier that meets an unknown `kid` reloads keys at most this often (a rotation in another process).
_RELOAD_INTERVAL_S = 10.0
# Tokens whose signature was checked, kept so that a client's next calls skip parsing and verifying it again: a
# client holds one token for its lifetime, so a few thousand cover every client a process serves at once.
VERIFIED_TOKENS_KEPT = 4096


class InvalidAccessToken(Exception):
    """The bearer token cannot be accepted; the message says why, safe to return to the client."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    tenant_id: uuid.UUID
    client_id: uuid.UUID
    role: str
    scopes: frozenset[str]
    jti: str
    issued_at: int
    expires_at: int


def api_audience(issuer: str) -> str:
    return f"{issuer}/api"


def access_token_claims(
    *,
    issuer: str,
    client_id: str,
    tenant_id: uuid.UUID,
    role: str,
    scope: str,
    now: int,
    ttl_seconds: int,
) -> dict[str, Any]:
    return {
        "iss": issuer,
        "sub": client_id,
        "aud": api_audience(issuer),
        "client_id": client_id,
        "tenant_id": str(tenant_id),
        "role": role,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }


def sign_access_token(claims: dict[str, Any], key: OKPKey) -> str:
    return jwt.encode(
        {"alg": SIGNATURE_ALG, "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}, claims, key, algorithms=TOKEN_ALGORITHMS
    )


class AccessTokenVerifier:
    """Checks signature, type, issuer, audience and times of access tokens against the gateway's public keys.

    A token that passed is remembered (the most recent `VERIFIED_TOKENS_KEPT`) with the key that signed it: the same
    token again is accepted without its signature being checked again while that key is still among the keys
    loaded and the token has not expired. Whether its client is still registered and unrevoked is no part of this:
    that is confirmed on every request, in its transaction (gateway.auth.middleware.confirm_client).
    """

    def __init__(
        self, *, issuer: str, leeway_seconds: int, load_keys: Callable[[], Awaitable[list[dict[str, Any]]]]
    ) -> None:
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._load_keys = load_keys
        self._keys = KeySet([])
        self._kids: set[str] = set()
        self._loaded_at = 0.0
        self._verified: collections.OrderedDict[str, tuple[str, AccessClaims]] = collections.OrderedDict()

    async def refresh(self) -> None:
        jwks = await self._load_keys()
        self._keys = KeySet([verification_key(jwk) for jwk in jwks])
        self._kids = {str(k["kid"]) for k in jwks}
        self._loaded_at = time.monotonic()

    def remembers(self, token: str) -> bool:
        """Whether `token` is among the tokens verified and remembered (see the class's docstring)."""
        return token in self._verified

    @property
    def remembered(self) -> int:
        return len(self._verified)

    async def verify(self, token: str) -> AccessClaims:
        known = self._verified.get(token)
        if known is not None:
            kid, claims = known
            if kid in self._kids and time.time() <= claims.expires_at + self._leeway:
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
        claims, kid = await self._verify(token)
        self._verified[token] = (kid, claims)
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return claims

    async def _verify(self, token: str) -> tuple[AccessClaims, str]:
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise InvalidAccessToken("The access token is malformed.") from exc
        if header.get("typ") != ACCESS_TOKEN_TYPE or header.get("alg") not in VERIFIED_ALGORITHMS:
            raise InvalidAccessToken("The bearer token is not a casebridge access token.")
        kid = header.get("kid")
        if kid not in self._kids and time.monotonic() - self._loaded_at > _RELOAD_INTERVAL_S:
            await self.refresh()
        if kid not in self._kids:
            raise InvalidAccessToken("The access token was signed by an unknown or retired key.")
        try:
            decoded = jwt.decode(token, self._keys, algorithms=VERIFIED_ALGORITHMS)
        except JoseError as exc:
            raise InvalidAccessToken("The access token's signature is not valid.") from exc
        claims = decoded.claims
        # Tokens of earlier releases name the algorithm "EdDSA": accepted only when issued within the period.
        if not accepted(header["alg"], signed_at=_issued_at(claims.get("iat"))):
            raise InvalidAccessToken("The access token is signed under an algorithm name no longer accepted.")
        registry = jwt.JWTClaimsRegistry(
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": api_audience(self._issuer)},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidAccessToken(_claim_problem(exc)) from exc
        try:
            return AccessClaims(
                tenant_id=uuid.UUID(str(claims["tenant_id"])),
                client_id=uuid.UUID(str(claims["client_id"])),
                role=str(claims["role"]),
                scopes=frozenset(str(claims.get("scope", "")).split()),
                jti=str(claims["jti"]),
                issued_at=int(claims["iat"]),
                expires_at=int(claims["exp"]),
            ), str(kid)
        except (KeyError, ValueError) as exc:
            raise InvalidAccessToken("The access token lacks casebridge claims.") from exc


def _issued_at(iat: Any) -> dt.datetime:
    """When a token says it was issued; a missing or impossible `iat` counts as after every deprecation period."""
    try:
        return dt.datetime.fromtimestamp(iat, dt.UTC) if type(iat) is int else _NEVER
    except (ValueError, OverflowError, OSError):
        return _NEVER


_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


_CLAIM_PROBLEMS = {
    "exp": "The access token has expired.",
    "nbf": "The access token is not valid yet.",
    "iat": "The access token was issued in the future.",
    "aud": "The access token is not meant for this API (audience).",
    "iss": "The access token was issued by another server.",
}


def _claim_problem(exc: JoseError) -> str:
    claim = getattr(exc, "claim", "")
    if getattr(exc, "error", "") == "missing_claim":
        return f"The access token lacks the '{claim}' claim."
    return _CLAIM_PROBLEMS.get(claim, "The access token's claims are not valid.")
