"""HTTP basics: problem documents, request ids, body limits, validation, rate limits, probes, OpenAPI."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from audit.models import LEASE_ROW_ID, AuditSealerLease
from audit.sealer import TAKEOVER_WITHIN_S
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workers import WorkerName
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session
from tenants.services import set_tenant_status
from tests.environment import BASE_URL, settings_for
from tests.factories import access_token, make_client, make_tenant

PROFILE = {
    "contacts": {"phone": "+7 812 000-00-00", "address": "ул. Садовая, 1", "hours": "пн–пт 9:00–18:00"},
    "services": [
        {
            "name": "Психологическая помощь семье",
            "problems": ["family_conflict", "child_neglect"],
            "districts": ["Центральный район"],
            "documents_required": ["паспорт родителя", "свидетельство о рождении ребёнка"],
        }
    ],
}


async def _supervisor(api: httpx.AsyncClient, runtime: Runtime) -> dict[str, str]:
    tenant = await make_tenant(runtime, "semya")
    client = await make_client(runtime, tenant, scopes=["directory:read", "directory:write"], role=Role.SUPERVISOR)
    return {"Authorization": f"Bearer {await access_token(api, client)}"}


async def test_every_response_carries_a_request_id(api: httpx.AsyncClient) -> None:
    generated = await api.get("/health/live")
    assert len(generated.headers["x-request-id"]) >= 8
    echoed = await api.get("/health/live", headers={"X-Request-Id": "agency-req-0001"})
    assert echoed.headers["x-request-id"] == "agency-req-0001"
    unsafe = await api.get("/health/live", headers={"X-Request-Id": "<script>"})
    assert unsafe.headers["x-request-id"] != "<script>"


async def test_unknown_route_is_a_not_found_problem(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/nothing-here", headers={"X-Request-Id": "req-404-check"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "/problems/not-found"
    assert body["status"] == 404
    assert body["request_id"] == "req-404-check"
    described = await api.get(body["type"])
    assert described.json()["title"] == "Not found"


async def test_profile_update_and_directory_filters(api: httpx.AsyncClient, runtime: Runtime) -> None:
    headers = await _supervisor(api, runtime)
    await make_tenant(runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY, region="Северный район", name="Опека")
    hidden = await make_tenant(runtime, "closed", kind=TenantKind.NGO, name="Закрытая организация")
    async with platform_session(runtime.sessions) as session, session.begin():
        await set_tenant_status(session, slug=hidden.slug, status="suspended")

    updated = await api.put("/api/v1/directory/profile", json=PROFILE, headers=headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["services"][0]["documents_required"][1] == "свидетельство о рождении ребёнка"

    def slugs(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [item["slug"] for item in response.json()["items"]]

    assert sorted(slugs(await api.get("/api/v1/directory/tenants", headers=headers))) == ["opeka", "semya"]
    assert slugs(await api.get("/api/v1/directory/tenants?kind=guardianship_body", headers=headers)) == ["opeka"]
    assert slugs(await api.get("/api/v1/directory/tenants?region=северный район", headers=headers)) == ["opeka"]
    assert slugs(await api.get("/api/v1/directory/tenants?q=опек", headers=headers)) == ["opeka"]
    entry = (await api.get("/api/v1/directory/tenants?q=semya", headers=headers)).json()["items"][0]
    assert entry["services"][0]["name"] == "Психологическая помощь семье"
    assert entry["stats"]["median_hours_to_accept"] is None
    assert entry["stats"]["median_days_to_complete"] is None
    assert entry["stats"]["referral_count"] is None  # no history: below the directory's minimum cell size
    jwks = await api.get(entry["jwks_url"].removeprefix(BASE_URL))
    assert {k["use"] for k in jwks.json()["keys"]} == {"enc", "sig"}

    bad_kind = await api.get("/api/v1/directory/tenants?kind=bank", headers=headers)
    assert bad_kind.status_code == 400
    assert bad_kind.json()["type"] == "/problems/validation"


@pytest.mark.parametrize(
    ("body", "content_type", "expect"),
    [
        (b'{"contacts": {', "application/json", "malformed"),
        (json.dumps({**PROFILE, "services": "many"}).encode(), "application/json", "services"),
        (json.dumps({**PROFILE, "owner": "me"}).encode(), "application/json", "owner"),
        (json.dumps({"contacts": {"fax": "1"}, "services": []}).encode(), "application/json", "fax"),
        (json.dumps({"contacts": {}}).encode(), "application/json", "services"),
    ],
    ids=["malformed-json", "wrong-type", "unknown-field", "unknown-nested-field", "missing-field"],
)
async def test_bad_bodies_are_precise_problems_and_change_nothing(
    api: httpx.AsyncClient, runtime: Runtime, body: bytes, content_type: str, expect: str
) -> None:
    headers = await _supervisor(api, runtime)
    assert (await api.put("/api/v1/directory/profile", json=PROFILE, headers=headers)).status_code == 200
    response = await api.put(
        "/api/v1/directory/profile", content=body, headers={**headers, "Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["type"] == ("/problems/bad-request" if expect == "malformed" else "/problems/validation")
    assert expect.lower() in problem["detail"].lower()
    listing = await api.get("/api/v1/directory/tenants?q=semya", headers=headers)
    assert listing.json()["items"][0]["services"][0]["name"] == PROFILE["services"][0]["name"]


async def test_oversized_body_is_refused(api: httpx.AsyncClient, runtime: Runtime) -> None:
    headers = await _supervisor(api, runtime)
    huge = {"contacts": {"address": "x" * (runtime.settings.server.max_body_bytes + 10)}, "services": []}
    response = await api.put("/api/v1/directory/profile", json=huge, headers=headers)
    assert response.status_code == 413
    assert response.json()["type"] == "/problems/payload-too-large"


async def test_rate_limit_answers_429_with_retry_after(
    database_url: str, tmp_path: Path, nats_url: str, settings: Settings
) -> None:
    limited = settings_for(database_url, tmp_path / "var", nats_url, CASEBRIDGE_RATE_LIMIT_PER_MINUTE="3")
    app = create_app(limited)
    async with app.lifespan(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as api:
        statuses = [(await api.get("/.well-known/oauth-authorization-server")).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await api.get("/.well-known/oauth-authorization-server")
        assert (await api.get("/health/live")).status_code == 200  # probes are never limited
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["type"] == "/problems/rate-limited"


async def test_readiness_names_what_is_down(app: Litestar, api: httpx.AsyncClient, runtime: Runtime) -> None:
    ready = await api.get("/health/ready")
    every_worker = {"relay": True, "inbox": True, "sealer": True, "letters": True, "cosigner": True}
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": True, "bus": True, "audit_sealer": True},
        "workers": every_worker,
    }
    await runtime.workers[WorkerName.LETTERS].stop()
    down = await api.get("/health/ready")
    assert down.status_code == 503
    assert down.json()["down"] == ["worker:letters"]
    assert down.json()["workers"] == {**every_worker, "letters": False}
    runtime.workers[WorkerName.LETTERS].start()
    assert (await api.get("/health/ready")).status_code == 200
    await runtime.bus.stop()
    down = await api.get("/health/ready")
    assert down.status_code == 503
    assert down.json()["down"] == ["bus"]


@pytest.mark.parametrize(
    ("lapsed_s", "sealer_up"),
    [(-10.0, True), (TAKEOVER_WITHIN_S / 2, True), (TAKEOVER_WITHIN_S + 5, False)],
)
async def test_readiness_where_the_sealer_runs_elsewhere_follows_its_lease(
    database_url: str, tmp_path: Path, nats_url: str, settings: Settings, lapsed_s: float, sealer_up: bool
) -> None:
    """A web process without the sealer is ready while some process holds the lease or is taking over one that just
    lapsed; once nobody has taken it over, it is not."""
    web_only = settings_for(database_url, tmp_path / "var", nats_url, CASEBRIDGE_IN_PROCESS_WORKERS="none")
    app = create_app(web_only)
    async with app.lifespan(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as api:
        runtime: Runtime = app.state.runtime
        expires_at = runtime.clock.now() - dt.timedelta(seconds=lapsed_s)
        async with platform_session(runtime.sessions) as session, session.begin():
            await session.merge(AuditSealerLease(id=LEASE_ROW_ID, holder="a worker elsewhere", expires_at=expires_at))
        ready = await api.get("/health/ready")
    assert ready.json()["checks"]["audit_sealer"] is sealer_up
    assert ready.status_code == (200 if sealer_up else 503)
    if not sealer_up:
        assert ready.json()["down"] == ["audit_sealer"]


async def test_openapi_and_oauth_metadata(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/schema/openapi.json")).json()
    assert schema["openapi"].startswith("3.1")
    assert {"/oauth/token", "/api/v1/directory/tenants", "/api/v1/directory/profile"} <= set(schema["paths"])
    metadata = (await api.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == BASE_URL
    assert metadata["token_endpoint"] == f"{BASE_URL}/oauth/token"
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert metadata["grant_types_supported"] == ["client_credentials"]
    jwks = (await api.get("/.well-known/jwks.json")).json()
    assert [k["alg"] for k in jwks["keys"] if not k["kid"].startswith("checkpoint-")] == ["Ed25519"]
    assert all("d" not in k for k in jwks["keys"])


async def test_the_api_reference_loads_only_what_the_gateway_serves(api: httpx.AsyncClient) -> None:
    viewer = await api.get("/schema")
    assert viewer.status_code == 200
    assert viewer.headers["content-type"].startswith("text/html")
    # Every script and stylesheet the page names is a path on this gateway: nothing from another host.
    referenced = re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", viewer.text)
    assert sorted(referenced) == [
        "/static/favicon.svg",
        "/static/swagger-ui/swagger-ui-bundle.js",
        "/static/swagger-ui/swagger-ui-standalone-preset.js",
        "/static/swagger-ui/swagger-ui.css",
    ]
    assert "://" not in viewer.text.split("<script type='text/javascript'>")[0]
    for path in referenced:
        asset = await api.get(path)
        assert asset.status_code == 200, path
        kind = asset.headers["content-type"].split(";")[0]
        expected = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}[path.rsplit(".", 1)[1]]
        assert kind == expected, path
        assert path.endswith(".svg") or len(asset.content) > 100_000  # the whole dist file, not a stub
    licence = await api.get("/static/swagger-ui/LICENSE")
    assert licence.status_code == 200
    assert "Apache License" in licence.text
    # The description the viewer shows stays where clients fetch it.
    assert (await api.get("/schema/openapi.json")).json()["info"]["title"] == "casebridge"
    assert (await api.get("/schema/openapi.yaml")).status_code == 200


async def test_unknown_tenant_jwks_is_not_found(api: httpx.AsyncClient) -> None:
    response = await api.get("/.well-known/tenants/01930000-0000-7000-8000-000000000000/jwks.json")
    assert response.status_code == 404
    assert response.json()["type"] == "/problems/not-found"
