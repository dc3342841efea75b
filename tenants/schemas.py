"""Wire shapes of the tenants area (msgspec structs, unknown fields refused)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: an unknown field is an error, not silently dropped."""


class Contacts(Strict):
    phone: str | None = msgspec.field(default=None)
    email: str | None = None
    website: str | None = None
    address: str | None = None
    hours: str | None = None


class ServiceOffer(Strict):
    """One service an agency offers, in the spirit of Open Referral HSDS `service`."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    problems: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=50)]
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    districts: Annotated[list[Annotated[str, msgspec.Meta(max_length=128)]], msgspec.Meta(max_length=100)] = (
        msgspec.field(default_factory=list)
    )
    documents_required: Annotated[list[Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=50)] = (
        msgspec.field(default_factory=list)
    )
    intake_rules: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class ProfileUpdate(Strict):
    """What an agency publishes about itself in the directory; replaces the previous profile whole."""

    contacts: Contacts
    services: Annotated[list[ServiceOffer], msgspec.Meta(max_length=100)]


class DirectoryStats(msgspec.Struct, kw_only=True):
    # Computed from past referral timelines (exchange); None until a partner has history.
    median_hours_to_accept: float | None = None
    median_days_to_complete: float | None = None


class DirectoryEntry(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    region: str | None
    services: list[dict[str, Any]]
    jwks_url: str
    stats: DirectoryStats
    contacts: dict[str, Any] = msgspec.field(default_factory=dict)
    status: str = "active"


class DirectoryPage(msgspec.Struct, kw_only=True):
    items: list[DirectoryEntry]


class TenantCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    jwks_url: str


class UserCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    roles: list[str]


class ClientCreated(msgspec.Struct, kw_only=True):
    client_id: str
    tenant_id: uuid.UUID
    scopes: list[str]
    role: str


class KeysRotated(msgspec.Struct, kw_only=True):
    tenant_id: uuid.UUID
    enc_kid: str
    sig_kid: str
