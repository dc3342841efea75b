"""Envelopes: the signed-then-encrypted JOSE messages tenants exchange over the bus (format in docs/envelope.md)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec
from joserfc import jwe, jws

# joserfc 1.x exposes no public way to read a JWE's protected header without decrypting it; this is the parser
# jwe.decrypt_compact itself uses, so peeking and opening validate the token's structure identically.
from joserfc._rfc7516.compact import extract_compact as extract_jwe_compact
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from tenants.algorithms import (
    DEPRECATED_ACCEPTED_UNTIL,
    DEPRECATED_SIGNATURE_ALG,
    SIGNATURE_ALG,
    VERIFIED_ALGORITHMS,
    accepted,
    verification_key,
)

ENVELOPE_VERSION = 2  # the version seal() writes
# The signature algorithm's name is all that differs between the versions a node reads (docs/envelope.md).
SIGNATURE_ALG_OF_VERSION = {1: DEPRECATED_SIGNATURE_ALG, 2: SIGNATURE_ALG}
KEY_MANAGEMENT_ALG = "ECDH-ES+A256KW"  # RFC 7518 §4.6, X25519 keys (RFC 8037 §3.2)
CONTENT_ENCRYPTION_ALG = "A256GCM"  # RFC 7518 §5.3
JWS_TYPE = "cb-envelope+jws"
JWE_TYPE = "cb-envelope+jwe"
# Thread messages carry their attachments inside the body. Two base64 layers make a token about 16/9 of the body,
# so the largest token stays under MAX_TOKEN_BYTES, which the bus's max_payload must allow (checked at startup).
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_TOKEN_BYTES = 8 * 1024 * 1024

_JWS = jws.JWSRegistry(algorithms=VERIFIED_ALGORITHMS, strict_check_header=False)
_JWE = jwe.JWERegistry(algorithms=[KEY_MANAGEMENT_ALG, CONTENT_ENCRYPTION_ALG], strict_check_header=False)
# joserfc's default limits (512-byte JWS header, 64 KiB ciphertext) are tighter than the format allows.
_JWS.max_header_length = _JWE.max_protected_header_length = 2048
_JWS.max_payload_length = MAX_BODY_BYTES * 4 // 3 + 4
_JWE.max_ciphertext_length = MAX_TOKEN_BYTES


class EnvelopeType(StrEnum):
    """What an envelope announces. Append-only: a name is never renamed or reused; a new meaning gets a new name."""

    REFERRAL_REQUESTED = "referral.requested"
    REFERRAL_STATUS = "referral.status"
    REFERRAL_MESSAGE = "referral.message"
    CONSENT_WITHDRAWN = "consent.withdrawn"
    ACCESS_RECEIPT = "access.receipt"
    PLAN_TASK = "plan.task"
    RECEIPT = "receipt"
    REFERRAL_LETTER = "referral.letter"


class RejectReason(StrEnum):
    """Why an envelope was refused, in the order the checks run. Stable values: they are logged and counted."""

    MALFORMED = "malformed"
    WRONG_RECIPIENT = "wrong_recipient"
    UNKNOWN_RECIPIENT_KEY = "unknown_recipient_key"
    DECRYPTION_FAILED = "decryption_failed"
    UNKNOWN_SENDER_KEY = "unknown_sender_key"
    BAD_SIGNATURE = "bad_signature"
    HEADER_MISMATCH = "header_mismatch"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    STALE = "stale"
    FROM_THE_FUTURE = "from_the_future"


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The routing header, carried in clear (but integrity-protected) in both layers. Never personal data."""

    envelope_id: uuid.UUID
    type: EnvelopeType
    sender: uuid.UUID
    recipient: uuid.UUID
    created_at: dt.datetime
    version: int = ENVELOPE_VERSION

    def __post_init__(self) -> None:
        # cb.iat carries whole seconds, so anything finer would not survive a round trip.
        if self.created_at.utcoffset() != dt.timedelta(0) or self.created_at.microsecond:
            raise ValueError("created_at must be an aware UTC datetime with whole seconds")


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """An envelope that passed every check. `signing_kid` names the sender key that signed it; `payload` is the
    signed body's JSON as it arrived, for decoding into its typed body (exchange.transport.bodies)."""

    header: EnvelopeHeader
    body: dict[str, Any]
    signing_kid: str
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class RejectedEnvelope:
    """Why an envelope was refused. `detail` is for operators' logs: fixed text, never body content."""

    reason: RejectReason
    detail: str
    header: EnvelopeHeader | None


def _routing_members(header: EnvelopeHeader) -> dict[str, Any]:
    return {
        "cb.v": header.version,
        "cb.eid": str(header.envelope_id),
        "cb.type": header.type.value,
        "cb.from": str(header.sender),
        "cb.to": str(header.recipient),
        "cb.iat": int(header.created_at.timestamp()),
    }


