"""The pinned client over real TLS: the pinned key is accepted, any other key is refused before a request is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tenants.peers import Peer
from tenants.pinning import PinMismatch, pinned_client
from tests.integration.helpers.nodes import served, throwaway_certificate

_REQUESTS: list[str] = []


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    _REQUESTS.append(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"hello": "peer"}'})


async def test_the_pinned_key_is_trusted_without_a_certificate_authority(tmp_path: Path) -> None:
    certificate = throwaway_certificate(tmp_path)
    async with (
        served(_hello, certificate=certificate, lifespan=False) as url,
        pinned_client(Peer(name="east", url=url, pin=certificate.pin)) as client,
    ):
        assert (await client.get("/.well-known/casebridge-node")).json() == {"hello": "peer"}


async def test_another_key_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    presented = throwaway_certificate(tmp_path, name="impostor")
    pinned = throwaway_certificate(tmp_path, name="expected")
    _REQUESTS.clear()
    async with (
        served(_hello, certificate=presented, lifespan=False) as url,
        pinned_client(Peer(name="east", url=url, pin=pinned.pin)) as client,
    ):
        with pytest.raises(PinMismatch, match="does not match its pin"):
            await client.get("/.well-known/casebridge-node")
        with pytest.raises(PinMismatch):  # a second try opens a new connection and is refused again
            await client.get("/.well-known/casebridge-node")
    assert _REQUESTS == []


async def test_plain_http_reaches_loopback_only(tmp_path: Path) -> None:
    async with served(_hello, lifespan=False) as url, pinned_client(Peer(name="dev", url=url, pin=None)) as client:
        assert (await client.get("/x")).status_code == 200
        with pytest.raises(httpx.UnsupportedProtocol, match="this machine only"):
            await client.get("http://192.0.2.1/x")
