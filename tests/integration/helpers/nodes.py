"""Nodes on loopback for federation tests: a throwaway TLS certificate and its pin, and an ASGI app served by uvicorn.

    certificate = throwaway_certificate(tmp_path)         # cert.pem, key.pem and the pin of the key
    async with served(app, certificate=certificate) as url:  # https://127.0.0.1:PORT, the app's lifespan running
        ...                                                   # (served(app) without a certificate: plain http)

`served(app, lifespan=False)` serves an app whose lifespan a test already runs (the `app` and `api` fixtures).
`peers_file(path, *peers)` writes a CASEBRIDGE_PEERS file for Peer values.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenants.peers import Peer
from tenants.pinning import spki_pin
from tests.polling import eventually
from tests.processes import START_WITHIN_S, free_port

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, its private key, and the pin of that key."""

    cert_file: Path
    key_file: Path
    pin: str


def throwaway_certificate(directory: Path, *, name: str = "node") -> Certificate:
    """A new P-256 key and a self-signed certificate for it, valid for a day, written to DIRECTORY/NAME.{pem,key}."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return Certificate(cert_file, key_file, spki_pin(pem))


@contextlib.asynccontextmanager
async def served(
    app: Any, *, certificate: Certificate | None = None, port: int | None = None, lifespan: bool = True
) -> AsyncIterator[str]:
    """Serve `app` with uvicorn in this event loop on a loopback port; yields its base URL (https with a
    certificate). The server stops, and the app's lifespan ends, when the block ends."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        lifespan="on" if lifespan else "off",
        log_level="warning",
        ssl_certfile=str(certificate.cert_file) if certificate else None,
        ssl_keyfile=str(certificate.key_file) if certificate else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn:{port}")

    def started() -> bool:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started serving")
        return bool(server.started)

    await eventually(started, within=START_WITHIN_S, every=0.02, what=f"uvicorn to serve on port {port}")
    try:
        yield f"{'https' if certificate else 'http'}://{HOST}:{port}"
    finally:
        server.should_exit = True
        await task


def peers_file(path: Path, *peers: Peer) -> Path:
    """A CASEBRIDGE_PEERS file naming `peers`."""
    tables = []
    for peer in peers:
        lines = ["[[peer]]", f'name = "{peer.name}"', f'url = "{peer.url}"']
        if peer.pin is not None:
            lines.append(f'pin = "{peer.pin}"')
        tables.append("\n".join(lines))
    path.write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    return path
