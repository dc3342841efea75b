"""Specialist pages: cases, the consent form and the referral composer, on the same services as the API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from audit.events import Action
from exchange import cases, reminders, worklist
from exchange.errors import ConsentRequired
from exchange.models import ReferralKind, SubjectRole, Urgency
from exchange.policy import STATUTORY_CATALOGUE, Category, Relation, StatutoryBasis
from exchange.referrals import list_referrals, send_referral
from exchange.schemas import CaseIn, ConsentIn, Evidence, ReferralIn
from exchange.statistics import directory_with_figures
from gateway.controllers.context import audit_of, exchange_deps, principal_of, runtime_of, tenant_transaction
from gateway.controllers.metadata import tenant_jwks_url
from gateway.web.pages import LABELS, error_text, page, redirect, render, translator
from tenants.directory import DirectoryQuery, search_directory
from tenants.errors import CasebridgeError, InvalidInput
from tenants.models import Role, Scope, TenantKind
from tenants.persistence import platform_session

_WORKERS: Final = [Role.SPECIALIST, Role.SUPERVISOR]
PAGE_SIZE: Final = 20
SUBJECT_ROWS: Final = 3
PURPOSES: Final = tuple(LABELS["purposes"])


def _form_list(form: Any, name: str) -> list[str]:
    return [str(v) for v in form.getall(name, []) if str(v).strip()]


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _end_of_day(value: str, name: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name}: not a date") from None
    return dt.datetime.combine(day, dt.time(23, 59), tzinfo=dt.UTC)


# -- case list and case page -------------------------------------------------------------------------------------


@get("/cases", **page(Scope.CASES_READ, _WORKERS, Action.EXCHANGE_CASE_LIST))
async def case_list(request: Request[Any, Any, Any], cursor: str | None = None) -> Response[Any]:
    async with tenant_transaction(request) as session:
        items, next_cursor = await cases.list_cases(
            session, exchange_deps(request), principal=principal_of(request), audit=audit_of(request),
            cursor=cursor, limit=PAGE_SIZE,
        )  # fmt: skip
    return render(request, "cases.html", items=items, next_cursor=next_cursor, cursor=cursor)


@get("/cases/new", **page(Scope.CASES_WRITE, _WORKERS, None))
async def new_case_page(request: Request[Any, Any, Any]) -> Response[Any]:
    return render(request, "case_new.html", rows=range(SUBJECT_ROWS), roles=list(SubjectRole), form={})


@post("/cases/new", **page(Scope.CASES_WRITE, _WORKERS, Action.EXCHANGE_CASE_CREATE))
async def create_case(request: Request[Any, Any, Any]) -> Response[Any]:
    _ = translator(request)
    form = await request.form()
    subjects = []
    for row in range(SUBJECT_ROWS):
        name = _text(form, f"subject-{row}-name")
        if not name:
            continue
        subject: dict[str, Any] = {
            "ref": _text(form, f"subject-{row}-ref") or f"{_text(form, f'subject-{row}-role') or 'person'} {row + 1}",
            "full_name": name,
            "role": _text(form, f"subject-{row}-role") or "other",
        }
        if birth := _text(form, f"subject-{row}-birth"):
            subject["birth_date"] = birth
        subjects.append(subject)
    body = {
        "title": _text(form, "title"),
        "subjects": subjects,
        "summary": _text(form, "summary") or None,
        "needs": {k: _text(form, f"needs-{k}") for k in ("client", "carers", "community")},
        "key_worker_id": str(principal_of(request).actor_id),
    }
    if not body["title"] or not subjects:
        return render(request, "case_new.html", status=400, rows=range(SUBJECT_ROWS), roles=list(SubjectRole),
                      form=dict(form), error=_("Give the case a title and at least one person."))  # fmt: skip
    try:
        data = msgspec.convert(body, CaseIn)
    except msgspec.ValidationError as exc:
        return render(request, "case_new.html", status=400, rows=range(SUBJECT_ROWS), roles=list(SubjectRole),
                      form=dict(form), error=_("This could not be saved: %(detail)s", detail=str(exc)))  # fmt: skip
    async with tenant_transaction(request) as session:
        case = await cases.create_case(
            session, exchange_deps(request), principal=principal_of(request), audit=audit_of(request), data=data
        )
    return redirect(request, f"/cases/{case.id}", success=_("The case is opened."))


@get("/cases/{case_id:uuid}", **page(Scope.CASES_READ, _WORKERS, Action.EXCHANGE_CASE_READ))
async def case_page(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    deps, principal = exchange_deps(request), principal_of(request)
    async with tenant_transaction(request) as session:
        audit = audit_of(request)
        case = await cases.read_case(session, deps, principal=principal, audit=audit, case_id=case_id)
        consents = await cases.list_consents(session, deps, principal=principal, audit=audit, case_id=case_id)
        referrals = await worklist.case_referrals(session, deps, principal=principal, audit=audit, case_id=case_id)
        workers = await worklist.staff_names(
            session, principal=principal, user_ids=[case.key_worker_id] if case.key_worker_id else []
        )
    partners = await _tenant_names(request, {r.to_tenant_id for r in referrals})
    subjects = {s.id: s for s in case.subjects}
    timeline: list[dict[str, Any]] = sorted(
        [{"at": case.created_at, "what": "opened"}]
        + [{"at": c.valid_from, "what": "consent", "consent": c} for c in consents]
        + [{"at": c.withdrawn_at, "what": "withdrawn", "consent": c} for c in consents if c.withdrawn_at],
        key=lambda e: e["at"],
    )
    return render(
        request, "case.html", case=case, consents=consents, referrals=referrals, subjects=subjects,
        key_worker=workers.get(case.key_worker_id) if case.key_worker_id else None, partners=partners,
        timeline=timeline,
    )  # fmt: skip


async def _tenant_names(request: Request[Any, Any, Any], ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Partner agencies' public names from the directory (no tenant data: public profiles)."""
    if not ids:
        return {}
    async with platform_session(runtime_of(request).sessions) as session:
        tenants = await search_directory(session, DirectoryQuery())
    return {t.id: t.name for t in tenants if t.id in ids}


