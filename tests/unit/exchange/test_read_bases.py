"""The bases of reads over time (exchange/reports/basis.py), judged by the no-active-basis rule: the agency's own case,
consents with their history, referrals sent and received, and the recipient's own legal basis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from audit.anomalies import Cover, EventSummary, lacks_basis
from exchange.cases.policy import Category, ConsentStatus, ConsentView
from exchange.reports.basis import (
    OwnCase,
    ReceivedReferral,
    SentReferral,
    own_case_covers,
    received_referral_covers,
    sent_referral_covers,
    with_returned_categories,
)

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
CENTRE, OPEKA, SCHOOL = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
KEY_WORKER, CREATOR, COLLEAGUE, SUPERVISOR, INTAKE = (uuid.UUID(int=i) for i in range(10, 15))
CHILD, PARENT = uuid.UUID(int=100), uuid.UUID(int=101)
PSEUDONYMS = {CHILD: "ps_child", PARENT: "ps_parent"}
SHARED = frozenset({"identity", "family"})
_ids = itertools.count(1000)


def consent(subject: uuid.UUID = CHILD, *, withdrawn_at: dt.datetime | None = None, **fields: Any) -> ConsentView:
    """Given at T0 for a year: identity and family of `subject` for OPEKA, for social support."""
    view = ConsentView(
        id=uuid.UUID(int=next(_ids)),
        subject_id=subject,
        status=ConsentStatus.WITHDRAWN if withdrawn_at else ConsentStatus.ACTIVE,
        purposes=frozenset({"social_support"}),
        categories=frozenset({Category.IDENTITY, Category.FAMILY}),
        recipient_tenants=frozenset({OPEKA}),
        recipient_kinds=frozenset(),
        valid_from=T0,
        valid_until=T0 + 365 * 24 * HOUR,
        withdrawn_at=withdrawn_at,
    )
    return dataclasses.replace(view, **fields)


def read(
    hours: float,
    actor: uuid.UUID,
    tenant: uuid.UUID,
    *subjects: uuid.UUID,
    role: str = "specialist",
    categories: Iterable[str] | None = None,
) -> EventSummary:
    return EventSummary(
        id=uuid.UUID(int=next(_ids)),
        time=T0 + hours * HOUR,
        action="exchange:referral:read" if categories is not None else "exchange:case:read",
        outcome="success",
        actor_id=actor,
        actor_tenant_id=tenant,
        subjects=frozenset(PSEUDONYMS[s] for s in subjects),
        actor_role=role,
        categories=None if categories is None else frozenset(categories),
    )


def flagged(event: EventSummary, covers: Iterable[Cover]) -> bool:
    by_subject: dict[str, list[Cover]] = defaultdict(list)
    for cover in covers:
        by_subject[cover.subject].append(cover)
    return lacks_basis(event, by_subject)


CASE = OwnCase(tenant_id=CENTRE, subjects=PSEUDONYMS, workers=frozenset({KEY_WORKER, CREATOR}))


# -- the agency's own case --------------------------------------------------------------------------------------------


def test_those_who_hold_the_case_read_everyone_in_it_whatever_the_consents() -> None:
    """The specialist's own case, a parent who never consented: no false alarm, before or after the child's
    consent was withdrawn."""
    covers = own_case_covers(CASE, [consent(withdrawn_at=T0 + 2 * HOUR)])
    for hours in (-1, 1, 3, 24 * 400):
        assert not flagged(read(hours, KEY_WORKER, CENTRE, CHILD, PARENT), covers)
        assert not flagged(read(hours, CREATOR, CENTRE, CHILD, PARENT), covers)
        assert not flagged(read(hours, SUPERVISOR, CENTRE, CHILD, PARENT, role="supervisor"), covers)


def test_a_colleague_needs_a_consent_in_force_at_the_moment_for_each_person_read() -> None:
    covers = own_case_covers(CASE, [consent(withdrawn_at=T0 + 2 * HOUR)])
    assert flagged(read(-1, COLLEAGUE, CENTRE, CHILD), covers), "before the consent was given"
    assert not flagged(read(1, COLLEAGUE, CENTRE, CHILD), covers), "while it was in force"
    assert flagged(read(3, COLLEAGUE, CENTRE, CHILD), covers), "after its withdrawal"
    assert flagged(read(1, COLLEAGUE, CENTRE, CHILD, PARENT), covers), "the parent never consented"
    assert flagged(read(1, KEY_WORKER, SCHOOL, CHILD), covers), "someone of another agency with the same id"


def test_a_consent_that_expired_covers_its_validity_only() -> None:
    covers = own_case_covers(CASE, [consent(status=ConsentStatus.EXPIRED, valid_until=T0 + HOUR)])
    assert not flagged(read(0.5, COLLEAGUE, CENTRE, CHILD), covers)
    assert flagged(read(1, COLLEAGUE, CENTRE, CHILD), covers)


# -- a referral the agency sent, read by the partner ------------------------------------------------------------------


def sent(*, statutory: bool = False, closed_at: dt.datetime | None = None) -> SentReferral:
    return SentReferral(
        partner_id=OPEKA,
        partner_kind="guardianship_body",
        purpose="social_support",
        categories=SHARED,
        statutory=statutory,
        subjects={CHILD: PSEUDONYMS[CHILD]},
        closed_at=closed_at,
    )


def test_consent_given_partner_reads_withdrawn_partner_reads_again() -> None:
    covers = sent_referral_covers(sent(), [consent(withdrawn_at=T0 + 2 * HOUR)])
    assert not flagged(read(1, INTAKE, OPEKA, CHILD, role="intake", categories=SHARED), covers)
    assert flagged(read(3, INTAKE, OPEKA, CHILD, role="intake", categories=SHARED), covers)


def test_a_partner_is_covered_only_for_the_categories_a_consent_in_scope_reaches() -> None:
    identity_only = consent(categories=frozenset({Category.IDENTITY}))
    family_by_kind = consent(
        categories=frozenset({Category.FAMILY}),
        recipient_tenants=frozenset(),
        recipient_kinds=frozenset({"guardianship_body"}),
    )
    other_purpose = consent(purposes=frozenset({"housing"}), categories=frozenset({Category.FAMILY}))
    partner_read = read(1, INTAKE, OPEKA, CHILD, role="intake", categories=SHARED)
    assert flagged(partner_read, sent_referral_covers(sent(), [identity_only, other_purpose]))
    assert not flagged(partner_read, sent_referral_covers(sent(), [identity_only, family_by_kind]))
    assert flagged(
        read(1, INTAKE, SCHOOL, CHILD, categories=SHARED), sent_referral_covers(sent(), [identity_only, family_by_kind])
    ), "another agency reads nothing under OPEKA's share"


def test_a_partner_is_covered_while_the_referral_is_open() -> None:
    covers = sent_referral_covers(sent(closed_at=T0 + 5 * HOUR), [consent()])
    assert not flagged(read(4, INTAKE, OPEKA, CHILD, categories=SHARED), covers)
    assert flagged(read(5, INTAKE, OPEKA, CHILD, categories=SHARED), covers)


def test_a_statutory_share_covers_the_partner_until_it_closes_with_no_consent_at_all() -> None:
    covers = sent_referral_covers(sent(statutory=True, closed_at=T0 + 5 * HOUR), [])
    assert not flagged(read(1, INTAKE, OPEKA, CHILD, categories=SHARED), covers)
    assert flagged(read(1, INTAKE, OPEKA, CHILD, categories={"identity", "health"}), covers)
    assert flagged(read(6, INTAKE, OPEKA, CHILD, categories=SHARED), covers)


# -- a referral the agency received, read by its own staff ------------------------------------------------------------


def received(**fields: Any) -> ReceivedReferral:
    """OPEKA's copy of a referral about the child, open, under consent, with no basis of its own."""
    copy = ReceivedReferral(
        tenant_id=OPEKA,
        pseudonyms=frozenset({PSEUDONYMS[CHILD]}),
        categories=SHARED,
        closed_at=None,
        consent_withdrawn_at=None,
        own_basis_at=None,
    )
    return dataclasses.replace(copy, **fields)


