"""The log's names: which name covers which checkpoint, verification across a rename, and exports carrying them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.checkpoint import Checkpoint, sign, verifier_key
from audit.cosignature import cosignature, cosigner_verifier_key, parse_cosigner_key
from audit.export import read_export, write_export
from audit.identity import LogName, LogNames, origin_problem
from audit.merkle import root_hash
from audit.verify import ProblemKind, verify_log
from tests.unit.audit.sealed_logs import EVENTS, LOG_KEY, OTHER_KEY, START

OLD, NEW = "127.0.0.1:8000/audit", "casebridge.example/audit"
# Renamed after the checkpoint of size 25: the one of size 50 is the first under the new name.
NAMES = LogNames((LogName(OLD, 1), LogName(NEW, 26)))
LEAVES = [e.leaf_hash for e in EVENTS]


def note(size: int, origin: str) -> str:
    return sign(Checkpoint(origin, size, root_hash(LEAVES[:size])), name=origin, private_key=LOG_KEY)


NOTES = [note(10, OLD), note(25, OLD), note(50, NEW)]


def problems(result: object) -> list[tuple[ProblemKind, str]]:
    return [(p.kind, p.detail) for p in result.problems]  # type: ignore[attr-defined] # a VerifyResult


def test_each_size_is_covered_by_the_name_in_force_when_it_was_signed() -> None:
    assert [NAMES.at(size) for size in (1, 25, 26, 10**12)] == [OLD, OLD, NEW, NEW]
    assert NAMES.current == NEW
    assert LogNames().at(5) is None
    assert LogNames().current is None
    # Renamed twice before any new checkpoint: the later name wins; a name used again counts once.
    again = LogNames((*NAMES.names, LogName("third.example/audit", 26), LogName(OLD, 51)))
    assert (again.at(26), again.at(51)) == ("third.example/audit", OLD)
    assert again.origins() == [OLD, NEW, "third.example/audit"]
    assert LogNames.of(OLD) == LogNames((LogName(OLD, 1),))


@pytest.mark.parametrize(
    ("origin", "fine"),
    [
        (NEW, True),
        ("host:8443/audit", True),
        ("", False),
        ("a b", False),
        ("a+b", False),
        ("a\nb", False),
        ("x" * 256, False),
        (None, False),
    ],
)
def test_only_a_signed_note_key_name_can_name_the_log(origin: object, fine: bool) -> None:
    assert (origin_problem(origin) is None) is fine


def test_a_renamed_log_verifies_old_and_new_checkpoints_under_their_own_names() -> None:
    result = verify_log(EVENTS, NOTES, origin=NAMES, public_keys=[LOG_KEY.public_key()])
    assert result.ok, result.problems
    assert result.checkpoints == 3
    # Under one name only, the checkpoints signed under the other are not this log's.
    for single in (OLD, NEW):
        result = verify_log(EVENTS, NOTES, origin=single, public_keys=[LOG_KEY.public_key()])
        assert {kind for kind, _ in problems(result)} == {ProblemKind.BAD_SIGNATURE}


def test_a_checkpoint_under_a_name_not_in_force_at_its_size_is_refused() -> None:
    late = [note(10, OLD), note(25, OLD), note(50, OLD)]  # signed under the old name after the rename
    result = verify_log(EVENTS, late, origin=NAMES, public_keys=[LOG_KEY.public_key()])
    assert problems(result) == [
        (
            ProblemKind.BAD_SIGNATURE,
            f"the checkpoint of size 50 is signed as {OLD!r}, but the log was named {NEW!r} at that size",
        )
    ]
    foreign = [note(10, "elsewhere.example/audit")]
    result = verify_log(EVENTS, foreign, origin=NAMES, public_keys=[LOG_KEY.public_key()])
    assert "is for the log 'elsewhere.example/audit'" in problems(result)[0][1]
    nameless = verify_log(EVENTS, NOTES, origin=LogNames(), public_keys=[LOG_KEY.public_key()])
    assert all("the log's name is not recorded" in detail for _, detail in problems(nameless))
    assert len(problems(nameless)) == 3


def cosigned(size: int, origin: str, cosigner: str) -> str:
    """An agency's co-signature as it is stored: the checkpoint body and its cosignature/v1 line alone."""
    checkpoint = Checkpoint(origin, size, root_hash(LEAVES[:size]))
    line = cosignature(checkpoint, name=cosigner, private_key=OTHER_KEY, timestamp=1_700_000_000)
    return checkpoint.body() + "\n" + line.line()


