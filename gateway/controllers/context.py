"""What every data handler needs: the acting principal, a transaction scoped to its tenant, the exchange's tools."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from exchange.deps import ExchangeDeps
from gateway.runtime import Runtime
from tenants.persistence import tenant_session
from tenants.principal import Principal


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal = request.scope["auth"]
    assert isinstance(principal, Principal)  # the API guards admit no request without one
    return principal


def exchange_deps(request: Request[Any, Any, Any]) -> ExchangeDeps:
    return runtime_of(request).exchange


@contextlib.asynccontextmanager
async def tenant_transaction(request: Request[Any, Any, Any]) -> AsyncIterator[AsyncSession]:
    """One transaction confined (also by PostgreSQL row-level security) to the caller's tenant; commits on exit."""
    runtime = runtime_of(request)
    async with tenant_session(runtime.sessions, principal_of(request).tenant_id) as session, session.begin():
        yield session
    runtime.wake_relay()
