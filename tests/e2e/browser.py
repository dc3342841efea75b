"""What the browser tests share: the gateway served live on a free port, seeded agencies with staff who can sign in
(password and TOTP known), and the steps every page test takes (sign in, check accessibility, take a screenshot, reload
until the partner's node has applied what was sent). The fixtures that hand these out are in tests/e2e/conftest.py."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page
from sqlalchemy import select

from gateway.app import create_app
from gateway.db import create_engine, ensure_data_dir, upgrade_schema
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants import services
from tenants.credentials import totp_code
from tenants.models import Role, Tenant, TenantKind, User
from tenants.persistence import platform_session
from tests.factories import PASSWORD, ClientKey, client_assertion, make_client, make_tenant, make_user, token_form
from tests.integration.helpers.agencies import referral_body
from tests.polling import eventually_blocking

CHROMIUM = Path(os.environ.get("CASEBRIDGE_E2E_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).parent / "artifacts"
STAFF_PASSWORD = "a passphrase for the browser tests"
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """The gateway served by uvicorn in a thread with its own event loop, on a free loopback port."""

    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # No NATS URL: the gateway starts its own embedded nats-server, so other tests' buses never mix with it.
        self.settings = Settings.from_env(
            {
                "CASEBRIDGE_DATA_DIR": str(data_dir),
                "CASEBRIDGE_BASE_URL": self.base_url,
                "CASEBRIDGE_RATE_LIMIT_PER_MINUTE": "100000",
            }
        )
        self.loop = asyncio.new_event_loop()
        self.server: uvicorn.Server | None = None
        self.runtime: Runtime | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="e2e-gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the test thread by start()
            self.failure = exc

    async def _serve(self) -> None:
        ensure_data_dir(self.settings.paths)
        engine = create_engine(self.settings.database)
        await upgrade_schema(engine)
        await engine.dispose()
        app = create_app(self.settings)
        self.runtime = app.state.runtime
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        await self.server.serve()

    def start(self) -> None:
        self.thread.start()

        def ready() -> bool:
            if self.failure is not None or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start") from self.failure
            try:
                return httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        eventually_blocking(ready, within=90, every=0.2, what="the browser tests' gateway answering /health/ready")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` in the server's event loop (its database connections belong to that loop)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=60)


@dataclass
class StaffAccount:
    email: str
    password: str
    secret: bytes
    roles: list[str]
    display_name: str
    last_step: list[int] = field(default_factory=list)

    def code(self) -> str:
        """The current TOTP code; waits for the next time step when this one was already used (RFC 6238 §5.2)."""
        step = int(time.time()) // 30
        if self.last_step and self.last_step[-1] >= step:
            time.sleep(30 - time.time() % 30 + 0.5)
            step = int(time.time()) // 30
        self.last_step.append(step)
        return totp_code(self.secret, time.time())


@dataclass
class Agency:
    id: str
    name: str
    kind: str
    staff: dict[str, StaffAccount]


@dataclass
class Agencies:
    centre: Agency
    partner: Agency
    third: Agency


async def _enrolled(runtime: Runtime, tenant: Tenant, roles: list[str], display_name: str) -> StaffAccount:
    """A member of staff with their own password and an authenticator, made through the real services."""
    user = await make_user(runtime, tenant, roles=roles, display_name=display_name)
    async with platform_session(runtime.sessions) as session, session.begin():
        user = await session.get_one(User, user.id)
        enrolment = services.begin_totp_enrolment(runtime.master_key, user=user, issuer="casebridge")
        secret = base64.b32decode(enrolment.secret_text + "=" * (-len(enrolment.secret_text) % 8))
        codes = None
        for _ in range(3):  # on a busy machine the step may turn between making the code and checking it
            # The previous step's code (accepted for clock drift), so a sign-in may use the current one at once.
            used_at = time.time() - 30
            codes = await services.confirm_totp_enrolment(
                session, runtime.master_key, runtime.clock, user=user, code=totp_code(secret, used_at)
            )
            if codes is not None:
                break
        assert codes is not None
        services.change_password(user, current=PASSWORD, new=STAFF_PASSWORD)
        email = user.email
    return StaffAccount(email, STAFF_PASSWORD, secret, roles, display_name, last_step=[int(used_at) // 30])


def add_staff(live_server: LiveServer, agency: Agency, label: str, roles: list[str], display_name: str) -> StaffAccount:
    """One more member of an agency's staff, enrolled like the seeded ones, under `label` in its staff."""

    async def enrol() -> StaffAccount:
        runtime: Runtime = live_server.runtime  # type: ignore[assignment]  # started by the fixture
        async with platform_session(runtime.sessions) as session:
            tenant = await session.get_one(Tenant, uuid.UUID(agency.id))
        return await _enrolled(runtime, tenant, roles, display_name)

    agency.staff[label] = account = live_server.run(enrol())
    return account


