"""Finding a person by their details: the normalisation of what is typed, the keyed digests, and the rule that turns
matching records into one person (exchange/cases/lookup.py)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from exchange.cases.lookup import (
    Candidate,
    Found,
    NoMatch,
    PersonIndex,
    SeveralPeople,
    choose,
    digests,
    folded_name,
    lookup_key_purpose,
    snils_digits,
)
from exchange.cases.models import Subject
from tenants.errors import InvalidInput
from tenants.keys import MasterKey

KEY = bytes(range(32))
BIRTH = dt.date(2015, 4, 12)


@pytest.mark.parametrize(
    "typed",
    ["Иванова Мария Петровна", "  иванова   мария\tпетровна ", "ИВАНОВА МАРИЯ ПЕТРОВНА", "Иванова\u00a0Мария Петровна"],
)
def test_names_are_matched_whatever_their_case_and_spacing(typed: str) -> None:
    assert folded_name(typed) == "иванова мария петровна"
    assert digests(KEY, full_name=typed, birth_date=BIRTH, snils=None) == digests(
        KEY, full_name="Иванова Мария Петровна", birth_date=BIRTH, snils=None
    )


def test_yo_is_read_as_ye() -> None:
    assert folded_name("Сёмина Алёна") == folded_name("Семина Алена") == "семина алена"


@pytest.mark.parametrize("typed", ["112-233-445 95", "11223344595", "112 233 445 95", "112-233-445-95"])
def test_a_snils_is_its_eleven_digits(typed: str) -> None:
    assert snils_digits(typed) == "11223344595"


@pytest.mark.parametrize("typed", ["112-233-445", "112-233-445 951", "112-233-44a 95", "١١٢٢٣٣٤٤٥٩٥", ""])
def test_anything_else_is_no_snils(typed: str) -> None:
    with pytest.raises(InvalidInput, match="11 digits"):
        snils_digits(typed)


def test_each_detail_changes_the_digest_and_fields_never_collide() -> None:
    base = digests(KEY, full_name="Иванова Мария", birth_date=BIRTH, snils="112-233-445 95")
    assert base.name_birth
    assert base.snils
    assert len(base.name_birth) == len(base.snils) == 64
    other_day = digests(KEY, full_name="Иванова Мария", birth_date=dt.date(2015, 4, 13), snils=None)
    other_name = digests(KEY, full_name="Иванова Марина", birth_date=BIRTH, snils=None)
    other_key = digests(bytes(32), full_name="Иванова Мария", birth_date=BIRTH, snils="112-233-445 95")
    assert len({base.name_birth, other_day.name_birth, other_name.name_birth, other_key.name_birth}) == 4
    assert other_key.snils != base.snils
    # The same text as a name and as a SNILS gives different digests: the field is part of what is keyed.
    assert (
        digests(KEY, full_name="11223344595", birth_date=None, snils="11223344595").snils
        != digests(KEY, full_name="11223344595", birth_date=BIRTH, snils=None).name_birth
    )


def test_a_name_without_a_birth_date_gives_no_name_digest() -> None:
    assert digests(KEY, full_name="Иванова Мария", birth_date=None, snils=None).name_birth is None
    assert digests(KEY, full_name="   ", birth_date=BIRTH, snils=None).name_birth is None


def test_each_tenant_has_its_own_lookup_key_apart_from_its_pseudonym_key() -> None:
    master = MasterKey(bytes(range(32)))
    one, two = uuid.uuid4(), uuid.uuid4()
    index = PersonIndex(lambda tenant: master.derive(lookup_key_purpose(tenant)))
    first = index.digests(one, full_name="Иванова Мария", birth_date=BIRTH, snils=None)
    assert first == index.digests(one, full_name="иванова  мария", birth_date=BIRTH, snils=None)
    assert first != index.digests(two, full_name="Иванова Мария", birth_date=BIRTH, snils=None)
    assert master.derive(lookup_key_purpose(one)) != master.derive(f"casebridge/pseudonym/v1/{one}")


def test_a_subject_is_indexed_from_its_fields_as_recorded() -> None:
    tenant = uuid.uuid4()
    index = PersonIndex(lambda _: KEY)
    subject = Subject(tenant_id=tenant)
    fields: dict[str, object] = {
        "full_name": "Иванова Мария",
        "birth_date": "2015-04-12",
        "identifiers": {"snils": "112-233-445 95", "birth_certificate": None},
    }
    index.index(subject, fields)
    expected = digests(KEY, full_name="ИВАНОВА МАРИЯ", birth_date=BIRTH, snils="11223344595")
    assert (subject.name_lookup, subject.snils_lookup) == (expected.name_birth, expected.snils)
    index.index(subject, {"full_name": "Иванова Мария", "birth_date": None, "identifiers": {}})
    assert (subject.name_lookup, subject.snils_lookup) == (None, None)


A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))
X, Y = "snils-x", "snils-y"


@pytest.mark.parametrize(
    ("rows", "snils", "expected"),
    [
        ([], None, NoMatch()),
        ([], X, NoMatch()),
        ([(A, None)], None, Found((A,))),
        # one person in two cases, once with a SNILS and once without: both records are theirs
        ([(B, X), (A, None)], None, Found((A, B))),
        ([(B, X), (A, None)], X, Found((A, B))),
        # a SNILS that contradicts the only recorded one finds no one; a record without one cannot contradict it
        ([(A, X)], Y, NoMatch()),
        ([(A, None)], X, Found((A,))),
        # two people share the name and birth date: without a SNILS it cannot be told which one is meant
        ([(A, X), (B, Y)], None, SeveralPeople()),
        ([(A, X), (B, Y)], X, Found((A,))),
        ([(A, X), (B, Y), (C, X)], Y, Found((B,))),
        # ... and a record without a SNILS could be either of them, so it is nobody's
        ([(A, X), (B, Y), (C, None)], X, Found((A,))),
        ([(A, X), (B, Y), (C, None)], None, SeveralPeople()),
    ],
)
def test_matching_records_make_one_person(
    rows: list[tuple[uuid.UUID, str | None]], snils: str | None, expected: object
) -> None:
    assert choose([Candidate(subject_id, digest) for subject_id, digest in rows], snils) == expected
