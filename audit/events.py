"""The audit event schema (version 1), modelled on FHIR AuditEvent / IHE BALP, and its append-only action names."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenants.keys import MasterKey

SCHEMA_VERSION = 1


class Action(enum.StrEnum):
    """What happened, as `area:resource:action`. Append-only: never rename or reuse a value."""

    TENANTS_SESSION_SIGN_IN = "tenants:session:sign-in"
    TENANTS_SESSION_SIGN_IN_FAILED = "tenants:session:sign-in-failed"
    TENANTS_SESSION_LOCKED = "tenants:session:locked"
    TENANTS_TOKEN_ISSUE = "tenants:token:issue"  # noqa: S105 - an action name, not a secret
    TENANTS_TOKEN_REFUSE = "tenants:token:refuse"  # noqa: S105 - an action name, not a secret
    TENANTS_DIRECTORY_READ = "tenants:directory:read"
    TENANTS_PROFILE_UPDATE = "tenants:profile:update"
    TENANTS_KEYS_ROTATE = "tenants:keys:rotate"
    EXCHANGE_CASE_CREATE = "exchange:case:create"
    EXCHANGE_CASE_READ = "exchange:case:read"
    EXCHANGE_CASE_LIST = "exchange:case:list"
    EXCHANGE_CONSENT_CREATE = "exchange:consent:create"
    EXCHANGE_CONSENT_LIST = "exchange:consent:list"
    EXCHANGE_CONSENT_WITHDRAW = "exchange:consent:withdraw"
    EXCHANGE_DOCUMENT_CREATE = "exchange:document:create"
    EXCHANGE_DOCUMENT_READ = "exchange:document:read"
    EXCHANGE_REFERRAL_SEND = "exchange:referral:send"
    EXCHANGE_REFERRAL_READ = "exchange:referral:read"
    EXCHANGE_REFERRAL_LIST = "exchange:referral:list"
    EXCHANGE_REFERRAL_TRANSITION = "exchange:referral:transition"
    EXCHANGE_REFERRAL_RECEIVE = "exchange:referral:receive"
    EXCHANGE_REFERRAL_BASIS = "exchange:referral:basis"
    EXCHANGE_MESSAGE_CREATE = "exchange:message:create"
    EXCHANGE_MESSAGE_LIST = "exchange:message:list"
    EXCHANGE_ENVELOPE_PARK = "exchange:envelope:park"
    EXCHANGE_CONSENT_WITHDRAWAL_APPLY = "exchange:consent:withdrawal-apply"
    AUDIT_EVENTS_SEARCH = "audit:events:search"
    AUDIT_SUBJECT_REPORT = "audit:subject:report"
    AUDIT_REVIEW_LIST = "audit:review:list"
    AUDIT_REVIEW_MARK = "audit:review:mark"
    AUDIT_ANOMALIES_LIST = "audit:anomalies:list"
    AUDIT_CHECKPOINT_READ = "audit:checkpoint:read"
    AUDIT_PROOF_READ = "audit:proof:read"
    TENANTS_USER_LIST = "tenants:user:list"
    TENANTS_USER_INVITE = "tenants:user:invite"
    TENANTS_USER_ROLES = "tenants:user:roles"
    TENANTS_USER_SECOND_FACTOR_RESET = "tenants:user:second-factor-reset"
    TENANTS_USER_DEACTIVATE = "tenants:user:deactivate"
    TENANTS_USER_REACTIVATE = "tenants:user:reactivate"
    TENANTS_INVITATION_ACCEPT = "tenants:invitation:accept"
    TENANTS_CLIENT_LIST = "tenants:client:list"
    TENANTS_CLIENT_REGISTER = "tenants:client:register"
    TENANTS_CLIENT_REVOKE = "tenants:client:revoke"
    TENANTS_KEYS_READ = "tenants:keys:read"
    TENANTS_SETTINGS_READ = "tenants:settings:read"
    TENANTS_TIME_ZONE_SET = "tenants:time-zone:set"
    AUDIT_LOG_VERIFY = "audit:log:verify"
    TENANTS_USER_READ = "tenants:user:read"
    EXCHANGE_PLAN_CREATE = "exchange:plan:create"
    EXCHANGE_PLAN_LIST = "exchange:plan:list"
    EXCHANGE_PLAN_READ = "exchange:plan:read"
    EXCHANGE_PLAN_ADD_TASKS = "exchange:plan:add-tasks"
    EXCHANGE_PLAN_CLOSE = "exchange:plan:close"
    EXCHANGE_PLAN_REPORT = "exchange:plan:report"
    EXCHANGE_REMINDER_LIST = "exchange:reminder:list"
    EXCHANGE_REPORT_READ = "exchange:report:read"
    EXCHANGE_LETTER_READ = "exchange:letter:read"
    EXCHANGE_REFERRAL_ASSIGN = "exchange:referral:assign"
    AUDIT_CHECKPOINT_REFUSE = "audit:checkpoint:refuse"
    EXCHANGE_LETTER_RECEIVE = "exchange:letter:receive"
    AUDIT_LOG_RENAME = "audit:log:rename"
    TENANTS_PEER_KEYS_ACCEPT = "tenants:peer-keys:accept"
    AUDIT_SUBJECT_LOOKUP = "audit:subject:lookup"
    EXCHANGE_SUBJECTS_INDEX = "exchange:subjects:index"
    EXCHANGE_CARE_PLAN_READ = "exchange:care-plan:read"
    EXCHANGE_CARE_PLAN_ADD_GOAL = "exchange:care-plan:add-goal"
    EXCHANGE_CARE_PLAN_ADD_ACTION = "exchange:care-plan:add-action"
    EXCHANGE_CARE_PLAN_LINK_REFERRAL = "exchange:care-plan:link-referral"
    EXCHANGE_CARE_PLAN_COMPLETE_ACTION = "exchange:care-plan:complete-action"
    EXCHANGE_CARE_PLAN_REPORT = "exchange:care-plan:report"
    EXCHANGE_SUBJECTS_MATCH = "exchange:subjects:match"
    EXCHANGE_REFERRAL_ESCALATE = "exchange:referral:escalate"


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str  # "user" | "client" | "system"
    id: uuid.UUID | None
    tenant_id: uuid.UUID | None
    role: str | None


@dataclass(frozen=True, slots=True)
class AuditEventRecord:
    """One event as written to the log. `subjects` holds keyed pseudonyms only, never names or identifiers."""

    id: uuid.UUID
    time: dt.datetime
    log_tenant_id: uuid.UUID | None  # whose audit trail this belongs to (None: the platform's own)
    actor: Actor
    action: Action
    outcome: Outcome
    resource_type: str | None = None
    resource_id: str | None = None
    subjects: tuple[str, ...] = ()
    purpose: str | None = None
    legal_basis: str | None = None
    reason: str | None = None
    request_id: str | None = None
    source: str | None = None
    user_agent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The versioned wire form that is chained and sealed; new members go last, with defaults."""
        return {
            "v": SCHEMA_VERSION,
            "id": str(self.id),
            "time": self.time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "log_tenant": str(self.log_tenant_id) if self.log_tenant_id else None,
            "actor": {
                "kind": self.actor.kind,
                "id": str(self.actor.id) if self.actor.id else None,
                "tenant": str(self.actor.tenant_id) if self.actor.tenant_id else None,
                "role": self.actor.role,
            },
            "action": self.action.value,
            "outcome": self.outcome.value,
            "resource": {"type": self.resource_type, "id": self.resource_id},
            "subjects": list(self.subjects),
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "reason": self.reason,
            "request_id": self.request_id,
            "source": self.source,
            "user_agent": (self.user_agent or "")[:256] or None,
            "extra": self.extra,
        }


def pseudonym(key: bytes, subject_id: uuid.UUID) -> str:
    """A subject's keyed pseudonym: stable for one tenant's key, meaningless without it (HMAC-SHA-256)."""
    return "ps_" + hmac.new(key, subject_id.bytes, hashlib.sha256).hexdigest()[:32]


def pseudonym_key(master_key: MasterKey, tenant_id: uuid.UUID) -> bytes:
    """The key that pseudonymises one tenant's subjects; every process of a deployment derives the same one."""
    return master_key.derive(f"casebridge/pseudonym/v1/{tenant_id}")
