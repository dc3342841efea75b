"""The crypto floor: the JOSE work one referral needs end to end, timed alone on one core.

One referral travels as four envelopes: referral.requested to the recipient, its receipt back, referral.letter
(the signed PDF inside) to the recipient, and that one's receipt back. Each is sealed (Ed25519 JWS inside an
X25519 ECDH-ES+A256KW / A256GCM JWE) by one side and opened and verified by the other; the letter is signed once
and verified twice (the sender's self-check before sending and the recipient's check on arrival). The bodies are
the ones the in-process app really sent (statements.py), sealed here with fresh keys through
exchange.transport.envelopes and exchange.letters.signing, the functions the gateway uses. Key unwrapping, key
lookups and everything else around the crypto are left out: this is the least any implementation of the format
must spend. (The inbox answers a batch with one receipt per sender, so the two receipts counted here are an upper
bound of what a referral costs in receipts.)
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import OKPKey
from uuid_utils.compat import uuid7

from exchange.letters.signing import LetterBinding, Verification, sign_letter, verify_letter
from exchange.transport.envelopes import EnvelopeHeader, EnvelopeType, OpenedEnvelope, open_envelope, seal


@dataclass(frozen=True)
class ReferralBodies:
    """The bodies of one referral's envelopes, as the gateway sealed them."""

    requested: dict[str, Any]
    receipt: dict[str, Any]
    letter: dict[str, Any]

    @property
    def pdf(self) -> bytes:
        return base64.b64decode(self.letter["letter"]["content"])


@dataclass(frozen=True)
class _Party:
    tenant_id: uuid.UUID
    signing: OKPKey
    encryption: OKPKey

    @classmethod
    def generate(cls, name: str) -> _Party:
        return cls(
            uuid.uuid4(),
            OKPKey.generate_key("Ed25519", {"kid": f"{name}-sig", "use": "sig"}),
            OKPKey.generate_key("X25519", {"kid": f"{name}-enc", "use": "enc"}),
        )

    def published_signing(self) -> list[dict[str, Any]]:
        return [self.signing.as_dict(private=False)]


def _travel(body: Mapping[str, Any], kind: EnvelopeType, origin: _Party, target: _Party, now: dt.datetime) -> None:
    header = EnvelopeHeader(
        envelope_id=uuid7(), type=kind, sender=origin.tenant_id, recipient=target.tenant_id, created_at=now
    )
    public = OKPKey.import_key(target.encryption.as_dict(private=False))
    token = seal(header, body, signing_key=origin.signing, recipient_key=public)
    opened = open_envelope(
        token,
        recipient=target.tenant_id,
        decryption_keys=[target.encryption],
        sender_keys=lambda _: origin.published_signing(),
        now=now,
    )
    if not isinstance(opened, OpenedEnvelope):
        raise RuntimeError(f"the crypto floor's own envelope did not open: {opened.detail}")


def _one_referral(bodies: ReferralBodies, pdf: bytes, sender: _Party, recipient: _Party, now: dt.datetime) -> None:
    _travel(bodies.requested, EnvelopeType.REFERRAL_REQUESTED, sender, recipient, now)
    _travel(bodies.receipt, EnvelopeType.RECEIPT, recipient, sender, now)
    binding = LetterBinding("БЕНЧ-1", uuid.uuid4(), sender.tenant_id, recipient.tenant_id)
    signature = sign_letter(pdf, binding, signing_key=sender.signing, issued_at=now)
    for _ in range(2):
        if verify_letter(pdf, signature, binding, sender.published_signing()).verification is not Verification.VALID:
            raise RuntimeError("the crypto floor's own letter signature did not verify")
    _travel(bodies.letter, EnvelopeType.REFERRAL_LETTER, sender, recipient, now)
    _travel(bodies.receipt, EnvelopeType.RECEIPT, recipient, sender, now)


def measure_crypto_floor(bodies: ReferralBodies, seconds: float) -> dict[str, Any]:
    """Referrals per second that the JOSE work alone allows on one core, repeated for about `seconds`."""
    sender, recipient = _Party.generate("sender"), _Party.generate("recipient")
    pdf, now = bodies.pdf, dt.datetime.now(dt.UTC).replace(microsecond=0)
    _one_referral(bodies, pdf, sender, recipient, now)  # warm: joserfc builds its registries' lookups once
    done, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        _one_referral(bodies, pdf, sender, recipient, now)
        done += 1
    return {
        "crypto_floor_referrals_per_s": round(done / elapsed, 1),
        "crypto_floor_ms_per_referral": round(elapsed * 1000 / done, 3),
        "crypto_floor_letter_pdf_bytes": len(pdf),
    }
