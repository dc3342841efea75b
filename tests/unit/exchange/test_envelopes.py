"""Envelopes: round trip, every rejection reason, key rotation, no personal data in clear, the documented vector."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from joserfc import jwe, jws
from joserfc.jwk import OKPKey

from exchange.transport.envelopes import (
    ENVELOPE_VERSION,
    MAX_BODY_BYTES,
    EnvelopeHeader,
    EnvelopeType,
    OpenedEnvelope,
    RejectedEnvelope,
    RejectReason,
    open_envelope,
    peek_header,
    seal,
)

# RFC 9864 deprecates the "EdDSA" identifier; format version 1 uses it on purpose (see docs/envelope.md).
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")

DOC = Path(__file__).resolve().parents[3] / "docs" / "envelope.md"
NOW = dt.datetime(2025, 6, 2, 10, 30, tzinfo=dt.UTC)
NAME, BIRTH_DATE = "Иванова Мария", "2015-04-12"
BODY = {"referral_id": "r-1", "subjects": [{"ref": "child 1", "full_name": NAME, "birth_date": BIRTH_DATE}]}
# joserfc's default registries reject the cb.* members and these algorithms; a peer's library needs the same opt-in.
JWS_REGISTRY = jws.JWSRegistry(algorithms=["EdDSA"], strict_check_header=False)
JWE_REGISTRY = jwe.JWERegistry(algorithms=["ECDH-ES+A256KW", "A256GCM"], strict_check_header=False)


def signing_key() -> OKPKey:
    # Shaped as tenants.keys.KeyRing.private_jwk returns keys: imported from cryptography, with kid and alg.
    return OKPKey.import_key(Ed25519PrivateKey.generate(), {"kid": f"signing-{uuid.uuid4().hex[:20]}", "alg": "EdDSA"})


def encryption_key() -> OKPKey:
    kid = f"encryption-{uuid.uuid4().hex[:20]}"
    return OKPKey.import_key(X25519PrivateKey.generate(), {"kid": kid, "alg": "ECDH-ES+A256KW"})


def public_jwk(key: OKPKey, use: str) -> dict[str, Any]:
    return {**key.as_dict(private=False), "use": use}


@dataclass
class Tenant:
    """A tenant's usable keys, active first, as KeyRing.usable_tenant_keys lists them."""

    id: uuid.UUID = field(default_factory=uuid.uuid4)
    sig: list[OKPKey] = field(default_factory=lambda: [signing_key()])
    enc: list[OKPKey] = field(default_factory=lambda: [encryption_key()])

    def rotate(self) -> None:
        self.sig.insert(0, signing_key())
        self.enc.insert(0, encryption_key())

    @property
    def enc_public(self) -> OKPKey:
        return OKPKey.import_key(public_jwk(self.enc[0], "enc"))


class Directory:
    """The published JWKS of every tenant, as the gateway serves /.well-known/tenants/{id}/jwks.json."""

    def __init__(self, *tenants: Tenant) -> None:
        self.tenants = {t.id: t for t in tenants}

    def __call__(self, tenant_id: uuid.UUID) -> Sequence[Mapping[str, Any]]:
        tenant = self.tenants.get(tenant_id)
        return [public_jwk(k, "sig") for k in tenant.sig] if tenant else []


def header(sender: Tenant, recipient: Tenant, **changes: Any) -> EnvelopeHeader:
    values: dict[str, Any] = {
        "envelope_id": uuid.uuid4(),
        "type": EnvelopeType.REFERRAL_REQUESTED,
        "sender": sender.id,
        "recipient": recipient.id,
        "created_at": NOW - dt.timedelta(minutes=1),
    }
    return EnvelopeHeader(**{**values, **changes})


def routing(h: EnvelopeHeader) -> dict[str, Any]:
    return {
        "cb.v": h.version,
        "cb.eid": str(h.envelope_id),
        "cb.type": str(h.type),
        "cb.from": str(h.sender),
        "cb.to": str(h.recipient),
        "cb.iat": int(h.created_at.timestamp()),
    }


