"""The access functions for multi-agency plans and care plans, scoped to the caller's tenant (the shape is
tenants/access.py's)."""

from __future__ import annotations

from exchange.cases.access import CASE_WRITERS
from exchange.plans.models import CareAction, CareGoal, Plan
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

# A care plan's goal and action, of the caller's tenant; the agency's case workers keep the plan.
access_care_goal = RowAccess(
    CareGoal,
    CareGoal.id,
    CareGoal.tenant_id,
    missing="No such goal.",
    permits=written_by(*CASE_WRITERS),
    refusal="Only a specialist or a supervisor may change a care plan.",
)
access_care_action = RowAccess(
    CareAction,
    CareAction.id,
    CareAction.tenant_id,
    missing="No such action.",
    permits=written_by(*CASE_WRITERS),
    refusal="Only a specialist or a supervisor may change a care plan.",
)
