"""Cases, consents and documents (API.md: Cases, Consents)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, JSONBody, QueryParameter

from audit.events import Action
from exchange.cases import services as cases
from exchange.cases.schemas import (
    CaseIn,
    CaseOut,
    CasePage,
    ConsentIn,
    ConsentOut,
    ConsentPage,
    DocumentOut,
    WithdrawIn,
)
from exchange.referrals import threads as messages
from gateway.auth.guards import needs
from gateway.controllers.context import audit_of, exchange_deps, principal_of, runtime_of, tenant_transaction
from tenants.errors import InvalidInput
from tenants.models import Role, Scope

_READERS = [Role.SPECIALIST, Role.SUPERVISOR]
_WRITERS = [Role.SPECIALIST, Role.SUPERVISOR]
_DOCUMENT_WRITERS = [Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE]


class CaseController(Controller):
    path = "/api/v1"
    tags = ("cases",)

    @post(
        "/cases",
        opt=needs(Scope.CASES_WRITE, _WRITERS, Action.EXCHANGE_CASE_CREATE),
        summary="Open a case with its subjects",
    )
    async def create_case(self, request: Request[Any, Any, Any], data: JSONBody[CaseIn]) -> CaseOut:
        async with tenant_transaction(request) as session:
            return await cases.create_case(
                session, exchange_deps(request), principal=principal_of(request), audit=audit_of(request), data=data
            )

    @get(
        "/cases",
        opt=needs(Scope.CASES_READ, _READERS, Action.EXCHANGE_CASE_LIST),
        summary="The tenant's cases, newest first",
    )
    async def list_cases(
        self,
        request: Request[Any, Any, Any],
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> CasePage:
        async with tenant_transaction(request) as session:
            items, next_cursor = await cases.list_cases(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                cursor=cursor,
                limit=limit,
            )
        return CasePage(items=items, next_cursor=next_cursor)

    @get(
        "/cases/{case_id:uuid}",
        opt=needs(Scope.CASES_READ, _READERS, Action.EXCHANGE_CASE_READ),
        summary="One case",
    )
    async def get_case(self, request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> CaseOut:
        async with tenant_transaction(request) as session:
            return await cases.read_case(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                case_id=case_id,
            )

    @post(
        "/cases/{case_id:uuid}/consents",
        opt=needs(Scope.CONSENTS_WRITE, _WRITERS, Action.EXCHANGE_CONSENT_CREATE),
        summary="Record a consent",
    )
    async def record_consent(
        self, request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID], data: JSONBody[ConsentIn]
    ) -> ConsentOut:
        async with tenant_transaction(request) as session:
            return await cases.record_consent(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                case_id=case_id,
                data=data,
            )

    @get(
        "/cases/{case_id:uuid}/consents",
        opt=needs(Scope.CASES_READ, _READERS, Action.EXCHANGE_CONSENT_LIST),
        summary="A case's consents",
    )
    async def list_consents(self, request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> ConsentPage:
        async with tenant_transaction(request) as session:
            items = await cases.list_consents(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                case_id=case_id,
            )
        return ConsentPage(items=items)

    @post(
        "/consents/{consent_id:uuid}/withdraw",
        opt=needs(Scope.CONSENTS_WRITE, _WRITERS, Action.EXCHANGE_CONSENT_WITHDRAW),
        status_code=200,
        summary="Withdraw a consent",
    )
    async def withdraw(
        self, request: Request[Any, Any, Any], consent_id: FromPath[uuid.UUID], data: JSONBody[WithdrawIn]
    ) -> ConsentOut:
        async with tenant_transaction(request) as session:
            return await cases.withdraw_consent(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                consent_id=consent_id,
                reason=data.reason,
            )

    @post(
        "/documents",
        opt=needs(Scope.CASES_WRITE, _DOCUMENT_WRITERS, Action.EXCHANGE_DOCUMENT_CREATE),
        summary="Upload a document",
        request_max_body_size=8 * 1024 * 1024,
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, UploadFile], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> DocumentOut:
        upload = data.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("Send the document as the multipart field 'file', a file with its name and type.")
        content = await upload.read()
        async with tenant_transaction(request) as session:
            document = await cases.store_document(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                name=upload.filename,
                media_type=upload.content_type,
                content=content,
                max_bytes=runtime_of(request).settings.exchange.max_document_bytes,
            )
        return DocumentOut(
            id=document.id,
            name=upload.filename,
            media_type=document.media_type,
            size=document.size,
            sha256=document.sha256,
        )

    @get(
        "/documents/{document_id:uuid}",
        opt=needs(Scope.CASES_READ, _DOCUMENT_WRITERS, Action.EXCHANGE_DOCUMENT_READ),
        summary="Download a document",
    )
    async def download(self, request: Request[Any, Any, Any], document_id: FromPath[uuid.UUID]) -> Response[bytes]:
        async with tenant_transaction(request) as session:
            name, media_type, content = await messages.read_document(
                session,
                exchange_deps(request),
                principal=principal_of(request),
                audit=audit_of(request),
                document_id=document_id,
            )
        return Response(
            content,
            media_type=media_type,
            headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )
