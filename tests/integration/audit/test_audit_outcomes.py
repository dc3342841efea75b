"""Every request that touches tenant data records the outcome it really had: a 500 is an `error`, never a
`success`, and a write that failed still leaves its event. Failures are made through real code paths: a service
function that raises, a page that cannot be laid out, a database trigger that refuses the row."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from audit.models import AuditEvent
from exchange.cases import services as cases
from exchange.cases.models import Case
from gateway.controllers import context
from gateway.runtime import Runtime
from gateway.web import casework
from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.factories import access_token, make_client, make_tenant
from tests.integration.helpers.web import act_as, form, staff

CASE = {
    "title": "Семья Ивановых",
    "subjects": [{"ref": "child 1", "full_name": "Иванова Мария", "birth_date": "2015-04-12", "role": "child"}],
}
WEB_CASE = {
    "title": "Family Ivanov",
    "subject-0-name": "Masha Ivanova",
    "subject-0-birth": "2015-04-02",
    "subject-0-role": "child",
    "subject-0-ref": "child 1",
}


class Injected(RuntimeError):
    """The fault a test puts in a real code path."""


def fail(*_: Any, **__: Any) -> Any:
    raise Injected


@dataclass
class Centre:
    tenant: Tenant
    headers: dict[str, str]
    session: str  # a specialist's staff session token


@pytest.fixture
async def centre(api: httpx.AsyncClient, runtime: Runtime) -> Centre:
    api.headers["Accept-Language"] = "en"
    tenant = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE)
    client = await make_client(runtime, tenant, scopes=["cases:read", "cases:write", "referrals:write"])
    headers = {"Authorization": f"Bearer {await access_token(api, client)}"}
    return Centre(tenant, headers, await staff(runtime, tenant, Role.SPECIALIST))


async def outcomes(runtime: Runtime, response: httpx.Response) -> list[tuple[str, str, str | None]]:
    """(action, outcome, reason) of the events recorded for one request, in the order they were recorded."""
    request_id = response.headers["x-request-id"]
    async with platform_session(runtime.sessions) as session:
        rows = await session.scalars(select(AuditEvent.canonical).order_by(AuditEvent.recorded_at, AuditEvent.id))
        events = [json.loads(row) for row in rows]
    return [(e["action"], e["outcome"], e["reason"]) for e in events if e["request_id"] == request_id]


async def _case_count(runtime: Runtime, tenant: Tenant) -> int:
    async with platform_session(runtime.sessions) as session:
        return len((await session.scalars(select(Case.id).where(Case.tenant_id == tenant.id))).all())


def _sqlite(runtime: Runtime) -> bool:
    return runtime.settings.database.is_sqlite


async def test_reads_and_writes_that_succeed_are_recorded_once_as_successes(
    api: httpx.AsyncClient, runtime: Runtime, centre: Centre
) -> None:
    created = await api.post("/api/v1/cases", json=CASE, headers=centre.headers)
    assert created.status_code == 201, created.text
    read = await api.get(f"/api/v1/cases/{created.json()['id']}", headers=centre.headers)
    assert read.status_code == 200
    assert await outcomes(runtime, created) == [("exchange:case:create", "success", None)]
    assert await outcomes(runtime, read) == [("exchange:case:read", "success", None)]


async def test_a_read_that_fails_in_its_transaction_is_an_error(
    api: httpx.AsyncClient, runtime: Runtime, centre: Centre, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = (await api.post("/api/v1/cases", json=CASE, headers=centre.headers)).json()["id"]
    monkeypatch.setattr(cases, "read_case", fail)
    response = await api.get(f"/api/v1/cases/{case_id}", headers=centre.headers)
    assert response.status_code == 500
    assert "Иванова" not in response.text
    assert await outcomes(runtime, response) == [("exchange:case:read", "error", "Injected")]


async def test_a_page_that_fails_after_its_data_was_read_is_an_error(
    api: httpx.AsyncClient, runtime: Runtime, centre: Centre, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's case: the data was read and the transaction committed, then laying out the page failed."""
    case_id = (await api.post("/api/v1/cases", json=CASE, headers=centre.headers)).json()["id"]
    act_as(api, centre.session)
    assert (await api.get(f"/cases/{case_id}")).status_code == 200
    monkeypatch.setattr(casework, "render", fail)
    response = await api.get(f"/cases/{case_id}")
    assert response.status_code == 500
    assert "Иванова" not in response.text
    assert await outcomes(runtime, response) == [("exchange:case:read", "error", "response 500")]


async def test_a_write_that_fails_leaves_an_error_and_no_change(
    api: httpx.AsyncClient, runtime: Runtime, centre: Centre, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cases, "create_case", fail)
    response = await api.post("/api/v1/cases", json=CASE, headers=centre.headers)
    assert response.status_code == 500
    assert await outcomes(runtime, response) == [("exchange:case:create", "error", "Injected")]
    assert await _case_count(runtime, centre.tenant) == 0


async def test_a_write_the_database_refuses_leaves_an_error_and_no_change(
    api: httpx.AsyncClient, runtime: Runtime, centre: Centre
) -> None:
    async with platform_session(runtime.sessions) as session, session.begin():
        if _sqlite(runtime):
            await session.execute(
                text("CREATE TRIGGER refuse_cases BEFORE INSERT ON case_file BEGIN SELECT RAISE(ABORT, 'refused'); END")
            )
        else:
            await session.execute(
                text(
                    "CREATE FUNCTION refuse_cases() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
                )
            )
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_cases BEFORE INSERT ON case_file "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_cases()"
                )
            )
    response = await api.post("/api/v1/cases", json=CASE, headers=centre.headers)
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/unavailable"
    [(action, outcome, reason)] = await outcomes(runtime, response)
    assert (action, outcome) == ("exchange:case:create", "error")
    assert reason in {"IntegrityError", "InternalError", "DBAPIError"}
    assert await _case_count(runtime, centre.tenant) == 0


async def test_a_write_saved_before_its_response_failed_records_both(
    api: httpx.AsyncClient, runtime: Runtime, centre: Centre, monkeypatch: pytest.MonkeyPatch
) -> None:
    act_as(api, centre.session)
    monkeypatch.setattr(casework, "redirect", fail)
    response = await form(api, "/cases/new", WEB_CASE)
    assert response.status_code == 500
    assert await outcomes(runtime, response) == [
        ("exchange:subjects:match", "success", None),  # the child was looked for in the centre's cases...
        ("exchange:case:create", "success", None),  # ...the case was opened...
        ("exchange:subjects:match", "error", "response 500"),  # ...and the person was told it failed
        ("exchange:case:create", "error", "response 500"),
    ]
    assert await _case_count(runtime, centre.tenant) == 1


async def test_a_route_that_fails_before_any_transaction_is_an_error(
    api: httpx.AsyncClient, runtime: Runtime, centre: Centre, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context, "runtime_of", fail)
    body = {
        "case_id": str(uuid.uuid4()),
        "to_tenant_id": str(uuid.uuid4()),
        "kind": "referral",
        "purpose": "social_support",
        "problem": "p",
        "requested_service": "s",
        "urgency": "routine",
        "respond_by": "2030-01-01T00:00:00Z",
        "complete_by": "2030-02-01T00:00:00Z",
        "subject_ids": [str(uuid.uuid4())],
        "categories": ["identity"],
        "legal_basis": {"type": "consent"},
    }
    response = await api.post("/api/v1/referrals", json=body, headers=centre.headers)
    assert response.status_code == 500, response.text
    assert await outcomes(runtime, response) == [("exchange:referral:send", "error", "response 500")]
