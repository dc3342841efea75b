"""What the DPO's queries read beside each event is derived from the sealed event, and verify names each disagreement.

The stored values are given here as each database driver returns them to ``audit verify``: UUIDs as 16 bytes
(SQLite's storage; PostgreSQL's through uuid_send), times as SQLite's text or PostgreSQL's aware datetimes, the
pseudonym rows as the JSON array each database aggregates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from sqlalchemy.dialects import sqlite

from audit.derived import (
    COLUMNS,
    Disagreement,
    ReviewMarkRow,
    SearchCheck,
    StoredColumns,
    decode_fields,
    disagreeing_columns,
    event_columns,
    export_columns,
    imported_columns,
    sqlite_time,
    subject_difference,
)
from audit.events import Action, Actor, AuditEventRecord, Outcome
from audit.export import read_export, write_export
from audit.models import AuditEvent
from audit.verify import ProblemKind, SealedEvent, VerifyResult, check_notes, verify_log, verify_rows
from tests.unit.audit.sealed_logs import LOG_KEY, ORIGIN, checkpoint_notes, seal

TENANT = uuid.UUID("01960000-0000-7000-8000-000000000001")
PARTNER = uuid.UUID("01960000-0000-7000-8000-000000000002")
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
DPO = uuid.UUID("01960000-0000-7000-8000-0000000000d0")
SIZE = 12
# Events 4 and 9 are shares under a statute that a DPO reviews; event 11 is the review of event 4.
STATUTORY, REVIEW = (4, 9), 11


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=(0x0196 << 112) | (7 << 76) | (2 << 62) | n)


def _record(n: int) -> AuditEventRecord:
    if n == REVIEW:
        return AuditEventRecord(
            id=_id(n),
            time=START + dt.timedelta(seconds=n),
            log_tenant_id=TENANT,
            actor=Actor(kind="user", id=DPO, tenant_id=TENANT, role="dpo"),
            action=Action.AUDIT_REVIEW_MARK,
            outcome=Outcome.SUCCESS,
            resource_type="audit_event",
            resource_id=str(_id(STATUTORY[0])),
        )
    return AuditEventRecord(
        id=_id(n),
        # Every other event on a whole second: the schema then writes its time without a fraction.
        time=START + dt.timedelta(seconds=n, microseconds=0 if n % 2 else 1500 * n),
        log_tenant_id=TENANT,
        actor=Actor(kind="user", id=uuid.UUID(int=n + 1000), tenant_id=PARTNER if n % 3 else TENANT, role="intake"),
        action=Action.EXCHANGE_REFERRAL_SEND if n in STATUTORY else Action.EXCHANGE_REFERRAL_READ,
        outcome=Outcome.SUCCESS,
        resource_type="referral",
        resource_id=str(uuid.UUID(int=n + 2000)),
        subjects=tuple(f"ps_{n:030x}{k:02x}" for k in range(n % 3)),
        legal_basis="statutory" if n in STATUTORY else "consent",
    )


CANONICAL = [rfc8785.dumps(_record(n).to_json()).decode() for n in range(1, SIZE + 1)]


def sqlite_form(canonical: str) -> StoredColumns:
    """What SQLite stores for an event, as the sqlite3 module returns it."""
    row = event_columns(decode_fields(canonical))
    subjects = decode_fields(canonical).subjects
    return StoredColumns(
        _bytes(row["log_tenant_id"]),
        sqlite_time(row["recorded_at"]),
        row["action"],
        row["outcome"],
        _bytes(row["actor_id"]),
        _bytes(row["actor_tenant_id"]),
        row["resource_id"],
        json.dumps(subjects, separators=(",", ":")),
    )


def postgresql_form(canonical: str) -> StoredColumns:
    """What PostgreSQL stores for an event, as asyncpg returns the verify query's columns."""
    row = event_columns(decode_fields(canonical))
    subjects = decode_fields(canonical).subjects
    return StoredColumns(
        _bytes(row["log_tenant_id"]),
        row["recorded_at"],
        row["action"],
        row["outcome"],
        _bytes(row["actor_id"]),
        _bytes(row["actor_tenant_id"]),
        row["resource_id"],
        json.dumps(sorted(subjects)) if subjects else None,
    )


def _bytes(value: uuid.UUID | None) -> bytes | None:
    return None if value is None else value.bytes


FORMS = {"sqlite": sqlite_form, "postgresql": postgresql_form}
MARK = ReviewMarkRow(_id(STATUTORY[0]), TENANT, "user", DPO, START + dt.timedelta(seconds=REVIEW))


