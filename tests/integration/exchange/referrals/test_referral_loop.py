"""The whole referral loop between three agencies over the real nats-server, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import nats.js.errors

from gateway.bus import ENVELOPE_STREAM
from gateway.runtime import Runtime
from tests.integration.helpers.agencies import (
    CHILD_BIRTH,
    CHILD_NAME,
    PERSONAL_DATA,
    Agency,
    open_case,
    referral_body,
    status_is,
)
from tests.polling import eventually


async def test_consent_send_receive_work_complete_and_withdraw(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, kdn = agencies
    case, consent = await open_case(centre, opeka)
    assert consent["status"] == "active"

    refused = await centre.post("/api/v1/referrals", referral_body(case, kdn.id, ["identity"]))
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/consent-required")
    assert problem["subject_ref"] == "child 1"
    assert problem["category"] == "identity"
    assert CHILD_NAME not in refused.text

    body = referral_body(case, opeka.id, ["identity", "family"])
    sent = await centre.post("/api/v1/referrals", body, headers={"Idempotency-Key": "semya-0001"})
    assert sent.status_code == 201, sent.text
    referral_id = sent.json()["id"]
    assert sent.json()["status"] == "requested"
    again = await centre.post("/api/v1/referrals", body, headers={"Idempotency-Key": "semya-0001"})
    assert again.status_code == 200
    assert again.json()["id"] == referral_id
    different = await centre.post(
        "/api/v1/referrals", {**body, "urgency": "routine"}, headers={"Idempotency-Key": "semya-0001"}
    )
    assert different.status_code == 422

    async def received() -> dict[str, Any] | None:
        response = await opeka.get(f"/api/v1/referrals/{referral_id}")
        return response.json() if response.status_code == 200 else None

    incoming = await eventually(received)
    assert incoming["status"] == "received"
    assert incoming["from_tenant_id"] == str(centre.id)
    (child,) = incoming["subjects"]
    assert child["full_name"] == CHILD_NAME
    assert child["birth_date"] == CHILD_BIRTH
    assert child["role"] == "child"
    # Not consented: contacts, health, the case's needs and notes.
    assert "address" not in child
    assert "health" not in child
    assert "needs" not in incoming
    assert "summary" not in incoming
    assert "case_id" not in incoming

    async def sender_status(status: str) -> dict[str, Any] | None:
        response = (await centre.get(f"/api/v1/referrals/{referral_id}")).json()
        return response if response["status"] == status else None

    await eventually(lambda: sender_status("received"))

    wrong_side = await centre.post(f"/api/v1/referrals/{referral_id}/transition", {"to": "accepted"})
    assert wrong_side.status_code == 409
    skipping = await opeka.post(f"/api/v1/referrals/{referral_id}/transition", {"to": "completed"})
    assert skipping.status_code == 409
    for step in ({"to": "accepted"}, {"to": "in-progress"}):
        moved = await opeka.post(f"/api/v1/referrals/{referral_id}/transition", step)
        assert moved.status_code == 200, moved.text
    completion = {"to": "completed", "outcome": {"result": "resolved", "note": "Назначен опекун"}}
    done = await opeka.post(f"/api/v1/referrals/{referral_id}/transition", completion)
    assert done.status_code == 200, done.text

    outcome = await eventually(lambda: sender_status("completed"))
    assert outcome["outcome"] == {"result": "resolved", "note": "Назначен опекун"}
    assert [t["status"] for t in outcome["timeline"]] == [
        "requested",
        "received",
        "accepted",
        "in-progress",
        "completed",
    ]

    # The juvenile commission cannot see the referral at all: the same answer as for an id that never existed.
    foreign = await kdn.get(f"/api/v1/referrals/{referral_id}")
    missing = await kdn.get(f"/api/v1/referrals/{uuid.uuid4()}")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]
    foreign_case = await kdn.get(f"/api/v1/cases/{case['id']}")
    missing_case = await kdn.get(f"/api/v1/cases/{uuid.uuid4()}")
    assert foreign_case.status_code == missing_case.status_code

    withdrawn = await centre.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": "Мать отозвала согласие"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"

    async def restricted() -> dict[str, Any] | None:
        response = (await opeka.get(f"/api/v1/referrals/{referral_id}")).json()
        return response if response["restricted"] else None

    copy = await eventually(restricted)
    assert copy["subjects"] == [{"id": copy["subjects"][0]["id"], "ref": "child 1"}]
    assert copy["status"] == "completed"
    assert len(copy["timeline"]) == 5
    blocked = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
    assert blocked.status_code == 403
    assert blocked.json()["code"] == "consent_withdrawn"

    outgoing = (await centre.get("/api/v1/referrals?box=outgoing")).json()
    assert [r["id"] for r in outgoing["items"]] == [referral_id]
    incoming_box = (await opeka.get("/api/v1/referrals?box=incoming&status=completed")).json()
    assert [r["id"] for r in incoming_box["items"]] == [referral_id]


async def test_no_personal_data_on_the_bus(agencies: tuple[Agency, Agency, Agency], runtime: Runtime) -> None:
    centre, opeka, _ = agencies
    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity", "family"]))
    assert sent.status_code == 201
    referral_id = sent.json()["id"]
    await eventually(lambda: status_is(centre, referral_id, "received"))  # the receipt has travelled back

    js = runtime.bus.js
    info = await js.stream_info(ENVELOPE_STREAM)
    forbidden = [*PERSONAL_DATA, "Садовая"]
    seen = 0
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await js.get_msg(ENVELOPE_STREAM, sequence)
        except nats.js.errors.NotFoundError:  # a sequence number whose message was removed
            continue
        if str(centre.id) not in message.subject and str(opeka.id) not in message.subject:
            continue
        seen += 1
        texts = [message.subject, str(message.headers or {}), message.data.decode("latin-1")]
        for part in message.data.split(b"."):
            padded = part + b"=" * (-len(part) % 4)
            try:
                texts.append(base64.urlsafe_b64decode(padded).decode("utf-8", errors="replace"))
            except ValueError:
                continue
        for text in texts:
            for value in forbidden:
                assert value not in text, f"personal data on the bus in {message.subject}"
    assert seen >= 2  # the referral and its receipt
