"""Audit checkpoints as C2SP tlog-checkpoint bodies in Ed25519 C2SP signed notes, with co-signatures.

Formats: https://c2sp.org/tlog-checkpoint and https://c2sp.org/signed-note. A note is the checkpoint body,
a blank line, then one line per signature: ``— <key name> <base64(4-byte key id || signature)>``. The key id
of an Ed25519 key is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key), and its verifier key
is ``<name>+<key id hex>+<base64(0x01 || public key)>`` — the same encodings as golang.org/x/mod/sumdb/note,
so Go and other C2SP tooling can read and check our checkpoints, and we can read theirs.

Key ids and verifier keys take the signature type as a parameter: 0x01 for these Ed25519 note signatures, 0x04
for the timestamped witness co-signatures of https://c2sp.org/tlog-cosignature (audit/cosignature.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ED25519_SIGNATURE_SIZE",
    "ED25519_TYPE",
    "KEY_ID_SIZE",
    "MAX_NOTE_SIZE",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "CheckpointFormatError",
    "CheckpointProblem",
    "NoteSignature",
    "ProblemReason",
    "SignedNote",
    "add_signature",
    "cosign",
    "cosigner_name",
    "key_id",
    "merge_signatures",
    "name_problem",
    "parse_note",
    "parse_verifier_key",
    "sign",
    "verifier_key",
    "verify",
]

MAX_NOTE_SIZE = 1 << 20
"""Largest signed note accepted, in UTF-8 bytes; anything bigger is refused before it is parsed."""

MAX_TREE_SIZE = (1 << 64) - 1
"""Largest tree size a checkpoint may state (uint64, as in the Go and Rust tlog implementations)."""

HASH_SIZE = 32
KEY_ID_SIZE = 4
ED25519_SIGNATURE_SIZE = 64

ED25519_TYPE = b"\x01"
"""signed-note: the signature type byte of an Ed25519 key in key ids and verifier keys."""
# signed-note: a signature line starts with U+2014 EM DASH and a space.
_SIGNATURE_PREFIX = "\u2014 "
# tlog-checkpoint: the size is ASCII decimal without leading zeros (int() alone would take "+1", "1_0", "١").
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
# signed-note: no ASCII control characters other than newline anywhere in a note.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")

ProblemReason = Literal["malformed", "no_signature", "bad_signature"]


class CheckpointFormatError(ValueError):
    """A signed note or verifier key that does not follow the format; ``detail`` says which rule it broke."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _line_problem(line: str, what: str) -> str | None:
    """Why ``line`` cannot be a checkpoint body line, or None when it can."""
    if not line:
        return f"{what} must not be empty"
    if "\n" in line or _CONTROL.search(line):
        return f"{what} must not contain newlines or control characters"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} must be valid UTF-8"
    return None


def _name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a signed-note key name (non-empty UTF-8, no spaces, no '+'), or None."""
    if not isinstance(name, str) or not name:
        return "key name must be a non-empty string"
    if "+" in name or any(ch.isspace() or ch < " " for ch in name):
        return "key name must not contain spaces, '+' or control characters"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "key name must be valid UTF-8"
    return None


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a signed-note key name, and so the log's origin too (non-empty UTF-8, no spaces, no
    '+'), or None when it can."""
    return _name_problem(name)


def _decode_base64(text: str) -> bytes | None:
    """Standard padded base64, in its one canonical spelling only (so a parsed note re-encodes byte for byte)."""
    if not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _encode_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog-checkpoint body: the log's origin, its tree size and the RFC 6962 root hash at that size."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = _line_problem(self.origin, "origin") if isinstance(self.origin, str) else "origin must be text"
        if problem:
            raise ValueError(problem)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError("size must be an integer from 0 to 2**64 - 1")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise ValueError("root must be 32 bytes")
        if not isinstance(self.extensions, tuple):
            raise ValueError("extensions must be a tuple of lines")
        for line in self.extensions:
            problem = _line_problem(line, "extension line") if isinstance(line, str) else "extension must be text"
            if problem:
                raise ValueError(problem)

    def body(self) -> str:
        """The note text that gets signed: origin, size, base64 root and each extension, one per line."""
        lines = [self.origin, str(self.size), _encode_base64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note: key name, 4-byte key id, and the signature bytes after the key id."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line as it appears in a note, with its newline."""
        return f"{_SIGNATURE_PREFIX}{self.name} {_encode_base64(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A parsed, not yet verified, signed checkpoint: the checkpoint and every signature line in order."""

    checkpoint: Checkpoint
    signatures: list[NoteSignature]


@dataclass(frozen=True, slots=True)
class CheckpointProblem:
    """Why ``verify`` did not accept a note: malformed text, no signature by the key, or one that fails."""

    reason: ProblemReason
    detail: str


def _raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey, *, signature_type: bytes = ED25519_TYPE) -> bytes:
    """First 4 bytes of SHA-256(name || "\\n" || type || raw public key); ValueError for an invalid name."""
    problem = _name_problem(name)
    if problem:
        raise ValueError(problem)
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + signature_type + _raw_public_key(public_key)).digest()
    return digest[:KEY_ID_SIZE]


