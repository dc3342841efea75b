"""Specialist pages: cases, the consent form and the referral composer, on the same services as the API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Final

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery

from audit.events import Action
from exchange.cases import services as cases
from exchange.cases.models import SubjectRole
from exchange.cases.policy import STATUTORY_CATALOGUE, Category, Relation, StatutoryBasis
from exchange.cases.schemas import Evidence
from exchange.context import Context
from exchange.errors import ConsentRequired
from exchange.plans import care, reminders
from exchange.plans import services as plans
from exchange.referrals import worklist
from exchange.referrals.models import ReferralKind, Urgency
from exchange.referrals.services import list_referrals, send_referral
from gateway.controllers.context import open_context, runtime_of
from gateway.controllers.metadata import tenant_jwks_url
from gateway.web.forms import (
    FORM,
    SUBJECT_ROWS,
    UPLOAD,
    CaseForm,
    ComposerChoice,
    ConsentForm,
    ReferralForm,
    Refusal,
    WithdrawalForm,
    from_query,
)
from gateway.web.i18n import agency_zone
from gateway.web.pages import LABELS, error_text, page, redirect, render, translator
from gateway.web.paging import (
    AGENCIES_PER_PAGE,
    CASES_PER_PAGE,
    CONSENTS_PER_PAGE,
    REFERRALS_PER_PAGE,
    REMINDERS_PER_PAGE,
    TIMELINE_PER_PAGE,
    BadPageLink,
    back_to_first_page,
    cursor_param,
    next_offset,
    offset_param,
    page_state,
)
from tenants.calendar import today_in
from tenants.directory import DirectoryQuery, search_directory
from tenants.errors import CasebridgeError, InvalidInput, NotFound
from tenants.models import Role, Scope, TenantKind
from tenants.pagination import encode_cursor
from tenants.persistence import platform_session
from tenants.principal import Principal

_WORKERS: Final = [Role.SPECIALIST, Role.SUPERVISOR]
# The query parameter of each list's page on the case page and on the dashboard.
CASE_PAGES: Final = ("consents", "referrals", "timeline")
DASHBOARD_PAGES: Final = ("overdue", "outgoing", "reminders", "escalated")
PURPOSES: Final = tuple(LABELS["purposes"])
# The dashboard's views of the agency's outgoing referrals: the team's (everyone's), or those of my own cases.
SHARED_BY: Final = ("team", "me")
# The newest few of the dashboard's plans and plan tasks; the list of plans and the inbox show the rest.
PLANS_ON_DASHBOARD: Final = 5
# The longest-late care plan actions on the dashboard; each case's care plan shows all of its own.
CARE_ACTIONS_ON_DASHBOARD: Final = 20


# -- case list and case page -------------------------------------------------------------------------------------


@get("/cases", **page(Scope.CASES_READ, _WORKERS, Action.EXCHANGE_CASE_LIST))
async def case_list(request: Request[Any, Any, Any], cursor: FromQuery[str | None] = None) -> Response[Any]:
    try:
        cursor_param(request, "cursor")
    except BadPageLink as bad:
        return back_to_first_page(request, bad)
    async with open_context(request) as ctx:
        items, next_cursor = await cases.list_cases(ctx, cursor=cursor, limit=CASES_PER_PAGE)
    return render(request, "cases.html", items=items, next_cursor=next_cursor, cursor=cursor)


@get("/cases/new", **page(Scope.CASES_WRITE, _WORKERS, Action.TENANTS_USER_LIST))
async def new_case_page(request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> Response[Any]:
    """The case form; its key worker is chosen among the colleagues in a casework role (the opener by default)."""
    return await _case_form(request, principal, form={"key-worker": str(principal.actor_id)})


async def _case_form(
    request: Request[Any, Any, Any], principal: Principal, *, form: dict[str, str], status: int = 200, **extra: Any
) -> Response[Any]:
    # The list of colleagues is a read of the organisation's staff, also when a refused form is shown again.
    async with open_context(request, action=Action.TENANTS_USER_LIST) as ctx:
        workers = await worklist.key_workers(ctx)
    return render(
        request,
        "case_new.html",
        status=status,
        rows=range(SUBJECT_ROWS),
        roles=list(SubjectRole),
        form=form,
        workers=workers,
        **extra,
    )


@post("/cases/new", **page(Scope.CASES_WRITE, _WORKERS, Action.EXCHANGE_CASE_CREATE))
async def create_case(
    request: Request[Any, Any, Any], principal: NamedDependency[Principal], data: Annotated[CaseForm, FORM]
) -> Response[Any]:
    body = data.case_in(request, opened_by=principal.actor_id)
    if isinstance(body, Refusal):
        return await _case_form(request, principal, form=data.fields(), status=400, error=body.text)
    if not data.known_checked and any(s.birth_date for s in body.subjects):
        async with open_context(request, action=Action.EXCHANGE_SUBJECTS_MATCH) as ctx:
            known = await cases.known_people(ctx, data=body)
        if known:
            names = [s.full_name for s in body.subjects]
            return await _case_form(
                request, principal, form=data.fields(), known=[(names[k.position], k.cases) for k in known]
            )
    try:
        async with open_context(request) as ctx:
            case = await cases.create_case(ctx, data=body)
    except NotFound:  # a key worker who left, or is not of this organisation: the form again, in words
        _ = translator(request)
        text = _("Choose the key worker from the list.")
        return await _case_form(request, principal, form=data.fields(), status=400, error=text)
    _ = translator(request)
    return redirect(request, f"/cases/{case.id}", success=_("The case is opened."))


@get("/cases/{case_id:uuid}", **page(Scope.CASES_READ, _WORKERS, Action.EXCHANGE_CASE_READ))
async def case_page(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    """The case with three lists, each paged on its own: consents, referrals (cursors) and the timeline (offset)."""
    try:
        consents_after = cursor_param(request, "consents")
        referrals_before = cursor_param(request, "referrals")
        timeline_offset = offset_param(request, "timeline")
    except BadPageLink as bad:
        return back_to_first_page(request, bad, also=CASE_PAGES)
    async with open_context(request) as ctx:
        case = await cases.read_case(ctx, case_id=case_id)
        consents, next_consent = await worklist.case_consents(
            ctx, case_id=case_id, after_id=consents_after, limit=CONSENTS_PER_PAGE
        )
        referrals, next_referral = await worklist.case_referrals(
            ctx, case_id=case_id, before_id=referrals_before, limit=REFERRALS_PER_PAGE
        )
        timeline, more_events = await worklist.case_timeline(
            ctx, case_id=case_id, offset=timeline_offset, limit=TIMELINE_PER_PAGE
        )
        workers = await worklist.staff_names(ctx, user_ids=[case.key_worker_id] if case.key_worker_id else [])
        issuer = await plans.issues_plans(ctx.session, ctx.principal)
        care_plan = await care.case_care_plan(ctx, case_id=case_id)
    carried = (
        {a.referral.to_tenant_id for g in care_plan.goals for a in g.actions if a.referral} if care_plan else set()
    )
    partners = await partner_names(request, {r.to_tenant_id for r in referrals} | carried)
    pages = {
        "consents": (encode_cursor(next_consent) if next_consent else None, request.query_params.get("consents")),
        "referrals": (encode_cursor(next_referral) if next_referral else None, request.query_params.get("referrals")),
        "timeline": (next_offset(timeline_offset, TIMELINE_PER_PAGE, more_events), timeline_offset or None),
    }
    return render(
        request,
        "case.html",
        case=case,
        consents=consents,
        referrals=referrals,
        subjects={s.id: s for s in case.subjects},
        partners=partners,
        key_worker=workers.get(case.key_worker_id) if case.key_worker_id else None,
        issuer=issuer,
        care_plan=care_plan,
        timeline=timeline,
        pages=pages,
        page_params=page_state(request, CASE_PAGES),
    )


async def partner_names(request: Request[Any, Any, Any], ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Partner agencies' public names from the directory (no tenant data: public profiles)."""
    if not ids:
        return {}
    async with platform_session(runtime_of(request).sessions) as session:
        tenants = await search_directory(session, DirectoryQuery())
    return {t.id: t.name for t in tenants if t.id in ids}


