"""The data-protection officer's view of the audit trail (docs/audit.md); each read of it is itself audited."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
import zoneinfo
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from audit import reports
from audit.access import access_event
from audit.anomalies import OffHours, Thresholds
from audit.checkpoint import merge_signatures
from audit.events import Action, Outcome
from audit.reports import ReportFormat
from audit.schemas import (
    AnomalyOut,
    AnomalyPage,
    EventPage,
    ReviewIn,
    ReviewOut,
    ReviewPage,
    SubjectLookupIn,
    SubjectReport,
)
from audit.witness import cosignatures_at
from exchange.context import Context
from exchange.reports import dpo as queries
from gateway.auth.guards import needs
from gateway.controllers.context import open_context, runtime_of
from gateway.settings import AuditSettings
from tenants.calendar import INSTANT_DESCRIPTION, YEARS_PATTERN, time_zone
from tenants.errors import NotFound
from tenants.models import Role, Scope
from tenants.services import tenant_time_zone

_DPO = [Role.DPO]
_IN_CALENDAR = {"pattern": YEARS_PATTERN}  # the accepted years (tenants/calendar.py), for OpenAPI
Since = Annotated[
    dt.datetime | None, QueryParameter(description=f"Inclusive. {INSTANT_DESCRIPTION}", schema_extra=_IN_CALENDAR)
]
Until = Annotated[
    dt.datetime | None, QueryParameter(description=f"Exclusive. {INSTANT_DESCRIPTION}", schema_extra=_IN_CALENDAR)
]
Cursor = Annotated[str | None, QueryParameter(max_length=64)]
# Larger than any log grows, and the largest integer every JSON reader holds exactly (RFC 8259 §6): a larger size
# names no checkpoint, and would not fit the 64-bit columns sizes are compared with.
MAX_TREE_SIZE = 2**53 - 1


class AuditController(Controller):
    path = "/audit"
    tags = ("audit",)

    @get(
        "/events",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_EVENTS_SEARCH),
        summary="Search the organisation's audit trail",
    )
    async def search(
        self,
        ctx: NamedDependency[Context],
        actor: Annotated[uuid.UUID | None, QueryParameter()] = None,
        subject_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
        resource_id: Annotated[str | None, QueryParameter(max_length=64)] = None,
        action: Annotated[Action | None, QueryParameter()] = None,
        outcome: Annotated[Outcome | None, QueryParameter()] = None,
        since: Since = None,
        until: Until = None,
        cursor: Cursor = None,
        limit: Annotated[int, QueryParameter(ge=1, le=queries.MAX_PAGE)] = 100,
    ) -> EventPage:
        criteria = queries.EventFilter(
            actor_id=actor,
            subject_id=subject_id,
            resource_id=resource_id,
            action=action,
            outcome=outcome,
            since=since,
            until=until,
        )
        items, next_cursor = await queries.search_events(ctx, criteria=criteria, cursor=cursor, limit=limit)
        return EventPage(items=items, next_cursor=next_cursor)

    @get(
        "/subjects/{subject_id:uuid}/report",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_SUBJECT_REPORT),
        summary="Every recorded access to one person's data, as JSON, CSV or PDF",
    )
    async def subject_report(
        self,
        request: Request[Any, Any, Any],
        subject_id: FromPath[uuid.UUID],
        report_format: Annotated[ReportFormat, QueryParameter(name="format")] = ReportFormat.JSON,
        cursor: Cursor = None,
        limit: Annotated[int, QueryParameter(ge=1, le=queries.MAX_REPORT_PAGE)] = queries.MAX_REPORT_PAGE,
    ) -> Response[SubjectReport | bytes]:
        # Opened here, not injected: a PDF or CSV is laid out after the read commits, holding no transaction.
        async with open_context(request) as ctx:
            report = await queries.subject_report(
                ctx, subject_id=subject_id, report_format=report_format, cursor=cursor, limit=limit
            )
            zone = time_zone(await tenant_time_zone(ctx.session, ctx.principal.tenant_id))
        if report_format is ReportFormat.JSON:
            return Response(report)
        body = await reports.report_file(report, report_format, ctx.deps.letters.typeset, zone)
        return Response(
            body,
            media_type=reports.MEDIA_TYPES[report_format],
            headers=_file_headers(request, report_format, limit, report.next_cursor),
        )

    @post(
        "/subjects/lookup",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_SUBJECT_LOOKUP),
        status_code=200,
        summary="Find one of the organisation's people by full name and birth date (and SNILS), and open their report",
        description=(
            "The person's details travel in the body only. Exactly one person must match: 404 when no one does, "
            "409 when people with different SNILS share the name and birth date (then add `snils`). The answer is "
            "the subject access report, as `GET /audit/subjects/{subject_id}/report` gives it, over every record of "
            "the person; `cursor` asks for the next page."
        ),
    )
    async def lookup(
        self, request: Request[Any, Any, Any], data: JSONBody[SubjectLookupIn]
    ) -> Response[SubjectReport | bytes]:
        # Opened here, not injected: a PDF or CSV is laid out after the lookup commits, holding no transaction.
        async with open_context(request) as ctx:
            report = await queries.lookup_report(ctx, person=data)
            zone = time_zone(await tenant_time_zone(ctx.session, ctx.principal.tenant_id))
        report_format = ReportFormat(data.format)
        if report_format is ReportFormat.JSON:
            return Response(report)
        body = await reports.report_file(report, report_format, ctx.deps.letters.typeset, zone)
        return Response(body, media_type=reports.MEDIA_TYPES[report_format], headers=attachment(report_format))

    @get(
        "/review",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_REVIEW_LIST),
        summary="Statutory shares and break-glass uses not yet reviewed",
    )
    async def review_queue(
        self,
        ctx: NamedDependency[Context],
        cursor: Cursor = None,
        limit: Annotated[int, QueryParameter(ge=1, le=queries.MAX_PAGE)] = 100,
    ) -> ReviewPage:
        items, next_cursor = await queries.review_queue(ctx, cursor=cursor, limit=limit)
        return ReviewPage(items=items, next_cursor=next_cursor)

    @post(
        "/review/{event_id:uuid}",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_REVIEW_MARK),
        status_code=201,
        summary="Mark one event of the review queue as reviewed",
    )
    async def mark_reviewed(
        self, ctx: NamedDependency[Context], event_id: FromPath[uuid.UUID], data: JSONBody[ReviewIn]
    ) -> ReviewOut:
        return await queries.mark_reviewed(ctx, event_id=event_id, note=data.note)

    @get(
        "/anomalies",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_ANOMALIES_LIST),
        summary="Bulk reads, off-hours reads, reads with no active basis, repeated denials",
    )
    async def anomalies(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[Context], since: Since = None, until: Until = None
    ) -> AnomalyPage:
        since, until, flags = await queries.find_anomalies(
            ctx, thresholds=thresholds(runtime_of(request).settings.audit), since=since, until=until
        )
        items = [
            AnomalyOut(
                rule=f.rule.value,
                actor_id=f.actor_id,
                actor_tenant_id=f.actor_tenant_id,
                window_start=f.window_start,
                window_end=f.window_end,
                count=f.count,
                event_ids=list(f.event_ids),
            )
            for f in flags
        ]
        return AnomalyPage(since=since, until=until, items=items)


def thresholds(settings: AuditSettings) -> Thresholds:
    return Thresholds(
        bulk_subjects_per_hour=settings.bulk_subjects_per_hour,
        denials_per_hour=settings.denials_per_hour,
        off_hours=OffHours(*settings.off_hours),
        timezone=zoneinfo.ZoneInfo(settings.timezone),
    )


def _file_headers(
    request: Request[Any, Any, Any], report_format: ReportFormat, limit: int, next_cursor: str | None
) -> dict[str, str]:
    headers = attachment(report_format)
    if next_cursor:
        query = f"format={report_format.value}&limit={limit}&cursor={next_cursor}"
        headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'  # RFC 8288: the next page of the report
    return headers


def attachment(report_format: ReportFormat) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="subject-access-report.{report_format.value}"'}


class TrailController(Controller):
    """Signed checkpoints and inclusion proofs: what lets a DPO show that an event is in the log everyone sees."""

    path = "/audit"
    tags = ("audit",)

    @get(
        "/checkpoints/latest",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_CHECKPOINT_READ),
        summary="The newest signed checkpoint of the audit log",
    )
    async def latest_checkpoint(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        # The trail's routes open their context themselves: the sealer reads in a session of its own, after the
        # request's transaction has ended (SQLite has one connection).
        async with open_context(request):
            pass  # the read is recorded first
        runtime = runtime_of(request)
        checkpoint = await runtime.sealer.latest_checkpoint()
        if checkpoint is None:
            raise NotFound("No checkpoint has been signed yet; try again in a few seconds.")
        cosigned = await cosignatures_at(runtime.sessions, checkpoint.size)
        return {
            "origin": checkpoint.origin,
            "size": checkpoint.size,
            "root": _b64(checkpoint.root),
            "note": checkpoint.note,
            "cosignatures": [
                {"tenant_id": str(c.cosigner_tenant_id), "key_name": c.key_name, "signed_at": c.created_at.isoformat()}
                for c in cosigned
            ],
            "cosigned_note": merge_signatures(checkpoint.note, [c.note for c in cosigned]),
        }

    @get(
        "/events/{event_id:uuid}/proof",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_PROOF_READ),
        summary="Inclusion proof of one event against a signed checkpoint",
    )
    async def proof(
        self,
        request: Request[Any, Any, Any],
        event_id: FromPath[uuid.UUID],
        size: Annotated[int | None, QueryParameter(ge=1, le=MAX_TREE_SIZE)] = None,
    ) -> dict[str, Any]:
        async with open_context(request) as ctx:
            ctx.audit.touched(resource_type="audit_event", resource_id=event_id)
            await access_event(ctx.session, ctx.principal, event_id, for_write=False)
        # Outside the request's transaction: the sealer reads in a session of its own (SQLite has one connection).
        proof = await runtime_of(request).sealer.inclusion(event_id, size)
        return {
            "event_id": str(proof.event_id),
            "seq": proof.seq,
            "leaf_index": proof.leaf_index,
            "leaf_hash": _b64(proof.leaf_hash),
            "size": proof.size,
            "root": _b64(proof.root),
            "proof": [_b64(h) for h in proof.proof],
            "note": proof.note,
        }

    @get(
        "/checkpoints/consistency",
        opt=needs(Scope.AUDIT_READ, _DPO, Action.AUDIT_PROOF_READ),
        summary="Consistency proof between two signed checkpoints (RFC 6962 section 2.1.2)",
    )
    async def consistency(
        self,
        request: Request[Any, Any, Any],
        old: Annotated[int, QueryParameter(ge=1, le=MAX_TREE_SIZE, description="size of the older checkpoint")],
        new: Annotated[int, QueryParameter(ge=1, le=MAX_TREE_SIZE, description="size of the newer checkpoint")],
    ) -> dict[str, Any]:
        async with open_context(request) as ctx:
            ctx.audit.touched(resource_type="audit_checkpoint", resource_id=f"{old}..{new}")
        proof = await runtime_of(request).sealer.consistency(old, new)
        return {
            "old_size": proof.old_size,
            "new_size": proof.new_size,
            "old_root": _b64(proof.old_root),
            "new_root": _b64(proof.new_root),
            "proof": [_b64(h) for h in proof.proof],
            "old_note": proof.old_note,
            "new_note": proof.new_note,
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
