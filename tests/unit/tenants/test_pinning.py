"""Pins: the SHA-256 of a certificate's SubjectPublicKeyInfo; the pinned client refuses what the rules refuse."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenants.peers import Peer
from tenants.pinning import pinned_client, spki_pin


def _certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer.test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_the_pin_is_the_spki_digest_in_pem_and_der() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(key)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert spki_pin(cert.public_bytes(serialization.Encoding.PEM)) == expected
    assert spki_pin(cert.public_bytes(serialization.Encoding.DER)) == expected


def test_a_new_certificate_for_the_same_key_keeps_the_pin() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first, second = (_certificate(key).public_bytes(serialization.Encoding.DER) for _ in range(2))
    assert first != second
    assert spki_pin(first) == spki_pin(second)


@pytest.mark.parametrize(
    "peer",
    [
        Peer(name="east", url="http://east.example", pin=None),
        Peer(name="east", url="https://east.example", pin=None),
        Peer(name="east", url="https://east.example", pin="sha256/short"),
    ],
)
def test_the_client_refuses_what_the_peers_file_refuses(peer: Peer) -> None:
    with pytest.raises(ValueError, match="peer east"):
        pinned_client(peer)
