"""Every list on the staff pages pages on the server: later pages show the rest, nothing twice; bad page links are safe.

Page sizes are made small here (the same constants the pages read), so a few rows seeded through the services fill
several pages on both databases.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest

from audit.events import Action
from audit.services import AccessScope, RequestContext
from exchange.cases import services as cases
from exchange.cases.schemas import CaseIn, ConsentIn
from exchange.context import Context
from exchange.referrals import threads as messages
from exchange.referrals.schemas import MessageIn, ReferralIn
from exchange.referrals.services import send_referral
from gateway.controllers.context import actor_of
from gateway.runtime import Runtime
from gateway.web import casework, paging, referral_pages
from tenants import services
from tenants.models import Role, Tenant, TenantKind, User
from tenants.persistence import platform_session, tenant_session
from tenants.principal import ActorKind, Principal
from tenants.staff_sessions import start_session
from tests.environment import TravelClock
from tests.factories import PASSWORD, make_tenant, make_user
from tests.integration.helpers.web import act_as, ok
from tests.polling import eventually

Client = httpx.AsyncClient
SEEDING = RequestContext(request_id="pagination-test", source=None, user_agent=None)


@pytest.fixture
def english(api: Client) -> Client:
    api.headers["Accept-Language"] = "en"
    return api


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (casework, referral_pages):
        for name in (
            "CONSENTS_PER_PAGE",
            "REFERRALS_PER_PAGE",
            "TIMELINE_PER_PAGE",
            "MESSAGES_PER_PAGE",
            "AGENCIES_PER_PAGE",
            "CASES_PER_PAGE",
        ):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, 3)
    monkeypatch.setattr(casework, "REMINDERS_PER_PAGE", 3)
    monkeypatch.setattr(referral_pages, "TIMELINE_PER_PAGE", 1)
    monkeypatch.setattr(referral_pages, "MESSAGES_PER_PAGE", 2)


class Seeder:
    """Acts for one member of staff through the exchange services directly, each call audited like a request."""

    def __init__(self, runtime: Runtime, tenant: Tenant, user_id: uuid.UUID, roles: list[str]) -> None:
        self.runtime = runtime
        self.principal = Principal(
            tenant_id=tenant.id, actor_kind=ActorKind.USER, actor_id=user_id, roles=frozenset(roles), scopes=None
        )

    @asynccontextmanager
    async def acting(self, action: Action) -> AsyncIterator[Context]:
        scope = AccessScope(
            log=self.runtime.exchange.audit,
            actor=actor_of(self.principal),
            log_tenant_id=self.principal.tenant_id,
            action=action,
            context=SEEDING,
        )
        async with tenant_session(self.runtime.sessions, self.principal.tenant_id) as session, session.begin():
            yield Context(session, self.runtime.exchange, self.principal, scope)
            scope.write(session)

    async def case(self) -> Any:
        data = {
            "title": "Family Petrov",
            "subjects": [{"ref": "child 1", "full_name": "Petya Petrov", "role": "child", "birth_date": "2016-03-01"}],
        }
        async with self.acting(Action.EXCHANGE_CASE_CREATE) as ctx:
            return await cases.create_case(ctx, data=_convert(data, CaseIn))

    async def consent(self, case: Any, recipient: uuid.UUID, category: str) -> Any:
        data = {
            "subject_id": str(case.subjects[0].id),
            "given_by": {"name": "Olga Petrova", "relation": "parent"},
            "purposes": ["social_support"],
            "categories": [category],
            "recipients": {"tenants": [str(recipient)], "kinds": []},
            "valid_until": (self.runtime.clock.now() + dt.timedelta(days=300)).isoformat(),
        }
        async with self.acting(Action.EXCHANGE_CONSENT_CREATE) as ctx:
            return await cases.record_consent(ctx, case_id=case.id, data=_convert(data, ConsentIn))

    async def withdraw(self, consent: Any) -> None:
        async with self.acting(Action.EXCHANGE_CONSENT_WITHDRAW) as ctx:
            await cases.withdraw_consent(ctx, consent_id=consent.id, reason="The family asked")

    async def referral(self, case: Any, recipient: uuid.UUID, answer_in: dt.timedelta) -> uuid.UUID:
        now = self.runtime.clock.now()
        data = {
            "case_id": str(case.id),
            "to_tenant_id": str(recipient),
            "kind": "referral",
            "purpose": "social_support",
            "problem": "No school place",
            "requested_service": "Arrange a place",
            "urgency": "routine",
            "respond_by": (now + answer_in).isoformat(),
            "complete_by": (now + dt.timedelta(days=40)).isoformat(),
            "subject_ids": [str(case.subjects[0].id)],
            "categories": ["identity"],
            "legal_basis": {"type": "consent"},
        }
        async with self.acting(Action.EXCHANGE_REFERRAL_SEND) as ctx:
            referral, _created = await send_referral(ctx, data=_convert(data, ReferralIn), idempotency_key=None)
            exchange_id: uuid.UUID = referral.exchange_id
        self.runtime.wake_relay()
        return exchange_id

    async def message(self, referral_id: uuid.UUID, body: str) -> None:
        async with self.acting(Action.EXCHANGE_MESSAGE_CREATE) as ctx:
            await messages.post_message(ctx, referral_id=referral_id, data=MessageIn(body=body))
        self.runtime.wake_relay()


def _convert(data: dict[str, Any], kind: type[Any]) -> Any:
    return msgspec.convert(data, kind)


async def seeder(runtime: Runtime, tenant: Tenant, *roles: str) -> tuple[Seeder, str]:
    """A signed-in member of staff (the session token) and a seeder acting as the same person."""
    user = await make_user(runtime, tenant, roles=list(roles))
    async with platform_session(runtime.sessions) as session, session.begin():
        row = await session.get_one(User, user.id)
        services.change_password(row, current=PASSWORD, new="a passphrase only the worker knows")
    worker = Seeder(runtime, tenant, user.id, list(roles))
    return worker, await sign_in(runtime, worker)


async def sign_in(runtime: Runtime, worker: Seeder) -> str:
    """A new session for the seeder's person (after the clock moved past the last one's end): its token."""
    async with platform_session(runtime.sessions) as session, session.begin():
        row = await session.get_one(User, worker.principal.actor_id)
        token, _record = await start_session(
            session, runtime.clock, runtime.session_policy, user=row, second_factor_passed=True
        )
    return token


def pager_links(page: str, label: str) -> tuple[str | None, str | None]:
    """The (first page, next page) links of the pager with this label."""
    found = re.search(rf'<nav class="pager" aria-label="{re.escape(label)}">(.*?)</nav>', page, re.S)
    if found is None:
        return None, None
    nav = found.group(1)
    first = re.search(r'<a href="([^"]*)">First page</a>', nav)
    following = re.search(r'<a href="([^"]*)" rel="next">', nav)
    return (html.unescape(first.group(1)) if first else None, html.unescape(following.group(1)) if following else None)


def section(page: str, heading: str) -> str:
    """The part of a page from an <h2> heading to the next one."""
    start = page.index(f"<h2>{heading}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start : end if end != -1 else len(page)]


async def walk(api: Client, path: str, heading: str, label: str, row: str) -> list[list[str]]:
    """Follow one list's "Next page" links from `path`; the rows (regex group 1) in that list on each page."""
    pages: list[list[str]] = []
    url: str | None = path
    while url is not None:
        page = ok(await api.get(url))
        pages.append(re.findall(row, section(page, heading)))
        first, following = pager_links(page, label)
        if len(pages) > 1:
            assert first is not None  # every later page leads back to the first
        url = path.split("?")[0] + following if following else None
        assert len(pages) < 20, "the pager does not end"
    return pages


