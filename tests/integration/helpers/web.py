"""A browser's side of the staff pages: signed-in staff, forms with their CSRF token, the checks every page must pass,
and the sign-in flow (password, second factor, enrolment) as a member of staff goes through it."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpx
from sqlalchemy import select

from audit.models import AuditEvent
from gateway.runtime import Runtime
from tenants import services
from tenants.credentials import totp_code
from tenants.models import Tenant, User
from tenants.persistence import platform_session
from tenants.staff_sessions import start_session
from tests.environment import TravelClock
from tests.factories import PASSWORD, make_tenant, make_user

Client = httpx.AsyncClient  # the `api` fixture: a browser-like client with a cookie jar

SESSION = "cb_session"  # the base URL in the tests is http, so no __Host- prefix
NEW_PASSWORD = "a brand new passphrase for the web"


async def staff(runtime: Runtime, tenant: Tenant, *roles: str) -> str:
    """A signed-in member of staff (password changed, second factor passed) made by the real services: the token."""
    return await new_session(runtime, (await staff_user(runtime, tenant, *roles)).id)


async def staff_user(runtime: Runtime, tenant: Tenant, *roles: str) -> User:
    """A member of staff ready to sign in (password changed), not yet signed in: their account."""
    user = await make_user(runtime, tenant, roles=list(roles))
    async with platform_session(runtime.sessions) as session, session.begin():
        user = await session.get_one(User, user.id)
        services.change_password(user, current=PASSWORD, new="a passphrase only the worker knows")
    return user


async def new_session(runtime: Runtime, user_id: uuid.UUID) -> str:
    """Another session of a member of staff made by `staff`, from the clock's now (after travelling): the token."""
    async with platform_session(runtime.sessions) as session, session.begin():
        user = await session.get_one(User, user_id)
        token, _record = await start_session(
            session, runtime.clock, runtime.session_policy, user=user, second_factor_passed=True
        )
    return token


async def recorded(runtime: Runtime, tenant_id: uuid.UUID, action: str) -> list[dict[str, Any]]:
    """The events of `action` in a tenant's audit trail, as their canonical JSON, in no particular order."""
    async with platform_session(runtime.sessions) as session:
        rows = await session.scalars(
            select(AuditEvent.canonical).where(AuditEvent.log_tenant_id == tenant_id, AuditEvent.action == action)
        )
        return [json.loads(r) for r in rows]


def act_as(api: Client, token: str) -> None:
    """Make the browser present the session `token` from now on."""
    api.cookies.delete(SESSION)
    api.cookies.set(SESSION, token)


async def form(api: Client, path: str, fields: dict[str, object], **kw: object) -> httpx.Response:
    """Submit `fields` to the form at `path` as a browser would, with the CSRF token of the session in use."""
    await api.get("/login")  # as a browser loads the form first: its token belongs to the session now in use
    data = {**fields, "_csrf_token": api.cookies["cb_csrf"]}
    return await api.post(path, data=data, **kw)  # type: ignore[arg-type]


def consent_fields(
    case: dict[str, Any], valid_until: str, *, subject: int = 0, relation: str = "parent"
) -> dict[str, object]:
    """The consent page's form: a case's subject (the child, by default) consents, through Ольга Иванова, to sharing
    identity data with any guardianship body for social support."""
    return {
        "subject_id": case["subjects"][subject]["id"],
        "given_by_name": "Иванова Ольга",
        "relation": relation,
        "purposes": "social_support",
        "categories": "identity",
        "recipient_kinds": "guardianship_body",
        "valid_until": valid_until,
    }


def referral_fields(case: dict[str, Any], to: uuid.UUID) -> dict[str, object]:
    """The referral composer's form for the case's first subject, due in 2030, with no category ticked yet."""
    return {
        "to": str(to),
        "purpose": "social_support",
        "basis": "consent",
        "kind": "referral",
        "urgency": "urgent",
        "problem": "p",
        "requested_service": "s",
        "respond_by": "2030-01-01",
        "complete_by": "2030-02-01",
        "subjects": case["subjects"][0]["id"],
    }


def ok(response: httpx.Response) -> str:
    """The text of a page that rendered (200, no traceback)."""
    assert response.status_code == 200, response.text[:3000]
    assert "Traceback" not in response.text
    return response.text


