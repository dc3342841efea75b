"""A page's CSRF token works only with the staff session it was issued to, on every form the web pages accept."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from gateway.auth.csrf import CSRF_COOKIE, EXEMPT_PREFIXES, SAFE_METHODS
from gateway.runtime import Runtime
from tests.conftest import TravelClock
from tests.integration.helpers.web import (
    SESSION,
    Client,
    Staff,
    enrolled_staff,
    page,
    redirected,
    signed_in,
    submit_password,
    with_csrf,
)

pytestmark = pytest.mark.usefixtures("english")  # these tests read the English pages


@pytest.fixture
async def other_browser(app: Litestar, api: Client) -> AsyncIterator[Client]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type] # Litestar's scope TypedDicts vs httpx's
    async with httpx.AsyncClient(
        transport=transport, base_url=str(api.base_url), headers={"Accept-Language": "en"}
    ) as browser:
        yield browser


def _form_routes(app: Litestar) -> list[str]:
    """Every page path that accepts a form (an unsafe method outside the programs' prefixes), with sample ids."""
    paths = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(EXEMPT_PREFIXES):
            continue
        if not set(route.methods) - SAFE_METHODS:
            continue
        path = route.path
        for parameter in route.path_parameters.values():
            sample = str(uuid.uuid4()) if parameter.type is uuid.UUID else "sample"
            path = path.replace("{" + parameter.full + "}", sample)
        paths.append(path)
    return paths


def _present(browser: Client, *, session: str | None, csrf: str) -> None:
    """Make `browser` present exactly these cookies, as a planted or copied cookie would be presented."""
    # The jar files cookies under the domain it derived from the host (e.g. "localhost.local"); reuse it.
    domain = next(cookie.domain for cookie in browser.cookies.jar if cookie.name == CSRF_COOKIE)
    browser.cookies.clear()
    if session is not None:
        browser.cookies.set(SESSION, session, domain=domain)
    browser.cookies.set(CSRF_COOKIE, csrf, domain=domain)


async def test_a_token_from_one_session_is_refused_with_another_sessions_cookie_on_every_form(
    app: Litestar, api: Client, other_browser: Client, runtime: Runtime, clock: TravelClock
) -> None:
    alice, bob = await enrolled_staff(runtime, clock), await enrolled_staff(runtime, clock)
    alice_session = await signed_in(api, alice, clock)
    page(await api.get("/account/profile"))
    alice_token = api.cookies[CSRF_COOKIE]
    bob_session = await signed_in(other_browser, bob, clock)
    page(await other_browser.get("/account/profile"))
    bob_token = other_browser.cookies[CSRF_COOKIE]
    assert alice_token != bob_token

    forms = _form_routes(app)
    assert "/logout" in forms
    assert len(forms) > 20  # the sign-in, casework, DPO and administration pages all take forms
    # Alice's token and cookie together, beside Bob's session; Alice's token beside Bob's session and no session.
    for session, csrf in ((bob_session, alice_token), (None, alice_token), (alice_session, bob_token)):
        _present(other_browser, session=session, csrf=csrf)
        for path in forms:
            response = await other_browser.post(path, data={"_csrf_token": csrf, "language": "en"})
            assert response.status_code == 403, (path, response.status_code)
            assert "The form has expired" in response.text
            response = await other_browser.post(path, headers={"X-CSRFToken": csrf})
            assert response.status_code == 403, (path, response.status_code)

    # Nothing of that reached either session, and each session's own token still works.
    _present(other_browser, session=bob_session, csrf=bob_token)
    page(await other_browser.get("/account/profile"))
    redirected(await other_browser.post("/logout", data=with_csrf(other_browser)), "/login")
    redirected(await api.post("/logout", data=with_csrf(api)), "/login")


async def test_each_change_of_session_comes_with_a_token_of_its_own(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff: Staff = await enrolled_staff(runtime, clock)
    page(await api.get("/login"))
    before = api.cookies[CSRF_COOKIE]

    # The sign-in form's token belongs to no session, so it is refused once a session exists...
    response = await submit_password(api, staff.user.email, staff.password)
    redirected(response, "/login/second-factor")
    pending = api.cookies[CSRF_COOKIE]
    assert pending != before
    assert (await api.post("/login/second-factor", data={"code": "000000", "_csrf_token": before})).status_code == 403
    # ...and the page the new session is sent to carries the token its response set.
    second_factor = page(await api.get("/login/second-factor"))
    assert second_factor.csrf_token == pending

    await signed_in(api, staff, clock)
    assert api.cookies[CSRF_COOKIE] != pending
    response = await api.post("/logout", data=with_csrf(api))
    redirected(response, "/login")
    assert SESSION not in api.cookies
    # Signed out: the new token is one for a browser without a session, good for the sign-in form again.
    page(await api.get("/login"))
    redirected(await submit_password(api, staff.user.email, staff.password), "/login/second-factor")
