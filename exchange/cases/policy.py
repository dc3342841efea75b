"""The policy decision point: which categories of a subject's data may go to a recipient, on which legal basis."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias, assert_never

# Pure by design: no I/O, no database, no clock. The same function runs on every send and on every read of shared
# data, so callers pass everything it needs (consents already loaded, `now` from their Clock).

MIN_JUSTIFICATION_LENGTH = 20
"""A statutory share's justification must say why the duty applies; a word or two is not a justification."""


class Category(enum.StrEnum):
    """Data categories a consent or statute can cover. Append-only: values are stored and travel in envelopes."""

    IDENTITY = "identity"
    CONTACTS = "contacts"
    FAMILY = "family"
    EDUCATION = "education"
    HEALTH = "health"
    SOCIAL_ASSESSMENT = "social_assessment"
    CASE_NOTES = "case_notes"
    DOCUMENTS = "documents"


SPECIAL_CATEGORIES: frozenset[Category] = frozenset({Category.HEALTH})
"""Special categories (152-FZ art. 10, GDPR art. 9): never implied, only shared when a consent or statute names them."""


class ConsentStatus(enum.StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class Relation(enum.StrEnum):
    """Who gave a consent, relative to its subject."""

    SELF = "self"
    PARENT = "parent"
    GUARDIAN = "guardian"
    REPRESENTATIVE = "representative"


class DenyCode(enum.StrEnum):
    """Why a share was refused. Append-only: codes are recorded in the audit trail and shown by the API."""

    NO_SUBJECTS = "no_subjects"
    NO_CATEGORIES = "no_categories"
    NO_CONSENT = "no_consent"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    CONSENT_EXPIRED = "consent_expired"
    UNKNOWN_STATUTE = "unknown_statute"
    STATUTE_DOES_NOT_COVER = "statute_does_not_cover"
    JUSTIFICATION_MISSING = "justification_missing"
    PURPOSE_MISSING = "purpose_missing"


def _require_aware(name: str, value: dt.datetime | None) -> None:
    # Comparing naive and aware datetimes raises deep inside a decision; refuse them where they enter instead.
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class ConsentView:
    """What the policy needs to know about one recorded consent (ISO/IEC TS 27560 shaped)."""

    id: uuid.UUID
    subject_id: uuid.UUID
    status: ConsentStatus
    purposes: frozenset[str]
    categories: frozenset[Category]
    recipient_tenants: frozenset[uuid.UUID]
    recipient_kinds: frozenset[str]
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    withdrawn_at: dt.datetime | None

    def __post_init__(self) -> None:
        _require_aware("valid_from", self.valid_from)
        _require_aware("valid_until", self.valid_until)
        _require_aware("withdrawn_at", self.withdrawn_at)

    def is_withdrawn(self, now: dt.datetime) -> bool:
        return self.status is ConsentStatus.WITHDRAWN or (self.withdrawn_at is not None and self.withdrawn_at <= now)

    def is_within_validity(self, now: dt.datetime) -> bool:
        """`valid_from` is inclusive and `valid_until` exclusive, so back-to-back consents never overlap."""
        return self.valid_from <= now and (self.valid_until is None or now < self.valid_until)

    def in_force(self, now: dt.datetime) -> bool:
        # Expiry is by time: a row still marked "active" past valid_until is not in force; the status is only
        # brought up to date by a background job, and the policy must not depend on it having run.
        return self.status is ConsentStatus.ACTIVE and not self.is_withdrawn(now) and self.is_within_validity(now)

    def period_in_force(self) -> tuple[dt.datetime, dt.datetime | None] | None:
        """When the consent was (or is) in force, whatever its status today: [valid_from, the first of valid_until
        and its withdrawal); end None while neither has come. None when it never was, or when its record cannot say
        until when (withdrawn or expired without the time of it)."""
        ends = [t for t in (self.valid_until, self.withdrawn_at) if t is not None]
        if self.status is ConsentStatus.WITHDRAWN and self.withdrawn_at is None:
            return None
        if self.status is ConsentStatus.EXPIRED and not ends:
            return None
        end = min(ends) if ends else None
        if end is not None and end <= self.valid_from:
            return None
        return self.valid_from, end

    def scope_covers(
        self,
        subject_id: uuid.UUID,
        category: Category,
        *,
        recipient_tenant_id: uuid.UUID,
        recipient_kind: str,
        purpose: str,
    ) -> bool:
        """Whether the consent's scope (not its state) reaches this subject, category, recipient and purpose."""
        return (
            self.subject_id == subject_id
            and category in self.categories
            and purpose in self.purposes
            and (recipient_tenant_id in self.recipient_tenants or recipient_kind in self.recipient_kinds)
        )


@dataclass(frozen=True, slots=True)
class ConsentBasis:
    """Share on the strength of the subject's (or their representative's) consents."""


@dataclass(frozen=True, slots=True)
class StatutoryBasis:
    """Share without consent because a law obliges the sender to; always reviewed by a DPO afterwards."""

    reference: str
    justification: str


LegalBasis: TypeAlias = ConsentBasis | StatutoryBasis


@dataclass(frozen=True, slots=True)
class StatutoryProvision:
    """A catalogued duty to report: what it lets the sender share, and with which kinds of agency."""

    reference: str
    title: str
    categories: frozenset[Category]
    recipient_kinds: frozenset[str]
    sender_kinds: frozenset[str] | None = None
    """Kinds of agency the provision empowers to share (None: any body bound by the duty)."""


def _catalogue(*provisions: StatutoryProvision) -> Mapping[str, StatutoryProvision]:
    return MappingProxyType({p.reference: p for p in provisions})


# Recipient kinds are tenants.models.TenantKind values, spelled out so this module stays free of the ORM.
# Health data is in no provision: a duty to inform about a child at risk does not extend to medical records.
STATUTORY_CATALOGUE: Mapping[str, StatutoryProvision] = _catalogue(
    StatutoryProvision(
        reference="120-FZ art. 9",
        title=(
            "Federal Law No. 120-FZ of 24.06.1999 'On the Basics of the System for the Prevention of Neglect and "
            "Juvenile Delinquency' (Ob osnovakh sistemy profilaktiki beznadzornosti i pravonarusheniy "
            "nesovershennoletnikh), art. 9: bodies of the prevention system must inform about minors whose rights are "
            "violated or who are in a socially dangerous situation"
        ),
        categories=frozenset(
            {Category.IDENTITY, Category.CONTACTS, Category.FAMILY, Category.SOCIAL_ASSESSMENT, Category.CASE_NOTES}
        ),
        recipient_kinds=frozenset({"juvenile_commission", "guardianship_body", "police_juvenile_unit"}),
    ),
    StatutoryProvision(
        reference="SK RF art. 122",
        title=(
            "Family Code of the Russian Federation (Semeyny kodeks RF), art. 122: officials who learn of children left "
            "without parental care must report them to the guardianship body"
        ),
        categories=frozenset({Category.IDENTITY, Category.CONTACTS, Category.FAMILY, Category.SOCIAL_ASSESSMENT}),
        recipient_kinds=frozenset({"guardianship_body"}),
    ),
    StatutoryProvision(
        reference="120-FZ art. 11",
        title=(
            "Federal Law No. 120-FZ of 24.06.1999, art. 11, with the Model Regulation on commissions for minors "
            "(Government Decree No. 995 of 06.11.2013): the commission coordinates the bodies of the prevention "
            "system and assigns them tasks of individual preventive work with a minor and the family"
        ),
        # What a body needs to carry out its task of the plan; education records go to the school that keeps them
        # anyway. Health data stays out, as in every provision here.
        categories=frozenset(
            {
                Category.IDENTITY,
                Category.CONTACTS,
                Category.FAMILY,
                Category.EDUCATION,
                Category.SOCIAL_ASSESSMENT,
                Category.CASE_NOTES,
            }
        ),
        recipient_kinds=frozenset(
            {"social_centre", "guardianship_body", "education", "health", "police_juvenile_unit", "employment"}
        ),
        sender_kinds=frozenset({"juvenile_commission"}),
    ),
)


@dataclass(frozen=True, slots=True)
class ShareRequest:
    """One intended share: these subjects' data in these categories, to one recipient, for one purpose."""

    subject_ids: tuple[uuid.UUID, ...]
    categories: frozenset[Category]
    recipient_tenant_id: uuid.UUID
    recipient_kind: str
    purpose: str
    basis: LegalBasis
    sender_kind: str | None = None
    """The sending agency's kind; a provision limited to some kinds of sender denies a request without it."""

    def __post_init__(self) -> None:
        # Fail closed on a category this version does not know: silently skipping it would let it through unchecked.
        object.__setattr__(self, "categories", frozenset(Category(c) for c in self.categories))
        object.__setattr__(self, "subject_ids", tuple(self.subject_ids))


@dataclass(frozen=True, slots=True)
class Permit:
    """The share may go ahead with exactly these categories; nothing else may be projected into the envelope."""

    categories: frozenset[Category]
    consents_by_subject: Mapping[uuid.UUID, frozenset[uuid.UUID]]
    """Consent basis: per subject, the in-force consents the share relies on (a withdrawal of any of them must reach
    the recipient). Empty for a statutory basis."""
    review_required: bool
    """Statutory shares go to the DPO review queue."""
    basis: LegalBasis


@dataclass(frozen=True, slots=True)
class Deny:
    """The share must not go ahead; `reason` is for the social worker and holds ids and codes, never personal data."""

    code: DenyCode
    reason: str
    subject_id: uuid.UUID | None = None
    category: Category | None = None


Decision: TypeAlias = Permit | Deny

_CATEGORY_ORDER = {c: i for i, c in enumerate(Category)}


def _in_declaration_order(categories: Iterable[Category]) -> list[Category]:
    return sorted(categories, key=_CATEGORY_ORDER.__getitem__)


def decide(
    request: ShareRequest,
    consents: Iterable[ConsentView],
    now: dt.datetime,
    *,
    catalogue: Mapping[str, StatutoryProvision] = STATUTORY_CATALOGUE,
) -> Decision:
    """Permit every requested category for every requested subject, or deny naming the first pair that fails.

    All or nothing: a partial permit would let a caller send a referral that silently lacks data the recipient
    relies on. Subjects are checked in request order and categories in `Category` order, so the same inputs always
    name the same missing pair.
    """
    _require_aware("now", now)
    subject_ids = tuple(dict.fromkeys(request.subject_ids))
    if not subject_ids:
        return Deny(DenyCode.NO_SUBJECTS, "Choose at least one person whose data the referral is about.")
    if not request.categories:
        return Deny(DenyCode.NO_CATEGORIES, "Choose at least one category of data to share.")
    if not request.purpose.strip():
        return Deny(
            DenyCode.PURPOSE_MISSING,
            "State the purpose of the share: it decides which consents apply and is recorded in the audit trail.",
        )
    categories = _in_declaration_order(request.categories)
    match request.basis:
        case StatutoryBasis() as basis:
            return _decide_statutory(request, basis, categories, catalogue)
        case ConsentBasis() as basis:
            return _decide_by_consent(request, basis, subject_ids, categories, consents, now)
        case _:
            assert_never(request.basis)


def _decide_statutory(
    request: ShareRequest,
    basis: StatutoryBasis,
    categories: list[Category],
    catalogue: Mapping[str, StatutoryProvision],
) -> Decision:
    # The caller's reference and justification are free text: neither is echoed into a reason.
    provision = catalogue.get(basis.reference)
    if provision is None:
        return Deny(
            DenyCode.UNKNOWN_STATUTE,
            "The statutory reference is not in the catalogue; choose a listed provision or share on the basis of "
            "consent.",
        )
    if provision.sender_kinds is not None and request.sender_kind not in provision.sender_kinds:
        return Deny(
            DenyCode.STATUTE_DOES_NOT_COVER,
            f"{provision.reference} empowers only agencies of kind "
            f"{', '.join(repr(k) for k in sorted(provision.sender_kinds))} to share on this basis; "
            "share on the basis of consent or under another provision.",
        )
    if request.recipient_kind not in provision.recipient_kinds:
        return Deny(
            DenyCode.STATUTE_DOES_NOT_COVER,
            f"{provision.reference} does not provide for sharing with an agency of kind '{request.recipient_kind}'; "
            "choose an agency the provision names or share on the basis of consent.",
        )
    for category in categories:
        if category not in provision.categories:
            return Deny(
                DenyCode.STATUTE_DOES_NOT_COVER,
                f"{provision.reference} does not cover '{category}' data; remove '{category}' from the request or "
                "share it on the basis of consent.",
                category=category,
            )
    if len(basis.justification.strip()) < MIN_JUSTIFICATION_LENGTH:
        return Deny(
            DenyCode.JUSTIFICATION_MISSING,
            f"Write a justification of at least {MIN_JUSTIFICATION_LENGTH} characters explaining why "
            f"{provision.reference} applies; a data-protection officer will review it.",
        )
    return Permit(
        categories=frozenset(categories),
        consents_by_subject=MappingProxyType({}),
        review_required=True,
        basis=basis,
    )


def _decide_by_consent(
    request: ShareRequest,
    basis: ConsentBasis,
    subject_ids: tuple[uuid.UUID, ...],
    categories: list[Category],
    consents: Iterable[ConsentView],
    now: dt.datetime,
) -> Decision:
    wanted = set(subject_ids)
    by_subject: dict[uuid.UUID, list[ConsentView]] = {s: [] for s in subject_ids}
    for consent in consents:
        if consent.subject_id in wanted:
            by_subject[consent.subject_id].append(consent)

    relied_on: dict[uuid.UUID, frozenset[uuid.UUID]] = {}
    for subject_id in subject_ids:
        used: set[uuid.UUID] = set()
        for category in categories:
            in_scope = [
                c
                for c in by_subject[subject_id]
                if c.scope_covers(
                    subject_id,
                    category,
                    recipient_tenant_id=request.recipient_tenant_id,
                    recipient_kind=request.recipient_kind,
                    purpose=request.purpose,
                )
            ]
            covering = {c.id for c in in_scope if c.in_force(now)}
            if not covering:
                return _deny_uncovered(subject_id, category, request.purpose, in_scope, now)
            used |= covering
        relied_on[subject_id] = frozenset(used)

    return Permit(
        categories=frozenset(categories),
        consents_by_subject=MappingProxyType(relied_on),
        review_required=False,
        basis=basis,
    )


def _deny_uncovered(
    subject_id: uuid.UUID, category: Category, purpose: str, in_scope: list[ConsentView], now: dt.datetime
) -> Deny:
    """Explain the most useful thing about a pair no consent covers: a withdrawal outranks a lapse outranks nothing."""
    what = f"'{category}' data of subject {subject_id} with this recipient for the purpose '{purpose}'"
    if any(c.is_withdrawn(now) for c in in_scope):
        return Deny(
            DenyCode.CONSENT_WITHDRAWN,
            f"The consent to share {what} has been withdrawn; remove '{category}' from the request or record a new "
            "consent with the family.",
            subject_id,
            category,
        )
    if in_scope:
        if all(c.status is ConsentStatus.ACTIVE and now < c.valid_from for c in in_scope):
            state = "is not in force yet"
        else:
            state = "has expired"
        return Deny(
            DenyCode.CONSENT_EXPIRED,
            f"The consent to share {what} {state}; remove '{category}' from the request or record a current consent "
            "with the family.",
            subject_id,
            category,
        )
    return Deny(
        DenyCode.NO_CONSENT,
        f"No consent allows sharing {what}; remove '{category}' from the request or record the family's consent.",
        subject_id,
        category,
    )


def permitted_categories(
    subject_id: uuid.UUID,
    consents: Iterable[ConsentView],
    *,
    recipient_tenant_id: uuid.UUID,
    recipient_kind: str,
    purpose: str,
    now: dt.datetime,
) -> frozenset[Category]:
    """The categories the composer may offer for one subject: those some in-force consent covers for this share.

    A consent-basis request for this subject is permitted exactly when its categories are a subset of this set.
    """
    _require_aware("now", now)
    if not purpose.strip():
        return frozenset()
    return frozenset(
        category
        for consent in consents
        if consent.in_force(now)
        for category in Category
        if consent.scope_covers(
            subject_id,
            category,
            recipient_tenant_id=recipient_tenant_id,
            recipient_kind=recipient_kind,
            purpose=purpose,
        )
    )


@dataclass(frozen=True, slots=True)
class AgeRules:
    """Who may consent for whom. 18 is full civil capacity (Civil Code art. 21); a region or purpose may differ."""

    self_consent_age: int = 18

    def __post_init__(self) -> None:
        if self.self_consent_age < 1:
            raise ValueError("self_consent_age must be at least 1")


_REPRESENTATIVES = frozenset({Relation.PARENT, Relation.GUARDIAN, Relation.REPRESENTATIVE})
# A guardian or representative may act for an adult who lacks legal capacity; a parent as such may not.
_FOR_ADULTS = frozenset({Relation.SELF, Relation.GUARDIAN, Relation.REPRESENTATIVE})


def age_on(birth_date: dt.date, on: dt.date) -> int:
    """Completed years on `on`.

    Someone born on 29 February has their anniversary on 28 February in a common year, by analogy with Civil Code
    art. 192(3): a term that ends in a month without the corresponding day ends on that month's last day.
    """
    anniversary_day = birth_date.day
    if (birth_date.month, birth_date.day) == (2, 29) and not _is_leap(on.year):
        anniversary_day = 28
    before_anniversary = (on.month, on.day) < (birth_date.month, anniversary_day)
    return on.year - birth_date.year - int(before_anniversary)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def consent_giver_problem(
    *, subject_birth_date: dt.date | None, relation: Relation, on: dt.date, rules: AgeRules
) -> str | None:
    """Why this person may not give consent for this subject on `on`, or None when they may."""
    if subject_birth_date is None:
        if relation in _FOR_ADULTS:
            return None
        return (
            "A parent can consent only for a minor, and the person's date of birth is not recorded; record the date "
            "of birth, or have the person (or their guardian or representative) give consent."
        )
    if subject_birth_date > on:
        return "The date of birth is after the date of the consent; correct the date of birth or the consent date."
    if age_on(subject_birth_date, on) < rules.self_consent_age:
        if relation in _REPRESENTATIVES:
            return None
        return (
            f"The person is under {rules.self_consent_age}: consent must be given by a parent, guardian or other "
            "legal representative."
        )
    if relation in _FOR_ADULTS:
        return None
    return (
        f"The person is {rules.self_consent_age} or older and must consent themselves; a parent can consent for them "
        "only as their appointed guardian or representative."
    )