# -- consent form ------------------------------------------------------------------------------------------------


@get("/cases/{case_id:uuid}/consents/new", **page(Scope.CONSENTS_WRITE, _WORKERS, Action.EXCHANGE_CASE_READ))
async def consent_page(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    async with open_context(request) as ctx:
        case = await cases.read_case(ctx, case_id=case_id)
    return await _consent_form(request, ctx.principal, case, form={}, offset=0)


async def _consent_form(
    request: Request[Any, Any, Any], principal: Principal, case: Any, *, form: dict[str, Any], offset: int
) -> Response[Any]:
    """The consent form with one page of the partner agencies; agencies ticked on other pages are kept."""
    async with platform_session(runtime_of(request).sessions) as session:
        partners = [p for p in await search_directory(session, DirectoryQuery()) if p.id != principal.tenant_id]
    shown = partners[offset : offset + AGENCIES_PER_PAGE]
    chosen = set(form.get("recipient_tenants", []))
    today = today_in(agency_zone(request), runtime_of(request).clock.now())
    default_until = (today + dt.timedelta(days=365)).isoformat()
    return render(
        request,
        "consent_new.html",
        case=case,
        categories=list(Category),
        relations=list(Relation),
        purposes=PURPOSES,
        kinds=list(TenantKind),
        default_until=default_until,
        form=form,
        partners=shown,
        # Ticked on another page: sent along as hidden fields and named, so turning the page loses no choice.
        kept=[p for p in partners if str(p.id) in chosen and p not in shown],
        agency_pages=(
            offset + AGENCIES_PER_PAGE if len(partners) > offset + AGENCIES_PER_PAGE else None,
            max(offset - AGENCIES_PER_PAGE, 0) if offset else None,
        ),
        agencies_from=offset + 1,
        agencies_to=offset + len(shown),
        agencies_total=len(partners),
    )


@post(
    "/cases/{case_id:uuid}/consents/new",
    **page(Scope.CONSENTS_WRITE, _WORKERS, Action.EXCHANGE_CONSENT_CREATE),
    request_max_body_size=8 * 1024 * 1024,
)
async def record_consent(
    request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID], data: Annotated[ConsentForm, UPLOAD]
) -> Response[Any]:
    _, back = translator(request), f"/cases/{case_id}/consents/new"
    if (offset := data.agencies_offset) is not None:
        # Another page of agencies, with everything filled in so far: showing the form again is a read of the case.
        async with open_context(request, action=Action.EXCHANGE_CASE_READ) as ctx:
            case = await cases.read_case(ctx, case_id=case_id)
        return await _consent_form(request, ctx.principal, case, form=data.shown(), offset=offset)
    body = data.consent_in(request, now=runtime_of(request).clock.now())
    if isinstance(body, Refusal):
        return redirect(request, back, error=body.text)
    try:
        async with open_context(request) as ctx:
            if data.upload is not None:
                body.evidence = Evidence(document_id=await store_upload(request, ctx, data.upload))
            await cases.record_consent(ctx, case_id=case_id, data=body)
    except InvalidInput as exc:
        # The refusal is already in the audit trail; the form is shown again (by a GET) with the reason.
        return redirect(request, back, error=error_text(request, exc))
    return redirect(request, f"/cases/{case_id}", success=_("The consent is recorded."))


