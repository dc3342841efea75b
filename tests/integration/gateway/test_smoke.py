"""The app starts on each backend and answers its probes."""

from __future__ import annotations

import httpx


async def test_health(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health/live")).json() == {"status": "ok"}
    ready = await api.get("/health/ready")
    assert ready.status_code == 200, ready.text