def flat(pages: list[list[str]]) -> list[str]:
    return [item for page in pages for item in page]


async def test_case_page_dashboard_and_composer_page_their_lists(
    english: Client, runtime: Runtime, clock: TravelClock, small_pages: None
) -> None:
    api = english
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    opeka = await make_tenant(runtime, kind=TenantKind.GUARDIANSHIP_BODY, name="Opeka")
    others = [await make_tenant(runtime, kind=TenantKind.NGO, name=f"Partner {n}") for n in range(5)]
    worker, token = await seeder(runtime, centre, Role.SPECIALIST)
    act_as(api, token)

    case = await worker.case()
    consents = [await worker.consent(case, opeka.id, "identity")]
    consents += [await worker.consent(case, opeka.id, "education") for _ in range(6)]
    for consent in consents[-2:]:
        await worker.withdraw(consent)
    late = [await worker.referral(case, opeka.id, dt.timedelta(days=1)) for _ in range(4)]
    on_time = [await worker.referral(case, opeka.id, dt.timedelta(days=10)) for _ in range(5)]
    clock.advance(dt.timedelta(days=2))
    act_as(api, await sign_in(runtime, worker))

    # The case page: consents (7, oldest first), referrals (9, newest first) and the timeline (1 + 7 + 2 lines).
    path = f"/cases/{case.id}"
    rows = await walk(api, path, "Consents", "Pages of consents", r"<td>child 1</td>")
    assert [len(p) for p in rows] == [3, 3, 1]
    # Each consent once: the active ones by their withdraw forms (the two withdrawn last ones have none).
    forms = await walk(api, path, "Consents", "Pages of consents", r'action="/consents/([0-9a-f-]+)/withdraw"')
    assert flat(forms) == [str(c.id) for c in consents[:5]]
    referral_pages_ = await walk(api, path, "Referrals", "Pages of referrals", r'href="/referrals/([0-9a-f-]+)"')
    assert [len(p) for p in referral_pages_] == [3, 3, 3]
    assert flat(referral_pages_) == [str(r) for r in reversed(late + on_time)]
    timeline = await walk(api, path, "Timeline", "Pages of the timeline", r"<li><time")
    assert [len(p) for p in timeline] == [3, 3, 3, 1]
    first_page = ok(await api.get(path))
    assert "The case was opened." in section(first_page, "Timeline")

    # Turning one list's page keeps the others where they were.
    _first, next_consents = pager_links(first_page, "Pages of consents")
    assert next_consents is not None
    second = ok(await api.get(path + next_consents))
    _first, next_referrals = pager_links(second, "Pages of referrals")
    assert next_referrals is not None
    assert "consents=" in next_referrals

    # The dashboard: overdue first, each list paged on its own.
    overdue = await walk(api, "/dashboard", "Overdue", "Pages of overdue referrals", r'href="/referrals/([0-9a-f-]+)"')
    assert [len(p) for p in overdue] == [3, 1]
    assert sorted(flat(overdue)) == sorted(str(r) for r in late)
    mine = await walk(
        api, "/dashboard", "My referrals by status", "Pages of my referrals", r'href="/referrals/([0-9a-f-]+)"'
    )
    assert [len(p) for p in mine] == [3, 2]
    assert sorted(flat(mine)) == sorted(str(r) for r in on_time)  # grouped by status within a page
    # The deadlines: the four answers overdue (the person who opened the case is reminded), soonest first.
    deadlines = await walk(
        api, "/dashboard", "Deadlines to watch", "Pages of deadlines", r'href="/referrals/([0-9a-f-]+)"'
    )
    assert [len(p) for p in deadlines] == [3, 1]
    assert sorted(flat(deadlines)) == sorted(str(r) for r in late)

    # The composer's directory: every other active agency once, by name, over two pages.
    composer = f"/cases/{case.id}/referrals/new"
    agencies = await walk(
        api, composer, "1. Choose the recipient", "Pages of the directory", r'name="to" value="([0-9a-f-]+)"'
    )
    assert [len(p) for p in agencies] == [3, 3]
    assert sorted(flat(agencies)) == sorted(str(t.id) for t in [opeka, *others])
    # A recipient chosen on another page stays chosen, and the categories are offered for it.
    chosen = ok(await api.get(composer, params={"to": str(opeka.id), "agencies": "3"}))
    assert 'id="to-chosen" name="to" value="' + str(opeka.id) in chosen
    assert "2. Write the referral to Opeka" in chosen


