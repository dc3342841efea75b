"""The no-active-basis anomaly over a history of consents and referrals: each read is judged by the basis in force
when it was made and for the people and categories it returned, at the sharing agency and at its partner.

Each runs on SQLite and PostgreSQL through the real gateway, bus and audit capture.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from exchange.referrals.models import Referral
from gateway.runtime import Runtime
from tenants.models import Role, Scope, Tenant
from tenants.persistence import platform_session
from tests.environment import TravelClock
from tests.integration.helpers.agencies import (
    CHILD_BIRTH,
    CHILD_NAME,
    Agency,
    colleague,
    open_case,
    referral_body,
    status_is,
)
from tests.integration.helpers.web import act_as, form, staff
from tests.polling import eventually

EVENTS = "/api/v1/audit/events"
STATUTORY = {
    "type": "statutory",
    "reference": "SK RF art. 122",
    "justification": "Ребёнок остался без попечения родителей, орган опеки должен знать",
}
OWN_BASIS = {
    "type": "statutory",
    "reference": "SK RF art. 122",
    "justification": "Орган опеки обязан хранить сведения о ребёнке",
}


async def dpo_of(agency: Agency, runtime: Runtime) -> Agency:
    return await colleague(agency, runtime, Role.DPO, [Scope.AUDIT_READ])


async def unfounded(dpo: Agency) -> dict[str, list[str]]:
    """The reads the DPO's anomaly list flags as made with no basis: event ids, oldest first, per actor."""
    response = await dpo.get("/api/v1/audit/anomalies")
    assert response.status_code == 200, response.text
    assert "ps_" not in response.text
    return {f["actor_id"]: f["event_ids"] for f in response.json()["items"] if f["rule"] == "no_active_basis"}


async def reads(dpo: Agency, actor: Agency, action: str, **params: Any) -> list[dict[str, Any]]:
    """`actor`'s successful reads of `action` in `dpo`'s trail, oldest first."""
    query = {"actor": actor.client.client_id, "action": action, "outcome": "success", "limit": 500, **params}
    response = await dpo.get(EVENTS, params=query)
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


async def copy_at(runtime: Runtime, agency: Agency, referral_id: str) -> Referral | None:
    """`agency`'s own copy of the referral, straight from the database (a read through the API would be audited)."""
    async with platform_session(runtime.sessions) as session:
        return await session.scalar(
            select(Referral).where(Referral.tenant_id == agency.id, Referral.exchange_id == uuid.UUID(referral_id))
        )


async def send(centre: Agency, opeka: Agency, runtime: Runtime, body: dict[str, Any]) -> str:
    """Send a referral and wait until the partner's node has applied it, without reading it there."""
    sent = await centre.post("/api/v1/referrals", body)
    assert sent.status_code == 201, sent.text
    referral_id = str(sent.json()["id"])
    await eventually(lambda: copy_at(runtime, opeka, referral_id))
    return referral_id


async def ok(response: Any) -> None:
    assert response.status_code == 200, response.text


async def test_a_specialists_own_case_in_the_browser_is_no_alarm_when_a_parent_has_not_consented(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    """The key worker opens the family's case and reads it page after page; nobody in the family has consented. Their
    supervisor looks at it too. Only a colleague with no part in the case and no consent to rely on is flagged."""
    centre, _, _ = agencies
    api, centre_dpo = centre.api, await dpo_of(centre, runtime)
    async with platform_session(runtime.sessions) as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.id == centre.id))
    assert tenant is not None
    key_worker, supervisor, outsider = [
        await staff(runtime, tenant, role) for role in (Role.SPECIALIST, Role.SUPERVISOR, Role.SPECIALIST)
    ]
    act_as(api, key_worker)
    fields = {"title": "Ивановы", "subject-0-name": CHILD_NAME, "subject-0-role": "child", "needs-client": "школа"}
    fields |= {"subject-1-name": "Иванова Ольга Сергеевна", "subject-1-role": "parent"}
    opened = await form(api, "/cases/new", fields)
    assert opened.status_code == 303, opened.text[:2000]
    case_path = opened.headers["location"].split("?", 1)[0]
    for path in (case_path, f"{case_path}/consents/new", f"{case_path}/referrals/new", case_path):
        assert (await api.get(path)).status_code == 200, path
    act_as(api, supervisor)
    assert (await api.get(case_path)).status_code == 200
    act_as(api, outsider)
    assert (await api.get(case_path)).status_code == 200

    response = await centre_dpo.get(EVENTS, params={"action": "exchange:case:read", "outcome": "success"})
    case_reads = response.json()["items"]  # newest first: the outsider's read, the supervisor's, the key worker's
    assert len({e["actor"]["id"] for e in case_reads}) == 3
    assert len(case_reads) == 6
    assert all(len(e["subjects"]) == 2 for e in case_reads)
    assert await unfounded(centre_dpo) == {case_reads[0]["actor"]["id"]: [case_reads[0]["id"]]}


