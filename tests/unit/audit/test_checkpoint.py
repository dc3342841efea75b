"""C2SP checkpoints in Ed25519 signed notes: exact bytes, interop vectors, tampering, co-signatures, bad input."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.checkpoint import (
    MAX_NOTE_SIZE,
    Checkpoint,
    CheckpointFormatError,
    CheckpointProblem,
    NoteSignature,
    SignedNote,
    cosign,
    key_id,
    parse_note,
    parse_verifier_key,
    sign,
    verifier_key,
    verify,
)
from audit.merkle import leaf_hash, root_hash

LOG_NAME = "casebridge.example/audit"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TENANT_NAME = "tenant-a.casebridge.example"
TENANT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
ROOT = root_hash([leaf_hash(b"event %d" % i) for i in range(3)])
CHECKPOINT = Checkpoint(LOG_NAME, 3, ROOT)

# Ed25519 is deterministic (RFC 8032), so the note for a fixed key and checkpoint is fixed byte for byte.
EXPECTED_NOTE = (
    "casebridge.example/audit\n"
    "3\n"
    "cuDRdZjUDBQ/FOv7BeLFxN3Wvr8WXzVpRDrEaViH0wI=\n"
    "\n"
    "— casebridge.example/audit "
    "9LV3RJtjqixcDO6iX0AQ+n02nXqfcPKvPmRHbut9T53luspo7OVn5HaxaNXlqwfmFNjCF3/pupf0eBmYaRprzjIQhgo=\n"
)
EXPECTED_COSIGNATURE_LINE = (
    "— tenant-a.casebridge.example "
    "j1Krl74Fw6RxTeNeGpPIJH6qMXad/CC1Xqb7sHlxsbcaf3hM5XPoAtCE25Rv86PefhdrqdI8D9/FWcq1UXbvwLp5Kgg=\n"
)

# golang.org/x/mod/sumdb/note's own test vector (note_test.go): key, key id and a signature over a text.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIGNATURE_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# Real checkpoints published by the Go checksum database (sum.golang.org), signed by its production key.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTES = [
    "go.sum database tree\n63512409\nF7eHRPqN/cqPtqti14NKdGGaI1Giw8coWP3KxihFZbg=\n\n"
    "— sum.golang.org Az3gri1OBHKT87Xj8UXU8zjoHGy/X+7Nl94f8TZkELVaasolmGApUsWqwVG9vE6hgqYb/ph/w2vdkLIVRH7bMB/FPQ4=\n",
    "go.sum database tree\n15368405\n/g9am3I6YWNKaZX/jkne1fqd9zEyjss+JXyPXG0WfkY=\n\n"
    "— sum.golang.org Az3grqJGUaSGukG9p8nI2vKgiFn7qGHxn0W+mrwyI6Gz3F0t1J3LzmWk/p96Ybf295EjwdSwlzgijq5WA9d1Ded7owM=\n",
]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _go_private_key() -> Ed25519PrivateKey:
    encoded = GO_SKEY.split("+", 4)[4]
    seed = base64.b64decode(encoded)
    assert seed[0] == 1
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _log_verify(text: Any) -> Checkpoint | CheckpointProblem:
    return verify(text, name=LOG_NAME, public_key=LOG_KEY.public_key())


def _reason(result: Checkpoint | CheckpointProblem) -> str:
    assert isinstance(result, CheckpointProblem), result
    return result.reason


# --- Checkpoint body ----------------------------------------------------------------------------------------------


def test_body_is_origin_size_root_and_extensions() -> None:
    checkpoint = Checkpoint("example.com/log", 0, b"\x00" * 32, ("ext one", "— looks like a signature"))
    assert checkpoint.body() == (
        "example.com/log\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next one\n— looks like a signature\n"
    )
    assert CHECKPOINT.body() == f"{LOG_NAME}\n3\n{_b64(ROOT)}\n"
    assert Checkpoint("o", 2**64 - 1, ROOT).body().splitlines()[1] == "18446744073709551615"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": ""},
        {"origin": "a\nb"},
        {"origin": "a\tb"},
        {"origin": "a\rb"},
        {"origin": "\ud800"},
        {"origin": b"bytes"},
        {"size": -1},
        {"size": 2**64},
        {"size": True},
        {"size": 1.0},
        {"root": ROOT[:31]},
        {"root": ROOT + b"\x00"},
        {"root": ROOT.hex()},
        {"extensions": ("",)},
        {"extensions": ("ok", "a\nb")},
        {"extensions": ("a\x00",)},
        {"extensions": ["list, not tuple"]},
        {"extensions": (1,)},
    ],
)
def test_checkpoint_rejects_invalid_fields(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"origin": LOG_NAME, "size": 3, "root": ROOT, **kwargs}
    with pytest.raises(ValueError, match="must"):
        Checkpoint(**fields)


# --- Keys ---------------------------------------------------------------------------------------------------------


def test_key_id_and_verifier_key_match_the_go_reference_vector() -> None:
    public_key = _go_private_key().public_key()
    assert key_id("PeterNeumann", public_key) == bytes.fromhex("c74f20a3")
    assert verifier_key("PeterNeumann", public_key) == GO_VKEY
    name, parsed = parse_verifier_key(GO_VKEY)
    assert name == "PeterNeumann"
    assert _raw(parsed) == _raw(public_key)


def test_signature_line_matches_the_go_reference_vector() -> None:
    private_key = _go_private_key()
    signature = NoteSignature(
        name="PeterNeumann",
        key_id=key_id("PeterNeumann", private_key.public_key()),
        signature=private_key.sign(GO_TEXT.encode()),
    )
    assert signature.line() == GO_SIGNATURE_LINE
    # That note is a signed note but not a checkpoint (its second line is not a tree size).
    problem = verify(GO_TEXT + "\n" + GO_SIGNATURE_LINE, name="PeterNeumann", public_key=private_key.public_key())
    assert isinstance(problem, CheckpointProblem)
    assert problem.reason == "malformed"


def test_key_id_is_the_signed_note_ed25519_hash() -> None:
    public_key = LOG_KEY.public_key()
    expected = hashlib.sha256(LOG_NAME.encode() + b"\n\x01" + _raw(public_key)).digest()[:4]
    assert key_id(LOG_NAME, public_key) == expected
    encoded_key = _b64(b"\x01" + _raw(public_key))
    assert verifier_key(LOG_NAME, public_key) == f"{LOG_NAME}+{expected.hex()}+{encoded_key}"


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\there", "nbsp\u00a0", "nl\n", "nul\x00", "\ud800"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        key_id(name, LOG_KEY.public_key())
    with pytest.raises(ValueError, match="key name"):
        sign(CHECKPOINT, name=name, private_key=LOG_KEY)
    with pytest.raises(ValueError, match="key name"):
        verify(EXPECTED_NOTE, name=name, public_key=LOG_KEY.public_key())


@settings(max_examples=50, deadline=None)
@given(
    name=st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="+\x85"), min_size=1
    ),
    seed=st.binary(min_size=32, max_size=32),
)
def test_verifier_key_round_trip(name: str, seed: bytes) -> None:
    public_key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    text = verifier_key(name, public_key)
    parsed_name, parsed_key = parse_verifier_key(text)
    assert parsed_name == name
    assert _raw(parsed_key) == _raw(public_key)


def test_verifier_key_with_plus_in_base64_and_uppercase_key_id() -> None:
    name, public_key = parse_verifier_key(SUMDB_VKEY)
    assert name == "sum.golang.org"
    assert verifier_key(name, public_key) == SUMDB_VKEY
    assert _raw(parse_verifier_key("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")[1]) == _raw(
        parse_verifier_key(GO_VKEY)[1]
    )


def test_every_mangled_verifier_key_is_refused() -> None:
    """The manglings golang.org/x/mod/sumdb/note's TestNewVerifier tries: every proper substring, every +1 char."""
    for i in range(len(GO_VKEY) + 1):
        for j in range(i + 1, len(GO_VKEY) + 1):
            if (i, j) != (0, len(GO_VKEY)):
                with pytest.raises(CheckpointFormatError):
                    parse_verifier_key(GO_VKEY[i:j])
    for i in range(len(GO_VKEY)):
        mangled = GO_VKEY[:i] + chr(ord(GO_VKEY[i]) + 1) + GO_VKEY[i + 1 :]
        with pytest.raises(CheckpointFormatError):
            parse_verifier_key(mangled)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # key id of another key
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX",  # non-canonical trailing bits
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+" + _b64(b"\x02" + bytes(32)),  # not Ed25519
        "PeterNeumann+c74f20a3+" + _b64(b"\x01" + bytes(31)),  # short key
        b"PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys(text: Any) -> None:
    with pytest.raises(CheckpointFormatError) as caught:
        parse_verifier_key(text)
    assert caught.value.detail
    assert isinstance(caught.value, ValueError)


