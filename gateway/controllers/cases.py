"""Cases, consents and documents (the API's `cases` routes; docs/api.md, "Withdrawing a consent")."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
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
from exchange.context import Context
from exchange.referrals import threads as messages
from gateway.auth.guards import needs
from gateway.controllers.context import open_context, runtime_of
from gateway.files import attachment
from tenants.errors import InvalidInput
from tenants.models import Role, Scope

_READERS = [Role.SPECIALIST, Role.SUPERVISOR]
_WRITERS = [Role.SPECIALIST, Role.SUPERVISOR]
_DOCUMENT_WRITERS = [Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE]


class CaseController(Controller):
    path = "/"
    tags = ("cases",)

    @post(
        "/cases",
        opt=needs(Scope.CASES_WRITE, _WRITERS, Action.EXCHANGE_CASE_CREATE),
        summary="Open a case with its subjects",
    )
    async def create_case(self, ctx: NamedDependency[Context], data: JSONBody[CaseIn]) -> CaseOut:
        return await cases.create_case(ctx, data=data)

    @get(
        "/cases",
        opt=needs(Scope.CASES_READ, _READERS, Action.EXCHANGE_CASE_LIST),
        summary="The tenant's cases, newest first",
    )
    async def list_cases(
        self,
        ctx: NamedDependency[Context],
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> CasePage:
        items, next_cursor = await cases.list_cases(ctx, cursor=cursor, limit=limit)
        return CasePage(items=items, next_cursor=next_cursor)

    @get(
        "/cases/{case_id:uuid}",
        opt=needs(Scope.CASES_READ, _READERS, Action.EXCHANGE_CASE_READ),
        summary="One case",
    )
    async def get_case(self, ctx: NamedDependency[Context], case_id: FromPath[uuid.UUID]) -> CaseOut:
        return await cases.read_case(ctx, case_id=case_id)

    @post(
        "/cases/{case_id:uuid}/consents",
        opt=needs(Scope.CONSENTS_WRITE, _WRITERS, Action.EXCHANGE_CONSENT_CREATE),
        summary="Record a consent",
    )
    async def record_consent(
        self, ctx: NamedDependency[Context], case_id: FromPath[uuid.UUID], data: JSONBody[ConsentIn]
    ) -> ConsentOut:
        return await cases.record_consent(ctx, case_id=case_id, data=data)

    @get(
        "/cases/{case_id:uuid}/consents",
        opt=needs(Scope.CASES_READ, _READERS, Action.EXCHANGE_CONSENT_LIST),
        summary="A case's consents",
    )
    async def list_consents(self, ctx: NamedDependency[Context], case_id: FromPath[uuid.UUID]) -> ConsentPage:
        items = await cases.list_consents(ctx, case_id=case_id)
        return ConsentPage(items=items)

    @post(
        "/consents/{consent_id:uuid}/withdraw",
        opt=needs(Scope.CONSENTS_WRITE, _WRITERS, Action.EXCHANGE_CONSENT_WITHDRAW),
        status_code=200,
        summary="Withdraw a consent",
    )
    async def withdraw(
        self, ctx: NamedDependency[Context], consent_id: FromPath[uuid.UUID], data: JSONBody[WithdrawIn]
    ) -> ConsentOut:
        return await cases.withdraw_consent(ctx, consent_id=consent_id, reason=data.reason)

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
        # Opened here, not injected: a request without a file is refused before any data is read, recording nothing.
        async with open_context(request) as ctx:
            document = await cases.store_document(
                ctx,
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
    async def download(self, ctx: NamedDependency[Context], document_id: FromPath[uuid.UUID]) -> Response[bytes]:
        name, media_type, content = await messages.read_document(ctx, document_id=document_id)
        return attachment(content, media_type, name)
