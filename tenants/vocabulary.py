"""The closed sets of names the tenants area stores and checks: kinds of organisation, roles, scopes, key uses.

Kept apart from the tables so that the command line can offer them in its help without loading SQLAlchemy.
"""

from __future__ import annotations

import enum


class TenantKind(enum.StrEnum):
    SOCIAL_CENTRE = "social_centre"
    GUARDIANSHIP_BODY = "guardianship_body"
    JUVENILE_COMMISSION = "juvenile_commission"
    EDUCATION = "education"
    HEALTH = "health"
    POLICE_JUVENILE_UNIT = "police_juvenile_unit"
    EMPLOYMENT = "employment"
    NGO = "ngo"


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Role(enum.StrEnum):
    SPECIALIST = "specialist"
    INTAKE = "intake"
    SUPERVISOR = "supervisor"
    DPO = "dpo"
    TENANT_ADMIN = "tenant_admin"


# Roles an API client may act with (docs/api.md, "Getting an access token").
CLIENT_ROLES = frozenset({Role.SPECIALIST, Role.INTAKE, Role.SUPERVISOR, Role.DPO})


class Scope(enum.StrEnum):
    CASES_READ = "cases:read"
    CASES_WRITE = "cases:write"
    CONSENTS_WRITE = "consents:write"
    REFERRALS_READ = "referrals:read"
    REFERRALS_WRITE = "referrals:write"
    AUDIT_READ = "audit:read"
    DIRECTORY_READ = "directory:read"
    DIRECTORY_WRITE = "directory:write"


class KeyUse(enum.StrEnum):
    ENCRYPTION = "enc"
    SIGNING = "sig"
    KEY_ENCRYPTION = "kek"


class PlatformKeyUse(enum.StrEnum):
    ACCESS_TOKEN = "token"  # noqa: S105 - names the key's purpose, not a secret
    CHECKPOINT = "checkpoint"
