"""The sharing policy: consent and statutory bases, all-or-nothing permits, deny codes, and who may give consent."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.cases.policy import (
    SPECIAL_CATEGORIES,
    STATUTORY_CATALOGUE,
    AgeRules,
    Category,
    ConsentBasis,
    ConsentStatus,
    ConsentView,
    Deny,
    DenyCode,
    LegalBasis,
    Permit,
    Relation,
    ShareRequest,
    StatutoryBasis,
    StatutoryProvision,
    age_on,
    consent_giver_problem,
    decide,
    permitted_categories,
)
from tenants.models import TenantKind

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
CHILD = uuid.UUID("00000000-0000-7000-8000-00000000c001")
SIBLING = uuid.UUID("00000000-0000-7000-8000-00000000c002")
RECIPIENT = uuid.UUID("00000000-0000-7000-8000-0000000000a1")
OTHER_TENANT = uuid.UUID("00000000-0000-7000-8000-0000000000a2")
KIND = "juvenile_commission"
PURPOSE = "social_support"
T = TypeVar("T")
ART_9 = "120-FZ art. 9"
ART_122 = "SK RF art. 122"
GUARDIANSHIP = "guardianship_body"
JUSTIFICATION = "The child was found alone at home for three days; the school reported it."
STATUTE = StatutoryBasis(ART_9, JUSTIFICATION)


def consent(**overrides: Any) -> ConsentView:
    """A consent in force at NOW for CHILD, identity and family, to RECIPIENT, for PURPOSE."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "subject_id": CHILD,
        "status": ConsentStatus.ACTIVE,
        "purposes": frozenset({PURPOSE}),
        "categories": frozenset({Category.IDENTITY, Category.FAMILY}),
        "recipient_tenants": frozenset({RECIPIENT}),
        "recipient_kinds": frozenset(),
        "valid_from": NOW - 24 * HOUR,
        "valid_until": NOW + 24 * HOUR,
        "withdrawn_at": None,
    }
    return ConsentView(**(fields | overrides))


def request(
    *categories: Category,
    subjects: tuple[uuid.UUID, ...] = (CHILD,),
    basis: LegalBasis | None = None,
    **overrides: Any,
) -> ShareRequest:
    fields: dict[str, Any] = {
        "subject_ids": subjects,
        "categories": frozenset(categories or {Category.IDENTITY, Category.FAMILY}),
        "recipient_tenant_id": RECIPIENT,
        "recipient_kind": KIND,
        "purpose": PURPOSE,
        "basis": basis or ConsentBasis(),
    }
    return ShareRequest(**(fields | overrides))


# Each row: a consent state, and what a consent-basis request for identity + family makes of it.
CONSENT_STATES: list[tuple[str, dict[str, Any], DenyCode | None]] = [
    ("in force", {}, None),
    ("in force, open-ended", {"valid_until": None}, None),
    ("starts exactly now", {"valid_from": NOW}, None),
    ("withdrawal scheduled later", {"withdrawn_at": NOW + HOUR}, None),
    ("withdrawn", {"status": ConsentStatus.WITHDRAWN, "withdrawn_at": NOW - HOUR}, DenyCode.CONSENT_WITHDRAWN),
    ("withdrawn status, no time", {"status": ConsentStatus.WITHDRAWN}, DenyCode.CONSENT_WITHDRAWN),
    ("active row, withdrawn_at passed", {"withdrawn_at": NOW - HOUR}, DenyCode.CONSENT_WITHDRAWN),
    ("withdrawn exactly now", {"withdrawn_at": NOW}, DenyCode.CONSENT_WITHDRAWN),
    ("expired status", {"status": ConsentStatus.EXPIRED}, DenyCode.CONSENT_EXPIRED),
    ("active row past valid_until", {"valid_until": NOW - HOUR}, DenyCode.CONSENT_EXPIRED),
    ("ends exactly now", {"valid_until": NOW}, DenyCode.CONSENT_EXPIRED),
    ("not yet valid", {"valid_from": NOW + HOUR}, DenyCode.CONSENT_EXPIRED),
    ("other subject", {"subject_id": SIBLING}, DenyCode.NO_CONSENT),
    ("other purpose", {"purposes": frozenset({"housing"})}, DenyCode.NO_CONSENT),
    ("no purposes", {"purposes": frozenset()}, DenyCode.NO_CONSENT),
    (
        "other tenant, matching kind",
        {"recipient_tenants": frozenset({OTHER_TENANT}), "recipient_kinds": frozenset({KIND})},
        None,
    ),
    ("kind only", {"recipient_tenants": frozenset(), "recipient_kinds": frozenset({KIND})}, None),
    (
        "other tenant, other kind",
        {"recipient_tenants": frozenset({OTHER_TENANT}), "recipient_kinds": frozenset({"ngo"})},
        DenyCode.NO_CONSENT,
    ),
    ("no recipients", {"recipient_tenants": frozenset(), "recipient_kinds": frozenset()}, DenyCode.NO_CONSENT),
    ("category missing", {"categories": frozenset({Category.IDENTITY})}, DenyCode.NO_CONSENT),
    ("no categories", {"categories": frozenset()}, DenyCode.NO_CONSENT),
]


