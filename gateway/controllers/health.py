"""Liveness and readiness probes for the load balancer and the operator."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from sqlalchemy import text

from gateway.auth.guards import PUBLIC
from gateway.runtime import Runtime


@get("/health/live", opt={PUBLIC: True}, tags=["health"], summary="The process is running")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", opt={PUBLIC: True}, tags=["health"], summary="Database and bus are reachable")
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    runtime: Runtime = request.app.state.runtime
    checks = {
        "database": await _database_ok(runtime),
        "bus": await runtime.bus.is_ready(),
        "audit_sealer": runtime.sealer.status().healthy,
    }
    down = sorted(name for name, ok in checks.items() if not ok)
    if down:
        return Response(
            {"status": "unavailable", "down": down, "checks": checks},
            status_code=503,
            media_type="application/json",
        )
    return Response({"status": "ok", "checks": checks}, status_code=200)


async def _database_ok(runtime: Runtime) -> bool:
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
