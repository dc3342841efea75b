"""Reports for an agency's own referrals: figures against hand-computed values, CSV, SVG charts and bad periods."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
import xml.etree.ElementTree as ET
import zoneinfo
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from audit.models import AuditEvent
from exchange.referrals.models import Referral
from exchange.reports.charts import SVG_NS
from exchange.transport.envelopes import EnvelopeType
from exchange.transport.models import DeadLetter
from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session
from tests.environment import TravelClock
from tests.factories import access_token, forged_envelope, make_client
from tests.integration.helpers.agencies import Agency, agency, open_case, referral_body
from tests.integration.helpers.directory import Network
from tests.polling import eventually

TOLERANCE = 0.01  # the API's real seconds between the scenario's steps, on top of the travelled time
REPORT = "/api/v1/reports/referrals"


def _period(scenario: Network) -> dict[str, str]:
    """One hour either side of the moment the scenario's five referrals were sent."""
    return {
        "from": (scenario.started - dt.timedelta(hours=1)).isoformat(),
        "until": (scenario.started + dt.timedelta(hours=1)).isoformat(),
    }


async def _get(agency: Agency, path: str, params: dict[str, str], accept: str | None = None) -> httpx.Response:
    headers = {**agency.headers, **({"Accept": accept} if accept else {})}
    return await agency.api.get(path, params=params, headers=headers)


