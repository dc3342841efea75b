"""Verification of the sealed audit log: recomputes the hash chain, the Merkle tree and the checkpoint signatures.

``verify_log`` is a pure function over data, so the same code checks the live database and an export file. It
names each kind of tampering with its own problem kind; docs/audit.md ("Verification") states the algorithm.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import functools
import hashlib
import itertools
import uuid
from collections.abc import AsyncGenerator, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc.jwk import OKPKey
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from audit.checkpoint import (
    Checkpoint,
    CheckpointFormatError,
    cosigner_name,
    key_id,
    parse_note,
    verifier_key,
    verify,
)
from audit.cosignature import Cosigned, verify_cosignature
from audit.derived import (
    Disagreement,
    ReviewMarkRow,
    SearchCheck,
    SearchFields,
    StoredColumns,
    decode_fields,
    id_number,
    raw_uuid,
    with_stored_columns,
)
from audit.identity import LogNames, load_names
from audit.merkle import HASH_SIZE, MerkleAccumulator
from audit.models import AuditCheckpoint, AuditCosignature, AuditEvent, AuditSeal, ReviewMark
from tenants.models import KeyUse, PeerKey, PlatformKey, PlatformKeyUse, PublishedKey
from tenants.persistence import READ_ONLY_OPTION, platform_session

__all__ = [
    "ZERO_HASH",
    "LogScan",
    "LogSnapshot",
    "Problem",
    "ProblemKind",
    "SealedEvent",
    "SignedNotes",
    "UnsealedEvent",
    "VerifyResult",
    "check_notes",
    "checkpoint_keys",
    "cosigner_public_keys",
    "load_log",
    "review_marks",
    "sealed_row_chunks",
    "snapshot_session",
    "verify_database",
    "verify_log",
]

ZERO_HASH = bytes(HASH_SIZE)
"""The chain hash before the first event."""

SEALING_GRACE = dt.timedelta(minutes=1)
"""How long an event may wait for its seal before verification counts it as added behind the sealer's back."""

# How many broken chain links are searched for the place they really belong (each costs a few hashes per suspect
# row). Beyond this the log is mangled wholesale and every broken link is reported as `changed`.
_SEARCH_LIMIT = 256
# How many rows back from a broken link its true predecessor is looked for, besides the other broken links.
_SEARCH_WINDOW = 3


class ProblemKind(enum.StrEnum):
    CHANGED = "changed"  # an event's content (or a stored hash) no longer matches what was sealed
    DELETED = "deleted"  # a seq is missing, or the event sealed at a seq is gone
    INSERTED = "inserted"  # an event that the chain does not contain: unsealed, a second claim on a seq, or spliced in
    REORDERED = "reordered"  # events sit at other seqs than the hash chain puts them
    BAD_SIGNATURE = "bad_signature"  # a checkpoint note that no known key signed (or that is malformed)
    NOT_EXTENDING = "not_extending"  # a checkpoint the recomputed tree does not match, or sizes going backwards
    TRUNCATED = "truncated"  # fewer sealed events than the latest checkpoint's size
    # What the DPO's queries read beside an intact event disagrees with it (audit/derived.py):
    COLUMN_CHANGED = Disagreement.COLUMN_CHANGED.value  # a search column of the event row
    SUBJECT_DELETED = Disagreement.SUBJECT_DELETED.value  # a subject's pseudonym row is gone
    SUBJECT_INSERTED = Disagreement.SUBJECT_INSERTED.value  # a pseudonym row the event does not name
    REVIEW_DELETED = Disagreement.REVIEW_DELETED.value  # a sealed review's mark is gone
    REVIEW_INSERTED = Disagreement.REVIEW_INSERTED.value  # a review mark no sealed review accounts for


# When several findings land on one seq, the most specific explanation wins.
_PRECEDENCE = {
    ProblemKind.INSERTED: 4,
    ProblemKind.DELETED: 3,
    ProblemKind.REORDERED: 2,
    ProblemKind.CHANGED: 1,
}


@dataclass(frozen=True, slots=True)
class SealedEvent:
    """One row of the sealed log: its seal and the event's canonical JSON (None when the event row is gone).

    ``stored``: what the DPO's queries read beside the event, when known (not in exports before version 3).
    """

    seq: int
    event_id: uuid.UUID
    canonical: str | None
    chain_hash: bytes
    leaf_hash: bytes
    stored: StoredColumns | None = None


@dataclass(frozen=True, slots=True)
class UnsealedEvent:
    """An event that has no seal. ``overdue``: old enough that the sealer should have sealed it by now."""

    event_id: uuid.UUID
    canonical: str
    overdue: bool


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    seq: int | None  # the log position concerned; None for checkpoints and unsealed events
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "seq": self.seq, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    size: int  # sealed events in the log
    root: bytes  # RFC 6962 root recomputed from the events' canonical bytes
    problems: list[Problem]
    pending: int = 0  # unsealed events still inside the sealing grace period (not a problem)
    checkpoints: int = 0  # checkpoints whose signature verified

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "root": self.root.hex(),
            "problems": [p.to_json() for p in self.problems],
            "pending": self.pending,
            "checkpoints": self.checkpoints,
        }


@dataclass(slots=True)
class _Findings:
    by_seq: dict[int, Problem] = field(default_factory=dict)
    other: list[Problem] = field(default_factory=list)

    def at(self, kind: ProblemKind, seq: int, detail: str) -> None:
        current = self.by_seq.get(seq)
        if current is None or _PRECEDENCE[kind] > _PRECEDENCE[current.kind]:
            self.by_seq[seq] = Problem(kind, seq, detail)

    def add(self, kind: ProblemKind, seq: int | None, detail: str) -> None:
        self.other.append(Problem(kind, seq, detail))

    def sorted(self) -> list[Problem]:
        order = list(ProblemKind)
        problems = [*self.by_seq.values(), *self.other]
        return sorted(problems, key=lambda p: (p.seq is None, p.seq or 0, order.index(p.kind)))


