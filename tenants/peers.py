"""Peer nodes as the operator configures them: name, base URL and TLS key pin, and the rules each must meet."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

PIN_PREFIX = "sha256/"
_DIGEST_BYTES = 32


@dataclass(frozen=True, slots=True)
class Peer:
    """Another casebridge node, as the operator configured it: its name, its base URL and the pin of its TLS key."""

    name: str
    url: str
    pin: str | None
    """`sha256/` and the base64 SHA-256 of the certificate's SubjectPublicKeyInfo (as RFC 7469's pin-sha256); None
    only for a plain http peer on loopback."""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pin_problem(pin: str) -> str | None:
    """Why `pin` is not a pin (`sha256/` and 32 bytes in base64), or None."""
    if not pin.startswith(PIN_PREFIX):
        return f'a pin starts with "{PIN_PREFIX}"'
    try:
        digest = base64.b64decode(pin[len(PIN_PREFIX) :], validate=True)
    except ValueError:
        return "a pin's digest is standard base64"
    if len(digest) != _DIGEST_BYTES:
        return f"a pin's digest is {_DIGEST_BYTES} bytes (SHA-256)"
    return None


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a peer's base URL, or None: https, or http for a loopback host; no path beyond "/"."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "the url must be an https:// URL (http:// only for a peer on this machine)"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return "the url must use https:// unless the peer is on this machine (localhost or a loopback address)"
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or parts.password:
        return "the url is the peer's base URL: scheme, host and port only"
    return None