# --- Signing and verifying ----------------------------------------------------------------------------------------


def test_signed_note_is_byte_exact() -> None:
    assert sign(CHECKPOINT, name=LOG_NAME, private_key=LOG_KEY) == EXPECTED_NOTE


def test_signed_note_matches_an_independent_construction() -> None:
    body = f"{LOG_NAME}\n3\n{_b64(ROOT)}\n"
    kid = hashlib.sha256(LOG_NAME.encode() + b"\n\x01" + _raw(LOG_KEY.public_key())).digest()[:4]
    blob = kid + LOG_KEY.sign(body.encode())
    assert f"{body}\n\u2014 {LOG_NAME} {_b64(blob)}\n" == EXPECTED_NOTE
    LOG_KEY.public_key().verify(blob[4:], body.encode())


def test_round_trip() -> None:
    note = parse_note(EXPECTED_NOTE)
    assert note == SignedNote(
        checkpoint=CHECKPOINT,
        signatures=[
            NoteSignature(
                name=LOG_NAME,
                key_id=key_id(LOG_NAME, LOG_KEY.public_key()),
                signature=base64.b64decode(EXPECTED_NOTE.rsplit(" ", 1)[1].strip())[4:],
            )
        ],
    )
    assert _log_verify(EXPECTED_NOTE) == CHECKPOINT
    assert note.checkpoint.body() + "\n" + "".join(s.line() for s in note.signatures) == EXPECTED_NOTE


