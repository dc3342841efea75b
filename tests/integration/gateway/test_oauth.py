"""Agency systems get access tokens with private_key_jwt, and every bad credential is refused precisely."""

from __future__ import annotations

import base64
import json
import time
import uuid
from urllib.parse import urlencode

import httpx
import httpx2
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey
from litestar import Litestar
from sqlalchemy import select

from audit.models import AuditEvent
from gateway.auth.tokens import ACCESS_TOKEN_TYPE, access_token_claims, sign_access_token
from gateway.runtime import Runtime
from tenants.algorithms import DEPRECATED_ACCEPTED_UNTIL
from tenants.models import PlatformKeyUse, Role, TenantKind
from tenants.persistence import platform_session
from tenants.services import set_tenant_status
from tests.conftest import BASE_URL
from tests.factories import ClientKey, access_token, client_assertion, make_client, make_tenant, token_form

TOKEN_ENDPOINT = f"{BASE_URL}/oauth/token"
# RFC 9864 deprecates "EdDSA" for "Ed25519"; the tests that check the old name is still read use it on purpose.
reads_eddsa = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


async def test_authlib_client_obtains_token_and_calls_api(
    app: Litestar, api: httpx.AsyncClient, runtime: Runtime
) -> None:
    tenant = await make_tenant(runtime, "semya")
    client = await make_client(runtime, tenant, scopes=["directory:read", "cases:read"])
    transport = httpx2.ASGITransport(app=app)
    async with AsyncOAuth2Client(
        client_id=client.client_id,
        client_secret=client.key,
        token_endpoint_auth_method=PrivateKeyJWT(TOKEN_ENDPOINT, alg="Ed25519"),
        transport=transport,
        base_url=BASE_URL,
    ) as oauth:
        token = await oauth.fetch_token(TOKEN_ENDPOINT, grant_type="client_credentials", scope="directory:read")
        assert token["token_type"].lower() == "bearer"
        assert token["scope"] == "directory:read"
        assert token["expires_in"] == 300
        listing = await oauth.get("/api/v1/directory/tenants")
    assert listing.status_code == 200, listing.text
    assert [item["slug"] for item in listing.json()["items"]] == ["semya"]

    decoded = jwt.decode(
        token["access_token"],
        OKPKey.import_key((await api.get("/.well-known/jwks.json")).json()["keys"][0]),
        algorithms=["Ed25519"],
    )
    assert decoded.header["alg"] == "Ed25519"
    claims = decoded.claims
    assert claims["tenant_id"] == str(tenant.id)
    assert claims["client_id"] == client.client_id
    assert claims["role"] == Role.SPECIALIST
    assert claims["aud"] == f"{BASE_URL}/api"


async def test_es256_client_key_is_accepted(api: httpx.AsyncClient, runtime: Runtime) -> None:
    tenant = await make_tenant(runtime)
    key = ECKey.generate_key("P-256", {"kid": "ec1"})
    from tenants import services

    async with platform_session(runtime.sessions) as session, session.begin():
        record = await services.create_client(
            session, tenant=tenant, name="ec system", public_jwk=key.as_dict(private=False), scopes=["directory:read"]
        )
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "ES256"},
        {
            "iss": record.client_id,
            "sub": record.client_id,
            "aud": TOKEN_ENDPOINT,
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        },
        key,
        algorithms=["ES256"],
    )
    response = await api.post("/oauth/token", data=token_form(ClientKey(record.client_id, tenant.id, key), assertion))  # type: ignore[arg-type]
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("alg", ["Ed25519", pytest.param("EdDSA", marks=reads_eddsa)])
async def test_an_ed25519_client_assertion_may_name_its_algorithm_either_way(
    api: httpx.AsyncClient, runtime: Runtime, alg: str
) -> None:
    client = await make_client(runtime, await make_tenant(runtime), scopes=["directory:read"])
    response = await api.post(
        "/oauth/token", data=token_form(client, client_assertion(client, TOKEN_ENDPOINT, alg=alg))
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert json.loads(_b64decode(token.split(".")[0]))["alg"] == "Ed25519"  # what the gateway signs with
    call = await api.get("/api/v1/directory/tenants", headers={"Authorization": f"Bearer {token}"})
    assert call.status_code == 200, call.text


@reads_eddsa
async def test_a_client_key_registered_for_one_name_is_held_to_it(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """RFC 7517 §4.4: a registered JWK that names its `alg` is meant for that algorithm only."""
    tenant = await make_tenant(runtime)
    key = OKPKey.generate_key("Ed25519", {"kid": "named", "alg": "EdDSA"})
    from tenants import services

    async with platform_session(runtime.sessions) as session, session.begin():
        record = await services.create_client(
            session,
            tenant=tenant,
            name="older system",
            public_jwk=key.as_dict(private=False),
            scopes=["directory:read"],
        )
    client = ClientKey(record.client_id, tenant.id, key)
    named = await api.post(
        "/oauth/token", data=token_form(client, client_assertion(client, TOKEN_ENDPOINT, alg="EdDSA"))
    )
    assert named.status_code == 200, named.text
    unbound = ClientKey(record.client_id, tenant.id, OKPKey.import_key({**key.as_dict(private=True), "alg": "Ed25519"}))
    other = await api.post("/oauth/token", data=token_form(client, client_assertion(unbound, TOKEN_ENDPOINT)))
    assert other.status_code == 401
    assert other.json()["error"] == "invalid_client"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _forged(header: dict[str, object], claims: dict[str, object], signature: bytes = bytes(64)) -> str:
    """A compact JWS with any header at all: refused on its `alg` before any key is used."""
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)])


