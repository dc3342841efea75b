"""What a request may carry, on every operation of the OpenAPI document, on SQLite and PostgreSQL: integers within 64
bits (the document states each bound), JSON nested at most 32 deep, JSON bodies sent as JSON (415 otherwise), and
uploads whose content is what they were sent as."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from exchange.cases.models import Consent, Document
from gateway.bodies import MAX_JSON_DEPTH
from gateway.runtime import Runtime
from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.factories import role_for_path
from tests.integration.helpers.agencies import Agency, agency, open_case
from tests.integration.helpers.operations import concrete, operations, role_headers
from tests.integration.helpers.web import act_as, consent_fields, form, ok, staff

MAX_INT64 = 2**63 - 1
PDF = b"%PDF-1.7\n% casebridge test document\n" + b"0" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def _integer(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The integer schema of a parameter (also inside `oneOf: [integer, null]`), with the bounds beside it."""
    for option in [schema, *schema.get("oneOf", [])]:
        if option.get("type") == "integer":
            return {**schema, **option}
    return None


def test_every_integer_parameter_has_its_bounds_in_the_document(app: Any) -> None:
    unbounded = []
    for method, path, operation in operations(app.openapi_schema.to_schema()):
        for parameter in operation.get("parameters", []):
            schema = _integer(parameter["schema"])
            if schema is None:
                continue
            if not (schema.get("minimum", -(2**63)) >= -(2**63) and schema.get("maximum", 2**64) <= MAX_INT64):
                unbounded.append(f"{method} {path} {parameter['name']}")
    assert unbounded == []


@pytest.fixture
async def centre(api: httpx.AsyncClient, runtime: Runtime) -> Agency:
    return await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)