class _EventId(msgspec.Struct):
    id: uuid.UUID


_decode_event_id = msgspec.json.Decoder(_EventId).decode
_LEAF_PREFIX = b"\x00"  # RFC 6962 §2.1, as in audit.merkle.leaf_hash (inlined: this loop runs once per event)
_LEAF_HASHER = hashlib.sha256(_LEAF_PREFIX)


def _sha256(first: bytes, second: bytes) -> bytes:
    return hashlib.sha256(first + second).digest()


def verify_log(
    events: Sequence[SealedEvent],
    checkpoints: Sequence[str],
    *,
    origin: str | LogNames,
    public_keys: Sequence[Ed25519PublicKey],
    unsealed: Sequence[UnsealedEvent] = (),
    cosignatures: Sequence[str] = (),
    cosigner_keys: Mapping[str, Sequence[Ed25519PublicKey]] | None = None,
    review_marks: Iterable[ReviewMarkRow] | None = None,
    exported_at: dt.datetime | None = None,
) -> VerifyResult:
    """Check the sealed log against itself and against its signed checkpoints; every finding is a Problem.

    ``checkpoints`` are signed notes in the order they were issued. A checkpoint counts when it is signed by one of
    ``public_keys`` under the log's name at its size: ``origin``, or the names of a renamed log (``LogNames``).
    Raises ValueError only for an unusable ``origin``.
    What is stored beside each event is checked where ``events`` carry it, and the review marks when given.
    ``exported_at``: the events come from an export written then, which holds no unsealed events (nor their marks).
    """
    notes = check_notes(
        checkpoints, origin=origin, public_keys=public_keys, cosignatures=cosignatures, cosigner_keys=cosigner_keys
    )
    marks = None if review_marks is None else list(review_marks)
    scan = LogScan(notes.sizes, marks, exported_at=exported_at)
    if scan.feed(_scan_row(e) for e in events):
        return scan.result(notes, unsealed)
    return verify_rows(events, notes, unsealed, marks, exported_at=exported_at)


def _scan_row(event: SealedEvent) -> tuple[Any, ...]:
    seal = (event.seq, event.event_id, event.canonical, event.chain_hash, event.leaf_hash)
    return seal if event.stored is None else (*seal, *event.stored)


@dataclass(frozen=True, slots=True)
class SignedNotes:
    """The checkpoints and co-signatures whose signatures hold, and what is wrong with the notes themselves.

    Checked before any event is read, so a pass over the events knows which tree sizes it must compute roots for.
    """

    valid: list[Checkpoint]  # the log's own checkpoints, in issue order
    cosigned: list[Checkpoint]
    roots_by_size: dict[int, bytes]  # the root each size must have: checkpoints first, then co-signatures
    problems: list[Problem]  # in the order they were found; none of them depends on the events

    @property
    def sizes(self) -> list[int]:
        return sorted(self.roots_by_size)


def check_notes(
    checkpoints: Sequence[str],
    *,
    origin: str | LogNames,
    public_keys: Sequence[Ed25519PublicKey],
    cosignatures: Sequence[str] = (),
    cosigner_keys: Mapping[str, Sequence[Ed25519PublicKey]] | None = None,
) -> SignedNotes:
    """Signatures, order and agreement of the signed notes among themselves (see ``verify_log``)."""
    names = LogNames.of(origin)
    for name in names.origins() if public_keys else ():
        key_id(name, public_keys[0])  # a name the signed-note rules refuse is the caller's error
    findings = _Findings()
    cosigned = _check_cosignatures(cosignatures, names, cosigner_keys or {}, findings)
    valid: list[Checkpoint] = []
    for number, text in enumerate(checkpoints, 1):
        checkpoint = _signed_checkpoint(number, text, names, public_keys, findings)
        if checkpoint is not None:
            valid.append(checkpoint)

    for earlier, later in itertools.pairwise(valid):
        if later.size < earlier.size:
            findings.add(
                ProblemKind.NOT_EXTENDING,
                None,
                f"the checkpoint of size {later.size} was issued after the one of size {earlier.size}: the log shrank",
            )
    roots_by_size: dict[int, bytes] = {}
    for checkpoint in valid:
        known = roots_by_size.setdefault(checkpoint.size, checkpoint.root)
        if known != checkpoint.root:
            findings.add(
                ProblemKind.NOT_EXTENDING, None, f"two checkpoints of size {checkpoint.size} have different roots"
            )
    # What an agency co-signed is what the log showed it: a different root at the same size is a split view.
    for checkpoint in cosigned:
        known = roots_by_size.setdefault(checkpoint.size, checkpoint.root)
        if known != checkpoint.root:
            findings.add(
                ProblemKind.NOT_EXTENDING,
                None,
                f"an agency co-signed a tree of size {checkpoint.size} with another root: the log showed two histories",
            )
    return SignedNotes(valid, cosigned, roots_by_size, findings.other)


