"""Public addresses of this node's resources, for the HTTP handlers and the command line alike."""

from __future__ import annotations

import uuid


def tenant_jwks_url(base_url: str, tenant_id: uuid.UUID) -> str:
    """Where a tenant's public keys are served (gateway.controllers.metadata.tenant_jwks)."""
    return f"{base_url}/.well-known/tenants/{tenant_id}/jwks.json"
