"""C2SP tlog-witness add-checkpoint: the request and answer texts, and the witness's rules on its record of a log."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, sign, verifier_key
from audit.cosignature import Cosigned, cosignature, verify_cosignature
from audit.merkle import consistency_proof, leaf_hash, root_hash
from audit.models import AuditWitnessState
from audit.peer_witness import Conflict, PeerLog, Refused, decide
from audit.tlog_witness import (
    MAX_PROOF_LINES,
    AddCheckpoint,
    WitnessFormatError,
    format_add_checkpoint,
    format_cosignatures,
    format_size,
    parse_add_checkpoint,
    parse_cosignatures,
    parse_size,
)

LOG = "node.example/audit"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
LEAVES = [leaf_hash(b"event %d" % i) for i in range(40)]
AGENCY = uuid.UUID("01965f0e-0000-7000-8000-00000000000a")


def _note(size: int, leaves: list[bytes] = LEAVES, key: Ed25519PrivateKey = LOG_KEY) -> str:
    return sign(Checkpoint(LOG, size, root_hash(leaves[:size])), name=LOG, private_key=key)


def _request(old: int, size: int, leaves: list[bytes] = LEAVES) -> AddCheckpoint:
    return parse_add_checkpoint(format_add_checkpoint(old, consistency_proof(leaves, old, size), _note(size, leaves)))


def _state(size: int, leaves: list[bytes] = LEAVES) -> AuditWitnessState:
    return AuditWitnessState(
        log_origin=LOG,
        cosigner_tenant_id=AGENCY,
        size=size,
        root=root_hash(leaves[:size]),
        note=_note(size, leaves),
        updated_at=dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
    )


def test_a_request_is_written_and_read_as_the_spec_shows_it() -> None:
    proof = consistency_proof(LEAVES, 10, 25)
    body = format_add_checkpoint(10, proof, _note(25))
    text = body.decode()
    head, _, note = text.partition("\n\n")
    assert head.split("\n") == ["old 10", *(base64.b64encode(p).decode() for p in proof)]
    assert note == _note(25)

    request = parse_add_checkpoint(body)
    assert (request.old, request.proof, request.note) == (10, tuple(proof), _note(25))
    assert (request.checkpoint.origin, request.checkpoint.size) == (LOG, 25)
    # With no proof, the old size line is followed directly by the blank line.
    assert format_add_checkpoint(0, [], _note(3)).startswith(b"old 0\n\n" + LOG.encode())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "blank line"),
        (b"new 1\n\n" + _note(1).encode(), "'old <size>'"),
        (b"old 01\n\n" + _note(1).encode(), "leading zeros"),
        (b"old +1\n\n" + _note(1).encode(), "decimal"),
        (b"old 2\n\n" + _note(1).encode(), "larger than the checkpoint"),
        (b"old 0\n" + base64.b64encode(bytes(32)) + b"\n\n" + _note(1).encode(), "must be empty"),
        (b"old 1\nAAAA\n\n" + _note(2).encode(), "line 1 is not the base64 of a 32-byte hash"),
        (b"old 1\n\n" + _note(2).encode()[:-1], "malformed"),
        (b"old 1\n\n\xff" + _note(2).encode(), "UTF-8"),
        (b"old 1\n" + b"".join([base64.b64encode(bytes(32)) + b"\n"] * (MAX_PROOF_LINES + 1)) + b"\n", "63 lines"),
        (b"old 1\n" + b"x" * (2 << 20), "larger than any"),
    ],
)
def test_a_malformed_request_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(WitnessFormatError, match=message):
        parse_add_checkpoint(body)


def test_a_proof_longer_than_the_spec_allows_is_never_sent() -> None:
    with pytest.raises(ValueError, match="63"):
        format_add_checkpoint(1, [bytes(32)] * (MAX_PROOF_LINES + 1), _note(2))


def test_the_409_size_and_the_200_signature_lines() -> None:
    assert format_size(20852014) == b"20852014\n"
    assert parse_size(b"20852014\n") == 20852014
    for bad in (b"12", b"012\n", b"-1\n", b"1 \n"):
        with pytest.raises(WitnessFormatError):
            parse_size(bad)

    checkpoint = Checkpoint(LOG, 5, root_hash(LEAVES[:5]))
    agency_key = Ed25519PrivateKey.generate()
    name = f"casebridge-cosigner/{AGENCY}"
    line = cosignature(checkpoint, name=name, private_key=agency_key, timestamp=1_700_000_000)
    body = format_cosignatures([line])
    assert body.decode() == line.line()
    note = parse_cosignatures(body, checkpoint.body())
    assert isinstance(verify_cosignature(note, name=name, public_key=agency_key.public_key()), Cosigned)
    for bad in (b"", b"not a line\n", line.line().encode()[:-1], "\u2014 x !!\n".encode()):
        with pytest.raises(WitnessFormatError):
            parse_cosignatures(bad, checkpoint.body())


def test_a_peer_log_is_read_from_its_published_document() -> None:
    renamed = "node.example:8443/audit"
    document = {
        "origin": renamed,
        "names": [
            {"origin": LOG, "from_size": 1, "verifier_keys": [verifier_key(LOG, LOG_KEY.public_key())]},
            {"origin": renamed, "from_size": 30, "verifier_keys": [verifier_key(renamed, LOG_KEY.public_key())]},
        ],
    }
    log = PeerLog.from_published("node", document)
    assert set(log.keys) == {LOG, renamed}
    assert log.signed(_request(0, 3))
    assert not log.signed(parse_add_checkpoint(_forged(3)))

    wrong_name = {"names": [{"origin": LOG, "verifier_keys": [verifier_key(renamed, LOG_KEY.public_key())]}]}
    for bad in ({}, {"names": []}, {"names": [{"origin": LOG}]}, wrong_name, []):
        with pytest.raises(ValueError, match=r"audit-log|verifier key"):
            PeerLog.from_published("node", bad)


def _forged(size: int) -> bytes:
    return format_add_checkpoint(0, [], _note(size, key=Ed25519PrivateKey.generate()))


def test_the_first_checkpoint_of_a_log_is_taken_from_size_zero() -> None:
    assert decide(_request(0, 7), []) is None
    conflict = decide(_request(3, 7), [])
    assert isinstance(conflict, Conflict)
    assert (conflict.size, conflict.evidence) == (0, False)


def test_a_checkpoint_extending_the_record_is_cosigned_and_a_wrong_guess_gets_the_size() -> None:
    assert decide(_request(10, 25), [_state(10)]) is None
    # The same checkpoint again: nothing new, co-signed again.
    assert decide(_request(10, 10), [_state(10)]) is None
    # The log guessed the witness's size wrong (it restarted): 409 with the size, not evidence of anything.
    conflict = decide(_request(0, 25), [_state(10)])
    assert isinstance(conflict, Conflict)
    assert (conflict.size, conflict.evidence) == (10, False)
    # Several agencies here: the node's record is the largest tree any of them co-signed.
    assert decide(_request(20, 25), [_state(10), _state(20)]) is None


def test_an_old_checkpoint_replayed_or_a_second_history_is_refused_as_evidence() -> None:
    replayed = decide(_request(3, 10), [_state(20)])
    assert isinstance(replayed, Conflict)
    assert (replayed.size, replayed.evidence) == (20, True)

    forked = [*LEAVES[:15], *(leaf_hash(b"rewritten %d" % i) for i in range(25))]
    same_size = decide(_request(20, 20, forked), [_state(20)])
    assert isinstance(same_size, Conflict)
    assert same_size.evidence
    assert "two histories" in same_size.detail

    # A longer tree whose proof (honestly made from the forked leaves) does not lead from the record: 422.
    extended = decide(_request(20, 30, forked), [_state(20)])
    assert isinstance(extended, Refused)
    assert extended.status == 422
    # Nor does a proof of the right length made of other hashes.
    good = _request(20, 30)
    tampered = AddCheckpoint(good.old, (bytes(32), *good.proof[1:]), good.note, good.checkpoint)
    refused = decide(tampered, [_state(20)])
    assert isinstance(refused, Refused)
    assert refused.status == 422