def test_real_sum_golang_org_checkpoints_verify() -> None:
    name, public_key = parse_verifier_key(SUMDB_VKEY)
    for text in SUMDB_NOTES:
        result = verify(text, name=name, public_key=public_key)
        assert isinstance(result, Checkpoint), result
        assert result.origin == "go.sum database tree"
        assert result.size == int(text.splitlines()[1])
        forged = text.replace(f"\n{result.size}\n", f"\n{result.size + 1}\n")
        assert verify(forged, name=name, public_key=public_key) == CheckpointProblem(
            "bad_signature", "the signature by this key does not verify"
        )
    assert isinstance(_log_verify(SUMDB_NOTES[0]), CheckpointProblem)


def test_changing_any_character_breaks_verification() -> None:
    replacements = {c: "B" if c == "A" else "A" for c in set(EXPECTED_NOTE)}
    replacements["\n"] = " "
    replacements["\u2014"] = "-"
    for i, char in enumerate(EXPECTED_NOTE):
        tampered = EXPECTED_NOTE[:i] + replacements[char] + EXPECTED_NOTE[i + 1 :]
        result = _log_verify(tampered)
        assert isinstance(result, CheckpointProblem), (i, tampered)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda t: t.replace("\n3\n", "\n4\n", 1), "bad_signature"),
        (lambda t: t.replace(LOG_NAME + "\n", "evil.example/audit\n", 1), "bad_signature"),
        (lambda t: t.replace(_b64(ROOT), _b64(hashlib.sha256(b"other").digest())), "bad_signature"),
        (lambda t: t.replace("\n\n", "\nextension\n\n"), "bad_signature"),
        (lambda t: t.replace("\n\n", "\n\n\n"), "malformed"),
        (lambda t: t.replace("\n3\n", "\n03\n"), "malformed"),
        (lambda t: t.replace(f"— {LOG_NAME} ", "— someone.else "), "no_signature"),
        (lambda t: t.replace(f"— {LOG_NAME} 9LV3", f"— {LOG_NAME} 9LV4"), "no_signature"),  # key id bits
        (lambda t: t.replace("hgo=\n", "hgA=\n"), "bad_signature"),  # last signature byte
    ],
)
def test_tampering_gives_the_expected_problem(tamper: Any, reason: str) -> None:
    tampered = tamper(EXPECTED_NOTE)
    assert tampered != EXPECTED_NOTE
    result = _log_verify(tampered)
    assert isinstance(result, CheckpointProblem)
    assert result.reason == reason