class LogScan:
    """One pass over the sealed rows in seq order that proves the common case cheaply, in chunks, in flat memory.

    The common case: seqs run 1, 2, 3, ...; every row has its event; each event's bytes match the leaf hash sealed
    for it and follow the chain hash of the row before; the content is the event the seal names; no event is sealed
    twice. Then ``verify_log``'s row analysis would find nothing, and its result depends only on the leaf hashes,
    which are folded into the tree as they come. At the first row that is not so, ``feed`` returns False and the
    log goes to that analysis instead, which names the problem: the scan never decides what is wrong, only that
    nothing is. What is stored beside each event (audit/derived.py) is checked in the same pass and does not stop
    it: those findings concern one event each, whatever the chain.
    """

    __slots__ = ("_chain", "_exported_at", "_ids", "_next", "_search", "_sizes", "_tree", "clean", "roots")

    def __init__(
        self,
        sizes: Iterable[int],
        review_marks: Iterable[ReviewMarkRow] | None = None,
        *,
        exported_at: dt.datetime | None = None,
    ) -> None:
        self._chain = ZERO_HASH
        self._ids: set[int] = set()
        self._search = _search_check(review_marks)
        self._exported_at = exported_at
        self._tree = MerkleAccumulator()
        # Sizes whose root the checkpoints need; a size of 0 has no row to reach (verify_log skips it too).
        self._sizes = sorted(s for s in set(sizes) if s >= 1)
        self._next = 0
        self.roots: dict[int, bytes] = {}  # recomputed root at each needed size reached so far
        self.clean = True

    @property
    def size(self) -> int:
        return self._tree.size

    def feed(self, rows: Iterable[Sequence[Any]]) -> bool:
        """Take the next rows (seq, event id, canonical JSON, chain hash, leaf hash, then optionally the
        ``StoredColumns`` values); False once one is not clean.

        The event id may be a UUID or its 16 bytes, as the database driver returns it.
        """
        if not self.clean:
            return False
        sha256, decode, ids, leaf_hasher = hashlib.sha256, _decode_event_id, self._ids, _LEAF_HASHER
        search = self._search
        chain, expected = self._chain, self._tree.size + 1
        leaves: list[bytes] = []
        for seq, event_id, canonical, chain_hash, leaf_hash, *stored in rows:
            if seq != expected or canonical is None:
                self.clean = False
                break
            content = canonical.encode("utf-8")
            hasher = leaf_hasher.copy()  # cheaper than a new hash of the prefix and the content joined
            hasher.update(content)
            leaf = hasher.digest()
            if leaf != leaf_hash or sha256(chain + content).digest() != chain_hash:
                self.clean = False
                break
            fields = _fields(content) if stored else None
            try:
                key = fields.id.int if fields is not None else decode(content).id.int
            except msgspec.MsgspecError:
                self.clean = False
                break
            if key != id_number(event_id) or key in ids:
                self.clean = False
                break
            if fields is not None:
                search.event(seq, fields, stored)
            elif stored:
                search.content_unreadable(seq, uuid.UUID(int=key))
            ids.add(key)
            leaves.append(leaf)
            chain, expected = chain_hash, expected + 1
        self._chain = chain
        self._grow(leaves)
        return self.clean

    def _grow(self, leaves: list[bytes]) -> None:
        tree, sizes, start, used = self._tree, self._sizes, self._tree.size, 0
        while self._next < len(sizes) and sizes[self._next] <= start + len(leaves):
            size = sizes[self._next]
            tree.extend(leaves[used : size - start])
            used = size - start
            self.roots[size] = tree.root()
            self._next += 1
        tree.extend(leaves[used:])

    def result(self, notes: SignedNotes, unsealed: Sequence[UnsealedEvent]) -> VerifyResult:
        """The verification result of a log whose every row was clean: what ``verify_log`` finds for it."""
        if not self.clean:
            raise ValueError("the scan met a row that needs the full analysis")
        findings = _Findings()
        pending = _check_unsealed([], [], unsealed, findings)
        findings.other.extend(notes.problems)
        _check_tree(self.size, self.roots, notes, findings)
        _finish_search(self._search, unsealed, findings, exported_at=self._exported_at, sealed_ids=self._ids)
        problems = findings.sorted()
        return VerifyResult(
            ok=not problems,
            size=self.size,
            root=self._tree.root(),
            problems=problems,
            pending=pending,
            checkpoints=len(notes.valid),
        )


def _fields(content: bytes) -> SearchFields | None:
    try:
        return decode_fields(content)
    except msgspec.MsgspecError:
        return None


def _search_check(review_marks: Iterable[ReviewMarkRow] | None) -> SearchCheck:
    return SearchCheck(None if review_marks is None else {mark.event_id: mark for mark in review_marks})


def _finish_search(
    search: SearchCheck,
    unsealed: Sequence[UnsealedEvent],
    findings: _Findings,
    *,
    exported_at: dt.datetime | None,
    sealed_ids: Container[int],
) -> None:
    """The review marks against the reviews, sealed and pending; then every disagreement, as problems."""
    for event in unsealed:
        if not event.overdue and (fields := _fields(event.canonical.encode("utf-8"))) is not None:
            search.pending(fields)
    if exported_at is None:
        found = search.finish()
    else:
        found = search.finish(sealed_ids=sealed_ids, unsealed_after=exported_at - SEALING_GRACE)
    findings.other.extend(Problem(ProblemKind(f.kind.value), f.seq, f.detail) for f in found)


def verify_rows(
    events: Sequence[SealedEvent],
    notes: SignedNotes,
    unsealed: Sequence[UnsealedEvent],
    review_marks: Iterable[ReviewMarkRow] | None = None,
    *,
    exported_at: dt.datetime | None = None,
) -> VerifyResult:
    """The full analysis: every row, chain link, gap and unsealed event examined, each problem named."""
    findings = _Findings()
    search = _search_check(review_marks)
    rows = _one_row_per_seq(events, findings)
    checked = _check_rows(rows, findings, search)
    gaps = _check_chain(rows, checked, findings)
    pending = _check_unsealed(rows, gaps, unsealed, findings)
    findings.other.extend(notes.problems)
    root, recomputed = _tree_roots(checked.leaves, notes.sizes)
    _check_tree(rows[-1].seq if rows else 0, recomputed, notes, findings)
    _finish_search(
        search,
        unsealed,
        findings,
        exported_at=exported_at,
        sealed_ids={row.event_id.int for row in rows if row.canonical is not None},
    )
    problems = findings.sorted()
    return VerifyResult(
        ok=not problems, size=len(rows), root=root, problems=problems, pending=pending, checkpoints=len(notes.valid)
    )