@pytest.mark.parametrize("alg", ["HS256", "none", "Ed448", "ES256", "RS256"])
async def test_a_client_assertion_under_another_algorithm_is_refused(
    api: httpx.AsyncClient, runtime: Runtime, alg: str
) -> None:
    client = await make_client(runtime, await make_tenant(runtime))
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": TOKEN_ENDPOINT,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    assertion = _forged({"alg": alg, "kid": client.key.kid}, claims, b"" if alg == "none" else bytes(64))
    response = await api.post("/oauth/token", data=token_form(client, assertion))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


async def test_token_carries_only_registered_and_requested_scopes(api: httpx.AsyncClient, runtime: Runtime) -> None:
    client = await make_client(runtime, await make_tenant(runtime), scopes=["directory:read", "cases:read"])
    asked = token_form(client, client_assertion(client, TOKEN_ENDPOINT), "cases:read audit:read")
    response = await api.post("/oauth/token", data=asked)
    assert response.status_code == 200
    assert response.json()["scope"] == "cases:read"


def _refusals() -> dict[str, dict[str, object]]:
    now = int(time.time())
    return {
        "wrong audience": {"aud": "https://elsewhere.example/oauth/token"},
        "expired": {"iat": now - 600, "exp": now - 300},
        "issued in the future": {"iat": now + 3600, "exp": now + 3700},
        "lives too long": {"exp": now + 86400},
        "no jti": {"jti": None},
        "no exp": {"exp": None},
    }


@pytest.mark.parametrize("case", list(_refusals()))
async def test_bad_assertions_are_invalid_client(api: httpx.AsyncClient, runtime: Runtime, case: str) -> None:
    client = await make_client(runtime, await make_tenant(runtime))
    assertion = client_assertion(client, TOKEN_ENDPOINT, **_refusals()[case])
    response = await api.post("/oauth/token", data=token_form(client, assertion))
    assert response.status_code == 401, (case, response.text)
    body = response.json()
    assert body["error"] == "invalid_client"
    assert body["type"] == "/problems/invalid-client"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["detail"]


