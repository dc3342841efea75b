"""C2SP cosignature/v1 co-signatures: the signed message, key ids of type 0x04, exact bytes, the older form."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.checkpoint import (
    Checkpoint,
    CheckpointFormatError,
    CheckpointProblem,
    cosign,
    parse_note,
    sign,
    verifier_key,
    verify,
)
from audit.cosignature import (
    MAX_TIMESTAMP,
    Cosigned,
    cosign_v1,
    cosignature,
    cosigner_verifier_key,
    parse_cosigner_key,
    signed_message,
    verify_cosignature,
)
from audit.merkle import leaf_hash, root_hash

LOG_NAME = "casebridge.example/audit"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
COSIGNER = "casebridge-cosigner/01965f0e-0000-7000-8000-00000000000a"
COSIGNER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
CHECKPOINT = Checkpoint(LOG_NAME, 3, root_hash([leaf_hash(b"event %d" % i) for i in range(3)]))
NOTE = sign(CHECKPOINT, name=LOG_NAME, private_key=LOG_KEY)
TIMESTAMP = 1_679_315_147  # the time of the tlog-cosignature spec's example
# The spec's example co-signature line (https://c2sp.org/tlog-cosignature), made at TIMESTAMP by a witness whose key
# the spec does not give: its layout and time encoding can still be checked against ours.
SPEC_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)
EXPECTED_LINE = (
    "— casebridge-cosigner/01965f0e-0000-7000-8000-00000000000a "
    "2PTbVQAAAABkGFDLBF3e57bMcTp5sS+gnl81mz/iZub1n7JE4crPZWtj5rah6TbWUE/i6eDivZ31SVPL4AHZAh+7wN+Q1o6+ZOXbCQ==\n"
)


def _raw_public() -> bytes:
    return COSIGNER_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_the_signed_message_is_the_header_the_time_and_the_body() -> None:
    assert signed_message(CHECKPOINT.body(), TIMESTAMP) == (
        b"cosignature/v1\ntime 1679315147\n" + CHECKPOINT.body().encode()
    )
    assert signed_message(CHECKPOINT.body(), 0).startswith(b"cosignature/v1\ntime 0\n")
    for wrong in (-1, MAX_TIMESTAMP + 1):
        with pytest.raises(ValueError, match="timestamp"):
            signed_message(CHECKPOINT.body(), wrong)


def test_a_cosignature_line_is_key_id_then_timestamp_then_signature() -> None:
    line = cosignature(CHECKPOINT, name=COSIGNER, private_key=COSIGNER_KEY, timestamp=TIMESTAMP)
    expected_id = hashlib.sha256(COSIGNER.encode() + b"\n\x04" + _raw_public()).digest()[:4]
    assert (line.name, line.key_id) == (COSIGNER, expected_id)
    assert line.signature[:8] == TIMESTAMP.to_bytes(8, "big")
    COSIGNER_KEY.public_key().verify(line.signature[8:], signed_message(CHECKPOINT.body(), TIMESTAMP))
    # Ed25519 is deterministic: the line is fixed byte for byte (an independent verifier, Go's note package, checks
    # ones the witness makes in tests/integration/audit/test_audit_witnessing.py).
    assert line.line() == EXPECTED_LINE
    blob = base64.b64decode(line.line().split(" ")[2])
    spec_blob = base64.b64decode(SPEC_LINE.split(" ")[2])
    assert len(blob) == len(spec_blob) == 4 + 8 + 64
    assert blob[4:12] == spec_blob[4:12] == TIMESTAMP.to_bytes(8, "big")


def test_a_cosigned_note_verifies_with_its_time_and_leaves_the_log_signature_alone() -> None:
    cosigned = cosign_v1(NOTE, name=COSIGNER, private_key=COSIGNER_KEY, timestamp=TIMESTAMP)
    assert cosigned.startswith(NOTE)
    assert verify_cosignature(cosigned, name=COSIGNER, public_key=COSIGNER_KEY.public_key()) == Cosigned(
        CHECKPOINT, TIMESTAMP
    )
    assert verify(cosigned, name=LOG_NAME, public_key=LOG_KEY.public_key()) == CHECKPOINT
    # Not a plain note signature: a verifier of the older form does not take it for one.
    plain = verify(cosigned, name=COSIGNER, public_key=COSIGNER_KEY.public_key())
    assert isinstance(plain, CheckpointProblem)
    assert plain.reason == "no_signature"
    # Co-signing again (a later time) replaces the line instead of adding a second one.
    again = cosign_v1(cosigned, name=COSIGNER, private_key=COSIGNER_KEY, timestamp=TIMESTAMP + 60)
    assert len(parse_note(again).signatures) == 2
    assert verify_cosignature(again, name=COSIGNER, public_key=COSIGNER_KEY.public_key()) == Cosigned(
        CHECKPOINT, TIMESTAMP + 60
    )


def test_the_older_plain_cosignature_stays_verifiable() -> None:
    older = cosign(NOTE, name=COSIGNER, private_key=COSIGNER_KEY)
    assert verify_cosignature(older, name=COSIGNER, public_key=COSIGNER_KEY.public_key()) == Cosigned(CHECKPOINT, None)


def _with_blob(note: str, blob: bytes) -> str:
    body, _, lines = note.partition("\n\n")
    last = lines.splitlines()[-1]
    prefix = last.rsplit(" ", 1)[0]
    return (
        body
        + "\n\n"
        + "".join(line + "\n" for line in lines.splitlines()[:-1])
        + (f"{prefix} {base64.b64encode(blob).decode()}\n")
    )


def test_a_changed_time_body_or_key_does_not_verify() -> None:
    cosigned = cosign_v1(NOTE, name=COSIGNER, private_key=COSIGNER_KEY, timestamp=TIMESTAMP)
    blob = base64.b64decode(cosigned.splitlines()[-1].split(" ")[2])
    later = _with_blob(cosigned, blob[:4] + (TIMESTAMP + 1).to_bytes(8, "big") + blob[12:])
    beyond = _with_blob(cosigned, blob[:4] + (MAX_TIMESTAMP + 1).to_bytes(8, "big") + blob[12:])
    short = _with_blob(cosigned, blob[:-1])
    for broken in (later, beyond, short):
        problem = verify_cosignature(broken, name=COSIGNER, public_key=COSIGNER_KEY.public_key())
        assert problem == CheckpointProblem("bad_signature", "the co-signature by this key does not verify")
    other_tree = cosigned.replace(f"\n{CHECKPOINT.size}\n", "\n4\n", 1)
    assert isinstance(
        verify_cosignature(other_tree, name=COSIGNER, public_key=COSIGNER_KEY.public_key()), CheckpointProblem
    )
    stranger = Ed25519PrivateKey.generate().public_key()
    for text, reason in ((cosigned, "no_signature"), ("not a note", "malformed")):
        problem = verify_cosignature(text, name=COSIGNER, public_key=stranger)
        assert isinstance(problem, CheckpointProblem)
        assert problem.reason == reason


def test_cosigner_verifier_keys_are_type_4_and_older_exports_type_1_still_read() -> None:
    vkey = cosigner_verifier_key(COSIGNER, COSIGNER_KEY.public_key())
    name, hash_hex, key64 = vkey.split("+", 2)
    assert name == COSIGNER
    assert base64.b64decode(key64) == b"\x04" + _raw_public()
    assert bytes.fromhex(hash_hex) == hashlib.sha256(COSIGNER.encode() + b"\n\x04" + _raw_public()).digest()[:4]
    assert parse_cosigner_key(vkey)[0] == COSIGNER
    assert parse_cosigner_key(verifier_key(COSIGNER, COSIGNER_KEY.public_key()))[0] == COSIGNER
    with pytest.raises(CheckpointFormatError):
        parse_cosigner_key(vkey.replace("+", "-", 1))
