"""An access token verified once is taken again without a second signature check only while it may be: its key is
still loaded and it has not expired."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from joserfc.jwk import OKPKey

from gateway.auth.tokens import (
    VERIFIED_TOKENS_KEPT,
    AccessTokenVerifier,
    InvalidAccessToken,
    access_token_claims,
    sign_access_token,
)

ISSUER = "https://casebridge.test"


class Keys:
    """The gateway's published token keys, as the verifier loads them."""

    def __init__(self) -> None:
        self.signing = OKPKey.generate_key("Ed25519", parameters={"kid": "token-1"})
        self.published: list[dict[str, Any]] = [self.signing.as_dict(private=False)]

    async def load(self) -> list[dict[str, Any]]:
        return list(self.published)

    def token(self, *, ttl_seconds: int = 300) -> str:
        claims = access_token_claims(
            issuer=ISSUER,
            client_id=str(uuid.uuid4()),
            tenant_id=uuid.uuid4(),
            role="intake",
            scope="referrals:read",
            now=int(time.time()),
            ttl_seconds=ttl_seconds,
        )
        return sign_access_token(claims, self.signing)


@pytest.fixture
async def keys() -> Keys:
    return Keys()


async def _verifier(keys: Keys) -> AccessTokenVerifier:
    verifier = AccessTokenVerifier(issuer=ISSUER, leeway_seconds=0, load_keys=keys.load)
    await verifier.refresh()
    return verifier


async def test_a_token_verified_once_is_accepted_again_with_the_same_claims(keys: Keys) -> None:
    verifier = await _verifier(keys)
    token = keys.token()
    first = await verifier.verify(token)
    assert verifier.remembers(token)
    assert await verifier.verify(token) == first
    # A token altered in its signature is a different token: it is checked, and refused.
    with pytest.raises(InvalidAccessToken):
        await verifier.verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))


async def test_a_remembered_token_stops_working_when_its_key_is_retired(keys: Keys) -> None:
    verifier = await _verifier(keys)
    token = keys.token()
    await verifier.verify(token)
    keys.published = [OKPKey.generate_key("Ed25519", parameters={"kid": "token-2"}).as_dict(private=False)]
    await verifier.refresh()
    with pytest.raises(InvalidAccessToken, match="unknown or retired key"):
        await verifier.verify(token)


async def test_a_remembered_token_stops_working_when_it_expires(keys: Keys) -> None:
    verifier = await _verifier(keys)
    token = keys.token(ttl_seconds=1)
    expires_at = (await verifier.verify(token)).expires_at
    while time.time() <= expires_at:
        time.sleep(0.05)  # noqa: ASYNC251 - the token's own expiry is the clock being waited for
    with pytest.raises(InvalidAccessToken):
        await verifier.verify(token)


async def test_the_verifier_remembers_a_bounded_number_of_tokens(keys: Keys) -> None:
    verifier = await _verifier(keys)
    first = keys.token()
    await verifier.verify(first)
    for _ in range(VERIFIED_TOKENS_KEPT):
        await verifier.verify(keys.token())
    assert verifier.remembered == VERIFIED_TOKENS_KEPT
    assert not verifier.remembers(first)  # the least recently used went first
    await verifier.verify(first)  # and is simply checked again
