"""Keyset pagination: one page of rows past the last row the caller saw, and the opaque cursor that names that row.

A list runs in the order of a unique key: a UUIDv7 id (the order rows were made in), or (time, id) for the audit
trail. A page is the rows past the previous page's last key, so a deep page costs what the first does, and rows
written meanwhile are neither repeated nor skipped. One row more than asked for is read to tell whether another
page follows. Every layer that pages uses this module; it sits at the bottom (tenants) so each can.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, TypeVarTuple

from sqlalchemy import Row, Select, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tenants.errors import InvalidInput

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
S = TypeVar("S", bound=Select[*tuple[Any, ...]])

BAD_CURSOR = "The cursor is not one this server issued."
# A (time, id) key: microseconds since the Unix epoch (signed, big-endian), then the id's 16 bytes.
_TIME_KEY = struct.Struct(">q16s")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """The rows of one page, and whether more rows follow it."""

    rows: list[T]
    more: bool

    @property
    def last(self) -> T | None:
        """The row the next page starts after; None on the last page."""
        return self.rows[-1] if self.more and self.rows else None


def cut(rows: Sequence[T], limit: int) -> Page[T]:
    """The page among `rows`, which were read with a limit of `limit + 1`."""
    return Page(list(rows[:limit]), len(rows) > limit)


async def scalars_page(session: AsyncSession, query: Select[T], limit: int) -> Page[T]:
    """One page of the entities `query` selects (its order, offset and keyset conditions already applied)."""
    return cut(list(await session.scalars(query.limit(limit + 1))), limit)


async def rows_page(session: AsyncSession, query: Select[*Ts], limit: int) -> Page[Row[*Ts]]:
    """One page of the rows `query` selects (its order, offset and keyset conditions already applied)."""
    return cut((await session.execute(query.limit(limit + 1))).all(), limit)


def by_id(query: S, column: InstrumentedAttribute[uuid.UUID], after: uuid.UUID | None, *, newest_first: bool) -> S:
    """`query` in the order of the UUIDv7 `column`, newest or oldest first, from the row after `after` on."""
    if after is not None:
        query = query.where(column < after if newest_first else column > after)
    return query.order_by(column.desc() if newest_first else column)


def newest_first_by_time(
    query: S,
    time_column: InstrumentedAttribute[dt.datetime],
    id_column: InstrumentedAttribute[uuid.UUID],
    after: tuple[dt.datetime, uuid.UUID] | None,
) -> S:
    """`query` newest first by (time, id), from the row after the key `after` on."""
    if after is not None:
        at, last_id = after
        # The first condition alone can use an index that ends in the time column; the second breaks ties.
        query = query.where(time_column <= at, or_(time_column < at, id_column < last_id))
    return query.order_by(time_column.desc(), id_column.desc())


def check_limit(limit: int, most: int) -> None:
    if not 1 <= limit <= most:
        raise InvalidInput(f"limit must be between 1 and {most}.")


# -- cursors ----------------------------------------------------------------------------------------------------------


def encode_cursor(row_id: uuid.UUID) -> str:
    """The cursor after the row with this id."""
    return _encode(row_id.bytes)


def decode_cursor(cursor: str) -> uuid.UUID:
    """The row id an `encode_cursor` cursor names; InvalidInput for anything this server did not issue."""
    try:
        return uuid.UUID(bytes=_decode(cursor))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(BAD_CURSOR) from exc


def encode_time_cursor(at: dt.datetime, row_id: uuid.UUID) -> str:
    """The cursor after the row with this (time, id) key."""
    return _encode(_TIME_KEY.pack((at - _EPOCH) // dt.timedelta(microseconds=1), row_id.bytes))


def decode_time_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (time, id) key an `encode_time_cursor` cursor names; InvalidInput for anything this server did not issue."""
    try:
        micros, raw_id = _TIME_KEY.unpack(_decode(cursor))
        return _EPOCH + dt.timedelta(microseconds=micros), uuid.UUID(bytes=raw_id)
    except (ValueError, TypeError, OverflowError, struct.error) as exc:
        raise InvalidInput(BAD_CURSOR) from exc


def _encode(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def _decode(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
