"""The data-protection officer's console: audit search, subject access reports, review queue, anomalies, verification.

The pages call the same services as the audit API (`exchange.reports.dpo`, `audit.reports`) and declare the same audit
actions, so reading the trail here is recorded exactly as reading it through the API is.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Annotated, Any, Final

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery

from audit import reports
from audit.events import Action
from audit.reports import ReportFormat
from audit.schemas import SubjectReport
from audit.verifications import Trigger, latest_checkpoint, latest_verification, record_verification
from audit.verify import verify_database
from exchange.context import Context
from exchange.reports import dpo as queries
from gateway.controllers.audit import attachment, thresholds
from gateway.controllers.context import open_context, runtime_of
from gateway.web import dpo_words
from gateway.web.forms import FORM, AuditSearchForm, PersonLookupForm, ReviewForm, from_query, local_day
from gateway.web.i18n import N_, agency_zone
from gateway.web.pages import day_error, page, redirect, render, translator
from gateway.web.paging import AUDIT_EVENTS_PER_PAGE, BadPageLink, back_to_first_page, time_cursor_param
from tenants import admin
from tenants.errors import Conflict, InvalidInput, NotFound
from tenants.models import Role, Scope
from tenants.persistence import read_only_platform_session
from tenants.principal import Principal

_DPO: Final = (Scope.AUDIT_READ, [Role.DPO])
SEARCH: Final = "/dpo"
SUBJECTS: Final = "/dpo/subjects"
LOOKUP: Final = "/dpo/subjects/lookup"
REVIEW: Final = "/dpo/review"
ANOMALIES: Final = "/dpo/anomalies"
VERIFICATION: Final = "/dpo/verification"
PER_PAGE: Final = 50
REPORT_PAGE: Final = 100
VERIFY_INTERVAL: Final = dt.timedelta(minutes=1)

OUTCOME_LABELS: Final = {"success": N_("Succeeded"), "denied": N_("Refused"), "error": N_("Failed")}
REVIEW_REASONS: Final = {
    queries.STATUTORY_SHARE: N_("Shared under a statute, without consent"),
    queries.RECIPIENT_BASIS: N_("The recipient recorded its own legal basis"),
    queries.BREAK_GLASS: N_("Emergency (break-glass) access"),
}
RULE_LABELS: Final = {
    "bulk_reads": N_("Many people's data read within an hour"),
    "off_hours": N_("Data read outside working hours"),
    "no_active_basis": N_("Data read with no basis at the time"),
    "repeated_denials": N_("Repeatedly refused"),
}
ACTOR_KINDS: Final = {
    "user": N_("Staff member"),
    "client": N_("Agency system"),
    "system": N_("casebridge itself"),
    "operator": N_("Platform operator"),
}


def _words(named: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `dpo_words.html` needs beside the page's own context: the sentences, labels and names it shows."""
    return {
        "sentences": dpo_words.SENTENCES,
        "bases": dpo_words.BASIS_LABELS,
        "kinds": ACTOR_KINDS,
        "outcomes": OUTCOME_LABELS,
        **(named or {"colleagues": {}, "systems": {}, "partners": {}}),
    }


# -- search -----------------------------------------------------------------------------------------------------------


@get(
    SEARCH,
    **page(*_DPO, Action.AUDIT_EVENTS_SEARCH),
    dependencies={"search": from_query(AuditSearchForm)},
)
async def search_page(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    search: NamedDependency[AuditSearchForm],
) -> Response[Any]:
    try:
        cursor = time_cursor_param(request, "cursor")
    except BadPageLink as bad:
        return back_to_first_page(request, bad)
    criteria, errors = search.criteria(request, agency_zone(request))
    if errors:
        return _search(request, principal, form=search.shown(), errors=errors, days=[], status=400)
    async with open_context(request) as ctx:
        actor_id = await _actor_id(ctx, search.actor) if search.actor.strip() else None
        if search.actor.strip() and actor_id is None:
            _ = translator(request)
            errors["actor"] = _("No one in this organisation has this email address or id.")
            return _search(request, principal, form=search.shown(), errors=errors, days=[], status=400)
        events, next_cursor = await queries.search_events(
            ctx, criteria=queries.EventFilter(**criteria, actor_id=actor_id), cursor=cursor, limit=AUDIT_EVENTS_PER_PAGE
        )
        # The actor searched for is named too (when they are the organisation's own), even on a page without events.
        wanted = [{"id": actor_id, "tenant": ctx.principal.tenant_id}] if actor_id else []
        named = await dpo_words.named(ctx, [*wanted, *(e["actor"] for e in events)])
    zone = agency_zone(request)
    return _search(
        request,
        principal,
        form=search.shown(),
        errors={},
        days=dpo_words.by_day(dpo_words.shown(e, zone) for e in events),
        named=named,
        searched=str(actor_id) if actor_id else None,
        next_cursor=next_cursor,
        cursor=cursor,
        params={k: v for k, v in search.shown().items() if v},
    )


