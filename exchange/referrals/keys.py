"""A referral copy's data key: the copy's sealed fields, its timeline notes, its thread and its letters are under it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchange.cases.datakeys import DataKey, sealed_context

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from exchange.deps import ExchangeDeps
    from exchange.referrals.models import Referral


async def referral_key(session: AsyncSession, deps: ExchangeDeps, referral: Referral) -> DataKey:
    """The copy's own key, unwrapped by its tenant's key ring (bound to the copy by its sealing context)."""
    context = sealed_context("referral", referral.id)
    return await deps.datakeys.open(session, referral.tenant_id, context, referral.wrapped_key)