def _one_row_per_seq(events: Sequence[SealedEvent], findings: _Findings) -> list[SealedEvent]:
    """The rows sorted by seq, one per seq: a second claim on a seq, or a second seal of an event, is inserted.

    Of several rows claiming one seq, the one the chain confirms stays: the next seq's row follows its chain hash,
    or failing that, it follows the previous row's.
    """
    if all(event.seq == seq for seq, event in enumerate(events, 1)):
        rows = list(events)  # the usual case: exactly 1..n in order
    else:
        rows = _resolve_claims(events, findings)
    if len({row.event_id for row in rows}) != len(rows):
        seen: dict[uuid.UUID, int] = {}
        for row in rows:
            first = seen.setdefault(row.event_id, row.seq)
            if first != row.seq:
                findings.at(ProblemKind.INSERTED, row.seq, f"event {row.event_id} is sealed twice, at seq {first} too")
    return rows


def _resolve_claims(events: Sequence[SealedEvent], findings: _Findings) -> list[SealedEvent]:
    claims: dict[int, list[SealedEvent]] = {}
    for event in sorted(events, key=lambda e: e.seq):
        if event.seq < 1:
            findings.add(
                ProblemKind.INSERTED, event.seq, f"event {event.event_id} has seq {event.seq}; seqs start at 1"
            )
            continue
        claims.setdefault(event.seq, []).append(event)
    rows: list[SealedEvent] = []
    for seq, candidates in claims.items():
        chosen = candidates[0]
        if len(candidates) > 1:
            before = _chain_before(rows[-1] if rows else None, seq)
            confirmed = functools.partial(_confirmed, before=before, following=claims.get(seq + 1, []))
            chosen = max(candidates, key=confirmed)
            for extra in candidates:
                if extra is not chosen:
                    findings.at(ProblemKind.INSERTED, seq, f"a second event ({extra.event_id}) claims seq {seq}")
        rows.append(chosen)
    return rows


def _confirmed(row: SealedEvent, *, before: bytes | None, following: Sequence[SealedEvent]) -> tuple[bool, bool]:
    """How strongly the chain vouches for ``row``: a row of the next seq follows it; it follows the previous row."""
    return any(_links(row.chain_hash, after) for after in following), before is not None and _links(before, row)


def _chain_before(before: SealedEvent | None, seq: int) -> bytes | None:
    """The chain hash the event at ``seq`` must follow (``before`` is the row sorted before it), or None when the
    row for seq - 1 is missing."""
    if seq == 1:
        return ZERO_HASH
    if before is not None and before.seq == seq - 1:
        return before.chain_hash
    return None


def _links(previous: bytes, row: SealedEvent) -> bool:
    return row.canonical is not None and _sha256(previous, row.canonical.encode("utf-8")) == row.chain_hash


@dataclass(slots=True)
class _RowChecks:
    """Per row: canonical bytes, recomputed leaf hash, whether the content matches the seal's leaf hash (only
    those rows take part in the chain analysis), the chain hash it must follow (None after a gap), and which
    rows' chain links are broken."""

    data: list[bytes | None]
    leaves: list[bytes]
    intact: list[bool]
    previous: list[bytes | None]
    broken: list[int]


def _check_rows(rows: Sequence[SealedEvent], findings: _Findings, search: SearchCheck) -> _RowChecks:
    """Each row's content against its own seal, and its chain hash against the stored one of the row before; what
    is stored beside each event whose content is the one sealed for it against that content (into ``search``).

    Checking each link against the *stored* previous chain hash, not a recomputed one, means one altered row
    breaks one link instead of every later one.
    """
    checks = _RowChecks([], [], [], [], [])
    data, leaves, intact, previous = checks.data, checks.leaves, checks.intact, checks.previous
    sealed_leaf_at: dict[bytes, int] | None = None  # built on the first mismatch only
    sha256 = hashlib.sha256
    chain_before: bytes | None = None  # the previous row's chain hash, when that row is seq - 1
    expected_seq = 1
    for index, row in enumerate(rows):
        before = ZERO_HASH if row.seq == 1 else (chain_before if row.seq == expected_seq else None)
        chain_before, expected_seq = row.chain_hash, row.seq + 1
        previous.append(before)
        if row.canonical is None:
            findings.at(
                ProblemKind.DELETED, row.seq, f"event {row.event_id}, sealed at seq {row.seq}, is missing from the log"
            )
            data.append(None)
            leaves.append(row.leaf_hash)
            intact.append(False)
            continue
        content = row.canonical.encode("utf-8")
        leaf = sha256(_LEAF_PREFIX + content).digest()
        data.append(content)
        leaves.append(leaf)
        if leaf == row.leaf_hash:
            intact.append(True)
            if before is not None and sha256(before + content).digest() != row.chain_hash:
                checks.broken.append(index)
            if _event_id(content) != row.event_id:
                findings.at(
                    ProblemKind.CHANGED, row.seq, f"the content sealed at seq {row.seq} is not event {row.event_id}"
                )
            elif row.stored is not None:
                fields = _fields(content)
                if fields is None:
                    search.content_unreadable(row.seq, row.event_id)
                else:
                    search.event(row.seq, fields, row.stored)
            continue
        intact.append(False)
        if sealed_leaf_at is None:
            sealed_leaf_at = {r.leaf_hash: r.seq for r in rows}
        origin_seq = sealed_leaf_at.get(leaf)
        if origin_seq is not None and origin_seq != row.seq:
            findings.at(ProblemKind.REORDERED, row.seq, f"seq {row.seq} holds the event sealed at seq {origin_seq}")
        else:
            findings.at(
                ProblemKind.CHANGED,
                row.seq,
                f"the content of event {row.event_id} no longer matches the leaf hash sealed at seq {row.seq}",
            )
    return checks