async def _actor_id(ctx: Context, text: str) -> uuid.UUID | None:
    """The actor the search names: by id, or a colleague by email address (None: no one)."""
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return await _staff_by_email(ctx, text)


async def _staff_by_email(ctx: Context, text: str) -> uuid.UUID | None:
    try:
        user = await admin.user_by_email(ctx.session, tenant_id=ctx.principal.tenant_id, email=text)
    except (NotFound, InvalidInput):
        return None
    return user.id


def _search(
    request: Request[Any, Any, Any],
    principal: Principal,
    *,
    status: int = 200,
    named: dict[str, Any] | None = None,
    **context: Any,
) -> Response[Any]:
    context.setdefault("next_cursor", None)
    context.setdefault("cursor", None)
    context.setdefault("params", {})
    context.setdefault("searched", None)
    return render(
        request,
        "dpo_search.html",
        status=status,
        actions=dpo_words.action_filter(),
        own=str(principal.tenant_id),
        **_words(named),
        **context,
    )


# -- subject access report --------------------------------------------------------------------------------------------


@get(SUBJECTS, **page(*_DPO, Action.AUDIT_SUBJECT_REPORT))
async def subject_page(
    request: Request[Any, Any, Any], subject_id: FromQuery[str | None] = None, cursor: FromQuery[str | None] = None
) -> Response[Any]:
    _ = translator(request)
    if not subject_id:
        return _subject_page(request, subject_id="")
    try:
        wanted = uuid.UUID(subject_id.strip())
    except ValueError:
        error = _("A person's id looks like 0195f0e2-…: copy it from the case page.")
        return _subject_page(request, status=400, subject_id=subject_id, error=error)
    try:
        async with open_context(request) as ctx:
            report = await queries.subject_report(
                ctx, subject_id=wanted, report_format=ReportFormat.JSON, cursor=cursor, limit=REPORT_PAGE
            )
            named = await _report_actors(ctx, report)
    except NotFound:
        error = _("No person with this id is in this organisation's cases.")
        return _subject_page(request, status=404, subject_id=subject_id, error=error)
    return _subject_page(
        request,
        subject_id=str(wanted),
        report=report,
        cursor=cursor,
        params={"subject_id": str(wanted)},
        own=str(ctx.principal.tenant_id),
        named=named,
    )


@post(LOOKUP, **page(*_DPO, Action.AUDIT_SUBJECT_LOOKUP), status_code=200)
async def subject_lookup(request: Request[Any, Any, Any], data: Annotated[PersonLookupForm, FORM]) -> Response[Any]:
    """The report of the person the form names; the details travel in the form's body, never in the address."""
    _ = translator(request)
    person, errors = data.lookup(request, page_rows=REPORT_PAGE)
    shown: dict[str, Any] = {"lookup": data.shown(), "subject_id": ""}
    if person is None:
        return _subject_page(request, status=400, lookup_errors=errors, **shown)
    try:
        async with open_context(request) as ctx:
            report = await queries.lookup_report(ctx, person=person)
            named = await _report_actors(ctx, report)
    except NotFound:
        error = _(
            "No one in this organisation's cases has this full name and birth date (and SNILS, if you gave one). "
            "Check the spelling and the date: only an exact match is found."
        )
        return _subject_page(request, status=404, lookup_error=error, **shown)
    except Conflict:
        error = _(
            "More than one person in this organisation's cases has this full name and birth date. Add their SNILS."
        )
        return _subject_page(request, status=409, lookup_error=error, **shown)
    except InvalidInput:
        return redirect(request, SUBJECTS, error=_("This page of the report is no longer available. Search again."))
    if person.format != "json":
        return await _report_file(request, report, ReportFormat(person.format), ctx.deps.letters.typeset)
    own = str(ctx.principal.tenant_id)
    return _subject_page(request, report=report, found=True, cursor=person.cursor, own=own, named=named, **shown)