def test_the_recipient_reads_under_the_referral_until_it_closes_or_the_consent_is_withdrawn() -> None:
    closed = received_referral_covers(received(closed_at=T0 + 5 * HOUR))
    withdrawn = received_referral_covers(received(consent_withdrawn_at=T0 + 2 * HOUR))
    assert not flagged(read(4, INTAKE, OPEKA, CHILD, categories=SHARED), closed)
    assert flagged(read(5, INTAKE, OPEKA, CHILD, categories=SHARED), closed)
    assert not flagged(read(1, INTAKE, OPEKA, CHILD, categories=SHARED), withdrawn)
    assert flagged(read(3, INTAKE, OPEKA, CHILD, categories=SHARED), withdrawn)
    assert flagged(read(1, INTAKE, OPEKA, CHILD, categories={"health"}), withdrawn), "never received"


def test_the_recipients_own_basis_covers_from_when_it_was_recorded_beyond_withdrawal_and_close() -> None:
    covers = received_referral_covers(
        received(own_basis_at=T0 + HOUR, consent_withdrawn_at=T0 + 2 * HOUR, closed_at=T0 + 3 * HOUR)
    )
    for hours in (0.5, 1.5, 2.5, 24 * 30):
        assert not flagged(read(hours, INTAKE, OPEKA, CHILD, categories=SHARED), covers), hours


# -- reads recorded before events named their categories --------------------------------------------------------------


def test_an_older_referral_read_returned_what_the_referral_carries_until_its_copy_was_restricted() -> None:
    referral = str(uuid.UUID(int=500))
    restricted_at = T0 + 2 * HOUR
    shared = {referral: (SHARED, restricted_at)}

    def older(hours: float) -> EventSummary:
        event = read(hours, INTAKE, OPEKA, CHILD)
        return dataclasses.replace(event, action="exchange:referral:read", resource_id=referral)

    assert with_returned_categories(older(1), shared).categories == SHARED
    assert with_returned_categories(older(2), shared).categories == frozenset()
    assert with_returned_categories(older(1), {referral: (SHARED, None)}).categories == SHARED
    recorded = dataclasses.replace(older(3), categories=SHARED)  # what the event says wins
    assert with_returned_categories(recorded, shared) is recorded
    case_read = read(3, KEY_WORKER, CENTRE, CHILD)
    assert with_returned_categories(case_read, shared) is case_read
    unknown = dataclasses.replace(older(1), resource_id=str(uuid.UUID(int=501)))
    assert with_returned_categories(unknown, shared) is unknown
