"""The access function for audit events: an event of the caller's own trail; any other id answers as missing."""

from __future__ import annotations

from audit.models import AuditEvent
from tenants.access import RowAccess, written_by
from tenants.models import Role

# The trail itself is append-only: what "writing" an event means is recording a review of it, the DPO's task.
access_event = RowAccess(
    AuditEvent,
    AuditEvent.id,
    AuditEvent.log_tenant_id,
    missing="No such event in this organisation's audit trail.",
    permits=written_by(Role.DPO),
    refusal="Only the data-protection officer reviews audit events.",
)