async def test_a_client_id_naming_another_client_than_the_assertion_is_refused(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 7521 §4.2: the form's client_id, when sent, must identify the client the signed assertion authenticates."""
    tenant = await make_tenant(runtime)
    client, other = await make_client(runtime, tenant), await make_client(runtime, tenant)
    for named in (other.client_id, str(uuid.uuid4()), client.client_id.upper(), ""):
        form = token_form(client, client_assertion(client, TOKEN_ENDPOINT)) | {"client_id": named}
        response = await api.post("/oauth/token", data=form)
        assert response.status_code == 401, (named, response.text)
        assert response.json()["error"] == "invalid_client"
        assert "client_id" in response.json()["detail"]

    # The assertion's iss must name its sub (RFC 7523 §3), so neither can point at another client.
    crossed = client_assertion(client, TOKEN_ENDPOINT, iss=other.client_id)
    for form in (token_form(client, crossed), token_form(other, crossed)):
        response = await api.post("/oauth/token", data=form)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    same = await api.post("/oauth/token", data=token_form(client, client_assertion(client, TOKEN_ENDPOINT)))
    assert same.status_code == 200, same.text
    unnamed = token_form(client, client_assertion(client, TOKEN_ENDPOINT))
    del unnamed["client_id"]
    assert (await api.post("/oauth/token", data=unnamed)).status_code == 200


async def test_a_token_request_that_is_ambiguous_about_its_client_is_refused(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    """One authentication method per request (RFC 6749 §2.3) and no parameter twice (§3.2): invalid_request."""
    tenant = await make_tenant(runtime)
    client, other = await make_client(runtime, tenant), await make_client(runtime, tenant)
    form = token_form(client, client_assertion(client, TOKEN_ENDPOINT))

    with_secret = await api.post("/oauth/token", data=form | {"client_secret": "anything"})
    with_basic = await api.post("/oauth/token", data=form, auth=(other.client_id, "anything"))
    twice = await api.post(
        "/oauth/token",
        content=urlencode([*form.items(), ("client_id", other.client_id)]),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    for response in (with_secret, with_basic, twice):
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
    assert "more than once" in twice.json()["detail"]

    async with platform_session(runtime.sessions) as session:
        refusals = (
            await session.scalars(
                select(AuditEvent.canonical).where(
                    AuditEvent.log_tenant_id == tenant.id, AuditEvent.action == "tenants:token:refuse"
                )
            )
        ).all()
    assert len(refusals) == 3
    assert all(json.loads(event)["outcome"] == "denied" for event in refusals)


async def test_assertion_signed_by_another_key_is_refused(api: httpx.AsyncClient, runtime: Runtime) -> None:
    client = await make_client(runtime, await make_tenant(runtime))
    impostor = ClientKey(client.client_id, client.tenant_id, OKPKey.generate_key("Ed25519"))
    response = await api.post("/oauth/token", data=token_form(client, client_assertion(impostor, TOKEN_ENDPOINT)))
    assert response.status_code == 401
    assert "signature" in response.json()["detail"]


async def test_replayed_jti_is_refused(api: httpx.AsyncClient, runtime: Runtime) -> None:
    client = await make_client(runtime, await make_tenant(runtime))
    assertion = client_assertion(client, TOKEN_ENDPOINT)
    first = await api.post("/oauth/token", data=token_form(client, assertion))
    assert first.status_code == 200
    replay = await api.post("/oauth/token", data=token_form(client, assertion))
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert "used before" in replay.json()["detail"]


async def test_unknown_client_is_refused(api: httpx.AsyncClient) -> None:
    stranger = ClientKey(str(uuid.uuid4()), uuid.uuid4(), OKPKey.generate_key("Ed25519"))
    response = await api.post("/oauth/token", data=token_form(stranger, client_assertion(stranger, TOKEN_ENDPOINT)))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "invalid_client"),
    ],
)
async def test_malformed_token_requests(api: httpx.AsyncClient, form: dict[str, str], error: str) -> None:
    response = await api.post("/oauth/token", data=form)
    assert response.status_code in {400, 401}
    assert response.json()["error"] == error


async def test_token_request_must_be_a_form(api: httpx.AsyncClient) -> None:
    response = await api.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert response.status_code == 415
    assert response.json()["type"] == "/problems/unsupported-media-type"


