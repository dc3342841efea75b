"""Letters as the release before letter format version 2 signed them (cb.v 1, "EdDSA"), for the tests that check
they are still read until the deprecated name's period ends."""

from __future__ import annotations

import datetime as dt

from joserfc import jws
from joserfc.jwk import OKPKey

from exchange.letters.signing import LetterBinding, pdf_digest


def version_1_signature(
    pdf: bytes, binding: LetterBinding, key: OKPKey, issued_at: dt.datetime, **changes: object
) -> str:
    """The detached signature version 1 wrote over `pdf`, its header altered by `changes`."""
    header = {
        "alg": "EdDSA",
        "kid": key.kid,
        "typ": "cb-letter+jws",
        "cb.v": 1,
        "cb.hash": "sha-256",
        "cb.reg": binding.registration_number,
        "cb.rid": str(binding.referral_id),
        "cb.from": str(binding.sender),
        "cb.to": str(binding.recipient),
        "cb.iat": int(issued_at.timestamp()),
        **changes,
    }
    # The key as it is now names its algorithm "Ed25519"; without that name it signs under either.
    either_name = OKPKey.import_key({k: v for k, v in key.as_dict(private=True).items() if k != "alg"})
    registry = jws.JWSRegistry(algorithms=["EdDSA", "Ed25519"], strict_check_header=False)
    return str(jws.detach_content(jws.serialize_compact(header, pdf_digest(pdf), either_name, registry=registry)))