def sealed_log(form: Callable[[str], StoredColumns]) -> list[SealedEvent]:
    return [dataclasses.replace(e, stored=form(e.canonical or "")) for e in seal(CANONICAL)]


def check(events: list[SealedEvent], marks: list[ReviewMarkRow] | None = None) -> VerifyResult:
    return verify_log(
        events,
        checkpoint_notes(events, (SIZE,)),
        origin=ORIGIN,
        public_keys=[LOG_KEY.public_key()],
        review_marks=[MARK] if marks is None else marks,
    )


def findings(result: VerifyResult) -> list[tuple[ProblemKind, int | None]]:
    return [(p.kind, p.seq) for p in result.problems]


def with_stored(events: list[SealedEvent], seq: int, **changes: Any) -> list[SealedEvent]:
    edited = list(events)
    stored = edited[seq - 1].stored
    assert stored is not None
    edited[seq - 1] = dataclasses.replace(edited[seq - 1], stored=stored._replace(**changes))
    return edited


@pytest.fixture(params=sorted(FORMS))
def form(request: pytest.FixtureRequest) -> Callable[[str], StoredColumns]:
    return FORMS[request.param]


# -- derivation -------------------------------------------------------------------------------------------------


def test_every_search_column_is_read_out_of_the_sealed_text() -> None:
    record = _record(5)
    assert event_columns(decode_fields(CANONICAL[4])) == {
        "id": record.id,
        "log_tenant_id": TENANT,
        "recorded_at": record.time,
        "action": "exchange:referral:read",
        "outcome": "success",
        "actor_id": record.actor.id,
        "actor_tenant_id": PARTNER,
        "resource_id": record.resource_id,
    }
    assert decode_fields(CANONICAL[4]).subjects == list(record.subjects)


@pytest.mark.parametrize(
    "time",
    [
        START,
        START + dt.timedelta(microseconds=1),
        dt.datetime(2026, 3, 2, 12, 0, 0, 250, tzinfo=dt.timezone(dt.timedelta(hours=3))),
    ],
    ids=["whole second", "fraction", "another offset"],
)
def test_sqlite_time_is_what_sqlalchemy_stores(time: dt.datetime) -> None:
    column = AuditEvent.__table__.c.recorded_at.type
    stored = column.dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    assert stored is not None
    assert sqlite_time(time) == stored(time)
    spelled = time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")  # as the event schema writes it
    assert disagreeing_columns(decode_fields(_retimed(spelled)), sqlite_form(_retimed(spelled))) == []


def _retimed(time: str) -> str:
    event = json.loads(CANONICAL[0])
    return rfc8785.dumps({**event, "time": time}).decode()


# -- one column at a time -------------------------------------------------------------------------------------------

OTHER_ID = uuid.UUID("01960000-0000-7000-8000-0000000000ff")
# column -> (a rewritten value as SQLite returns it, the same as PostgreSQL returns it)
REWRITES: dict[str, tuple[object, object]] = {
    "log_tenant_id": (PARTNER.bytes, PARTNER.bytes),
    "recorded_at": ("2026-03-02 08:00:00.000000", START - dt.timedelta(hours=1)),
    "action": ("exchange:referral:list", "exchange:referral:list"),
    "outcome": ("denied", "denied"),
    "actor_id": (OTHER_ID.bytes, OTHER_ID.bytes),
    "actor_tenant_id": (None, None),
    "resource_id": ("elsewhere", "elsewhere"),
}


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("backend", sorted(FORMS))
def test_each_rewritten_column_is_named_at_its_event(column: str, backend: str) -> None:
    events = sealed_log(FORMS[backend])
    assert check(events).ok
    value = REWRITES[column][0 if backend == "sqlite" else 1]
    result = check(with_stored(events, 7, **{column: value}))
    assert findings(result) == [(ProblemKind.COLUMN_CHANGED, 7)]
    assert result.problems[0].detail == f"event {_id(7)} (seq 7): {column} on its row disagree with the sealed event"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor_id", str(uuid.UUID(int=1007))),  # the UUID's text where SQLite holds 16 bytes: `= :id` misses it
        ("actor_id", uuid.UUID(int=1007).bytes[:15]),
        ("log_tenant_id", None),
        ("recorded_at", "2026-03-02T09:00:07.000000"),  # the same instant, spelled so that SQLite sorts it elsewhere
        ("recorded_at", "2026-03-02 09:00:07"),
        ("recorded_at", dt.datetime(2026, 3, 2, 9, 0, 7)),  # no offset
        ("action", b"exchange:referral:read"),  # bytes where text belongs: `action = :text` never matches them
        ("resource_id", None),
    ],
    ids=["uuid as text", "short bytes", "null tenant", "T separator", "no fraction", "naive", "bytes", "null"],
)
def test_a_stored_value_of_another_type_or_spelling_is_a_change(column: str, value: object) -> None:
    events = sealed_log(sqlite_form)
    result = check(with_stored(events, 7, **{column: value}))
    assert findings(result) == [(ProblemKind.COLUMN_CHANGED, 7)]
    assert column in result.problems[0].detail


