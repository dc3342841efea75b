"""The HTTP client that talks to one peer node only: https trusted through its pinned TLS key, or loopback http."""

from __future__ import annotations

import base64
import hashlib
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tenants.peers import PIN_PREFIX, Peer, is_loopback, pin_problem, url_problem


class PinMismatch(httpx.ConnectError):
    """The peer presented a TLS key other than the pinned one: nothing was sent to it. The message names no key."""


def spki_pin(certificate: bytes) -> str:
    """The pin of a certificate (PEM or DER): `sha256/` and the base64 SHA-256 of its SubjectPublicKeyInfo."""
    cert = (
        x509.load_pem_x509_certificate(certificate)
        if certificate.lstrip().startswith(b"-----BEGIN")
        else x509.load_der_x509_certificate(certificate)
    )
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PIN_PREFIX + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


class _PinnedTransport(httpx.AsyncBaseTransport):
    """HTTPS whose trust is the pin alone: the TLS key is checked right after the handshake, before any request
    byte is written, on every new connection."""

    def __init__(self, pin: str | None, *, context: ssl.SSLContext | None) -> None:
        self._pin = pin
        self._inner = httpx.AsyncHTTPTransport(verify=context or False, trust_env=False, retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "trace": self._check_tls}
        elif not is_loopback(request.url.host):
            raise httpx.UnsupportedProtocol("plain http goes to a peer on this machine only")
        return await self._inner.handle_async_request(request)

    async def _check_tls(self, event: str, info: dict[str, Any]) -> None:
        if event != "connection.start_tls.complete":
            return
        stream = info["return_value"]
        ssl_object = stream.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if self._pin is None or der is None or spki_pin(der) != self._pin:
            await stream.aclose()
            raise PinMismatch("the peer's TLS key does not match its pin in the peers file")

    async def aclose(self) -> None:
        await self._inner.aclose()


def pinned_client(peer: Peer, *, timeout_s: float = 10.0) -> httpx.AsyncClient:
    """An HTTP client for `peer` only: relative URLs resolve against its base URL; an https connection whose TLS key
    does not match the pin fails with PinMismatch before anything is sent; plain http only to a loopback host.

    The pin is the whole of the trust (no certificate authority is consulted, so a peer may use a self-signed
    certificate); the host name is not checked, as the pin already names the one key the peer may present.
    Redirects are not followed and proxies from the environment are not used.
    """
    problem = url_problem(peer.url)
    if problem is not None:
        raise ValueError(f"peer {peer.name}: {problem}")
    https = urlsplit(peer.url).scheme == "https"
    if https and (peer.pin is None or pin_problem(peer.pin) is not None):
        raise ValueError(f"peer {peer.name}: an https peer needs a valid pin")
    context = None
    if https:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # trust is the pin, checked on the presented certificate
    return httpx.AsyncClient(
        base_url=peer.url.rstrip("/"),
        transport=_PinnedTransport(peer.pin, context=context),
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=False,
    )