@pytest.mark.parametrize(("state", "overrides", "denied_with"), CONSENT_STATES, ids=[row[0] for row in CONSENT_STATES])
def test_consent_basis_follows_the_consent_state(
    state: str, overrides: dict[str, Any], denied_with: DenyCode | None
) -> None:
    given_consent = consent(**overrides)
    decision = decide(request(Category.IDENTITY, Category.FAMILY), [given_consent], NOW)
    if denied_with is None:
        assert decision == Permit(
            categories=frozenset({Category.IDENTITY, Category.FAMILY}),
            consents_by_subject={CHILD: frozenset({given_consent.id})},
            review_required=False,
            basis=ConsentBasis(),
        )
    else:
        assert isinstance(decision, Deny)
        assert decision.code is denied_with
        assert decision.subject_id == CHILD
        # The scope-mismatch rows miss identity already, except "category missing", which misses family only.
        assert decision.category is (Category.FAMILY if state == "category missing" else Category.IDENTITY)
        assert str(CHILD) in decision.reason
        assert str(decision.category) in decision.reason


@pytest.mark.parametrize(("state", "overrides", "_"), CONSENT_STATES, ids=[row[0] for row in CONSENT_STATES])
def test_statutory_basis_does_not_depend_on_consents(state: str, overrides: dict[str, Any], _: DenyCode | None) -> None:
    decision = decide(request(Category.IDENTITY, Category.FAMILY, basis=STATUTE), [consent(**overrides)], NOW)
    assert decision == Permit(
        categories=frozenset({Category.IDENTITY, Category.FAMILY}),
        consents_by_subject={},
        review_required=True,
        basis=STATUTE,
    )


def test_a_withdrawal_outranks_a_lapse_in_the_deny_code() -> None:
    lapsed = consent(valid_until=NOW - HOUR)
    withdrawn = consent(status=ConsentStatus.WITHDRAWN, withdrawn_at=NOW - HOUR)
    for consents in ([lapsed, withdrawn], [withdrawn, lapsed]):
        decision = decide(request(), consents, NOW)
        assert isinstance(decision, Deny)
        assert decision.code is DenyCode.CONSENT_WITHDRAWN


def test_an_in_force_consent_outranks_a_withdrawn_one() -> None:
    current = consent()
    withdrawn = consent(status=ConsentStatus.WITHDRAWN, withdrawn_at=NOW - HOUR)
    decision = decide(request(), [withdrawn, current], NOW)
    assert isinstance(decision, Permit)
    assert decision.consents_by_subject == {CHILD: frozenset({current.id})}


def test_deny_reasons_say_whether_a_consent_lapsed_or_has_not_started() -> None:
    not_started = decide(request(), [consent(valid_from=NOW + HOUR)], NOW)
    lapsed = decide(request(), [consent(valid_until=NOW - HOUR)], NOW)
    assert isinstance(not_started, Deny)
    assert isinstance(lapsed, Deny)
    assert "not in force yet" in not_started.reason
    assert "expired" in lapsed.reason


ALL_OR_NOTHING: list[tuple[str, list[dict[str, Any]], tuple[uuid.UUID, Category] | None]] = [
    (
        "both subjects fully covered",
        [{"subject_id": CHILD}, {"subject_id": SIBLING}],
        None,
    ),
    (
        "second subject has no consent",
        [{"subject_id": CHILD}],
        (SIBLING, Category.IDENTITY),
    ),
    (
        "second subject lacks one category",
        [{"subject_id": CHILD}, {"subject_id": SIBLING, "categories": frozenset({Category.IDENTITY, Category.FAMILY})}],
        (SIBLING, Category.SOCIAL_ASSESSMENT),
    ),
    (
        "first subject lacks the last category, second lacks the first",
        [
            {"subject_id": CHILD, "categories": frozenset({Category.IDENTITY, Category.FAMILY})},
            {"subject_id": SIBLING, "categories": frozenset({Category.FAMILY, Category.SOCIAL_ASSESSMENT})},
        ],
        (CHILD, Category.SOCIAL_ASSESSMENT),
    ),
    (
        "nobody has anything",
        [],
        (CHILD, Category.IDENTITY),
    ),
]


@pytest.mark.parametrize(
    ("case", "consent_overrides", "first_missing"), ALL_OR_NOTHING, ids=[r[0] for r in ALL_OR_NOTHING]
)
def test_permit_is_all_or_nothing_and_names_the_first_missing_pair(
    case: str, consent_overrides: list[dict[str, Any]], first_missing: tuple[uuid.UUID, Category] | None
) -> None:
    wanted = (Category.IDENTITY, Category.FAMILY, Category.SOCIAL_ASSESSMENT)
    full = frozenset(wanted)
    consents = [consent(**({"categories": full} | overrides)) for overrides in consent_overrides]
    decision = decide(request(*wanted, subjects=(CHILD, SIBLING)), consents, NOW)
    if first_missing is None:
        assert isinstance(decision, Permit)
        assert decision.categories == full
        assert decision.consents_by_subject == {CHILD: {consents[0].id}, SIBLING: {consents[1].id}}
    else:
        assert isinstance(decision, Deny)
        assert (decision.subject_id, decision.category) == first_missing


