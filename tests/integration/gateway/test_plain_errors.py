"""No validator's own text reaches a person, in either language, on the API or the web (on SQLite and PostgreSQL).

The probe saw `"detail": "data: 'data'"` for an empty body and, on the Russian composer, "Expected `array` of length
>= 1 - at `$.categories`". Each failure is now a sentence naming the field; here every JSON operation gets an empty
body and a few wrong ones, and the staff forms get what a person may send them.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from gateway.runtime import Runtime
from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.factories import role_for_path
from tests.integration.helpers.agencies import agency, open_case
from tests.integration.helpers.operations import concrete, operations, role_headers
from tests.integration.helpers.web import act_as, consent_fields, form, referral_fields, staff
from tests.validator_words import VALIDATOR_WORDS

WRONG_BODIES: list[Any] = [{}, [], "text", 12, {"unknown": 1}, {"title": 5, "to": 5, "reason": 7, "body": 3}]


def _plain(problem: dict[str, Any]) -> None:
    texts = [problem["detail"], *(e["message"] for e in problem.get("errors", []))]
    for text in texts:
        assert not VALIDATOR_WORDS.search(text), problem
        assert "data:" not in text, problem


async def test_the_api_explains_bad_bodies_in_sentences(api: httpx.AsyncClient, runtime: Runtime) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    callers = await role_headers(api, runtime, centre)
    document = (await api.get("/schema/openapi.json")).json()
    checked = 0
    for method, path, operation in operations(document):
        if "application/json" not in operation.get("requestBody", {}).get("content", {}):
            continue
        headers = {**callers[role_for_path(path)], "Content-Type": "application/json"}
        empty = await api.request(method, concrete(path), headers=headers)
        assert empty.status_code == 400, (method, path, empty.text)
        assert empty.json()["detail"] == "The request needs a body, and this one has none."
        assert empty.json()["errors"] == [
            {"field": "", "code": "body_required", "message": "The request needs a body, and this one has none."}
        ]
        for body in WRONG_BODIES:
            response = await api.request(method, concrete(path), json=body, headers=headers)
            assert response.status_code in (400, 404), (method, path, body, response.text)  # {} may be a whole body
            _plain(response.json())
        checked += 1
    assert checked >= 10
    missing = await api.get("/api/v1/audit/checkpoints/consistency", params={"old": "1"}, headers=callers[Role.DPO])
    assert missing.json()["detail"] == "new is required."


async def test_the_staff_forms_explain_what_to_fix_in_russian_and_english(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    case, _ = await open_case(centre, opeka)
    async with platform_session(runtime.sessions) as session:
        tenant = await session.get_one(Tenant, centre.id)
    act_as(api, await staff(runtime, tenant, Role.SPECIALIST))
    composer = f"/cases/{case['id']}/referrals/new"
    sent = referral_fields(case, opeka.id)
    for language, expected in (
        ("ru", "«Передаваемые данные»: выберите хотя бы одно значение."),
        ("en", "Data to share: choose at least one."),
    ):
        api.headers["Accept-Language"] = language
        refused = await form(api, composer, sent)  # no category ticked
        assert refused.status_code == 400
        assert expected in refused.text
        for page in (
            refused.text,
            (await form(api, composer, {**sent, "categories": "identity", "to": str(uuid.uuid4())})).text,
            (await form(api, composer, {**sent, "categories": "identity", "kind": "telegram"})).text,
            (await form(api, "/cases/new", {"title": "x" * 400, "subject-0-name": "n"})).text,
        ):
            assert not VALIDATOR_WORDS.search(page.replace("`", "")), page[-3000:]
            assert "$." not in page
            assert "Expected" not in page
    # Deadlines and validity the services refuse in API words (with field names such as respond_by) are said in Russian.
    api.headers["Accept-Language"] = "ru"
    past = await form(api, composer, {**sent, "categories": "identity", "respond_by": "2020-01-01"})
    assert "«Ответить до»: выберите день позже сегодняшнего." in past.text
    reversed_ = await form(api, composer, {**sent, "categories": "identity", "complete_by": "2029-12-01"})
    assert "не может быть раньше даты в поле «Ответить до»" in reversed_.text
    recorded = await form(
        api,
        f"/cases/{case['id']}/consents/new",
        consent_fields(case, "2020-01-01"),
    )
    shown = await api.get(recorded.headers["location"])
    assert "выберите день позже сегодняшнего" in shown.text
    for page in (past.text, reversed_.text, shown.text):
        assert not any(name in page for name in ("respond_by must", "complete_by must", "valid_until must"))