def test_several_rewritten_columns_are_one_problem_naming_them_all(form: Callable[[str], StoredColumns]) -> None:
    events = with_stored(sealed_log(form), 5, action="exchange:case:list", actor_id=OTHER_ID.bytes)
    result = check(events)
    assert findings(result) == [(ProblemKind.COLUMN_CHANGED, 5)]
    assert "action, actor_id on its row" in result.problems[0].detail


# -- pseudonym rows -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["ps_a", "ps_b"], (0, 0)),
        (["ps_b", "ps_a"], (0, 0)),  # the order rows come back in is the database's business
        (["ps_a"], (1, 0)),
        ([], (2, 0)),
        (["ps_a", "ps_b", "ps_c"], (0, 1)),
        (["ps_a", "ps_b", "ps_b"], (0, 1)),  # a second row for one pseudonym
        (["ps_a", "ps_c"], (1, 1)),  # moved to another pseudonym
        (["ps_a", None], (1, 1)),  # a value that is not text (SQLite's aggregate gives null for it)
        (["ps_a,ps_b"], (2, 1)),  # one row holding both names finds neither
    ],
)
def test_pseudonym_rows_are_compared_as_a_multiset(rows: list[object], expected: tuple[int, int]) -> None:
    assert subject_difference(["ps_a", "ps_b"], json.dumps(rows)) == expected
    assert subject_difference(["ps_a", "ps_b"], rows) == expected


def test_deleted_and_added_pseudonym_rows_are_named_at_their_event(form: Callable[[str], StoredColumns]) -> None:
    events = sealed_log(form)
    two = decode_fields(CANONICAL[4]).subjects  # event 5 names two subjects
    assert len(two) == 2
    events = with_stored(events, 5, subjects=json.dumps(two[:1]))
    events = with_stored(events, 6, subjects=json.dumps(["ps_" + "0" * 32]))  # event 6 names none
    result = check(events)
    assert findings(result) == [(ProblemKind.SUBJECT_DELETED, 5), (ProblemKind.SUBJECT_INSERTED, 6)]
    assert result.problems[0].detail == (
        f"event {_id(5)} (seq 5) names 1 subject(s) with no pseudonym row: their subject access reports leave it out"
    )
    assert "ps_" not in " ".join(p.detail for p in result.problems)  # the pseudonyms themselves stay out


def test_the_probe_rewriting_every_event_is_reported_for_every_event(form: Callable[[str], StoredColumns]) -> None:
    """Every pseudonym row deleted and action and actor rewritten on every event, as the outside probe did."""
    events = sealed_log(form)
    for seq in range(1, SIZE + 1):
        events = with_stored(events, seq, action="tenants:directory:read", actor_id=OTHER_ID.bytes, subjects="[]")
    result = check(events)
    named = {seq for seq in range(1, SIZE + 1) if decode_fields(CANONICAL[seq - 1]).subjects}
    expected = [(ProblemKind.COLUMN_CHANGED, seq) for seq in range(1, SIZE + 1)]
    expected += [(ProblemKind.SUBJECT_DELETED, seq) for seq in named]
    assert sorted(findings(result), key=lambda f: (f[1] or 0, list(ProblemKind).index(f[0]))) == findings(result)
    assert sorted(findings(result)) == sorted(expected)
    assert result.size == SIZE  # the chain and the tree are untouched: only what was stored beside them
    assert result.checkpoints == 1


def test_a_chain_problem_elsewhere_does_not_hide_a_rewritten_column(form: Callable[[str], StoredColumns]) -> None:
    events = with_stored(sealed_log(form), 8, outcome="denied")
    events[2] = dataclasses.replace(events[2], chain_hash=bytes(32))  # sends verify to its full analysis
    assert findings(check(events)) == [(ProblemKind.CHANGED, 3), (ProblemKind.COLUMN_CHANGED, 8)]