def test_deny_order_is_request_order_for_subjects_and_declaration_order_for_categories() -> None:
    # Nothing is covered, so the first pair is the answer; neither set iteration nor consent order may change it.
    for subjects in [(SIBLING, CHILD), (CHILD, SIBLING)]:
        for categories in [
            (Category.DOCUMENTS, Category.CONTACTS, Category.HEALTH),
            (Category.HEALTH, Category.CONTACTS, Category.DOCUMENTS),
        ]:
            consents = [consent(subject_id=SIBLING), consent(subject_id=CHILD, categories=frozenset(categories[:1]))]
            for ordering in (consents, consents[::-1]):
                decision = decide(request(*categories, subjects=subjects), ordering, NOW)
                assert isinstance(decision, Deny)
                expected_category = Category.CONTACTS
                assert (decision.subject_id, decision.category) == (subjects[0], expected_category)


def test_duplicate_subjects_are_checked_once() -> None:
    given_consent = consent()
    decision = decide(request(subjects=(CHILD, CHILD)), [given_consent], NOW)
    assert isinstance(decision, Permit)
    assert decision.consents_by_subject == {CHILD: {given_consent.id}}


def test_consents_covering_different_categories_combine() -> None:
    identity = consent(categories=frozenset({Category.IDENTITY}))
    family = consent(categories=frozenset({Category.FAMILY}), recipient_tenants=frozenset(), recipient_kinds={KIND})
    unrelated = consent(categories=frozenset({Category.EDUCATION}))
    decision = decide(request(Category.IDENTITY, Category.FAMILY), [identity, family, unrelated], NOW)
    assert isinstance(decision, Permit)
    assert decision.consents_by_subject == {CHILD: {identity.id, family.id}}


def test_a_consent_for_another_subject_never_counts() -> None:
    decision = decide(request(subjects=(CHILD,)), [consent(subject_id=SIBLING)], NOW)
    assert isinstance(decision, Deny)
    assert (decision.code, decision.subject_id) == (DenyCode.NO_CONSENT, CHILD)


def test_health_needs_a_consent_that_names_it() -> None:
    assert Category.HEALTH in SPECIAL_CATEGORIES
    everything_else = frozenset(Category) - SPECIAL_CATEGORIES
    without_health = decide(request(Category.HEALTH), [consent(categories=everything_else)], NOW)
    assert isinstance(without_health, Deny)
    assert (without_health.code, without_health.category) == (DenyCode.NO_CONSENT, Category.HEALTH)
    assert isinstance(decide(request(Category.HEALTH), [consent(categories={Category.HEALTH})], NOW), Permit)
    # No catalogued duty to report extends to medical data.
    for reference in STATUTORY_CATALOGUE:
        basis = StatutoryBasis(reference, JUSTIFICATION)
        shared = request(
            Category.HEALTH, recipient_kind="guardianship_body", basis=basis, sender_kind="juvenile_commission"
        )
        decision = decide(shared, [], NOW)
        assert isinstance(decision, Deny)
        assert (decision.code, decision.category) == (DenyCode.STATUTE_DOES_NOT_COVER, Category.HEALTH)


REQUEST_SHAPE: list[tuple[str, dict[str, Any], DenyCode]] = [
    ("no subjects", {"subject_ids": ()}, DenyCode.NO_SUBJECTS),
    ("no categories", {"categories": frozenset()}, DenyCode.NO_CATEGORIES),
    ("empty purpose", {"purpose": ""}, DenyCode.PURPOSE_MISSING),
    ("blank purpose", {"purpose": "   "}, DenyCode.PURPOSE_MISSING),
]


@pytest.mark.parametrize("basis", [ConsentBasis(), STATUTE], ids=["consent", "statutory"])
@pytest.mark.parametrize(("case", "overrides", "code"), REQUEST_SHAPE, ids=[r[0] for r in REQUEST_SHAPE])
def test_malformed_requests_are_denied_on_any_basis(
    case: str, overrides: dict[str, Any], code: DenyCode, basis: LegalBasis
) -> None:
    decision = decide(request(basis=basis, **overrides), [consent()], NOW)
    assert isinstance(decision, Deny)
    assert decision.code is code
    assert (decision.subject_id, decision.category) == (None, None)