async def test_huge_integers_deep_json_and_other_media_types_are_refused_on_every_operation(
    api: httpx.AsyncClient, runtime: Runtime, centre: Agency
) -> None:
    callers = await role_headers(api, runtime, centre)
    document = (await api.get("/schema/openapi.json")).json()
    deep = b"[" * 100_000 + b"]" * 100_000
    just_too_deep = json.dumps({"title": "t", "subjects": [{"education": _nested(MAX_JSON_DEPTH)}]}).encode()
    nul_in_text = json.dumps({"title": "t", "subjects": [{"ref": "child\u00001", "full_name": "n"}]}).encode()
    nul_in_a_name = json.dumps({"title": "t", "subjects": [{"health": {"a\u0000": 1}}]}).encode()
    checked = {"integers": 0, "json": 0, "strings": 0}
    for method, path, operation in operations(document):
        headers = callers[role_for_path(path)]
        url = concrete(path)
        integers = [p for p in operation.get("parameters", []) if p["in"] == "query" and _integer(p["schema"])]
        for parameter in integers:
            others = {p["name"]: "1" for p in integers if p["required"]}
            for huge in (2**64, 10**30, -(2**64)):
                params = {**others, parameter["name"]: str(huge)}
                response = await api.request(method, url, params=params, headers=headers)
                assert response.status_code == 400, (method, path, parameter["name"], response.text)
                assert response.json()["errors"][0]["field"] == parameter["name"]
            checked["integers"] += 1
        strings = [p for p in operation.get("parameters", []) if p["in"] == "query" and _string(p["schema"])]
        for parameter in strings:
            # A NUL character in a query (PostgreSQL stores no text with one): refused before any handler runs.
            response = await api.request(method, f"{url}?{parameter['name']}=a%00b", headers=headers)
            assert response.status_code == 400, (method, path, parameter["name"], response.text)
            assert response.json()["type"] == "/problems/bad-request"
            checked["strings"] += 1
        if "application/json" not in operation.get("requestBody", {}).get("content", {}):
            continue
        for body in (deep, just_too_deep, nul_in_text, nul_in_a_name):
            response = await api.request(
                method, url, content=body, headers={**headers, "Content-Type": "application/json"}
            )
            assert response.status_code == 400, (method, path, response.text[:300])
            assert response.json()["type"] == "/problems/bad-request"
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
            response = await api.request(method, url, content=b'{"title": "t"}', headers=sent)
            assert response.status_code == 415, (method, path, content_type, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["accepted"] == ["application/json"]
        empty = await api.request(method, url, headers=headers)  # no body, no type
        assert empty.status_code == 415, (method, path, empty.text)
        checked["json"] += 1
    assert checked["integers"] >= 7, checked
    assert checked["json"] >= 10, checked
    assert checked["strings"] >= 5, checked
    # A literal backslash followed by "u0000" is ordinary text.
    literal = await api.post(
        "/api/v1/cases",
        json={"title": "t \\u0000", "subjects": [{"ref": "c", "full_name": "n", "role": "child"}]},
        headers=centre.headers,
    )
    assert literal.status_code == 201, literal.text
    # A JSON type with a suffix (RFC 6839) is still JSON, and a body as deep as allowed is read.
    nested = await api.post(
        "/api/v1/cases",
        content=json.dumps(
            {
                "title": "t",
                "subjects": [{"ref": "c", "full_name": "n", "role": "child", "education": _nested(MAX_JSON_DEPTH - 4)}],
            }
        ).encode(),
        headers={**centre.headers, "Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert nested.status_code == 201, nested.text


def _string(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" or any(s.get("type") == "string" for s in schema.get("oneOf", []))


def _nested(depth: int) -> Any:
    value: Any = {"level": depth}
    for _ in range(depth - 1):
        value = {"deeper": value}
    return value


async def _documents(runtime: Runtime) -> int:
    async with platform_session(runtime.sessions) as session:
        return int(await session.scalar(select(func.count()).select_from(Document)) or 0)


@pytest.mark.parametrize(
    ("content", "sent_as", "found"),
    [
        (PNG, "application/pdf", "image/png"),
        (PDF, "image/jpeg", "application/pdf"),
        (JPEG, "image/png", "image/jpeg"),
        (PDF, "text/plain", "application/pdf"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "text/plain", None),  # a Windows program sent as text
        (b"\x00\x01\x02binary", "application/pdf", None),
        ("Заявление".encode("cp1251"), "text/plain", None),  # not UTF-8
        (b"MZ\x90\x00", "application/x-msdownload", None),
        (PDF, "", "application/pdf"),
    ],
    ids=[
        "png-as-pdf",
        "pdf-as-jpeg",
        "jpeg-as-png",
        "pdf-as-text",
        "exe-as-text",
        "binary-as-pdf",
        "cp1251-text",
        "not-allowed",
        "no-type",
    ],
)
async def test_uploads_are_checked_by_their_content(
    api: httpx.AsyncClient, runtime: Runtime, centre: Agency, content: bytes, sent_as: str, found: str | None
) -> None:
    response = await api.post(
        "/api/v1/documents", headers=centre.headers, files={"file": ("scan.pdf", content, sent_as)}
    )
    assert response.status_code == 415, response.text
    problem = response.json()
    assert problem["type"] == "/problems/unsupported-media-type"
    assert problem["found"] == found
    assert problem["accepted"] == ["application/pdf", "image/jpeg", "image/png", "text/plain"]
    assert "`" not in problem["detail"]
    assert await _documents(runtime) == 0


async def test_uploads_of_what_they_claim_are_kept_as_that(api: httpx.AsyncClient, centre: Agency) -> None:
    for content, sent_as, stored in (
        (PDF, "application/pdf", "application/pdf"),
        (PNG, "image/png", "image/png"),
        (JPEG, "IMAGE/JPEG", "image/jpeg"),
        ("Справка\n".encode(), "text/plain; charset=utf-8", "text/plain"),
    ):
        response = await api.post(
            "/api/v1/documents", headers=centre.headers, files={"file": ("document", content, sent_as)}
        )
        assert response.status_code == 201, response.text
        assert response.json()["media_type"] == stored
    no_file = await api.post(
        "/api/v1/documents", headers=centre.headers, files={"other": ("a", PDF, "application/pdf")}
    )
    assert no_file.status_code == 400
    text_field = await api.post(
        "/api/v1/documents",
        headers=centre.headers,
        data={"file": "not a file"},
        files={"other": ("a", PDF, "application/pdf")},
    )
    assert text_field.status_code == 400, text_field.text


async def test_a_consent_form_with_a_disguised_scan_is_refused_in_words(
    api: httpx.AsyncClient, runtime: Runtime, centre: Agency
) -> None:
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    case, _ = await open_case(centre, opeka)
    async with platform_session(runtime.sessions) as session:
        tenant = await session.get_one(Tenant, centre.id)
        consents = int(await session.scalar(select(func.count()).select_from(Consent)) or 0)
    act_as(api, await staff(runtime, tenant, Role.SPECIALIST))
    api.headers["Accept-Language"] = "ru"
    response = await form(
        api,
        f"/cases/{case['id']}/consents/new",
        consent_fields(case, "2030-01-01", subject=1, relation="self"),
        files={"evidence": ("consent.pdf", PNG, "application/pdf")},
    )
    page = ok(await api.get(response.headers["location"]))
    for fields in ({"given_by_name": "Иванова\x00Ольга"}, {"relation": "self\x00"}):
        # A NUL character in a text field, beside a file or in a plain form: refused, nothing stored.
        refused = await form(
            api,
            f"/cases/{case['id']}/consents/new",
            {"subject_id": case["subjects"][1]["id"], "purposes": "social_support", **fields},
            **({"files": {"evidence": ("consent.pdf", PDF, "application/pdf")}} if "relation" in fields else {}),
        )
        assert refused.status_code == 400, refused.text[:500]
        assert "Traceback" not in refused.text
    assert "Содержимое файла не соответствует его типу" in page
    async with platform_session(runtime.sessions) as session:
        assert int(await session.scalar(select(func.count()).select_from(Consent)) or 0) == consents
    assert await _documents(runtime) == 0
