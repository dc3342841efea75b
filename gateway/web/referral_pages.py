"""Referral pages for both sides: the intake officer's inbox, the referral with its thread, and the actions on it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any, Final, TypeVar

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery

from audit.events import Action
from exchange.cases.policy import STATUTORY_CATALOGUE
from exchange.context import Context
from exchange.errors import ConsentRequired
from exchange.letters import reading
from exchange.referrals import threads as messages
from exchange.referrals import worklist
from exchange.referrals.models import ReferralKind, Side
from exchange.referrals.schemas import MessageIn
from exchange.referrals.services import list_referrals, read_referral, transition_referral
from exchange.referrals.status import TRANSITIONS
from gateway.controllers.context import open_context
from gateway.files import attachment
from gateway.web.casework import partner_names, store_upload
from gateway.web.forms import FORM, UPLOAD, AssignmentForm, MessageForm, OwnBasisForm, Refusal, TransitionForm
from gateway.web.pages import error_text, page, redirect, render, translator
from gateway.web.paging import (
    MESSAGES_PER_PAGE,
    REFERRALS_PER_PAGE,
    TIMELINE_PER_PAGE,
    BadPageLink,
    back_to_first_page,
    cursor_param,
    next_offset,
    offset_param,
    page_state,
)
from tenants.errors import CasebridgeError, Conflict, Forbidden, InvalidInput
from tenants.models import Role, Scope
from tenants.pagination import encode_cursor
from tenants.principal import Principal

_ACTORS: Final = [Role.SPECIALIST, Role.SUPERVISOR, Role.INTAKE]
TABS: Final = ("new", "overdue", "mine", "plans", "all")
REFERRAL_PAGES: Final = ("timeline", "messages")
Body = TypeVar("Body")


@get("/inbox", **page(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_REFERRAL_LIST))
async def inbox(
    request: Request[Any, Any, Any], tab: FromQuery[str] = "new", cursor: FromQuery[str | None] = None
) -> Response[Any]:
    tab = tab if tab in TABS else "new"
    try:
        cursor_id = cursor_param(request, "cursor")
    except BadPageLink as bad:
        return back_to_first_page(request, bad)
    async with open_context(request) as ctx:
        if tab == "mine":
            items, next_id = await worklist.assigned_to(ctx, cursor_id=cursor_id, limit=REFERRALS_PER_PAGE)
            next_cursor = encode_cursor(next_id) if next_id else None
        else:
            items, next_cursor = await list_referrals(
                ctx,
                box="incoming",
                status="received" if tab == "new" else None,
                overdue=True if tab == "overdue" else None,
                cursor=cursor,
                limit=REFERRALS_PER_PAGE,
                kind=ReferralKind.PLAN_TASK if tab == "plans" else None,
            )
    partners = await partner_names(request, {r.from_tenant_id for r in items})
    return render(
        request,
        "inbox.html",
        items=items,
        tab=tab,
        tabs=TABS,
        next_cursor=next_cursor,
        cursor=cursor,
        partners=partners,
    )


@get("/referrals/{referral_id:uuid}", **page(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_REFERRAL_READ))
async def referral_page(
    request: Request[Any, Any, Any], principal: NamedDependency[Principal], referral_id: FromPath[uuid.UUID]
) -> Response[Any]:
    """The referral; its timeline (oldest first) and its thread (newest first) are paged on their own, by offset."""
    try:
        timeline_offset = offset_param(request, "timeline")
        messages_offset = offset_param(request, "messages")
    except BadPageLink as bad:
        return back_to_first_page(request, bad, also=REFERRAL_PAGES)
    async with open_context(request) as ctx:
        referral = await read_referral(ctx, referral_id=referral_id)
        thread = await messages.list_messages(
            ctx, referral_id=referral_id, page=(messages_offset, MESSAGES_PER_PAGE + 1)
        )
        side = Side.SENDER if referral.from_tenant_id == principal.tenant_id else Side.RECIPIENT
        colleagues = await worklist.assignable_staff(ctx) if side is Side.RECIPIENT else []
        assignee = await worklist.assignee_of(ctx, referral_id=referral_id) if side is Side.RECIPIENT else None
    partners = await partner_names(request, {referral.from_tenant_id, referral.to_tenant_id})
    may_act = principal.has_role(*_side_roles(side))
    actions = sorted(t for (current, t), who in TRANSITIONS.items() if current == referral.status and who == side)
    actions = actions if may_act else []
    # The timeline comes whole with the referral (as in the API); the page shows one slice of it.
    timeline = referral.timeline[timeline_offset : timeline_offset + TIMELINE_PER_PAGE]
    more_events = len(referral.timeline) > timeline_offset + TIMELINE_PER_PAGE
    pages = {
        "timeline": (next_offset(timeline_offset, TIMELINE_PER_PAGE, more_events), timeline_offset or None),
        "messages": (
            next_offset(messages_offset, MESSAGES_PER_PAGE, len(thread) > MESSAGES_PER_PAGE),
            messages_offset or None,
        ),
    }
    return render(
        request,
        "referral.html",
        referral=referral,
        thread=thread[:MESSAGES_PER_PAGE],
        side=side.value,
        partners=partners,
        actions=actions,
        colleagues=colleagues,
        assignee=assignee,
        timeline=timeline,
        pages=pages,
        page_params=page_state(request, REFERRAL_PAGES),
        statutes=STATUTORY_CATALOGUE,
        may_act=may_act,
    )


def _side_roles(side: Side) -> tuple[str, ...]:
    from exchange.referrals.access import REFERRAL_ACTORS

    return tuple(REFERRAL_ACTORS[side])


async def _on_referral(
    request: Request[Any, Any, Any],
    referral_id: uuid.UUID,
    body: Body | Refusal,
    act: Callable[..., Awaitable[object]],
    *,
    refusals: tuple[type[CasebridgeError], ...],
    done: str,
) -> Response[Any]:
    """One action on the referral from its page: a refused form or a refusal by the service back on the page in
    words (a foreign or missing referral stays a 404 page), else the confirmation `done`."""
    back = f"/referrals/{referral_id}"
    if isinstance(body, Refusal):
        return redirect(request, back, error=body.text)
    try:
        async with open_context(request) as ctx:
            await act(ctx, data=body)
    except refusals as exc:
        return redirect(request, back, error=error_text(request, exc))
    return redirect(request, back, success=done)


@post(
    "/referrals/{referral_id:uuid}/transition",
    **page(Scope.REFERRALS_WRITE, _ACTORS, Action.EXCHANGE_REFERRAL_TRANSITION),
)
async def transition(
    request: Request[Any, Any, Any], referral_id: FromPath[uuid.UUID], data: Annotated[TransitionForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    act = partial(transition_referral, referral_id=referral_id)
    return await _on_referral(
        request,
        referral_id,
        data.transition_in(request),
        act,
        refusals=(InvalidInput, Conflict),
        done=_("The referral's status is updated."),
    )


@post(
    "/referrals/{referral_id:uuid}/messages",
    **page(Scope.REFERRALS_WRITE, _ACTORS, Action.EXCHANGE_MESSAGE_CREATE),
    request_max_body_size=8 * 1024 * 1024,
)
async def post_message(
    request: Request[Any, Any, Any], referral_id: FromPath[uuid.UUID], data: Annotated[MessageForm, UPLOAD]
) -> Response[Any]:
    """A message, and its attachment sealed as a document of this agency in the same transaction (or neither)."""
    _, upload = translator(request), data.upload

    async def act(ctx: Context, *, data: MessageIn) -> object:
        if upload is not None:
            data.attachments = [await store_upload(request, ctx, upload)]
        return await messages.post_message(ctx, referral_id=referral_id, data=data)

    return await _on_referral(
        request,
        referral_id,
        data.message_in(request),
        act,
        refusals=(InvalidInput, ConsentRequired),
        done=_("The message is sent to the partner."),
    )


@post(
    "/referrals/{referral_id:uuid}/legal-basis", **page(Scope.REFERRALS_WRITE, _ACTORS, Action.EXCHANGE_REFERRAL_BASIS)
)
async def record_basis(
    request: Request[Any, Any, Any], referral_id: FromPath[uuid.UUID], data: Annotated[OwnBasisForm, FORM]
) -> Response[Any]:
    """The receiving agency's own legal basis for keeping what it received (its DPO reviews it)."""
    _ = translator(request)
    act = partial(messages.record_own_basis, referral_id=referral_id)
    return await _on_referral(
        request,
        referral_id,
        data.basis_in(request),
        act,
        refusals=(InvalidInput, Forbidden),
        done=_("Your organisation's own legal basis is recorded; your data protection officer reviews it."),
    )


