"""The one way a test waits for something that happens in the background: poll it, within a bound.

Delivery over the bus, the relay, the sealer and child processes all act asynchronously; a test polls what it can
observe until it holds, and fails after a bounded time with a message naming what it waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

# Long enough for the slowest delivery on a two-core machine that also runs the chaos cluster's bursts, short enough
# to fail well inside CI's limit. A bound only: a wait that holds returns at once.
WITHIN_S = 60.0
EVERY_S = 0.05
# The interval grows by this factor up to EVERY_MAX_S. Each check of a referral is an audited read (a write
# transaction), so polling at a fixed 50 ms through a slow delivery would compete with the delivery it waits for.
GROWTH = 1.5
EVERY_MAX_S = 0.5


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    *,
    within: float = WITHIN_S,
    every: float = EVERY_S,
    what: str | Callable[[], str] | None = None,
) -> Any:
    """Call `check` (plain or async) until it returns something truthy, and return that: first after `every`
    seconds, then at intervals growing by GROWTH up to EVERY_MAX_S (or `every`, if that is longer).

    After `within` seconds (a check still running is cancelled) fail with an AssertionError naming what was awaited:
    `what` (a text, or a function that describes the state at that moment), else the check's name or, for a lambda,
    its source line. An exception raised by the check ends the wait at once: a check may assert what must hold
    meanwhile (say, that a child process is still running).
    """
    timeout = asyncio.timeout(within)
    try:
        async with timeout:
            while True:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return result
                await asyncio.sleep(every)
                every = _next(every)
    except TimeoutError:
        if not timeout.expired():
            raise  # the check's own timeout, not the wait's
        raise AssertionError(f"not within {within:g} s: {_awaited(check, what)}") from None


def eventually_blocking(
    check: Callable[[], Any],
    *,
    within: float = WITHIN_S,
    every: float = EVERY_S,
    what: str | Callable[[], str] | None = None,
) -> Any:
    """`eventually` for a test that cannot await (sync Playwright, a test driving child processes): the same bound,
    the same failure message. A plain call cannot be cancelled, so a check still running at the bound ends first."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within:g} s: {_awaited(check, what)}")
        time.sleep(every)
        every = _next(every)


def _next(every: float) -> float:
    return every if every >= EVERY_MAX_S else min(every * GROWTH, EVERY_MAX_S)


def _awaited(check: Callable[[], Any], what: str | Callable[[], str] | None) -> str:
    if isinstance(what, str):
        return what
    if what is not None:
        return what()
    name = getattr(check, "__qualname__", repr(check))
    if "<lambda>" not in name:
        return name
    try:
        return inspect.getsource(check).strip()
    except (OSError, TypeError):
        return name