def test_other_keys_find_no_signature() -> None:
    other = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    assert _reason(verify(EXPECTED_NOTE, name="someone.else", public_key=other.public_key())) == "no_signature"
    # Same name, wrong key: the key id is derived from the key, so it does not match.
    result = verify(EXPECTED_NOTE, name=LOG_NAME, public_key=other.public_key())
    assert isinstance(result, CheckpointProblem)
    assert result.reason == "no_signature"
    # A log key used under another name does not verify either: the name is part of the key id.
    result = verify(EXPECTED_NOTE, name="other.name", public_key=LOG_KEY.public_key())
    assert isinstance(result, CheckpointProblem)
    assert result.reason == "no_signature"


def test_signature_by_another_key_under_the_right_key_id_is_a_bad_signature() -> None:
    impostor = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    body = CHECKPOINT.body()
    forged_line = NoteSignature(LOG_NAME, key_id(LOG_NAME, LOG_KEY.public_key()), impostor.sign(body.encode())).line()
    assert _reason(_log_verify(body + "\n" + forged_line)) == "bad_signature"
    genuine = LOG_KEY.sign(body.encode())
    for wrong_length in (genuine[:63], genuine + b"\x00", genuine[:1]):
        line = NoteSignature(LOG_NAME, key_id(LOG_NAME, LOG_KEY.public_key()), wrong_length).line()
        assert _reason(_log_verify(body + "\n" + line)) == "bad_signature"


def test_a_junk_line_with_the_same_key_id_does_not_hide_the_real_signature() -> None:
    junk = NoteSignature(LOG_NAME, key_id(LOG_NAME, LOG_KEY.public_key()), b"\x00" * 64).line()
    assert _log_verify(EXPECTED_NOTE + junk) == CHECKPOINT
    body, _, signature = EXPECTED_NOTE.partition("\n\n")
    assert _log_verify(body + "\n\n" + junk + signature) == CHECKPOINT


def test_extensions_survive_signing_and_parsing() -> None:
    checkpoint = Checkpoint(LOG_NAME, 3, ROOT, ("casebridge-format 1", "timestamp 1700000000", "µ ünïcode ✓"))
    text = sign(checkpoint, name=LOG_NAME, private_key=LOG_KEY)
    assert text.startswith(f"{LOG_NAME}\n3\n{_b64(ROOT)}\ncasebridge-format 1\ntimestamp 1700000000\nµ ünïcode ✓\n\n— ")
    assert parse_note(text).checkpoint == checkpoint
    assert _log_verify(text) == checkpoint
    dropped = text.replace("timestamp 1700000000\n", "")
    assert _log_verify(dropped) == CheckpointProblem("bad_signature", "the signature by this key does not verify")


def test_unknown_signature_types_are_kept_and_ignored() -> None:
    # e.g. a C2SP tlog-cosignature/v1 line (key id, 8-byte timestamp, signature): not ours to check.
    foreign = NoteSignature("witness.example", b"\xaa\xbb\xcc\xdd", bytes(72)).line()
    text = EXPECTED_NOTE + foreign
    note = parse_note(text)
    assert note.signatures[1] == NoteSignature("witness.example", b"\xaa\xbb\xcc\xdd", bytes(72))
    assert _log_verify(text) == CHECKPOINT
    assert cosign(text, name=TENANT_NAME, private_key=TENANT_KEY) == text + EXPECTED_COSIGNATURE_LINE


# --- Co-signatures ------------------------------------------------------------------------------------------------


def test_cosignature_is_appended_and_verifies_independently() -> None:
    cosigned = cosign(EXPECTED_NOTE, name=TENANT_NAME, private_key=TENANT_KEY)
    assert cosigned == EXPECTED_NOTE + EXPECTED_COSIGNATURE_LINE
    assert _log_verify(cosigned) == CHECKPOINT
    assert verify(cosigned, name=TENANT_NAME, public_key=TENANT_KEY.public_key()) == CHECKPOINT
    # Each signature stands alone: drop the log's and the tenant's still verifies, and the reverse.
    body = CHECKPOINT.body()
    tenant_only = body + "\n" + EXPECTED_COSIGNATURE_LINE
    assert verify(tenant_only, name=TENANT_NAME, public_key=TENANT_KEY.public_key()) == CHECKPOINT
    assert _reason(_log_verify(tenant_only)) == "no_signature"
    # Breaking one signature leaves the other intact.
    broken_log = cosigned.replace("hgo=\n", "hgA=\n")
    assert _reason(_log_verify(broken_log)) == "bad_signature"
    assert verify(broken_log, name=TENANT_NAME, public_key=TENANT_KEY.public_key()) == CHECKPOINT


