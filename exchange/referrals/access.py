"""The access function for referrals: one side's copy, by the id both sides share, in the caller's tenant."""

from __future__ import annotations

from exchange.referrals.models import Referral, Side
from tenants.access import RowAccess
from tenants.models import Role
from tenants.principal import Principal

# Who may act on a referral: the sender's case workers, the recipient's intake officers and supervisors.
REFERRAL_ACTORS = {Side.SENDER: (Role.SPECIALIST, Role.SUPERVISOR), Side.RECIPIENT: (Role.INTAKE, Role.SUPERVISOR)}


def _acts_on(principal: Principal, referral: Referral, for_write: bool) -> bool:
    return not for_write or principal.has_role(*REFERRAL_ACTORS[Side(referral.side)])


# The other tenant's copy shares the id but never the tenant, so it is never reachable.
access_referral = RowAccess(
    Referral,
    Referral.exchange_id,
    Referral.tenant_id,
    missing="No such referral.",
    permits=_acts_on,
    refusal="This role may not act on this side of the referral.",
)
