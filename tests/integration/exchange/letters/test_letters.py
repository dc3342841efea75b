"""Referral letters across agencies over the real bus, on SQLite and PostgreSQL: numbering, signature, download."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import re
import uuid
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from exchange.cases.models import Document
from exchange.letters.models import Letter, LetterSequence
from exchange.letters.numbering import next_registration_number, set_registration_prefix
from exchange.letters.render import LetterContent, LetterRenderer, LetterUnavailable
from exchange.letters.signing import LetterBinding, sign_letter
from exchange.letters.worker import CLAIM_FOR, LetterWorker
from exchange.referrals.models import Referral
from exchange.transport.envelopes import EnvelopeType, OpenedEnvelope, open_envelope
from exchange.transport.jetstream import inbox_durable
from exchange.transport.models import DeadLetter, InboxEnvelope, OutboxEnvelope
from gateway.bus import ENVELOPE_STREAM
from gateway.runtime import Runtime
from gateway.workers import WorkerName
from tenants.algorithms import DEPRECATED_ACCEPTED_UNTIL
from tenants.models import KeyUse
from tenants.persistence import platform_session, tenant_session
from tests.environment import TravelClock
from tests.factories import forged_envelope, make_tenant
from tests.integration.helpers.agencies import CHILD_NAME, Agency, open_case, referral_body
from tests.letters import version_1_signature
from tests.pdf import pdf_text, pdfa_conformance
from tests.polling import eventually

# Letter format version 1 names its signature "EdDSA" (deprecated by RFC 9864); the tests of it read it on purpose.
reads_version_1 = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")

NUMBER = re.compile(r"^СЕМ-\d{4}/(\d{4})$")


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


async def _ready(agency: Agency, referral_id: str) -> dict[str, Any]:
    """The referral's detail once its letter is ready on this agency's side (laid out, or arrived and checked)."""

    async def ready() -> dict[str, Any] | None:
        response = await agency.get(f"/api/v1/referrals/{referral_id}")
        if response.status_code != 200:
            return None
        detail = dict(response.json())
        return detail if (detail.get("letter") or {}).get("status") == "ready" else None

    result: dict[str, Any] = await eventually(ready)
    return result


async def test_the_letter_travels_signed_and_both_sides_download_it(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, kdn = agencies
    case, consent = await open_case(centre, opeka)
    sent = await _send(centre, case, opeka, kind="petition")
    referral_id = sent["id"]
    # The send numbers the letter and returns at once; the layout and the signature come after the commit.
    assert sent["letter"]["status"] == "pending"
    assert sent["letter"]["sha256"] is None
    assert sent["letter"]["signature"] is None
    letter = (await _ready(centre, referral_id))["letter"]
    assert letter["registration_number"] == sent["letter"]["registration_number"]
    match = NUMBER.match(letter["registration_number"])
    assert match is not None, letter
    assert letter["signature"] == "valid"
    assert letter["language"] == "ru"

    own = await centre.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    assert own.status_code == 200, own.text
    assert own.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(own.content).hexdigest() == letter["sha256"]
    assert pdfa_conformance(own.content) == ("2", "B")
    text = pdf_text(own.content)
    for expected in (
        "ХОДАТАЙСТВО",
        letter["registration_number"],
        "Agency semya",
        "Agency opeka",
        CHILD_NAME,
        "Семья нуждается в помощи органа опеки",
        "жильё",
        "Приложение 1",
    ):
        assert expected in text, expected
    # Only what the referral shares: the address and health notes stay with the centre.
    assert "Садовая" not in text
    assert "астма" not in text

    incoming = await _ready(opeka, referral_id)
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
    await _ready(centre, english["id"])
    english_pdf = await centre.get(f"/api/v1/referrals/{english['id']}/letter.pdf")
    english_text = pdf_text(english_pdf.content)
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


async def _delivered_with_letter(
    runtime: Runtime, centre: Agency, opeka: Agency
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A referral the centre sent with its letter, once the letter is ready on the recipient's side: the recipient's
    detail of it, and the body of the referral's own envelope as the recipient opens it."""
    case, _ = await open_case(centre, opeka)
    original = await _ready(opeka, (await _send(centre, case, opeka))["id"])
    requested = await _opened(runtime, centre, opeka, original["id"], EnvelopeType.REFERRAL_REQUESTED)
    return original, requested