async def test_consent_given_read_withdrawn_read(agencies: tuple[Agency, Agency, Agency], runtime: Runtime) -> None:
    """Reads made while the consent stood stay unflagged after its withdrawal; only the later read is flagged. The
    case's creator reads the whole case either way, and a colleague is judged for the people each read returned."""
    centre, opeka, _ = agencies
    other = await colleague(centre, runtime)
    centre_dpo, opeka_dpo = await dpo_of(centre, runtime), await dpo_of(opeka, runtime)
    case, consent = await open_case(centre, opeka)  # the parent consents for the child; nobody for the parent
    referral_id = await send(centre, opeka, runtime, referral_body(case, opeka.id, ["identity", "family"]))

    await ok(await other.get(f"/api/v1/referrals/{referral_id}"))  # the child only: consented
    await ok(await other.get(f"/api/v1/cases/{case['id']}"))  # the parent too: no basis for a colleague
    await ok(await centre.get(f"/api/v1/cases/{case['id']}"))  # its creator holds the case
    await ok(await opeka.get(f"/api/v1/referrals/{referral_id}"))
    await eventually(lambda: reads(centre_dpo, opeka, "exchange:referral:read"))  # the partner's access receipt

    withdrawn = await centre.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": "семья передумала"})
    await ok(withdrawn)

    async def restricted() -> bool:
        copy = await copy_at(runtime, opeka, referral_id)
        return copy is not None and copy.restricted

    await eventually(restricted)
    await ok(await other.get(f"/api/v1/referrals/{referral_id}"))  # no consent any more
    await ok(await centre.get(f"/api/v1/cases/{case['id']}"))
    later = await opeka.get(f"/api/v1/referrals/{referral_id}")
    await ok(later)
    assert later.json()["restricted"] is True

    other_referral_reads = await reads(centre_dpo, other, "exchange:referral:read")
    (other_case_read,) = await reads(centre_dpo, other, "exchange:case:read")
    assert len(other_referral_reads) == 2
    assert await unfounded(centre_dpo) == {
        other.client.client_id: [other_case_read["id"], other_referral_reads[1]["id"]]
    }
    # At the partner, the read under the open referral and the read of the restricted copy (refs only) are fine.
    assert await unfounded(opeka_dpo) == {}
    first, last = await reads(opeka_dpo, opeka, "exchange:referral:read")
    assert (first["extra"]["categories"], last["extra"]["categories"]) == (["family", "identity"], [])
    (receipt,) = await reads(centre_dpo, opeka, "exchange:referral:read")  # a restricted copy sends no receipt
    assert receipt["extra"]["categories"] == ["family", "identity"]
    assert "own_basis" not in receipt["extra"]