STATUTORY: list[tuple[str, dict[str, Any], DenyCode | None]] = [
    ("art. 9 to a commission", {}, None),
    ("art. 9 to police", {"recipient_kind": "police_juvenile_unit"}, None),
    ("art. 122 to guardianship", {"basis": (ART_122, JUSTIFICATION), "recipient_kind": GUARDIANSHIP}, None),
    ("unknown reference", {"basis": ("CC RF art. 1", JUSTIFICATION)}, DenyCode.UNKNOWN_STATUTE),
    ("reference in other spelling", {"basis": ("120-fz art. 9", JUSTIFICATION)}, DenyCode.UNKNOWN_STATUTE),
    ("empty justification", {"basis": (ART_9, "")}, DenyCode.JUSTIFICATION_MISSING),
    ("short justification", {"basis": (ART_9, "x" * 19)}, DenyCode.JUSTIFICATION_MISSING),
    ("padded short justification", {"basis": (ART_9, "  " + "x" * 19 + "   ")}, DenyCode.JUSTIFICATION_MISSING),
    ("justification of exactly 20", {"basis": (ART_9, "x" * 20)}, None),
    ("category outside", {"categories": {Category.IDENTITY, Category.EDUCATION}}, DenyCode.STATUTE_DOES_NOT_COVER),
    ("kind outside", {"recipient_kind": "ngo"}, DenyCode.STATUTE_DOES_NOT_COVER),
    ("art. 122 to a commission", {"basis": (ART_122, JUSTIFICATION)}, DenyCode.STATUTE_DOES_NOT_COVER),
    (
        "art. 122 case notes",
        {"basis": (ART_122, JUSTIFICATION), "recipient_kind": GUARDIANSHIP, "categories": {Category.CASE_NOTES}},
        DenyCode.STATUTE_DOES_NOT_COVER,
    ),
]


@pytest.mark.parametrize(("case", "overrides", "denied_with"), STATUTORY, ids=[r[0] for r in STATUTORY])
def test_statutory_basis(case: str, overrides: dict[str, Any], denied_with: DenyCode | None) -> None:
    reference, justification = overrides.pop("basis", (ART_9, JUSTIFICATION))
    basis = StatutoryBasis(reference, justification)
    overrides.setdefault("categories", {Category.IDENTITY, Category.FAMILY})
    shared = request(basis=basis, subjects=(CHILD, SIBLING), **overrides)
    decision = decide(shared, [], NOW)
    if denied_with is None:
        assert decision == Permit(shared.categories, consents_by_subject={}, review_required=True, basis=basis)
    else:
        assert isinstance(decision, Deny)
        assert decision.code is denied_with
        assert decision.subject_id is None
        # Free text typed by the caller is never echoed into a reason.
        assert justification.strip() not in decision.reason or not justification.strip()
        if case == "category outside":
            assert decision.category is Category.EDUCATION
            assert "education" in decision.reason


def test_a_custom_catalogue_replaces_the_default() -> None:
    provision = StatutoryProvision(
        "Test art. 1", "A test duty", frozenset({Category.EDUCATION}), frozenset({"education"})
    )
    basis = StatutoryBasis("Test art. 1", JUSTIFICATION)
    shared = request(Category.EDUCATION, recipient_kind="education", basis=basis)
    assert isinstance(decide(shared, [], NOW, catalogue={provision.reference: provision}), Permit)
    assert isinstance(decide(shared, [], NOW), Deny)


def test_catalogue_is_keyed_by_reference_and_names_real_tenant_kinds() -> None:
    assert {"120-FZ art. 9", "SK RF art. 122"} <= set(STATUTORY_CATALOGUE)
    for reference, provision in STATUTORY_CATALOGUE.items():
        assert provision.reference == reference
        assert provision.title
        assert provision.recipient_kinds <= {k.value for k in TenantKind}
        assert not provision.categories & SPECIAL_CATEGORIES


def test_permitted_categories_is_the_union_of_in_force_covering_consents() -> None:
    consents = [
        consent(categories=frozenset({Category.IDENTITY})),
        consent(categories=frozenset({Category.FAMILY, Category.HEALTH}), recipient_kinds=frozenset({KIND})),
        consent(categories=frozenset({Category.EDUCATION}), status=ConsentStatus.WITHDRAWN),
        consent(categories=frozenset({Category.DOCUMENTS}), valid_until=NOW),
        consent(categories=frozenset({Category.CASE_NOTES}), purposes=frozenset({"housing"})),
        consent(categories=frozenset({Category.CONTACTS}), subject_id=SIBLING),
        consent(categories=frozenset({Category.SOCIAL_ASSESSMENT}), recipient_tenants=frozenset({OTHER_TENANT})),
    ]
    scope: dict[str, Any] = {"recipient_tenant_id": RECIPIENT, "recipient_kind": KIND, "purpose": PURPOSE, "now": NOW}
    assert permitted_categories(CHILD, consents, **scope) == {Category.IDENTITY, Category.FAMILY, Category.HEALTH}
    assert permitted_categories(SIBLING, consents, **scope) == {Category.CONTACTS}
    assert permitted_categories(CHILD, consents, **(scope | {"purpose": "housing"})) == {Category.CASE_NOTES}
    assert permitted_categories(CHILD, consents, **(scope | {"purpose": " "})) == frozenset()
    assert permitted_categories(CHILD, [], **scope) == frozenset()


