"""Envelopes: round trip, every rejection reason, key rotation, no personal data in clear, the documented vectors,
and version 1 (the deprecated "EdDSA" name) read until its period ends."""

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
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from exchange.transport.envelopes import (
    ENVELOPE_VERSION,
    MAX_BODY_BYTES,
    SIGNATURE_ALG_OF_VERSION,
    EnvelopeHeader,
    EnvelopeType,
    OpenedEnvelope,
    RejectedEnvelope,
    RejectReason,
    open_envelope,
    peek_header,
    seal,
)
from tenants.algorithms import DEPRECATED_ACCEPTED_UNTIL

# Version 1 names its signatures "EdDSA", which RFC 9864 deprecates; the tests of version 1 read it on purpose.
reads_version_1 = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")

DOC = Path(__file__).resolve().parents[3] / "docs" / "envelope.md"
NOW = dt.datetime(2025, 6, 2, 10, 30, tzinfo=dt.UTC)
NAME, BIRTH_DATE = "Иванова Мария", "2015-04-12"
BODY = {"referral_id": "r-1", "subjects": [{"ref": "child 1", "full_name": NAME, "birth_date": BIRTH_DATE}]}
# joserfc's default registries reject the cb.* members and these algorithms; a peer's library needs the same opt-in.
JWS_REGISTRY = jws.JWSRegistry(algorithms=["Ed25519", "EdDSA"], strict_check_header=False)
JWE_REGISTRY = jwe.JWERegistry(algorithms=["ECDH-ES+A256KW", "A256GCM"], strict_check_header=False)