def _event_id(content: bytes) -> uuid.UUID | None:
    try:
        return _decode_event_id(content).id
    except msgspec.MsgspecError:
        return None


def _check_chain(rows: Sequence[SealedEvent], checks: _RowChecks, findings: _Findings) -> list[tuple[int, int]]:
    """Gaps in seq (deleted), then the broken chain links; returns the gaps as (first, last) missing seq.

    Broken links are explained: a row whose chain hash follows some other row's is out of place (reordered), a row
    no later row's chain hash follows is spliced in (inserted), and what remains is an altered chain hash (changed).
    """
    gaps: list[tuple[int, int]] = []
    expected = 1
    for row in rows:
        if row.seq > expected:
            gaps.append((expected, row.seq - 1))
            missing = f"seq {expected}" if row.seq - 1 == expected else f"seq {expected} to {row.seq - 1}"
            findings.at(ProblemKind.DELETED, expected, f"{missing} missing from the sealed log")
        expected = row.seq + 1

    data, intact, previous, broken = checks.data, checks.intact, checks.previous, checks.broken
    if not broken:
        return gaps
    if len(broken) > _SEARCH_LIMIT:
        for i in broken:
            findings.at(
                ProblemKind.CHANGED, rows[i].seq, f"the chain hash at seq {rows[i].seq} does not follow its predecessor"
            )
        return gaps

    suspects = sorted({c for i in broken for c in range(max(i - _SEARCH_WINDOW, 0), i + 1)})
    true_predecessor: dict[int, int] = {}  # row index -> row index whose chain hash it follows (-1: the start)
    for i in broken:
        content, target = data[i] or b"", rows[i].chain_hash
        if rows[i].seq != 1 and _sha256(ZERO_HASH, content) == target:
            true_predecessor[i] = -1
            continue
        for c in suspects:
            if c not in (i - 1, i) and _sha256(rows[c].chain_hash, content) == target:
                true_predecessor[i] = c
                break
    for i in broken:
        if i in true_predecessor:
            continue
        j = i - 1
        prev_j = previous[j] if j >= 0 else None
        if (
            prev_j is not None
            and intact[j]
            and _sha256(_sha256(prev_j, data[j] or b""), data[i] or b"") == rows[i].chain_hash
        ):
            # This row follows the value the previous row's chain hash should have had: that one was altered.
            findings.at(ProblemKind.CHANGED, rows[j].seq, f"the chain hash at seq {rows[j].seq} was altered")
        else:
            findings.at(
                ProblemKind.CHANGED, rows[i].seq, f"the chain hash at seq {rows[i].seq} does not follow its predecessor"
            )
    if true_predecessor:
        _check_order(rows, true_predecessor, findings)
    return gaps


def _check_order(rows: Sequence[SealedEvent], true_predecessor: dict[int, int], findings: _Findings) -> None:
    """Rebuild the order the chain hashes commit to and compare it with the seq order.

    Every row follows the row before it unless a broken link was traced to another row. The chain is the longest
    walk back from any row to the start; rows off it are inserted, and rows on it whose rank differs from their
    rank by seq are reordered.
    """
    n = len(rows)

    def predecessor(i: int) -> int:
        return true_predecessor.get(i, i - 1)

    unknown, visiting = 0, -1
    depth = [unknown] * n  # rows from the start up to and including this one; -1 on a cycle
    for start in range(n):
        path: list[int] = []
        i = start
        while i >= 0 and depth[i] == unknown:
            depth[i] = visiting
            path.append(i)
            i = predecessor(i)
        base = 0 if i < 0 else depth[i]
        for j in reversed(path):
            base = base + 1 if base >= 0 else -1
            depth[j] = base
    head = max(range(n), key=lambda i: (depth[i], i))
    chain: list[int] = []
    i = head
    while i >= 0 and depth[i] > 0:
        chain.append(i)
        i = predecessor(i)
    chain.reverse()
    on_chain = set(chain)
    for i in range(n):
        if i not in on_chain:
            findings.at(
                ProblemKind.INSERTED, rows[i].seq, f"no later chain hash commits to the event at seq {rows[i].seq}"
            )
    for actual, expected in zip(chain, sorted(chain), strict=True):
        if actual != expected:
            findings.at(
                ProblemKind.REORDERED,
                rows[actual].seq,
                f"the hash chain puts the event at seq {rows[actual].seq} at seq {rows[expected].seq}",
            )


def _check_unsealed(
    rows: Sequence[SealedEvent], gaps: Sequence[tuple[int, int]], unsealed: Sequence[UnsealedEvent], findings: _Findings
) -> int:
    """Unsealed events: the event of a deleted seal (it fits a one-seq gap in the chain), inserted, or pending."""
    by_seq = {row.seq: row for row in rows} if gaps else {}
    explained: set[uuid.UUID] = set()
    for first, last in gaps:
        after = by_seq.get(last + 1)
        before = ZERO_HASH if first == 1 else (by_seq[first - 1].chain_hash if first - 1 in by_seq else None)
        if first != last or after is None or after.canonical is None or before is None:
            continue
        following = after.canonical.encode("utf-8")
        for event in unsealed:
            if _sha256(_sha256(before, event.canonical.encode("utf-8")), following) == after.chain_hash:
                # A more precise account of the gap reported by _check_chain.
                findings.by_seq[first] = Problem(
                    ProblemKind.DELETED, first, f"the seal of event {event.event_id} at seq {first} was removed"
                )
                explained.add(event.event_id)
                break
    pending = 0
    for event in unsealed:
        if event.event_id in explained:
            continue
        if event.overdue:
            findings.add(
                ProblemKind.INSERTED,
                None,
                f"event {event.event_id} is in the log but was never sealed (added behind the sealer's back, "
                "or the sealer has not run since)",
            )
        else:
            pending += 1
    return pending


