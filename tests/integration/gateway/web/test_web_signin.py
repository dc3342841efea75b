"""Staff sign-in through the web pages: password, second factor, enrolment, password change, sessions, CSRF."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, Router, get

from gateway.auth.guards import GUARDS, ROLES, SCOPE
from gateway.runtime import Runtime
from gateway.web.signin import setup_qr_svg
from tenants import services
from tenants.calendar import DEFAULT_TIME_ZONE, format_moment, time_zone
from tenants.models import Role, Scope, User
from tenants.persistence import platform_session
from tests.environment import TravelClock
from tests.factories import PASSWORD, make_tenant, make_user
from tests.integration.helpers.web import (
    NEW_PASSWORD,
    SESSION,
    Client,
    current_code,
    enrolled_staff,
    page,
    redirected,
    secret_from,
    session_cookie,
    signed_in,
    submit_code,
    submit_password,
    use_session,
    with_csrf,
)

pytestmark = pytest.mark.usefixtures("english")  # these tests read the English texts; test_web_pages.py the Russian

DIRECTORY = "/api/v1/directory/tenants"


# -- the first sign-in, from the one-time password to the start page ---------------------------------------------


async def test_first_sign_in_enrols_totp_and_forces_a_new_password(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    tenant = await make_tenant(runtime, name="Центр социальной помощи семье и детям")
    user = await make_user(runtime, tenant)
    lifetime = int(runtime.session_policy.lifetime.total_seconds())

    response = await submit_password(api, user.email)
    redirected(response, "/account/second-factor/enrol")
    pending = session_cookie(response)
    assert {"httponly", "path", "max-age"} <= pending.keys()
    assert pending["samesite"].lower() == "lax"
    assert pending["path"] == "/"
    assert "secure" not in pending  # http base URL in the tests; https deployments get Secure and __Host-
    assert 0 < int(pending["max-age"]) <= lifetime

    # Until the second factor is set up, the password alone goes nowhere else.
    redirected(await api.get("/login/second-factor"), "/account/second-factor/enrol")
    redirected(await api.get("/"), "/account/second-factor/enrol")
    redirected(await api.get("/account/password"), "/account/second-factor/enrol")

    enrolment = await api.get("/account/second-factor/enrol")
    page(enrolment)
    secret_text = re.search(r'id="totp-secret">([A-Z2-7]+)<', enrolment.text)
    assert secret_text is not None
    assert f"secret={secret_text.group(1)}" in enrolment.text  # the otpauth:// URI is shown as text too
    # Beside the key, the same URI as a QR code: SVG written into the page, nothing loaded for it and no script.
    qr_code = re.search(
        r'<div class="totp-qr" id="totp-qr" role="img" aria-label="[^"]+">(<svg .*?</svg>)</div>', enrolment.text, re.S
    )
    assert qr_code is not None
    uri = html.unescape(re.search(r'id="totp-uri">([^<]+)<', enrolment.text).group(1))  # type: ignore[union-attr]
    assert uri.startswith("otpauth://totp/casebridge:")
    assert qr_code.group(1) == setup_qr_svg(uri)
    assert "<script" not in enrolment.text
    assert "<img" not in enrolment.text
    secret = secret_from(secret_text.group(1))
    # Reloading shows the same pending secret rather than replacing the one the user may have typed in.
    assert secret_text.group(1) in (await api.get("/account/second-factor/enrol")).text

    response = await api.post("/account/second-factor/enrol", data=with_csrf(api, code=current_code(secret, clock)))
    shown = page(response)
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", response.text)
    assert len(codes) == 10
    assert 'href="/account/password"' in response.text
    full = session_cookie(response)
    assert full["value"] != pending["value"]  # a new token once the second factor is passed
    assert int(full["max-age"]) == lifetime
    assert response.text.count("<form") == 1  # the codes page has no form but the language switcher
    assert shown.csrf_token is not None
    # The codes are shown once: the enrolment is over, so the page only sends the user on.
    redirected(await api.get("/account/second-factor/enrol"), "/account/password")

    use_session(api, pending["value"])
    redirected(await api.get("/account/password"), "/login")
    use_session(api, full["value"])

    # The password the user was given must be replaced before anything else.
    redirected(await api.get("/"), "/account/password")
    page(await api.get("/account/password"))
    response = await api.post(
        "/account/password",
        data=with_csrf(api, current_password=PASSWORD, new_password=NEW_PASSWORD, confirmation=NEW_PASSWORD),
    )
    redirected(response, "/")
    assert session_cookie(response)["value"] != full["value"]

    home = await api.get("/account/profile")
    page(home)
    assert user.email in home.text
    assert tenant.name in home.text
    assert "Specialist" in home.text
    assert 'action="/logout"' in home.text
    assert str(user.id) not in home.text
    assert str(tenant.id) not in home.text


async def test_a_wrong_enrolment_code_is_refused_and_the_secret_shown_again(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    user = await make_user(runtime, await make_tenant(runtime))
    await submit_password(api, user.email)
    secret_text = re.search(r'id="totp-secret">([A-Z2-7]+)<', (await api.get("/account/second-factor/enrol")).text)
    assert secret_text is not None
    wrong = f"{(int(current_code(secret_from(secret_text.group(1)), clock)) + 500_000) % 1_000_000:06d}"

    response = await api.post("/account/second-factor/enrol", data=with_csrf(api, code=wrong))
    page(response, status=400, alert=True)
    assert "That code is not correct" in response.text
    assert secret_text.group(1) in response.text
    redirected(await api.get("/"), "/account/second-factor/enrol")


async def test_password_change_checks_its_input(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    await signed_in(api, staff, clock)

    cases = [
        (staff.password, "another long passphrase", "a different one entirely", "do not match"),
        ("not my password at all", "another long passphrase", "another long passphrase", "current password is not"),
        (staff.password, "short", "short", "at least 12 characters"),
    ]
    for current, new, confirmation, message in cases:
        response = await api.post(
            "/account/password",
            data=with_csrf(api, current_password=current, new_password=new, confirmation=confirmation),
        )
        page(response, status=400, alert=True)
        assert message in response.text
    page(await api.get("/account/profile"))  # a refused change leaves the session as it was


async def test_a_password_change_signs_out_every_other_browser(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff = await enrolled_staff(runtime, clock)
    elsewhere = await signed_in(api, staff, clock)
    api.cookies.delete(SESSION)
    here = await signed_in(api, staff, clock)

    new = "yet another passphrase"
    response = await api.post(
        "/account/password", data=with_csrf(api, current_password=staff.password, new_password=new, confirmation=new)
    )
    redirected(response, "/")
    page(await api.get("/account/profile"))  # this browser carries on with a fresh token

    for token in (elsewhere, here):
        use_session(api, token)
        redirected(await api.get("/"), "/login")


# -- signing in with a second factor ------------------------------------------------------------------------------


async def test_sign_in_with_totp(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)

    response = await submit_password(api, staff.user.email.upper(), staff.password)
    redirected(response, "/login/second-factor")
    pending = session_cookie(response)["value"]
    page(await api.get("/login/second-factor"))

    response = await submit_code(api, current_code(staff.secret, clock))
    redirected(response, "/")
    token = session_cookie(response)["value"]
    assert token != pending
    home = await api.get("/account/profile")
    page(home)
    assert staff.user.email in home.text

    # The token from before the second factor ended with it (no session fixation).
    use_session(api, pending)
    redirected(await api.get("/"), "/login")
    redirected(await api.get("/login/second-factor"), "/login")


async def test_a_recovery_code_works_once(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    first, second = staff.recovery_codes[:2]

    await submit_password(api, staff.user.email, staff.password)
    redirected(await submit_code(api, first.upper()), "/")
    await api.post("/logout", data=with_csrf(api))

    await submit_password(api, staff.user.email, staff.password)
    response = await submit_code(api, first)
    page(response, status=400, alert=True)
    redirected(await submit_code(api, second), "/")


async def test_one_recovery_code_spent_by_two_browsers_at_once_works_once(
    app: Litestar, api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff = await enrolled_staff(runtime, clock)
    # Litestar types __call__ with its own scope TypedDicts, which mypy does not match to httpx's ASGI callable.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    browsers = [
        httpx.AsyncClient(transport=transport, base_url=str(api.base_url), headers={"Accept-Language": "en"})
        for _ in "ab"
    ]
    try:
        for browser in browsers:
            redirected(await submit_password(browser, staff.user.email, staff.password), "/login/second-factor")
        results = await asyncio.gather(*(submit_code(browser, staff.recovery_codes[0]) for browser in browsers))
    finally:
        for browser in browsers:
            await browser.aclose()
    assert sorted(r.status_code for r in results) == [303, 400]


async def test_a_wrong_totp_code_is_refused(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    await submit_password(api, staff.user.email, staff.password)
    wrong = f"{(int(current_code(staff.secret, clock)) + 500_000) % 1_000_000:06d}"

    for code in (wrong, "not a code", ""):
        response = await submit_code(api, code)
        page(response, status=400, alert=True)
        assert "That code is not correct." in response.text
    redirected(await api.get("/"), "/login/second-factor")


async def test_repeated_wrong_codes_lock_the_account_and_end_the_half_sign_in(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff = await enrolled_staff(runtime, clock)
    await submit_password(api, staff.user.email, staff.password)
    for _ in range(runtime.lockout.max_failures - 1):
        page(await submit_code(api, "000000x"), status=400, alert=True)

    response = await submit_code(api, "000000x")
    page(response, status=400, alert=True)
    assert "This account is locked until" in response.text
    assert session_cookie(response)["max-age"] == "0"
    redirected(await api.get("/login/second-factor"), "/login")


# -- refusals -----------------------------------------------------------------------------------------------------


async def test_a_wrong_password_or_unknown_email_gets_one_message(api: Client, runtime: Runtime) -> None:
    user = await make_user(runtime, await make_tenant(runtime))
    for email, password in ((user.email, "not the password"), ("nobody@example.org", PASSWORD), ("", "")):
        response = await submit_password(api, email, password)
        page(response, status=400, alert=True)
        assert "The email or password is not correct." in response.text
        assert "set-cookie" not in response.headers or SESSION not in response.headers["set-cookie"]


async def test_lockout_after_repeated_wrong_passwords(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    user = await make_user(runtime, await make_tenant(runtime))
    for _ in range(runtime.lockout.max_failures - 1):
        page(await submit_password(api, user.email, "not the password"), status=400, alert=True)

    response = await submit_password(api, user.email, "not the password")
    page(response, status=400, alert=True)
    async with platform_session(runtime.sessions) as session:
        locked_until = (await session.get_one(User, user.id)).locked_until
    assert locked_until is not None
    # Signed out, the page shows times in the default agency zone, in its one format for English.
    until = format_moment(locked_until, time_zone(DEFAULT_TIME_ZONE), "en")
    assert f"Too many failed attempts. This account is locked until {until}." in response.text

    # Even the right password waits for the lock to pass.
    response = await submit_password(api, user.email)
    page(response, status=400, alert=True)
    assert "This account is locked until" in response.text

    clock.advance(runtime.lockout.lock_for + dt.timedelta(seconds=1))
    redirected(await submit_password(api, user.email), "/account/second-factor/enrol")


async def test_a_suspended_organisation_is_refused(api: Client, runtime: Runtime) -> None:
    tenant = await make_tenant(runtime)
    user = await make_user(runtime, tenant)
    async with platform_session(runtime.sessions) as session, session.begin():
        await services.set_tenant_status(session, slug=tenant.slug, status="suspended")

    response = await submit_password(api, user.email)
    page(response, status=400, alert=True)
    assert "Your organisation's access to casebridge is suspended." in response.text


async def test_a_suspension_ends_sessions_already_running(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    await signed_in(api, staff, clock)
    async with platform_session(runtime.sessions) as session, session.begin():
        await services.set_tenant_status(session, slug=staff.tenant.slug, status="suspended")
    redirected(await api.get("/"), "/login")


async def test_forms_without_the_csrf_token_are_refused(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    page(await api.get("/login"))

    missing = await api.post("/login", data={"email": staff.user.email, "password": staff.password})
    assert missing.status_code == 403
    forged = await api.post(
        "/login", data={"email": staff.user.email, "password": staff.password, "_csrf_token": "0" * 128}
    )
    assert forged.status_code == 403

    await signed_in(api, staff, clock)
    assert (await api.post("/logout")).status_code == 403
    page(await api.get("/account/profile"))  # still signed in


# -- sessions -----------------------------------------------------------------------------------------------------


async def test_a_pending_session_is_no_principal(
    api: Client, app: Litestar, runtime: Runtime, clock: TravelClock
) -> None:
    # A guarded page outside /api/ (cookies never authenticate the API): only a principal gets through.
    @get("/test-only/whoami", opt={SCOPE: Scope.DIRECTORY_READ, ROLES: [Role.SPECIALIST]}, sync_to_thread=False)
    def whoami(request: Request[Any, Any, Any]) -> dict[str, str]:
        return {"actor": str(request.scope["auth"].actor_id)}

    app.register(Router("/", route_handlers=[whoami], guards=GUARDS))  # mounted as the staff pages are
    staff = await enrolled_staff(runtime, clock)
    redirected(await submit_password(api, staff.user.email, staff.password), "/login/second-factor")

    redirected(await api.get("/"), "/login/second-factor")
    redirected(await api.get("/account/password"), "/login/second-factor")
    redirected(await api.get("/test-only/whoami"), "/login")  # a page answers a browser with the sign-in page
    assert (await api.get(DIRECTORY)).status_code == 401

    redirected(await submit_code(api, current_code(staff.secret, clock)), "/")
    assert (await api.get("/test-only/whoami")).json() == {"actor": str(staff.user.id)}
    assert (await api.get(DIRECTORY)).status_code == 401  # a session cookie is no API credential either


async def test_logout_ends_the_session(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    token = await signed_in(api, staff, clock)
    page(await api.get("/account/profile"))

    response = await api.post("/logout", data=with_csrf(api))
    redirected(response, "/login")
    assert session_cookie(response)["max-age"] == "0"
    redirected(await api.get("/"), "/login")

    use_session(api, token)
    redirected(await api.get("/"), "/login")
    assert (await api.get(DIRECTORY)).status_code == 401


async def test_an_idle_session_expires(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    await signed_in(api, staff, clock)

    clock.advance(runtime.session_policy.idle - dt.timedelta(minutes=2))
    page(await api.get("/account/profile"))  # use keeps the session alive...
    clock.advance(runtime.session_policy.idle - dt.timedelta(minutes=2))
    page(await api.get("/account/profile"))
    clock.advance(runtime.session_policy.idle + dt.timedelta(seconds=1))  # ...and idleness ends it
    redirected(await api.get("/"), "/login")


async def test_the_sign_in_page_sends_a_signed_in_user_home(api: Client, runtime: Runtime, clock: TravelClock) -> None:
    staff = await enrolled_staff(runtime, clock)
    redirected(await api.get("/"), "/login")
    await signed_in(api, staff, clock)
    redirected(await api.get("/login"), "/")
    assert (await api.get("/static/casebridge.css")).status_code == 200
    # The icon every page links, and the one browsers ask for unprompted: no 404 in any page's log.
    page_html = (await api.get("/account/profile")).text
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page_html
    svg, ico = await api.get("/static/favicon.svg"), await api.get("/favicon.ico")
    assert (svg.status_code, svg.headers["content-type"]) == (200, "image/svg+xml")
    assert (ico.status_code, ico.headers["content-type"]) == (200, "image/x-icon")
    assert ico.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