def seal(header: EnvelopeHeader, body: Mapping[str, Any] | bytes, *, signing_key: OKPKey, recipient_key: OKPKey) -> str:
    """Sign `body` (a JSON object, or its encoding) with the sender's Ed25519 key, then encrypt that JWS to the
    recipient's X25519 key."""
    if header.version != ENVELOPE_VERSION:
        raise ValueError(f"this node writes envelope version {ENVELOPE_VERSION} only")
    if signing_key.curve_name != "Ed25519" or not signing_key.is_private or not signing_key.kid:
        raise ValueError("signing_key must be an Ed25519 private key with a kid")
    if recipient_key.curve_name != "X25519" or not recipient_key.kid:
        raise ValueError("recipient_key must be an X25519 key with a kid")
    payload = body if isinstance(body, bytes) else _json_object(body)
    if len(payload) > MAX_BODY_BYTES:
        raise ValueError(f"an envelope body is limited to {MAX_BODY_BYTES} bytes; attach fewer or smaller documents")
    routing = _routing_members(header)
    inner = {"alg": SIGNATURE_ALG_OF_VERSION[header.version], "kid": signing_key.kid, "typ": JWS_TYPE, "cty": "json"}
    signed = jws.serialize_compact({**inner, **routing}, payload, signing_key, registry=_JWS)
    protected = {
        "alg": KEY_MANAGEMENT_ALG,
        "enc": CONTENT_ENCRYPTION_ALG,
        "kid": recipient_key.kid,
        "typ": JWE_TYPE,
        "cty": "JWT",  # RFC 7519 §5.2: the plaintext is itself a JOSE compact serialization
        **routing,
    }
    return jwe.encrypt_compact(protected, signed, recipient_key, registry=_JWE)


