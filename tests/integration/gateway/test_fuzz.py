"""Schemathesis against the app's own OpenAPI document, on SQLite and PostgreSQL: 0 server errors, 0 answers that
differ from what the document says.

Every operation gets a bounded number of generated requests, schema-conforming and not, each sent as a member of staff
of the right role with real ids of a seeded case, consent, referral, plan, document and audit event in most of them
(so the requests get past 404s into the services). Hypothesis runs derandomized, so a run is repeatable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants.calendar import FIRST_DAY, LAST_DAY
from tenants.models import Role, TenantKind
from tests.conftest import BASE_URL, settings_for
from tests.factories import access_token, make_client, role_for_path
from tests.integration.helpers.agencies import Agency, agency
from tests.polling import eventually

# Per operation and mode (schema-conforming, not): ~42 operations x 2 x this many requests per backend.
EXAMPLES = 6
# Server errors, bodies unlike their schema, statuses the document does not name. (Downloads answer in the document's or
# the report's own media type, which one OpenAPI response cannot list: content types are not checked.)
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
PDF = b"%PDF-1.4\n% casebridge fuzz document\n" + b"0" * 256
# The path parameters the seeded data has real values for.
PATH_IDS = frozenset(
    {"case_id", "subject_id", "consent_id", "referral_id", "plan_id", "document_id", "event_id", "tenant_id", "slug"}
)


def _days() -> st.SearchStrategy[str]:
    """Dates of the accepted calendar, most of them near today (where deadlines and consents are accepted)."""
    today = dt.date.today()
    near = st.dates(today - dt.timedelta(days=400), today + dt.timedelta(days=400))
    return st.one_of(near, near, st.dates(FIRST_DAY, LAST_DAY)).map(dt.date.isoformat)


def _instants() -> st.SearchStrategy[str]:
    """RFC 3339 times of the accepted calendar with offsets from -14:00 to +14:00, most of them near now."""
    zones = st.sampled_from([dt.UTC, *(dt.timezone(dt.timedelta(hours=h)) for h in (-14, -5, 3, 14))])
    now = dt.datetime.now()
    near = st.datetimes(now - dt.timedelta(days=400), now + dt.timedelta(days=400), timezones=zones)
    edges = st.datetimes(dt.datetime(1900, 1, 2), dt.datetime(2200, 12, 30), timezones=zones)
    return st.one_of(near, near, edges).map(dt.datetime.isoformat)


# The calendar's edges have a regression test of their own (test_calendar.py); generated dates stay inside it, so the
# requests reach the services instead of the refusal of the date (and generation costs no filtering).
schemathesis.openapi.format("date", _days())
schemathesis.openapi.format("date-time", _instants())


@pytest.fixture
async def settings(database_url: str, _schema: None, tmp_path: Path, nats_url: str) -> Settings:
    """The suite's settings with a rate limit no fuzzing run reaches (429s would hide every other answer)."""
    from tests.conftest import _empty_bus

    await _empty_bus(nats_url)
    return settings_for(database_url, tmp_path / "var", nats_url, CASEBRIDGE_RATE_LIMIT_PER_MINUTE="1000000")