def user_id(live_server: LiveServer, account: StaffAccount) -> str:
    """The id of a member of staff's account, as an agency's case system names a key worker."""

    async def find() -> uuid.UUID | None:
        runtime: Runtime = live_server.runtime  # type: ignore[assignment]  # started by the fixture
        async with platform_session(runtime.sessions) as session:
            return await session.scalar(select(User.id).where(User.email == account.email))

    found = live_server.run(find())
    assert found is not None
    return str(found)


async def _agency(runtime: Runtime, kind: str, name: str, staff: dict[str, tuple[list[str], str]]) -> Agency:
    """An agency whose staff are given as {label: (roles, display name)}."""
    tenant = await make_tenant(runtime, kind=kind, name=name)
    accounts = {label: await _enrolled(runtime, tenant, roles, shown) for label, (roles, shown) in staff.items()}
    return Agency(str(tenant.id), tenant.name, kind, accounts)


async def seed_agencies(runtime: Runtime) -> Agencies:
    suffix = dt.datetime.now(dt.UTC).strftime("%H%M%S%f")
    return Agencies(
        centre=await _agency(
            runtime,
            TenantKind.SOCIAL_CENTRE,
            f"Центр «Семья» {suffix}",
            {
                "specialist": ([Role.SPECIALIST], "Анна Петрова"),
                "dpo": ([Role.DPO], "Ольга Смирнова"),
                "admin": ([Role.TENANT_ADMIN], "Пётр Орлов"),
            },
        ),
        partner=await _agency(
            runtime,
            TenantKind.GUARDIANSHIP_BODY,
            f"Отдел опеки {suffix}",
            {
                "intake": ([Role.INTAKE], "Иван Сидоров"),
                "specialist": ([Role.SPECIALIST], "Мария Кузнецова"),
                "dpo": ([Role.DPO], "Елена Волкова"),
            },
        ),
        third=await _agency(
            runtime,
            TenantKind.NGO,
            f"Фонд «Третий» {suffix}",
            {"specialist": ([Role.SPECIALIST, Role.INTAKE], "Сергей Зайцев")},
        ),
    )


@dataclass
class Planning:
    """A juvenile commission that issues plans, and two agencies its plans give tasks to."""

    commission: Agency
    school: Agency
    opeka: Agency


async def seed_planning(runtime: Runtime) -> Planning:
    suffix = dt.datetime.now(dt.UTC).strftime("%H%M%S%f")
    agencies = {
        "commission": (
            TenantKind.JUVENILE_COMMISSION,
            "КДН Центрального района",
            {"specialist": ([Role.SPECIALIST], "Мария Кузнецова")},
        ),
        "school": (
            TenantKind.EDUCATION,
            "Школа № 7",
            {"intake": ([Role.INTAKE], "Елена Воробьёва"), "specialist": ([Role.SPECIALIST], "Сергей Волков")},
        ),
        "opeka": (TenantKind.GUARDIANSHIP_BODY, "Опека Севера", {"intake": ([Role.INTAKE], "Наталья Белова")}),
    }
    seeded = {
        key: await _agency(runtime, kind, f"{name} {suffix}", roles) for key, (kind, name, roles) in agencies.items()
    }
    return Planning(**seeded)


def tab_to(page: Page, selector: str, *, within: int = 120) -> None:
    """Press Tab until the element `selector` has the focus, as a person with a keyboard moves through a page; fails
    when it cannot be reached in `within` presses."""
    for _ in range(within):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement !== null && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reached with the Tab key on {page.url}")