def _tree_roots(leaves: Sequence[bytes], sizes: Iterable[int]) -> tuple[bytes, dict[int, bytes]]:
    """The root over all ``leaves``, and the root at each of ``sizes`` that the leaves reach."""
    tree = MerkleAccumulator()
    recomputed: dict[int, bytes] = {}
    for size in sorted(s for s in set(sizes) if 1 <= s <= len(leaves)):
        tree.extend(leaves[tree.size : size])
        recomputed[size] = tree.root()
    tree.extend(leaves[tree.size :])
    return tree.root(), recomputed


def _check_tree(last_seq: int, recomputed: Mapping[int, bytes], notes: SignedNotes, findings: _Findings) -> None:
    """Each signed root against the tree recomputed from the events, and the log's length against what was signed.

    A root mismatch at size s is reported as not_extending only when no row-level problem at a seq <= s already
    explains it (an edited, deleted, inserted or moved event changes the tree as a matter of course).
    """
    beyond = max((c.size for c in notes.cosigned), default=0)
    if beyond > last_seq:
        findings.add(
            ProblemKind.TRUNCATED,
            last_seq + 1,
            f"the log ends at seq {last_seq}, but an agency co-signed a tree of {beyond} events",
        )
    if notes.valid:
        latest = max(c.size for c in notes.valid)
        if latest > last_seq:
            findings.add(
                ProblemKind.TRUNCATED,
                last_seq + 1,
                f"the log ends at seq {last_seq}, but a signed checkpoint covers {latest} events",
            )
    first_row_problem = min(findings.by_seq, default=None)
    for size, root in sorted(notes.roots_by_size.items()):
        if size not in recomputed:
            continue  # more checkpointed events than sealed ones: reported as truncated
        if first_row_problem is not None and first_row_problem <= size:
            continue
        if recomputed[size] != root:
            findings.add(
                ProblemKind.NOT_EXTENDING,
                None,
                f"the checkpoint of size {size} does not match the tree recomputed from the first {size} events: "
                "history was rewritten",
            )


def _check_cosignatures(
    cosignatures: Sequence[str],
    names: LogNames,
    keys: Mapping[str, Sequence[Ed25519PublicKey]],
    findings: _Findings,
) -> list[Checkpoint]:
    """Each co-signature note must be for this log, under its name at that size, and signed (as ``cosignature/v1``
    or in the older plain form) by a key its co-signer published."""
    valid = []
    for number, text in enumerate(cosignatures, 1):
        try:
            note = parse_note(text)
        except CheckpointFormatError as exc:
            findings.add(ProblemKind.BAD_SIGNATURE, None, f"co-signature {number} is malformed: {exc.detail}")
            continue
        size = note.checkpoint.size
        signers = {signature.name for signature in note.signatures}
        if note.checkpoint.origin != names.at(size) or len(signers) != 1:
            findings.add(ProblemKind.BAD_SIGNATURE, None, f"co-signature {number} (size {size}) is not for this log")
            continue
        (name,) = signers
        checked = [verify_cosignature(text, name=name, public_key=key) for key in keys.get(name, ())]
        verified = next((c.checkpoint for c in checked if isinstance(c, Cosigned)), None)
        if verified is None:
            findings.add(
                ProblemKind.BAD_SIGNATURE, None, f"the co-signature by {name} of size {size} is not signed by its key"
            )
            continue
        valid.append(verified)
    return valid


def _signed_checkpoint(
    number: int, text: str, names: LogNames, public_keys: Sequence[Ed25519PublicKey], findings: _Findings
) -> Checkpoint | None:
    try:
        note = parse_note(text)
    except CheckpointFormatError as exc:
        findings.add(ProblemKind.BAD_SIGNATURE, None, f"checkpoint {number} is malformed: {exc.detail}")
        return None
    size, origin = note.checkpoint.size, note.checkpoint.origin
    expected = names.at(size)
    if expected is None:
        findings.add(
            ProblemKind.BAD_SIGNATURE,
            None,
            f"the checkpoint of size {size} cannot be checked: the log's name is not recorded",
        )
        return None
    if origin != expected:
        findings.add(
            ProblemKind.BAD_SIGNATURE,
            None,
            f"the checkpoint of size {size} is signed as {origin!r}, but the log was named {expected!r} at that size"
            if origin in names.origins()
            else f"the checkpoint of size {size} is for the log {origin!r}, not {expected!r}",
        )
        return None
    for public_key in public_keys:
        verified = verify(text, name=expected, public_key=public_key)
        if isinstance(verified, Checkpoint):
            return verified
    findings.add(ProblemKind.BAD_SIGNATURE, None, f"the checkpoint of size {size} is not signed by a known log key")
    return None


# -- reading the live database --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogSnapshot:
    """Everything verification needs, read in one consistent snapshot of the database."""

    events: list[SealedEvent]
    unsealed: list[UnsealedEvent]
    checkpoints: list[str]
    public_keys: list[Ed25519PublicKey]
    cosignatures: list[str] = field(default_factory=list)
    cosigner_keys: dict[str, list[Ed25519PublicKey]] = field(default_factory=dict)
    review_marks: list[ReviewMarkRow] = field(default_factory=list)


