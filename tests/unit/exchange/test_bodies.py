"""Typed envelope bodies: versions, strictness where it matters, tolerance where the wire rules ask for it."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import msgspec
import pytest

from exchange.transport.bodies import (
    BODIES,
    AppliedEnvelope,
    BodyError,
    LegalBasisBody,
    LetterNotice,
    Receipt,
    ReceiptBatch,
    ReferralRequested,
    ReferralStatus,
    bodies_markdown,
    decode_body,
    encode_body,
)
from exchange.transport.envelopes import EnvelopeType

ENVELOPE_DOC = Path(__file__).parents[3] / "docs" / "envelope.md"
AT = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)


def test_the_body_reference_in_the_envelope_docs_is_the_generated_one() -> None:
    text = ENVELOPE_DOC.read_text(encoding="utf-8")
    documented = text.split("<!-- bodies:begin -->\n", 1)[1].split("<!-- bodies:end -->", 1)[0]
    assert documented == bodies_markdown(), "run `python -m exchange.transport.bodies` and paste it into the docs"


def test_every_type_a_node_sends_has_a_body() -> None:
    assert {t for t, _ in BODIES} == set(EnvelopeType) - {EnvelopeType.PLAN_TASK}


def test_a_referral_round_trips_and_leaves_out_what_it_does_not_carry() -> None:
    sent = ReferralRequested(
        referral_id=uuid.uuid4(),
        kind="referral",
        purpose="social_support",
        urgency="urgent",
        respond_by=AT,
        complete_by=AT + dt.timedelta(days=30),
        case_ref="CB-1",
        categories=["identity"],
        legal_basis=LegalBasisBody(type="consent"),
        requested_at=AT,
        subjects=[{"ref": "child 1"}],
        letter=LetterNotice(v=1, registration_number="СЕМ-2026/0001", language="ru", name="letter.pdf"),
    )
    payload = encode_body(sent)
    wire = json.loads(payload)
    assert "summary" not in wire
    assert "reference" not in wire["legal_basis"]
    assert wire["letter"] == {"v": 1, "registration_number": "СЕМ-2026/0001", "language": "ru", "name": "letter.pdf"}
    assert decode_body(EnvelopeType.REFERRAL_REQUESTED, payload) == sent


def test_receipts_of_both_versions_are_read() -> None:
    envelope_id = uuid.uuid4()
    single = {"envelope_id": str(envelope_id), "type": "referral.requested", "applied_at": AT.isoformat()}
    assert decode_body(EnvelopeType.RECEIPT, json.dumps(single).encode()) == Receipt(
        envelope_id=envelope_id, type="referral.requested", applied_at=AT
    )
    batch = ReceiptBatch(
        v=2, envelopes=[AppliedEnvelope(envelope_id=envelope_id, type="referral.letter")], applied_at=AT
    )
    assert json.loads(encode_body(batch))["v"] == 2
    assert decode_body(EnvelopeType.RECEIPT, encode_body(batch)) == batch


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"v": 3, "envelopes": []}, "does not accept receipt bodies of version 3"),
        ({"v": 2, "envelopes": [], "applied_at": AT.isoformat()}, "lists at least one envelope"),
        ({"envelope_id": "Иванова", "type": "x", "applied_at": AT.isoformat()}, "at `$.envelope_id`"),
        ({"envelope_id": str(uuid.uuid4()), "type": "x", "applied_at": "2026-12-01T09:30:00"}, "`$.applied_at`"),
        ({"v": "two"}, "not a JSON object with an integer v"),
    ],
)
def test_a_body_off_its_schema_is_refused_without_echoing_its_content(body: object, problem: str) -> None:
    with pytest.raises(BodyError) as refused:
        decode_body(EnvelopeType.RECEIPT, json.dumps(body).encode())
    assert problem in str(refused.value)
    assert "Иванова" not in str(refused.value)


def test_members_a_node_does_not_know_are_ignored() -> None:
    referral_id = uuid.uuid4()
    body = {"referral_id": str(referral_id), "status": "accepted", "at": AT.isoformat(), "added_later": {"x": 1}}
    decoded = decode_body(EnvelopeType.REFERRAL_STATUS, json.dumps(body).encode())
    assert decoded == ReferralStatus(referral_id=referral_id, status="accepted", at=AT)


def test_a_letter_member_is_read_as_sent_so_that_an_unverifiable_letter_is_still_shown() -> None:
    referral_id = str(uuid.uuid4())
    for letter in ("a letter", None, [1, 2], {"signature": 5}):
        payload = msgspec.json.encode({"referral_id": referral_id, "letter": letter})
        assert decode_body(EnvelopeType.REFERRAL_LETTER, payload).letter == letter  # type: ignore[attr-defined]
