"""Registration numbers (`СЕМ-2026/0042`): a per-tenant, per-year register that never skips or repeats a number."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from exchange.letters.models import LetterPrefix, LetterSequence
from tenants.clock import Clock
from tenants.errors import InvalidInput, NotFound
from tenants.models import Tenant

PREFIX_PATTERN: Final = re.compile(r"^[0-9A-ZА-ЯЁ]{1,12}$")
PREFIX_LENGTH: Final = 3
# Slugs are Latin; registers in Russian agencies are Cyrillic, so the slug is read back in Russian
# (the reverse of the everyday transliteration: "semya" -> "СЕМ", "kdn" -> "КДН", "opeka" -> "ОПЕ").
_DIGRAPHS: Final = (
    ("shch", "Щ"),
    ("sh", "Ш"),
    ("ch", "Ч"),
    ("zh", "Ж"),
    ("kh", "Х"),
    ("ts", "Ц"),
    ("yu", "Ю"),
    ("ya", "Я"),
    ("yo", "Ё"),
)
_LETTERS: Final = dict(zip("abvgdezijklmnoprstufhcyqwx", "АБВГДЕЗИЙКЛМНОПРСТУФХЦЫКВК", strict=True))


@dataclass(frozen=True, slots=True)
class RegistrationNumber:
    prefix: str
    year: int
    number: int

    def __str__(self) -> str:
        return f"{self.prefix}-{self.year}/{self.number:04d}"


def derive_prefix(slug: str) -> str:
    """The default prefix: the first letters of the tenant's slug, in Cyrillic."""
    text, letters = slug.lower(), list[str]()
    position = 0
    while position < len(text) and len(letters) < PREFIX_LENGTH:
        for latin, cyrillic in _DIGRAPHS:
            if text.startswith(latin, position):
                letters.append(cyrillic)
                position += len(latin)
                break
        else:
            char = text[position]
            if char in _LETTERS:
                letters.append(_LETTERS[char])
            elif char.isdigit():
                letters.append(char)
            position += 1
    return "".join(letters)[:PREFIX_LENGTH] or "ПИС"


def check_prefix(prefix: str) -> str:
    prefix = prefix.strip().upper()
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise InvalidInput("A registration prefix is 1 to 12 capital letters (Cyrillic or Latin) or digits.")
    return prefix


async def registration_prefix(session: AsyncSession, tenant_id: uuid.UUID, *, slug: str | None = None) -> str:
    """The tenant's chosen prefix, else one derived from its slug (looked up unless the caller knows it)."""
    chosen = await session.scalar(select(LetterPrefix.prefix).where(LetterPrefix.tenant_id == tenant_id))
    if chosen is not None:
        return chosen
    slug = slug or await session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))
    if slug is None:
        raise NotFound("No such agency.")
    return derive_prefix(slug)


async def set_registration_prefix(session: AsyncSession, *, tenant_id: uuid.UUID, prefix: str) -> str:
    """Choose the tenant's prefix; numbers already issued keep theirs, and the year's counter goes on."""
    prefix = check_prefix(prefix)
    row = await session.scalar(select(LetterPrefix).where(LetterPrefix.tenant_id == tenant_id))
    if row is None:
        session.add(LetterPrefix(tenant_id=tenant_id, prefix=prefix))
    else:
        row.prefix = prefix
    await session.flush()
    return prefix


async def next_registration_number(
    session: AsyncSession, clock: Clock, *, tenant_id: uuid.UUID, year: int, slug: str | None = None
) -> RegistrationNumber:
    """Take the next number of the tenant's register for `year`, inside the caller's (sending) transaction.

    One atomic upsert on the counter row: on PostgreSQL it locks the row until the transaction ends, so concurrent
    senders queue and each sees the committed count; SQLite transactions here hold the write lock from BEGIN. A
    transaction that rolls back takes its increment with it, so the register has no gaps.
    """
    connection = await session.connection()
    now = clock.now()
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(LetterSequence)
        .values(id=uuid7(), tenant_id=tenant_id, year=year, last_number=1, created_at=now, updated_at=now)
        .on_conflict_do_update(
            index_elements=[LetterSequence.tenant_id, LetterSequence.year],
            set_={"last_number": LetterSequence.last_number + 1, "updated_at": now},
        )
        .returning(LetterSequence.last_number)
    )
    number = (await session.execute(statement)).scalar_one()
    return RegistrationNumber(await registration_prefix(session, tenant_id, slug=slug), year, int(number))
