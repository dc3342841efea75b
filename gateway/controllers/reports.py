"""Reports for an agency on its own referrals over a period: JSON, CSV, and SVG charts of the distributions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter

from audit.events import Action
from exchange.reports import charts
from exchange.reports import services as reporting
from exchange.reports.schemas import ReferralReport
from exchange.reports.services import BOXES
from gateway.auth.guards import needs
from gateway.controllers.context import open_context
from tenants.calendar import DAY_RANGE, YEARS_PATTERN
from tenants.models import Role, Scope

# Everyone who works with referrals, and the agency's administrator; not the DPO, whose work is the audit trail.
_READERS = [Role.SPECIALIST, Role.INTAKE, Role.SUPERVISOR, Role.TENANT_ADMIN]
CSV_MEDIA_TYPE = "text/csv"  # Litestar adds "; charset=utf-8" to text types
SVG_MEDIA_TYPE = "image/svg+xml"

# Optional here so that a missing one gets a problem naming it (parse_period), not a generic validation error.
From = Annotated[
    str | None,
    QueryParameter(
        name="from",
        min_length=1,
        max_length=40,
        schema_extra={"pattern": YEARS_PATTERN},
        description=f"first day (YYYY-MM-DD, included) or instant (RFC 3339, included), within {DAY_RANGE}",
    ),
]
Until = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=40,
        schema_extra={"pattern": YEARS_PATTERN},
        description=f"last day (YYYY-MM-DD, included) or instant (RFC 3339, excluded), within {DAY_RANGE}",
    ),
]
TimeZone = Annotated[str, QueryParameter(max_length=64, description="IANA time zone the dates are days of")]
BoxParam = Annotated[Literal["outgoing", "incoming", "both"], QueryParameter(description="which referrals")]

_TITLES = {
    ("accept", "en"): "Time to accept",
    ("accept", "ru"): "Время до принятия",
    ("complete", "en"): "Time to complete",
    ("complete", "ru"): "Время до выполнения",
}
_BOX_TITLES = {
    ("outgoing", "en"): "referrals sent",
    ("outgoing", "ru"): "отправленные направления",
    ("incoming", "en"): "referrals received",
    ("incoming", "ru"): "полученные направления",
}


class ReportController(Controller):
    path = "/reports"
    tags = ("reports",)

    @get(
        "/referrals",
        opt=needs(Scope.REFERRALS_READ, _READERS, Action.EXCHANGE_REPORT_READ),
        summary="Referrals sent and received in a period, as JSON or CSV",
    )
    async def referrals(
        self,
        request: Request[Any, Any, Any],
        period_from: From = None,
        until: Until = None,
        tz: TimeZone = "UTC",
        box: BoxParam = "both",
        report_format: Annotated[Literal["json", "csv"] | None, QueryParameter(name="format")] = None,
    ) -> Response[ReferralReport | bytes]:
        period = reporting.parse_period(period_from, until, tz)
        as_csv = report_format == "csv" or (report_format is None and _accepts_csv(request))
        report = await _report(request, period, BOXES if box == "both" else (box,))
        if not as_csv:
            return Response(report)
        name = f"referrals-{period.start:%Y%m%d}-{period.end:%Y%m%d}.csv"
        return Response(
            reporting.report_csv(report),
            media_type=CSV_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @get(
        "/referrals/chart.svg",
        opt=needs(Scope.REFERRALS_READ, _READERS, Action.EXCHANGE_REPORT_READ),
        summary="A bar chart (SVG) of how long partners took to accept or to complete, for one box",
    )
    async def chart(
        self,
        request: Request[Any, Any, Any],
        period_from: From = None,
        until: Until = None,
        tz: TimeZone = "UTC",
        box: Annotated[Literal["outgoing", "incoming"], QueryParameter()] = "outgoing",
        measure: Annotated[Literal["accept", "complete"], QueryParameter()] = "accept",
        lang: Annotated[Literal["en", "ru"], QueryParameter()] = "en",
    ) -> Response[bytes]:
        period = reporting.parse_period(period_from, until, tz)
        report = await _report(request, period, (box,))
        section = report.outgoing if box == "outgoing" else report.incoming
        assert section is not None  # asked for exactly this box
        distribution = section.time_to_accept if measure == "accept" else section.time_to_complete
        title = f"{_TITLES[(measure, lang)]}: {_BOX_TITLES[(box, lang)]}"
        svg = charts.distribution_svg(distribution, title=title, language=lang)
        # The image runs nothing: a browser opening it directly must not run scripts or fetch anything either.
        return Response(svg, media_type=SVG_MEDIA_TYPE, headers={"Content-Security-Policy": "default-src 'none'"})


async def _report(request: Request[Any, Any, Any], period: reporting.Period, boxes: tuple[Any, ...]) -> ReferralReport:
    # Opened here, not injected: a period refused before any data is read (parse_period) records nothing.
    async with open_context(request) as ctx:
        return await reporting.referral_report(ctx, period=period, boxes=boxes)


def _accepts_csv(request: Request[Any, Any, Any]) -> bool:
    """`Accept: text/csv` asks for CSV unless JSON is preferred at least as much (RFC 9110 §12.5.1)."""
    accept = request.accept
    return "text/csv" in accept and accept.best_match(["application/json", "text/csv"]) == "text/csv"
