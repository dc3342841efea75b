"""Keyset pagination: cursors round-trip and refuse what the server did not issue; pages cover every row once."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from tenants.errors import InvalidInput
from tenants.pagination import (
    BAD_CURSOR,
    Page,
    by_id,
    check_limit,
    cut,
    decode_cursor,
    decode_time_cursor,
    encode_cursor,
    encode_time_cursor,
    newest_first_by_time,
    rows_page,
    scalars_page,
)
from tests.unit.tenants.tables import Row

AT = dt.datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_an_id_cursor_names_the_row_it_was_made_for() -> None:
    row_id = uuid7()
    cursor = encode_cursor(row_id)
    assert decode_cursor(cursor) == row_id
    assert "=" not in cursor  # it travels in a query string as it is


def test_a_time_cursor_names_the_key_it_was_made_for() -> None:
    row_id = uuid7()
    assert decode_time_cursor(encode_time_cursor(AT, row_id)) == (AT, row_id)
    before_1970 = dt.datetime(1969, 7, 20, 20, 17, tzinfo=dt.UTC)
    assert decode_time_cursor(encode_time_cursor(before_1970, row_id)) == (before_1970, row_id)


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        "курсор",  # not ASCII
        "A",  # not a whole byte
        _b64(b"\x01" * 15),  # too short for an id
        _b64(b"\x01" * 24),  # a time cursor where an id cursor belongs
    ],
)
def test_an_id_cursor_the_server_did_not_issue_is_refused_in_one_sentence(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_cursor(cursor)
    assert str(refused.value) == BAD_CURSOR == "The cursor is not one this server issued."


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        "курсор",
        _b64(uuid.UUID(int=1).bytes),  # an id cursor where a time cursor belongs
        _b64(b"\x7f" + b"\xff" * 23),  # a time past any datetime
    ],
)
def test_a_time_cursor_the_server_did_not_issue_is_refused_in_one_sentence(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_time_cursor(cursor)
    assert str(refused.value) == BAD_CURSOR


def test_a_page_knows_whether_more_rows_follow_and_which_row_they_follow() -> None:
    assert cut([1, 2, 3], 2) == Page([1, 2], more=True)
    assert cut([1, 2, 3], 2).last == 2
    assert cut([1, 2], 2) == Page([1, 2], more=False)
    assert cut([1, 2], 2).last is None
    assert cut([], 2).last is None


@pytest.mark.parametrize(("limit", "most"), [(0, 10), (11, 10), (-1, 10)])
def test_a_limit_outside_the_bounds_is_refused(limit: int, most: int) -> None:
    with pytest.raises(InvalidInput, match=f"limit must be between 1 and {most}."):
        check_limit(limit, most)
    check_limit(most, most)


async def _all_pages(session: AsyncSession, limit: int, *, newest_first: bool) -> list[list[uuid.UUID]]:
    pages, after = [], None
    while True:
        page = await scalars_page(session, by_id(select(Row), Row.id, after, newest_first=newest_first), limit)
        pages.append([r.id for r in page.rows])
        if page.last is None:
            return pages
        after = decode_cursor(encode_cursor(page.last.id))


@pytest.mark.parametrize("newest_first", [True, False])
async def test_pages_by_id_cover_every_row_once_in_order(session: AsyncSession, newest_first: bool) -> None:
    ids = [uuid7() for _ in range(5)]
    session.add_all(Row(id=i, at=AT) for i in ids)
    await session.flush()
    expected = sorted(ids, reverse=newest_first)
    assert await _all_pages(session, 2, newest_first=newest_first) == [expected[0:2], expected[2:4], expected[4:]]
    assert await _all_pages(session, 5, newest_first=newest_first) == [expected]


async def test_pages_by_time_break_ties_by_id_and_cover_every_row_once(session: AsyncSession) -> None:
    # Three rows share one time: the id decides their order, and a page boundary between them loses none.
    rows = [Row(id=uuid7(), at=AT + dt.timedelta(seconds=s)) for s in (0, 1, 1, 1, 2)]
    session.add_all(rows)
    await session.flush()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.at, r.id), reverse=True)]
    seen, after = [], None
    while True:
        page = await rows_page(session, newest_first_by_time(select(Row.id, Row.at), Row.at, Row.id, after), 2)
        seen.append([r.id for r in page.rows])
        if page.last is None:
            break
        after = decode_time_cursor(encode_time_cursor(page.last.at.replace(tzinfo=dt.UTC), page.last.id))
    assert seen == [expected[0:2], expected[2:4], expected[4:]]
