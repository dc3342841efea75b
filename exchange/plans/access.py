"""The access function for multi-agency plans, scoped to the caller's tenant (the shape is tenants/access.py's)."""

from __future__ import annotations

from exchange.cases.access import CASE_WRITERS
from exchange.plans.models import Plan
from tenants.access import RowAccess, written_by

# A plan of the caller's tenant; the issuing centre's case workers may change it.
access_plan = RowAccess(
    Plan,
    Plan.id,
    Plan.tenant_id,
    missing="No such plan.",
    permits=written_by(*CASE_WRITERS),
    refusal="Only a specialist or a supervisor may change a plan.",
)
