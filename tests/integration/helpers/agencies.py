"""Agencies that call the API as their programs do (a tenant, an API client, its bearer token), and the case and
referral every exchange test starts from: a family with a child and a parent, consented for one recipient."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from gateway.runtime import Runtime
from tenants.models import Role, Tenant, User
from tenants.persistence import platform_session
from tests.factories import ClientKey, access_token, make_client, make_tenant
from tests.polling import eventually

CHILD_NAME = "Иванова Мария Петровна"
CHILD_BIRTH = "2015-04-12"
CHILD_SNILS = "112-233-445 95"
PARENT_NAME = "Иванова Ольга Сергеевна"
# The family's personal data, to look for where none may appear (logs, audit events, reports, the bus).
PERSONAL_DATA = (CHILD_NAME, "Иванова", CHILD_BIRTH, CHILD_SNILS, PARENT_NAME)


class Agency:
    """One API client of a tenant, with its bearer token on every request."""

    def __init__(self, api: httpx.AsyncClient, client: ClientKey, token: str) -> None:
        self.api, self.client, self.id = api, client, client.tenant_id
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.api.get(path, headers=self.headers, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return await self.api.post(path, json=body, headers=headers, **kw)


async def agency(api: httpx.AsyncClient, runtime: Runtime, slug: str, kind: str, role: str) -> Agency:
    """A new tenant of `kind` with one API client in `role`."""
    tenant = await make_tenant(runtime, slug, kind=kind)
    client = await make_client(runtime, tenant, role=role)
    return Agency(api, client, await access_token(api, client))


async def agency_clients(
    api: httpx.AsyncClient,
    runtime: Runtime,
    slug: str,
    kind: str,
    *roles: str,
    region: str = "Центральный район",
    name: str | None = None,
) -> list[Agency]:
    """A new tenant of `kind` in `region` with one API client for each of `roles`, in that order."""
    tenant = await make_tenant(runtime, slug, kind=kind, region=region, name=name)
    agencies = []
    for role in roles:
        client = await make_client(runtime, tenant, role=role)
        agencies.append(Agency(api, client, await access_token(api, client)))
    return agencies


async def dpo_of(api: httpx.AsyncClient, runtime: Runtime, owner: Agency) -> Agency:
    """The data protection officer's client of `owner`'s tenant, allowed to read the audit log."""
    async with platform_session(runtime.sessions) as session:
        tenant = await session.get_one(Tenant, owner.id)
    client = await make_client(runtime, tenant, scopes=["audit:read"], role=Role.DPO)
    return Agency(api, client, await access_token(api, client))


async def colleague(
    agency: Agency, runtime: Runtime, role: str = Role.SPECIALIST, scopes: list[str] | None = None
) -> Agency:
    """Another API client of `agency`'s tenant, in `role` (every scope unless `scopes` says otherwise)."""
    async with platform_session(runtime.sessions) as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.id == agency.id))
    assert tenant is not None
    client = await make_client(runtime, tenant, role=role, scopes=scopes)
    return Agency(agency.api, client, await access_token(agency.api, client))


def referral_body(case: dict[str, Any], to: uuid.UUID, categories: list[str], **extra: Any) -> dict[str, Any]:
    """The request body that refers the first subject of `case` to the tenant `to`, sharing `categories`."""
    now = dt.datetime.now(dt.UTC)
    return {
        "case_id": case["id"],
        "to_tenant_id": str(to),
        "kind": "referral",
        "purpose": "social_support",
        "problem": "Семья нуждается в помощи органа опеки",
        "requested_service": "Консультация",
        "urgency": "urgent",
        "respond_by": (now + dt.timedelta(days=3)).isoformat(),
        "complete_by": (now + dt.timedelta(days=30)).isoformat(),
        "subject_ids": [case["subjects"][0]["id"]],
        "categories": categories,
        "legal_basis": {"type": "consent"},
        **extra,
    }


async def parent_consents(
    centre: Agency, case: dict[str, Any], recipient: Agency, categories: list[str]
) -> httpx.Response:
    """The parent consents, for a year, to `centre` sharing these categories of the case's first subject with
    `recipient` for social support; the API's answer."""
    return await centre.post(
        f"/api/v1/cases/{case['id']}/consents",
        {
            "subject_id": case["subjects"][0]["id"],
            "given_by": {"name": PARENT_NAME, "relation": "parent"},
            "purposes": ["social_support"],
            "categories": categories,
            "recipients": {"tenants": [str(recipient.id)], "kinds": []},
            "valid_until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).isoformat(),
        },
    )


async def open_case(centre: Agency, recipient: Agency) -> tuple[dict[str, Any], dict[str, Any]]:
    """A case of `centre` for the Ivanov family and the parent's consent to share the child's data with
    `recipient`: both as the API returned them."""
    case = await centre.post(
        "/api/v1/cases",
        {
            "title": "Семья Ивановых",
            "subjects": [
                {
                    "ref": "child 1",
                    "full_name": CHILD_NAME,
                    "birth_date": CHILD_BIRTH,
                    "role": "child",
                    "identifiers": {"snils": CHILD_SNILS},
                    "address": "ул. Садовая, 1",
                    "health": {"notes": "астма"},
                },
                {"ref": "parent 1", "full_name": PARENT_NAME, "birth_date": "1988-01-20", "role": "parent"},
            ],
            "summary": "Мать одна воспитывает дочь",
            "needs": {"client": "жильё", "carers": "работа", "community": "школа"},
        },
    )
    assert case.status_code == 201, case.text
    body = case.json()
    consent = await parent_consents(centre, body, recipient, ["identity", "family", "social_assessment"])
    assert consent.status_code == 201, consent.text
    return body, consent.json()


async def status_is(agency: Agency, referral_id: str, status: str) -> bool:
    """Whether `agency`'s copy of the referral exists and has `status`."""
    response = await agency.get(f"/api/v1/referrals/{referral_id}")
    return response.status_code == 200 and response.json()["status"] == status


async def tenant_of(runtime: Runtime, agency_: Agency) -> Tenant:
    """The tenant an API client belongs to."""
    async with platform_session(runtime.sessions) as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.id == agency_.id))
    assert tenant is not None
    return tenant


async def the_one(runtime: Runtime, tenant_id: uuid.UUID, role: str) -> User:
    """The one member of staff of a tenant with `role`."""
    async with platform_session(runtime.sessions) as session:
        users = list(await session.scalars(select(User).where(User.tenant_id == tenant_id)))
    (user,) = [u for u in users if role in u.roles]
    return user


async def key_worker_referral(centre: Agency, opeka: Agency, key_worker: User) -> str:
    """Through the centre's API: a case of `key_worker`'s about Maria, her parent's consent, and a referral of its
    identity to `opeka`, arrived there; the referral's id."""
    subject = {"ref": "child 1", "full_name": CHILD_NAME, "birth_date": "2015-04-12", "role": "child"}
    body = {"title": "Семья Ивановых", "key_worker_id": str(key_worker.id), "subjects": [subject]}
    case = await centre.post("/api/v1/cases", body)
    assert case.status_code == 201, case.text
    assert (await parent_consents(centre, case.json(), opeka, ["identity"])).status_code == 201
    sent = await centre.post("/api/v1/referrals", referral_body(case.json(), opeka.id, ["identity"]))
    assert sent.status_code == 201, sent.text
    referral_id: str = sent.json()["id"]

    async def arrived() -> bool:
        return (await opeka.get(f"/api/v1/referrals/{referral_id}")).status_code == 200

    await eventually(arrived)
    return referral_id
