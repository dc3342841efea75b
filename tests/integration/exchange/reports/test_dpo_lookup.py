"""A DPO finds a person by full name and birth date (and SNILS) through the API and gets their subject access report:
exact matches only, never a list, the organisation's own people only, and each lookup recorded without the details.

On SQLite and PostgreSQL, through the real gateway, bus and audit capture.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from audit.models import AuditEvent
from gateway.runtime import Runtime
from tenants.persistence import platform_session
from tests.integration.helpers.agencies import (
    CHILD_BIRTH,
    CHILD_NAME,
    CHILD_SNILS,
    PERSONAL_DATA,
    Agency,
    dpo_of,
    open_case,
    referral_body,
)
from tests.pdf import pdf_text
from tests.polling import eventually

LOOKUP = "/api/v1/audit/subjects/lookup"
NO_ONE = "No person with this full name and birth date"


def person(full_name: str = CHILD_NAME, birth_date: str = CHILD_BIRTH, **more: Any) -> dict[str, Any]:
    return {"full_name": full_name, "birth_date": birth_date, **more}


async def lookup_events(runtime: Runtime, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """The lookups recorded in the tenant's trail, oldest first, as their canonical JSON."""
    async with platform_session(runtime.sessions) as session:
        rows = await session.scalars(
            select(AuditEvent.canonical)
            .where(AuditEvent.log_tenant_id == tenant_id, AuditEvent.action == "audit:subject:lookup")
            .order_by(AuditEvent.recorded_at, AuditEvent.id)
        )
        return [json.loads(r) for r in rows]


async def new_case(centre: Agency, *subjects: dict[str, Any]) -> list[str]:
    created = await centre.post("/api/v1/cases", {"title": "Семья", "subjects": list(subjects)})
    assert created.status_code == 201, created.text
    return [s["id"] for s in created.json()["subjects"]]


def child(full_name: str, birth_date: str, snils: str | None = None, ref: str = "child 1") -> dict[str, Any]:
    identifiers = {"snils": snils} if snils else {}
    return {"ref": ref, "full_name": full_name, "birth_date": birth_date, "role": "child", "identifiers": identifiers}


async def partner_read_in_report(dpo: Agency, partner: Agency) -> bool:
    response = await dpo.post(LOOKUP, person())
    return response.status_code == 200 and any(
        r["actor_tenant_id"] == str(partner.id) for r in response.json()["items"]
    )