# Each row: a consent's record today, and the period it was in force (None: never, as far as the record can say).
PERIODS: list[tuple[str, dict[str, Any], tuple[dt.datetime, dt.datetime | None] | None]] = [
    ("active", {}, (NOW - 24 * HOUR, NOW + 24 * HOUR)),
    ("active, open-ended", {"valid_until": None}, (NOW - 24 * HOUR, None)),
    ("withdrawn", {"status": ConsentStatus.WITHDRAWN, "withdrawn_at": NOW}, (NOW - 24 * HOUR, NOW)),
    (
        "withdrawn, open-ended",
        {"status": ConsentStatus.WITHDRAWN, "withdrawn_at": NOW, "valid_until": None},
        (NOW - 24 * HOUR, NOW),
    ),
    (
        "withdrawal after expiry",
        {"status": ConsentStatus.WITHDRAWN, "withdrawn_at": NOW + 48 * HOUR},
        (NOW - 24 * HOUR, NOW + 24 * HOUR),
    ),
    ("withdrawn before it started", {"status": ConsentStatus.WITHDRAWN, "withdrawn_at": NOW - 48 * HOUR}, None),
    ("withdrawn status, no time", {"status": ConsentStatus.WITHDRAWN}, None),
    ("expired", {"status": ConsentStatus.EXPIRED}, (NOW - 24 * HOUR, NOW + 24 * HOUR)),
    ("expired, no end recorded", {"status": ConsentStatus.EXPIRED, "valid_until": None}, None),
    ("not yet valid", {"valid_from": NOW + HOUR}, (NOW + HOUR, NOW + 24 * HOUR)),
]


@pytest.mark.parametrize(("state", "overrides", "period"), PERIODS, ids=[row[0] for row in PERIODS])
def test_the_period_a_consent_was_in_force(
    state: str, overrides: dict[str, Any], period: tuple[dt.datetime, dt.datetime | None] | None
) -> None:
    assert consent(**overrides).period_in_force() == period, state


@settings(max_examples=200, deadline=None)
@given(
    valid_from=st.integers(-48, 48),
    until=st.none() | st.integers(-48, 48),
    withdrawn=st.none() | st.integers(-48, 48),
    at=st.integers(-60, 60),
)
def test_a_consent_was_in_force_at_a_moment_exactly_when_the_policy_would_have_said_so_then(
    valid_from: int, until: int | None, withdrawn: int | None, at: int
) -> None:
    """The period of a consent, judged today, agrees with `in_force` asked at each moment while the row was still
    active, and stays the same once its status says withdrawn: history does not change with the status."""
    active = consent(
        valid_from=NOW + valid_from * HOUR,
        valid_until=None if until is None else NOW + until * HOUR,
        withdrawn_at=None if withdrawn is None else NOW + withdrawn * HOUR,
    )
    moment = NOW + at * HOUR
    period = active.period_in_force()
    inside = period is not None and period[0] <= moment and (period[1] is None or moment < period[1])
    assert inside is active.in_force(moment)
    if withdrawn is not None:
        assert dataclasses.replace(active, status=ConsentStatus.WITHDRAWN).period_in_force() == period