def craft(
    members: Mapping[str, Any], *, signer: OKPKey, to: OKPKey, outer_members: Mapping[str, Any] | None = None
) -> str:
    """A token built with joserfc directly, for headers that seal() refuses to write."""
    signed = jws.serialize_compact(
        {"alg": "EdDSA", "kid": signer.kid, "typ": "cb-envelope+jws", "cty": "json", **members},
        json.dumps(BODY, ensure_ascii=False).encode(),
        signer,
        registry=JWS_REGISTRY,
    )
    return encrypt(signed, to, outer_members if outer_members is not None else members)


def encrypt(plaintext: str | bytes, to: OKPKey, members: Mapping[str, Any]) -> str:
    protected = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": to.kid, "typ": "cb-envelope+jwe", "cty": "JWT"}
    return jwe.encrypt_compact({**protected, **members}, plaintext, to, registry=JWE_REGISTRY)


def inner_jws(token: str, key: OKPKey) -> str:
    plaintext = jwe.decrypt_compact(token, key, registry=JWE_REGISTRY).plaintext
    assert plaintext is not None
    return plaintext.decode()


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def open_as(tenant: Tenant, token: str, directory: Directory, **options: Any) -> OpenedEnvelope | RejectedEnvelope:
    return open_envelope(
        token, recipient=tenant.id, decryption_keys=tenant.enc, sender_keys=directory, now=NOW, **options
    )


def reason_of(result: OpenedEnvelope | RejectedEnvelope) -> RejectReason | None:
    return result.reason if isinstance(result, RejectedEnvelope) else None


@pytest.fixture
def alice() -> Tenant:
    return Tenant()


@pytest.fixture
def bob() -> Tenant:
    return Tenant()


@pytest.fixture
def carol() -> Tenant:
    return Tenant()


@pytest.fixture
def directory(alice: Tenant, bob: Tenant, carol: Tenant) -> Directory:
    return Directory(alice, bob, carol)


