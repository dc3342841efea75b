"""Every API list that pages by cursor answers a cursor this server did not issue with one and the same problem."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest

from gateway.runtime import Runtime
from tenants.models import Role, Scope
from tenants.pagination import BAD_CURSOR, encode_cursor, encode_time_cursor
from tests.factories import access_token, make_client, make_tenant

# Not base64, not ASCII, base64 of the wrong length; each list also gets the other kind's cursor.
BAD_CURSORS = ["@@@@", "курсор", "AAAA"]
AN_ID_CURSOR = encode_cursor(uuid.UUID(int=7))
A_TIME_CURSOR = encode_time_cursor(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), uuid.UUID(int=7))


async def _bearer(api: httpx.AsyncClient, runtime: Runtime, tenant_role: str, scope: str) -> dict[str, str]:
    tenant = await make_tenant(runtime)
    client = await make_client(runtime, tenant, role=tenant_role, scopes=[scope])
    return {"Authorization": f"Bearer {await access_token(api, client)}"}


async def test_each_cursor_list_refuses_a_cursor_it_did_not_issue(api: httpx.AsyncClient, runtime: Runtime) -> None:
    worker = await _bearer(api, runtime, Role.SPECIALIST, Scope.CASES_READ)
    referrals = await _bearer(api, runtime, Role.SPECIALIST, Scope.REFERRALS_READ)
    dpo = await _bearer(api, runtime, Role.DPO, Scope.AUDIT_READ)
    lists = [
        ("/api/v1/cases", worker, A_TIME_CURSOR),
        ("/api/v1/referrals?box=outgoing", referrals, A_TIME_CURSOR),
        ("/api/v1/referrals?box=incoming", referrals, A_TIME_CURSOR),
        ("/api/v1/plans", referrals, A_TIME_CURSOR),
        ("/api/v1/audit/events", dpo, AN_ID_CURSOR),
        ("/api/v1/audit/review", dpo, AN_ID_CURSOR),
    ]
    answers = set()
    for path, headers, foreign in lists:
        for cursor in [*BAD_CURSORS, foreign]:
            response = await api.get(path, params={"cursor": cursor}, headers=headers)
            assert response.status_code == 400, (path, cursor, response.text)
            problem = response.json()
            answers.add((problem["type"], problem["detail"]))
    assert answers == {("/problems/validation", BAD_CURSOR)}


@pytest.mark.parametrize("cursor", BAD_CURSORS)
async def test_a_subject_report_refuses_a_cursor_it_did_not_issue(
    api: httpx.AsyncClient, runtime: Runtime, cursor: str
) -> None:
    tenant = await make_tenant(runtime)
    specialist = await make_client(runtime, tenant, role=Role.SPECIALIST, scopes=[Scope.CASES_WRITE])
    dpo = await make_client(runtime, tenant, role=Role.DPO, scopes=[Scope.AUDIT_READ])
    case = await api.post(
        "/api/v1/cases",
        json={"title": "Case", "subjects": [{"ref": "child", "full_name": "Child", "role": "child"}]},
        headers={"Authorization": f"Bearer {await access_token(api, specialist)}"},
    )
    assert case.status_code == 201, case.text
    subject_id = case.json()["subjects"][0]["id"]
    response = await api.get(
        f"/api/v1/audit/subjects/{subject_id}/report",
        params={"cursor": cursor},
        headers={"Authorization": f"Bearer {await access_token(api, dpo)}"},
    )
    assert response.status_code == 400, response.text
    assert (response.json()["type"], response.json()["detail"]) == ("/problems/validation", BAD_CURSOR)
