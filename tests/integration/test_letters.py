"""Referral letters across agencies over the real bus, on SQLite and PostgreSQL: numbering, signature, download."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
import uuid
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from audit.models import AuditEvent
from exchange.envelopes import EnvelopeType, OpenedEnvelope, open_envelope
from exchange.letters.numbering import next_registration_number, set_registration_prefix
from exchange.letters.signing import LetterBinding, sign_letter
from exchange.models import LetterSequence, OutboxEnvelope
from exchange.outbox import enqueue
from gateway.runtime import Runtime
from tenants.models import KeyUse
from tenants.persistence import platform_session, tenant_session
from tests.factories import make_tenant
from tests.integration.test_referral_loop import (
    CHILD_NAME,
    Agency,
    eventually,
    open_case,
    referral_body,
)

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")

NUMBER = re.compile(r"^СЕМ-\d{4}/(\d{4})$")


def _text(pdf: bytes) -> str:
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return text.replace("\xa0", " ")


async def _send(centre: Agency, case: dict[str, Any], to: Agency, **extra: Any) -> dict[str, Any]:
    body = referral_body(case, to.id, ["identity", "family", "social_assessment"], **extra)
    sent = await centre.post("/api/v1/referrals", body)
    assert sent.status_code == 201, sent.text
    return dict(sent.json())


async def _incoming(agency: Agency, referral_id: str) -> dict[str, Any]:
    async def arrived() -> dict[str, Any] | None:
        response = await agency.get(f"/api/v1/referrals/{referral_id}")
        return dict(response.json()) if response.status_code == 200 else None

    result: dict[str, Any] = await eventually(arrived)
    return result


async def test_the_letter_travels_signed_and_both_sides_download_it(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, kdn = agencies
    case, consent = await open_case(centre, opeka)
    sent = await _send(centre, case, opeka, kind="petition")
    referral_id = sent["id"]
    letter = sent["letter"]
    match = NUMBER.match(letter["registration_number"])
    assert match is not None, letter
    assert letter["signature"] == "valid"
    assert letter["language"] == "ru"

    own = await centre.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    assert own.status_code == 200, own.text
    assert own.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(own.content).hexdigest() == letter["sha256"]
    text = _text(own.content)
    for expected in ("ХОДАТАЙСТВО", letter["registration_number"], "Agency semya", "Agency opeka", CHILD_NAME,
                     "Семья нуждается в помощи органа опеки", "жильё", "Приложение 1"):  # fmt: skip
        assert expected in text, expected
    # Only what the referral shares: the address and health notes stay with the centre.
    assert "Садовая" not in text
    assert "астма" not in text

    incoming = await _incoming(opeka, referral_id)
    assert incoming["letter"] == {**letter, "signature": "valid"}
    theirs = await opeka.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    assert theirs.status_code == 200
    assert theirs.content == own.content

    # The partner's read lands in the sharing centre's own trail, like a read of the referral.
    async def receipt_recorded() -> bool:
        async with platform_session(runtime.sessions) as session:
            events = await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.log_tenant_id == centre.id,
                    AuditEvent.action == "exchange:letter:read",
                    AuditEvent.actor_tenant_id == opeka.id,
                )
            )
            return any(e.resource_id == referral_id for e in events)

    await eventually(receipt_recorded)

    foreign = await kdn.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    missing = await kdn.get(f"/api/v1/referrals/{uuid.uuid4()}/letter.pdf")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]
    assert foreign.headers["content-type"] == "application/problem+json"

    english = await _send(centre, case, opeka, kind="information_letter", letter_language="en")
    number = NUMBER.match(english["letter"]["registration_number"])
    assert number is not None
    assert int(number.group(1)) == int(match.group(1)) + 1
    english_pdf = await centre.get(f"/api/v1/referrals/{english['id']}/letter.pdf")
    english_text = _text(english_pdf.content)
    assert "INFORMATION LETTER" in english_text
    assert "Please respond by" in english_text
    assert CHILD_NAME in english_text

    # After the family withdraws consent, the partner's copy of the letter (it names the child) is erased.
    withdrawn = await centre.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": "Мать отозвала согласие"})
    assert withdrawn.status_code == 200, withdrawn.text

    async def restricted() -> dict[str, Any] | None:
        response = (await opeka.get(f"/api/v1/referrals/{referral_id}")).json()
        return response if response["restricted"] else None

    copy = await eventually(restricted)
    assert copy["letter"]["registration_number"] == letter["registration_number"]
    erased = await opeka.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    assert erased.status_code == 404
    assert "withdrew consent" in erased.json()["detail"]
    assert (await centre.get(f"/api/v1/referrals/{referral_id}/letter.pdf")).status_code == 200


async def test_a_tampered_letter_is_shown_invalid_to_the_recipient(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    """A sender's node that alters one byte of a signed PDF: the recipient's check catches it."""
    centre, opeka, _ = agencies
    case, _ = await open_case(centre, opeka)
    original = await _send(centre, case, opeka)
    await _incoming(opeka, original["id"])
    deps = runtime.exchange
    async with platform_session(runtime.sessions) as session:
        token = await session.scalar(
            select(OutboxEnvelope.token).where(
                OutboxEnvelope.tenant_id == centre.id,
                OutboxEnvelope.exchange_id == uuid.UUID(original["id"]),
                OutboxEnvelope.envelope_type == EnvelopeType.REFERRAL_REQUESTED.value,
            )
        )
        assert token is not None
        decryption = [
            deps.keyring.private_jwk(k)
            for k in await deps.keyring.usable_tenant_keys(session, opeka.id, KeyUse.ENCRYPTION)
        ]
        sender_keys = await deps.published.signing_keys(session, centre.id)
        opened = open_envelope(token, recipient=opeka.id, decryption_keys=decryption,
                               sender_keys=lambda _: sender_keys, now=deps.clock.now())  # fmt: skip
        assert isinstance(opened, OpenedEnvelope)
        signing = (await deps.keyring.usable_tenant_keys(session, centre.id, KeyUse.SIGNING))[0]
        pdf = base64.b64decode(opened.body["letter"]["content"])

        forged: dict[str, str] = {}
        for label in ("untouched", "tampered", "unsigned", "garbled", "not-an-object"):
            referral_id = uuid.uuid4()
            number = f"{opened.body['letter']['registration_number']}-{label}"
            binding = LetterBinding(number, referral_id, centre.id, opeka.id)
            signature = sign_letter(
                pdf, binding, signing_key=deps.keyring.private_jwk(signing), issued_at=deps.clock.now()
            )
            content = bytearray(pdf)
            if label == "tampered":
                content[len(content) // 2] ^= 0x01
            letter: Any = {**opened.body["letter"], "registration_number": number, "signature": signature,
                           "content": base64.b64encode(bytes(content)).decode()}  # fmt: skip
            if label == "unsigned":
                del letter["signature"]
            if label == "garbled":
                letter["content"] = "not base64 at all!"
            if label == "not-an-object":
                letter = "a letter"
            await enqueue(session, deps, sender=centre.id, recipient=opeka.id,
                          envelope_type=EnvelopeType.REFERRAL_REQUESTED, exchange_id=referral_id,
                          body={**opened.body, "referral_id": str(referral_id), "letter": letter})  # fmt: skip
            forged[label] = str(referral_id)
        await session.commit()
    runtime.wake_relay()

    untouched = await _incoming(opeka, forged["untouched"])
    assert untouched["letter"]["signature"] == "valid"
    tampered = await _incoming(opeka, forged["tampered"])
    assert tampered["letter"]["signature"] == "invalid"
    assert (await _incoming(opeka, forged["unsigned"]))["letter"]["signature"] == "missing"
    assert (await _incoming(opeka, forged["garbled"]))["letter"]["signature"] == "invalid"
    assert (await _incoming(opeka, forged["not-an-object"]))["letter"]["signature"] == "invalid"
    garbled = await opeka.get(f"/api/v1/referrals/{forged['garbled']}/letter.pdf")
    assert garbled.status_code == 404
    assert "unreadable" in garbled.json()["detail"]
    download = await opeka.get(f"/api/v1/referrals/{forged['tampered']}/letter.pdf")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == tampered["letter"]["sha256"]
    assert tampered["letter"]["sha256"] != original["letter"]["sha256"]

    async with platform_session(runtime.sessions) as session:
        received = await session.scalars(
            select(AuditEvent).where(
                AuditEvent.log_tenant_id == opeka.id, AuditEvent.action == "exchange:referral:receive"
            )
        )
        verdicts = {e.resource_id: e.canonical for e in received}
    assert '"letter":"invalid"' in verdicts[forged["tampered"]]
    assert '"letter":"valid"' in verdicts[forged["untouched"]]


async def test_registration_numbers_are_unique_and_gap_free_under_concurrency(runtime: Runtime) -> None:
    tenant = await make_tenant(runtime, "semya")
    clock = runtime.exchange.clock

    class Abandon(Exception):
        pass

    async def take(index: int) -> int | None:
        try:
            async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
                number = await next_registration_number(session, clock, tenant_id=tenant.id, year=2031)
                await asyncio.sleep(0.01)  # hold the counter while other senders queue behind it
                if index % 4 == 3:
                    raise Abandon  # a send that fails after taking its number gives the number back
                return number.number
        except Abandon:
            return None

    taken = await asyncio.gather(*(take(i) for i in range(16)))
    committed = sorted(n for n in taken if n is not None)
    assert committed == list(range(1, 13))
    async with tenant_session(runtime.sessions, tenant.id) as session:
        rows = list(await session.scalars(select(LetterSequence).where(LetterSequence.tenant_id == tenant.id)))
    assert [(r.year, r.last_number) for r in rows] == [(2031, 12)]

    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        await set_registration_prefix(session, tenant_id=tenant.id, prefix="цсп")
        chosen = await next_registration_number(session, clock, tenant_id=tenant.id, year=2031)
        fresh_year = await next_registration_number(session, clock, tenant_id=tenant.id, year=2032)
    assert str(chosen) == "ЦСП-2031/0013"
    assert str(fresh_year) == "ЦСП-2032/0001"


async def test_concurrent_sends_get_consecutive_numbers(agencies: tuple[Agency, Agency, Agency]) -> None:
    centre, opeka, _ = agencies
    case, _ = await open_case(centre, opeka)
    refused = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["health"]))
    assert refused.status_code == 403  # refused before numbering: it takes no number
    sends = await asyncio.gather(*(_send(centre, case, opeka) for _ in range(6)))
    numbers = sorted(int(NUMBER.match(s["letter"]["registration_number"]).group(1)) for s in sends)  # type: ignore[union-attr]
    assert numbers == [1, 2, 3, 4, 5, 6]
    body = referral_body(case, opeka.id, ["identity"])
    first = await centre.post("/api/v1/referrals", body, headers={"Idempotency-Key": "letter-once"})
    replay = await centre.post("/api/v1/referrals", body, headers={"Idempotency-Key": "letter-once"})
    assert (first.status_code, replay.status_code) == (201, 200)
    assert first.json()["letter"]["registration_number"].endswith("/0007")
    assert replay.json()["letter"] == first.json()["letter"]  # a replay takes no number
    following = await _send(centre, case, opeka)
    assert following["letter"]["registration_number"].endswith("/0008")


async def test_bad_letter_input_gets_precise_problems(agencies: tuple[Agency, Agency, Agency]) -> None:
    centre, opeka, _ = agencies
    case, _ = await open_case(centre, opeka)
    wrong_language = await centre.post(
        "/api/v1/referrals", referral_body(case, opeka.id, ["identity"], letter_language="de")
    )
    assert wrong_language.status_code == 400
    problem = wrong_language.json()
    assert problem["type"] == "/problems/validation"
    assert "letter_language" in problem["detail"]
    no_letter = await centre.get(f"/api/v1/referrals/{uuid.uuid4()}/letter.pdf")
    assert no_letter.status_code == 404
    assert no_letter.headers["content-type"] == "application/problem+json"
    not_an_id = await centre.get("/api/v1/referrals/not-a-uuid/letter.pdf")
    assert not_an_id.status_code in (400, 404)