@dataclass
class Seeded:
    """Real ids a request may name, by path or body parameter, and the bearer token of each kind of caller."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


async def _seed(api: httpx.AsyncClient, runtime: Runtime) -> Seeded:
    kdn = await agency(api, runtime, "kdn", TenantKind.JUVENILE_COMMISSION, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    seeded = Seeded()
    for role in (Role.DPO, Role.SUPERVISOR):
        client = await make_client(runtime, await _tenant_of(runtime, kdn), role=role)
        seeded.tokens[role] = await access_token(api, client)
    seeded.tokens[Role.SPECIALIST] = kdn.headers["Authorization"].removeprefix("Bearer ")
    seeded.tokens[Role.INTAKE] = opeka.headers["Authorization"].removeprefix("Bearer ")

    now = dt.datetime.now(dt.UTC)
    case = (
        await _ok(
            kdn.post(
                "/api/v1/cases",
                {
                    "title": "Семья Ивановых",
                    "subjects": [
                        {"ref": "child 1", "full_name": "Иванова Мария", "birth_date": "2014-03-02", "role": "child"},
                        {"ref": "parent 1", "full_name": "Иванова Ольга", "birth_date": "1988-01-20", "role": "parent"},
                    ],
                },
            )
        )
    ).json()
    subjects = [s["id"] for s in case["subjects"]]
    consent = (
        await _ok(
            kdn.post(
                f"/api/v1/cases/{case['id']}/consents",
                {
                    "subject_id": subjects[0],
                    "given_by": {"name": "Иванова Ольга", "relation": "parent"},
                    "purposes": ["social_support", "individual_prevention"],
                    "categories": ["identity", "family"],
                    "recipients": {"tenants": [str(opeka.id)], "kinds": []},
                    "valid_until": (now + dt.timedelta(days=300)).isoformat(),
                },
            )
        )
    ).json()
    deadline = {
        "respond_by": (now + dt.timedelta(days=3)).isoformat(),
        "complete_by": (now + dt.timedelta(days=30)).isoformat(),
    }
    referral = (
        await _ok(
            kdn.post(
                "/api/v1/referrals",
                {
                    "case_id": case["id"],
                    "to_tenant_id": str(opeka.id),
                    "kind": "referral",
                    "purpose": "social_support",
                    "problem": "Нужна консультация",
                    "requested_service": "Консультация",
                    "urgency": "routine",
                    **deadline,
                    "subject_ids": [subjects[0]],
                    "categories": ["identity"],
                    "legal_basis": {"type": "consent"},
                },
            )
        )
    ).json()
    plan = (
        await _ok(
            kdn.post(
                "/api/v1/plans",
                {
                    "case_id": case["id"],
                    "title": "План ИПР",
                    "period_from": now.date().isoformat(),
                    "period_until": (now + dt.timedelta(days=90)).date().isoformat(),
                    "tasks": [
                        {
                            "title": "Обследовать условия",
                            "to_tenant_id": str(opeka.id),
                            "expected_result": "Акт",
                            "purpose": "individual_prevention",
                            "problem": "Пропуски занятий",
                            "requested_service": "Обследование",
                            "subject_ids": [subjects[0]],
                            "categories": ["identity"],
                            "legal_basis": {"type": "consent"},
                            **deadline,
                        }
                    ],
                },
            )
        )
    ).json()
    document = (
        await _ok(
            kdn.api.post("/api/v1/documents", headers=kdn.headers, files={"file": ("form.pdf", PDF, "application/pdf")})
        )
    ).json()
    await _ok(kdn.post(f"/api/v1/referrals/{referral['id']}/messages", {"body": "Добрый день"}))
    dpo = {"Authorization": f"Bearer {seeded.tokens[Role.DPO]}"}
    events = (await _ok(api.get("/api/v1/audit/events", headers=dpo))).json()["items"]
    # A checkpoint, so that proofs have something to prove against.
    await eventually(lambda: _has_checkpoint(api, dpo))
    seeded.ids = {
        "case_id": [case["id"]],
        "subject_id": subjects,
        "consent_id": [consent["id"]],
        "referral_id": [referral["id"], *(t["referral_id"] for t in plan["tasks"])],
        "plan_id": [plan["id"]],
        "document_id": [document["id"]],
        "event_id": [e["id"] for e in events[:3]],
        "tenant_id": [str(kdn.id), str(opeka.id)],
        "to_tenant_id": [str(opeka.id)],
        "slug": ["validation"],
        "subject_ids": [subjects[:1]],
        "actor": [e["actor"]["id"] for e in events[:1] if e["actor"]["id"]],
    }
    assert set(seeded.ids) >= PATH_IDS
    return seeded


async def _tenant_of(runtime: Runtime, member: Agency) -> Any:
    from tenants.models import Tenant
    from tenants.persistence import platform_session

    async with platform_session(runtime.sessions) as session:
        return await session.get_one(Tenant, member.id)


async def _has_checkpoint(api: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    return (await api.get("/api/v1/audit/checkpoints/latest", headers=headers)).status_code == 200


async def _ok(request: Any) -> httpx.Response:
    response: httpx.Response = await request
    assert response.status_code in (200, 201), response.text
    return response


def _realised(case: Any, seeded: Seeded, data: st.DataObject) -> None:
    """Put real ids into most generated requests: path parameters, and the id members of a JSON body."""
    for name in list(case.path_parameters or {}):
        if name in seeded.ids and data.draw(st.integers(0, 4)):  # four in five
            case.path_parameters[name] = data.draw(st.sampled_from(seeded.ids[name]))
    for container in (case.query, case.body):
        if not isinstance(container, dict):
            continue
        for name in list(container):
            if name in seeded.ids and data.draw(st.integers(0, 3)):
                container[name] = data.draw(st.sampled_from(seeded.ids[name]))


def _httpx_kwargs(transport: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a `requests` call, as httpx takes them."""
    kwargs = {k: transport[k] for k in ("method", "url", "headers", "params", "cookies") if transport.get(k)}
    files, data = transport.get("files"), transport.get("data")
    if "json" in transport:
        kwargs["json"] = transport["json"]
    if files:
        # httpx writes the multipart body and its boundary itself.
        kwargs["headers"] = {k: v for k, v in kwargs.get("headers", {}).items() if k.lower() != "content-type"}
        kwargs["files"] = [(name, _file_part(part)) for name, part in files]
    if isinstance(data, dict):
        kwargs["data"] = data
    elif data is not None:
        kwargs["content"] = data.encode() if isinstance(data, str) else data
    return kwargs


