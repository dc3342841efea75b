"""Liveness and readiness probes for the load balancer and the operator."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import text

from audit.sealer import sealer_lease_held
from gateway.auth.guards import PUBLIC
from gateway.peering import peers_report
from gateway.runtime import Runtime
from gateway.workers import WorkerName


@get("/health/live", opt={PUBLIC: True}, tags=["health"], summary="The process is running")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/health/ready",
    opt={PUBLIC: True},
    tags=["health"],
    summary="Database, bus, audit sealer and Workers are up",
    responses={503: ResponseSpec(dict[str, Any], description="What is down", generate_examples=False)},
)
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """503 names what is down: `database`, `bus`, `audit_sealer`, or `worker:<name>` for a Worker of this process.
    With peers configured, `peers` gives each one's state and the envelopes held for them, by reason."""
    runtime: Runtime = request.app.state.runtime
    workers = runtime.workers.status()
    database = await _database_ok(runtime)
    checks = {
        "database": database,
        "bus": runtime.bus.ready,
        # Sealing may run in another process (a `casebridge worker`): then its lease must be held and fresh.
        "audit_sealer": workers[WorkerName.SEALER]
        if WorkerName.SEALER in workers
        else database and await _sealing(runtime),
    }
    down = sorted(name for name, ok in checks.items() if not ok)
    down += [f"worker:{name}" for name, ok in workers.items() if not ok]
    body = {"status": "unavailable" if down else "ok", "checks": checks, "workers": workers}
    if runtime.settings.peers.peers and database:
        # Shown, never a reason to be unready: a peer that cannot be reached holds its own envelopes only, and local
        # exchange goes on (docs/operations.md, "Joining an agency's node").
        body["peers"] = await peers_report(runtime.sessions, runtime.settings.peers.peers)
    if down:
        return Response({**body, "down": down}, status_code=503, media_type="application/json")
    return Response(body, status_code=200)


async def _sealing(runtime: Runtime) -> bool:
    try:
        return await sealer_lease_held(runtime.sessions, runtime.clock.now())
    except Exception:
        return False


async def _database_ok(runtime: Runtime) -> bool:
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
