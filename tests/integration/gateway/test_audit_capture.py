"""Every access to tenant data lands in the audit trail, with pseudonyms only, and reads fail closed without it."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select, text

from audit.models import AuditEvent
from exchange.transport.models import DeadLetter
from gateway.runtime import Runtime
from tenants.persistence import platform_session
from tests.environment import BASE_URL
from tests.factories import client_assertion, token_form
from tests.integration.helpers.agencies import (
    CHILD_NAME,
    PERSONAL_DATA,
    Agency,
    open_case,
    referral_body,
)
from tests.polling import eventually


async def _events(runtime: Runtime, tenant_id: uuid.UUID | None = None) -> list[dict[str, object]]:
    async with platform_session(runtime.sessions) as session:
        query = select(AuditEvent).order_by(AuditEvent.recorded_at, AuditEvent.id)
        if tenant_id is not None:
            query = query.where(AuditEvent.log_tenant_id == tenant_id)
        return [json.loads(e.canonical) for e in await session.scalars(query)]


async def test_reads_writes_and_refusals_are_recorded_with_pseudonyms(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, kdn = agencies
    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity", "family"]))
    referral_id = sent.json()["id"]
    await eventually(lambda: _readable(opeka, referral_id))
    await kdn.get(f"/api/v1/referrals/{referral_id}")  # a foreign id: refused, and recorded as such

    centre_log = await _events(runtime, centre.id)
    actions = [e["action"] for e in centre_log if not str(e["action"]).startswith("tenants:token")]
    assert actions[:3] == ["exchange:case:create", "exchange:consent:create", "exchange:referral:send"]
    send = next(e for e in centre_log if e["action"] == "exchange:referral:send")
    assert send["outcome"] == "success"
    assert send["resource"] == {"type": "referral", "id": referral_id}
    assert send["purpose"] == "social_support"
    assert send["legal_basis"] == "consent"
    (child_pseudonym,) = send["subjects"]
    assert str(child_pseudonym).startswith("ps_")

    opeka_log = await _events(runtime, opeka.id)
    receive = next(e for e in opeka_log if e["action"] == "exchange:referral:receive")
    read = next(e for e in opeka_log if e["action"] == "exchange:referral:read" and e["outcome"] == "success")
    # The recipient's events name the same person by the sender's pseudonym, so one report can follow them.
    assert receive["subjects"] == read["subjects"] == [child_pseudonym]
    assert read["actor"] == {"kind": "client", "id": opeka.client.client_id, "tenant": str(opeka.id), "role": "intake"}
    assert read["request_id"]

    (refused,) = [e for e in await _events(runtime, kdn.id) if e["action"] == "exchange:referral:read"]
    assert refused["outcome"] == "denied"
    assert refused["reason"] == "NotFound"
    assert refused["subjects"] == []

    everything = json.dumps(await _events(runtime), ensure_ascii=False)
    for personal in PERSONAL_DATA:
        assert personal not in everything


async def test_reads_fail_closed_when_the_audit_trail_cannot_be_written(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    case, _ = await open_case(centre, opeka)
    async with platform_session(runtime.sessions) as session, session.begin():
        await session.execute(text("ALTER TABLE audit_event_subject RENAME TO audit_event_subject_gone"))
    response = await centre.get(f"/api/v1/cases/{case['id']}")
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/unavailable"
    assert CHILD_NAME not in response.text


async def test_parked_envelopes_are_audited(agencies: tuple[Agency, Agency, Agency], runtime: Runtime) -> None:
    _, opeka, _ = agencies
    await runtime.bus.js.publish(
        f"cb.v2.{opeka.id}.{uuid.uuid4()}.referral.requested", b"forged", headers={"Nats-Msg-Id": str(uuid.uuid4())}
    )

    async def parked() -> bool:
        async with platform_session(runtime.sessions) as session:
            return (await session.scalar(select(DeadLetter.id))) is not None

    await eventually(parked)
    events = [e for e in await _events(runtime) if e["action"] == "exchange:envelope:park"]
    assert [e["outcome"] for e in events] == ["error"]
    assert events[0]["reason"] == "malformed"


async def _readable(agency: Agency, referral_id: str) -> bool:
    return (await agency.get(f"/api/v1/referrals/{referral_id}")).status_code == 200


async def test_partner_access_is_reported_to_the_sharing_agency(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
    referral_id = sent.json()["id"]
    await eventually(lambda: _readable(opeka, referral_id))

    async def partner_read_in_centre_log() -> dict[str, object] | None:
        for event in await _events(runtime, centre.id):
            actor = event["actor"]
            if (
                event["action"] == "exchange:referral:read"
                and isinstance(actor, dict)
                and actor["tenant"] == str(opeka.id)
            ):
                return event
        return None

    event = await eventually(partner_read_in_centre_log)
    assert event["actor"] == {"kind": "client", "id": opeka.client.client_id, "tenant": str(opeka.id), "role": "intake"}
    send = next(e for e in await _events(runtime, centre.id) if e["action"] == "exchange:referral:send")
    assert event["subjects"] == send["subjects"]
    assert event["resource"] == {"type": "referral", "id": referral_id}
    assert event["purpose"] == "social_support"


async def test_token_issuance_and_refusal_are_recorded(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, _, _ = agencies  # the fixture already obtained one token per agency
    replay = client_assertion(centre.client, f"{BASE_URL}/oauth/token")
    first = await centre.api.post("/oauth/token", data=token_form(centre.client, replay))
    again = await centre.api.post("/oauth/token", data=token_form(centre.client, replay))
    assert (first.status_code, again.status_code) == (200, 401)
    log = [e for e in await _events(runtime, centre.client.tenant_id) if str(e["action"]).startswith("tenants:token")]
    assert [(e["action"], e["outcome"]) for e in log] == [
        ("tenants:token:issue", "success"),
        ("tenants:token:issue", "success"),
        ("tenants:token:refuse", "denied"),
    ]
    assert "used before" in str(log[-1]["reason"])
    assert log[0]["actor"] == {
        "kind": "client",
        "id": centre.client.client_id,
        "tenant": str(centre.id),
        "role": "specialist",
    }