def test_the_streaming_scan_and_the_full_analysis_name_the_same_disagreements(
    form: Callable[[str], StoredColumns],
) -> None:
    events = with_stored(sealed_log(form), 5, action="exchange:case:list", subjects="[]")
    events = with_stored(events, 6, subjects=json.dumps(["ps_" + "0" * 32]))
    forged = ReviewMarkRow(_id(STATUTORY[1]), TENANT, "user", DPO, START)
    notes = checkpoint_notes(events, (SIZE,))
    streamed = check(events, marks=[forged])
    analysed = verify_rows(events, check_notes(notes, origin=ORIGIN, public_keys=[LOG_KEY.public_key()]), (), [forged])
    assert streamed == analysed
    assert findings(streamed) == [
        (ProblemKind.COLUMN_CHANGED, 5),
        (ProblemKind.SUBJECT_DELETED, 5),
        (ProblemKind.SUBJECT_INSERTED, 6),
        (ProblemKind.REVIEW_DELETED, REVIEW),
        (ProblemKind.REVIEW_INSERTED, None),
    ]


def test_columns_beside_an_edited_event_are_not_checked_against_the_edit() -> None:
    events = sealed_log(sqlite_form)
    text = events[6].canonical or ""
    events[6] = dataclasses.replace(events[6], canonical=text.replace("consent", "conseNt"))
    assert findings(check(events)) == [(ProblemKind.CHANGED, 7)]


def test_sealed_content_that_is_no_event_has_no_derivable_row() -> None:
    text = json.dumps({"id": str(_id(1)), "action": "exchange:case:read"})
    (event,) = seal([text])
    stored = sqlite_form(CANONICAL[0])
    result = verify_log([dataclasses.replace(event, stored=stored)], [], origin=ORIGIN, public_keys=[])
    assert findings(result) == [(ProblemKind.COLUMN_CHANGED, 1)]
    assert "is not a version-1 event" in result.problems[0].detail
    assert verify_log([event], [], origin=ORIGIN, public_keys=[]).ok  # nothing stored beside it: nothing to check


def test_every_disagreement_is_a_problem_kind() -> None:
    assert {kind.value for kind in Disagreement} <= {kind.value for kind in ProblemKind}


# -- review marks ---------------------------------------------------------------------------------------------------


def test_a_review_mark_backed_by_its_sealed_review_verifies(form: Callable[[str], StoredColumns]) -> None:
    assert check(sealed_log(form)).ok


def test_a_deleted_review_mark_is_named_at_its_review() -> None:
    result = check(sealed_log(sqlite_form), marks=[])
    assert findings(result) == [(ProblemKind.REVIEW_DELETED, REVIEW)]
    assert str(_id(STATUTORY[0])) in result.problems[0].detail


def test_a_forged_review_mark_is_named_with_the_event_it_hides() -> None:
    forged = ReviewMarkRow(_id(STATUTORY[1]), TENANT, "user", DPO, START)
    result = check(sealed_log(sqlite_form), marks=[MARK, forged])
    assert findings(result) == [(ProblemKind.REVIEW_INSERTED, None)]
    assert result.problems[0].detail == (
        f"event {_id(STATUTORY[1])} has a review mark that no sealed review accounts for: it was taken off the "
        "review queue"
    )


@pytest.mark.parametrize(
    "mark",
    [
        dataclasses.replace(MARK, reviewer_id=OTHER_ID),
        dataclasses.replace(MARK, log_tenant_id=PARTNER),
        dataclasses.replace(MARK, reviewer_kind="client"),
    ],
    ids=["reviewer", "trail", "reviewer kind"],
)
def test_a_review_mark_that_disagrees_with_its_review_is_named(mark: ReviewMarkRow) -> None:
    result = check(sealed_log(sqlite_form), marks=[mark])
    assert findings(result) == [(ProblemKind.REVIEW_INSERTED, REVIEW)]


def test_a_review_waiting_for_its_seal_accounts_for_its_mark() -> None:
    review = decode_fields(CANONICAL[REVIEW - 1])
    search = SearchCheck({MARK.event_id: MARK})
    search.pending(review)
    assert search.finish() == []
    assert [f.kind for f in SearchCheck({MARK.event_id: MARK}).finish()] == [Disagreement.REVIEW_INSERTED]


def test_a_second_review_shows_that_the_first_ones_mark_was_deleted() -> None:
    search = SearchCheck({MARK.event_id: MARK})
    review = decode_fields(CANONICAL[REVIEW - 1])
    search.event(REVIEW, review, sqlite_form(CANONICAL[REVIEW - 1]))
    search.event(REVIEW + 5, review, sqlite_form(CANONICAL[REVIEW - 1]))
    assert [(f.kind, f.seq) for f in search.finish()] == [(Disagreement.REVIEW_DELETED, REVIEW)]


