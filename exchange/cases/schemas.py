"""Wire shapes of the cases area (docs/api.md); unknown fields are refused."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec

from exchange.cases.models import SubjectRole
from exchange.cases.policy import Category, Relation
from tenants.models import TenantKind
from tenants.schemas import Day, Instant, Strict

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
Purpose = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class Identifiers(Strict, kw_only=True):
    snils: Annotated[str, msgspec.Meta(pattern=r"^\d{3}-\d{3}-\d{3} \d{2}$")] | None = None
    birth_certificate: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class SubjectIn(Strict, kw_only=True):
    ref: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    full_name: ShortText
    birth_date: Day | None = None
    role: SubjectRole
    identifiers: Identifiers = msgspec.field(default_factory=Identifiers)
    address: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    education: dict[str, Any] | None = None
    health: dict[str, Any] | None = None


class Needs(Strict, kw_only=True):
    client: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    carers: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    community: Annotated[str, msgspec.Meta(max_length=4000)] = ""


class CaseIn(Strict, kw_only=True):
    title: ShortText
    subjects: Annotated[list[SubjectIn], msgspec.Meta(min_length=1, max_length=20)]
    summary: Annotated[str, msgspec.Meta(max_length=20000)] | None = None
    needs: Needs | None = None
    key_worker_id: uuid.UUID | None = None


class SubjectOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: uuid.UUID
    ref: str
    role: str | None = None
    full_name: str | None = None
    birth_date: str | None = None
    identifiers: dict[str, Any] | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None
    education: dict[str, Any] | None = None
    health: dict[str, Any] | None = None


class CaseOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    reference: str
    title: str
    key_worker_id: uuid.UUID | None
    subjects: list[SubjectOut]
    summary: str | None
    needs: dict[str, str] | None
    created_at: dt.datetime


class CaseSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    reference: str
    title: str
    created_at: dt.datetime


class CasePage(msgspec.Struct, kw_only=True):
    items: list[CaseSummary]
    next_cursor: str | None


class GivenBy(Strict, kw_only=True):
    name: ShortText
    relation: Relation


class Recipients(Strict, kw_only=True):
    tenants: Annotated[list[uuid.UUID], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
    kinds: Annotated[list[TenantKind], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=list)


class Evidence(Strict, kw_only=True):
    document_id: uuid.UUID


class ConsentIn(Strict, kw_only=True):
    subject_id: uuid.UUID
    given_by: GivenBy
    purposes: Annotated[list[Purpose], msgspec.Meta(min_length=1, max_length=20)]
    categories: Annotated[list[Category], msgspec.Meta(min_length=1, max_length=8)]
    recipients: Recipients
    valid_until: Instant
    valid_from: Instant | None = None
    evidence: Evidence | None = None


class ConsentOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    case_id: uuid.UUID
    subject_id: uuid.UUID
    given_by: dict[str, str]
    purposes: list[str]
    categories: list[str]
    recipients: dict[str, list[str]]
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    status: str
    withdrawn_at: dt.datetime | None
    evidence: dict[str, str] | None


class ConsentPage(msgspec.Struct, kw_only=True):
    items: list[ConsentOut]


class WithdrawIn(Strict, kw_only=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class DocumentOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    media_type: str
    size: int
    sha256: str
