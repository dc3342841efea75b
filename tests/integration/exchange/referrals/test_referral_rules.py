"""Bad input on cases, consents and referrals gets precise problems and changes nothing; threads and attachments."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from exchange.referrals.models import Referral
from exchange.transport.envelopes import EnvelopeType
from exchange.transport.inbox import NotYetApplicable
from exchange.transport.models import DeadLetter
from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session
from tests.environment import TravelClock
from tests.factories import forged_envelope
from tests.integration.helpers.agencies import Agency, agency, open_case, referral_body
from tests.polling import eventually

PDF = b"%PDF-1.4\n% casebridge test document\n" + b"0" * 2048


@pytest.fixture
async def pair(api: httpx.AsyncClient, runtime: Runtime) -> tuple[Agency, Agency]:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    return centre, opeka


async def _referral_count(runtime: Runtime, sender: Agency) -> int:
    """The sender's referrals (the partner's copies arrive on their own time and are not counted)."""
    async with platform_session(runtime.sessions) as session:
        query = select(func.count()).select_from(Referral).where(Referral.tenant_id == sender.id)
        return int(await session.scalar(query) or 0)


async def test_bad_referrals_are_refused_and_send_nothing(pair: tuple[Agency, Agency], runtime: Runtime) -> None:
    centre, opeka = pair
    case, _ = await open_case(centre, opeka)
    good = referral_body(case, opeka.id, ["identity"])
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**good, "case_id": str(uuid.uuid4())}, 404, "/problems/not-found"),
        ({**good, "subject_ids": [str(uuid.uuid4())]}, 404, "/problems/not-found"),
        ({**good, "to_tenant_id": str(uuid.uuid4())}, 404, "/problems/not-found"),
        ({**good, "categories": ["bank_details"]}, 400, "/problems/validation"),
        ({**good, "respond_by": past}, 400, "/problems/validation"),
        ({**good, "complete_by": past}, 400, "/problems/validation"),
        ({**good, "kind": "telegram"}, 400, "/problems/validation"),
        (
            {**good, "legal_basis": {"type": "statutory", "reference": "120-FZ art. 9", "justification": "short"}},
            403,
            "/problems/consent-required",
        ),
        ({**good, "legal_basis": {"type": "hearsay"}}, 400, "/problems/validation"),
        ({**good, "categories": ["identity", "health"]}, 403, "/problems/consent-required"),
        ({**good, "to_tenant_id": str(centre.id)}, 400, "/problems/validation"),
    ]
    for body, status, problem in cases:
        response = await centre.post("/api/v1/referrals", body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["type"] == problem
    assert await _referral_count(runtime, centre) == 0


async def test_attempts_sent_at_once_with_one_idempotency_key_make_one_referral(
    pair: tuple[Agency, Agency], runtime: Runtime
) -> None:
    """An agency system that retries while its first attempt is still running (it gave up waiting for the answer):
    every attempt is answered with the one referral, none with an error."""
    centre, opeka = pair
    case, _ = await open_case(centre, opeka)
    body = referral_body(case, opeka.id, ["identity"])
    attempts = await asyncio.gather(
        *(centre.post("/api/v1/referrals", body, headers={"Idempotency-Key": "semya-0002"}) for _ in range(4))
    )
    assert sorted(attempt.status_code for attempt in attempts) == [200, 200, 200, 201], [a.text for a in attempts]
    assert len({attempt.json()["id"] for attempt in attempts}) == 1
    assert await _referral_count(runtime, centre) == 1


async def test_another_tenants_ids_look_missing(pair: tuple[Agency, Agency], runtime: Runtime) -> None:
    centre, opeka = pair
    case, consent = await open_case(centre, opeka)
    other = await agency(centre.api, runtime, "semya-2", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    foreign = await other.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
    missing = await other.post(
        "/api/v1/referrals", {**referral_body(case, opeka.id, ["identity"]), "case_id": str(uuid.uuid4())}
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]
    assert (await other.get(f"/api/v1/cases/{case['id']}")).status_code == 404
    withdraw = await other.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": "не моё"})
    assert withdraw.status_code == 404
    listed = await other.get(f"/api/v1/cases/{case['id']}/consents")
    assert listed.status_code == 404


async def test_consent_rules(pair: tuple[Agency, Agency]) -> None:
    centre, opeka = pair
    case, _ = await open_case(centre, opeka)
    child = case["subjects"][0]["id"]
    base = {
        "subject_id": child,
        "given_by": {"name": "Иванова Мария", "relation": "self"},
        "purposes": ["social_support"],
        "categories": ["identity"],
        "recipients": {"tenants": [str(opeka.id)]},
        "valid_until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat(),
    }
    minor_alone = await centre.post(f"/api/v1/cases/{case['id']}/consents", base)
    assert minor_alone.status_code == 400
    assert "representative" in minor_alone.json()["detail"] or "parent" in minor_alone.json()["detail"]
    expired = {
        **base,
        "given_by": {"name": "Иванова", "relation": "parent"},
        "valid_until": (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat(),
    }
    assert (await centre.post(f"/api/v1/cases/{case['id']}/consents", expired)).status_code == 400
    nobody = {**base, "given_by": {"name": "Иванова", "relation": "parent"}, "recipients": {}}
    assert (await centre.post(f"/api/v1/cases/{case['id']}/consents", nobody)).status_code == 400
    unknown = {**base, "given_by": {"name": "Иванова", "relation": "parent"}, "categories": ["gossip"]}
    assert (await centre.post(f"/api/v1/cases/{case['id']}/consents", unknown)).status_code == 400


async def test_thread_with_attachments_and_own_legal_basis(pair: tuple[Agency, Agency], runtime: Runtime) -> None:
    centre, opeka = pair
    case, consent = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity", "family"]))
    referral_id = sent.json()["id"]
    await eventually(lambda: _visible(opeka, referral_id))

    upload = await centre.api.post(
        "/api/v1/documents", headers=centre.headers, files={"file": ("справка.pdf", PDF, "application/pdf")}
    )
    assert upload.status_code == 201, upload.text
    document = upload.json()
    assert document["sha256"] == hashlib.sha256(PDF).hexdigest()
    # The consent does not cover "documents": the attachment is refused, the text alone is fine.
    refused = await centre.post(
        f"/api/v1/referrals/{referral_id}/messages", {"body": "Справка во вложении", "attachments": [document["id"]]}
    )
    assert refused.status_code == 403
    assert refused.json()["category"] == "documents"
    note = await centre.post(f"/api/v1/referrals/{referral_id}/messages", {"body": "Мать придёт во вторник"})
    assert note.status_code == 201, note.text

    reply_doc = await opeka.api.post(
        "/api/v1/documents", headers=opeka.headers, files={"file": ("ответ.pdf", PDF, "application/pdf")}
    )
    assert reply_doc.status_code == 201, reply_doc.text
    reply = await opeka.post(
        f"/api/v1/referrals/{referral_id}/messages", {"body": "Ждём", "attachments": [reply_doc.json()["id"]]}
    )
    assert reply.status_code == 201, reply.text

    async def thread(agency: Agency, size: int) -> list[dict[str, Any]] | None:
        items = (await agency.get(f"/api/v1/referrals/{referral_id}/messages")).json()["items"]
        return items if len(items) == size else None

    at_centre = await eventually(lambda: thread(centre, 2))
    assert [m["body"] for m in at_centre] == ["Мать придёт во вторник", "Ждём"]
    (attachment,) = at_centre[1]["attachments"]
    assert attachment["name"] == "ответ.pdf"
    download = await centre.api.get(f"/api/v1/documents/{attachment['id']}", headers=centre.headers)
    assert download.content == PDF
    at_opeka = await eventually(lambda: thread(opeka, 2))
    assert at_opeka[0]["body"] == "Мать придёт во вторник"

    wrong_side = await centre.post(
        f"/api/v1/referrals/{referral_id}/legal-basis",
        {
            "type": "statutory",
            "reference": "SK RF art. 122",
            "justification": "Орган опеки обязан хранить сведения о ребёнке",
        },
    )
    assert wrong_side.status_code == 403
    basis = await opeka.post(
        f"/api/v1/referrals/{referral_id}/legal-basis",
        {
            "type": "statutory",
            "reference": "SK RF art. 122",
            "justification": "Орган опеки обязан хранить сведения о ребёнке",
        },
    )
    assert basis.status_code == 200, basis.text

    await centre.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": "отозвано"})

    async def withdrawal_applied() -> bool:
        async with platform_session(runtime.sessions) as session:
            copy = await session.scalar(
                select(Referral).where(
                    Referral.exchange_id == uuid.UUID(referral_id),
                    Referral.to_tenant_id == opeka.id,
                    Referral.tenant_id == opeka.id,
                )
            )
            return copy is not None and copy.consent_withdrawn_at is not None

    await eventually(withdrawal_applied)
    kept = (await opeka.get(f"/api/v1/referrals/{referral_id}")).json()
    assert kept["restricted"] is False  # its own legal basis lets the guardianship body keep the data
    assert kept["subjects"][0]["full_name"]
    blocked = await centre.post(f"/api/v1/referrals/{referral_id}/messages", {"body": "Ещё сведения"})
    assert blocked.status_code == 403


async def test_oversized_and_wrong_type_documents(pair: tuple[Agency, Agency], runtime: Runtime) -> None:
    centre, _ = pair
    too_big = b"0" * (runtime.settings.exchange.max_document_bytes + 1)
    response = await centre.api.post(
        "/api/v1/documents", headers=centre.headers, files={"file": ("big.pdf", too_big, "application/pdf")}
    )
    assert response.status_code == 400
    exe = await centre.api.post(
        "/api/v1/documents", headers=centre.headers, files={"file": ("tool.exe", b"MZ", "application/x-msdownload")}
    )
    assert exe.status_code == 415
    assert exe.json()["type"] == "/problems/unsupported-media-type"


async def test_a_forged_envelope_is_parked_and_never_applied(pair: tuple[Agency, Agency], runtime: Runtime) -> None:
    _, opeka = pair
    subject = f"cb.v2.{opeka.id}.{uuid.uuid4()}.referral.requested"
    await runtime.bus.js.publish(subject, b"not.a.real.jwe.token", headers={"Nats-Msg-Id": str(uuid.uuid4())})

    async def parked() -> bool:
        async with platform_session(runtime.sessions) as session:
            return bool(await session.scalar(select(func.count()).select_from(DeadLetter)))

    await eventually(parked)
    assert await _referral_count(runtime, opeka) == 0


async def _visible(agency: Agency, referral_id: str) -> bool:
    return (await agency.get(f"/api/v1/referrals/{referral_id}")).status_code == 200


async def test_referral_lists_paginate_and_filter(
    pair: tuple[Agency, Agency], runtime: Runtime, clock: TravelClock
) -> None:
    centre, opeka = pair
    case, _ = await open_case(centre, opeka)
    sent = []
    for _ in range(5):
        response = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
        assert response.status_code == 201
        sent.append(response.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"box": "outgoing", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await centre.get("/api/v1/referrals", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))  # newest first, each exactly once
    bad_cursor = await centre.get("/api/v1/referrals", params={"cursor": "not-ours"})
    assert bad_cursor.status_code == 400
    assert (await centre.get("/api/v1/referrals", params={"status": "lost"})).status_code == 400

    assert (await centre.get("/api/v1/referrals", params={"overdue": "true"})).json()["items"] == []
    clock.advance(dt.timedelta(days=4))  # past respond_by (3 days), nobody answered
    late = (await centre.get("/api/v1/referrals", params={"overdue": "true"})).json()["items"]
    assert sorted(item["id"] for item in late) == sorted(sent)
    assert all(item["overdue"] for item in late)


async def test_an_envelope_that_overtook_its_referral_is_retried_then_parked(
    pair: tuple[Agency, Agency], runtime: Runtime, clock: TravelClock
) -> None:
    centre, opeka = pair
    body = {"referral_id": str(uuid.uuid4()), "status": "accepted", "at": dt.datetime.now(dt.UTC).isoformat()}
    # Not in the outbox: this test hands the envelope to the inbox itself.
    early = await forged_envelope(
        runtime, sender=opeka.id, recipient=centre.id, envelope_type=EnvelopeType.REFERRAL_STATUS, body=body
    )
    with pytest.raises(NotYetApplicable):
        await runtime.inbox.receive(early.subject, early.token.encode())
    async with platform_session(runtime.sessions) as session:
        assert not await session.scalar(select(func.count()).select_from(DeadLetter))

    clock.advance(dt.timedelta(days=2))  # still within the envelope's 7-day freshness, past the retry window
    await runtime.inbox.receive(early.subject, early.token.encode())
    async with platform_session(runtime.sessions) as session:
        parked = (await session.scalars(select(DeadLetter))).all()
    assert [(p.reason, p.envelope_id) for p in parked] == [("unapplicable", early.envelope_id)]