def _file_part(part: Any) -> Any:
    """A multipart part as httpx takes it: content that `requests` would have turned into text is made bytes here."""

    def content(value: Any) -> Any:
        return value if isinstance(value, str | bytes) or hasattr(value, "read") else str(value).encode()

    if isinstance(part, tuple):
        return (part[0], content(part[1]), *part[2:])
    return content(part)


def _fuzz(schema: Any, seeded: Seeded, send: Any) -> tuple[list[str], int]:
    """Every operation, both modes: the failures found (one message each) and how many requests were sent."""
    failures: list[str] = []
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += _fuzz_operation(operation, mode, seeded, send, failures)
    return failures, sent


def _fuzz_operation(operation: Any, mode: GenerationMode, seeded: Seeded, send: Any, failures: list[str]) -> int:
    headers = {"Authorization": f"Bearer {seeded.tokens[role_for_path(operation.path)]}"}
    label = f"{operation.method.upper()} {operation.path} ({mode})"
    sent = 0

    @examples(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        nonlocal sent
        _realised(case, seeded, data)
        response = send(_httpx_kwargs(case.as_transport_kwargs(base_url=BASE_URL, headers=headers)))
        sent += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            failures.append(f"{label}: {group}")

    run()
    return sent


async def test_the_openapi_document_holds_under_fuzzing(api: httpx.AsyncClient, runtime: Runtime) -> None:
    seeded = await _seed(api, runtime)
    document = (await api.get("/schema/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    loop = asyncio.get_running_loop()

    async def request(kwargs: dict[str, Any]) -> httpx.Response:
        built = api.build_request(**kwargs)
        await built.aread()  # a multipart body is a stream: read, so the checks can see what was sent
        return await api.send(built)

    def send(kwargs: dict[str, Any]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(request(kwargs), loop).result(timeout=60)

    # Hypothesis drives a thread of its own; the requests run on this loop, where the app and its connections live.
    failures, sent = await asyncio.to_thread(_fuzz, schema, seeded, send)
    assert sent >= 400, sent  # every operation was reached (about 12 requests each)
    assert failures == [], "\n\n".join(failures[:20])


def test_fixtures_name_real_ids_for_every_path_parameter(app: Any) -> None:
    """A new path parameter gets real ids in the fuzzing run too (or the run stops at its 404s)."""
    document = app.openapi_schema.to_schema()
    names = {
        p["name"]
        for ops in document["paths"].values()
        for op in ops.values()
        for p in op.get("parameters", [])
        if p["in"] == "path"
    }
    assert names <= PATH_IDS, names - PATH_IDS
