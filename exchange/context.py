"""What one exchange operation acts in: a transaction confined to the caller's tenant, on behalf of a principal,
recorded under an audit scope. The gateway opens one per request (gateway/controllers/context.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from audit.services import AccessScope
from exchange.deps import ExchangeDeps
from tenants.principal import Principal


@dataclass(frozen=True, slots=True)
class Context:
    session: AsyncSession  # in a transaction, confined (by PostgreSQL row-level security too) to the principal's tenant
    deps: ExchangeDeps
    principal: Principal  # who acts: every operation decides what it may do from this
    audit: AccessScope  # the request's one audit event, which operations fill in with what they touched
