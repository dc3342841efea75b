"""Verification of the sealed log: a clean log passes, and each kind of tampering is named for what it is."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, cosign, sign, verifier_key
from audit.export import ExportError, read_export, write_export
from audit.merkle import EMPTY_ROOT, root_hash
from audit.verify import (
    ZERO_HASH,
    LogScan,
    ProblemKind,
    SealedEvent,
    UnsealedEvent,
    VerifyResult,
    check_notes,
    verify_log,
    verify_rows,
)
from tests.unit.audit.sealed_logs import (
    CHECKPOINT_SIZES,
    EVENTS,
    LOG_KEY,
    ORIGIN,
    OTHER_KEY,
    SIZE,
    START,
    canonical_event,
    checkpoint_notes,
    seal,
)

NOTES = checkpoint_notes(EVENTS)


def check(
    events: list[SealedEvent],
    notes: list[str] | None = None,
    *,
    unsealed: tuple[UnsealedEvent, ...] = (),
    keys: tuple[Ed25519PrivateKey, ...] = (LOG_KEY,),
) -> VerifyResult:
    return verify_log(
        events,
        NOTES if notes is None else notes,
        origin=ORIGIN,
        public_keys=[k.public_key() for k in keys],
        unsealed=unsealed,
    )


def kinds(result: VerifyResult) -> list[tuple[ProblemKind, int | None]]:
    return [(p.kind, p.seq) for p in result.problems]


def at(seq: int) -> int:
    return seq - 1


def test_a_clean_log_verifies() -> None:
    result = check(EVENTS)
    assert result.ok
    assert result.problems == []
    assert result.size == SIZE
    assert result.root == root_hash([e.leaf_hash for e in EVENTS])
    assert result.checkpoints == len(CHECKPOINT_SIZES)
    assert result.to_json() == {
        "ok": True,
        "size": SIZE,
        "root": result.root.hex(),
        "problems": [],
        "pending": 0,
        "checkpoints": 3,
    }


def test_an_empty_log_verifies() -> None:
    result = check([], [])
    assert (result.ok, result.size, result.root) == (True, 0, EMPTY_ROOT)


def test_a_log_with_no_checkpoint_yet_verifies() -> None:
    assert check(EVENTS, []).ok


@pytest.mark.parametrize("seq", range(1, SIZE + 1))
def test_one_changed_byte_in_any_event_is_changed_at_that_seq(seq: int) -> None:
    events = list(EVENTS)
    text = events[at(seq)].canonical
    assert text is not None
    position = text.index("social_support")
    events[at(seq)] = dataclasses.replace(events[at(seq)], canonical=text[:position] + "S" + text[position + 1 :])
    result = check(events)
    assert not result.ok
    assert kinds(result) == [(ProblemKind.CHANGED, seq)]
    assert str(events[at(seq)].event_id) in result.problems[0].detail


def test_an_altered_chain_hash_is_changed_at_that_seq() -> None:
    events = list(EVENTS)
    events[at(17)] = dataclasses.replace(events[at(17)], chain_hash=hashlib.sha256(b"forged").digest())
    assert kinds(check(events)) == [(ProblemKind.CHANGED, 17)]


def test_an_edited_event_id_is_changed() -> None:
    events = list(EVENTS)
    events[at(8)] = dataclasses.replace(events[at(8)], event_id=uuid.uuid4())
    assert kinds(check(events)) == [(ProblemKind.CHANGED, 8)]


@pytest.mark.parametrize("seq", [1, 2, 10, 26, 49])
def test_a_deleted_event_is_deleted_at_its_seq(seq: int) -> None:
    events = [e for e in EVENTS if e.seq != seq]
    result = check(events)
    assert not result.ok
    assert kinds(result) == [(ProblemKind.DELETED, seq)]


def test_several_deleted_events_are_one_problem_per_gap() -> None:
    events = [e for e in EVENTS if e.seq not in (5, 6, 7, 30)]
    result = check(events)
    assert kinds(result) == [(ProblemKind.DELETED, 5), (ProblemKind.DELETED, 30)]
    assert "seq 5 to 7" in result.problems[0].detail


def test_an_event_whose_row_is_gone_is_deleted() -> None:
    events = list(EVENTS)
    events[at(12)] = dataclasses.replace(events[at(12)], canonical=None)
    assert kinds(check(events)) == [(ProblemKind.DELETED, 12)]


def test_a_removed_seal_whose_event_remains_is_deleted_not_inserted() -> None:
    removed = EVENTS[at(20)]
    assert removed.canonical is not None
    events = [e for e in EVENTS if e.seq != 20]
    result = check(events, unsealed=(UnsealedEvent(removed.event_id, removed.canonical, overdue=True),))
    assert kinds(result) == [(ProblemKind.DELETED, 20)]
    assert str(removed.event_id) in result.problems[0].detail


@pytest.mark.parametrize("seq", [1, 2, 11, 30, 50])
def test_an_event_spliced_into_the_chain_is_inserted(seq: int) -> None:
    """The strongest forgery: a new event with correct hashes, every later seq renumbered."""
    rogue = seal(
        [canonical_event(999)], first_seq=seq, previous=EVENTS[at(seq - 1)].chain_hash if seq > 1 else ZERO_HASH
    )
    shifted = [dataclasses.replace(e, seq=e.seq + 1) for e in EVENTS[at(seq) :]]
    events = [*EVENTS[: at(seq)], *rogue, *shifted]
    result = check(events)
    assert not result.ok
    assert kinds(result) == [(ProblemKind.INSERTED, seq)]


def test_a_second_event_claiming_a_seq_is_inserted() -> None:
    (rogue,) = seal([canonical_event(999)], first_seq=14, previous=EVENTS[at(13)].chain_hash)
    events = [*EVENTS[: at(14)], rogue, *EVENTS[at(14) :]]
    result = check(events)
    assert kinds(result) == [(ProblemKind.INSERTED, 14)]
    assert str(rogue.event_id) in result.problems[0].detail


def test_an_event_sealed_twice_is_inserted() -> None:
    copy = dataclasses.replace(EVENTS[at(3)], seq=SIZE + 1)
    assert kinds(check([*EVENTS, copy])) == [(ProblemKind.INSERTED, SIZE + 1)]


def test_an_overdue_unsealed_event_is_inserted_and_a_recent_one_is_pending() -> None:
    overdue = UnsealedEvent(uuid.uuid4(), canonical_event(777), overdue=True)
    recent = UnsealedEvent(uuid.uuid4(), canonical_event(778), overdue=False)
    result = check(EVENTS, unsealed=(overdue, recent))
    assert kinds(result) == [(ProblemKind.INSERTED, None)]
    assert str(overdue.event_id) in result.problems[0].detail
    assert result.pending == 1
    assert check(EVENTS, unsealed=(recent,)).ok


@pytest.mark.parametrize(("first", "second"), [(4, 5), (4, 6), (3, 40), (1, 2), (49, 50), (1, 50)])
def test_two_swapped_events_are_reordered(first: int, second: int) -> None:
    """Whole rows exchange their seqs (each keeps its own hashes)."""
    events = list(EVENTS)
    events[at(first)] = dataclasses.replace(EVENTS[at(second)], seq=first)
    events[at(second)] = dataclasses.replace(EVENTS[at(first)], seq=second)
    result = check(events)
    assert not result.ok
    assert kinds(result) == [(ProblemKind.REORDERED, first), (ProblemKind.REORDERED, second)]


def test_swapped_contents_under_fixed_seals_are_reordered() -> None:
    """As when two seals' event ids are exchanged in the database: each seq now shows the other's event."""
    events = list(EVENTS)
    a, b = EVENTS[at(7)], EVENTS[at(31)]
    events[at(7)] = dataclasses.replace(a, event_id=b.event_id, canonical=b.canonical)
    events[at(31)] = dataclasses.replace(b, event_id=a.event_id, canonical=a.canonical)
    result = check(events)
    assert kinds(result) == [(ProblemKind.REORDERED, 7), (ProblemKind.REORDERED, 31)]
    assert "sealed at seq 31" in result.problems[0].detail


@pytest.mark.parametrize("keep", [0, 1, 24, 49])
def test_a_truncated_log_is_truncated(keep: int) -> None:
    result = check(EVENTS[:keep])
    assert not result.ok
    assert kinds(result) == [(ProblemKind.TRUNCATED, keep + 1)]


def test_a_checkpoint_signed_by_another_key_is_a_bad_signature() -> None:
    leaves = [e.leaf_hash for e in EVENTS]
    forged = sign(Checkpoint(ORIGIN, 30, root_hash(leaves[:30])), name=ORIGIN, private_key=OTHER_KEY)
    result = check(EVENTS, [*NOTES[:2], forged, NOTES[2]])
    assert kinds(result) == [(ProblemKind.BAD_SIGNATURE, None)]
    assert "size 30" in result.problems[0].detail


def test_checkpoints_verify_with_any_known_key_and_ignore_cosignatures() -> None:
    before_rotation = checkpoint_notes(EVENTS, (40,))[0]
    later = sign(Checkpoint(ORIGIN, SIZE, root_hash([e.leaf_hash for e in EVENTS])), name=ORIGIN, private_key=OTHER_KEY)
    witnessed = cosign(later, name="witness.example", private_key=Ed25519PrivateKey.generate())
    result = check(EVENTS, [*NOTES[:2], before_rotation, witnessed], keys=(LOG_KEY, OTHER_KEY))
    assert result.ok
    assert result.checkpoints == 4


@pytest.mark.parametrize(
    ("note", "detail"),
    [
        (NOTES[0].replace("\n\n", "\n"), "malformed"),
        (NOTES[0][:-5] + "AAAA\n", "not signed by a known log key"),
        (sign(Checkpoint("elsewhere.test/audit", 10, EMPTY_ROOT), name=ORIGIN, private_key=LOG_KEY), "elsewhere"),
    ],
)
def test_malformed_forged_or_foreign_checkpoints_are_bad_signatures(note: str, detail: str) -> None:
    result = check(EVENTS, [note, *NOTES[1:]])
    assert kinds(result) == [(ProblemKind.BAD_SIGNATURE, None)]
    assert detail in result.problems[0].detail


def test_a_rewritten_history_no_longer_matches_its_checkpoint() -> None:
    """Events 30.. replaced by different ones with a fully recomputed, self-consistent chain and tree."""
    rewritten = [
        *EVENTS[: at(30)],
        *seal(
            [canonical_event(n + 500) for n in range(30, SIZE + 1)], first_seq=30, previous=EVENTS[at(29)].chain_hash
        ),
    ]
    assert check(rewritten, NOTES[:2]).ok  # the chain and tree alone cannot tell
    result = check(rewritten)
    assert kinds(result) == [(ProblemKind.NOT_EXTENDING, None)]
    assert f"size {SIZE}" in result.problems[0].detail


def test_a_checkpoint_sequence_going_backwards_is_not_extending() -> None:
    result = check(EVENTS, [NOTES[0], NOTES[2], NOTES[1]])
    assert kinds(result) == [(ProblemKind.NOT_EXTENDING, None)]
    assert "shrank" in result.problems[0].detail


def test_two_checkpoints_of_one_size_with_different_roots_are_not_extending() -> None:
    fork = sign(Checkpoint(ORIGIN, 10, hashlib.sha256(b"fork").digest()), name=ORIGIN, private_key=LOG_KEY)
    problems = check(EVENTS, [*NOTES, fork]).problems
    assert {p.kind for p in problems} == {ProblemKind.NOT_EXTENDING}
    assert any("different roots" in p.detail for p in problems)


def test_problem_details_carry_no_event_content() -> None:
    events = list(EVENTS)
    events[at(3)] = dataclasses.replace(events[at(3)], canonical=(events[at(3)].canonical or "") + " ")
    events = [e for e in events if e.seq != 9]
    for problem in check(events).problems:
        assert "Семья" not in problem.detail
        assert "ps_" not in problem.detail


@pytest.mark.parametrize(
    "tamper",
    [
        lambda events: [dataclasses.replace(e, leaf_hash=bytes(32)) if e.seq == 5 else e for e in events],
        lambda events: [dataclasses.replace(e, seq=e.seq + 100) if e.seq > 45 else e for e in events],
        lambda events: list(reversed(events))[:3] + events[3:],
    ],
    ids=["zeroed leaf hash", "renumbered tail", "three rows shuffled"],
)
def test_any_tampering_fails_verification(tamper: Callable[[list[SealedEvent]], list[SealedEvent]]) -> None:
    assert not check(tamper(list(EVENTS))).ok


# -- the one-pass scan of a clean log -----------------------------------------------------------------------------


def _full_analysis(
    events: list[SealedEvent], notes: list[str], unsealed: tuple[UnsealedEvent, ...] = ()
) -> VerifyResult:
    signed = check_notes(notes, origin=ORIGIN, public_keys=[LOG_KEY.public_key()])
    return verify_rows(events, signed, unsealed)


@pytest.mark.parametrize(
    ("notes", "unsealed"),
    [
        (NOTES, ()),
        ([], ()),
        (NOTES[::-1], ()),  # issued out of order: not extending
        ([*NOTES, sign(Checkpoint(ORIGIN, 10, bytes(32)), name=ORIGIN, private_key=LOG_KEY)], ()),  # a second root
        ([*NOTES, sign(Checkpoint(ORIGIN, SIZE + 5, bytes(32)), name=ORIGIN, private_key=LOG_KEY)], ()),  # truncated
        ([sign(Checkpoint(ORIGIN, 20, bytes(32)), name=ORIGIN, private_key=LOG_KEY)], ()),  # rewritten history
        ([sign(Checkpoint(ORIGIN, 10, bytes(32)), name=ORIGIN, private_key=OTHER_KEY), "not a note"], ()),
        (NOTES, (UnsealedEvent(uuid.uuid4(), canonical_event(777), overdue=True),)),
        (NOTES, (UnsealedEvent(uuid.uuid4(), canonical_event(778), overdue=False),)),
    ],
    ids=[
        "clean",
        "no checkpoint",
        "backwards",
        "two roots",
        "truncated",
        "rewritten",
        "bad notes",
        "overdue",
        "pending",
    ],
)
def test_a_clean_log_gets_from_the_scan_what_the_full_analysis_finds(
    notes: list[str], unsealed: tuple[UnsealedEvent, ...]
) -> None:
    assert check(EVENTS, notes, unsealed=unsealed) == _full_analysis(EVENTS, notes, unsealed)


@pytest.mark.parametrize("chunk", [1, 7, 10, SIZE])
def test_the_scan_takes_the_log_in_any_chunks_and_event_ids_as_bytes(chunk: int) -> None:
    rows = [(e.seq, e.event_id.bytes, e.canonical, e.chain_hash, e.leaf_hash) for e in EVENTS]
    scan = LogScan(CHECKPOINT_SIZES)
    for start in range(0, SIZE, chunk):
        assert scan.feed(rows[start : start + chunk])
    expected = check(EVENTS)
    assert scan.result(check_notes(NOTES, origin=ORIGIN, public_keys=[LOG_KEY.public_key()]), ()) == expected
    assert scan.roots == {size: root_hash([e.leaf_hash for e in EVENTS[:size]]) for size in CHECKPOINT_SIZES}


def _replace(row: int, **changes: object) -> Callable[[list[SealedEvent]], list[SealedEvent]]:
    return lambda events: [dataclasses.replace(e, **changes) if e.seq == row else e for e in events]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tamper",
    [
        _replace(9, canonical=(EVENTS[at(9)].canonical or "").replace("social_support", "social_supporT")),
        _replace(9, chain_hash=bytes(32)),
        _replace(9, leaf_hash=bytes(32)),
        _replace(9, event_id=uuid.uuid4()),
        _replace(9, canonical=None),
        _replace(9, event_id=EVENTS[at(3)].event_id),
        _replace(1, seq=0),
        lambda events: [e for e in events if e.seq != 30],
        lambda events: [*events, dataclasses.replace(events[at(3)], seq=SIZE + 1)],
        lambda events: [
            *events[:20],
            dataclasses.replace(events[21], seq=21),
            dataclasses.replace(events[20], seq=22),
            *events[22:],
        ],
        lambda events: [dataclasses.replace(e, seq=e.seq + 1) for e in events],
    ],
    ids=[
        "content",
        "chain hash",
        "leaf hash",
        "event id",
        "row gone",
        "id of another",
        "seq 0",
        "deleted",
        "sealed twice",
        "swapped",
        "renumbered",
    ],
)
def test_the_scan_hands_every_tampered_log_to_the_full_analysis(
    tamper: Callable[[list[SealedEvent]], list[SealedEvent]],
) -> None:
    events = tamper(list(EVENTS))
    scan = LogScan(CHECKPOINT_SIZES)
    assert not scan.feed((e.seq, e.event_id, e.canonical, e.chain_hash, e.leaf_hash) for e in events)
    with pytest.raises(ValueError, match="full analysis"):
        scan.result(check_notes(NOTES, origin=ORIGIN, public_keys=[LOG_KEY.public_key()]), ())
    assert not check(events).ok
    assert check(events) == _full_analysis(events, NOTES)


def test_rows_listed_out_of_seq_order_still_verify() -> None:
    events = [*EVENTS[:20], EVENTS[21], EVENTS[20], *EVENTS[22:]]
    rows = [(e.seq, e.event_id, e.canonical, e.chain_hash, e.leaf_hash) for e in events]
    assert not LogScan(CHECKPOINT_SIZES).feed(rows)  # the scan takes seq order only; the full analysis sorts
    assert check(events) == check(EVENTS)


# -- the export file ------------------------------------------------------------------------------------------------


def _export(path: Path) -> Path:
    write_export(
        path,
        origin=ORIGIN,
        exported_at=START,
        verifier_keys=[verifier_key(ORIGIN, LOG_KEY.public_key())],
        events=EVENTS,
        checkpoints=NOTES,
    )
    return path


def test_an_export_reads_back_and_verifies(tmp_path: Path) -> None:
    export = read_export(_export(tmp_path / "audit.jsonl"))
    assert export.origin == ORIGIN
    assert export.events == EVENTS
    assert export.checkpoints == NOTES
    assert verify_log(export.events, export.checkpoints, origin=export.origin, public_keys=export.public_keys).ok


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:30], "line 30: the file ends after line 30 without its end line"),
        (lambda lines: [*lines[:-1], lines[-1][:-1]], f"line {SIZE + 5}: the line is incomplete"),
        (lambda lines: [*lines[:7], lines[7][:40] + "\n", *lines[8:]], "line 8: not a valid JSON line"),
        (lambda lines: [*lines[:7], *lines[8:]], "the end line counts 50 events, 3 checkpoints"),
        (lambda lines: [lines[0].replace('"version":3', '"version":4'), *lines[1:]], "line 1: export version 4"),
        (lambda lines: [lines[0], lines[1].replace('"seq":1', '"seq":"1"'), *lines[2:]], "line 2: unexpected content"),
        (lambda lines: [lines[0], lines[1].replace('"chain_hash":"', '"chain_hash":"z'), *lines[2:]], "line 2: chain_"),
        (lambda lines: lines[1:], "line 1: the file does not start with the export header"),
        (lambda lines: [*lines, lines[-1]], f"line {SIZE + 6}: nothing may follow the end line"),
        (lambda lines: [], "line 1: the file is empty"),
    ],
    ids=[
        "cut at a line",
        "cut mid-line",
        "broken JSON",
        "line removed",
        "version",
        "wrong type",
        "bad hex",
        "no header",
        "trailing data",
        "empty",
    ],
)
def test_a_damaged_export_is_an_error_naming_the_line(
    tmp_path: Path, edit: Callable[[list[str]], list[str]], message: str
) -> None:
    path = _export(tmp_path / "audit.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(edit(lines)), encoding="utf-8")
    with pytest.raises(ExportError) as raised:
        read_export(path)
    assert message in str(raised.value)


def test_an_export_with_an_edited_event_reads_but_does_not_verify(tmp_path: Path) -> None:
    path = _export(tmp_path / "audit.jsonl")
    path.write_text(path.read_text(encoding="utf-8").replace("social_support", "social_sxpport", 1), encoding="utf-8")
    export = read_export(path)
    result = verify_log(export.events, export.checkpoints, origin=export.origin, public_keys=export.public_keys)
    assert kinds(result) == [(ProblemKind.CHANGED, 1)]


def test_a_version_1_export_is_still_read(tmp_path: Path) -> None:
    path = _export(tmp_path / "audit.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["version"] = 1
    del header["cosigner_keys"], header["origins"]
    end = json.loads(lines[-1])
    del end["cosignatures"]
    path.write_text("".join([json.dumps(header) + "\n", *lines[1:-1], json.dumps(end) + "\n"]))
    export = read_export(path)
    assert (export.cosignatures, export.cosigner_keys) == ([], {})
    assert verify_log(export.events, export.checkpoints, origin=export.origin, public_keys=export.public_keys).ok
