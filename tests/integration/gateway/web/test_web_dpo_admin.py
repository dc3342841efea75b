"""The DPO console and the tenant administrator's pages over HTTP: what they show, who may open them, what they do."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit.events import Action, Actor, Outcome
from audit.models import AuditEvent, AuditVerification
from gateway.runtime import Runtime
from tenants import services
from tenants.models import ApiClient, Role, Tenant, TenantKind, User
from tenants.persistence import platform_session
from tenants.staff_sessions import start_session
from tests.factories import PASSWORD, ClientKey, access_token, make_client, make_tenant, make_user

SESSION = "cb_session"
CASE = {
    "title": "Семья Ивановых",
    "subjects": [{"ref": "child 1", "full_name": "Иванова Мария", "birth_date": "2015-04-12", "role": "child"}],
}


async def staff(runtime: Runtime, tenant: Tenant, *roles: str, email: str | None = None) -> tuple[User, str]:
    """A fully signed-in member of staff (own password, second factor passed): the user and the session token."""
    user = await make_user(runtime, tenant, roles=list(roles), email=email)
    async with platform_session(runtime.sessions) as session, session.begin():
        row = await session.scalar(select(User).where(User.id == user.id))
        assert row is not None
        services.change_password(row, current=PASSWORD, new="a passphrase only this worker knows")
        token, _ = await start_session(
            session, runtime.clock, runtime.session_policy, user=row, second_factor_passed=True
        )
    return user, token


def act_as(api: httpx.AsyncClient, token: str | None) -> None:
    api.cookies.delete(SESSION)
    if token:
        api.cookies.set(SESSION, token)


async def post(api: httpx.AsyncClient, path: str, fields: dict[str, Any] | None = None) -> httpx.Response:
    await api.get("/login")  # as a browser loads the form first: its token belongs to the session now in use
    return await api.post(path, data={**(fields or {}), "_csrf_token": api.cookies["cb_csrf"]})


def flash_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:2000]
    return response.headers["location"]


def ok(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, response.text[:3000]
    assert "Traceback" not in response.text
    assert "no-store" in response.headers["cache-control"]
    return response.text


async def events(runtime: Runtime, tenant_id: uuid.UUID, action: Action) -> list[AuditEvent]:
    async with platform_session(runtime.sessions) as session:
        return list(
            await session.scalars(
                select(AuditEvent).where(AuditEvent.log_tenant_id == tenant_id, AuditEvent.action == action.value)
            )
        )


@pytest.fixture
def english(api: httpx.AsyncClient) -> httpx.AsyncClient:
    api.headers["Accept-Language"] = "en"
    return api


@pytest.fixture
async def centre(runtime: Runtime) -> Tenant:
    return await make_tenant(runtime, "semya", kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")


@pytest.fixture
async def opeka(runtime: Runtime) -> Tenant:
    return await make_tenant(runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY, name="Opeka")


# -- the DPO console --------------------------------------------------------------------------------------------------


async def test_the_dpo_reads_the_trail_and_each_read_is_recorded(
    english: httpx.AsyncClient, runtime: Runtime, centre: Tenant, opeka: Tenant
) -> None:
    api = english
    client = await make_client(runtime, centre)
    token = await access_token(api, client)
    created = await api.post("/api/v1/cases", json=CASE, headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text
    subject_id = created.json()["subjects"][0]["id"]
    dpo, dpo_session = await staff(runtime, centre, Role.DPO, email="dpo@semya.test")
    act_as(api, dpo_session)

    page = ok(await api.get("/dpo"))
    assert "<code>exchange:case:create</code>" in page
    assert "A new case was opened" in page
    assert ">agency system</a>" in page  # the organisation's own system by its name, the link searches for it
    assert f'<a href="/dpo?actor={client.client_id}"' in page
    assert "Иванова" not in page  # the trail holds pseudonyms, never names
    page = ok(await api.get("/dpo", params={"subject_id": subject_id, "action": "exchange:case:create"}))
    assert page.count("<code>exchange:case:create</code>") == 1
    page = ok(await api.get("/dpo", params={"subject_id": "not an id", "since": "yesterday"}), status=400)
    assert "copy it from the case page" in page
    assert "Enter a date from 1900-01-01 to 2200-12-31, such as 2026-03-01." in page
    page = ok(await api.get("/dpo", params={"actor": "dpo@semya.test"}))  # one's own searches show up
    assert "<code>audit:events:search</code>" in page
    assert "The audit trail was searched" in page
    assert f'<a href="/dpo?actor={dpo.id}"' in page
    assert ">dpo@semya.test</a>" in page  # no name was given: the email address names the account
    page = ok(await api.get("/dpo", params={"actor": "nobody@semya.test"}), status=400)
    assert "No one in this organisation has this email address" in page

    page = ok(await api.get("/dpo/subjects", params={"subject_id": subject_id}))
    assert "<code>exchange:case:create</code>" in page
    assert "Centre Semya" in page
    pdf = await api.get(f"/dpo/subjects/{subject_id}/report.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    csv = await api.get(f"/dpo/subjects/{subject_id}/report.csv")
    assert csv.status_code == 200
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"  # the charset once
    assert "exchange:case:create" in csv.text
    assert 'filename="subject-access-report.csv"' in csv.headers["content-disposition"]
    ok(await api.get("/dpo/review"))
    ok(await api.get("/dpo/anomalies"))
    ok(await api.get("/dpo/anomalies", params={"since": "2026-01-01", "until": "2026-12-31"}), status=400)
    ok(await api.get("/dpo/verification"))

    # Reading the trail through the console is recorded exactly as through the API.
    for action, count in (
        (Action.AUDIT_EVENTS_SEARCH, 4),
        (Action.AUDIT_SUBJECT_REPORT, 3),
        (Action.AUDIT_REVIEW_LIST, 1),
        (Action.AUDIT_CHECKPOINT_READ, 1),
    ):
        recorded = await events(runtime, centre.id, action)
        assert len(recorded) >= count, action
        assert all(e.actor_id == dpo.id for e in recorded)
    reports = await events(runtime, centre.id, Action.AUDIT_SUBJECT_REPORT)
    assert {'"format":"pdf"' in e.canonical or '"format":"csv"' in e.canonical for e in reports} == {True, False}

    # Another organisation's DPO finds no such person.
    _, other_dpo = await staff(runtime, opeka, Role.DPO)
    act_as(api, other_dpo)
    page = ok(await api.get("/dpo/subjects", params={"subject_id": subject_id}), status=404)
    assert "No person with this id" in page
    assert (await api.get(f"/dpo/subjects/{subject_id}/report.csv")).status_code == 404
    assert "<code>exchange:case:create</code>" not in ok(await api.get("/dpo"))


async def test_only_the_dpo_opens_the_console(english: httpx.AsyncClient, runtime: Runtime, centre: Tenant) -> None:
    api = english
    _, specialist = await staff(runtime, centre, Role.SPECIALIST, Role.TENANT_ADMIN)
    act_as(api, specialist)
    for path in ("/dpo", "/dpo/subjects", "/dpo/review", "/dpo/anomalies", "/dpo/verification"):
        response = await api.get(path)
        assert response.status_code == 403, path
        assert "Not allowed" in response.text
    assert (await post(api, "/dpo/verification")).status_code == 403
    act_as(api, None)
    response = await api.get("/dpo")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_review_queue_marks_and_verification(
    english: httpx.AsyncClient, runtime: Runtime, centre: Tenant, opeka: Tenant
) -> None:
    api = english
    dpo, session_token = await staff(runtime, centre, Role.DPO)
    no_longer_on_record = uuid.uuid4()
    async with platform_session(runtime.sessions) as session, session.begin():
        shared = runtime.exchange.audit.append(
            session,
            action=Action.EXCHANGE_REFERRAL_SEND,
            outcome=Outcome.SUCCESS,
            log_tenant_id=centre.id,
            actor=Actor(kind="user", id=no_longer_on_record, tenant_id=centre.id, role="specialist"),
            resource_type="referral",
            resource_id=str(uuid.uuid4()),
            legal_basis="statutory",
        )
    act_as(api, session_token)
    page = ok(await api.get("/dpo/review"))
    assert "Shared under a statute, without consent" in page
    assert f'action="/dpo/review/{shared.id}"' in page
    assert "A referral was sent" in page
    assert "A removed account" in page  # an id no account of the organisation has: named plainly, never shown
    assert str(no_longer_on_record) not in page

    _, other_dpo = await staff(runtime, opeka, Role.DPO)
    act_as(api, other_dpo)
    assert (await post(api, f"/dpo/review/{shared.id}", {"note": "ok"})).status_code == 404
    act_as(api, session_token)
    assert (await api.post(f"/dpo/review/{shared.id}", data={"note": "no token"})).status_code == 403  # CSRF
    assert flash_of(await post(api, f"/dpo/review/{shared.id}", {"note": "Checked the court order."})) == "/dpo/review"
    assert "Marked as reviewed." in ok(await api.get("/dpo/review"))
    assert f"/dpo/review/{shared.id}" not in ok(await api.get("/dpo/review"))
    await post(api, f"/dpo/review/{shared.id}", {"note": ""})
    assert "already reviewed" in ok(await api.get("/dpo/review"))
    marks = await events(runtime, centre.id, Action.AUDIT_REVIEW_MARK)
    assert sorted(m.outcome for m in marks) == ["error", "success"]  # done, then repeated
    assert [m.outcome for m in await events(runtime, opeka.id, Action.AUDIT_REVIEW_MARK)] == ["denied"]
    assert all("court order" not in m.canonical for m in marks)  # the note may name someone: it stays out

    assert "The log has not been verified yet." in ok(await api.get("/dpo/verification"))
    assert (await api.post("/dpo/verification")).status_code == 403  # CSRF
    assert flash_of(await post(api, "/dpo/verification")) == "/dpo/verification"
    page = ok(await api.get("/dpo/verification"))
    assert "The log was verified and no problems were found." in page
    assert "No problems found" in page
    await post(api, "/dpo/verification")  # at once again: the run a moment ago stands
    assert "less than a minute ago" in ok(await api.get("/dpo/verification"))
    async with platform_session(runtime.sessions) as session:
        (run,) = await session.scalars(select(AuditVerification))
    assert run.ok
    assert run.trigger == "console"
    (verified,) = await events(runtime, centre.id, Action.AUDIT_LOG_VERIFY)
    assert verified.actor_id == dpo.id


async def test_anomalies_name_the_colleague_and_only_the_partner_organisation(
    english: httpx.AsyncClient, runtime: Runtime, centre: Tenant, opeka: Tenant
) -> None:
    _, token = await staff(runtime, centre, Role.DPO)
    colleague = await make_user(runtime, centre, email="anna@semya.test", display_name="Анна Петрова")
    stranger = await make_user(runtime, opeka, email="ivan@opeka.test", display_name="Иван Сидоров")
    async with platform_session(runtime.sessions) as session, session.begin():
        for actor in (colleague, stranger):
            for _ in range(15):  # more refusals within the hour than CASEBRIDGE_AUDIT_DENIALS_PER_HOUR allows
                runtime.exchange.audit.append(
                    session,
                    action=Action.EXCHANGE_CASE_READ,
                    outcome=Outcome.DENIED,
                    log_tenant_id=centre.id,
                    actor=Actor(kind="user", id=actor.id, tenant_id=actor.tenant_id, role="specialist"),
                )
    act_as(english, token)
    page = ok(await english.get("/dpo/anomalies"))
    assert page.count("Repeatedly refused") == 2
    assert "Анна Петрова" in page
    assert "anna@semya.test" in page
    assert "Opeka" in page  # the partner by organisation: its staff are not named
    assert "Иван Сидоров" not in page
    assert "ivan@opeka.test" not in page
    assert str(colleague.id) not in page.replace(f"/dpo?actor={colleague.id}", "")  # the id only in the link
    assert str(stranger.id) not in page


# -- administration ---------------------------------------------------------------------------------------------------


async def test_an_administrator_invites_and_the_invitee_sets_a_password(
    english: httpx.AsyncClient, runtime: Runtime, centre: Tenant
) -> None:
    api = english
    admin_user, admin_session = await staff(runtime, centre, Role.TENANT_ADMIN, email="admin@semya.test")
    act_as(api, admin_session)
    assert "admin@semya.test" in ok(await api.get("/admin"))
    ok(await api.get("/admin/invite"))
    bad = await post(api, "/admin/invite", {"email": "not-an-address", "roles": ["intake"]})
    assert "That is not a valid email address." in ok(bad, status=400)
    response = await post(
        api, "/admin/invite", {"email": "new@semya.test", "display_name": "Anna", "roles": ["intake", "dpo"]}
    )
    page = ok(response)
    link = re.search(r'value="(http://localhost/account/invitation/[^"]+)"', page)
    assert link is not None
    assert "Invited, not yet accepted" in ok(await api.get("/admin"))
    failed, invited = sorted(await events(runtime, centre.id, Action.TENANTS_USER_INVITE), key=lambda e: e.outcome)
    assert failed.outcome == "error"  # the refused address is recorded as a failure, without the address
    assert "not-an-address" not in failed.canonical
    assert invited.actor_id == admin_user.id
    assert link.group(1).rsplit("/", 1)[1] not in invited.canonical  # the token never reaches the trail

    act_as(api, None)
    path = link.group(1).removeprefix("http://localhost")
    assert "new@semya.test" in ok(await api.get(path))
    mismatch = await post(api, path, {"new_password": "a long new passphrase", "confirmation": "something else"})
    assert "The two passwords do not match." in ok(mismatch, status=400)
    done = await post(api, path, {"new_password": "a long new passphrase", "confirmation": "a long new passphrase"})
    assert flash_of(done) == "/login"
    assert "Your password is set." in ok(await api.get("/login"))
    assert "not valid any more" in ok(await api.get(path), status=404)
    signed = await post(api, "/login", {"email": "new@semya.test", "password": "a long new passphrase"})
    assert flash_of(signed) == "/account/second-factor/enrol"
    assert len(await events(runtime, centre.id, Action.TENANTS_INVITATION_ACCEPT)) == 1


async def test_an_administrator_manages_staff_within_the_organisation(
    english: httpx.AsyncClient, runtime: Runtime, centre: Tenant, opeka: Tenant
) -> None:
    api = english
    admin_user, admin_session = await staff(runtime, centre, Role.TENANT_ADMIN)
    worker, worker_session = await staff(runtime, centre, Role.SPECIALIST)
    stranger, _ = await staff(runtime, opeka, Role.INTAKE)
    act_as(api, admin_session)
    page = ok(await api.get(f"/admin/users/{worker.id}"))
    assert worker.email in page
    for listing in ("/admin", "/admin/clients"):  # a page link no pager made goes back to the first page
        for cursor in ("-1", "abc", "99999999999999999999"):
            response = await api.get(listing, params={"cursor": cursor})
            assert (response.status_code, response.headers["location"]) == (303, listing), cursor
    assert "That page link is not valid, so the first page is shown." in ok(await api.get("/admin"))

    await post(api, f"/admin/users/{worker.id}/roles", {"roles": ["intake", "supervisor"]})
    assert "The roles were saved." in ok(await api.get(f"/admin/users/{worker.id}"))
    await post(api, f"/admin/users/{admin_user.id}/roles", {"roles": ["dpo"]})
    assert "You cannot remove your own administrator role" in ok(await api.get(f"/admin/users/{admin_user.id}"))
    await post(api, f"/admin/users/{worker.id}/second-factor-reset")
    assert "The second factor was reset." in ok(await api.get(f"/admin/users/{worker.id}"))
    await post(api, f"/admin/users/{worker.id}/deactivate")
    assert "The account was deactivated." in ok(await api.get(f"/admin/users/{worker.id}"))
    act_as(api, worker_session)
    assert (await api.get("/inbox")).headers["location"].startswith("/login")  # signed out everywhere
    act_as(api, admin_session)
    await post(api, f"/admin/users/{worker.id}/reactivate")
    assert "The account is active again." in ok(await api.get(f"/admin/users/{worker.id}"))

    # Another organisation's people are not there; other roles may not look.
    assert (await api.get(f"/admin/users/{stranger.id}")).status_code == 404
    assert (await post(api, f"/admin/users/{stranger.id}/deactivate")).status_code == 404
    assert stranger.email not in ok(await api.get("/admin"))
    assert (await api.post(f"/admin/users/{worker.id}/deactivate")).status_code == 403  # no CSRF token
    act_as(api, worker_session)
    _, dpo_session = await staff(runtime, centre, Role.DPO)
    act_as(api, dpo_session)
    for path in ("/admin", "/admin/invite", "/admin/clients", "/admin/keys", f"/admin/users/{worker.id}"):
        assert (await api.get(path)).status_code == 403, path
    assert (await post(api, f"/admin/users/{worker.id}/deactivate")).status_code == 403

    actions = {e.action for e in await events(runtime, centre.id, Action.TENANTS_USER_ROLES)}
    assert actions == {"tenants:user:roles"}
    assert await events(runtime, centre.id, Action.TENANTS_USER_DEACTIVATE)
    assert await events(runtime, centre.id, Action.TENANTS_USER_SECOND_FACTOR_RESET)


async def test_clients_are_registered_and_revoked_and_keys_rotated(
    english: httpx.AsyncClient, runtime: Runtime, centre: Tenant, opeka: Tenant
) -> None:
    api = english
    _, admin_session = await staff(runtime, centre, Role.TENANT_ADMIN)
    act_as(api, admin_session)
    ok(await api.get("/admin/clients/new"))
    bad = await post(
        api, "/admin/clients/new", {"name": "Desk", "jwk": "{not json", "role": "intake", "scopes": ["referrals:read"]}
    )
    assert "not valid JSON" in ok(bad, status=400)
    private = OKPKey.generate_key("Ed25519", {"kid": "desk"})
    response = await post(
        api,
        "/admin/clients/new",
        {
            "name": "Desk",
            "jwk": json.dumps(private.as_dict(private=True)),
            "role": "intake",
            "scopes": ["referrals:read"],
        },
    )
    assert "register only the public part" in ok(response, status=400)
    response = await post(
        api,
        "/admin/clients/new",
        {
            "name": "Desk",
            "jwk": json.dumps(private.as_dict(private=False)),
            "role": "intake",
            "scopes": ["referrals:read", "directory:read"],
        },
    )
    assert flash_of(response) == "/admin/clients"
    page = ok(await api.get("/admin/clients"))
    assert "The client was registered." in page
    async with platform_session(runtime.sessions) as session:
        (client,) = await session.scalars(select(ApiClient).where(ApiClient.tenant_id == centre.id))
    token = await access_token(api, ClientKey(client.client_id, centre.id, private), scope="directory:read")
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await api.get("/api/v1/directory/tenants", headers=bearer)).status_code == 200

    await post(api, f"/admin/clients/{client.id}/revoke", {})
    assert "Tick the box" in ok(await api.get("/admin/clients"))
    foreign = await make_client(runtime, opeka)
    assert (await post(api, f"/admin/clients/{foreign.client_id}/revoke", {"confirm": "yes"})).status_code == 404
    await post(api, f"/admin/clients/{client.id}/revoke", {"confirm": "yes"})
    assert "The client was revoked." in ok(await api.get("/admin/clients"))
    assert (await api.get("/api/v1/directory/tenants", headers=bearer)).status_code == 401  # at once

    keys = ok(await api.get("/admin/keys"))
    kids = set(re.findall(r"<code>((?:enc|sig|kek)-[0-9a-f]+)</code>", keys))
    assert len(kids) == 3
    await post(api, "/admin/keys/rotate", {})
    assert "Tick the box" in ok(await api.get("/admin/keys"))
    await post(api, "/admin/keys/rotate", {"confirm": "yes"})
    keys = ok(await api.get("/admin/keys"))
    assert "New keys are in use." in keys
    after = set(re.findall(r"<code>((?:enc|sig|kek)-[0-9a-f]+)</code>", keys))
    assert kids < after
    assert len(await events(runtime, centre.id, Action.TENANTS_KEYS_ROTATE)) == 1


async def test_the_pages_speak_russian(api: httpx.AsyncClient, runtime: Runtime, centre: Tenant) -> None:
    api.headers["Accept-Language"] = "ru-RU,ru;q=0.9"
    _, token = await staff(runtime, centre, Role.TENANT_ADMIN, Role.DPO)
    act_as(api, token)
    assert "Пригласить сотрудника" in ok(await api.get("/admin"))
    assert "Используется" in ok(await api.get("/admin/keys"))
    assert "Поиск по журналу аудита" in ok(await api.get("/dpo"))
    assert "Проверить журнал сейчас" in ok(await api.get("/dpo/verification"))
    await post(api, "/admin/keys/rotate", {})
    assert "Отметьте флажок" in ok(await api.get("/admin/keys"))


async def test_the_administrator_sets_the_organisations_time_zone(english: httpx.AsyncClient, runtime: Runtime) -> None:
    """The organisation page shows the zone its deadlines' days are kept in; the administrator changes it there (an
    unknown name changes nothing), the change is recorded, and other roles and other organisations are kept out."""
    api = english
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE)
    other = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE)
    _, admin_session = await staff(runtime, centre, Role.TENANT_ADMIN)
    act_as(api, admin_session)
    page = ok(await api.get("/admin/organisation"))
    assert '<option value="Europe/Moscow" selected>' in page
    assert centre.name in page

    location = flash_of(await post(api, "/admin/organisation/time-zone", {"time_zone": "Asia/Vladivostok"}))
    assert location.startswith("/admin/organisation")
    page = ok(await api.get(location))
    assert "The time zone is now Asia/Vladivostok." in page
    assert '<option value="Asia/Vladivostok" selected>' in page
    flash_of(await post(api, "/admin/organisation/time-zone", {"time_zone": "Mars/Olympus_Mons"}))
    assert "Choose a time zone from the list; nothing was changed." in ok(await api.get("/admin/organisation"))
    async with platform_session(runtime.sessions) as session:
        zones = {row.id: row.time_zone for row in await session.execute(select(Tenant.id, Tenant.time_zone))}
    assert (zones[centre.id], zones[other.id]) == ("Asia/Vladivostok", "Europe/Moscow")
    (changed,) = await events(runtime, centre.id, Action.TENANTS_TIME_ZONE_SET)
    assert json.loads(changed.canonical)["outcome"] == "success"
    assert await events(runtime, centre.id, Action.TENANTS_SETTINGS_READ)

    # Only the administrator: a specialist of the same organisation is refused, and nothing changes.
    _, specialist_session = await staff(runtime, centre, Role.SPECIALIST)
    act_as(api, specialist_session)
    assert (await api.get("/admin/organisation")).status_code == 403
    assert (await post(api, "/admin/organisation/time-zone", {"time_zone": "Europe/Moscow"})).status_code == 403
    async with platform_session(runtime.sessions) as session:
        assert await session.scalar(select(Tenant.time_zone).where(Tenant.id == centre.id)) == "Asia/Vladivostok"