async def _opened(runtime: Runtime, sender: Agency, recipient: Agency, referral_id: str, kind: EnvelopeType) -> Any:
    """The body of the envelope of `kind` the sender's outbox holds for a referral, opened as its recipient would."""
    deps = runtime.exchange
    async with platform_session(runtime.sessions) as session:
        token = await session.scalar(
            select(OutboxEnvelope.token).where(
                OutboxEnvelope.tenant_id == sender.id,
                OutboxEnvelope.exchange_id == uuid.UUID(referral_id),
                OutboxEnvelope.envelope_type == kind.value,
            )
        )
        assert token is not None
        decryption = [
            deps.keyring.private_jwk(k)
            for k in await deps.keyring.usable_tenant_keys(session, recipient.id, KeyUse.ENCRYPTION)
        ]
        sender_keys = await deps.published.signing_keys(session, sender.id)
    opened = open_envelope(
        token,
        recipient=recipient.id,
        decryption_keys=decryption,
        sender_keys=lambda _: sender_keys,
        now=deps.clock.now(),
    )
    assert isinstance(opened, OpenedEnvelope)
    return opened.body


async def _forge(runtime: Runtime, sender: Agency, recipient: Agency, kind: EnvelopeType, body: Any) -> None:
    """Put an envelope in the sender's outbox as a sender's node would (signed with its real key), and relay it."""
    await forged_envelope(
        runtime,
        sender=sender.id,
        recipient=recipient.id,
        envelope_type=kind,
        body=body,
        exchange_id=uuid.UUID(body["referral_id"]),
        relay=True,
    )
    runtime.wake_relay()


async def _forge_referral(
    runtime: Runtime, centre: Agency, opeka: Agency, requested: dict[str, Any], referral_id: uuid.UUID, number: str
) -> None:
    """The centre's node sends `requested` again as a new referral, announcing a letter registered as `number`."""
    announced = {**requested["letter"], "registration_number": number}
    await _forge(
        runtime,
        centre,
        opeka,
        EnvelopeType.REFERRAL_REQUESTED,
        {**requested, "referral_id": str(referral_id), "letter": announced},
    )


@reads_version_1
async def test_a_tampered_letter_is_shown_invalid_to_the_recipient(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    """A sender's node that alters one byte of a signed PDF: the recipient's check catches it."""
    centre, opeka, _ = agencies
    original, requested = await _delivered_with_letter(runtime, centre, opeka)
    # The referral's own envelope announces the letter and carries no PDF; the letter follows in its own envelope.
    assert set(requested["letter"]) == {"v", "registration_number", "language", "name"}
    sent_letter = (await _opened(runtime, centre, opeka, original["id"], EnvelopeType.REFERRAL_LETTER))["letter"]
    pdf = base64.b64decode(sent_letter["content"])
    deps = runtime.exchange
    async with platform_session(runtime.sessions) as session:
        signing = (await deps.keyring.usable_tenant_keys(session, centre.id, KeyUse.SIGNING))[0]

    forged: dict[str, str] = {}
    labels = ("untouched", "tampered", "unsigned", "garbled", "not-an-object", "renumbered", "v1", "v1-late")
    for label in labels:
        referral_id = uuid.uuid4()
        number = f"{sent_letter['registration_number']}-{label}"
        signed_number = f"{number}-other" if label == "renumbered" else number
        binding = LetterBinding(signed_number, referral_id, centre.id, opeka.id)
        key = deps.keyring.private_jwk(signing)
        signature = sign_letter(pdf, binding, signing_key=key, issued_at=deps.clock.now())
        if label.startswith("v1"):  # from a node of the release before letter format version 2
            signed_at = DEPRECATED_ACCEPTED_UNTIL if label == "v1-late" else deps.clock.now()
            signature = version_1_signature(pdf, binding, key, signed_at)
        content = bytearray(pdf)
        if label == "tampered":
            content[len(content) // 2] ^= 0x01
        letter: Any = {
            **sent_letter,
            "registration_number": signed_number,
            "signature": signature,
            "content": base64.b64encode(bytes(content)).decode(),
        }
        if label == "unsigned":
            del letter["signature"]
        if label == "garbled":
            letter["content"] = "not base64 at all!"
        if label == "not-an-object":
            letter = "a letter"
        await _forge_referral(runtime, centre, opeka, requested, referral_id, number)
        await _forge(
            runtime, centre, opeka, EnvelopeType.REFERRAL_LETTER, {"referral_id": str(referral_id), "letter": letter}
        )
        forged[label] = str(referral_id)

    untouched = await _ready(opeka, forged["untouched"])
    assert untouched["letter"]["signature"] == "valid"
    tampered = await _ready(opeka, forged["tampered"])
    assert tampered["letter"]["signature"] == "invalid"
    assert (await _ready(opeka, forged["unsigned"]))["letter"]["signature"] == "missing"
    assert (await _ready(opeka, forged["garbled"]))["letter"]["signature"] == "invalid"
    assert (await _ready(opeka, forged["not-an-object"]))["letter"]["signature"] == "invalid"
    # Validly signed, but not the number its referral announced.
    assert (await _ready(opeka, forged["renumbered"]))["letter"]["signature"] == "invalid"
    # Format version 1 ("EdDSA"): valid when signed within its period, invalid when signed after it.
    assert (await _ready(opeka, forged["v1"]))["letter"]["signature"] == "valid"
    assert (await _ready(opeka, forged["v1-late"]))["letter"]["signature"] == "invalid"
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
                AuditEvent.log_tenant_id == opeka.id, AuditEvent.action == "exchange:letter:receive"
            )
        )
        verdicts = {e.resource_id: e.canonical for e in received}
    assert '"letter":"invalid"' in verdicts[forged["tampered"]]
    assert '"letter":"valid"' in verdicts[forged["untouched"]]
    assert '"letter":"valid"' in verdicts[original["id"]]