def test_cosigning_is_idempotent_and_replaces_a_stale_signature_by_the_same_key() -> None:
    cosigned = cosign(EXPECTED_NOTE, name=TENANT_NAME, private_key=TENANT_KEY)
    assert cosign(cosigned, name=TENANT_NAME, private_key=TENANT_KEY) == cosigned
    # The log re-signing moves its (identical) signature after the co-signature rather than duplicating it.
    resigned = cosign(cosigned, name=LOG_NAME, private_key=LOG_KEY)
    assert resigned == CHECKPOINT.body() + "\n" + EXPECTED_COSIGNATURE_LINE + EXPECTED_NOTE.split("\n\n")[1]
    stale = NoteSignature(TENANT_NAME, key_id(TENANT_NAME, TENANT_KEY.public_key()), bytes(64)).line()
    assert cosign(EXPECTED_NOTE + stale, name=TENANT_NAME, private_key=TENANT_KEY) == cosigned
    # Same name, different key: a separate signer, kept.
    other = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
    twice = cosign(cosigned, name=TENANT_NAME, private_key=other)
    assert len(parse_note(twice).signatures) == 3
    assert verify(twice, name=TENANT_NAME, public_key=other.public_key()) == CHECKPOINT
    assert verify(twice, name=TENANT_NAME, public_key=TENANT_KEY.public_key()) == CHECKPOINT


def test_cosign_refuses_a_malformed_note() -> None:
    with pytest.raises(CheckpointFormatError):
        cosign(CHECKPOINT.body(), name=TENANT_NAME, private_key=TENANT_KEY)


# --- Malformed notes ----------------------------------------------------------------------------------------------

BODY = CHECKPOINT.body()
SIGNATURE_LINE = EXPECTED_NOTE.split("\n\n")[1]
ROOT64 = _b64(ROOT)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(BODY + SIGNATURE_LINE, id="no blank line"),
        pytest.param(EXPECTED_NOTE[:-1], id="no final newline"),
        pytest.param(BODY + "\n", id="no signatures"),
        pytest.param(EXPECTED_NOTE + "\n", id="trailing blank line"),
        pytest.param(EXPECTED_NOTE + "garbage", id="trailing garbage"),
        pytest.param(EXPECTED_NOTE + "garbage\n", id="trailing garbage line"),
        pytest.param(EXPECTED_NOTE.replace("\n", "\r\n"), id="CRLF"),
        pytest.param(EXPECTED_NOTE.replace("\n3\n", "\n3\t\n"), id="tab"),
        pytest.param("\n" + EXPECTED_NOTE, id="empty origin"),
        pytest.param(f"{LOG_NAME}\n3\n\n{SIGNATURE_LINE}", id="two body lines"),
        pytest.param(EXPECTED_NOTE.replace(f"{ROOT64}\n", f"{ROOT64}\n\nextension\n"), id="blank line in body"),
        pytest.param(EXPECTED_NOTE.replace(LOG_NAME + "\n", "\ud800\n", 1), id="lone surrogate"),
        *(
            pytest.param(EXPECTED_NOTE.replace("\n3\n", f"\n{size}\n"), id=f"size {size!r}")
            for size in ("", "+3", "-3", "03", "3.0", "0x3", " 3", "3 ", "3_0", "\u0663", "18446744073709551616")
        ),
        pytest.param(EXPECTED_NOTE.replace(ROOT64, ROOT64[:-1]), id="root base64 unpadded"),
        pytest.param(EXPECTED_NOTE.replace(ROOT64, _b64(ROOT[:31])), id="root 31 bytes"),
        pytest.param(EXPECTED_NOTE.replace(ROOT64, ROOT.hex()), id="root hex"),
        pytest.param(EXPECTED_NOTE.replace(ROOT64, ROOT64[:-2] + "J="), id="root non-canonical base64"),
        pytest.param(EXPECTED_NOTE.replace(ROOT64, ROOT64.replace("/", "_")), id="root urlsafe base64"),
        pytest.param(EXPECTED_NOTE.replace("— ", "- "), id="hyphen for em dash"),
        pytest.param(EXPECTED_NOTE.replace("— ", "—"), id="no space after dash"),
        pytest.param(EXPECTED_NOTE.replace(f"— {LOG_NAME} ", f"— {LOG_NAME}"), id="no space before signature"),
        pytest.param(EXPECTED_NOTE.replace(f"— {LOG_NAME} ", "—  "), id="empty name"),
        pytest.param(EXPECTED_NOTE.replace(f"— {LOG_NAME} ", "— a+b "), id="plus in name"),
        pytest.param(EXPECTED_NOTE.replace("hgo=\n", "hgo= extra\n"), id="extra field"),
        pytest.param(EXPECTED_NOTE.replace("hgo=\n", "hgo\n"), id="signature unpadded"),
        pytest.param(EXPECTED_NOTE.replace("hgo=\n", "hg*=\n"), id="signature bad character"),
        pytest.param(BODY + f"\n— {LOG_NAME} {_b64(b'1234')}\n", id="signature only a key id"),
        pytest.param(BODY + f"\n— {LOG_NAME} \n", id="signature empty"),
        pytest.param(EXPECTED_NOTE + SIGNATURE_LINE.replace("— ", ""), id="second line without dash"),
        pytest.param(b"bytes are not a note", id="bytes"),
    ],
)
def test_malformed_notes(text: Any) -> None:
    with pytest.raises(CheckpointFormatError) as caught:
        parse_note(text)
    assert caught.value.detail
    result = _log_verify(text)
    assert isinstance(result, CheckpointProblem)
    assert result.reason == "malformed"
    assert result.detail == caught.value.detail