async def store_upload(request: Request[Any, Any, Any], ctx: Context, upload: UploadFile) -> uuid.UUID:
    """A file a form sent (a signed consent form's scan, a message's attachment), checked and sealed as a document
    of the agency in the transaction of what it belongs to."""
    document = await cases.store_document(
        ctx,
        name=upload.filename,
        media_type=upload.content_type,
        content=await upload.read(),
        max_bytes=runtime_of(request).settings.exchange.max_document_bytes,
    )
    return document.id


@post("/consents/{consent_id:uuid}/withdraw", **page(Scope.CONSENTS_WRITE, _WORKERS, Action.EXCHANGE_CONSENT_WITHDRAW))
async def withdraw_consent(
    request: Request[Any, Any, Any], consent_id: FromPath[uuid.UUID], data: Annotated[WithdrawalForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    if not data.reason.strip():
        return redirect(request, data.case_path, error=_("Give the reason for the withdrawal."))
    async with open_context(request) as ctx:
        await cases.withdraw_consent(ctx, consent_id=consent_id, reason=data.reason.strip())
    return redirect(
        request, data.case_path, success=_("The consent is withdrawn. Partners holding data under it are told.")
    )


# -- referral composer -------------------------------------------------------------------------------------------


@get(
    "/cases/{case_id:uuid}/referrals/new",
    **page(Scope.REFERRALS_WRITE, _WORKERS, Action.EXCHANGE_CASE_READ),
    dependencies={"choice": from_query(ComposerChoice)},
)
async def composer(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    case_id: FromPath[uuid.UUID],
    choice: NamedDependency[ComposerChoice],
) -> Response[Any]:
    try:
        offset_param(request, "agencies")
    except BadPageLink as bad:
        return back_to_first_page(request, bad)
    return await _composer(request, principal, case_id, choice.chosen())


async def _composer(
    request: Request[Any, Any, Any],
    principal: Principal,
    case_id: uuid.UUID,
    chosen: dict[str, Any],
    *,
    status: int = 200,
    action: Action | None = None,
    **extra: Any,
) -> Response[Any]:
    query = DirectoryQuery(
        kind=chosen.get("kind") if chosen.get("kind") in set(TenantKind) else None,
        problem=(chosen.get("problem_filter") or "").strip() or None,
        district=(chosen.get("district") or "").strip() or None,
    )
    runtime = runtime_of(request)
    # The form shown again after a refused send comes from a POST: its agencies are the first page.
    offset = offset_param(request, "agencies") if request.method == "GET" else 0
    # Public profiles and their figures from every sender's copies: a platform-scoped read, as in the API.
    async with platform_session(runtime.sessions) as session:
        partners, more_agencies = await worklist.directory_page(
            session,
            query,
            principal=principal,
            now=runtime.clock.now(),
            jwks_url=lambda tenant_id: tenant_jwks_url(runtime.settings.server.base_url, tenant_id),
            offset=offset,
            limit=AGENCIES_PER_PAGE,
        )
    recipient = _uuid(chosen.get("to"))
    purpose = str(chosen["purpose"]) if chosen.get("purpose") in PURPOSES else PURPOSES[0]
    basis_type = "statutory" if chosen.get("basis") == "statutory" else "consent"
    reference = chosen.get("reference") if chosen.get("reference") in STATUTORY_CATALOGUE else None
    async with open_context(request, action=action) as ctx:
        case = await cases.read_case(ctx, case_id=case_id)
        subject_ids = [s for s in (_uuid(v) for v in _as_list(chosen.get("subjects"))) if s] or [
            s.id for s in case.subjects
        ]
        offers: list[worklist.CategoryOffer] = []
        if recipient is not None:
            basis = StatutoryBasis(reference, "-") if basis_type == "statutory" and reference else None
            try:
                offers = await worklist.offered_categories(
                    ctx, case_id=case_id, subject_ids=subject_ids, recipient_id=recipient, purpose=purpose, basis=basis
                )
            except CasebridgeError:
                recipient, offers = None, []
    # Days of the agency's calendar: near midnight its today is not UTC's.
    today = today_in(agency_zone(request), runtime_of(request).clock.now())
    recipient_name = next((t.name for t in partners if t.id == recipient), None)
    if recipient is not None and recipient_name is None:  # chosen on another page of the directory
        recipient_name = (await partner_names(request, {recipient})).get(recipient)
    # Turning the directory's page keeps the filters and what is already chosen (not the people ticked: all again).
    kept = ("problem_filter", "district", "kind", "to", "purpose", "basis", "reference")
    agency_params = {k: str(chosen[k]) for k in kept if isinstance(chosen.get(k), str) and chosen[k]}
    return render(
        request,
        "composer.html",
        status=status,
        case=case,
        partners=partners,
        chosen=chosen,
        recipient=recipient,
        recipient_name=recipient_name,
        purpose=purpose,
        agency_params=agency_params,
        agency_pages=(next_offset(offset, AGENCIES_PER_PAGE, more_agencies), offset or None),
        purposes=PURPOSES,
        basis_type=basis_type,
        reference=reference,
        statutes=STATUTORY_CATALOGUE,
        subject_ids=subject_ids,
        offers=offers,
        kinds=list(TenantKind),
        referral_kinds=list(ReferralKind),
        urgencies=list(Urgency),
        default_respond=(today + dt.timedelta(days=5)).isoformat(),
        default_complete=(today + dt.timedelta(days=30)).isoformat(),
        **extra,
    )


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


@post("/cases/{case_id:uuid}/referrals/new", **page(Scope.REFERRALS_WRITE, _WORKERS, Action.EXCHANGE_REFERRAL_SEND))
async def send(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    case_id: FromPath[uuid.UUID],
    data: Annotated[ReferralForm, FORM],
) -> Response[Any]:
    _ = translator(request)
    body = data.referral_in(request, case_id=case_id, now=runtime_of(request).clock.now())
    if isinstance(body, Refusal):
        return await _refused_send(request, principal, case_id, data, body)
    try:
        async with open_context(request) as ctx:
            referral, _created = await send_referral(
                ctx, data=body, idempotency_key=data.idempotency_key.strip() or None
            )
    except (InvalidInput, ConsentRequired) as exc:
        return await _refused_send(request, principal, case_id, data, Refusal(error_text(request, exc)))
    return redirect(request, f"/referrals/{referral.exchange_id}", success=_("The referral is sent."))


async def _refused_send(
    request: Request[Any, Any, Any], principal: Principal, case_id: uuid.UUID, data: ReferralForm, refusal: Refusal
) -> Response[Any]:
    # A refused send is in the audit trail already; showing the form again is a read of the case.
    return await _composer(
        request, principal, case_id, data.chosen(), status=400, error=refusal.text, action=Action.EXCHANGE_CASE_READ
    )


@get("/dashboard", **page(Scope.REFERRALS_READ, _WORKERS, Action.EXCHANGE_REFERRAL_LIST))
async def dashboard(request: Request[Any, Any, Any], shared: FromQuery[str] = SHARED_BY[0]) -> Response[Any]:
    """Deadlines, then the overdue referrals, then the rest by status, each list paged on its own, those of the team
    (the whole agency) or shared by me (`shared`); incoming: the newest few, with the inbox for the rest."""
    runtime = runtime_of(request)
    shared = shared if shared in SHARED_BY else SHARED_BY[0]
    try:
        cursor_param(request, "overdue")
        cursor_param(request, "outgoing")
        reminders_offset = offset_param(request, "reminders")
        escalated_offset = offset_param(request, "escalated")
    except BadPageLink as bad:
        return back_to_first_page(request, bad, also=DASHBOARD_PAGES)
    async with open_context(request) as ctx:
        # Overdue first: the late ones are a list of their own above the rest, so no page of the rest hides one.
        shared_by = ctx.principal.actor_id if shared == "me" else None
        overdue, next_overdue = await list_referrals(
            ctx,
            box="outgoing",
            status=None,
            overdue=True,
            cursor=request.query_params.get("overdue") or None,
            limit=REFERRALS_PER_PAGE,
            shared_by=shared_by,
        )
        outgoing, next_outgoing = await list_referrals(
            ctx,
            box="outgoing",
            status=None,
            overdue=False,
            cursor=request.query_params.get("outgoing") or None,
            limit=REFERRALS_PER_PAGE,
            shared_by=shared_by,
        )
        incoming, more_in = await list_referrals(ctx, box="incoming", status=None, overdue=None, cursor=None, limit=10)
        # Multi-agency plans: the open ones this agency issued, and the tasks other agencies' plans gave it.
        open_plans, more_plans = await plans.list_plans(
            ctx, status=plans.OPEN, case_id=None, cursor=None, limit=PLANS_ON_DASHBOARD
        )
        issuer = await plans.issues_plans(ctx.session, ctx.principal)
        tasks_for_us, more_tasks = await list_referrals(
            ctx,
            box="incoming",
            status=None,
            overdue=None,
            cursor=None,
            limit=PLANS_ON_DASHBOARD,
            kind=ReferralKind.PLAN_TASK,
        )
        # The agency's care plan actions past their day join the overdue list.
        late_actions = await care.overdue_actions(ctx, limit=CARE_ACTIONS_ON_DASHBOARD)
        due = await reminders.reminders_for(
            ctx,
            now=runtime.clock.now(),
            lead=runtime.settings.reminders.lead,
            escalate_after_days=runtime.settings.reminders.escalate_after_days,
        )
        # A supervisor's own list of what was escalated to them, above the agency's other deadlines.
        escalated = [d for d in due if d.escalated_on] if ctx.principal.has_role(Role.SUPERVISOR) else []
        due = [d for d in due if d not in escalated]
        shown_due = due[reminders_offset : reminders_offset + REMINDERS_PER_PAGE]
        shown_escalated = escalated[escalated_offset : escalated_offset + REMINDERS_PER_PAGE]
        # One event for the whole page: every referral it shows, from all its lists.
        shown = {str(r.id) for r in [*overdue, *outgoing, *incoming, *tasks_for_us]}
        shown |= {str(d.referral_id) for d in [*shown_due, *shown_escalated]}
        ctx.audit.touched(resource_type="referral", box="dashboard", shared=shared, referrals=sorted(shown))
    by_status: dict[str, list[Any]] = {}
    for item in outgoing:
        by_status.setdefault(item.status, []).append(item)
    partners = await partner_names(
        request,
        {r.to_tenant_id for r in [*overdue, *outgoing]} | {r.from_tenant_id for r in [*incoming, *tasks_for_us]},
    )
    view = {} if shared == SHARED_BY[0] else {"shared": shared}  # the team's view is the page without a parameter
    pages = {
        "overdue": (next_overdue, request.query_params.get("overdue")),
        "outgoing": (next_outgoing, request.query_params.get("outgoing")),
        "reminders": (
            next_offset(reminders_offset, REMINDERS_PER_PAGE, len(due) > reminders_offset + REMINDERS_PER_PAGE),
            reminders_offset or None,
        ),
        "escalated": (
            next_offset(escalated_offset, REMINDERS_PER_PAGE, len(escalated) > escalated_offset + REMINDERS_PER_PAGE),
            escalated_offset or None,
        ),
    }
    return render(
        request,
        "dashboard.html",
        overdue=overdue,
        late_actions=late_actions,
        by_status=by_status,
        incoming=incoming,
        reminders=shown_due,
        escalated=shown_escalated,
        partners=partners,
        more_incoming=more_in is not None,
        open_plans=open_plans,
        more_plans=more_plans is not None,
        issuer=issuer,
        tasks_for_us=tasks_for_us,
        more_tasks=more_tasks is not None,
        pages=pages,
        page_params={name: {**kept, **view} for name, kept in page_state(request, DASHBOARD_PAGES).items()},
        shared=shared,
        shared_views=SHARED_BY,
    )


CASEWORK_ROUTES: list[HTTPRouteHandler] = [
    dashboard,
    case_list,
    new_case_page,
    create_case,
    case_page,
    consent_page,
    record_consent,
    withdraw_consent,
    composer,
    send,
]
