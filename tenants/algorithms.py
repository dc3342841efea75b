"""The JOSE names of casebridge's Ed25519 signatures (RFC 9864): the one it writes, and until when it reads the old one.

Envelopes, letters and access tokens are all signed with Ed25519 keys. RFC 8037 named that algorithm "EdDSA", a
polymorphic name (the key's curve says which EdDSA); RFC 9864 deprecates it for the fully specified "Ed25519". The
signatures are the same bytes under either name. casebridge writes only "Ed25519"; this module is the one place that
says where "EdDSA" is still read, and until when (docs/envelope.md, "Algorithm names").
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping
from typing import Any, Final

from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

SIGNATURE_ALG: Final = "Ed25519"  # RFC 9864 §2.2
DEPRECATED_SIGNATURE_ALG: Final = "EdDSA"  # RFC 8037 §3.1, deprecated by RFC 9864 §2.2
# A signature made before this instant may carry the deprecated name: envelope and letter format version 1 and access
# tokens of earlier releases. One made at or after it must carry "Ed25519". The time is the one the signature itself
# carries (cb.iat, iat), so a letter signed in time stays valid for good.
DEPRECATED_ACCEPTED_UNTIL: Final = dt.datetime(2028, 1, 1, tzinfo=dt.UTC)
# Every name a verifier lets joserfc check; which one a given format or time allows is `accepted`'s decision.
VERIFIED_ALGORITHMS: Final = (SIGNATURE_ALG, DEPRECATED_SIGNATURE_ALG)
# Agency systems sign their client assertions (RFC 7523) with libraries of their own choosing. An Ed25519 key may
# name its algorithm either way, with no end date: the API contract promised "EdDSA", RFC 9864 asks for "Ed25519".
# P-256 keys sign ES256 (RFC 7518 §3.4), already a fully specified name.
CLIENT_ASSERTION_ALGORITHMS: Final = (SIGNATURE_ALG, DEPRECATED_SIGNATURE_ALG, "ES256")

# joserfc warns on every use of "EdDSA". Reading it during the period above is decided here, not an accident, and a
# warning per envelope would bury the log; only that warning is silenced.
warnings.filterwarnings("ignore", message="EdDSA is deprecated via RFC 9864", category=SecurityWarning)


def accepted(alg: object, *, signed_at: dt.datetime) -> bool:
    """Whether a signature named `alg` and made at `signed_at` is acceptable: "Ed25519" always, "EdDSA" only for
    signatures made before DEPRECATED_ACCEPTED_UNTIL."""
    if signed_at.utcoffset() is None:
        raise ValueError("signed_at must be an aware datetime")
    if alg == SIGNATURE_ALG:
        return True
    return alg == DEPRECATED_SIGNATURE_ALG and signed_at < DEPRECATED_ACCEPTED_UNTIL


def current_name(alg: str) -> str:
    """The name a key recorded with `alg` signs under now: "Ed25519" for one recorded as "EdDSA", else `alg`."""
    return SIGNATURE_ALG if alg == DEPRECATED_SIGNATURE_ALG else alg


def published_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """A signing key's public JWK as casebridge publishes it.

    A key made while the name was "EdDSA" was recorded with that `alg`, and it now signs as "Ed25519": it has
    signatures under both names. Its JWK names neither (RFC 7517 §4.4 makes `alg` optional), so a verifier that
    matches a key's `alg` to the JWS header's (Node's jose, joserfc, WebCrypto) finds it for old and new signatures
    alike. Keys made since carry "Ed25519" and sign nothing else.
    """
    return {k: v for k, v in jwk.items() if not (k == "alg" and v == DEPRECATED_SIGNATURE_ALG)}


def verification_key(jwk: Mapping[str, Any]) -> OKPKey:
    """The Ed25519 public key of a published JWK, for casebridge's own verifiers.

    They choose the key by its `kid` and the algorithm by the format and `accepted`, never by the JWK's `alg`: a key
    recorded as "EdDSA" verifies its "Ed25519" signatures too. Raises joserfc's errors or ValueError for a JWK that
    is not an Ed25519 public key.
    """
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("not an Ed25519 public key")
    return OKPKey.import_key({k: v for k, v in jwk.items() if k != "alg"})
