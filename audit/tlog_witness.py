"""The C2SP tlog-witness ``add-checkpoint`` exchange (https://c2sp.org/tlog-witness): its request and answer texts.

A log asks a witness to co-sign a checkpoint by POSTing ``old <size>``, the consistency proof from that size (one
base64 hash a line, at most 63), a blank line and the signed checkpoint note. The witness answers 200 with its
``cosignature/v1`` lines, or with a status whose meaning the spec fixes: 400 malformed, 403 no trusted signature, 404
unknown log, 409 (body: the size it last co-signed, as ``text/x.tlog.size``) when ``old`` is not that size, 422 when the
proof does not verify. Both ends of casebridge's cross-node witnessing use these functions, so what one writes the
other reads; standard witnesses and logs speak the same texts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from audit.checkpoint import (
    MAX_NOTE_SIZE,
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointFormatError,
    NoteSignature,
    parse_note,
)
from audit.merkle import HASH_SIZE

__all__ = [
    "ADD_CHECKPOINT_PATH",
    "MAX_PROOF_LINES",
    "MAX_REQUEST_SIZE",
    "SIZE_MEDIA_TYPE",
    "AddCheckpoint",
    "WitnessFormatError",
    "format_add_checkpoint",
    "format_cosignatures",
    "format_size",
    "parse_add_checkpoint",
    "parse_cosignatures",
    "parse_size",
]

ADD_CHECKPOINT_PATH = "/witness/add-checkpoint"
"""Where casebridge serves the call: its submission prefix is ``<base URL>/witness``."""

MAX_PROOF_LINES = 63
"""tlog-witness: a client MUST NOT send more than 63 consistency proof lines."""

SIZE_MEDIA_TYPE = "text/x.tlog.size"
"""tlog-witness: the Content-Type of a 409 answer, whose body is the witness's size."""

# The old size line ("old " and up to 20 digits), 63 proof lines of 44 base64 characters, the blank line and a note.
MAX_REQUEST_SIZE = 32 + MAX_PROOF_LINES * (44 + 1) + 1 + MAX_NOTE_SIZE
"""Largest request body that can be well formed, in bytes; a witness refuses anything larger unread."""

_SIGNATURE_PREFIX = "\u2014 "


class WitnessFormatError(ValueError):
    """A request or answer text that does not follow tlog-witness; ``detail`` says which rule it broke."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """One add-checkpoint request: the size the log believes the witness is at, the proof from it, and the note."""

    old: int
    proof: tuple[bytes, ...]
    note: str
    checkpoint: Checkpoint  # the note's body, parsed; its signatures are not checked yet


def _decimal(text: str, what: str) -> int:
    # ASCII digits without leading zeros: int() alone would take "+1", "1_0" and other scripts' digits.
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise WitnessFormatError(f"{what} must be a decimal number without leading zeros")
    value = int(text)
    if value > MAX_TREE_SIZE:
        raise WitnessFormatError(f"{what} is larger than any tree")
    return value


def _hash_line(line: str, number: int) -> bytes:
    try:
        raw = base64.b64decode(line, validate=True) if line.isascii() else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode("ascii") != line:
        raise WitnessFormatError(f"consistency proof line {number} is not the base64 of a 32-byte hash")
    return raw


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """The request in ``body``; WitnessFormatError (a 400 answer) when it is not one.

    Checks the framing only: the old size line, at most 63 proof hashes, the blank line, a well-formed checkpoint
    note, and that ``old`` is not beyond the checkpoint's size. Signatures and the proof are the witness's to check.
    """
    if len(body) > MAX_REQUEST_SIZE:
        raise WitnessFormatError("the request is larger than any add-checkpoint request")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessFormatError("the request is not UTF-8 text") from None
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise WitnessFormatError("the request has no blank line between the proof and the checkpoint")
    lines = head.split("\n")
    first, proof_lines = lines[0], lines[1:]
    if not first.startswith("old "):
        raise WitnessFormatError("the request must start with an 'old <size>' line")
    old = _decimal(first[len("old ") :], "the old size")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise WitnessFormatError(f"the consistency proof has more than {MAX_PROOF_LINES} lines")
    proof = tuple(_hash_line(line, number) for number, line in enumerate(proof_lines, 1))
    try:
        checkpoint = parse_note(note).checkpoint
    except CheckpointFormatError as exc:
        raise WitnessFormatError(f"the checkpoint is malformed: {exc.detail}") from None
    if old > checkpoint.size:
        raise WitnessFormatError("the old size is larger than the checkpoint's size")
    if old == 0 and proof:
        raise WitnessFormatError("the consistency proof must be empty when the old size is 0")
    return AddCheckpoint(old=old, proof=proof, note=note, checkpoint=checkpoint)


def format_add_checkpoint(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """The request body asking for a co-signature of ``note``, with the consistency proof from ``old``."""
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError(f"a consistency proof has at most {MAX_PROOF_LINES} hashes")
    lines = [f"old {old}", *(base64.b64encode(node).decode("ascii") for node in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


def format_size(size: int) -> bytes:
    """The body of a 409 answer: the witness's size in decimal and a newline."""
    return f"{size}\n".encode("ascii")


def parse_size(body: bytes) -> int:
    """The witness's size from a 409 answer's body; WitnessFormatError when it is not one."""
    text = body.decode("ascii", errors="replace")
    if not text.endswith("\n"):
        raise WitnessFormatError("the size must end with a newline")
    return _decimal(text[:-1], "the witness's size")


def format_cosignatures(signatures: Sequence[NoteSignature]) -> bytes:
    """The body of a 200 answer: one note signature line per co-signature."""
    return "".join(signature.line() for signature in signatures).encode("utf-8")


def parse_cosignatures(body: bytes, checkpoint_body: str) -> str:
    """The checkpoint note of ``checkpoint_body`` carrying only the signature lines of a 200 answer, ready for
    ``verify_cosignature`` (the spec's "concatenate it to the checkpoint"); WitnessFormatError when the answer is not
    one or more signature lines."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessFormatError("the answer is not UTF-8 text") from None
    if not text or not text.endswith("\n"):
        raise WitnessFormatError("the answer must be signature lines, each ending in a newline")
    if any(not line.startswith(_SIGNATURE_PREFIX) for line in text[:-1].split("\n")):
        raise WitnessFormatError("every line of the answer must be a note signature line")
    try:
        parse_note(checkpoint_body + "\n" + text)
    except CheckpointFormatError as exc:
        raise WitnessFormatError(f"the answer's signature lines are malformed: {exc.detail}") from None
    return checkpoint_body + "\n" + text