async def _report_actors(ctx: Context, report: SubjectReport) -> dict[str, Any]:
    actors = [{"kind": r.actor_kind, "id": r.actor_id, "tenant": r.actor_tenant_id} for r in report.items]
    return await dpo_words.named(ctx, actors)


def _subject_page(
    request: Request[Any, Any, Any], *, status: int = 200, named: dict[str, Any] | None = None, **context: Any
) -> Response[Any]:
    context.setdefault("report", None)
    context.setdefault("error", None)
    context.setdefault("found", False)
    context.setdefault("lookup", {"full_name": "", "birth_date": "", "snils": ""})
    context.setdefault("lookup_errors", {})
    context.setdefault("lookup_error", None)
    context.setdefault("own", "")
    return render(request, "dpo_subject.html", status=status, **_words(named), **context)


async def _report_file(
    request: Request[Any, Any, Any], report: SubjectReport, report_format: ReportFormat, typeset: reports.Typeset
) -> Response[Any]:
    body = await reports.report_file(report, report_format, typeset, agency_zone(request))
    return Response(body, media_type=reports.MEDIA_TYPES[report_format], headers=attachment(report_format))


@get(
    [f"{SUBJECTS}/{{subject_id:uuid}}/report.pdf", f"{SUBJECTS}/{{subject_id:uuid}}/report.csv"],
    **page(*_DPO, Action.AUDIT_SUBJECT_REPORT),
)
async def subject_download(request: Request[Any, Any, Any], subject_id: FromPath[uuid.UUID]) -> Response[Any]:
    """The whole report as a file, made by the same renderers as `GET /api/v1/audit/subjects/{id}/report`."""
    report_format = ReportFormat.PDF if request.url.path.endswith(".pdf") else ReportFormat.CSV
    async with open_context(request) as ctx:
        report = await queries.subject_report(
            ctx, subject_id=subject_id, report_format=report_format, cursor=None, limit=queries.MAX_REPORT_PAGE
        )
    return await _report_file(request, report, report_format, ctx.deps.letters.typeset)


# -- review queue -----------------------------------------------------------------------------------------------------


@get(REVIEW, **page(*_DPO, Action.AUDIT_REVIEW_LIST))
async def review_page(request: Request[Any, Any, Any]) -> Response[Any]:
    try:
        cursor = time_cursor_param(request, "cursor")
    except BadPageLink as bad:
        return back_to_first_page(request, bad)
    async with open_context(request) as ctx:
        items, next_cursor = await queries.review_queue(ctx, cursor=cursor, limit=PER_PAGE)
        named = await dpo_words.named(ctx, [i.event["actor"] for i in items])
    zone = agency_zone(request)
    shown = [{"reasons": i.reasons, "event": dpo_words.shown(i.event, zone)} for i in items]
    return render(
        request,
        "dpo_review.html",
        items=shown,
        reasons=REVIEW_REASONS,
        own=str(ctx.principal.tenant_id),
        **_words(named),
        next_cursor=next_cursor,
        cursor=cursor,
        params={},
    )