async def test_suspended_tenant_gets_no_tokens_and_its_tokens_stop_working(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    tenant = await make_tenant(runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
    client = await make_client(runtime, tenant)
    token = await access_token(api, client)
    async with platform_session(runtime.sessions) as session, session.begin():
        await set_tenant_status(session, slug="opeka", status="suspended")

    refused = await api.post("/oauth/token", data=token_form(client, client_assertion(client, TOKEN_ENDPOINT)))
    assert refused.status_code == 401
    assert "suspended" in refused.json()["detail"]
    call = await api.get("/api/v1/directory/tenants", headers={"Authorization": f"Bearer {token}"})
    assert call.status_code == 403
    assert call.json()["type"] == "/problems/tenant-suspended"


async def test_api_refuses_missing_malformed_and_foreign_tokens(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v1/directory/tenants")
    assert missing.status_code == 401
    assert missing.json()["type"] == "/problems/unauthenticated"

    malformed = await api.get("/api/v1/directory/tenants", headers={"Authorization": "Bearer not-a-jwt"})
    assert malformed.status_code == 401
    assert malformed.json()["type"] == "/problems/invalid-token"

    foreign_key = OKPKey.generate_key("Ed25519", {"kid": "foreign"})
    forged = sign_access_token(_claims(uuid.uuid4(), uuid.uuid4()), foreign_key)
    response = await api.get("/api/v1/directory/tenants", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["type"] == "/problems/invalid-token"


def _claims(tenant_id: uuid.UUID, client_id: uuid.UUID, **overrides: object) -> dict[str, object]:
    claims = access_token_claims(
        issuer=BASE_URL,
        client_id=str(client_id),
        tenant_id=tenant_id,
        role="specialist",
        scope="directory:read",
        now=int(time.time()),
        ttl_seconds=300,
    )
    return {**claims, **overrides}


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000, "nbf": None}, "expired"),
        ({"aud": "https://elsewhere.example/api"}, "audience"),
        ({"iss": "https://elsewhere.example"}, "another server"),
        ({"iat": int(time.time()) + 3600, "nbf": None}, "future"),
    ],
)
async def test_api_refuses_tokens_with_bad_claims(
    api: httpx.AsyncClient, runtime: Runtime, overrides: dict[str, object], detail: str
) -> None:
    client = await make_client(runtime, await make_tenant(runtime))
    async with platform_session(runtime.sessions) as session:
        key = runtime.keyring.platform_private_jwk(
            await runtime.keyring.ensure_platform_key(session, PlatformKeyUse.ACCESS_TOKEN)
        )
    claims = {
        k: v for k, v in _claims(client.tenant_id, uuid.UUID(client.client_id), **overrides).items() if v is not None
    }
    token = sign_access_token(claims, key)
    response = await api.get("/api/v1/directory/tenants", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert detail in response.json()["detail"]


async def _gateway_key(runtime: Runtime, *, as_recorded_before: bool = False) -> OKPKey:
    async with platform_session(runtime.sessions) as session:
        key = runtime.keyring.platform_private_jwk(
            await runtime.keyring.ensure_platform_key(session, PlatformKeyUse.ACCESS_TOKEN)
        )
    # An earlier release signed with this key under the name "EdDSA".
    return OKPKey.import_key({**key.as_dict(private=True), "alg": "EdDSA"}) if as_recorded_before else key


def _eddsa_token(claims: dict[str, object], key: OKPKey) -> str:
    return jwt.encode({"alg": "EdDSA", "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}, claims, key, algorithms=["EdDSA"])


@reads_eddsa
async def test_an_access_token_of_an_earlier_release_works_until_it_expires(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    client = await make_client(runtime, await make_tenant(runtime), scopes=["directory:read"])
    key = await _gateway_key(runtime, as_recorded_before=True)
    # Issued within the period; DEPRECATED_ACCEPTED_UNTIL caps iat so this stays true after the period ends.
    issued = min(int(time.time()), int(DEPRECATED_ACCEPTED_UNTIL.timestamp()) - 1)
    claims = {**_claims(client.tenant_id, uuid.UUID(client.client_id)), "iat": issued, "nbf": issued}
    response = await api.get(
        "/api/v1/directory/tenants", headers={"Authorization": f"Bearer {_eddsa_token(claims, key)}"}
    )
    assert response.status_code == 200, response.text


@reads_eddsa
async def test_an_eddsa_access_token_issued_after_the_period_is_refused(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    client = await make_client(runtime, await make_tenant(runtime), scopes=["directory:read"])
    key = await _gateway_key(runtime, as_recorded_before=True)
    issued = max(int(time.time()), int(DEPRECATED_ACCEPTED_UNTIL.timestamp()))
    claims = {**_claims(client.tenant_id, uuid.UUID(client.client_id)), "iat": issued, "nbf": issued}
    response = await api.get(
        "/api/v1/directory/tenants", headers={"Authorization": f"Bearer {_eddsa_token(claims, key)}"}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "The access token is signed under an algorithm name no longer accepted."


@pytest.mark.parametrize("alg", ["HS256", "none", "Ed448", "ES256"])
async def test_an_access_token_under_another_algorithm_is_refused(
    api: httpx.AsyncClient, runtime: Runtime, alg: str
) -> None:
    client = await make_client(runtime, await make_tenant(runtime), scopes=["directory:read"])
    key = await _gateway_key(runtime)
    claims = _claims(client.tenant_id, uuid.UUID(client.client_id))
    token = _forged({"alg": alg, "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}, claims)
    response = await api.get("/api/v1/directory/tenants", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["type"] == "/problems/invalid-token"


async def test_scopes_and_roles_are_enforced(api: httpx.AsyncClient, runtime: Runtime) -> None:
    tenant = await make_tenant(runtime)
    reader = await make_client(runtime, tenant, scopes=["cases:read"])
    token = await access_token(api, reader)
    no_scope = await api.get("/api/v1/directory/tenants", headers={"Authorization": f"Bearer {token}"})
    assert no_scope.status_code == 403
    assert "directory:read" in no_scope.json()["detail"]

    specialist = await make_client(runtime, tenant, scopes=["directory:write"], role=Role.SPECIALIST)
    token = await access_token(api, specialist)
    profile = {"contacts": {}, "services": []}
    wrong_role = await api.put("/api/v1/directory/profile", json=profile, headers={"Authorization": f"Bearer {token}"})
    assert wrong_role.status_code == 403
    assert "roles" in wrong_role.json()["detail"]
