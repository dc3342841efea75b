"""Page parameters of the staff pages' lists: cursors and offsets read safely; a bad page link goes back to page one.

Every list on a page is cut into pages on the server and shown with the `pager` macro (`_macros.html`). Lists kept in
the order of their ids (cases, referrals, consents) page by cursor, like the API, and so do the audit trail's events,
whose cursor is the last event's time and id; lists with an order of their own (the directory by name, a timeline by
date, reminders by deadline) page by offset.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlencode

from litestar import Request, Response

from gateway.web.pages import redirect, translator
from tenants.errors import InvalidInput
from tenants.pagination import decode_cursor, decode_time_cursor

# Rows per page; small enough to read on a 1366x768 screen without losing the page's headings.
CASES_PER_PAGE: Final = 20
REFERRALS_PER_PAGE: Final = 20
CONSENTS_PER_PAGE: Final = 10
TIMELINE_PER_PAGE: Final = 20
MESSAGES_PER_PAGE: Final = 20
AGENCIES_PER_PAGE: Final = 25
REMINDERS_PER_PAGE: Final = 10
PLANS_PER_PAGE: Final = 20
# One line an event under its day's heading: a page of the DPO's search fits about two screens.
AUDIT_EVENTS_PER_PAGE: Final = 25
# An offset past this is not a page anybody reached by following links.
MAX_OFFSET: Final = 100_000


class BadPageLink(Exception):
    """A page parameter that no pager link produces (not a cursor this server issued, a negative or huge offset)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def cursor_param(request: Request[Any, Any, Any], name: str) -> uuid.UUID | None:
    """The row id a cursor parameter carries, or None for the first page."""
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return decode_cursor(value)
    except InvalidInput:
        raise BadPageLink(name) from None


def time_cursor_param(request: Request[Any, Any, Any], name: str) -> str | None:
    """A cursor parameter of a list in time order (the audit trail's events), checked and passed on as it is."""
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        decode_time_cursor(value)
    except InvalidInput:
        raise BadPageLink(name) from None
    return str(value)


def offset_param(request: Request[Any, Any, Any], name: str) -> int:
    """How many rows an offset parameter skips (0 for the first page)."""
    value = request.query_params.get(name)
    if not value:
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > len(str(MAX_OFFSET)):
        raise BadPageLink(name)
    offset = int(value)
    if offset > MAX_OFFSET:
        raise BadPageLink(name)
    return offset


def next_offset(offset: int, limit: int, more: bool) -> str | None:
    return str(offset + limit) if more else None


def page_state(request: Request[Any, Any, Any], names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """For each list of a page with several, the other lists' current pages: turning one list's page keeps the others
    where they are."""
    current = {n: request.query_params[n] for n in names if request.query_params.get(n)}
    return {n: {k: v for k, v in current.items() if k != n} for n in names}


def back_to_first_page(request: Request[Any, Any, Any], error: BadPageLink, also: Iterable[str] = ()) -> Response[Any]:
    """The same page at its first page, saying why: without the bad page parameter and the page's other lists' ones
    (`also`); filters and tabs are kept."""
    _ = translator(request)
    dropped = {error.name, *also}
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in dropped]
    target = request.url.path + (f"?{urlencode(kept)}" if kept else "")
    return redirect(request, target, error=_("That page link is not valid, so the first page is shown."))