async def test_a_partner_read_after_the_consent_lapsed_is_flagged_at_the_sharing_agency_only(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime, clock: TravelClock
) -> None:
    """Expiry restricts nothing at the partner, which reads under its open referral; the agency that shared the data
    sees the read made after the consent's end as one with no basis, and the one before as fine."""
    centre, opeka, _ = agencies
    centre_dpo, opeka_dpo = await dpo_of(centre, runtime), await dpo_of(opeka, runtime)
    created = await centre.post(
        "/api/v1/cases",
        {
            "title": "Семья Ивановых",
            "subjects": [{"ref": "child 1", "full_name": CHILD_NAME, "birth_date": CHILD_BIRTH, "role": "child"}],
        },
    )
    assert created.status_code == 201, created.text
    case = created.json()
    given = await centre.post(
        f"/api/v1/cases/{case['id']}/consents",
        {
            "subject_id": case["subjects"][0]["id"],
            "given_by": {"name": "Иванова Ольга Сергеевна", "relation": "parent"},
            "purposes": ["social_support"],
            "categories": ["identity", "family"],
            "recipients": {"tenants": [str(opeka.id)], "kinds": []},
            "valid_until": (clock.now() + dt.timedelta(hours=1)).isoformat(),
        },
    )
    assert given.status_code == 201, given.text
    referral_id = await send(centre, opeka, runtime, referral_body(case, opeka.id, ["identity", "family"]))
    await ok(await opeka.get(f"/api/v1/referrals/{referral_id}"))
    clock.advance(dt.timedelta(hours=2))
    await ok(await opeka.get(f"/api/v1/referrals/{referral_id}"))

    async def both_receipts() -> list[dict[str, Any]] | None:
        found = await reads(centre_dpo, opeka, "exchange:referral:read")
        return found if len(found) == 2 else None

    _, after = await eventually(both_receipts)
    assert await unfounded(centre_dpo) == {opeka.client.client_id: [after["id"]]}
    assert await unfounded(opeka_dpo) == {}


async def test_a_statutory_share_covers_until_it_closes_and_the_recipients_own_basis_outlasts_the_consent(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    centre_dpo, opeka_dpo = await dpo_of(centre, runtime), await dpo_of(opeka, runtime)
    case, consent = await open_case(centre, opeka)
    # Another family: a basis is for a person's data, so the guardianship body's own basis for the first child
    # would cover its reads of that child under any referral.
    other_case, _ = await open_case(centre, opeka)
    statutory = await send(
        centre, opeka, runtime, referral_body(other_case, opeka.id, ["identity", "family"], legal_basis=STATUTORY)
    )
    consented = await send(centre, opeka, runtime, referral_body(case, opeka.id, ["identity", "family"]))
    await ok(await opeka.post(f"/api/v1/referrals/{consented}/legal-basis", OWN_BASIS))
    await ok(await opeka.get(f"/api/v1/referrals/{statutory}"))
    await ok(await opeka.get(f"/api/v1/referrals/{consented}"))

    await ok(await opeka.post(f"/api/v1/referrals/{statutory}/transition", {"to": "accepted"}))
    done = {"to": "completed", "outcome": {"result": "resolved", "note": "Ребёнок устроен в семью"}}
    await ok(await opeka.post(f"/api/v1/referrals/{statutory}/transition", done))
    await eventually(lambda: status_is(centre, statutory, "completed"))
    await ok(await centre.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": "семья передумала"}))

    async def withdrawal_applied() -> bool:
        copy = await copy_at(runtime, opeka, consented)
        return copy is not None and copy.consent_withdrawn_at is not None

    await eventually(withdrawal_applied)
    await ok(await opeka.get(f"/api/v1/referrals/{statutory}"))  # closed: no basis left
    kept = await opeka.get(f"/api/v1/referrals/{consented}")  # kept under the guardianship body's own basis
    await ok(kept)
    assert kept.json()["restricted"] is False

    async def receipts(referral_id: str) -> list[dict[str, Any]] | None:
        found = await reads(centre_dpo, opeka, "exchange:referral:read", resource_id=referral_id)
        return found if len(found) == 2 else None

    statutory_reads = await eventually(lambda: receipts(statutory))
    consented_reads = await eventually(lambda: receipts(consented))
    assert await unfounded(centre_dpo) == {opeka.client.client_id: [statutory_reads[1]["id"]]}
    assert [r["extra"].get("own_basis") for r in consented_reads] == ["SK RF art. 122", "SK RF art. 122"]
    assert "own_basis" not in statutory_reads[1]["extra"]
    at_opeka = await reads(opeka_dpo, opeka, "exchange:referral:read", resource_id=statutory)
    assert await unfounded(opeka_dpo) == {opeka.client.client_id: [at_opeka[1]["id"]]}