async def _report(agency: Agency, **params: str) -> dict[str, Any]:
    response = await agency.get(REPORT, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def later(network: Network, clock: TravelClock) -> Network:
    """The scenario plus one more referral sent at S+12d, outside the reported period."""
    assert (await network.send_another(clock)).status_code == 201
    return network


async def test_sent_referrals_by_kind_partner_and_outcome(later: Network, runtime: Runtime) -> None:
    report = await _report(later.centre, box="outgoing", **_period(later))
    assert report["tenant_id"] == str(later.centre.id)
    assert report["incoming"] is None
    sent = report["outgoing"]
    assert sent["total"] == 5  # the sixth referral was sent after the period
    assert sent["by_kind"] == [
        {"key": "referral", "count": 3},
        {"key": "document_request", "count": 1},
        {"key": "petition", "count": 1},
    ]
    assert sent["by_outcome"] == [
        {"key": "open", "count": 2},
        {"key": "partially_resolved", "count": 1},
        {"key": "rejected", "count": 1},
        {"key": "resolved", "count": 1},
    ]
    assert sent["by_status"] == [
        {"key": "accepted", "count": 2},
        {"key": "completed", "count": 2},
        {"key": "rejected", "count": 1},
    ]
    opeka, kdn = str(later.opeka.id), str(later.kdn.id)
    assert sent["by_partner"] == [
        {
            "tenant_id": opeka,
            "name": "Отдел опеки",
            "count": 4,
            "by_outcome": {"resolved": 1, "partially_resolved": 1, "open": 2},
        },
        {"tenant_id": kdn, "name": "КДН и ЗП", "count": 1, "by_outcome": {"rejected": 1}},
    ]
    assert [(r["kind"], r["partner_id"], r["outcome"], r["count"]) for r in sent["breakdown"]] == [
        ("document_request", kdn, "rejected", 1),
        ("petition", opeka, "partially_resolved", 1),
        ("referral", opeka, "open", 2),
        ("referral", opeka, "resolved", 1),
    ]
    accept = sent["time_to_accept"]  # 2 h, 4 h, 8 h, 96 h
    assert (accept["unit"], accept["count"]) == ("hours", 4)
    assert accept["median"] == pytest.approx(6.0, abs=TOLERANCE)
    assert accept["p90"] == pytest.approx(69.6, abs=TOLERANCE)
    assert [(b["lower"], b["upper"], b["count"]) for b in accept["buckets"]] == [
        (0, 4, 1),
        (4, 24, 2),
        (24, 72, 0),
        (72, 168, 1),
        (168, None, 0),
    ]
    complete = sent["time_to_complete"]  # 2 d and 12 d
    assert (complete["unit"], complete["count"]) == ("days", 2)
    assert complete["median"] == pytest.approx(7.0, abs=TOLERANCE)
    assert complete["p90"] == pytest.approx(11.0, abs=TOLERANCE)
    assert [b["count"] for b in complete["buckets"]] == [1, 1, 0, 0, 0, 0]
    # In hand past complete_by: "open" and "slow"; answered after respond_by: "slow"; completed late: "housing".
    assert sent["overdue"] == {"now": 2, "answered_late": 1, "completed_late": 1}

    async with platform_session(runtime.sessions) as session:
        events = list(
            await session.scalars(
                select(AuditEvent.canonical).where(
                    AuditEvent.action == "exchange:report:read", AuditEvent.log_tenant_id == later.centre.id
                )
            )
        )
    assert len(events) == 1


async def test_received_referrals_are_the_partners_own_view(later: Network) -> None:
    received = (await _report(later.opeka, box="incoming", **_period(later)))["incoming"]
    assert received["total"] == 4
    assert [(p["tenant_id"], p["name"], p["count"]) for p in received["by_partner"]] == [
        (str(later.centre.id), "Центр «Семья»", 4)
    ]
    assert [b["count"] for b in received["time_to_accept"]["buckets"]] == [1, 2, 0, 1, 0]
    assert received["time_to_complete"]["median"] == pytest.approx(7.0, abs=TOLERANCE)
    assert received["overdue"] == {"now": 2, "answered_late": 1, "completed_late": 1}

    both = await _report(later.kdn, **_period(later))  # box defaults to both
    assert both["outgoing"]["total"] == 0
    assert both["outgoing"]["time_to_accept"]["median"] is None
    assert both["incoming"]["total"] == 1
    assert both["incoming"]["by_outcome"] == [{"key": "rejected", "count": 1}]


async def test_csv_by_accept_header_or_format_parameter(later: Network) -> None:
    params = {"box": "outgoing", **_period(later)}
    by_header = await _get(later.centre, REPORT, params, "text/csv")
    by_param = await _get(later.centre, REPORT, {**params, "format": "csv"})
    assert by_header.status_code == by_param.status_code == 200
    assert by_header.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_header.headers["content-disposition"].startswith('attachment; filename="referrals-')
    assert by_header.content == by_param.content
    # JSON wins when it is preferred, and format=json wins over the header.
    json_preferred = await _get(later.centre, REPORT, params, "application/json, text/csv;q=0.5")
    assert json_preferred.headers["content-type"].startswith("application/json")
    forced = await _get(later.centre, REPORT, {**params, "format": "json"}, "text/csv")
    assert forced.headers["content-type"].startswith("application/json")

    rows = list(csv.reader(io.StringIO(by_param.content.decode("utf-8"))))
    assert rows[0] == ["box", "measure", "kind", "partner_id", "partner_name", "outcome", "bucket", "value"]
    opeka = str(later.opeka.id)
    assert ["outgoing", "total", "", "", "", "", "", "5"] in rows
    assert ["outgoing", "referrals", "referral", opeka, "Отдел опеки", "open", "", "2"] in rows
    assert ["outgoing", "referrals", "document_request", str(later.kdn.id), "КДН и ЗП", "rejected", "", "1"] in rows
    assert ["outgoing", "hours_to_accept", "", "", "", "", "4-24", "2"] in rows
    assert ["outgoing", "hours_to_accept", "", "", "", "", "168+", "0"] in rows
    assert ["outgoing", "hours_to_accept_median", "", "", "", "", "", "6"] in rows
    assert ["outgoing", "days_to_complete_p90", "", "", "", "", "", "11"] in rows
    assert ["outgoing", "overdue_now", "", "", "", "", "", "2"] in rows
    assert ["outgoing", "overdue_completed_late", "", "", "", "", "", "1"] in rows
    assert len([r for r in rows if r[1] == "referrals"]) == 4
    assert by_param.content.endswith(b"\r\n")


async def test_chart_is_well_formed_svg_with_the_expected_bars(later: Network) -> None:
    params = {"box": "outgoing", "measure": "accept", "lang": "ru", **_period(later)}
    response = await later.centre.get(f"{REPORT}/chart.svg", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.headers["content-security-policy"] == "default-src 'none'"
    root = ET.fromstring(response.content)  # noqa: S314 - the chart casebridge itself just drew
    assert root.tag == f"{{{SVG_NS}}}svg"
    assert root.find(f"{{{SVG_NS}}}title").text == "Время до принятия: отправленные направления"  # type: ignore[union-attr]
    bars = root.findall(f"{{{SVG_NS}}}rect[@class='bar']")
    assert [(b.get("data-bucket"), b.get("data-count")) for b in bars] == [
        ("0–4 ч", "1"),
        ("4–24 ч", "2"),
        ("24–72 ч", "0"),
        ("72–168 ч", "1"),
        ("≥ 168 ч", "0"),
    ]

    complete = await later.opeka.get(
        f"{REPORT}/chart.svg", params={**_period(later), "box": "incoming", "measure": "complete"}
    )
    bars = ET.fromstring(complete.content).findall(  # noqa: S314 - the chart casebridge itself just drew
        f"{{{SVG_NS}}}rect[@class='bar']"
    )
    assert [b.get("data-count") for b in bars] == ["1", "1", "0", "0", "0", "0"]
    assert bars[0].get("data-bucket") == "0–7 d"


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"from": "2026-03-01", "until": "2026-02-01"}, "'from' (2026-03-01) must be earlier than 'until'"),
        ({"from": "2026-02-30", "until": "2026-03-01"}, "from: '2026-02-30' is not a date"),
        ({"from": "2026-01-01", "until": "next week"}, "until: 'next week' is neither a date"),
        ({"from": "2026-01-01T00:00:00", "until": "2026-01-02"}, "has no time zone offset"),
        ({"from": "2020-01-01", "until": "2026-01-01"}, "a report covers at most 366 days"),
        ({"from": "2026-01-01", "until": "2026-01-02", "tz": "Europe/Nowhere"}, "unknown time zone"),
        ({"until": "2026-01-02"}, "from"),
        ({"from": "2026-01-01", "until": "2026-01-02", "box": "sideways"}, "box"),
        ({"from": "2026-01-01", "until": "2026-01-02", "format": "xlsx"}, "format"),
        ({"from": "9999-12-01", "until": "9999-12-31"}, "from must lie between 1900-01-01 and 2200-12-31"),
        (
            {"from": "0001-01-01", "until": "0001-01-05", "tz": "Europe/Moscow"},
            "from must lie between 1900-01-01 and 2200-12-31",
        ),
    ],
    ids=[
        "reversed",
        "no-such-day",
        "not-a-date",
        "naive",
        "too-long",
        "bad-zone",
        "missing-from",
        "bad-box",
        "bad-format",
        "after-9999",
        "before-year-1",
    ],
)
async def test_bad_periods_are_precise_problems(
    api: httpx.AsyncClient, runtime: Runtime, params: dict[str, str], detail: str
) -> None:
    from tests.factories import make_tenant

    tenant = await make_tenant(runtime, "semya")
    client = await make_client(runtime, tenant, role=Role.SUPERVISOR)
    headers = {"Authorization": f"Bearer {await access_token(api, client)}"}
    for path in (REPORT, f"{REPORT}/chart.svg"):
        if path.endswith(".svg") and ("box" in params or "format" in params):
            continue
        response = await api.get(path, params=params, headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "/problems/validation"
        assert detail in response.json()["detail"]


async def test_reports_are_for_staff_who_work_with_referrals(api: httpx.AsyncClient, runtime: Runtime) -> None:
    from tests.factories import make_tenant

    tenant = await make_tenant(runtime, "semya")
    params = {"from": "2026-01-01", "until": "2026-01-31"}
    dpo = await make_client(runtime, tenant, role=Role.DPO)
    refused = await api.get(REPORT, params=params, headers={"Authorization": f"Bearer {await access_token(api, dpo)}"})
    assert refused.status_code == 403
    narrow = await make_client(runtime, tenant, scopes=["directory:read"], role=Role.SUPERVISOR)
    token = await access_token(api, narrow)
    refused = await api.get(REPORT, params=params, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    assert "referrals:read" in refused.json()["detail"]


async def test_the_report_page_shows_the_figures_and_charts(
    later: Network, api: httpx.AsyncClient, runtime: Runtime
) -> None:
    from tenants.services import tenant_by_slug
    from tests.integration.helpers.web import act_as, ok, staff

    async with platform_session(runtime.sessions) as session:
        centre = await tenant_by_slug(session, "semya")
    act_as(api, await staff(runtime, centre, Role.SUPERVISOR))
    zone = zoneinfo.ZoneInfo(centre.time_zone)  # the page's days are the agency's
    day = later.started.astimezone(zone).date().isoformat()
    api.headers["Accept-Language"] = "ru"
    page = ok(await api.get("/reports", params={"from": day, "until": day, "box": "outgoing"}))
    assert "Отправленные направления: 5" in page
    assert "Просрочено сейчас: 2" in page
    assert "<td>Отдел опеки</td><td>4</td>" in page
    charts = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(charts) == 2
    bars = [re.findall(r'data-count="(\d+)"', chart) for chart in charts]
    assert bars == [["1", "2", "0", "1", "0"], ["1", "1", "0", "0", "0", "0"]]
    assert 'id="chart-accept-title"' in charts[0]
    assert "<script" not in page

    download = await api.get("/reports/referrals.csv", params={"from": day, "until": day, "box": "outgoing"})
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert "outgoing,total,,,,,,5" in download.text

    refused = await api.get("/reports", params={"from": day, "until": "2020-01-01"})
    assert refused.status_code == 400
    assert "Последний день не может быть раньше первого" in refused.text
    assert (await api.get(REPORT, params={"from": day, "until": day})).status_code == 401  # cookies never open /api/


async def test_dates_at_the_edges_of_the_calendar_are_refused_on_the_pages(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    from tests.factories import make_tenant
    from tests.integration.helpers.web import act_as, staff

    tenant = await make_tenant(runtime, "semya")
    act_as(api, await staff(runtime, tenant, Role.SUPERVISOR))
    api.headers["Accept-Language"] = "en"
    for params, field in (
        ({"from": "2200-12-01", "until": "2201-01-01"}, "until"),
        ({"from": "0001-01-01", "until": "0001-01-05"}, "from"),
    ):
        page = await api.get("/reports", params=params)
        assert page.status_code == 400, page.text[:2000]
        assert f'id="{field}-error"' in page.text  # the field is marked, with its own message
        assert "Enter a date from 1900-01-01 to 2200-12-31, such as 2026-03-01." in page.text
        download = await api.get("/reports/referrals.csv", params=params)  # the form again, not a file
        assert download.status_code == 400, download.text[:2000]
        assert download.headers["content-type"].startswith("text/html")
        assert f'id="{field}-error"' in download.text
        assert "Enter a date from 1900-01-01 to 2200-12-31, such as 2026-03-01." in download.text

    act_as(api, await staff(runtime, tenant, Role.DPO))
    for params, field in (
        ({"until": "9999-12-31"}, "until"),
        ({"since": "0001-01-01"}, "since"),
        ({"since": "9999-12-31", "until": "9999-12-31"}, "until"),
    ):
        search = await api.get("/dpo", params=params)
        assert search.status_code == 400, search.text[:2000]
        assert f'id="{field}-error"' in search.text
        assert "Enter a date from 1900-01-01 to 2200-12-31, such as 2026-03-01." in search.text
        anomalies = await api.get("/dpo/anomalies", params=params)
        assert anomalies.status_code == 400, anomalies.text[:2000]
        assert "Enter a date from 1900-01-01 to 2200-12-31, such as 2026-03-01." in anomalies.text


async def _parked(runtime: Runtime) -> list[tuple[str, uuid.UUID | None]]:
    async with platform_session(runtime.sessions) as session:
        return [(d.reason, d.envelope_id) for d in await session.scalars(select(DeadLetter))]


async def _hand_over(
    runtime: Runtime, sender: Agency, recipient: Agency, kind: EnvelopeType, body: dict[str, Any]
) -> uuid.UUID:
    """A real signed and encrypted envelope from `sender`, handed straight to the inbox: its id."""
    envelope = await forged_envelope(runtime, sender=sender.id, recipient=recipient.id, envelope_type=kind, body=body)
    await runtime.inbox.receive(envelope.subject, envelope.token.encode())
    return envelope.envelope_id


async def test_a_partner_cannot_put_an_unknown_kind_or_outcome_into_reports(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    """`kind` and `outcome` reach reports (and their CSV) from partners' envelopes: only known values are applied."""
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)

    def requested(kind: str) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        return {
            "referral_id": str(uuid.uuid4()),
            "case_ref": "CB-2026-000001",
            "kind": kind,
            "purpose": "social_support",
            "urgency": "urgent",
            "categories": ["identity"],
            "legal_basis": {"type": "consent"},
            "requested_at": now.isoformat(),
            "respond_by": (now + dt.timedelta(days=3)).isoformat(),
            "complete_by": (now + dt.timedelta(days=30)).isoformat(),
            "problem": "Семья нуждается в помощи",
            "subject_pseudonyms": [],
        }

    forged = await _hand_over(runtime, centre, opeka, EnvelopeType.REFERRAL_REQUESTED, requested("=cmd|'/c calc'!A1"))
    assert await _parked(runtime) == [("unapplicable", forged)]
    good = requested("petition")
    await _hand_over(runtime, centre, opeka, EnvelopeType.REFERRAL_REQUESTED, good)  # the same body, a known kind
    async with platform_session(runtime.sessions) as session:
        kinds = list(await session.scalars(select(Referral.kind).where(Referral.tenant_id == opeka.id)))
    assert kinds == ["petition"]
    assert await _parked(runtime) == [("unapplicable", forged)]

    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
    assert sent.status_code == 201, sent.text
    referral_id = sent.json()["id"]

    async def status_is(agency_: Agency, status: str) -> bool:
        response = await agency_.get(f"/api/v1/referrals/{referral_id}")
        return response.status_code == 200 and response.json()["status"] == status

    await eventually(lambda: status_is(opeka, "received"))
    assert (await opeka.post(f"/api/v1/referrals/{referral_id}/transition", {"to": "accepted"})).status_code == 200
    await eventually(lambda: status_is(centre, "accepted"))

    def completed(outcome: Any) -> dict[str, Any]:
        return {
            "referral_id": referral_id,
            "status": "completed",
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "outcome": outcome,
        }

    bad_outcomes = []
    for outcome in ('=HYPERLINK("http://x")', "resolved_by_magic", ["resolved"]):
        bad_outcomes.append(await _hand_over(runtime, opeka, centre, EnvelopeType.REFERRAL_STATUS, completed(outcome)))
    parked = await _parked(runtime)
    assert sorted(parked) == sorted([("unapplicable", forged)] + [("unapplicable", e) for e in bad_outcomes])
    assert await status_is(centre, "accepted")  # nothing of the forged completions was applied
    await _hand_over(runtime, opeka, centre, EnvelopeType.REFERRAL_STATUS, completed("no_contact"))
    view = (await centre.get(f"/api/v1/referrals/{referral_id}")).json()
    assert (view["status"], view["outcome"]["result"]) == ("completed", "no_contact")