def test_reviews_that_were_refused_need_no_mark() -> None:
    refused = rfc8785.dumps({**json.loads(CANONICAL[REVIEW - 1]), "outcome": "denied"}).decode()
    search = SearchCheck({})
    search.event(REVIEW, decode_fields(refused), sqlite_form(refused))
    assert search.finish() == []


# -- the export -----------------------------------------------------------------------------------------------------


def _export(
    path: Path, events: list[SealedEvent], marks: list[ReviewMarkRow], at: dt.datetime, *, checkpoint_at: int = SIZE
) -> Path:
    """An export of `events` with one checkpoint, at `checkpoint_at` events, and these review marks."""
    write_export(
        path,
        origin=ORIGIN,
        exported_at=at,
        verifier_keys=[],
        events=events,
        checkpoints=checkpoint_notes(events, (checkpoint_at,)),
        review_marks=marks,
    )
    return path


def _verify_export(path: Path) -> VerifyResult:
    export = read_export(path)
    return verify_log(
        export.events,
        export.checkpoints,
        origin=ORIGIN,
        public_keys=[LOG_KEY.public_key()],
        review_marks=export.review_marks,
        exported_at=export.written_at,
    )


def test_an_export_carries_what_was_stored_and_its_verifier_checks_it(
    tmp_path: Path, form: Callable[[str], StoredColumns]
) -> None:
    later = START + dt.timedelta(hours=1)
    clean = _export(tmp_path / "clean.jsonl", sealed_log(form), [MARK], later)
    assert _verify_export(clean).ok
    assert read_export(clean).review_marks == [MARK]

    tampered = with_stored(sealed_log(form), 5, actor_id=OTHER_ID.bytes, subjects="[]")
    forged = ReviewMarkRow(_id(STATUTORY[1]), TENANT, "user", DPO, START)
    result = _verify_export(_export(tmp_path / "tampered.jsonl", tampered, [forged], later))
    assert findings(result) == [
        (ProblemKind.COLUMN_CHANGED, 5),
        (ProblemKind.SUBJECT_DELETED, 5),
        (ProblemKind.REVIEW_DELETED, REVIEW),
        (ProblemKind.REVIEW_INSERTED, None),
    ]


def test_an_export_names_a_value_of_the_wrong_type_without_its_content(tmp_path: Path) -> None:
    events = with_stored(sealed_log(sqlite_form), 3, action=b"exchange:referral:read", recorded_at=12)
    path = _export(tmp_path / "audit.jsonl", events, [MARK], START + dt.timedelta(hours=1))
    line = json.loads(path.read_text(encoding="utf-8").splitlines()[3])
    assert line["columns"]["action"] == {"stored_as": "bytes"}
    assert line["columns"]["recorded_at"] == {"stored_as": "int"}
    assert findings(_verify_export(path)) == [(ProblemKind.COLUMN_CHANGED, 3)]


def test_an_edited_column_in_an_export_file_is_found(tmp_path: Path) -> None:
    path = _export(tmp_path / "audit.jsonl", sealed_log(sqlite_form), [MARK], START + dt.timedelta(hours=1))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].replace('"outcome":"success"', '"outcome":"denied"')  # the columns, not the escaped event
    path.write_text("".join(lines), encoding="utf-8")
    assert findings(_verify_export(path)) == [(ProblemKind.COLUMN_CHANGED, 2)]


def test_a_mark_made_just_before_the_export_may_wait_for_its_review(tmp_path: Path) -> None:
    """An export holds sealed events only: the review of a mark made within the sealing grace may not be in it."""
    events = sealed_log(sqlite_form)[: REVIEW - 1]
    fresh = dataclasses.replace(MARK, at=START + dt.timedelta(minutes=30))
    at = fresh.at + dt.timedelta(seconds=20)

    def export_with(mark: ReviewMarkRow, name: str) -> list[tuple[ProblemKind, int | None]]:
        return findings(_verify_export(_export(tmp_path / name, events, [mark], at, checkpoint_at=REVIEW - 1)))

    assert export_with(fresh, "fresh.jsonl") == []
    assert export_with(MARK, "old.jsonl") == [(ProblemKind.REVIEW_INSERTED, None)]


def test_export_columns_read_back_as_the_driver_returned_them(form: Callable[[str], StoredColumns]) -> None:
    stored = form(CANONICAL[4])
    values = export_columns(stored)
    assert values["recorded_at"] == decode_fields(CANONICAL[4]).time
    again = imported_columns([values[name] for name in COLUMNS], values["subjects"])
    assert disagreeing_columns(decode_fields(CANONICAL[4]), again) == []
    assert subject_difference(decode_fields(CANONICAL[4]).subjects, again.subjects) == (0, 0)
