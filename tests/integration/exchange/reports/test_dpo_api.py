"""The DPO's audit API: search, subject access reports (JSON, CSV, PDF), review queue and anomaly flags.

Each runs on SQLite and PostgreSQL through the real gateway, bus and audit capture; reading the trail is itself
recorded in it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import uuid
from typing import Any

from sqlalchemy import select

from audit.models import AuditEvent
from audit.reports import COLUMNS
from gateway.runtime import Runtime
from tenants.models import Role, Scope
from tenants.persistence import platform_session
from tests.integration.helpers.agencies import (
    PERSONAL_DATA,
    Agency,
    colleague,
    open_case,
    referral_body,
)
from tests.pdf import fonts, pdf_text, pdfa_conformance
from tests.polling import eventually

EVENTS = "/api/v1/audit/events"
STATUTORY = {
    "type": "statutory",
    "reference": "SK RF art. 122",
    "justification": "Ребёнок остался без попечения родителей, орган опеки должен знать",
}


async def dpo_of(agency: Agency, runtime: Runtime) -> Agency:
    """A data-protection officer's system at the same agency: role dpo, scope audit:read only."""
    return await colleague(agency, runtime, Role.DPO, [Scope.AUDIT_READ])


async def search(dpo: Agency, **params: Any) -> list[dict[str, Any]]:
    response = await dpo.get(EVENTS, params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return list(page["items"])


async def shared_and_read(centre: Agency, opeka: Agency) -> tuple[dict[str, Any], str]:
    """A case, a consented referral to the guardianship body, its intake's read, and that read's receipt."""
    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity", "family"]))
    assert sent.status_code == 201, sent.text
    referral_id = sent.json()["id"]
    await eventually(lambda: _status_ok(opeka, f"/api/v1/referrals/{referral_id}"))
    return case, referral_id


async def partner_read_recorded(dpo: Agency, partner: Agency, referral_id: str) -> bool:
    items = await search(dpo, action="exchange:referral:read", resource_id=referral_id)
    return any(e["actor"]["tenant"] == str(partner.id) for e in items)


async def test_search_by_each_filter(agencies: tuple[Agency, Agency, Agency], runtime: Runtime) -> None:
    centre, opeka, _ = agencies
    dpo = await dpo_of(centre, runtime)
    case, referral_id = await shared_and_read(centre, opeka)
    child = case["subjects"][0]["id"]
    refused = await centre.get(f"/api/v1/cases/{uuid.uuid4()}")
    assert refused.status_code == 404
    await eventually(lambda: partner_read_recorded(dpo, opeka, referral_id))

    everything = await search(dpo)
    assert {e["log_tenant"] for e in everything} == {str(centre.id)}
    assert [(e["time"], e["id"]) for e in everything] == sorted(
        ((e["time"], e["id"]) for e in everything), reverse=True
    )
    actions = {e["action"] for e in everything}
    assert {"exchange:case:create", "exchange:consent:create", "exchange:referral:send"} <= actions

    by_actor = await search(dpo, actor=centre.client.client_id)
    assert by_actor
    assert {e["actor"]["id"] for e in by_actor} == {centre.client.client_id}
    partner = await search(dpo, actor=opeka.client.client_id)
    assert [(e["action"], e["actor"]["tenant"], e["actor"]["role"]) for e in partner] == [
        ("exchange:referral:read", str(opeka.id), "intake")
    ]

    by_subject = await search(dpo, subject_id=child)
    (pseudonym,) = {s for e in by_subject for s in e["subjects"] if e["action"] == "exchange:referral:send"}
    assert all(pseudonym in e["subjects"] for e in by_subject)
    assert {"exchange:case:create", "exchange:referral:send", "exchange:referral:read"} <= {
        e["action"] for e in by_subject
    }
    assert await search(dpo, subject_id=str(uuid.uuid4())) == []

    by_resource = await search(dpo, resource_id=referral_id)
    assert {e["resource"]["id"] for e in by_resource} == {referral_id}
    assert {"exchange:referral:send", "exchange:referral:read"} <= {e["action"] for e in by_resource}

    (send,) = await search(dpo, action="exchange:referral:send")
    assert send["resource"]["id"] == referral_id
    denied = await search(dpo, outcome="denied")
    assert [(e["action"], e["reason"]) for e in denied] == [("exchange:case:read", "NotFound")]

    first, last = everything[-1]["time"], everything[0]["time"]
    window = await search(dpo, since=first, until="2199-01-01T00:00:00Z")
    assert len(window) >= len(everything)
    assert await search(dpo, until=first) == []
    assert await search(dpo, since="2199-01-01T00:00:00+03:00") == []

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await dpo.get(EVENTS, params={**params, "until": last.replace("Z", "+00:00")})).json()
        pages.extend(page["items"])
        if not (cursor := page["next_cursor"]):
            break
    assert [e["id"] for e in pages] == [e["id"] for e in everything if e["time"] < last]

    for bad in (
        {"action": "exchange:case:steal"},
        {"outcome": "maybe"},
        {"since": "yesterday"},
        {"until": "2026-13-01T00:00:00Z"},
        {"since": "2026-11-01T00:00:00"},
        {"limit": 501},
        {"limit": 0},
        {"cursor": "not-a-cursor"},
        {"actor": "someone"},
        {"since": last, "until": first},
        {"since": "0001-01-01T00:00:00Z"},
        {"until": "9999-12-31T23:59:59Z"},
    ):
        response = await dpo.get(EVENTS, params=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "/problems/validation", bad


async def test_subject_report_as_json_csv_and_pdf(agencies: tuple[Agency, Agency, Agency], runtime: Runtime) -> None:
    centre, opeka, kdn = agencies
    dpo = await dpo_of(centre, runtime)
    case, referral_id = await shared_and_read(centre, opeka)
    child = case["subjects"][0]["id"]
    await eventually(lambda: partner_read_recorded(dpo, opeka, referral_id))
    path = f"/api/v1/audit/subjects/{child}/report"

    response = await dpo.get(path)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["subject_id"] == child
    assert report["pseudonym"].startswith("ps_")
    assert report["next_cursor"] is None
    rows = report["items"]
    own = [r for r in rows if r["actor_tenant_id"] == str(centre.id)]
    assert {"exchange:case:create", "exchange:referral:send"} <= {r["action"] for r in own}
    send = next(r for r in own if r["action"] == "exchange:referral:send")
    assert send == {
        **send,
        "actor_kind": "client",
        "actor_id": centre.client.client_id,
        "role": "specialist",
        "outcome": "success",
        "purpose": "social_support",
        "legal_basis": "consent",
        "resource_type": "referral",
        "resource_id": referral_id,
        "actor_tenant_name": "Agency semya",
    }
    (partner,) = [r for r in rows if r["actor_tenant_id"] == str(opeka.id)]
    assert (partner["action"], partner["role"], partner["actor_tenant_name"]) == (
        "exchange:referral:read",
        "intake",
        "Agency opeka",
    )
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)

    # Pages follow one another by cursor; the first report's own event is now the newest row.
    paged = (await dpo.get(path, params={"limit": 2})).json()
    rest = (await dpo.get(path, params={"limit": 2, "cursor": paged["next_cursor"]})).json()
    assert paged["items"][0]["action"] == "audit:subject:report"
    assert [r["event_id"] for r in paged["items"][1:] + rest["items"]] == [r["event_id"] for r in rows[:3]]
    assert (await dpo.get(path, params={"limit": 10_001})).status_code == 400

    as_csv = await dpo.get(path, params={"format": "csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"  # the charset once
    assert "attachment" in as_csv.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert tuple(table[0]) == COLUMNS
    actions = [line[COLUMNS.index("action")] for line in table[1:]]
    assert "exchange:referral:send" in actions
    # The earlier report reads are accesses to this person's data as well, and are listed too.
    assert actions.count("audit:subject:report") >= 3
    first_row = await dpo.get(path, params={"format": "csv", "limit": 1})
    link = first_row.headers["link"]
    assert link.endswith('>; rel="next"')
    second_row = await dpo.api.get(link[1 : link.index(">")], headers=dpo.headers)
    assert second_row.status_code == 200
    assert list(csv.reader(io.StringIO(second_row.text)))[1] == table[1]  # the newest before the CSV's own read

    for personal in PERSONAL_DATA:
        assert personal not in response.text
        assert personal not in as_csv.text

    # The role and the tenant are checked before anything else: another role, another agency see nothing.
    assert (await centre.get(path)).status_code == 403
    assert (await centre.get(EVENTS)).status_code == 403
    other = await dpo_of(kdn, runtime)
    foreign, missing = await other.get(path), await other.get(f"/api/v1/audit/subjects/{uuid.uuid4()}/report")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]
    seen_by_other = await search(other)
    assert all(e["log_tenant"] == str(kdn.id) for e in seen_by_other)
    assert not {referral_id, case["id"]} & {e["resource"]["id"] for e in seen_by_other}
    assert await search(other, subject_id=child) == []
    refused = await search(other, action="audit:subject:report", outcome="denied")
    assert [e["subjects"] for e in refused] == [[], []]

    as_pdf = await dpo.get(path, params={"format": "pdf"})
    assert as_pdf.status_code == 200, as_pdf.text
    assert as_pdf.headers["content-type"] == "application/pdf"
    assert as_pdf.content.startswith(b"%PDF")
    # An archival PDF whose fonts travel inside it: it reads the same, Cyrillic included, on any machine.
    assert pdfa_conformance(as_pdf.content) == ("2", "B")
    assert all(fonts(as_pdf.content).values())
    text = pdf_text(as_pdf.content)
    assert "exchange:referral:send" in text
    assert "Отчёт о доступе" in text
    assert "Agency opeka" in text
    assert child in text
    # Times on the agency's clock (the test agencies keep the default zone), the CSV's in UTC.
    assert "Время, Europe/Moscow" in " ".join(text.split())
    for personal in PERSONAL_DATA:
        assert personal not in text


async def test_review_queue_lists_statutory_shares_until_marked(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, kdn = agencies
    dpo = await dpo_of(centre, runtime)
    case, _ = await open_case(centre, opeka)
    consented = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
    statutory = await centre.post(
        "/api/v1/referrals", referral_body(case, opeka.id, ["identity", "family"], legal_basis=STATUTORY)
    )
    assert consented.status_code == statutory.status_code == 201, statutory.text

    queue = await dpo.get("/api/v1/audit/review")
    assert queue.status_code == 200, queue.text
    (item,) = queue.json()["items"]
    assert item["reasons"] == ["statutory_share"]
    event = item["event"]
    assert (event["action"], event["legal_basis"], event["resource"]["id"]) == (
        "exchange:referral:send",
        "statutory",
        statutory.json()["id"],
    )

    # The recipient's DPO reviews the same share in its own queue, as a statutory receipt.
    opeka_dpo = await dpo_of(opeka, runtime)

    async def received_in_queue() -> list[dict[str, Any]]:
        items = (await opeka_dpo.get("/api/v1/audit/review")).json()["items"]
        return [i for i in items if i["event"]["action"] == "exchange:referral:receive"]

    (receipt,) = await eventually(received_in_queue)
    assert receipt["reasons"] == ["statutory_share"]

    other = await dpo_of(kdn, runtime)
    assert (await other.get("/api/v1/audit/review")).json()["items"] == []
    assert (await other.post(f"/api/v1/audit/review/{event['id']}", {"note": "чужое"})).status_code == 404
    assert (await centre.post(f"/api/v1/audit/review/{event['id']}", {})).status_code == 403

    marked = await dpo.post(f"/api/v1/audit/review/{event['id']}", {"note": "Основание проверено"})
    assert marked.status_code == 201, marked.text
    assert marked.json() == {
        **marked.json(),
        "event_id": event["id"],
        "reviewer_kind": "client",
        "reviewer_id": dpo.client.client_id,
        "note": "Основание проверено",
    }
    assert (await dpo.get("/api/v1/audit/review")).json()["items"] == []
    again = await dpo.post(f"/api/v1/audit/review/{event['id']}", {"note": "ещё раз"})
    assert again.status_code == 409
    (create,) = await search(dpo, action="exchange:case:create")
    assert (await dpo.post(f"/api/v1/audit/review/{create['id']}", {})).status_code == 409
    assert (await dpo.post(f"/api/v1/audit/review/{event['id']}", {"verdict": "ok"})).status_code == 400

    marks = await search(dpo, action="audit:review:mark")
    assert [(m["outcome"], m["resource"]["id"]) for m in marks].count(("success", event["id"])) == 1
    assert all(
        m["actor"] == {"kind": "client", "id": dpo.client.client_id, "tenant": str(centre.id), "role": "dpo"}
        for m in marks
    )
    # The reviewer's note is kept with the mark, not written into the trail.
    assert "Основание проверено" not in json.dumps(marks, ensure_ascii=False)


async def test_anomaly_flags(agencies: tuple[Agency, Agency, Agency], runtime: Runtime) -> None:
    centre, opeka, _ = agencies
    dpo = await dpo_of(centre, runtime)
    case, referral_id = await shared_and_read(centre, opeka)
    await eventually(lambda: partner_read_recorded(dpo, opeka, referral_id))
    # Whatever the hour now, it is "off hours" for this test; one subject an hour is already a bulk read.
    hour = dt.datetime.now(dt.UTC).hour
    settings = runtime.settings
    runtime.settings = dataclasses.replace(
        settings,
        audit=dataclasses.replace(
            settings.audit, bulk_subjects_per_hour=1, off_hours=(hour, (hour + 2) % 24), timezone="UTC"
        ),
    )
    other_system = await colleague(centre, runtime)
    try:
        # The case's creator holds it on the centre's own basis; another of the centre's systems needs the family's
        # consent, and the case names the parent too, who gave none.
        assert (await centre.get(f"/api/v1/cases/{case['id']}")).status_code == 200
        assert (await other_system.get(f"/api/v1/cases/{case['id']}")).status_code == 200
        for _ in range(11):
            assert (await centre.get(f"/api/v1/cases/{uuid.uuid4()}")).status_code == 404
        response = await dpo.get("/api/v1/audit/anomalies")
    finally:
        runtime.settings = settings
    assert response.status_code == 200, response.text
    assert "ps_" not in response.text
    flags = response.json()["items"]
    mine = {f["rule"]: f for f in flags if f["actor_id"] == centre.client.client_id}
    assert set(mine) == {"bulk_reads", "off_hours", "repeated_denials"}
    assert mine["repeated_denials"]["count"] == 11
    assert len(mine["repeated_denials"]["event_ids"]) == 11
    (colleague_read,) = await search(dpo, action="exchange:case:read", actor=other_system.client.client_id)
    (unfounded,) = [f for f in flags if f["rule"] == "no_active_basis"]
    assert (unfounded["actor_id"], unfounded["event_ids"]) == (other_system.client.client_id, [colleague_read["id"]])
    flag = mine["bulk_reads"]
    assert flag["window_start"] <= flag["window_end"]
    assert flag["actor_tenant_id"] == str(centre.id)
    # The partner read only the consented child: not a read without a basis.
    partner = [f for f in flags if f["actor_id"] == opeka.client.client_id]
    assert "no_active_basis" not in {f["rule"] for f in partner}

    # At the recipient, its own reads of an open referral are covered by that referral.
    opeka_dpo = await dpo_of(opeka, runtime)
    at_opeka = (await opeka_dpo.get("/api/v1/audit/anomalies")).json()["items"]
    assert "no_active_basis" not in {f["rule"] for f in at_opeka}

    for bad in (
        {"since": "2026-11-01T00:00:00Z", "until": "2026-12-15T00:00:00Z"},
        {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
        {"since": "soon"},
        {"until": "0001-01-01T00:00:00Z"},
        {"since": "9999-12-31T00:00:00Z"},
    ):
        assert (await dpo.get("/api/v1/audit/anomalies", params=bad)).status_code == 400, bad


async def test_reading_the_trail_is_recorded(agencies: tuple[Agency, Agency, Agency], runtime: Runtime) -> None:
    centre, opeka, _ = agencies
    dpo = await dpo_of(centre, runtime)
    case, _ = await open_case(centre, opeka)
    child = case["subjects"][0]["id"]
    await dpo.get(EVENTS, params={"subject_id": child, "action": "exchange:case:create"})
    await dpo.get(f"/api/v1/audit/subjects/{child}/report", params={"format": "csv"})
    await dpo.get("/api/v1/audit/review")
    await dpo.get("/api/v1/audit/anomalies")

    async with platform_session(runtime.sessions) as session:
        rows = await session.scalars(
            select(AuditEvent.canonical).where(AuditEvent.log_tenant_id == centre.id, AuditEvent.action.like("audit:%"))
        )
        events = [json.loads(r) for r in rows]
    assert sorted(e["action"] for e in events) == [
        "audit:anomalies:list",
        "audit:events:search",
        "audit:review:list",
        "audit:subject:report",
    ]
    for event in events:
        assert event["outcome"] == "success"
        assert event["actor"] == {"kind": "client", "id": dpo.client.client_id, "tenant": str(centre.id), "role": "dpo"}
        assert event["request_id"]
    by_action = {e["action"]: e for e in events}
    search_event, report_event = by_action["audit:events:search"], by_action["audit:subject:report"]
    (pseudonym,) = report_event["subjects"]
    assert search_event["subjects"] == [pseudonym]
    assert search_event["extra"]["filters"] == {"action": "exchange:case:create"}
    assert report_event["extra"]["format"] == "csv"
    assert child not in json.dumps(events)


async def _status_ok(agency: Agency, path: str) -> bool:
    return (await agency.get(path)).status_code == 200