def test_round_trip(alice: Tenant, bob: Tenant, directory: Directory) -> None:
    h = header(alice, bob)
    token = seal(h, BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    opened = open_as(bob, token, directory)
    assert isinstance(opened, OpenedEnvelope)
    assert (opened.header, opened.body, opened.signing_kid) == (h, BODY, alice.sig[0].kid)
    assert json.loads(opened.payload) == BODY
    assert peek_header(token) == h
    assert h.version == ENVELOPE_VERSION


def test_seal_writes_a_five_part_compact_jwe_with_the_documented_headers(alice: Tenant, bob: Tenant) -> None:
    h = header(alice, bob)
    token = seal(h, BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    parts = token.split(".")
    assert len(parts) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts)
    outer = json.loads(b64decode(parts[0]))
    assert outer == {
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "kid": bob.enc[0].kid,
        "typ": "cb-envelope+jwe",
        "cty": "JWT",
        "epk": outer["epk"],
        **routing(h),
    }
    signed = jws.extract_compact(inner_jws(token, bob.enc[0]).encode())
    inner = {"alg": "EdDSA", "kid": alice.sig[0].kid, "typ": "cb-envelope+jws", "cty": "json", **routing(h)}
    assert signed.protected == inner
    assert signed.payload == json.dumps(BODY, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_nothing_personal_outside_the_ciphertext(alice: Tenant, bob: Tenant) -> None:
    token = seal(header(alice, bob), BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    secrets = [NAME, "Иванова", "Мария", BIRTH_DATE, "2015"]
    # The header's routing ids are random hex: one may spell "2015" by chance (about one run in 500) and is no leak.
    random_ids = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b(enc|sig)-[0-9a-f]{20}")
    outer_text = random_ids.sub(b"", b64decode(token.split(".")[0])).decode()
    outer = json.loads(b64decode(token.split(".")[0]))
    for secret in secrets:
        assert secret not in token
        assert secret not in outer_text
        assert secret not in random_ids.sub(b"", json.dumps(outer, ensure_ascii=False).encode()).decode()
        for index, part in enumerate(token.split(".")):
            decoded = random_ids.sub(b"", b64decode(part)) if index == 0 else b64decode(part)
            for encoding in ("utf-8", "utf-16-le", "utf-16-be", "cp1251", "koi8-r"):
                assert secret.encode(encoding) not in decoded
            assert secret.encode("ascii", "backslashreplace") not in decoded  # \u-escaped JSON
            assert base64.b64encode(secret.encode()) not in decoded


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        "a.b.c.d.e",
        "....",
        "eyJhbGciOiJFZERTQSJ9.e30.c2ln",  # a bare JWS
        base64.urlsafe_b64encode(b'["alg","enc","kid"]').decode().rstrip("=") + ".AA.AA.AA.AA",
        "Иванова.Мария.a.b.c",
    ],
)
def test_malformed_tokens_are_rejected_and_not_peekable(token: str, bob: Tenant, directory: Directory) -> None:
    result = open_as(bob, token, directory)
    assert isinstance(result, RejectedEnvelope)
    assert (result.reason, result.header) == (RejectReason.MALFORMED, None)
    assert peek_header(token) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"zip": "DEF"},
        {"alg": "RSA-OAEP-256"},
        {"enc": "A128CBC-HS256"},
        {"typ": "JWT"},
        {"kid": 7},
        {"cb.v": True},
        {"cb.v": "1"},
        {"cb.iat": "1748860000"},
        {"cb.iat": 10**20},
        {"cb.type": None},
        {"cb.eid": None},
        {"cb.to": "not-a-uuid"},
    ],
    ids=repr,
)
def test_outer_headers_that_break_the_format_are_malformed(
    changes: dict[str, Any], alice: Tenant, bob: Tenant, directory: Directory
) -> None:
    # Re-encoding the header breaks the AAD too, but these are refused before any decryption is tried.
    token = seal(header(alice, bob), BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    first, rest = token.split(".", 1)
    edited = {**json.loads(b64decode(first)), **changes}
    token = base64.urlsafe_b64encode(json.dumps(edited).encode()).decode().rstrip("=") + "." + rest
    assert reason_of(open_as(bob, token, directory)) == RejectReason.MALFORMED
    assert peek_header(token) is None


def test_ids_must_be_written_in_canonical_form(alice: Tenant, bob: Tenant, directory: Directory) -> None:
    # Another spelling of the same envelope id would slip past deduplication by cb.eid.
    members = routing(header(alice, bob))
    members["cb.eid"] = members["cb.eid"].upper()
    token = craft(members, signer=alice.sig[0], to=bob.enc_public)
    assert reason_of(open_as(bob, token, directory)) == RejectReason.MALFORMED


@dataclass(frozen=True)
class World:
    alice: Tenant
    bob: Tenant
    carol: Tenant
    directory: Directory


def _wrong_recipient(w: World) -> tuple[str, Tenant]:
    return seal(header(w.alice, w.bob), BODY, signing_key=w.alice.sig[0], recipient_key=w.bob.enc_public), w.carol


def _unknown_recipient_key(w: World) -> tuple[str, Tenant]:
    stranger = OKPKey.import_key(public_jwk(encryption_key(), "enc"))  # a key bob never held, or no longer holds
    return seal(header(w.alice, w.bob), BODY, signing_key=w.alice.sig[0], recipient_key=stranger), w.bob


def _decryption_failed(w: World) -> tuple[str, Tenant]:
    parts = seal(header(w.alice, w.bob), BODY, signing_key=w.alice.sig[0], recipient_key=w.bob.enc_public).split(".")
    ciphertext = bytearray(b64decode(parts[3]))
    ciphertext[10] ^= 0x01
    parts[3] = base64.urlsafe_b64encode(ciphertext).decode().rstrip("=")
    return ".".join(parts), w.bob


def _unknown_sender_key(w: World) -> tuple[str, Tenant]:
    unlisted = signing_key()  # alice's directory entry does not list it
    return seal(header(w.alice, w.bob), BODY, signing_key=unlisted, recipient_key=w.bob.enc_public), w.bob


def _bad_signature(w: World) -> tuple[str, Tenant]:
    # Carol signs with her own key but names alice's kid, claiming to be alice.
    forged = OKPKey.import_key({**w.carol.sig[0].as_dict(private=True), "kid": str(w.alice.sig[0].kid)})
    return craft(routing(header(w.alice, w.bob)), signer=forged, to=w.bob.enc_public), w.bob


def _rewrapped_for_another_recipient(w: World) -> tuple[str, Tenant]:
    # Bob holds a correctly signed body from alice and re-encrypts it to carol under a header naming carol.
    h = header(w.alice, w.bob)
    signed = inner_jws(seal(h, BODY, signing_key=w.alice.sig[0], recipient_key=w.bob.enc_public), w.bob.enc[0])
    return encrypt(signed, w.carol.enc_public, {**routing(h), "cb.to": str(w.carol.id)}), w.carol


def _rewrapped_as_another_type(w: World) -> tuple[str, Tenant]:
    h = header(w.alice, w.bob)
    signed = inner_jws(seal(h, BODY, signing_key=w.alice.sig[0], recipient_key=w.bob.enc_public), w.bob.enc[0])
    return encrypt(signed, w.bob.enc_public, {**routing(h), "cb.type": "consent.withdrawn"}), w.bob


def _stale(w: World) -> tuple[str, Tenant]:
    old = header(w.alice, w.bob, created_at=NOW - dt.timedelta(days=7, seconds=1))
    return seal(old, BODY, signing_key=w.alice.sig[0], recipient_key=w.bob.enc_public), w.bob


def _from_the_future(w: World) -> tuple[str, Tenant]:
    ahead = header(w.alice, w.bob, created_at=NOW + dt.timedelta(minutes=5, seconds=1))
    return seal(ahead, BODY, signing_key=w.alice.sig[0], recipient_key=w.bob.enc_public), w.bob


def _unknown_type(w: World) -> tuple[str, Tenant]:
    members = {**routing(header(w.alice, w.bob)), "cb.type": "referral.teleported"}
    return craft(members, signer=w.alice.sig[0], to=w.bob.enc_public), w.bob


def _version_2(w: World) -> tuple[str, Tenant]:
    members = {**routing(header(w.alice, w.bob)), "cb.v": 2}
    return craft(members, signer=w.alice.sig[0], to=w.bob.enc_public), w.bob


def _not_a_jws_inside(w: World) -> tuple[str, Tenant]:
    return encrypt("just text", w.bob.enc_public, routing(header(w.alice, w.bob))), w.bob


def _body_not_an_object(w: World) -> tuple[str, Tenant]:
    members = routing(header(w.alice, w.bob))
    signed = jws.serialize_compact(
        {"alg": "EdDSA", "kid": w.alice.sig[0].kid, "typ": "cb-envelope+jws", "cty": "json", **members},
        b'["not", "an", "object"]',
        w.alice.sig[0],
        registry=JWS_REGISTRY,
    )
    return encrypt(signed, w.bob.enc_public, members), w.bob


REJECTIONS: list[tuple[Callable[[World], tuple[str, Tenant]], RejectReason, bool]] = [
    # (case, expected reason, whether the rejection carries the outer header)
    (_wrong_recipient, RejectReason.WRONG_RECIPIENT, True),
    (_unknown_recipient_key, RejectReason.UNKNOWN_RECIPIENT_KEY, True),
    (_decryption_failed, RejectReason.DECRYPTION_FAILED, True),
    (_unknown_sender_key, RejectReason.UNKNOWN_SENDER_KEY, True),
    (_bad_signature, RejectReason.BAD_SIGNATURE, True),
    (_rewrapped_for_another_recipient, RejectReason.HEADER_MISMATCH, True),
    (_rewrapped_as_another_type, RejectReason.HEADER_MISMATCH, True),
    (_stale, RejectReason.STALE, True),
    (_from_the_future, RejectReason.FROM_THE_FUTURE, True),
    (_unknown_type, RejectReason.UNKNOWN_TYPE, False),
    (_version_2, RejectReason.UNSUPPORTED_VERSION, False),
    (_not_a_jws_inside, RejectReason.MALFORMED, True),
    (_body_not_an_object, RejectReason.MALFORMED, True),
]


@pytest.mark.parametrize(("case", "reason", "has_header"), REJECTIONS, ids=[c.__name__[1:] for c, _, _ in REJECTIONS])
def test_rejections(
    case: Callable[[World], tuple[str, Tenant]],
    reason: RejectReason,
    has_header: bool,
    alice: Tenant,
    bob: Tenant,
    carol: Tenant,
    directory: Directory,
) -> None:
    token, reader = case(World(alice, bob, carol, directory))
    result = open_as(reader, token, directory)
    assert isinstance(result, RejectedEnvelope)
    assert result.reason == reason
    assert (result.header is not None) == has_header
    assert (peek_header(token) is not None) == has_header
    for secret in (NAME, BIRTH_DATE, "r-1"):
        assert secret not in result.detail


def test_freshness_bounds_are_inclusive(alice: Tenant, bob: Tenant, directory: Directory) -> None:
    for created_at in (NOW - dt.timedelta(days=7), NOW + dt.timedelta(minutes=5)):
        h = header(alice, bob, created_at=created_at)
        token = seal(h, BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
        assert isinstance(open_as(bob, token, directory), OpenedEnvelope)
    token = seal(header(alice, bob), BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    late = open_as(bob, token, directory, max_age=dt.timedelta(seconds=30))
    assert isinstance(late, RejectedEnvelope)
    assert late.reason == RejectReason.STALE


def test_a_type_this_node_does_not_accept_is_refused_with_its_header(
    alice: Tenant, bob: Tenant, directory: Directory
) -> None:
    h = header(alice, bob, type=EnvelopeType.PLAN_TASK)
    token = seal(h, BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    result = open_as(bob, token, directory, accepted_types={EnvelopeType.RECEIPT})
    assert isinstance(result, RejectedEnvelope)
    assert (result.reason, result.header) == (RejectReason.UNKNOWN_TYPE, h)
    assert isinstance(open_as(bob, token, directory, accepted_types=set(EnvelopeType)), OpenedEnvelope)


def test_rotated_keys_open_during_the_grace_period_only(alice: Tenant, bob: Tenant, directory: Directory) -> None:
    h = header(alice, bob)
    token = seal(h, BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    old_sig_kid = alice.sig[0].kid
    alice.rotate()
    bob.rotate()
    opened = open_as(bob, token, directory)  # both keep their retired keys listed
    assert isinstance(opened, OpenedEnvelope)
    assert (opened.body, opened.signing_kid) == (BODY, old_sig_kid)

    del alice.sig[1:]  # alice's grace period has ended
    assert reason_of(open_as(bob, token, directory)) == RejectReason.UNKNOWN_SENDER_KEY
    del bob.enc[1:]
    assert reason_of(open_as(bob, token, directory)) == RejectReason.UNKNOWN_RECIPIENT_KEY


def test_seal_refuses_programming_errors(alice: Tenant, bob: Tenant) -> None:
    with pytest.raises(ValueError, match="version"):
        seal(header(alice, bob, version=2), BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    with pytest.raises(ValueError, match="signing_key"):
        seal(header(alice, bob), BODY, signing_key=bob.enc[0], recipient_key=bob.enc_public)
    with pytest.raises(ValueError, match="recipient_key"):
        seal(header(alice, bob), BODY, signing_key=alice.sig[0], recipient_key=alice.sig[0])
    with pytest.raises(ValueError, match="limited"):
        seal(
            header(alice, bob),
            {"note": "x" * (MAX_BODY_BYTES + 1)},
            signing_key=alice.sig[0],
            recipient_key=bob.enc_public,
        )
    with pytest.raises(ValueError, match="UTC"):
        header(alice, bob, created_at=dt.datetime(2025, 6, 2, 10, 30))  # naive
    with pytest.raises(ValueError, match="whole seconds"):
        header(alice, bob, created_at=NOW.replace(microsecond=5))


def test_open_requires_an_aware_now(alice: Tenant, bob: Tenant, directory: Directory) -> None:
    token = seal(header(alice, bob), BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    with pytest.raises(ValueError, match="aware"):
        open_envelope(
            token, recipient=bob.id, decryption_keys=bob.enc, sender_keys=directory, now=NOW.replace(tzinfo=None)
        )


# -- the test vector in docs/envelope.md ----------------------------------------------------------------


def documented_blocks() -> dict[str, str]:
    """Fenced blocks of docs/envelope.md by their name: ```json body ... ``` becomes {"body": "..."}."""
    return {m[1]: m[2] for m in re.finditer(r"^```\w+ ([\w-]+)\n(.*?)\n```$", DOC.read_text("utf-8"), re.M | re.S)}


def test_the_documented_test_vector_opens_to_the_documented_values() -> None:
    blocks = documented_blocks()
    sender_private = json.loads(blocks["sender-signing-key"])
    recipient_key = OKPKey.import_key(json.loads(blocks["recipient-encryption-key"]))
    members = json.loads(blocks["header"])
    body = json.loads(blocks["body"])
    token = blocks["token"]
    sender_public = {k: v for k, v in sender_private.items() if k != "d"}
    sender_id, recipient_id = uuid.UUID(members["cb.from"]), uuid.UUID(members["cb.to"])
    created = dt.datetime.fromtimestamp(members["cb.iat"], dt.UTC)

    opened = open_envelope(
        token,
        recipient=recipient_id,
        decryption_keys=[recipient_key],
        sender_keys=lambda tenant: [sender_public] if tenant == sender_id else [],
        now=created + dt.timedelta(minutes=1),
    )

    assert isinstance(opened, OpenedEnvelope)
    assert opened.body == body
    assert routing(opened.header) == members
    assert opened.signing_kid == sender_private["kid"]
    assert peek_header(token) == opened.header
    # The decoded layers shown in the doc are the real ones.
    assert json.loads(b64decode(token.split(".")[0])) == json.loads(blocks["outer-protected-header"])
    assert inner_jws(token, recipient_key) == blocks["inner-jws"]
    signed = jws.extract_compact(blocks["inner-jws"].encode())
    assert signed.protected == json.loads(blocks["inner-protected-header"])
    assert signed.payload == blocks["payload"].encode()
    # Ed25519 is deterministic: the documented key re-signs the documented bytes to the documented signature.
    sender_key = OKPKey.import_key(sender_private)
    resigned = jws.serialize_compact(signed.protected, signed.payload, sender_key, registry=JWS_REGISTRY)
    assert resigned.split(".")[2] == blocks["inner-jws"].split(".")[2]


def test_the_documented_token_is_refused_outside_its_window_and_to_others() -> None:
    blocks = documented_blocks()
    members = json.loads(blocks["header"])
    created = dt.datetime.fromtimestamp(members["cb.iat"], dt.UTC)
    recipient_key = OKPKey.import_key(json.loads(blocks["recipient-encryption-key"]))
    sender_public = {k: v for k, v in json.loads(blocks["sender-signing-key"]).items() if k != "d"}
    for recipient, now, reason in [
        (uuid.UUID(members["cb.to"]), created + dt.timedelta(days=8), RejectReason.STALE),
        (uuid.UUID(members["cb.from"]), created, RejectReason.WRONG_RECIPIENT),
    ]:
        result = open_envelope(
            blocks["token"],
            recipient=recipient,
            decryption_keys=[recipient_key],
            sender_keys=lambda _: [sender_public],
            now=now,
        )
        assert isinstance(result, RejectedEnvelope)
        assert result.reason == reason
