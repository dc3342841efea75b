"""Browser tests: the real gateway (uvicorn, embedded NATS, SQLite) driven by Debian's Chromium through Playwright.

Fixtures for any page's tests: `live_server` (its `base_url`, and `run(coro)` to call services in the server's own
event loop), `agencies` (three freshly seeded agencies with signed-up staff: password and TOTP secret known),
`planning` (a juvenile commission and two agencies for its plans, staffed the same way),
`browser`, `new_page(locale)` (a page in a context of its own, so each person has their own cookies). The steps the
tests take with them (`sign_in`, `axe_check`, `screenshot`, `reload_until`, `tab_to`) are in tests/e2e/browser.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.e2e.browser import (
    CHROMIUM,
    Agencies,
    LiveServer,
    Planning,
    seed_agencies,
    seed_planning,
)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("e2e") / "var")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def agencies(live_server: LiveServer) -> Agencies:
    """Three fresh agencies: a social centre, a guardianship body (the partner) and an unrelated NGO."""
    assert live_server.runtime is not None
    return live_server.run(seed_agencies(live_server.runtime))


@pytest.fixture
def planning(live_server: LiveServer) -> Planning:
    """A juvenile commission and two agencies for its plans' tasks: a school and a guardianship body."""
    assert live_server.runtime is not None
    return live_server.run(seed_planning(live_server.runtime))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        # No sandbox: the tests may run as root in a container, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser, live_server: LiveServer) -> Iterator[Callable[[str], Page]]:
    """`new_page("ru")` opens a page for one person, at 1366×768, whose browser asks for that language."""
    contexts: list[BrowserContext] = []

    def make(locale: str = "en") -> Page:
        context = browser.new_context(
            base_url=live_server.base_url,
            locale={"en": "en-GB", "ru": "ru-RU"}.get(locale, locale),
            viewport={"width": 1366, "height": 768},
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