async def test_a_letter_that_overtakes_its_referral_is_applied_once_the_referral_arrives(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    original, requested = await _delivered_with_letter(runtime, centre, opeka)
    sent_letter = (await _opened(runtime, centre, opeka, original["id"], EnvelopeType.REFERRAL_LETTER))["letter"]
    pdf = base64.b64decode(sent_letter["content"])
    deps = runtime.exchange
    async with platform_session(runtime.sessions) as session:
        signing = (await deps.keyring.usable_tenant_keys(session, centre.id, KeyUse.SIGNING))[0]
    referral_id = uuid.uuid4()
    number = f"{sent_letter['registration_number']}-late"
    binding = LetterBinding(number, referral_id, centre.id, opeka.id)
    signature = sign_letter(pdf, binding, signing_key=deps.keyring.private_jwk(signing), issued_at=deps.clock.now())
    letter = {**sent_letter, "registration_number": number, "signature": signature}

    await _forge(
        runtime, centre, opeka, EnvelopeType.REFERRAL_LETTER, {"referral_id": str(referral_id), "letter": letter}
    )

    async def tried() -> bool:
        async with platform_session(runtime.sessions) as session:
            sent_at = await session.scalar(
                select(OutboxEnvelope.sent_at).where(
                    OutboxEnvelope.exchange_id == referral_id,
                    OutboxEnvelope.envelope_type == EnvelopeType.REFERRAL_LETTER.value,
                )
            )
        return sent_at is not None

    await eventually(tried)

    async def handed_back() -> bool:
        # The inbox has handled the early letter and asked the bus to bring it again later: a parked envelope would be
        # acknowledged, never redelivered. Every earlier envelope of this test was applied (the original's letter is
        # ready at the recipient), so the one redelivered is the early letter.
        info = await runtime.bus.js.consumer_info(ENVELOPE_STREAM, inbox_durable(opeka.id))
        return info.num_redelivered >= 1

    await eventually(handed_back)
    async with platform_session(runtime.sessions) as session:
        assert await session.scalar(select(func.count()).select_from(DeadLetter)) == 0
        letters_applied = select(func.count()).where(
            InboxEnvelope.tenant_id == opeka.id, InboxEnvelope.envelope_type == EnvelopeType.REFERRAL_LETTER.value
        )
        # Only the genuine letter of the first referral: the early one is neither applied nor parked.
        assert await session.scalar(letters_applied) == 1
    assert (await opeka.get(f"/api/v1/referrals/{referral_id}")).status_code == 404

    await _forge_referral(runtime, centre, opeka, requested, referral_id, number)
    arrived = await _ready(opeka, str(referral_id))
    assert arrived["letter"] == {
        "registration_number": number,
        "sha256": sent_letter["sha256"],
        "signature": "valid",
        "language": "ru",
        "status": "ready",
    }
    download = await opeka.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    assert download.status_code == 200
    assert download.content == pdf


class _LayoutInTheWay:
    """The real renderer, with a test's own layout step in front of it; all else goes straight through."""

    def __init__(self, inner: LetterRenderer) -> None:
        self.inner = inner

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self.inner.zone

    @property
    def unavailable(self) -> LetterUnavailable | None:
        return None

    def warm_up(self) -> None:
        self.inner.warm_up()

    async def typeset(self, root: Path, template: str, data: Mapping[str, Any], created: dt.datetime) -> bytes:
        return await self.inner.typeset(root, template, data, created)


class _CrashingRenderer(_LayoutInTheWay):
    """A layout that never finishes: the node dies while laying the letter out."""

    def __init__(self, inner: LetterRenderer) -> None:
        super().__init__(inner)
        self.started = asyncio.Event()

    async def render(self, content: LetterContent) -> bytes:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class _BatchRenderer(_LayoutInTheWay):
    """The real layout, held until `together` letters are being laid out at once; one letter's layout fails."""

    def __init__(self, inner: LetterRenderer, *, together: int, failing: str) -> None:
        super().__init__(inner)
        self.together, self.failing = together, failing
        self.in_layout, self.most_at_once = 0, 0
        self._all_in = asyncio.Event()

    async def render(self, content: LetterContent) -> bytes:
        self.in_layout += 1
        self.most_at_once = max(self.most_at_once, self.in_layout)
        if self.in_layout == self.together:
            self._all_in.set()
        await self._all_in.wait()  # a worker laying letters out one at a time would never get here
        try:
            if content.registration_number == self.failing:
                raise LetterUnavailable("The letter is too long to send; shorten the referral's text.")
            return await self.inner.render(content)
        finally:
            self.in_layout -= 1


async def test_a_restarted_worker_lays_out_a_pending_letter_exactly_once(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime, clock: TravelClock
) -> None:
    centre, opeka, _ = agencies
    letters = runtime.workers[WorkerName.LETTERS]
    await letters.stop()  # this node's letter worker is down: sends still go out, letters stay pending
    case, _ = await open_case(centre, opeka)
    sent = await _send(centre, case, opeka)
    referral_id = sent["id"]
    assert sent["letter"]["status"] == "pending"
    incoming = await _incoming(opeka, referral_id)  # the referral does not wait for its letter
    assert incoming["letter"] == {**sent["letter"], "status": "pending"}
    for agency in (centre, opeka):
        pending = await agency.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
        assert pending.status_code == 409, pending.text
        assert pending.headers["content-type"] == "application/problem+json"
        assert "not ready yet" in pending.json()["detail"]

    async with platform_session(runtime.sessions) as session:
        letter_id = await session.scalar(
            select(Letter.id)
            .join(Referral, Referral.id == Letter.referral_id)
            .where(Referral.exchange_id == uuid.UUID(referral_id), Referral.tenant_id == centre.id)
        )
    assert letter_id is not None

    # A node claims the letter and dies in the middle of its layout.
    crashing = _CrashingRenderer(runtime.exchange.letters)
    doomed = LetterWorker(runtime.sessions, dataclasses.replace(runtime.exchange, letters=crashing))
    crash = asyncio.create_task(doomed.render_once())
    await crashing.started.wait()
    crash.cancel()
    await asyncio.wait({crash})
    survivor = LetterWorker(runtime.sessions, runtime.exchange)
    assert await survivor.render_once() == 0  # still claimed by the dead node
    # Two nodes lay the same letter out at once: it is stored, signed and sent once.
    stored = await asyncio.gather(
        survivor.render(letter_id), LetterWorker(runtime.sessions, runtime.exchange).render(letter_id)
    )
    assert sorted(stored) == [False, True]
    clock.advance(CLAIM_FOR + dt.timedelta(seconds=1))  # the dead node's claim lapses: nothing is left to do
    assert await survivor.render_once() == 0

    ready = await _ready(centre, referral_id)
    assert ready["letter"]["signature"] == "valid"
    async with platform_session(runtime.sessions) as session:
        envelopes = await session.scalar(
            select(func.count()).where(
                OutboxEnvelope.exchange_id == uuid.UUID(referral_id),
                OutboxEnvelope.envelope_type == EnvelopeType.REFERRAL_LETTER.value,
            )
        )
        documents = await session.scalar(
            select(func.count())
            .select_from(Document)
            .join(Referral, Referral.id == Document.referral_id)
            .where(Referral.exchange_id == uuid.UUID(referral_id), Referral.tenant_id == centre.id)
        )
    assert (envelopes, documents) == (1, 1)

    letters.start()
    runtime.wake_relay()
    theirs = await _ready(opeka, referral_id)
    assert theirs["letter"] == ready["letter"]
    own = await centre.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    partner = await opeka.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    assert own.status_code == partner.status_code == 200
    assert own.content == partner.content


async def test_a_batch_is_laid_out_together_and_one_failure_holds_up_no_neighbour(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    layout = runtime.workers[WorkerName.LETTERS]
    await layout.stop()  # letters stay pending until the worker below takes them
    case, _ = await open_case(centre, opeka)
    sent = [await _send(centre, case, opeka) for _ in range(4)]
    numbers = [s["letter"]["registration_number"] for s in sent]
    batch = _BatchRenderer(runtime.exchange.letters, together=len(sent), failing=numbers[1])
    worker = LetterWorker(runtime.sessions, dataclasses.replace(runtime.exchange, letters=batch), batch=len(sent))
    async with asyncio.timeout(60):  # a worker that lays letters out one at a time would wait here for ever
        assert await worker.render_once() == len(sent)
    assert batch.most_at_once == len(sent)

    async with platform_session(runtime.sessions) as session:
        letters = {
            letter.registration_number: letter
            for letter in await session.scalars(
                select(Letter).where(Letter.registration_number.in_(numbers), Letter.tenant_id == centre.id)
            )
        }
    assert {n: letters[n].status for n in numbers} == {n: "pending" if n == numbers[1] else "ready" for n in numbers}
    failed = letters[numbers[1]]
    assert (failed.attempts, failed.last_error) == (1, "LetterUnavailable")
    assert failed.next_attempt_at is not None

    layout.start()
    runtime.wake_relay()
    for referral in (sent[0], sent[2], sent[3]):
        assert (await _ready(opeka, referral["id"]))["letter"]["signature"] == "valid"


async def test_a_letter_arriving_after_consent_was_withdrawn_is_not_kept(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    letters = runtime.workers[WorkerName.LETTERS]
    await letters.stop()
    case, consent = await open_case(centre, opeka)
    sent = await _send(centre, case, opeka)
    referral_id = sent["id"]
    await _incoming(opeka, referral_id)
    withdrawn = await centre.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": "Мать отозвала согласие"})
    assert withdrawn.status_code == 200, withdrawn.text

    async def restricted() -> bool:
        return bool((await opeka.get(f"/api/v1/referrals/{referral_id}")).json()["restricted"])

    await eventually(restricted)
    letters.start()
    runtime.wake_relay()
    copy = await _ready(opeka, referral_id)
    assert copy["letter"]["signature"] == "valid"  # checked and registered ...
    erased = await opeka.get(f"/api/v1/referrals/{referral_id}/letter.pdf")
    assert erased.status_code == 404  # ... but the PDF, which names the child, was never stored
    async with platform_session(runtime.sessions) as session:
        kept = await session.scalar(
            select(Letter.document_id)
            .join(Referral, Referral.id == Letter.referral_id)
            .where(Referral.exchange_id == uuid.UUID(referral_id), Referral.tenant_id == opeka.id)
        )
    assert kept is None
    assert (await centre.get(f"/api/v1/referrals/{referral_id}/letter.pdf")).status_code == 200


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
    # A replay takes no number (by then the letter may be laid out: same number, maybe a later status).
    assert replay.json()["letter"]["registration_number"] == first.json()["letter"]["registration_number"]
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