async def test_a_dpo_finds_a_person_by_name_and_birth_date_across_partners_reads(
    agencies: tuple[Agency, Agency, Agency], api: httpx.AsyncClient, runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    dpo = await dpo_of(api, runtime, centre)
    case, _consent = await open_case(centre, opeka)
    child_id = case["subjects"][0]["id"]
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity", "family"]))
    assert sent.status_code == 201, sent.text
    referral_id = sent.json()["id"]
    await eventually(lambda: _opened(opeka, referral_id))
    # The partner's read reaches the centre's trail by its access receipt: the report shows it.
    await eventually(lambda: partner_read_in_report(dpo, opeka))

    found = await dpo.post(LOOKUP, person())
    assert found.status_code == 200, found.text
    report = found.json()
    by_id = (await dpo.get(f"/api/v1/audit/subjects/{child_id}/report")).json()
    assert (report["subject_id"], report["subject_ids"]) == (child_id, [child_id])
    assert report["pseudonyms"] == [report["pseudonym"]] == [by_id["pseudonym"]]
    assert {"exchange:case:create", "exchange:referral:send", "exchange:referral:read"} <= {
        r["action"] for r in report["items"]
    }
    (partner,) = [r for r in report["items"] if r["actor_tenant_id"] == str(opeka.id)]
    assert (partner["action"], partner["resource_id"]) == ("exchange:referral:read", referral_id)
    for personal in PERSONAL_DATA:
        assert personal not in found.text

    # Case, spaces and ё do not matter; the SNILS, with or without its hyphens, finds the same person.
    for details in (
        person("  иванова   МАРИЯ\tпетровна "),
        person(snils=CHILD_SNILS),
        person(snils="11223344595"),
    ):
        again = await dpo.post(LOOKUP, details)
        assert again.status_code == 200, again.text
        assert again.json()["subject_ids"] == [child_id]

    # Pages follow by cursor in the body; the file formats are those of the report by id.
    first = (await dpo.post(LOOKUP, person(limit=1))).json()
    second = (await dpo.post(LOOKUP, person(limit=1, cursor=first["next_cursor"]))).json()
    assert len(first["items"]) == len(second["items"]) == 1
    assert first["items"][0]["event_id"] != second["items"][0]["event_id"]
    assert first["items"][0]["action"] == "audit:subject:lookup"  # the lookup before it is an access too
    as_csv = await dpo.post(LOOKUP, person(format="csv"))
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="subject-access-report.csv"' in as_csv.headers["content-disposition"]
    actions = [row[7] for row in csv.reader(io.StringIO(as_csv.text))][1:]
    assert "exchange:referral:send" in actions
    as_pdf = await dpo.post(LOOKUP, person(format="pdf"))
    assert as_pdf.status_code == 200
    assert as_pdf.headers["content-type"] == "application/pdf"
    assert as_pdf.content.startswith(b"%PDF")

    # Each lookup is recorded, under its own action, with the person's pseudonym and never their details.
    recorded = await lookup_events(runtime, centre.id)
    assert len(recorded) >= 7
    assert {(e["outcome"], tuple(e["subjects"])) for e in recorded} == {("success", (report["pseudonym"],))}
    assert {e["extra"]["match"] for e in recorded} == {"found"}
    assert {e["extra"]["snils_given"] for e in recorded} == {True, False}
    assert {e["actor"]["id"] for e in recorded} == {dpo.client.client_id}
    for personal in (*PERSONAL_DATA, "11223344595", "иванова"):
        assert all(personal not in json.dumps(e, ensure_ascii=False) for e in recorded)


async def _opened(agency: Agency, referral_id: str) -> bool:
    return (await agency.get(f"/api/v1/referrals/{referral_id}")).status_code == 200


async def test_no_match_and_several_people_answer_without_naming_anyone(
    agencies: tuple[Agency, Agency, Agency], api: httpx.AsyncClient, runtime: Runtime
) -> None:
    centre, _, kdn = agencies
    dpo = await dpo_of(api, runtime, centre)
    (alena,) = await new_case(centre, child("Сёмина Алёна Игоревна", "2012-09-01"))
    twins = [
        *(await new_case(centre, child("Петров Иван", "2014-02-02", "111-111-111 11"))),
        *(await new_case(centre, child("Петров Иван", "2014-02-02", "222-222-222 22"))),
    ]
    # The same girl again in a later case, her name typed differently.
    (alena_again,) = await new_case(centre, child("СЕМИНА алена игоревна", "2012-09-01", ref="child 2"))

    same = await dpo.post(LOOKUP, person("Семина Алена Игоревна", "2012-09-01"))
    assert same.status_code == 200, same.text
    assert same.json()["subject_ids"] == sorted([alena, alena_again])  # one person, both records
    # A SNILS her records do not hold contradicts none of them.
    with_snils = await dpo.post(LOOKUP, person("Семина Алена Игоревна", "2012-09-01", snils="333-333-333 33"))
    assert with_snils.json()["subject_ids"] == sorted([alena, alena_again])
    as_pdf = await dpo.post(LOOKUP, person("Семина Алена Игоревна", "2012-09-01", format="pdf"))
    printed = pdf_text(as_pdf.content)
    assert alena in printed
    assert alena_again in printed

    missing = []
    for details in (
        person("Семина Алена", "2012-09-01"),  # no partial names
        person("Семина Алена Игоревна", "2012-09-02"),
        person("Петров Иван", "2014-02-02", snils="333-333-333 33"),
    ):
        response = await dpo.post(LOOKUP, details)
        assert response.status_code == 404, response.text
        missing.append(response.json())
    assert len({m["detail"] for m in missing}) == 1
    assert NO_ONE in missing[0]["detail"]
    assert missing[0]["type"].endswith("/not-found")

    several = await dpo.post(LOOKUP, person("Петров Иван", "2014-02-02"))
    assert several.status_code == 409, several.text
    assert "add the person's SNILS" in several.json()["detail"]
    assert several.json()["type"].endswith("/conflict")
    for answer in (*missing, several.json()):
        assert "Петров" not in json.dumps(answer, ensure_ascii=False)
        assert not {"items", "subject_ids"} & set(answer)
    chosen = await dpo.post(LOOKUP, person("Петров Иван", "2014-02-02", snils="222-222-222 22"))
    assert chosen.json()["subject_ids"] == [twins[1]]

    # Another organisation's DPO finds none of the centre's people: the same answer as for no one at all.
    other = await dpo_of(api, runtime, kdn)
    foreign = await other.post(LOOKUP, person("Семина Алена Игоревна", "2012-09-01"))
    assert foreign.status_code == 404
    assert foreign.json()["detail"] == missing[0]["detail"]
    (foreign_event,) = await lookup_events(runtime, kdn.id)
    assert (foreign_event["outcome"], foreign_event["subjects"], foreign_event["extra"]["match"]) == (
        "denied",
        [],
        "none",
    )

    outcomes = [(e["outcome"], e["extra"].get("match")) for e in await lookup_events(runtime, centre.id)]
    assert outcomes.count(("denied", "none")) == 3
    assert ("error", "several") in outcomes


async def test_only_a_dpo_may_look_people_up_and_details_stay_out_of_errors(
    agencies: tuple[Agency, Agency, Agency], api: httpx.AsyncClient, runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    await new_case(centre, child(CHILD_NAME, CHILD_BIRTH, CHILD_SNILS))
    # A specialist, and a partner's intake, are refused as for any DPO route.
    for agency in (centre, opeka):
        refused = await agency.post(LOOKUP, person())
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == (await agency.get("/api/v1/audit/events")).json()["detail"]

    dpo = await dpo_of(api, runtime, centre)
    for body in (
        person(snils="112-233-445"),
        person(snils="112-233-445 95 77"),
        person(birth_date="12.04.2015"),
        person(full_name=""),
        {**person(), "surname": CHILD_NAME},
        person(limit=10_001),
    ):
        response = await dpo.post(LOOKUP, body)
        assert response.status_code == 400, (body, response.text)
        for personal in (*PERSONAL_DATA, "12.04.2015", "112-233-445"):
            assert personal not in response.text
    # The details never go into an address: there is no such route.
    assert (await dpo.get(LOOKUP, params=person())).status_code in (404, 405)