def test_cosignatures_are_checked_under_the_name_at_their_size() -> None:
    cosigner = "casebridge-cosigner/01960000-0000-7000-8000-000000000001"
    keys = {cosigner: [OTHER_KEY.public_key()]}
    for size, origin, found in (
        (10, OLD, []),
        (50, NEW, []),
        (10, NEW, ["co-signature 1 (size 10) is not for this log"]),
    ):
        result = verify_log(
            EVENTS,
            NOTES,
            origin=NAMES,
            public_keys=[LOG_KEY.public_key()],
            cosignatures=[cosigned(size, origin, cosigner)],
            cosigner_keys=keys,
        )
        assert [detail for _, detail in problems(result)] == found


def test_an_export_carries_every_name_and_verifies_across_the_rename(tmp_path: Path) -> None:
    cosigner = "casebridge-cosigner/01960000-0000-7000-8000-000000000001"
    path = write_export(
        tmp_path / "audit.jsonl",
        origin=NAMES,
        exported_at=START,
        verifier_keys=[verifier_key(NEW, LOG_KEY.public_key())],
        events=EVENTS,
        checkpoints=NOTES,
        cosigner_keys=[cosigner_verifier_key(cosigner, OTHER_KEY.public_key())],
    ).file
    header = json.loads(path.read_text().splitlines()[0])
    assert (header["version"], header["origin"]) == (3, NEW)
    assert header["origins"] == [{"origin": OLD, "from_size": 1}, {"origin": NEW, "from_size": 26}]
    assert parse_cosigner_key(header["cosigner_keys"][0])[0] == cosigner
    export = read_export(path)
    assert export.names == NAMES
    assert export.cosigner_keys == {cosigner: [OTHER_KEY.public_key()]}
    assert verify_log(export.events, export.checkpoints, origin=export.names, public_keys=export.public_keys).ok

    lines = path.read_text().splitlines(keepends=True)
    for edit, message in (
        ({"origins": [{"origin": OLD, "from_size": 1}]}, "the header's origin must be the last of its origins"),
        ({"origins": [{"origin": "a b", "from_size": 1}, {"origin": NEW, "from_size": 26}]}, "name 1 of the log"),
        ({"origins": [{"origin": NEW, "from_size": 0}]}, "from_size must be at least 1"),
    ):
        damaged = tmp_path / "damaged.jsonl"
        damaged.write_text(json.dumps({**header, **edit}) + "\n" + "".join(lines[1:]))
        with pytest.raises(ValueError, match=message):
            read_export(damaged)


def test_an_older_export_whose_header_names_the_log_wrongly_verifies_under_the_names_it_was_signed_under(
    tmp_path: Path,
) -> None:
    # Before version 3 the exporting command wrote the origin from its own port or base URL, which could be wrong.
    path = write_export(
        tmp_path / "audit.jsonl",
        origin="127.0.0.1:9999/audit",
        exported_at=START,
        verifier_keys=[verifier_key(NEW, LOG_KEY.public_key())],
        events=EVENTS,
        checkpoints=NOTES,
    ).file
    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["version"] = 2
    del header["origins"]
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    export = read_export(path)
    assert export.origin == "127.0.0.1:9999/audit"
    assert export.names == NAMES
    assert verify_log(export.events, export.checkpoints, origin=export.names, public_keys=export.public_keys).ok
    header["origin"] = "a b"
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    with pytest.raises(ValueError, match="the origin cannot name a log"):
        read_export(path)