# -- consent form ------------------------------------------------------------------------------------------------


@get("/cases/{case_id:uuid}/consents/new", **page(Scope.CONSENTS_WRITE, _WORKERS, Action.EXCHANGE_CASE_READ))
async def consent_page(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    async with tenant_transaction(request) as session:
        case = await cases.read_case(
            session, exchange_deps(request), principal=principal_of(request), audit=audit_of(request), case_id=case_id
        )
    return await _consent_form(request, case)


async def _consent_form(
    request: Request[Any, Any, Any], case: Any, *, status: int = 200, **extra: Any
) -> Response[Any]:
    async with platform_session(runtime_of(request).sessions) as session:
        partners = await search_directory(session, DirectoryQuery())
    default_until = (runtime_of(request).clock.now() + dt.timedelta(days=365)).date().isoformat()
    return render(
        request, "consent_new.html", status=status, case=case, categories=list(Category), relations=list(Relation),
        purposes=PURPOSES, kinds=list(TenantKind), default_until=default_until,
        partners=[p for p in partners if p.id != principal_of(request).tenant_id], **extra,
    )  # fmt: skip


@post("/cases/{case_id:uuid}/consents/new", **page(Scope.CONSENTS_WRITE, _WORKERS, Action.EXCHANGE_CONSENT_CREATE),
      request_max_body_size=8 * 1024 * 1024)  # fmt: skip
async def record_consent(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    _ = translator(request)
    form = await request.form()
    deps, principal = exchange_deps(request), principal_of(request)
    body: dict[str, Any] = {
        "subject_id": _text(form, "subject_id"),
        "given_by": {"name": _text(form, "given_by_name"), "relation": _text(form, "relation")},
        "purposes": _form_list(form, "purposes"),
        "categories": _form_list(form, "categories"),
        "recipients": {"tenants": _form_list(form, "recipient_tenants"), "kinds": _form_list(form, "recipient_kinds")},
    }
    upload = form.get("evidence")
    back = f"/cases/{case_id}/consents/new"
    missing = [
        text
        for failed, text in (
            (not body["given_by"]["name"], _("Enter the name of the person who signed.")),
            (not body["purposes"], _("Tick at least one purpose.")),
            (not body["categories"], _("Tick at least one kind of data.")),
            (not (body["recipients"]["tenants"] or body["recipients"]["kinds"]),
             _("Name at least one recipient agency or kind of agency.")),
            (_date(_text(form, "valid_until")) is None, _("Enter the date until which the consent is valid.")),
        )
        if failed
    ]  # fmt: skip
    if missing:
        return redirect(request, back, error=" ".join(missing))
    body["valid_until"] = _end_of_day(_text(form, "valid_until"), "valid_until").isoformat()
    try:
        data = msgspec.convert(body, ConsentIn)
    except msgspec.ValidationError as exc:
        return redirect(request, back, error=_("This could not be saved: %(detail)s", detail=str(exc)))
    try:
        async with tenant_transaction(request) as session:
            audit = audit_of(request)
            if isinstance(upload, UploadFile) and upload.filename:
                content = await upload.read()
                document = await cases.store_document(
                    session, deps, principal=principal, audit=audit, name=upload.filename,
                    media_type=upload.content_type, content=content,
                    max_bytes=runtime_of(request).settings.exchange.max_document_bytes,
                )  # fmt: skip
                data.evidence = Evidence(document_id=document.id)
            await cases.record_consent(session, deps, principal=principal, audit=audit, case_id=case_id, data=data)
    except InvalidInput as exc:
        # The refusal is already in the audit trail; the form is shown again (by a GET) with the reason.
        return redirect(request, back, error=error_text(request, exc))
    return redirect(request, f"/cases/{case_id}", success=_("The consent is recorded."))


@post("/consents/{consent_id:uuid}/withdraw", **page(Scope.CONSENTS_WRITE, _WORKERS, Action.EXCHANGE_CONSENT_WITHDRAW))
async def withdraw_consent(request: Request[Any, Any, Any], consent_id: FromPath[uuid.UUID]) -> Response[Any]:
    _ = translator(request)
    form = await request.form()
    reason = _text(form, "reason")
    case_path = f"/cases/{_text(form, 'case_id')}" if _text(form, "case_id") else "/cases"
    if not reason:
        return redirect(request, case_path, error=_("Give the reason for the withdrawal."))
    async with tenant_transaction(request) as session:
        await cases.withdraw_consent(
            session, exchange_deps(request), principal=principal_of(request), audit=audit_of(request),
            consent_id=consent_id, reason=reason,
        )  # fmt: skip
    return redirect(request, case_path, success=_("The consent is withdrawn. Partners holding data under it are told."))


# -- referral composer -------------------------------------------------------------------------------------------


@get("/cases/{case_id:uuid}/referrals/new", **page(Scope.REFERRALS_WRITE, _WORKERS, Action.EXCHANGE_CASE_READ))
async def composer(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    return await _composer(request, case_id, dict(request.query_params))


async def _composer(
    request: Request[Any, Any, Any],
    case_id: uuid.UUID,
    chosen: dict[str, Any],
    *,
    status: int = 200,
    action: Action | None = None,
    **extra: Any,
) -> Response[Any]:
    deps, principal = exchange_deps(request), principal_of(request)
    query = DirectoryQuery(
        kind=chosen.get("kind") if chosen.get("kind") in set(TenantKind) else None,
        problem=(chosen.get("problem_filter") or "").strip() or None,
        district=(chosen.get("district") or "").strip() or None,
    )
    runtime = runtime_of(request)
    # Public profiles and their figures from every sender's copies: a platform-scoped read, as in the API.
    async with platform_session(runtime.sessions) as session:
        partners = [
            entry
            for entry in await directory_with_figures(
                session, query, now=runtime.clock.now(),
                jwks_url=lambda tenant_id: tenant_jwks_url(runtime.settings.server.base_url, tenant_id),
            )
            if entry.id != principal.tenant_id
        ]  # fmt: skip
    recipient = _uuid(chosen.get("to"))
    purpose = str(chosen["purpose"]) if chosen.get("purpose") in PURPOSES else PURPOSES[0]
    basis_type = "statutory" if chosen.get("basis") == "statutory" else "consent"
    reference = chosen.get("reference") if chosen.get("reference") in STATUTORY_CATALOGUE else None
    async with tenant_transaction(request, action=action) as session:
        audit = audit_of(request)
        case = await cases.read_case(session, deps, principal=principal, audit=audit, case_id=case_id)
        subject_ids = [s for s in (_uuid(v) for v in _as_list(chosen.get("subjects"))) if s] or [
            s.id for s in case.subjects
        ]
        offers: list[worklist.CategoryOffer] = []
        if recipient is not None:
            basis = StatutoryBasis(reference, "-") if basis_type == "statutory" and reference else None
            try:
                offers = await worklist.offered_categories(
                    session, deps, principal=principal, audit=audit, case_id=case_id, subject_ids=subject_ids,
                    recipient_id=recipient, purpose=purpose, basis=basis,
                )  # fmt: skip
            except CasebridgeError:
                recipient, offers = None, []
    now = runtime_of(request).clock.now()
    return render(
        request, "composer.html", status=status, case=case, partners=partners, chosen=chosen, recipient=recipient,
        recipient_name=next((t.name for t in partners if t.id == recipient), None), purpose=purpose,
        purposes=PURPOSES, basis_type=basis_type, reference=reference, statutes=STATUTORY_CATALOGUE,
        subject_ids=subject_ids, offers=offers, kinds=list(TenantKind), referral_kinds=list(ReferralKind),
        urgencies=list(Urgency), default_respond=(now + dt.timedelta(days=5)).date().isoformat(),
        default_complete=(now + dt.timedelta(days=30)).date().isoformat(), **extra,
    )  # fmt: skip


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
async def send(request: Request[Any, Any, Any], case_id: FromPath[uuid.UUID]) -> Response[Any]:
    _ = translator(request)
    form = await request.form()
    basis: dict[str, Any] = {"type": "consent"}
    if _text(form, "basis") == "statutory":
        basis = {
            "type": "statutory",
            "reference": _text(form, "reference"),
            "justification": _text(form, "justification"),
        }
    body: dict[str, Any] = {
        "case_id": str(case_id),
        "to_tenant_id": _text(form, "to"),
        "kind": _text(form, "kind") or "referral",
        "purpose": _text(form, "purpose"),
        "problem": _text(form, "problem"),
        "requested_service": _text(form, "requested_service"),
        "urgency": _text(form, "urgency") or "routine",
        "subject_ids": _form_list(form, "subjects"),
        "categories": _form_list(form, "categories"),
        "legal_basis": basis,
    }
    chosen = {key: (form.getall(key) if key == "subjects" else form.get(key)) for key in form if key != "_csrf_token"}
    try:
        if basis["type"] == "statutory" and not (basis["reference"] and basis["justification"]):
            raise InvalidInput(_("A statutory basis needs the legal reference and a written justification."))
        body["respond_by"] = _end_of_day(_text(form, "respond_by"), "respond_by").isoformat()
        body["complete_by"] = _end_of_day(_text(form, "complete_by"), "complete_by").isoformat()
        data = msgspec.convert(body, ReferralIn)
        async with tenant_transaction(request) as session:
            referral, _created = await send_referral(
                session, exchange_deps(request), principal=principal_of(request), audit=audit_of(request),
                data=data, idempotency_key=_text(form, "idempotency_key") or None,
            )  # fmt: skip
    except (msgspec.ValidationError, InvalidInput, ConsentRequired) as exc:
        message = (
            error_text(request, exc) if isinstance(exc, CasebridgeError)
            else _("Fill in every required field: %(detail)s", detail=str(exc))
        )  # fmt: skip
        # The refused send is in the audit trail already; showing the form again is a read of the case.
        return await _composer(request, case_id, chosen, status=400, error=message, action=Action.EXCHANGE_CASE_READ)
    return redirect(request, f"/referrals/{referral.exchange_id}", success=_("The referral is sent."))


@get("/dashboard", **page(Scope.REFERRALS_READ, _WORKERS, Action.EXCHANGE_REFERRAL_LIST))
async def dashboard(request: Request[Any, Any, Any]) -> Response[Any]:
    deps, principal, runtime = exchange_deps(request), principal_of(request), runtime_of(request)
    async with tenant_transaction(request) as session:
        audit = audit_of(request)
        outgoing, more_out = await list_referrals(session, deps, principal=principal, audit=audit, box="outgoing",
                                                  status=None, overdue=None, cursor=None, limit=100)  # fmt: skip
        incoming, more_in = await list_referrals(session, deps, principal=principal, audit=audit, box="incoming",
                                                 status=None, overdue=None, cursor=None, limit=10)  # fmt: skip
        due = await reminders.reminders_for(session, principal=principal, audit=None, now=runtime.clock.now(),
                                            lead=runtime.settings.reminders.lead)  # fmt: skip
        # One event for the whole page: every referral it shows, from all three lists.
        shown = {str(r.id) for r in outgoing} | {str(r.id) for r in incoming} | {str(d.referral_id) for d in due}
        audit.touched(resource_type="referral", box="dashboard", referrals=sorted(shown))
    overdue = [r for r in outgoing if r.overdue]
    by_status: dict[str, list[Any]] = {}
    for item in outgoing:
        if not item.overdue:
            by_status.setdefault(item.status, []).append(item)
    partners = await _tenant_names(request, {r.to_tenant_id for r in outgoing} | {r.from_tenant_id for r in incoming})
    return render(request, "dashboard.html", overdue=overdue, by_status=by_status, incoming=incoming, reminders=due,
                  partners=partners, more_outgoing=more_out is not None, more_incoming=more_in is not None)  # fmt: skip


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