@post(
    "/referrals/{referral_id:uuid}/assign",
    **page(Scope.REFERRALS_WRITE, [Role.INTAKE, Role.SUPERVISOR], Action.EXCHANGE_REFERRAL_ASSIGN),
)
async def assign(
    request: Request[Any, Any, Any], referral_id: FromPath[uuid.UUID], data: Annotated[AssignmentForm, FORM]
) -> Response[Any]:
    _, back = translator(request), f"/referrals/{referral_id}"
    assignee = data.assignee_id(request)
    if isinstance(assignee, Refusal):
        return redirect(request, back, error=assignee.text)
    async with open_context(request) as ctx:
        await worklist.assign_referral(ctx, referral_id=referral_id, assignee_id=assignee)
    return redirect(request, back, success=_("The referral is assigned."))


@get("/documents/{document_id:uuid}", **page(Scope.CASES_READ, _ACTORS, Action.EXCHANGE_DOCUMENT_READ))
async def document(request: Request[Any, Any, Any], document_id: FromPath[uuid.UUID]) -> Response[bytes]:
    async with open_context(request) as ctx:
        name, media_type, content = await messages.read_document(ctx, document_id=document_id)
    return attachment(content, media_type, name)


@get("/referrals/{referral_id:uuid}/letter.pdf", **page(Scope.REFERRALS_READ, _ACTORS, Action.EXCHANGE_LETTER_READ))
async def letter(request: Request[Any, Any, Any], referral_id: FromPath[uuid.UUID]) -> Response[Any]:
    try:
        async with open_context(request) as ctx:
            pdf = await reading.read_letter(ctx, referral_id=referral_id)
    except Conflict:  # numbered, but its PDF is still being laid out or is on its way from the sender
        _ = translator(request)
        return redirect(
            request,
            f"/referrals/{referral_id}",
            error=_("The letter is still being prepared. Try again in a few seconds."),
        )
    return attachment(pdf.content, "application/pdf", pdf.name)


REFERRAL_ROUTES: list[HTTPRouteHandler] = [
    inbox,
    referral_page,
    transition,
    post_message,
    record_basis,
    assign,
    document,
    letter,
]
