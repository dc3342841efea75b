"""Witness co-signatures of checkpoints in the C2SP ``cosignature/v1`` form (https://c2sp.org/tlog-cosignature).

A co-signature is a note signature line ``— <cosigner name> <base64(key id || timestamp || signature)>`` on the
checkpoint. The key id is the first 4 bytes of SHA-256(name || "\\n" || 0x04 || Ed25519 public key); the timestamp is
the POSIX time of signing as 8 bytes big-endian; the Ed25519 signature is over ``cosignature/v1\\n``,
``time <timestamp>\\n`` and the checkpoint body. Standard witness tooling (a verifier configured with the
cosigner's name and key) checks these; casebridge's own older co-signatures, plain note signatures with type 0x01
(``audit.checkpoint.cosign``), are still accepted by ``verify_cosignature``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.checkpoint import (
    ED25519_SIGNATURE_SIZE,
    ED25519_TYPE,
    Checkpoint,
    CheckpointFormatError,
    CheckpointProblem,
    NoteSignature,
    add_signature,
    key_id,
    parse_note,
    parse_verifier_key,
    verifier_key,
    verify,
)

__all__ = [
    "COSIGNATURE_TYPE",
    "MAX_TIMESTAMP",
    "Cosigned",
    "cosign_v1",
    "cosignature",
    "cosigner_verifier_key",
    "parse_cosigner_key",
    "signed_message",
    "verify_cosignature",
]

COSIGNATURE_TYPE = b"\x04"
"""tlog-cosignature: the signature type byte of an Ed25519 cosigner key in key ids and verifier keys."""

MAX_TIMESTAMP = (1 << 63) - 1
"""tlog-cosignature: a timestamp must not exceed 2**63 - 1."""

_HEADER = "cosignature/v1\n"
_TIMESTAMP_SIZE = 8


@dataclass(frozen=True, slots=True)
class Cosigned:
    """A co-signature that verified: the checkpoint, and when it was signed (None for the older, untimed form)."""

    checkpoint: Checkpoint
    timestamp: int | None


def signed_message(body: str, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs: the header line, the time line and the checkpoint body."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("a co-signature's timestamp must be from 0 to 2**63 - 1")
    return f"{_HEADER}time {timestamp}\n{body}".encode()


def cosignature(checkpoint: Checkpoint, *, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> NoteSignature:
    """The ``cosignature/v1`` signature line by ``name`` over ``checkpoint`` at ``timestamp`` (POSIX seconds).

    Check the log's signature and the tree's consistency first: this checks nothing. ValueError for an invalid
    name or timestamp."""
    signature = private_key.sign(signed_message(checkpoint.body(), timestamp))
    kid = key_id(name, private_key.public_key(), signature_type=COSIGNATURE_TYPE)
    return NoteSignature(name=name, key_id=kid, signature=timestamp.to_bytes(_TIMESTAMP_SIZE) + signature)


def cosign_v1(note_text: str, *, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """The note with a ``cosignature/v1`` line by ``name`` after its signatures, in place of an earlier one by the
    same name and key. Raises CheckpointFormatError for a malformed note, ValueError as ``cosignature`` does."""
    checkpoint = parse_note(note_text).checkpoint
    return add_signature(note_text, cosignature(checkpoint, name=name, private_key=private_key, timestamp=timestamp))


def verify_cosignature(text: str, *, name: str, public_key: Ed25519PublicKey) -> Cosigned | CheckpointProblem:
    """The checkpoint and time when ``text`` carries a valid co-signature by ``name`` with ``public_key``.

    Accepts a ``cosignature/v1`` line (key id of type 0x04) and the older plain note signature (type 0x01); other
    lines are ignored. A timestamp beyond 2**63 - 1 does not verify. ValueError for an invalid ``name``.
    """
    v1_id = key_id(name, public_key, signature_type=COSIGNATURE_TYPE)
    try:
        note = parse_note(text)
    except CheckpointFormatError as exc:
        return CheckpointProblem(reason="malformed", detail=exc.detail)
    candidates = [s for s in note.signatures if s.name == name and s.key_id == v1_id]
    body = note.checkpoint.body()
    for candidate in candidates:
        if len(candidate.signature) != _TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
            continue
        timestamp = int.from_bytes(candidate.signature[:_TIMESTAMP_SIZE])
        if timestamp > MAX_TIMESTAMP:
            continue
        try:
            public_key.verify(candidate.signature[_TIMESTAMP_SIZE:], signed_message(body, timestamp))
        except InvalidSignature:
            continue
        return Cosigned(note.checkpoint, timestamp)
    plain = verify(text, name=name, public_key=public_key)
    if isinstance(plain, Checkpoint):
        return Cosigned(plain, None)
    if candidates and plain.reason == "no_signature":
        return CheckpointProblem(reason="bad_signature", detail="the co-signature by this key does not verify")
    return plain


def cosigner_verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The cosigner's verifier key ``<name>+<key id hex>+<base64(0x04 || public key)>``."""
    return verifier_key(name, public_key, signature_type=COSIGNATURE_TYPE)


def parse_cosigner_key(text: str) -> tuple[str, Ed25519PublicKey]:
    """The name and key of a cosigner's verifier key, of type 0x04 or (as version 2 exports wrote it) 0x01.
    CheckpointFormatError when it is neither."""
    try:
        return parse_verifier_key(text, signature_type=COSIGNATURE_TYPE)
    except CheckpointFormatError as exc:
        try:
            return parse_verifier_key(text, signature_type=ED25519_TYPE)
        except CheckpointFormatError:
            raise exc from None