def test_unknown_categories_and_naive_times_are_refused_as_errors() -> None:
    with pytest.raises(ValueError, match="not a valid Category"):
        request(categories=frozenset({"genome"}))
    assert request(categories=frozenset({"health"})).categories == {Category.HEALTH}
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(request(), [consent()], NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        consent(valid_from=NOW.replace(tzinfo=None))


AGE_RULES = AgeRules()
BORN = dt.date(2008, 6, 15)
LEAP_BORN = dt.date(2008, 2, 29)

# (case, birth date, on, relation, acceptable)
CONSENT_GIVERS: list[tuple[str, dt.date | None, dt.date, Relation, bool]] = [
    ("minor by a parent", BORN, dt.date(2026, 6, 14), Relation.PARENT, True),
    ("minor by a guardian", BORN, dt.date(2026, 6, 14), Relation.GUARDIAN, True),
    ("minor by a representative", BORN, dt.date(2026, 6, 14), Relation.REPRESENTATIVE, True),
    ("minor by themselves the day before 18", BORN, dt.date(2026, 6, 14), Relation.SELF, False),
    ("adult by themselves on the 18th birthday", BORN, dt.date(2026, 6, 15), Relation.SELF, True),
    ("adult by a parent on the 18th birthday", BORN, dt.date(2026, 6, 15), Relation.PARENT, False),
    ("adult by a guardian (incapacity)", BORN, dt.date(2030, 1, 1), Relation.GUARDIAN, True),
    ("adult by a representative (incapacity)", BORN, dt.date(2030, 1, 1), Relation.REPRESENTATIVE, True),
    ("newborn by a parent", BORN, BORN, Relation.PARENT, True),
    ("born after the consent", BORN, dt.date(2008, 6, 14), Relation.PARENT, False),
    ("leap-day child on 27 Feb of the 18th year", LEAP_BORN, dt.date(2026, 2, 27), Relation.SELF, False),
    ("leap-day child on 28 Feb of the 18th year", LEAP_BORN, dt.date(2026, 2, 28), Relation.SELF, True),
    ("leap-day child by a parent on 28 Feb of the 18th year", LEAP_BORN, dt.date(2026, 2, 28), Relation.PARENT, False),
    ("leap-day child on 1 Mar of the 18th year", LEAP_BORN, dt.date(2026, 3, 1), Relation.SELF, True),
    ("unknown birth date by themselves", None, dt.date(2026, 1, 1), Relation.SELF, True),
    ("unknown birth date by a guardian", None, dt.date(2026, 1, 1), Relation.GUARDIAN, True),
    ("unknown birth date by a representative", None, dt.date(2026, 1, 1), Relation.REPRESENTATIVE, True),
    ("unknown birth date by a parent", None, dt.date(2026, 1, 1), Relation.PARENT, False),
]


@pytest.mark.parametrize(
    ("case", "born", "on", "relation", "acceptable"), CONSENT_GIVERS, ids=[r[0] for r in CONSENT_GIVERS]
)
def test_who_may_give_consent(
    case: str, born: dt.date | None, on: dt.date, relation: Relation, acceptable: bool
) -> None:
    problem = consent_giver_problem(subject_birth_date=born, relation=relation, on=on, rules=AGE_RULES)
    if acceptable:
        assert problem is None
    else:
        assert problem
        assert problem.endswith(".")


def test_self_consent_age_is_configurable() -> None:
    rules = AgeRules(self_consent_age=14)
    on = dt.date(2022, 6, 15)
    assert consent_giver_problem(subject_birth_date=BORN, relation=Relation.SELF, on=on, rules=rules) is None
    assert consent_giver_problem(subject_birth_date=BORN, relation=Relation.SELF, on=on.replace(day=14), rules=rules)
    with pytest.raises(ValueError, match="self_consent_age"):
        AgeRules(self_consent_age=0)


AGES: list[tuple[dt.date, dt.date, int]] = [
    (BORN, BORN, 0),
    (BORN, dt.date(2026, 6, 14), 17),
    (BORN, dt.date(2026, 6, 15), 18),
    (BORN, dt.date(2026, 12, 31), 18),
    (LEAP_BORN, dt.date(2009, 2, 27), 0),
    (LEAP_BORN, dt.date(2009, 2, 28), 1),  # common year: the anniversary is 28 February (Civil Code art. 192(3))
    (LEAP_BORN, dt.date(2012, 2, 28), 3),  # leap year: the anniversary is 29 February itself
    (LEAP_BORN, dt.date(2012, 2, 29), 4),
    (LEAP_BORN, dt.date(2100, 2, 28), 92),  # 2100 is not a leap year
    (dt.date(2000, 3, 1), dt.date(2001, 2, 28), 0),
    (dt.date(2000, 12, 31), dt.date(2001, 1, 1), 0),
]


@pytest.mark.parametrize(("born", "on", "age"), AGES, ids=[f"{b}@{o}" for b, o, _ in AGES])
def test_age_on(born: dt.date, on: dt.date, age: int) -> None:
    assert age_on(born, on) == age


# Properties: random consents and requests over small pools, so matches, near misses and overlaps are frequent.

SUBJECTS = [CHILD, SIBLING, uuid.UUID("00000000-0000-7000-8000-00000000c003")]
TENANTS = [RECIPIENT, OTHER_TENANT]
KINDS = ["guardianship_body", "juvenile_commission", "ngo"]
PURPOSES = [PURPOSE, "housing"]
CATEGORIES = list(Category)


def hours(low: int, high: int) -> st.SearchStrategy[dt.datetime]:
    return st.integers(min_value=low, max_value=high).map(lambda h: NOW + h * HOUR)


def subsets(pool: Sequence[T]) -> st.SearchStrategy[frozenset[T]]:
    # A bit mask draws a subset in one step; st.frozensets is several times slower to generate.
    return st.integers(min_value=0, max_value=2 ** len(pool) - 1).map(
        lambda mask: frozenset(item for i, item in enumerate(pool) if mask >> i & 1)
    )


# Repeated alternatives weight the draw towards consents in force and well-formed requests, so that permits are
# common and the properties below are not vacuous; the table tests above cover the rare shapes exhaustively.
CONSENT_VIEWS = st.builds(
    ConsentView,
    id=st.integers(min_value=1, max_value=2**32).map(lambda n: uuid.UUID(int=n)),
    subject_id=st.sampled_from(SUBJECTS),
    status=st.sampled_from(
        [ConsentStatus.ACTIVE, ConsentStatus.ACTIVE, ConsentStatus.WITHDRAWN, ConsentStatus.EXPIRED]
    ),
    purposes=subsets(PURPOSES),
    categories=subsets(CATEGORIES),
    recipient_tenants=subsets(TENANTS),
    recipient_kinds=subsets(KINDS),
    valid_from=hours(-4, 2),
    valid_until=st.one_of(st.none(), hours(-2, 4)),
    withdrawn_at=st.one_of(st.none(), st.none(), hours(-2, 2)),
)
NOWS = hours(-2, 2)

BASES = st.one_of(
    st.just(ConsentBasis()),
    st.just(ConsentBasis()),
    st.builds(
        StatutoryBasis,
        st.sampled_from([*STATUTORY_CATALOGUE, "unknown art. 0"]),
        st.sampled_from([JUSTIFICATION, JUSTIFICATION, "too short", ""]),
    ),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ShareRequest, list[ConsentView], dt.datetime]:
    """A request, the consents on record and the time; most requests aim at one consent's scope or one statute."""
    consents = draw(st.lists(CONSENT_VIEWS, min_size=1, max_size=8))
    aimed = draw(st.sampled_from([True, True, False]))
    position = draw(st.integers(min_value=0, max_value=len(consents) - 1))
    if aimed and draw(st.sampled_from([True, True, False])):
        consents[position] = dataclasses.replace(
            consents[position], status=ConsentStatus.ACTIVE, withdrawn_at=None, valid_from=NOW - 5 * HOUR
        )
    anchor = consents[position]
    basis = draw(BASES)
    tenant_scope: frozenset[uuid.UUID] = frozenset()
    if isinstance(basis, StatutoryBasis) and basis.reference in STATUTORY_CATALOGUE:
        provision = STATUTORY_CATALOGUE[basis.reference]
        category_scope, kind_scope = provision.categories, provision.recipient_kinds
    else:
        category_scope, kind_scope, tenant_scope = anchor.categories, anchor.recipient_kinds, anchor.recipient_tenants

    def near(scope: frozenset[T], pool: Sequence[T]) -> st.SearchStrategy[T]:
        return st.sampled_from(sorted(scope, key=str)) if aimed and scope else st.sampled_from(pool)

    subjects = [anchor.subject_id if aimed else draw(st.sampled_from(SUBJECTS))]
    subjects += draw(st.lists(st.sampled_from(SUBJECTS), max_size=1))
    if tenant_scope and draw(st.sampled_from([True, False])):
        recipient_tenant_id, recipient_kind = draw(near(tenant_scope, TENANTS)), draw(st.sampled_from(KINDS))
    else:
        recipient_tenant_id, recipient_kind = draw(st.sampled_from(TENANTS)), draw(near(kind_scope, KINDS))
    purpose = draw(st.sampled_from(["x", "x", "x", ""]))
    # Now and then one category from anywhere, so that near misses of an otherwise matching scope come up too.
    categories = draw(st.lists(near(category_scope, CATEGORIES), min_size=1, max_size=2))
    categories += draw(st.lists(st.sampled_from(CATEGORIES), max_size=1))
    shared = ShareRequest(
        subject_ids=tuple(subjects),
        categories=frozenset(categories),
        recipient_tenant_id=recipient_tenant_id,
        recipient_kind=recipient_kind,
        purpose=draw(near(anchor.purposes, PURPOSES)) if purpose else purpose,
        basis=basis,
    )
    return shared, consents, draw(NOWS)


def oracle_in_force(c: ConsentView, now: dt.datetime) -> bool:
    """The rule from the design, written out independently of the module under test."""
    return (
        c.status == "active"
        and (c.withdrawn_at is None or c.withdrawn_at > now)
        and c.valid_from <= now
        and (c.valid_until is None or now < c.valid_until)
    )


def oracle_covering(
    shared: ShareRequest, consents: list[ConsentView], subject: uuid.UUID, category: Category, now: dt.datetime
) -> set[uuid.UUID]:
    return {
        c.id
        for c in consents
        if oracle_in_force(c, now)
        and c.subject_id == subject
        and category in c.categories
        and shared.purpose in c.purposes
        and (shared.recipient_tenant_id in c.recipient_tenants or shared.recipient_kind in c.recipient_kinds)
    }


@settings(max_examples=300, deadline=None)
@given(scenario=scenarios())
def test_a_permit_never_exceeds_a_consent_in_force_or_a_statute(
    scenario: tuple[ShareRequest, list[ConsentView], dt.datetime],
) -> None:
    shared, consents, now = scenario
    decision = decide(shared, consents, now)
    if not isinstance(decision, Permit):
        return
    assert decision.categories == shared.categories
    assert decision.categories
    assert shared.subject_ids
    assert shared.purpose.strip()
    match shared.basis:
        case ConsentBasis():
            assert not decision.review_required
            assert set(decision.consents_by_subject) == set(shared.subject_ids)
            for subject in shared.subject_ids:
                relied_on: set[uuid.UUID] = set()
                for category in decision.categories:
                    covering = oracle_covering(shared, consents, subject, category, now)
                    assert covering, (subject, category)
                    relied_on |= covering
                assert decision.consents_by_subject[subject] == relied_on
        case StatutoryBasis(reference=reference, justification=justification):
            provision = STATUTORY_CATALOGUE[reference]
            assert decision.review_required
            assert decision.consents_by_subject == {}
            assert decision.categories <= provision.categories
            assert shared.recipient_kind in provision.recipient_kinds
            assert provision.sender_kinds is None or shared.sender_kind in provision.sender_kinds
            assert len(justification.strip()) >= 20


@settings(max_examples=200, deadline=None)
@given(
    reference=st.sampled_from(sorted(STATUTORY_CATALOGUE)),
    categories=subsets(CATEGORIES).filter(bool),
    recipient_kind=st.sampled_from(sorted(TenantKind)),
    justification=st.sampled_from([JUSTIFICATION, "x" * 20, " " + "x" * 19 + " ", "too short", ""]),
    sender_kind=st.sampled_from(sorted(TenantKind)),
)
def test_a_statute_permits_exactly_what_it_covers(
    reference: str, categories: frozenset[Category], recipient_kind: str, justification: str, sender_kind: str
) -> None:
    provision = STATUTORY_CATALOGUE[reference]
    basis = StatutoryBasis(reference, justification)
    shared = request(*categories, recipient_kind=recipient_kind, basis=basis, sender_kind=sender_kind)
    decision = decide(shared, [], NOW)
    covered = (
        categories <= provision.categories
        and recipient_kind in provision.recipient_kinds
        and (provision.sender_kinds is None or sender_kind in provision.sender_kinds)
    )
    justified = len(justification.strip()) >= 20
    assert isinstance(decision, Permit) == (covered and justified)
    if isinstance(decision, Deny):
        assert decision.code is (DenyCode.STATUTE_DOES_NOT_COVER if not covered else DenyCode.JUSTIFICATION_MISSING)


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios())
def test_a_consent_deny_names_the_first_uncovered_pair_and_why(
    scenario: tuple[ShareRequest, list[ConsentView], dt.datetime],
) -> None:
    shared, consents, now = scenario
    shared = dataclasses.replace(shared, basis=ConsentBasis())
    decision = decide(shared, consents, now)
    if not shared.subject_ids or not shared.categories or not shared.purpose.strip():
        assert isinstance(decision, Deny)
        assert decision.subject_id is None
        return
    ordered = [c for c in Category if c in shared.categories]
    pairs = [(s, c) for s in dict.fromkeys(shared.subject_ids) for c in ordered]
    uncovered = [(s, c) for s, c in pairs if not oracle_covering(shared, consents, s, c, now)]
    if not uncovered:
        assert isinstance(decision, Permit)
        return
    assert isinstance(decision, Deny)
    assert (decision.subject_id, decision.category) == uncovered[0]
    subject, category = uncovered[0]
    in_scope = [
        c
        for c in consents
        if c.subject_id == subject
        and category in c.categories
        and shared.purpose in c.purposes
        and (shared.recipient_tenant_id in c.recipient_tenants or shared.recipient_kind in c.recipient_kinds)
    ]
    if any(c.status == "withdrawn" or (c.withdrawn_at is not None and c.withdrawn_at <= now) for c in in_scope):
        assert decision.code is DenyCode.CONSENT_WITHDRAWN
    elif in_scope:
        assert decision.code is DenyCode.CONSENT_EXPIRED
    else:
        assert decision.code is DenyCode.NO_CONSENT


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(), data=st.data())
def test_decide_is_deterministic_and_agrees_with_permitted_categories(
    scenario: tuple[ShareRequest, list[ConsentView], dt.datetime], data: st.DataObject
) -> None:
    shared, consents, now = scenario
    decision = decide(shared, consents, now)
    assert decide(shared, list(consents), now) == decision
    assert decide(shared, data.draw(st.permutations(consents)), now) == decision
    if isinstance(shared.basis, ConsentBasis) and shared.subject_ids and shared.categories:
        offered = [
            permitted_categories(
                subject,
                consents,
                recipient_tenant_id=shared.recipient_tenant_id,
                recipient_kind=shared.recipient_kind,
                purpose=shared.purpose,
                now=now,
            )
            for subject in shared.subject_ids
        ]
        assert isinstance(decision, Permit) == all(shared.categories <= o for o in offered)