async def test_referral_page_pages_its_thread_and_timeline(
    english: Client, runtime: Runtime, small_pages: None
) -> None:
    api = english
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    opeka = await make_tenant(runtime, kind=TenantKind.GUARDIANSHIP_BODY, name="Opeka")
    worker, token = await seeder(runtime, centre, Role.SPECIALIST)
    act_as(api, token)
    case = await worker.case()
    await worker.consent(case, opeka.id, "identity")
    referral_id = await worker.referral(case, opeka.id, dt.timedelta(days=3))
    for n in range(5):
        await worker.message(referral_id, f"Message number {n}")
    path = f"/referrals/{referral_id}"

    async def received() -> bool:  # the recipient's receipt adds the second line to the sender's timeline
        return "Pages of the timeline" in ok(await api.get(path))

    await eventually(received)
    thread = await walk(api, path, "Messages", "Pages of messages", r"Message number (\d)")
    assert thread == [["4", "3"], ["2", "1"], ["0"]]  # newest first, each once
    timeline = await walk(api, path, "Timeline", "Pages of the timeline", r"<li><time")
    assert [len(p) for p in timeline] == [1, 1]
    # A bad page link resets both lists of the page to their first pages.
    response = await api.get(path, params={"messages": "two", "timeline": "1"})
    assert response.status_code == 303
    assert response.headers["location"] == path
    assert "That page link is not valid, so the first page is shown." in ok(await api.get(path))


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/cases", "cursor=not-a-cursor"),
        ("/inbox", "tab=all&cursor=@@@@"),
        ("/dashboard", "overdue=xyz"),
        ("/dashboard", "reminders=-1"),
        ("/dashboard", "outgoing=AAAA&reminders=2"),
        ("{case}", "timeline=abc"),
        ("{case}", "timeline=-5"),
        ("{case}", "timeline=99999999999999999999"),
        ("{case}", "consents=abc&referrals=%20"),
        ("{case}/referrals/new", "agencies=1e9&district=North"),
        ("{case}/referrals/new", "agencies=１２"),  # full-width digits are not an offset
        ("/dpo", "action=exchange%3Acase%3Acreate&cursor=not-a-cursor"),
        ("/dpo", "cursor=AAAA"),  # decodes, but is no (time, id) pair
        ("/dpo/review", "cursor=@@@@"),
    ],
)
async def test_bad_page_links_go_back_to_the_first_page(api: Client, runtime: Runtime, path: str, query: str) -> None:
    api.headers["Accept-Language"] = "ru"
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    worker, token = await seeder(runtime, centre, Role.SPECIALIST, Role.INTAKE, Role.DPO)
    act_as(api, token)
    case = await worker.case()
    target = path.format(case=f"/cases/{case.id}")
    response = await api.get(f"{target}?{query}")
    assert response.status_code == 303, response.text[:500]
    back = response.headers["location"]
    assert back.split("?")[0] == target
    kept = dict(httpx.URL(back).params)
    for name in ("cursor", "overdue", "outgoing", "reminders", "timeline", "consents", "referrals", "agencies"):
        assert name not in kept
    page = ok(await api.get(back))
    assert "Эта ссылка на страницу недействительна, поэтому показана первая страница." in page
    # The rest of the page's state is kept.
    shown = {"tab": "all", "district": "North", "action": "exchange:case:create"}
    assert kept == {k: v for k, v in shown.items() if f"{k}=" in query}


async def test_a_page_past_the_end_is_empty_with_a_way_back(english: Client, runtime: Runtime) -> None:
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    worker, token = await seeder(runtime, centre, Role.SPECIALIST)
    act_as(english, token)
    case = await worker.case()
    page = ok(await english.get(f"/cases/{case.id}", params={"timeline": str(paging.MAX_OFFSET)}))
    timeline = section(page, "Timeline")
    assert "Nothing more on this page." in timeline
    first, following = pager_links(page, "Pages of the timeline")
    assert first == "?"
    assert following is None
    dashboard = ok(await english.get("/dashboard", params={"reminders": "5000", "outgoing": ""}))
    assert "Nothing more on this page." in section(dashboard, "Deadlines to watch")
    assert pager_links(dashboard, "Pages of deadlines") == ("?", None)