async def snapshot_session(factory: async_sessionmaker[AsyncSession]) -> AsyncSession:
    """A platform-scoped, read-only session whose queries all see one snapshot of the database.

    SQLite: a deferred transaction (no write lock) keeps its WAL snapshot from the first read. PostgreSQL: a
    READ ONLY REPEATABLE READ transaction, so a seal committed between two queries cannot make them disagree.
    """
    session = platform_session(factory)
    options: dict[str, Any] = {READ_ONLY_OPTION: True}
    if session.get_bind().dialect.name == "postgresql":
        options |= {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    await session.connection(execution_options=options)
    return session


async def checkpoint_keys(session: AsyncSession) -> list[Ed25519PublicKey]:
    """Every checkpoint key the platform ever had, retired ones included: old checkpoints stay verifiable."""
    keys: list[Ed25519PublicKey] = []
    rows = await session.scalars(
        select(PlatformKey).where(PlatformKey.use == PlatformKeyUse.CHECKPOINT.value).order_by(PlatformKey.created_at)
    )
    for row in rows:
        public = OKPKey.import_key(row.public_jwk).public_key
        if isinstance(public, Ed25519PublicKey):
            keys.append(public)
    return keys


def verifier_keys(origin: str, public_keys: Iterable[Ed25519PublicKey]) -> list[str]:
    """The keys as signed-note verifier keys (``<origin>+<key id>+<base64 key>``)."""
    return [verifier_key(origin, key) for key in public_keys]


async def cosigner_public_keys(
    session: AsyncSession, tenant_ids: Sequence[uuid.UUID]
) -> dict[str, list[Ed25519PublicKey]]:
    """Every Ed25519 key each co-signing agency ever published (retired ones too: they signed older co-signatures):
    an agency hosted here publishes its own; a peer's agency's are those fetched from its node and accepted (no
    longer listed ones too, for the same reason)."""
    own = select(PublishedKey.owner_tenant_id, PublishedKey.public_jwk).where(
        PublishedKey.owner_tenant_id.in_(tenant_ids), PublishedKey.use == KeyUse.SIGNING.value
    )
    peers = select(PeerKey.owner_tenant_id, PeerKey.public_jwk).where(
        PeerKey.owner_tenant_id.in_(tenant_ids), PeerKey.use == KeyUse.SIGNING.value, PeerKey.accepted_at.is_not(None)
    )
    keys: dict[str, list[Ed25519PublicKey]] = {}
    for query in (own, peers):
        for tenant_id, jwk in await session.execute(query):
            public = OKPKey.import_key(jwk).get_op_key("verify")
            if isinstance(public, Ed25519PublicKey):
                keys.setdefault(cosigner_name(tenant_id), []).append(public)
    return keys


# Rows per fetch when streaming the sealed log: a few MB of canonical JSON, one driver round trip (or thread hop).
STREAM_CHUNK = 10_000


def sealed_rows_query(dialect: str) -> Select[*tuple[Any, ...]]:
    """The sealed log in seq order as plain driver values: (seq, event id, canonical JSON or None, chain, leaf),
    then the ``StoredColumns`` of the event row (all None when it is gone).

    The event id comes as 16 bytes (``raw_uuid``), skipping the per-row conversion of the GUID type; ``LogScan``
    also takes a UUID.
    """
    seals = select(
        AuditSeal.seq,
        raw_uuid(AuditSeal.event_id, dialect),
        AuditEvent.canonical,
        AuditSeal.chain_hash,
        AuditSeal.leaf_hash,
    ).outerjoin(AuditEvent, AuditEvent.id == AuditSeal.event_id)
    return with_stored_columns(seals, dialect).order_by(AuditSeal.seq)


async def sealed_row_chunks(session: AsyncSession) -> AsyncGenerator[Sequence[Sequence[Any]]]:
    """Stream ``sealed_rows_query`` in chunks of ``STREAM_CHUNK`` rows (a server-side cursor: memory stays flat).

    The next chunk is already being fetched (by the database, or SQLite's thread) while the caller works on one.
    """
    connection = await session.connection()
    driver = connection.dialect.driver
    chunks = (
        _asyncpg_chunks(connection)
        if driver == "asyncpg"
        else _aiosqlite_chunks(connection)
        if driver == "aiosqlite"
        else _core_chunks(connection)
    )
    fetching = asyncio.ensure_future(anext(chunks, None))
    try:
        while (chunk := await fetching) is not None:
            fetching = asyncio.ensure_future(anext(chunks, None))
            await asyncio.sleep(0)  # let that fetch start before the caller takes this chunk
            yield chunk
    finally:
        if not fetching.done():
            await asyncio.wait([fetching])
        await chunks.aclose()


async def _core_chunks(connection: AsyncConnection) -> AsyncGenerator[Sequence[Sequence[Any]]]:
    query = sealed_rows_query(connection.dialect.name)
    result = await connection.stream(query.execution_options(yield_per=STREAM_CHUNK))
    try:
        async for chunk in result.partitions():
            yield chunk
    finally:
        await result.close()


async def _driver_in_snapshot(connection: AsyncConnection) -> Any:
    """The driver's own connection, its transaction begun: a statement or cursor on it reads the session's snapshot."""
    if not connection.in_transaction():
        await connection.execute(select(1))
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def _aiosqlite_chunks(connection: AsyncConnection) -> AsyncGenerator[Sequence[Sequence[Any]]]:
    # sqlite3's own tuples, a chunk per hand-off to SQLite's thread: SQLAlchemy's rows over them cost as much again.
    driver = await _driver_in_snapshot(connection)
    query = sealed_rows_query(connection.dialect.name)
    cursor = await driver.execute(str(query.compile(dialect=connection.dialect)))
    try:
        while chunk := await cursor.fetchmany(STREAM_CHUNK):
            yield chunk
    finally:
        await cursor.close()


async def _asyncpg_chunks(connection: AsyncConnection) -> AsyncGenerator[Sequence[Sequence[Any]]]:
    # asyncpg's own records unpack as rows do, and cost half as much CPU to read as SQLAlchemy's rows over them.
    driver = await _driver_in_snapshot(connection)
    # One pass over every row: compiling it (the plan's cost puts it over PostgreSQL's JIT threshold) costs about a
    # second and saves nothing.
    await driver.execute("SET LOCAL jit = off")
    query = sealed_rows_query(connection.dialect.name)
    cursor = await driver.cursor(str(query.compile(dialect=connection.dialect)))
    while chunk := await cursor.fetch(STREAM_CHUNK):
        yield chunk


async def _unsealed(session: AsyncSession, *, now: dt.datetime, sealing_grace: dt.timedelta) -> list[UnsealedEvent]:
    loose = await session.execute(
        select(AuditEvent.id, AuditEvent.canonical, AuditEvent.recorded_at)
        .outerjoin(AuditSeal, AuditSeal.event_id == AuditEvent.id)
        .where(AuditSeal.seq.is_(None))
        .order_by(AuditEvent.recorded_at, AuditEvent.id)
    )
    # Waiting for its seal is a matter of seconds: a time in the future is no more a reason to wait than an old one.
    cutoff, ahead = now - sealing_grace, now + sealing_grace
    return [
        UnsealedEvent(event_id, canonical, not cutoff <= recorded_at <= ahead)
        for event_id, canonical, recorded_at in loose
    ]


async def _notes(session: AsyncSession) -> tuple[list[str], list[tuple[uuid.UUID, str]]]:
    """Every checkpoint note (in issue order) and every co-signature with its co-signer."""
    notes = await session.scalars(
        select(AuditCheckpoint.note).order_by(AuditCheckpoint.created_at, AuditCheckpoint.size)
    )
    cosigned = await session.execute(select(AuditCosignature.cosigner_tenant_id, AuditCosignature.note))
    return list(notes), [(tenant_id, note) for tenant_id, note in cosigned]


async def load_log(session: AsyncSession, *, now: dt.datetime, sealing_grace: dt.timedelta) -> LogSnapshot:
    """The sealed log, the unsealed events, every checkpoint (in issue order) and the checkpoint keys.

    ``session`` sees every tenant's events (``snapshot_session``). An unsealed event recorded more than
    ``sealing_grace`` before ``now`` is overdue: a running sealer would have sealed it within seconds.
    Holds the whole log in memory; ``verify_database`` streams it instead and loads it only to name problems.
    """
    connection = await session.connection()
    sealed = await connection.execute(sealed_rows_query(connection.dialect.name))
    events = [
        SealedEvent(
            seq,
            _as_uuid(event_id),
            canonical,
            chain_hash,
            leaf_hash,
            None if canonical is None else StoredColumns(*stored),
        )
        for seq, event_id, canonical, chain_hash, leaf_hash, *stored in sealed
    ]
    unsealed = await _unsealed(session, now=now, sealing_grace=sealing_grace)
    notes, cosigned = await _notes(session)
    return LogSnapshot(
        events,
        unsealed,
        notes,
        await checkpoint_keys(session),
        cosignatures=[note for _, note in cosigned],
        cosigner_keys=await cosigner_public_keys(session, sorted({tenant_id for tenant_id, _ in cosigned})),
        review_marks=await review_marks(session),
    )


def _as_uuid(event_id: object) -> uuid.UUID:
    """An event id as the driver returns it (16 bytes on SQLite, a UUID on PostgreSQL) as a UUID."""
    return uuid.UUID(int=id_number(event_id))


async def review_marks(session: AsyncSession) -> list[ReviewMarkRow]:
    """Every review mark (``session`` sees every tenant's): few, since only statutory shares and break-glass uses
    are reviewed."""
    columns = (ReviewMark.event_id, ReviewMark.log_tenant_id, ReviewMark.reviewer_kind, ReviewMark.reviewer_id)
    rows = await session.execute(select(*columns, ReviewMark.at))
    return [ReviewMarkRow(*row) for row in rows]


async def verify_database(
    factory: async_sessionmaker[AsyncSession],
    *,
    origin: str | LogNames | None = None,
    now: dt.datetime,
    sealing_grace: dt.timedelta = SEALING_GRACE,
    public_keys: Sequence[Ed25519PublicKey] | None = None,
) -> VerifyResult:
    """Verify the live log. Seals nothing. ``public_keys`` pins the trusted keys instead of the database's own;
    ``origin`` pins the log's name (default: the names stored with the log).

    Streams the sealed log through a ``LogScan``; only when some row is not clean is the log read whole (in the
    same snapshot) for ``verify_log``'s full analysis, which names each problem.
    """
    async with await snapshot_session(factory) as session:
        notes, cosigned = await _notes(session)
        names = await load_names(session) if origin is None else origin
        trusted = await checkpoint_keys(session) if public_keys is None else list(public_keys)
        agency_keys = await cosigner_public_keys(session, sorted({tenant_id for tenant_id, _ in cosigned}))
        signed = check_notes(
            notes,
            origin=names,
            public_keys=trusted,
            cosignatures=[note for _, note in cosigned],
            cosigner_keys=agency_keys,
        )
        marks = await review_marks(session)
        scan = LogScan(signed.sizes, marks)
        chunks = sealed_row_chunks(session)
        try:
            async for chunk in chunks:
                if not scan.feed(chunk):
                    break
        finally:
            await chunks.aclose()
        if scan.clean:
            return scan.result(signed, await _unsealed(session, now=now, sealing_grace=sealing_grace))
        snapshot = await load_log(session, now=now, sealing_grace=sealing_grace)
    return verify_rows(snapshot.events, signed, snapshot.unsealed, snapshot.review_marks)