def case_system(live_server: LiveServer, tenant_id: str) -> httpx.Client:
    """An HTTP client of an agency's case system (a real API client with a token from /oauth/token)."""

    async def register() -> ClientKey:
        runtime: Runtime = live_server.runtime  # type: ignore[assignment]  # started by the fixture
        async with platform_session(runtime.sessions) as session:
            tenant = await session.scalar(select(Tenant).where(Tenant.id == uuid.UUID(tenant_id)))
        assert tenant is not None
        return await make_client(runtime, tenant, role=Role.SPECIALIST)

    client = live_server.run(register())
    endpoint = f"{live_server.base_url}/oauth/token"
    token = httpx.post(endpoint, data=token_form(client, client_assertion(client, endpoint))).json()["access_token"]
    return httpx.Client(
        base_url=f"{live_server.base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )  # sending renders the signed letter, which takes seconds on a busy machine


def shared_referral(api: httpx.Client, partner_id: str, *, key_worker_id: str | None = None) -> tuple[str, str]:
    """Through an agency's case system: a case with a child (and its key worker, when given), the mother's consent,
    and a referral to the partner: (child's id, referral id)."""
    case = api.post(
        "/cases",
        json={
            "title": "Ивановы",
            "subjects": [{"ref": "child 1", "full_name": "Мария Иванова", "birth_date": "2015-04-02", "role": "child"}],
            "key_worker_id": key_worker_id,
        },
    )
    assert case.status_code == 201, case.text
    child = case.json()["subjects"][0]["id"]
    now = dt.datetime.now(dt.UTC)
    consent = api.post(
        f"/cases/{case.json()['id']}/consents",
        json={
            "subject_id": child,
            "given_by": {"name": "Анна Иванова", "relation": "parent"},
            "purposes": ["social_support"],
            "categories": ["identity"],
            "recipients": {"tenants": [partner_id], "kinds": []},
            "valid_until": (now + dt.timedelta(days=365)).isoformat(),
        },
    )
    assert consent.status_code == 201, consent.text
    sent = api.post(
        "/referrals",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json=referral_body(case.json(), uuid.UUID(partner_id), ["identity"]),
    )
    assert sent.status_code == 201, sent.text
    return child, sent.json()["id"]


def sign_in(page: Page, account: StaffAccount) -> None:
    """Password, then the TOTP code: the real sign-in pages."""
    page.goto("/login")
    page.fill("#email", account.email)
    page.fill("#password", account.password)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r"/login/second-factor$"))
    page.fill("#code", account.code())
    page.click("form[action='/login/second-factor'] button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


_AXE = Axe()


def axe_check(page: Page) -> None:
    """axe-core (bundled by axe-playwright-python from the npm package) finds no serious or critical violation."""
    result = _AXE.run(page)
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
    assert bad == [], f"{page.url}: {bad}"


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check_page(page: Page, name: str, language: str) -> None:
    """The page is in `language`, shows no traceback, passes the axe check, and is saved as a screenshot."""
    page.wait_for_load_state()  # a click that navigates returns once the new page starts, not once it has loaded
    assert page.locator("html").get_attribute("lang") == language
    assert "Traceback" not in page.content()
    axe_check(page)
    screenshot(page, f"{language}-{name}")


def fill_case(page: Page) -> str:
    """On the new-case page: a case for a child, Мария Иванова, submitted; the new case's path."""
    page.fill("#title", "Ивановы: школа")
    page.fill("#subject-0-name", "Мария Иванова")
    page.fill("#subject-0-birth", "2015-04-02")
    page.select_option("#subject-0-role", "child")
    page.fill("#subject-0-ref", "child 1")
    page.fill("#needs-client", "Нужна помощь с устройством в школу")
    page.click("form[action='/cases/new'] button[type=submit]")
    return urlparse(page.url).path


def fill_consent(page: Page) -> None:
    """On a case's consent page: the parent consents to identity and assessment data going to guardianship bodies,
    with the signed form uploaded; submitted."""
    page.fill("#given_by_name", "Анна Иванова")
    page.select_option("#relation", "parent")
    page.check("#category-identity")
    page.check("#category-social_assessment")
    page.check("#kind-guardianship_body")
    page.set_input_files(
        "#evidence", files=[{"name": "consent.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 signed"}]
    )
    page.click("form[action$='/consents/new'] button[type=submit]:not([name=agencies])")


def find_in_directory(page: Page, partner_id: str, *, keyboard: bool = False, within: int = 40) -> None:
    """On the composer: turn the directory's pages (by mouse, or Tab and Enter) until the partner's row is there, as
    a person looking for it does; the browser tests' shared server holds every agency the earlier tests seeded."""
    for _ in range(within):
        if page.locator(f"#to-{partner_id}").count():
            return
        following = "nav.pager a[rel=next]"
        if keyboard:
            tab_to(page, following)
            page.keyboard.press("Enter")
        else:
            page.click(following)
        page.wait_for_load_state()
    raise AssertionError(f"agency {partner_id} is not in the first {within} pages of the directory")


def choose_partner(page: Page, case_path: str, partner_id: str) -> None:
    """The composer of the case, with the partner chosen from the directory."""
    page.goto(f"{case_path}/referrals/new")
    find_in_directory(page, partner_id)
    page.check(f"#to-{partner_id}")
    page.click("form[method=get]:has(#purpose-choice) button[type=submit]")


def accept_and_resolve(page: Page, note: str) -> None:
    """On a received referral's page: accepted, then completed as resolved with `note`, as the intake officer does."""
    page.click("form:has(input[value=accepted]) button[type=submit]")
    page.wait_for_load_state()
    page.select_option("#to-final", "completed")
    page.select_option("#outcome", "resolved")
    page.fill("#note", note)
    page.click("form.outcome-form button[type=submit]")
    page.wait_for_load_state()


def reload_until(page: Page, path: str, text: str, *, within: float = 30.0) -> None:
    """Reload `path` until `text` shows: the partner's node applies envelopes from the bus in the background."""

    def shows() -> bool:
        page.goto(path)
        return text in page.content()

    eventually_blocking(shows, within=within, every=0.5, what=f"{text!r} at {path}")
