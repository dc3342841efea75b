"""The letter's signature: a detached JWS (RFC 7515 Appendix F) over the PDF's SHA-256, format in docs/letters.md."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from exchange.transport.envelopes import signing_public_key
from tenants.algorithms import (
    DEPRECATED_ACCEPTED_UNTIL,
    DEPRECATED_SIGNATURE_ALG,
    SIGNATURE_ALG,
    VERIFIED_ALGORITHMS,
    accepted,
)

LETTER_FORMAT_VERSION: Final = 2  # the version sign_letter() writes
# The tenant's Ed25519 envelope-signing key signs; the algorithm's name is all that differs between the versions.
SIGNATURE_ALG_OF_VERSION: Final = {1: DEPRECATED_SIGNATURE_ALG, 2: SIGNATURE_ALG}
LETTER_JWS_TYPE: Final = "cb-letter+jws"
# The JWS Payload is the 32-byte SHA-256 digest of the PDF; it is left out of the serialization (detached).
HASH_NAME: Final = "sha-256"

_JWS = jws.JWSRegistry(algorithms=VERIFIED_ALGORITHMS, strict_check_header=False)
_JWS.max_header_length = 2048


class Verification(enum.StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class LetterBinding:
    """What the signature binds besides the PDF: which letter, of which referral, from whom, to whom."""

    registration_number: str
    referral_id: uuid.UUID
    sender: uuid.UUID
    recipient: uuid.UUID


@dataclass(frozen=True, slots=True)
class LetterCheck:
    """The verdict on a received letter. `reason` is fixed text for operators, never letter content."""

    verification: Verification
    reason: str | None = None
    kid: str | None = None


def pdf_digest(pdf: bytes) -> bytes:
    return hashlib.sha256(pdf).digest()


def _protected(binding: LetterBinding, kid: str, issued_at: dt.datetime) -> dict[str, Any]:
    return {
        "alg": SIGNATURE_ALG_OF_VERSION[LETTER_FORMAT_VERSION],
        "kid": kid,
        "typ": LETTER_JWS_TYPE,
        "cb.v": LETTER_FORMAT_VERSION,
        "cb.hash": HASH_NAME,
        "cb.reg": binding.registration_number,
        "cb.rid": str(binding.referral_id),
        "cb.from": str(binding.sender),
        "cb.to": str(binding.recipient),
        "cb.iat": int(issued_at.timestamp()),
    }


def sign_letter(pdf: bytes, binding: LetterBinding, *, signing_key: OKPKey, issued_at: dt.datetime) -> str:
    """The detached compact JWS `header..signature` whose (absent) payload is SHA-256(pdf)."""
    if signing_key.curve_name != "Ed25519" or not signing_key.is_private or not signing_key.kid:
        raise ValueError("signing_key must be an Ed25519 private key with a kid")
    token = jws.serialize_compact(
        _protected(binding, signing_key.kid, issued_at), pdf_digest(pdf), signing_key, registry=_JWS
    )
    detached: str = jws.detach_content(token)
    return detached


def _signed_at(iat: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(iat, dt.UTC) if type(iat) is int else None
    except (ValueError, OverflowError, OSError):
        return None


def verify_letter(
    pdf: bytes | None, signature: str | None, binding: LetterBinding, sender_keys: Sequence[Mapping[str, Any]]
) -> LetterCheck:
    """Check a letter against the sender's published signing keys. Bad input is a verdict, never an exception."""
    if not signature:
        return LetterCheck(Verification.MISSING, "the letter carries no signature")
    if pdf is None:
        return LetterCheck(Verification.INVALID, "the letter's PDF is missing or unreadable")
    parts = signature.split(".")
    if len(parts) != 3 or parts[1] != "":
        return LetterCheck(Verification.INVALID, "the signature is not a detached compact JWS")
    try:
        signed = jws.extract_compact(signature.encode("ascii"), payload=pdf_digest(pdf), registry=_JWS)
    except (JoseError, ValueError, UnicodeError):
        return LetterCheck(Verification.INVALID, "the signature cannot be parsed")
    header = signed.protected
    kid, version, signed_at = header.get("kid"), header.get("cb.v"), _signed_at(header.get("cb.iat"))
    if not isinstance(kid, str) or header.get("typ") != LETTER_JWS_TYPE or signed_at is None:
        return LetterCheck(Verification.INVALID, "the signature header is not a casebridge letter header")
    if type(version) is not int or version not in SIGNATURE_ALG_OF_VERSION or header.get("cb.hash") != HASH_NAME:
        return LetterCheck(Verification.INVALID, "unsupported letter format version or hash", kid)
    if header.get("alg") != SIGNATURE_ALG_OF_VERSION[version]:
        return LetterCheck(Verification.INVALID, "the signature header is not a casebridge letter header", kid)
    if not accepted(header["alg"], signed_at=signed_at):
        until = f"{DEPRECATED_ACCEPTED_UNTIL:%Y-%m-%d}"
        return LetterCheck(
            Verification.INVALID,
            f"letter format version {version} is not accepted for letters signed from {until} on",
            kid,
        )
    public_key = signing_public_key(sender_keys, kid)
    if public_key is None:
        return LetterCheck(Verification.INVALID, "signed with a key the sender does not publish", kid)
    try:
        verified = jws.validate_compact(signed, public_key, registry=_JWS)
    except (JoseError, ValueError):
        verified = False
    if not verified:
        return LetterCheck(Verification.INVALID, "the signature does not match the PDF", kid)
    expected = {
        "cb.reg": binding.registration_number,
        "cb.rid": str(binding.referral_id),
        "cb.from": str(binding.sender),
        "cb.to": str(binding.recipient),
    }
    if any(header.get(member) != value for member, value in expected.items()):
        return LetterCheck(Verification.INVALID, "the signature was made for another letter or referral", kid)
    return LetterCheck(Verification.VALID, None, kid)