class PageChecker(HTMLParser):
    """Collects what the accessibility checks need: the lang, headings, inputs, labels and alerts."""

    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.h1 = 0
        self.inputs: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()
        self.alerts = 0
        self.csrf_token: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "html":
            self.lang = attributes.get("lang")
        elif tag == "h1":
            self.h1 += 1
        elif tag == "label" and attributes.get("for"):
            self.labelled.add(str(attributes["for"]))
        elif tag == "input":
            if attributes.get("type") == "hidden":
                if attributes.get("name") == "_csrf_token":
                    self.csrf_token = attributes.get("value")
            else:
                self.inputs.append(attributes)
        if attributes.get("role") == "alert":
            self.alerts += 1


def page(response: httpx.Response, *, status: int = 200, alert: bool = False) -> PageChecker:
    """Check what every page must be (status, no caching, accessible basics) and return what was found."""
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    checker = PageChecker()
    checker.feed(response.text)
    assert checker.lang == "en"
    assert checker.h1 == 1
    for field in checker.inputs:
        assert field.get("id") in checker.labelled, f"input {field.get('name')} has no label"
        assert field.get("autocomplete"), f"input {field.get('name')} has no autocomplete"
    assert checker.alerts == (1 if alert else 0)
    if "<form" in response.text:
        assert checker.csrf_token, "a form without the CSRF token"
    assert "Traceback" not in response.text
    return checker


def redirected(response: httpx.Response, to: str) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"] == to
    assert response.headers["cache-control"] == "no-store"


def with_csrf(api: Client, **fields: str) -> dict[str, str]:
    """The form fields plus the CSRF token, which is the value of the cookie a GET has set."""
    return {**fields, "_csrf_token": api.cookies["cb_csrf"]}


def session_cookie(response: httpx.Response) -> dict[str, str]:
    """The attributes of the session cookie the response sets, lower-cased, with the value under 'value'."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == SESSION:
            value, *attributes = (part.strip() for part in rest.split(";"))
            found = {"value": value}
            for attribute in attributes:
                key, _, attribute_value = attribute.partition("=")
                found[key.lower()] = attribute_value
            return found
    raise AssertionError(f"no {SESSION} cookie was set")


def use_session(api: Client, token: str) -> None:
    """Make the browser present `token`, as a stolen or remembered cookie would be presented."""
    # The jar files cookies under the domain it derived from the host (e.g. "localhost.local"); reuse it.
    domain = next(cookie.domain for cookie in api.cookies.jar if cookie.name == "cb_csrf")
    api.cookies.delete(SESSION)
    api.cookies.set(SESSION, token, domain=domain)


async def submit_password(api: Client, email: str, password: str = PASSWORD) -> httpx.Response:
    page(await api.get("/login"))
    return await api.post("/login", data=with_csrf(api, email=email, password=password))


async def submit_code(api: Client, code: str) -> httpx.Response:
    return await api.post("/login/second-factor", data=with_csrf(api, code=code))


def secret_from(secret_text: str) -> bytes:
    return base64.b32decode(secret_text + "=" * (-len(secret_text) % 8))


def current_code(secret: bytes, clock: TravelClock) -> str:
    return totp_code(secret, clock.now().timestamp())


@dataclass
class Staff:
    user: User
    tenant: Tenant
    secret: bytes
    recovery_codes: list[str]
    password: str = NEW_PASSWORD


async def enrolled_staff(runtime: Runtime, clock: TravelClock) -> Staff:
    """A user who has set up TOTP and chosen their own password, made through the real services."""
    tenant = await make_tenant(runtime)
    user = await make_user(runtime, tenant)
    async with platform_session(runtime.sessions) as session, session.begin():
        user = await session.get_one(User, user.id)
        enrolment = services.begin_totp_enrolment(runtime.master_key, user=user, issuer="casebridge")
        secret = secret_from(enrolment.secret_text)
        codes = await services.confirm_totp_enrolment(
            session, runtime.master_key, runtime.clock, user=user, code=current_code(secret, clock)
        )
        assert codes is not None
        services.change_password(user, current=PASSWORD, new=NEW_PASSWORD)
    # The enrolment used this time step's code; a code is never accepted twice, so move on to the next step.
    clock.advance(dt.timedelta(seconds=30))
    return Staff(user, tenant, secret, codes)


async def signed_in(api: Client, staff: Staff, clock: TravelClock) -> str:
    """Sign `staff` in through the pages; returns the session token."""
    redirected(await submit_password(api, staff.user.email, staff.password), "/login/second-factor")
    response = await submit_code(api, current_code(staff.secret, clock))
    redirected(response, "/")
    clock.advance(dt.timedelta(seconds=30))
    return session_cookie(response)["value"]