def verifier_key(name: str, public_key: Ed25519PublicKey, *, signature_type: bytes = ED25519_TYPE) -> str:
    """The signed-note verifier key ``<name>+<key id hex>+<base64(type || public key)>``."""
    kid = key_id(name, public_key, signature_type=signature_type)
    return f"{name}+{kid.hex()}+{_encode_base64(signature_type + _raw_public_key(public_key))}"


def parse_verifier_key(text: str, *, signature_type: bytes = ED25519_TYPE) -> tuple[str, Ed25519PublicKey]:
    """The key name and Ed25519 public key from a verifier key; CheckpointFormatError when any part is wrong.

    Checks the name rules, that the key id is 8 hex digits matching the name and key, that the key is
    of ``signature_type`` (0x01: a note signer's Ed25519 key) with 32 bytes, and that the base64 is canonical.
    """
    if not isinstance(text, str):
        raise CheckpointFormatError("verifier key must be text")
    # The name and key id cannot contain '+'; the base64 key can, so split at most twice.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CheckpointFormatError("verifier key must be <name>+<key id>+<key>")
    name, kid_hex, key64 = parts
    problem = _name_problem(name)
    if problem:
        raise CheckpointFormatError(problem)
    if not _HEX8.fullmatch(kid_hex):
        raise CheckpointFormatError("verifier key id must be 8 hex digits")
    key_data = _decode_base64(key64)
    if key_data is None:
        raise CheckpointFormatError("verifier key is not canonical base64")
    if len(key_data) != 1 + 32 or key_data[:1] != signature_type:
        raise CheckpointFormatError(f"verifier key is not an Ed25519 key of type 0x{signature_type.hex()}")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(key_data[1:])
    except ValueError as exc:
        raise CheckpointFormatError("verifier key is not a valid Ed25519 public key") from exc
    if key_id(name, public_key, signature_type=signature_type) != bytes.fromhex(kid_hex):
        raise CheckpointFormatError("verifier key id does not match its name and key")
    return name, public_key


def _signature_for(body: str, name: str, private_key: Ed25519PrivateKey) -> NoteSignature:
    kid = key_id(name, private_key.public_key())
    return NoteSignature(name=name, key_id=kid, signature=private_key.sign(body.encode("utf-8")))


