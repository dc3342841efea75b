"""Referrals between agencies (the API's `referrals` routes; docs/api.md, "The status machine")."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal
from urllib.parse import quote

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from audit.events import Action
from exchange.context import Context
from exchange.letters import reading
from exchange.referrals import services as referrals
from exchange.referrals import threads as messages
from exchange.referrals import worklist
from exchange.referrals.schemas import (
    AssignmentIn,
    MessageIn,
    MessageOut,
    MessagePage,
    ReferralIn,
    ReferralOut,
    ReferralPage,
    StatutoryBasisIn,
    TransitionIn,
)
from gateway.auth.guards import needs
from tenants.models import Role, Scope

_SENDERS = [Role.SPECIALIST, Role.SUPERVISOR]
_ACTORS = [Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE]


class ReferralController(Controller):
    path = "/referrals"
    tags = ("referrals",)

    @post(
        "/",
        opt=needs(Scope.REFERRALS_WRITE, _SENDERS, Action.EXCHANGE_REFERRAL_SEND),
        summary="Send a referral",
    )
    async def send(
        self,
        ctx: NamedDependency[Context],
        data: JSONBody[ReferralIn],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", max_length=255)] = None,
    ) -> Response[ReferralOut]:
        referral, created = await referrals.send_referral(ctx, data=data, idempotency_key=idempotency_key)
        view = await referrals.referral_view(ctx, referral)
        return Response(view, status_code=201 if created else 200)

    @get(
        "/",
        opt=needs(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_REFERRAL_LIST),
        summary="Outgoing or incoming referrals",
    )
    async def list_referrals(
        self,
        ctx: NamedDependency[Context],
        box: Annotated[Literal["outgoing", "incoming"], QueryParameter()] = "outgoing",
        status: Annotated[str | None, QueryParameter(max_length=16)] = None,
        overdue: Annotated[bool | None, QueryParameter()] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> ReferralPage:
        items, next_cursor = await referrals.list_referrals(
            ctx, box=box, status=status, overdue=overdue, cursor=cursor, limit=limit
        )
        return ReferralPage(items=items, next_cursor=next_cursor)

    @get(
        "/{referral_id:uuid}",
        opt=needs(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_REFERRAL_READ),
        summary="One referral",
    )
    async def get_referral(self, ctx: NamedDependency[Context], referral_id: FromPath[uuid.UUID]) -> ReferralOut:
        return await referrals.read_referral(ctx, referral_id=referral_id)

    @get(
        "/{referral_id:uuid}/letter.pdf",
        opt=needs(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_LETTER_READ),
        summary="The referral's signed letter as PDF",
        media_type="application/pdf",
    )
    async def get_letter(self, ctx: NamedDependency[Context], referral_id: FromPath[uuid.UUID]) -> Response[bytes]:
        letter = await reading.read_letter(ctx, referral_id=referral_id)
        return Response(
            letter.content,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(letter.name)}",
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @post(
        "/{referral_id:uuid}/transition",
        opt=needs(Scope.REFERRALS_WRITE, _ACTORS, Action.EXCHANGE_REFERRAL_TRANSITION),
        status_code=200,
        summary="Move a referral to another status",
    )
    async def transition(
        self, ctx: NamedDependency[Context], referral_id: FromPath[uuid.UUID], data: JSONBody[TransitionIn]
    ) -> ReferralOut:
        referral = await referrals.transition_referral(ctx, referral_id=referral_id, data=data)
        return await referrals.referral_view(ctx, referral)

    @post(
        "/{referral_id:uuid}/messages",
        opt=needs(Scope.REFERRALS_WRITE, _ACTORS, Action.EXCHANGE_MESSAGE_CREATE),
        summary="Write to the partner in the referral's thread",
    )
    async def post_message(
        self, ctx: NamedDependency[Context], referral_id: FromPath[uuid.UUID], data: JSONBody[MessageIn]
    ) -> MessageOut:
        return await messages.post_message(ctx, referral_id=referral_id, data=data)

    @get(
        "/{referral_id:uuid}/messages",
        opt=needs(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_MESSAGE_LIST),
        summary="The referral's thread",
    )
    async def list_messages(self, ctx: NamedDependency[Context], referral_id: FromPath[uuid.UUID]) -> MessagePage:
        items = await messages.list_messages(ctx, referral_id=referral_id)
        return MessagePage(items=items)

    @post(
        "/{referral_id:uuid}/assignment",
        opt=needs(Scope.REFERRALS_WRITE, [Role.INTAKE, Role.SUPERVISOR], Action.EXCHANGE_REFERRAL_ASSIGN),
        status_code=200,
        summary="Give an incoming referral to a worker of the receiving agency, or to nobody",
    )
    async def assign(
        self, ctx: NamedDependency[Context], referral_id: FromPath[uuid.UUID], data: JSONBody[AssignmentIn]
    ) -> ReferralOut:
        referral = await worklist.assign_referral(ctx, referral_id=referral_id, assignee_id=data.assignee_id)
        return await referrals.referral_view(ctx, referral)

    @post(
        "/{referral_id:uuid}/legal-basis",
        opt=needs(Scope.REFERRALS_WRITE, _ACTORS, Action.EXCHANGE_REFERRAL_BASIS),
        status_code=200,
        summary="Record the recipient's own legal basis for keeping the shared data",
    )
    async def record_basis(
        self, ctx: NamedDependency[Context], referral_id: FromPath[uuid.UUID], data: JSONBody[StatutoryBasisIn]
    ) -> ReferralOut:
        referral = await messages.record_own_basis(ctx, referral_id=referral_id, data=data)
        return await referrals.referral_view(ctx, referral)