def signing_key(alg: str = "Ed25519") -> OKPKey:
    # Shaped as tenants.keys.KeyRing.private_jwk returns keys: imported from cryptography, with kid and alg.
    return OKPKey.import_key(Ed25519PrivateKey.generate(), {"kid": f"signing-{uuid.uuid4().hex[:20]}", "alg": alg})


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
    members: Mapping[str, Any],
    *,
    signer: OKPKey,
    to: OKPKey,
    outer_members: Mapping[str, Any] | None = None,
    alg: str | None = None,
) -> str:
    """A token built with joserfc directly, for headers that seal() refuses to write: a version 1 envelope, for one.
    The signature's algorithm name is the one its `cb.v` calls for unless `alg` says otherwise."""
    alg = alg or SIGNATURE_ALG_OF_VERSION[members["cb.v"]]
    unbound = OKPKey.import_key({k: v for k, v in signer.as_dict(private=True).items() if k != "alg"})  # signs either
    signed = jws.serialize_compact(
        {"alg": alg, "kid": signer.kid, "typ": "cb-envelope+jws", "cty": "json", **members},
        json.dumps(BODY, ensure_ascii=False).encode(),
        unbound,
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
    inner = {"alg": "Ed25519", "kid": alice.sig[0].kid, "typ": "cb-envelope+jws", "cty": "json", **routing(h)}
    assert signed.protected == inner
    assert signed.protected["cb.v"] == 2
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


def _version_3(w: World) -> tuple[str, Tenant]:
    members = {**routing(header(w.alice, w.bob)), "cb.v": 3}
    return craft(members, signer=w.alice.sig[0], to=w.bob.enc_public, alg="Ed25519"), w.bob


def _not_a_jws_inside(w: World) -> tuple[str, Tenant]:
    return encrypt("just text", w.bob.enc_public, routing(header(w.alice, w.bob))), w.bob


def _body_not_an_object(w: World) -> tuple[str, Tenant]:
    members = routing(header(w.alice, w.bob))
    signed = jws.serialize_compact(
        {"alg": "Ed25519", "kid": w.alice.sig[0].kid, "typ": "cb-envelope+jws", "cty": "json", **members},
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
    (_version_3, RejectReason.UNSUPPORTED_VERSION, False),
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
    for older_or_unknown in (1, 3):  # version 1 is read during its period, never written
        with pytest.raises(ValueError, match="version"):
            seal(
                header(alice, bob, version=older_or_unknown),
                BODY,
                signing_key=alice.sig[0],
                recipient_key=bob.enc_public,
            )
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


# -- version 1 and the algorithm names (RFC 9864) ------------------------------------------------------------


def version_1(h: EnvelopeHeader) -> dict[str, Any]:
    return {**routing(h), "cb.v": 1}


@reads_version_1
def test_a_version_1_envelope_opens_when_made_within_the_period(bob: Tenant) -> None:
    # A sender of the release before version 2: its key recorded as "EdDSA" and published so.
    earlier = Tenant(sig=[signing_key("EdDSA")])
    directory = Directory(earlier, bob)
    h = header(earlier, bob)
    opened = open_as(bob, craft(version_1(h), signer=earlier.sig[0], to=bob.enc_public), directory)
    assert isinstance(opened, OpenedEnvelope)
    assert (opened.header.version, opened.body) == (1, BODY)
    # Published as this release publishes a key of that age (no "alg"), it verifies the same.
    with_no_alg = [{k: v for k, v in jwk.items() if k != "alg"} for jwk in directory(earlier.id)]
    assert isinstance(
        open_as(bob, craft(version_1(h), signer=earlier.sig[0], to=bob.enc_public), lambda _: with_no_alg),
        OpenedEnvelope,
    )


@reads_version_1
def test_version_1_is_refused_for_envelopes_made_from_the_end_of_the_period_on(
    alice: Tenant, bob: Tenant, directory: Directory
) -> None:
    last = DEPRECATED_ACCEPTED_UNTIL - dt.timedelta(seconds=1)
    for created_at, opens in [(last, True), (DEPRECATED_ACCEPTED_UNTIL, False)]:
        token = craft(version_1(header(alice, bob, created_at=created_at)), signer=alice.sig[0], to=bob.enc_public)
        result = open_envelope(
            token,
            recipient=bob.id,
            decryption_keys=bob.enc,
            sender_keys=directory,
            now=created_at + dt.timedelta(minutes=1),
        )
        assert isinstance(result, OpenedEnvelope) is opens
        assert (peek_header(token) is not None) is opens
    assert isinstance(result, RejectedEnvelope)
    assert (result.reason, result.header) == (RejectReason.UNSUPPORTED_VERSION, None)
    assert "2028-01-01" in result.detail
    # Version 2 has no end.
    h = header(alice, bob, created_at=DEPRECATED_ACCEPTED_UNTIL)
    token = seal(h, BODY, signing_key=alice.sig[0], recipient_key=bob.enc_public)
    opened = open_envelope(
        token,
        recipient=bob.id,
        decryption_keys=bob.enc,
        sender_keys=directory,
        now=DEPRECATED_ACCEPTED_UNTIL + dt.timedelta(minutes=1),
    )
    assert isinstance(opened, OpenedEnvelope)


def forged_jws(protected: Mapping[str, Any]) -> str:
    """A JWS with any header at all and a signature of zeros: the header is refused before any key is used."""
    encode = lambda data: base64.urlsafe_b64encode(data).decode().rstrip("=")  # noqa: E731
    return ".".join([encode(json.dumps(protected).encode()), encode(json.dumps(BODY).encode()), encode(bytes(64))])


@reads_version_1
@pytest.mark.parametrize(
    ("version", "alg"),
    [(2, "EdDSA"), (1, "Ed25519"), (2, "Ed448"), (2, "ES256"), (2, "HS256"), (2, "none"), (1, "none"), (2, None)],
)
def test_a_signature_named_other_than_its_version_says_is_refused(
    version: int, alg: str | None, alice: Tenant, bob: Tenant, directory: Directory
) -> None:
    members = {**routing(header(alice, bob)), "cb.v": version}
    inner = {"kid": alice.sig[0].kid, "typ": "cb-envelope+jws", "cty": "json", **members}
    if alg in {"EdDSA", "Ed25519"}:
        token = craft(members, signer=alice.sig[0], to=bob.enc_public, alg=alg)  # a valid signature, wrong name
    else:
        token = encrypt(forged_jws({**inner, **({"alg": alg} if alg else {})}), bob.enc_public, members)
    result = open_as(bob, token, directory)
    assert isinstance(result, RejectedEnvelope)
    assert result.reason == RejectReason.MALFORMED


def test_a_key_made_before_version_2_signs_version_2(bob: Tenant) -> None:
    """Such a key is recorded as "EdDSA"; the key ring hands it out as "Ed25519", and partners that still hold its
    JWK as published then ("alg": "EdDSA") open its version 2 envelopes as well as those holding it as now."""
    recorded = signing_key("EdDSA")
    as_the_key_ring_gives_it = OKPKey.import_key(recorded.as_dict(private=True) | {"alg": "Ed25519"})
    earlier = Tenant(sig=[recorded])
    token = seal(header(earlier, bob), BODY, signing_key=as_the_key_ring_gives_it, recipient_key=bob.enc_public)
    then = public_jwk(recorded, "sig")
    for published in ([then], [{k: v for k, v in then.items() if k != "alg"}]):
        opened = open_as(bob, token, lambda _, keys=published: keys)  # type: ignore[misc]
        assert isinstance(opened, OpenedEnvelope)
        assert opened.header.version == 2


# -- the test vectors in docs/envelope.md ---------------------------------------------------------------


def documented_blocks(version: str) -> dict[str, str]:
    """Fenced blocks of docs/envelope.md for one version: ```json v2-body ... ``` becomes {"body": "..."}."""
    blocks = re.finditer(r"^```\w+ ([\w-]+)\n(.*?)\n```$", DOC.read_text("utf-8"), re.M | re.S)
    return {m[1].removeprefix(f"{version}-"): m[2] for m in blocks if m[1].startswith(f"{version}-")}


VERSIONS = [pytest.param("v2", id="version 2"), pytest.param("v1", id="version 1", marks=reads_version_1)]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_documented_test_vector_opens_to_the_documented_values(version: str) -> None:
    blocks = documented_blocks(version)
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
    assert f"v{opened.header.version}" == version
    assert opened.signing_kid == sender_private["kid"]
    assert peek_header(token) == opened.header
    # The decoded layers shown in the doc are the real ones.
    assert json.loads(b64decode(token.split(".")[0])) == json.loads(blocks["outer-protected-header"])
    assert inner_jws(token, recipient_key) == blocks["inner-jws"]
    signed = jws.extract_compact(blocks["inner-jws"].encode())
    assert signed.protected == json.loads(blocks["inner-protected-header"])
    assert signed.protected["alg"] == SIGNATURE_ALG_OF_VERSION[opened.header.version]
    assert signed.payload == blocks["payload"].encode()
    # Ed25519 is deterministic: the documented key re-signs the documented bytes to the documented signature.
    sender_key = OKPKey.import_key(sender_private)
    resigned = jws.serialize_compact(signed.protected, signed.payload, sender_key, registry=JWS_REGISTRY)
    assert resigned.split(".")[2] == blocks["inner-jws"].split(".")[2]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_documented_token_is_refused_outside_its_window_and_to_others(version: str) -> None:
    blocks = documented_blocks(version)
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


@pytest.mark.parametrize("version", VERSIONS)
def test_an_independent_jose_implementation_opens_the_documented_vectors(version: str) -> None:
    """jwcrypto (not joserfc, which casebridge uses) decrypts each documented token and verifies its signature under
    the name its version uses, with the sender key as published then and as published now."""
    blocks = documented_blocks(version)
    recipient = jwcrypto_jwk.JWK(**json.loads(blocks["recipient-encryption-key"]))
    outer = jwcrypto_jwe.JWE()
    outer.deserialize(blocks["token"], key=recipient)
    assert outer.payload.decode() == blocks["inner-jws"]
    sender_public = {k: v for k, v in json.loads(blocks["sender-signing-key"]).items() if k != "d"}
    alg = json.loads(blocks["inner-protected-header"])["alg"]
    for published in (sender_public, {k: v for k, v in sender_public.items() if k != "alg"}):
        inner = jwcrypto_jws.JWS()
        inner.deserialize(blocks["inner-jws"])
        inner.verify(jwcrypto_jwk.JWK(**published), alg=alg)
        assert json.loads(inner.payload) == json.loads(blocks["body"])