def _json_object(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _is_envelope_header(protected: Any, **expected: str) -> bool:
    """A JSON object with a string kid and the fixed members an envelope layer must have."""
    if not isinstance(protected, dict) or not isinstance(protected.get("kid"), str):
        return False
    return all(protected.get(member) == value for member, value in expected.items())


def _outer_protected(token: str, *, whole: bool = True) -> dict[str, Any] | None:
    """The JWE's protected header if it is a casebridge envelope's. `whole` parses every part of the token (as
    decrypting will); without it only the header is read, which is all routing and deduplication need: a letter's
    envelope is tens of kilobytes of ciphertext, decoded again anyway when it is opened."""
    try:
        if whole:
            protected = extract_jwe_compact(token.encode(), _JWE).protected
        else:
            header, dots = token.partition(".")[0], token.count(".")
            if dots != 4 or len(header) > _JWE.max_protected_header_length * 4 // 3 + 4:
                return None
            protected = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (JoseError, ValueError, binascii.Error):
        return None
    # "zip" is refused: compressing before encrypting leaks the body's content through its length.
    fixed = {"alg": KEY_MANAGEMENT_ALG, "enc": CONTENT_ENCRYPTION_ALG, "typ": JWE_TYPE}
    return protected if _is_envelope_header(protected, **fixed) and "zip" not in protected else None


def _canonical_uuid(value: Any) -> uuid.UUID:
    # One spelling per id, so deduplication by cb.eid cannot be dodged with upper case or braces.
    if not isinstance(value, str) or str(parsed := uuid.UUID(value)) != value:
        raise ValueError("not a canonical UUID")
    return parsed


def _read_routing(protected: Mapping[str, Any]) -> EnvelopeHeader | tuple[RejectReason, str]:
    version, iat = protected.get("cb.v"), protected.get("cb.iat")
    if type(version) is not int:  # bool is an int subclass; JSON true is not a version
        return RejectReason.MALFORMED, "cb.v is missing or not an integer"
    if version not in SIGNATURE_ALG_OF_VERSION:
        return RejectReason.UNSUPPORTED_VERSION, f"envelope version {version} is not supported"
    try:
        if type(iat) is not int:
            raise ValueError("cb.iat is not an integer")
        created_at = dt.datetime.fromtimestamp(iat, dt.UTC)
        ids = [_canonical_uuid(protected.get(m)) for m in ("cb.eid", "cb.from", "cb.to")]
    except (ValueError, OverflowError, OSError):
        return RejectReason.MALFORMED, "a routing member is missing or invalid"
    if not accepted(SIGNATURE_ALG_OF_VERSION[version], signed_at=created_at):
        until = f"{DEPRECATED_ACCEPTED_UNTIL:%Y-%m-%d}"
        return (
            RejectReason.UNSUPPORTED_VERSION,
            f"envelope version {version} is not accepted for envelopes made from {until} on",
        )
    if not isinstance(kind := protected.get("cb.type"), str):
        return RejectReason.MALFORMED, "cb.type is missing or not a string"
    try:
        envelope_type = EnvelopeType(kind)
    except ValueError:
        return RejectReason.UNKNOWN_TYPE, "cb.type is not a known envelope type"
    return EnvelopeHeader(ids[0], envelope_type, ids[1], ids[2], created_at, version)


def peek_header(token: str) -> EnvelopeHeader | None:
    """The routing header, read without decrypting (for routing and deduplication); None unless well formed."""
    protected = _outer_protected(token, whole=False)
    header = None if protected is None else _read_routing(protected)
    return header if isinstance(header, EnvelopeHeader) else None


def signing_public_key(jwks: Sequence[Mapping[str, Any]], kid: str) -> OKPKey | None:
    """The Ed25519 verification key `kid` among a tenant's published keys, or None."""
    for jwk in jwks:
        if jwk.get("kid") == kid and jwk.get("use", "sig") == "sig" and jwk.get("crv") == "Ed25519":
            cached = _IMPORTED.get((kid, str(jwk.get("x"))))
            if cached is not None:
                return cached
            try:
                key = verification_key(jwk)
            except (JoseError, ValueError):
                return None
            if len(_IMPORTED) < 10_000:  # a few keys per tenant; the bound only keeps a flood of kids from growing it
                _IMPORTED[(kid, str(jwk.get("x")))] = key
            return key
    return None


# Public keys already imported, by kid and key material: importing one costs more than verifying with it.
_IMPORTED: dict[tuple[str, str], OKPKey] = {}


def open_envelope(
    token: str,
    *,
    recipient: uuid.UUID,
    decryption_keys: Sequence[OKPKey],
    sender_keys: Callable[[uuid.UUID], Sequence[Mapping[str, Any]]],
    now: dt.datetime,
    max_age: dt.timedelta = dt.timedelta(days=7),
    max_skew: dt.timedelta = dt.timedelta(minutes=5),
    accepted_types: Collection[EnvelopeType] | None = None,
) -> OpenedEnvelope | RejectedEnvelope:
    """Decrypt, verify and check an envelope addressed to `recipient`. Bad input is a rejection, never an exception.

    The checks run in the order docs/envelope.md gives, cheapest and least trusting first.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    outer = _outer_protected(token)
    if outer is None:
        return RejectedEnvelope(RejectReason.MALFORMED, "not a casebridge envelope JWE", None)
    header = _read_routing(outer)
    if not isinstance(header, EnvelopeHeader):
        return RejectedEnvelope(*header, None)

    def reject(reason: RejectReason, detail: str) -> RejectedEnvelope:
        return RejectedEnvelope(reason, detail, header)

    if accepted_types is not None and header.type not in accepted_types:
        return reject(RejectReason.UNKNOWN_TYPE, "this node does not accept envelopes of this type")
    if header.recipient != recipient:
        return reject(RejectReason.WRONG_RECIPIENT, "addressed to another tenant")
    key = next((k for k in decryption_keys if k.kid == outer["kid"]), None)
    if key is None:
        return reject(RejectReason.UNKNOWN_RECIPIENT_KEY, "encrypted to a key that is not usable here")
    try:
        plaintext = jwe.decrypt_compact(token, key, registry=_JWE).plaintext or b""
    except (JoseError, ValueError):
        return reject(RejectReason.DECRYPTION_FAILED, "the ciphertext does not decrypt with the recipient key")
    try:
        signed = jws.extract_compact(plaintext, registry=_JWS)
    except (JoseError, ValueError):
        return reject(RejectReason.MALFORMED, "the decrypted content is not a JWS")
    inner = signed.protected
    if not _is_envelope_header(inner, alg=SIGNATURE_ALG_OF_VERSION[header.version], typ=JWS_TYPE):
        return reject(RejectReason.MALFORMED, "the decrypted content is not an envelope JWS")
    public_key = signing_public_key(sender_keys(header.sender), inner["kid"])
    if public_key is None:
        return reject(RejectReason.UNKNOWN_SENDER_KEY, "signed with a key the sender does not list as usable")
    try:
        verified = jws.validate_compact(signed, public_key, registry=_JWS)
    except (JoseError, ValueError):
        verified = False
    if not verified:
        return reject(RejectReason.BAD_SIGNATURE, "the signature does not verify")
    # The outer header is only bound to the ciphertext, not to the sender: without this, anyone holding a signed
    # body could re-encrypt it to another recipient or under another type.
    if _read_routing(inner) != header:
        return reject(RejectReason.HEADER_MISMATCH, "signed routing members differ from the outer header")
    if header.created_at < now - max_age:
        return reject(RejectReason.STALE, "older than the accepted age")
    if header.created_at > now + max_skew:
        return reject(RejectReason.FROM_THE_FUTURE, "created later than the allowed clock skew")
    try:
        body = msgspec.json.decode(signed.payload)
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        return reject(RejectReason.MALFORMED, "the signed body is not a JSON object")
    return OpenedEnvelope(header, body, inner["kid"], signed.payload)
