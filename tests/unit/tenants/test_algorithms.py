"""The JOSE signature names (RFC 9864): which is accepted when, how a key is published, how verifiers import it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from joserfc.jwk import OKPKey

from tenants.algorithms import (
    DEPRECATED_ACCEPTED_UNTIL,
    accepted,
    current_name,
    published_jwk,
    verification_key,
)

UNTIL = DEPRECATED_ACCEPTED_UNTIL
SECOND = dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("alg", "signed_at", "expected"),
    [
        ("Ed25519", UNTIL - SECOND, True),
        ("Ed25519", UNTIL, True),
        ("Ed25519", dt.datetime(9999, 12, 31, tzinfo=dt.UTC), True),
        ("EdDSA", dt.datetime(2020, 1, 1, tzinfo=dt.UTC), True),
        ("EdDSA", UNTIL - SECOND, True),
        ("EdDSA", UNTIL, False),
        ("EdDSA", UNTIL + dt.timedelta(days=400), False),
        ("Ed448", UNTIL - SECOND, False),
        ("ES256", UNTIL - SECOND, False),
        ("none", UNTIL - SECOND, False),
        (None, UNTIL - SECOND, False),
        ("eddsa", UNTIL - SECOND, False),
    ],
)
def test_which_name_is_accepted_when(alg: object, signed_at: dt.datetime, expected: bool) -> None:
    assert accepted(alg, signed_at=signed_at) is expected
    # The same instant written in another zone is the same instant.
    assert accepted(alg, signed_at=signed_at.astimezone(dt.timezone(dt.timedelta(hours=3)))) is expected


def test_the_end_of_the_period_is_the_documented_instant() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs"
    envelopes, letters = (docs / "envelope.md").read_text("utf-8"), (docs / "letters.md").read_text("utf-8")
    assert f"before {DEPRECATED_ACCEPTED_UNTIL:%Y-%m-%dT%H:%M:%SZ}" in envelopes
    assert f"({int(DEPRECATED_ACCEPTED_UNTIL.timestamp())})" in envelopes
    assert f"before {DEPRECATED_ACCEPTED_UNTIL:%Y-%m-%dT%H:%M:%SZ}" in letters


def test_a_time_without_a_zone_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        accepted("EdDSA", signed_at=dt.datetime(2026, 1, 1))


def test_keys_recorded_as_eddsa_sign_as_ed25519_and_other_names_are_left_alone() -> None:
    assert [current_name(a) for a in ("EdDSA", "Ed25519", "ECDH-ES+A256KW")] == ["Ed25519", "Ed25519", "ECDH-ES+A256KW"]


def test_only_the_deprecated_alg_is_left_out_of_a_published_jwk() -> None:
    key = OKPKey.generate_key("Ed25519", {"kid": "k"}).as_dict(private=False)
    recorded = {**key, "alg": "EdDSA", "use": "sig"}
    assert published_jwk(recorded) == {**key, "use": "sig"}
    assert published_jwk({**key, "alg": "Ed25519"}) == {**key, "alg": "Ed25519"}
    encryption = {**OKPKey.generate_key("X25519", {"kid": "e"}).as_dict(private=False), "alg": "ECDH-ES+A256KW"}
    assert published_jwk(encryption) == encryption


def test_a_verifier_imports_an_ed25519_key_whatever_its_alg_says_and_nothing_else() -> None:
    public = OKPKey.generate_key("Ed25519", {"kid": "k"}).as_dict(private=False)
    for alg in ("EdDSA", "Ed25519", None):
        key = verification_key({**public, **({"alg": alg} if alg else {})})
        assert key.alg is None
        assert key.kid == "k"
    with pytest.raises(ValueError, match="Ed25519"):
        verification_key(OKPKey.generate_key("X25519").as_dict(private=False))
    with pytest.raises(ValueError, match="Ed25519"):
        verification_key({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})