@post(f"{REVIEW}/{{event_id:uuid}}", **page(*_DPO, Action.AUDIT_REVIEW_MARK))
async def mark_reviewed(
    request: Request[Any, Any, Any], event_id: FromPath[uuid.UUID], data: Annotated[ReviewForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    try:
        async with open_context(request) as ctx:
            await queries.mark_reviewed(ctx, event_id=event_id, note=data.note.strip() or None)
    except Conflict:
        return redirect(request, REVIEW, error=_("This event was already reviewed, or it needs no review."))
    return redirect(request, REVIEW, success=_("Marked as reviewed."))


# -- anomalies --------------------------------------------------------------------------------------------------------


@get(ANOMALIES, **page(*_DPO, Action.AUDIT_ANOMALIES_LIST))
async def anomalies_page(
    request: Request[Any, Any, Any], since: FromQuery[str | None] = None, until: FromQuery[str | None] = None
) -> Response[Any]:
    _ = translator(request)
    form = {"since": since or "", "until": until or ""}
    try:
        zone = agency_zone(request)
        start, end = local_day(since, zone, end=False), local_day(until, zone, end=True)
    except ValueError:
        return render(request, "dpo_anomalies.html", status=400, form=form, flags=None, error=day_error(request))
    try:
        async with open_context(request) as ctx:
            start, end, flags = await queries.find_anomalies(
                ctx, thresholds=thresholds(runtime_of(request).settings.audit), since=start, until=end
            )
            named = await dpo_words.named(ctx, [{"id": f.actor_id, "tenant": f.actor_tenant_id} for f in flags])
    except InvalidInput:
        error = _("Choose a window of at most 31 days, with the first day before the last.")
        return render(request, "dpo_anomalies.html", status=400, form=form, flags=None, error=error)
    return render(
        request,
        "dpo_anomalies.html",
        form=form,
        flags=flags,
        since=start,
        until=end,
        rules=RULE_LABELS,
        own=str(ctx.principal.tenant_id),
        **_words(named),
        error=None,
    )


# -- verification -----------------------------------------------------------------------------------------------------


@get(VERIFICATION, **page(*_DPO, Action.AUDIT_CHECKPOINT_READ))
async def verification_page(request: Request[Any, Any, Any]) -> Response[Any]:
    async with open_context(request) as ctx:
        ctx.audit.touched(resource_type="audit_checkpoint")
        checkpoint = await latest_checkpoint(ctx.session)
        run = await latest_verification(ctx.session)
    return render(
        request,
        "dpo_verification.html",
        checkpoint=checkpoint,
        run=run,
        origin=checkpoint.note.partition("\n")[0] if checkpoint else None,  # the log's name it was signed under
        root=base64.b64encode(checkpoint.root).decode() if checkpoint else None,
        run_root=base64.b64encode(run.root).decode() if run else None,
    )


@post(VERIFICATION, **page(*_DPO, Action.AUDIT_LOG_VERIFY))
async def verify_now(request: Request[Any, Any, Any]) -> Response[Any]:
    """Re-check the whole live log (chain, tree, signatures) now, as `casebridge audit verify` does."""
    _ = translator(request)
    runtime = runtime_of(request)
    now = runtime.clock.now()
    # Verification reads the whole log; one run a minute is plenty, and more would only load the database.
    async with await read_only_platform_session(runtime.sessions) as session:
        last = await latest_verification(session)
    if last is not None and now - last.at < VERIFY_INTERVAL:
        recent = _("The log was verified less than a minute ago; its result is shown below. Try again in a minute.")
        return redirect(request, VERIFICATION, error=recent)
    # Outside the request's transaction: verification reads one snapshot in a session of its own.
    result = await verify_database(runtime.sessions, now=now)
    async with open_context(request) as ctx:
        record_verification(ctx.session, result, at=now, trigger=Trigger.CONSOLE)
        ctx.audit.touched(resource_type="audit_log", ok=result.ok, size=result.size, problems=len(result.problems))
    if result.ok:
        verified = _("The log was verified and no problems were found. Events checked: %(size)s.", size=result.size)
        return redirect(request, VERIFICATION, success=verified)
    failed = _(
        "The log failed verification. Problems found: %(count)s. Tell the platform operator at once; they see the "
        "details with `casebridge audit verify`.",
        count=len(result.problems),
    )
    return redirect(request, VERIFICATION, error=failed)


DPO_ROUTES: list[HTTPRouteHandler] = [
    search_page,
    subject_page,
    subject_lookup,
    subject_download,
    review_page,
    mark_reviewed,
    anomalies_page,
    verification_page,
    verify_now,
]