def sign(checkpoint: Checkpoint, *, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note: the checkpoint body, a blank line and one Ed25519 signature line by ``name``."""
    body = checkpoint.body()
    return body + "\n" + _signature_for(body, name, private_key).line()


def cosign(note_text: str, *, name: str, private_key: Ed25519PrivateKey) -> str:
    """The note with a plain Ed25519 signature by ``name`` over the same body appended after the existing ones.

    This is how agencies' nodes co-signed before they wrote C2SP ``cosignature/v1`` (audit/cosignature.py); such
    co-signatures stay verifiable. An existing signature with the same name and key id is replaced (as
    golang.org/x/mod/sumdb/note does), so co-signing twice changes nothing. This does not check the signatures
    already there: verify the log's signature, and that the tree is consistent with the last one this signer saw,
    before co-signing. Raises CheckpointFormatError for a malformed note and ValueError for an invalid key name.
    """
    note = parse_note(note_text)
    return add_signature(note_text, _signature_for(note.checkpoint.body(), name, private_key))


def add_signature(note_text: str, added: NoteSignature) -> str:
    """The note with ``added`` after its signatures, in place of one with the same name and key id.
    Raises CheckpointFormatError for a malformed note."""
    note = parse_note(note_text)
    kept = [s for s in note.signatures if (s.name, s.key_id) != (added.name, added.key_id)]
    return note.checkpoint.body() + "\n" + "".join(s.line() for s in kept) + added.line()


def cosigner_name(tenant_id: uuid.UUID) -> str:
    """The key name an agency's node co-signs checkpoints under (docs/audit.md)."""
    return f"casebridge-cosigner/{tenant_id}"


def merge_signatures(note_text: str, others: Sequence[str]) -> str:
    """``note_text`` with the signature lines of ``others`` (notes over the same body) appended: one note carrying
    the log's signature and every co-signature. A note over another body is left out.
    Raises CheckpointFormatError for a malformed ``note_text``."""
    note = parse_note(note_text)
    body = note.checkpoint.body()
    lines = [s.line() for s in note.signatures]
    for other in others:
        parsed = parse_note(other)
        if parsed.checkpoint.body() == body:
            lines.extend(s.line() for s in parsed.signatures if s.line() not in lines)
    return body + "\n" + "".join(lines)


def _parse_body(body: str) -> Checkpoint:
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointFormatError("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    problem = _line_problem(origin, "origin")
    if problem:
        raise CheckpointFormatError(problem)
    if not _DECIMAL.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
        raise CheckpointFormatError("tree size must be a decimal integer without leading zeros")
    root = _decode_base64(root_text)
    if root is None or len(root) != HASH_SIZE:
        raise CheckpointFormatError("root hash must be canonical base64 of 32 bytes")
    for line in extensions:
        problem = _line_problem(line, "extension line")
        if problem:
            raise CheckpointFormatError(problem)
    return Checkpoint(origin=origin, size=int(size_text), root=root, extensions=tuple(extensions))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise CheckpointFormatError("signature line must start with an em dash and a space")
    name, space, blob64 = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    problem = _name_problem(name)
    if not space or problem:
        raise CheckpointFormatError(problem or "signature line must be '— <name> <base64>'")
    blob = _decode_base64(blob64)
    if blob is None:
        raise CheckpointFormatError("signature is not canonical base64")
    if len(blob) <= KEY_ID_SIZE:
        raise CheckpointFormatError("signature is too short to hold a key id")
    return NoteSignature(name=name, key_id=blob[:KEY_ID_SIZE], signature=blob[KEY_ID_SIZE:])


def parse_note(text: str) -> SignedNote:
    """Parse a signed checkpoint note without verifying it; CheckpointFormatError says what is malformed.

    Parsing is strict and canonical: re-serialising the result gives back ``text`` exactly. Signatures of
    any type and length are kept (other signers may use other algorithms); ``verify`` checks the one it needs.
    """
    if not isinstance(text, str):
        raise CheckpointFormatError("note must be text")
    # Characters never outnumber UTF-8 bytes, so this refuses oversized input before encoding it.
    if len(text) > MAX_NOTE_SIZE:
        raise CheckpointFormatError("note is larger than 1 MiB")
    try:
        encoded_size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise CheckpointFormatError("note is not valid UTF-8") from exc
    if encoded_size > MAX_NOTE_SIZE:
        raise CheckpointFormatError("note is larger than 1 MiB")
    if _CONTROL.search(text):
        raise CheckpointFormatError("note contains control characters other than newline")
    split = text.rfind("\n\n")
    if split < 0:
        raise CheckpointFormatError("note has no blank line before its signatures")
    body, signature_block = text[: split + 1], text[split + 2 :]
    if not signature_block.endswith("\n"):
        raise CheckpointFormatError("note must end with a signature line and a newline")
    checkpoint = _parse_body(body)
    signatures = [_parse_signature_line(line) for line in signature_block[:-1].split("\n")]
    return SignedNote(checkpoint=checkpoint, signatures=signatures)


def verify(text: str, *, name: str, public_key: Ed25519PublicKey) -> Checkpoint | CheckpointProblem:
    """The checkpoint when ``text`` carries a valid signature by ``name`` with ``public_key``, else the problem.

    Other signatures on the note (co-signers, unknown algorithms) are ignored. The caller still decides
    whether ``checkpoint.origin`` is the log it expects. An invalid ``name`` is a caller error: ValueError.
    """
    expected_id = key_id(name, public_key)
    try:
        note = parse_note(text)
    except CheckpointFormatError as exc:
        return CheckpointProblem(reason="malformed", detail=exc.detail)
    candidates = [s for s in note.signatures if s.name == name and s.key_id == expected_id]
    if not candidates:
        return CheckpointProblem(reason="no_signature", detail="the note has no signature by this key")
    message = note.checkpoint.body().encode("utf-8")
    for candidate in candidates:
        if len(candidate.signature) != ED25519_SIGNATURE_SIZE:
            continue
        try:
            public_key.verify(candidate.signature, message)
        except InvalidSignature:
            continue
        return note.checkpoint
    return CheckpointProblem(reason="bad_signature", detail="the signature by this key does not verify")