def test_notes_over_one_mebibyte_are_refused() -> None:
    def note_with_extension(extension: str) -> str:
        return sign(Checkpoint(LOG_NAME, 3, ROOT, (extension,)), name=LOG_NAME, private_key=LOG_KEY)

    overhead = len(EXPECTED_NOTE.encode()) + 1
    at_limit = note_with_extension("x" * (MAX_NOTE_SIZE - overhead))
    assert len(at_limit.encode()) == MAX_NOTE_SIZE
    assert isinstance(_log_verify(at_limit), Checkpoint)
    over_in_characters = note_with_extension("x" * (MAX_NOTE_SIZE - overhead + 1))
    over_in_bytes = note_with_extension("é" * (MAX_NOTE_SIZE // 2))  # under 1 Mi characters, over 1 MiB of UTF-8
    assert len(over_in_bytes) < MAX_NOTE_SIZE
    for text in (over_in_characters, over_in_bytes, "x" * (MAX_NOTE_SIZE * 4)):
        with pytest.raises(CheckpointFormatError, match="1 MiB"):
            parse_note(text)
        assert _reason(_log_verify(text)) == "malformed"


# --- Properties -----------------------------------------------------------------------------------------------

line_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(
    origin=line_text,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(line_text, max_size=4).map(tuple),
)
def test_property_sign_parse_verify_round_trip(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    checkpoint = Checkpoint(origin, size, root, extensions)
    text = sign(checkpoint, name=LOG_NAME, private_key=LOG_KEY)
    assert parse_note(text).checkpoint == checkpoint
    assert _log_verify(text) == checkpoint
    cosigned = cosign(text, name=TENANT_NAME, private_key=TENANT_KEY)
    assert verify(cosigned, name=TENANT_NAME, public_key=TENANT_KEY.public_key()) == checkpoint


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=300), st.text(st.sampled_from("\n—+ =/aA0x3"), max_size=200)))
def test_property_arbitrary_text_never_raises_from_verify(text: str) -> None:
    result = _log_verify(text)
    assert isinstance(result, CheckpointProblem)
    try:
        parse_note(text)
    except CheckpointFormatError:
        assert result.reason == "malformed"


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, len(EXPECTED_NOTE) - 1), insert=st.text(min_size=1, max_size=3))
def test_property_insertions_break_verification(position: int, insert: str) -> None:
    tampered = EXPECTED_NOTE[:position] + insert + EXPECTED_NOTE[position:]
    if tampered != EXPECTED_NOTE:
        assert isinstance(_log_verify(tampered), CheckpointProblem)
