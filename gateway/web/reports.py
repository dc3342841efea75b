"""The referral report page: an agency's referrals sent or received in a period, with charts drawn on the server.

It calls the same service as `GET /api/v1/reports/referrals` and records the same audit action. The charts are
inline SVG (no script, nothing loaded), and the CSV download is a page route because cookies never open `/api/`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from litestar import Request, Response, get
from litestar.params import QueryParameter
from markupsafe import Markup

from audit.events import Action
from exchange.reports import charts
from exchange.reports import services as reporting
from exchange.reports.schemas import ReferralReport
from gateway.controllers.context import open_context, runtime_of
from gateway.web.i18n import N_, agency_zone, language_of
from gateway.web.pages import day_error, page, render, translator
from tenants.calendar import OutOfCalendar, today_in
from tenants.errors import InvalidInput
from tenants.models import Role, Scope

REPORTS: Final = "/reports"
REPORT_CSV: Final = "/reports/referrals.csv"
_READERS: Final = (Scope.REFERRALS_READ, [Role.SPECIALIST, Role.INTAKE, Role.SUPERVISOR, Role.TENANT_ADMIN])
BOX_LABELS: Final = {"outgoing": N_("Referrals sent"), "incoming": N_("Referrals received")}
OPEN_LABEL: Final = N_("Still open")
CHART_TITLES: Final = {"accept": N_("Time to accept"), "complete": N_("Time to complete")}
# `from` is a Python keyword: the query parameter reaches the handlers as `period_from`.
From = Annotated[str | None, QueryParameter(name="from", max_length=40)]
Until = Annotated[str | None, QueryParameter(max_length=40)]
BoxField = Annotated[str | None, QueryParameter(max_length=16)]


def _default_period(request: Request[Any, Any, Any]) -> tuple[str, str]:
    """From the first day of this month to today, in the organisation's time zone."""
    today = today_in(agency_zone(request), runtime_of(request).exchange.clock.now())
    return today.replace(day=1).isoformat(), today.isoformat()


def _form(
    request: Request[Any, Any, Any], period_from: str | None, until: str | None, box: str | None
) -> dict[str, str]:
    default_from, default_until = _default_period(request)
    return {
        "from": period_from or default_from,
        "until": until or default_until,
        "box": "incoming" if box == "incoming" else "outgoing",
    }


def _period(request: Request[Any, Any, Any], form: dict[str, str]) -> reporting.Period | dict[str, str]:
    """The form's period, or the errors to show next to its fields."""
    _ = translator(request)
    errors: dict[str, str] = {}
    for name in ("from", "until"):
        try:
            dt.date.fromisoformat(form[name])
        except ValueError:
            errors[name] = day_error(request)
    if errors:
        return errors
    try:
        return reporting.parse_period(form["from"], form["until"], agency_zone(request).key)
    except OutOfCalendar as exc:
        return {exc.field: day_error(request)}
    except InvalidInput:
        return {"until": _("The last day must not be before the first, and a report covers at most a year.")}


@dataclass(frozen=True, slots=True)
class _Asked:
    """What a report page or its CSV link asks for: the form as shown, its period and which box."""

    form: dict[str, str]
    period: reporting.Period
    box: Literal["outgoing", "incoming"]


def _asked(
    request: Request[Any, Any, Any], period_from: str | None, until: str | None, box: str | None
) -> _Asked | Response[Any]:
    """The report asked for, or the form shown again with its fields marked (400)."""
    form = _form(request, period_from, until, box)
    period = _period(request, form)
    if isinstance(period, dict):
        return _render(request, form=form, errors=period, status=400)
    return _Asked(form, period, "incoming" if form["box"] == "incoming" else "outgoing")


@get(REPORTS, **page(*_READERS, Action.EXCHANGE_REPORT_READ))
async def report_page(
    request: Request[Any, Any, Any], period_from: From = None, until: Until = None, box: BoxField = None
) -> Response[Any]:
    _ = translator(request)
    asked = _asked(request, period_from, until, box)
    if isinstance(asked, Response):
        return asked
    form, chosen = asked.form, asked.box
    report = await _report(request, asked.period, chosen)
    section = getattr(report, chosen)
    language: charts.Language = "ru" if language_of(request) == "ru" else "en"
    figures = {
        measure: Markup(  # noqa: S704 - ElementTree escaped every text and attribute of the chart
            charts.distribution_svg_inline(
                section.time_to_accept if measure == "accept" else section.time_to_complete,
                title=_(title),
                language=language,
                element_id=f"chart-{measure}",
            )
        )
        for measure, title in CHART_TITLES.items()
    }
    return _render(request, form=form, errors={}, section=section, charts=figures, report=report)


@get(REPORT_CSV, **page(*_READERS, Action.EXCHANGE_REPORT_READ))
async def report_csv(
    request: Request[Any, Any, Any], period_from: From = None, until: Until = None, box: BoxField = None
) -> Response[Any]:
    # A download link with a bad period gets the report's form with the field marked, rather than a file.
    asked = _asked(request, period_from, until, box)
    if isinstance(asked, Response):
        return asked
    report = await _report(request, asked.period, asked.box)
    name = f"referrals-{asked.box}-{asked.period.start:%Y%m%d}.csv"
    return Response(
        reporting.report_csv(report),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _report(
    request: Request[Any, Any, Any], period: reporting.Period, box: Literal["outgoing", "incoming"]
) -> ReferralReport:
    async with open_context(request) as ctx:
        return await reporting.referral_report(ctx, period=period, boxes=(box,))


def _render(request: Request[Any, Any, Any], *, status: int = 200, **context: Any) -> Response[Any]:
    context.setdefault("section", None)
    context.setdefault("charts", {})
    return render(
        request, "reports.html", status=status, boxes=BOX_LABELS, open_label=OPEN_LABEL, csv_path=REPORT_CSV, **context
    )


REPORT_ROUTES: Final = [report_page, report_csv]
