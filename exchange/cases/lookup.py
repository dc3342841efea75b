"""Finding one of a tenant's people by full name and birth date (and SNILS) while every name stays sealed.

Each subject row carries keyed lookup digests: HMAC-SHA-256, under a key derived from the master key for the
owning tenant (`casebridge/person-lookup/v1/<tenant>`), of the folded name with the birth date, and of the SNILS's
digits. They are computed when the subject is recorded (and by `casebridge subjects index` for older rows). Only an
exact digest finds a row, so the digests neither list nor hint at anyone; without the key they cannot be tested
against guessed names. The rule that turns matching rows into one person is `choose` (docs/audit.md, "Finding a
person").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.cases.models import Subject
from tenants.errors import InvalidInput
from tenants.models import fold
from tenants.principal import Principal

_SNILS_SEPARATORS = re.compile(r"[\s-]")
SNILS_DIGITS = 11


def lookup_key_purpose(tenant_id: uuid.UUID) -> str:
    """What the master key derives a tenant's lookup key for (never the pseudonym key: the two must not link)."""
    return f"casebridge/person-lookup/v1/{tenant_id}"


def folded_name(full_name: str) -> str:
    """A name as it is matched: the directory's search folding (case, ё as е, runs of spaces)."""
    return fold(full_name)


def snils_digits(snils: str) -> str:
    """A SNILS's 11 digits, written with or without its hyphens and space; anything else is refused."""
    digits = _SNILS_SEPARATORS.sub("", snils)
    if len(digits) != SNILS_DIGITS or not digits.isascii() or not digits.isdigit():
        raise InvalidInput("A SNILS has 11 digits, e.g. 123-456-789 01.")
    return digits


@dataclass(frozen=True, slots=True)
class LookupDigests:
    name_birth: str | None  # None without a birth date: a name alone finds no one
    snils: str | None


def digests(key: bytes, *, full_name: str, birth_date: dt.date | None, snils: str | None) -> LookupDigests:
    """The digests one person's details give under one tenant's lookup key."""
    name = folded_name(full_name)
    name_birth = _digest(key, "name-birth", f"{name}\x1f{birth_date.isoformat()}") if name and birth_date else None
    return LookupDigests(name_birth, _digest(key, "snils", snils_digits(snils)) if snils else None)


def _digest(key: bytes, field: str, value: str) -> str:
    # The field's name goes in first, so a value of one field can never produce another field's digest.
    return hmac.new(key, f"{field}\x00{value}".encode(), hashlib.sha256).hexdigest()


class PersonIndex:
    """Computes lookup digests with each tenant's lookup key, derived once per tenant."""

    def __init__(self, derive: Callable[[uuid.UUID], bytes]) -> None:
        self._derive = derive
        self._keys: dict[uuid.UUID, bytes] = {}

    def digests(
        self, tenant_id: uuid.UUID, *, full_name: str, birth_date: dt.date | None, snils: str | None
    ) -> LookupDigests:
        key = self._keys.get(tenant_id)
        if key is None:
            key = self._keys[tenant_id] = self._derive(tenant_id)
        return digests(key, full_name=full_name, birth_date=birth_date, snils=snils)

    def index(self, subject: Subject, fields: dict[str, object]) -> None:
        """Set `subject`'s digests from its (unsealed) fields, as `SubjectIn` gives them."""
        identifiers = fields.get("identifiers") or {}
        snils = identifiers.get("snils") if isinstance(identifiers, dict) else None
        birth = fields.get("birth_date")
        found = self.digests(
            subject.tenant_id,
            full_name=str(fields.get("full_name") or ""),
            birth_date=dt.date.fromisoformat(birth) if isinstance(birth, str) else None,
            snils=str(snils) if snils else None,
        )
        subject.name_lookup, subject.snils_lookup = found.name_birth, found.snils


# -- matching ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """One person: every record of theirs in the tenant's cases (one per case), oldest first."""

    subject_ids: tuple[uuid.UUID, ...]
    result: ClassVar[str] = "found"  # how the audit event records the outcome of a lookup


@dataclass(frozen=True, slots=True)
class NoMatch:
    result: ClassVar[str] = "none"


@dataclass(frozen=True, slots=True)
class SeveralPeople:
    """People with different SNILS share the name and birth date: the SNILS must say which one is meant."""

    result: ClassVar[str] = "several"


PersonMatch = Found | NoMatch | SeveralPeople


@dataclass(frozen=True, slots=True)
class Candidate:
    subject_id: uuid.UUID
    snils: str | None  # the row's SNILS digest, None when no SNILS was recorded


def choose(candidates: Iterable[Candidate], snils: str | None) -> PersonMatch:
    """The person that rows with the asked name and birth date make up.

    A SNILS recorded on a row tells people apart: rows with different SNILS are different people. A row without one
    belongs to the person of its name and birth date, unless people with different SNILS share them; then it cannot
    be told whose it is, and is left out when a SNILS is given (or makes the answer `SeveralPeople` without one).
    """
    rows = list(candidates)
    recorded = {c.snils for c in rows if c.snils is not None}
    if snils is None:
        if len(recorded) > 1:
            return SeveralPeople()
        chosen = rows
    else:
        unattributed_fit = recorded <= {snils}
        chosen = [c for c in rows if c.snils == snils or (c.snils is None and unattributed_fit)]
    if not chosen:
        return NoMatch()
    return Found(tuple(sorted(c.subject_id for c in chosen)))


async def find_person(
    session: AsyncSession,
    index: PersonIndex,
    principal: Principal,
    *,
    full_name: str,
    birth_date: dt.date,
    snils: str | None,
) -> PersonMatch:
    """The caller's own person with exactly these details; people of other tenants are never considered."""
    wanted = index.digests(principal.tenant_id, full_name=full_name, birth_date=birth_date, snils=snils)
    if wanted.name_birth is None:
        return NoMatch()
    rows = await session.execute(
        select(Subject.id, Subject.snils_lookup).where(
            Subject.tenant_id == principal.tenant_id,
            Subject.name_lookup == wanted.name_birth,
            Subject.erased_at.is_(None),
        )
    )
    return choose((Candidate(subject_id, digest) for subject_id, digest in rows), wanted.snils)


async def records_of(
    session: AsyncSession, index: PersonIndex, principal: Principal, *, full_name: str, birth_date: dt.date
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(case id, subject id) of every record in the caller's own cases with this name and birth date, oldest first.

    Other tenants' records are never considered: the digest is computed under the caller's own lookup key and the
    rows are those of the caller's tenant.
    """
    wanted = index.digests(principal.tenant_id, full_name=full_name, birth_date=birth_date, snils=None)
    rows = await session.execute(
        select(Subject.case_id, Subject.id)
        .where(
            Subject.tenant_id == principal.tenant_id,
            Subject.name_lookup == wanted.name_birth,
            Subject.erased_at.is_(None),
        )
        .order_by(Subject.id)
    )
    return [(case_id, subject_id) for case_id, subject_id in rows]