ART_11 = "120-FZ art. 11"


@pytest.mark.parametrize("recipient_kind", ["education", "health", "social_centre", "guardianship_body"])
def test_a_commission_assigns_plan_tasks_on_its_coordinating_duty(recipient_kind: str) -> None:
    basis = StatutoryBasis(ART_11, JUSTIFICATION)
    shared = request(
        Category.IDENTITY,
        Category.EDUCATION,
        recipient_kind=recipient_kind,
        basis=basis,
        sender_kind="juvenile_commission",
    )
    decision = decide(shared, [], NOW)
    assert isinstance(decision, Permit)
    assert decision.review_required


@pytest.mark.parametrize("sender_kind", ["social_centre", "education", None])
def test_only_a_commission_may_rely_on_its_coordinating_duty(sender_kind: str | None) -> None:
    basis = StatutoryBasis(ART_11, JUSTIFICATION)
    shared = request(Category.IDENTITY, recipient_kind="education", basis=basis, sender_kind=sender_kind)
    decision = decide(shared, [], NOW)
    assert isinstance(decision, Deny)
    assert decision.code == DenyCode.STATUTE_DOES_NOT_COVER
    assert "juvenile_commission" in decision.reason


def test_the_coordinating_duty_does_not_reach_health_data() -> None:
    basis = StatutoryBasis(ART_11, JUSTIFICATION)
    shared = request(Category.HEALTH, recipient_kind="health", basis=basis, sender_kind="juvenile_commission")
    decision = decide(shared, [], NOW)
    assert isinstance(decision, Deny)
    assert decision.category == Category.HEALTH
