"""RFC 6962 Merkle hashing, proofs and the accumulator, checked against a naive reference written from the RFC."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

# --- A deliberately naive reference: RFC 6962 §2.1 transcribed literally, recursion and all. -----------------
# It uses hashlib directly (not audit.merkle) so the two implementations share nothing but the text of the RFC.


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over raw entries."""
    n = len(entries)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + entries[0])
    k = _k(n)
    return _sha256(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:]))


def ref_path(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 6962 §2.1.1)."""
    n = len(entries)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (RFC 6962 §2.1.2)."""
    n = len(entries)
    if m == n:
        return [] if b else [ref_mth(entries)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, entries[:k], b), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_proof(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return ref_subproof(m, entries, True)


def ref_inclusion_root(m: int, n: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root that PATH(m, D[n]) = ``path`` implies for ``leaf``, read back through the same recursion."""
    if n == 1:
        return leaf if not path else None
    if not path:
        return None
    k = _k(n)
    if m < k:
        left = ref_inclusion_root(m, k, leaf, path[:-1])
        return None if left is None else _sha256(b"\x01" + left + path[-1])
    right = ref_inclusion_root(m - k, n - k, leaf, path[:-1])
    return None if right is None else _sha256(b"\x01" + path[-1] + right)


def ref_verify_inclusion(leaf: bytes, m: int, n: int, path: Sequence[bytes], root: bytes) -> bool:
    return 0 <= m < n and ref_inclusion_root(m, n, leaf, path) == root


def _ref_consistency_roots(
    m: int, n: int, proof: Sequence[bytes], b: bool, old_root: bytes
) -> tuple[bytes, bytes] | None:
    """(old subtree hash, new subtree hash) implied by SUBPROOF(m, D[n], b) = ``proof``."""
    if m == n:
        if b:
            return (old_root, old_root) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = _k(n)
    if m <= k:
        inner = _ref_consistency_roots(m, k, proof[:-1], b, old_root)
        return None if inner is None else (inner[0], _sha256(b"\x01" + inner[1] + proof[-1]))
    inner = _ref_consistency_roots(m - k, n - k, proof[:-1], False, old_root)
    if inner is None:
        return None
    return _sha256(b"\x01" + proof[-1] + inner[0]), _sha256(b"\x01" + proof[-1] + inner[1])


def ref_verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    if not 0 <= m <= n:
        return False
    if m == 0:
        return not proof and old_root == _sha256(b"") and (n > 0 or new_root == old_root)
    roots = _ref_consistency_roots(m, n, proof, True, old_root)
    return roots == (old_root, new_root)


# --- Test data ------------------------------------------------------------------------------------------------

# The Certificate Transparency test tree (RFC 6962 implementations' shared known answers).
CT_ENTRIES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")] + [
    bytes.fromhex("606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

MAX_REF_SIZE = 70
MAX_VERIFY_SIZE = 40
ENTRIES = CT_ENTRIES + [f"audit-event-{i}".encode() for i in range(len(CT_ENTRIES), 300)]
LEAVES = [_sha256(b"\x00" + e) for e in ENTRIES]


@cache
def ref_root(n: int) -> bytes:
    return ref_mth(ENTRIES[:n])


def _flip(value: bytes, bit: int = 0) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


def _tampered_proofs(proof: list[bytes]) -> Iterator[list[bytes]]:
    """Every element with a flipped bit, every element dropped, one element added, neighbours swapped."""
    for i in range(len(proof)):
        yield [*proof[:i], _flip(proof[i], i % 8), *proof[i + 1 :]]
        yield [*proof[:i], *proof[i + 1 :]]
    yield [*proof, proof[-1] if proof else EMPTY_ROOT]
    yield [EMPTY_ROOT, *proof]
    for i in range(len(proof) - 1):
        if proof[i] != proof[i + 1]:
            yield [*proof[:i], proof[i + 1], proof[i], *proof[i + 2 :]]


# --- Primitives and roots ---------------------------------------------------------------------------------------


def test_hash_primitives_follow_rfc_6962() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)
    # Domain separation: a leaf whose data looks like two child hashes does not hash like the node.
    assert leaf_hash(left + right) != node_hash(left, right)


def test_certificate_transparency_known_answers() -> None:
    leaves = [leaf_hash(e) for e in CT_ENTRIES]
    assert root_hash([]) == EMPTY_ROOT
    for n, expected in enumerate(CT_ROOTS, start=1):
        assert root_hash(leaves[:n]) == expected
        assert ref_mth(CT_ENTRIES[:n]) == expected  # the reference itself agrees with CT
    h = bytes.fromhex
    assert inclusion_proof(leaves, 5, 8) == [
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ]
    assert inclusion_proof(leaves, 2, 3) == [CT_ROOTS[1]]
    assert consistency_proof(leaves, 6, 8) == [
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ]
    assert consistency_proof(leaves, 2, 5) == [
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ]


@pytest.mark.parametrize("n", range(MAX_REF_SIZE + 1))
def test_root_and_every_proof_match_the_reference(n: int) -> None:
    assert root_hash(LEAVES[:n]) == ref_root(n)
    # Passing a longer list with an explicit size must be the same as passing exactly `size` leaves.
    for m in range(n):
        expected = ref_path(m, ENTRIES[:n])
        assert inclusion_proof(LEAVES[:n], m) == expected
        assert inclusion_proof(LEAVES, m, n) == expected
    for m in range(1, n):
        assert consistency_proof(LEAVES, m, n) == ref_proof(m, ENTRIES[:n])
    assert consistency_proof(LEAVES, 0, n) == []
    assert consistency_proof(LEAVES, n, n) == []


# --- Inclusion verification -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, MAX_VERIFY_SIZE + 1))
def test_every_inclusion_proof_verifies_and_tampering_fails(n: int) -> None:
    root = ref_root(n)
    for m in range(n):
        proof = inclusion_proof(LEAVES, m, n)
        assert verify_inclusion(LEAVES[m], m, n, proof, root)
        # tampered leaf, root and index
        assert not verify_inclusion(_flip(LEAVES[m]), m, n, proof, root)
        assert not verify_inclusion(LEAVES[m], m, n, proof, _flip(root, 7))
        assert not verify_inclusion(LEAVES[m + 1], m, n, proof, root)
        for other in range(n + 2):
            if other != m:
                assert not verify_inclusion(LEAVES[m], other, n, proof, root)
        for bad in _tampered_proofs(proof):
            assert not verify_inclusion(LEAVES[m], m, n, bad, root)
        # Sizes out of range always fail.
        for size in (0, m, -1):
            assert not verify_inclusion(LEAVES[m], m, size, proof, root)
        # A proof binds the size only through the root (the signed checkpoint binds them together): a wrong size
        # verifies exactly when it gives the tree the same shape along this path, as the RFC recursion says.
        for size in range(m + 1, 2 * n + 2):
            if size != n:
                expected = ref_verify_inclusion(LEAVES[m], m, size, proof, root)
                assert verify_inclusion(LEAVES[m], m, size, proof, root) is expected
                if len(ref_path(m, ENTRIES[:size])) != len(proof):
                    assert expected is False


def test_inclusion_proof_never_verifies_against_another_checkpoint() -> None:
    """What a verifier actually holds is a signed (size, root) pair; a proof for one never passes for another."""
    for n in range(1, MAX_VERIFY_SIZE + 1):
        for m in range(n):
            proof = inclusion_proof(LEAVES, m, n)
            for size in range(m + 1, 2 * n + 2):
                if size != n:
                    assert not verify_inclusion(LEAVES[m], m, size, proof, ref_root(size))
    # The RFC's own illustration of the size allowance: leaf 0 of 3 has the same path shape in a tree of 4,
    # so only the root (which the checkpoint signs together with the size) tells the two claims apart.
    assert verify_inclusion(LEAVES[0], 0, 4, inclusion_proof(LEAVES, 0, 3), ref_root(3))
    assert not verify_inclusion(LEAVES[0], 0, 4, inclusion_proof(LEAVES, 0, 3), ref_root(4))


@pytest.mark.parametrize(
    "args",
    [
        (b"short", 0, 1, [], EMPTY_ROOT),
        (LEAVES[0], 0, 1, [], b"short"),
        (LEAVES[0], -1, 1, [], LEAVES[0]),
        (LEAVES[0], 0, -1, [], LEAVES[0]),
        (LEAVES[0], 1, 1, [], LEAVES[0]),
        (LEAVES[0], 0, 0, [], LEAVES[0]),
        (LEAVES[0], True, 2, [LEAVES[1]], LEAVES[0]),
        (LEAVES[0], 0, 2, [b"\x00" * 31], LEAVES[0]),
        (LEAVES[0], 0, 2, [None], LEAVES[0]),
        (LEAVES[0], 0, 2, None, LEAVES[0]),
        (LEAVES[0], 0, 2, [LEAVES[1]] * 1000, LEAVES[0]),
        (LEAVES[0], 0, 2**80, [LEAVES[1]] * 81, LEAVES[0]),
        (LEAVES[0], "0", 2, [LEAVES[1]], LEAVES[0]),
        (bytearray(LEAVES[0]), 0, 1, [], LEAVES[0]),
    ],
)
def test_malformed_inclusion_input_is_false_not_an_error(args: tuple[Any, ...]) -> None:
    assert verify_inclusion(*args) is False


def test_single_leaf_tree_inclusion() -> None:
    assert inclusion_proof(LEAVES[:1], 0) == []
    assert verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[0])
    assert not verify_inclusion(LEAVES[0], 0, 1, [LEAVES[1]], LEAVES[0])


# --- Consistency verification -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, MAX_VERIFY_SIZE + 1))
def test_every_consistency_proof_verifies_and_tampering_fails(n: int) -> None:
    new_root = ref_root(n)
    for m in range(n + 1):
        old_root = ref_root(m)
        proof = consistency_proof(LEAVES, m, n)
        assert verify_consistency(m, n, old_root, new_root, proof)
        assert not verify_consistency(m, n, _flip(old_root), new_root, proof)
        # Every tree extends the empty one, so from size 0 there is nothing about the new root to check.
        assert verify_consistency(m, n, old_root, _flip(new_root, 3), proof) is (m == 0)
        assert verify_consistency(m, n, new_root, old_root, proof) is (m == n)
        if m not in (0, n):
            for bad in _tampered_proofs(proof):
                assert not verify_consistency(m, n, old_root, new_root, bad)
        else:
            assert not verify_consistency(m, n, old_root, new_root, [EMPTY_ROOT])
        # Nearby wrong sizes: same answer as the RFC recursion read backwards, which for distinct leaves
        # means a wrong size fails unless it yields the same tree shapes along the proof.
        for old in range(max(0, m - 3), m + 4):
            for new in range(max(old, n - 3), n + 4):
                if (old, new) != (m, n):
                    expected = ref_verify_consistency(old, new, old_root, new_root, proof)
                    assert verify_consistency(old, new, old_root, new_root, proof) is expected
        assert not verify_consistency(n + 1, n, old_root, new_root, proof)


FORK_LEAVES = [leaf_hash(b"forked " + e) for e in ENTRIES]


def test_consistency_proof_from_a_forked_log_fails() -> None:
    """The attack consistency proofs exist for: a log that rewrote history after the old checkpoint."""
    for n in range(2, MAX_VERIFY_SIZE + 1):
        for fork_at in range(n):
            forked = LEAVES[:fork_at] + FORK_LEAVES[fork_at:n]
            forked_root = root_hash(forked)
            for m in range(max(1, fork_at + 1), n):
                proof = consistency_proof(forked, m, n)
                assert not verify_consistency(m, n, ref_root(m), forked_root, proof)
                honest = consistency_proof(LEAVES, m, n)
                assert not verify_consistency(m, n, ref_root(m), forked_root, honest)
            for m in range(1, fork_at + 1):
                # History up to the fork is shared, so these really are consistent.
                assert verify_consistency(m, n, ref_root(m), forked_root, consistency_proof(forked, m, n))


def test_consistency_edge_cases() -> None:
    root5 = ref_root(5)
    assert verify_consistency(5, 5, root5, root5, [])
    assert not verify_consistency(5, 5, root5, ref_root(4), [])
    assert verify_consistency(0, 5, EMPTY_ROOT, root5, [])
    assert not verify_consistency(0, 5, root5, root5, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    # old size a power of two: the proof leaves out the old root, which the verifier supplies
    assert consistency_proof(LEAVES, 4, 8) == [ref_mth(ENTRIES[4:8])]
    assert verify_consistency(4, 8, ref_root(4), ref_root(8), [ref_mth(ENTRIES[4:8])])
    # a non-empty old tree is never proven consistent by an empty proof
    assert not verify_consistency(3, 5, ref_root(3), root5, [])


@pytest.mark.parametrize(
    "args",
    [
        (-1, 2, EMPTY_ROOT, EMPTY_ROOT, []),
        (1, -2, EMPTY_ROOT, EMPTY_ROOT, []),
        (3, 2, LEAVES[0], LEAVES[0], [LEAVES[1]]),
        (1, 2, b"x", LEAVES[0], [LEAVES[1]]),
        (1, 2, LEAVES[0], b"x" * 33, [LEAVES[1]]),
        (1, 2, LEAVES[0], LEAVES[0], [b"x"]),
        (1, 2, LEAVES[0], LEAVES[0], [None]),
        (1, 2, LEAVES[0], LEAVES[0], None),
        (1, 2**70, LEAVES[0], LEAVES[0], [LEAVES[1]] * 200),
        (1.0, 2, LEAVES[0], LEAVES[0], [LEAVES[1]]),
        (False, True, EMPTY_ROOT, EMPTY_ROOT, []),
    ],
)
def test_malformed_consistency_input_is_false_not_an_error(args: tuple[Any, ...]) -> None:
    assert verify_consistency(*args) is False


# --- Proof generation errors and cost -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "size"), [(-1, None), (3, None), (3, 3), (0, 0), (0, 4), (0, -1), (5, 4), (True, None)]
)
def test_inclusion_proof_rejects_bad_index_or_size(index: Any, size: Any) -> None:
    with pytest.raises(ValueError, match="must be"):
        inclusion_proof(LEAVES[:3], index, size)


@pytest.mark.parametrize(("old", "new"), [(-1, 2), (3, 2), (0, 4), (2, -1), (4, 4)])
def test_consistency_proof_rejects_bad_sizes(old: int, new: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        consistency_proof(LEAVES[:3], old, new)


def test_malformed_leaf_hashes_are_rejected() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        root_hash([LEAVES[0], b"short"])
    with pytest.raises(ValueError, match="32 bytes"):
        inclusion_proof([LEAVES[0], b"short"], 0)


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    calls = 0
    real = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        nonlocal calls
        calls += 1
        return real(data)

    monkeypatch.setattr(hashlib, "sha256", counting)
    return lambda: calls


@pytest.mark.parametrize("n", [1000, 1024, 1025])
def test_proof_generation_hashes_each_subtree_once(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    leaves = LEAVES[:1] * n
    counter = _count_hashes(monkeypatch)
    before = counter()
    for index in (0, n // 3, n - 1):
        inclusion_proof(leaves, index)
        assert counter() - before < n
        before = counter()
    for old in (1, n // 2, n - 1):
        consistency_proof(leaves, old, n)
        assert counter() - before < n
        before = counter()
    root_hash(leaves)
    assert counter() - before == n - 1


def test_accumulator_append_is_amortised_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    accumulator = MerkleAccumulator()
    counter = _count_hashes(monkeypatch)
    for leaf in LEAVES[:256]:
        accumulator.append(leaf)
    assert counter() == 255  # one node hash per merge: n - 1 for n leaves
    accumulator.root()
    assert counter() - 255 <= 8


# --- Accumulator ------------------------------------------------------------------------------------------------


def test_accumulator_matches_root_hash_for_every_size() -> None:
    accumulator = MerkleAccumulator()
    assert accumulator.size == 0
    assert accumulator.root() == EMPTY_ROOT
    assert accumulator.state() == []
    for n, leaf in enumerate(LEAVES, start=1):
        accumulator.append(leaf)
        assert accumulator.size == n
        assert accumulator.root() == root_hash(LEAVES[:n])
        assert len(accumulator.state()) == n.bit_count()
    assert accumulator.root() == ref_root(len(LEAVES))


def test_accumulator_resumes_from_saved_state_at_every_size() -> None:
    accumulator = MerkleAccumulator()
    for n in range(len(LEAVES) + 1):
        resumed = MerkleAccumulator.from_state(accumulator.size, accumulator.state())
        assert resumed.size == n
        assert resumed.root() == accumulator.root() == root_hash(LEAVES[:n])
        resumed.extend(LEAVES[n : n + 7])
        end = min(n + 7, len(LEAVES))
        assert resumed.root() == root_hash(LEAVES[:end])
        if n < len(LEAVES):
            accumulator.append(LEAVES[n])


@pytest.mark.parametrize(
    "cuts", [(0, 3000), (0, 1, 1023, 1025, 3000), (0, 5, 2048, 2049, 2050, 3000), (0, 1024, 3000), (0, 2, 2)]
)
def test_accumulator_extend_in_blocks_matches_appending_leaf_by_leaf(cuts: tuple[int, ...]) -> None:
    leaves = [hashlib.sha256(n.to_bytes(4, "big")).digest() for n in range(cuts[-1])]
    extended, appended = MerkleAccumulator(), MerkleAccumulator()
    for start, end in itertools.pairwise(cuts):
        extended.extend(leaves[start:end])
        for leaf in leaves[start:end]:
            appended.append(leaf)
        assert (extended.size, extended.state()) == (appended.size, appended.state())
        assert extended.root() == root_hash(leaves[:end])


def test_accumulator_extend_rejects_a_bad_leaf_in_a_block() -> None:
    leaves = [hashlib.sha256(n.to_bytes(4, "big")).digest() for n in range(1024)]
    leaves[700] = b"entry, not its hash"
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleAccumulator().extend(leaves)


def test_accumulator_state_is_a_copy() -> None:
    accumulator = MerkleAccumulator()
    accumulator.extend(LEAVES[:3])
    state = accumulator.state()
    state.clear()
    assert accumulator.root() == root_hash(LEAVES[:3])


@pytest.mark.parametrize(
    ("size", "hashes"),
    [
        (-1, []),
        (1, []),
        (3, [LEAVES[0]]),
        (2, [LEAVES[0], LEAVES[1]]),
        (1, [b"short"]),
        (0, [LEAVES[0]]),
    ],
)
def test_accumulator_rejects_inconsistent_state(size: int, hashes: list[bytes]) -> None:
    with pytest.raises(ValueError, match="must"):
        MerkleAccumulator.from_state(size, hashes)


def test_accumulator_rejects_bad_leaf() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleAccumulator().append(b"entry, not its hash")


# --- Properties -------------------------------------------------------------------------------------------------

entry_lists = st.lists(st.binary(max_size=24), min_size=1, max_size=160)


@settings(max_examples=150, deadline=None)
@given(entries=entry_lists, data=st.data())
def test_property_inclusion_proofs_verify(entries: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(e) for e in entries]
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = root_hash(leaves[:size])
    proof = inclusion_proof(leaves, index, size)
    assert verify_inclusion(leaves[index], index, size, proof, root)
    assert proof == ref_path(index, entries[:size])
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        bit = data.draw(st.integers(0, 255), label="bit")
        tampered = list(proof)
        element = bytearray(tampered[position])
        element[bit // 8] ^= 1 << (bit % 8)
        tampered[position] = bytes(element)
        assert not verify_inclusion(leaves[index], index, size, tampered, root)


@settings(max_examples=150, deadline=None)
@given(entries=entry_lists, data=st.data())
def test_property_consistency_proofs_verify(entries: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(e) for e in entries]
    new_size = data.draw(st.integers(0, len(leaves)), label="new_size")
    old_size = data.draw(st.integers(0, new_size), label="old_size")
    old_root, new_root = root_hash(leaves[:old_size]), root_hash(leaves[:new_size])
    proof = consistency_proof(leaves, old_size, new_size)
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)
    if 0 < old_size < new_size:
        assert proof == ref_proof(old_size, entries[:new_size])
        if len(set(entries[:new_size])) == new_size:
            assert not verify_consistency(old_size, new_size, root_hash(leaves[1 : old_size + 1]), new_root, proof)


@settings(max_examples=100, deadline=None)
@given(entries=entry_lists, cut=st.integers(0, 200))
def test_property_accumulator_agrees_with_root_hash(entries: list[bytes], cut: int) -> None:
    leaves = [leaf_hash(e) for e in entries]
    cut = min(cut, len(leaves))
    first = MerkleAccumulator()
    first.extend(leaves[:cut])
    resumed = MerkleAccumulator.from_state(first.size, first.state())
    resumed.extend(leaves[cut:])
    assert resumed.size == len(leaves)
    assert resumed.root() == root_hash(leaves)


hash_or_junk = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.none(), st.integers())
any_int = st.one_of(st.integers(-5, 70), st.integers(), st.booleans(), st.none())


@settings(max_examples=300, deadline=None)
@given(leaf=hash_or_junk, index=any_int, size=any_int, proof=st.lists(hash_or_junk, max_size=10), root=hash_or_junk)
def test_property_verify_inclusion_never_raises(leaf: Any, index: Any, size: Any, proof: Any, root: Any) -> None:
    assert verify_inclusion(leaf, index, size, proof, root) in (True, False)


@settings(max_examples=300, deadline=None)
@given(
    old=any_int, new=any_int, old_root=hash_or_junk, new_root=hash_or_junk, proof=st.lists(hash_or_junk, max_size=10)
)
def test_property_verify_consistency_never_raises(old: Any, new: Any, old_root: Any, new_root: Any, proof: Any) -> None:
    assert verify_consistency(old, new, old_root, new_root, proof) in (True, False)
