"""The audit trail in words for the DPO console: each action as a sentence, grouped by area, and actors by name.

The trail itself keeps codes and ids (`audit/events.py`, docs/audit.md); these are only how the pages say them. Every
`Action` has exactly one sentence here (tests/unit/gateway/web/test_dpo_words.py fails otherwise), written so that
it reads the same whoever acted: the actor is named beside it, and the result (refused, failed) after it.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from audit.events import Action
from exchange.context import Context
from gateway.web.i18n import N_
from tenants import names

# The action filter's groups, in the order a DPO looks for them, each with its actions' sentences.
ACTION_GROUPS: Final[tuple[tuple[str, Mapping[Action, str]], ...]] = (
    (
        N_("Cases, people and consents"),
        {
            Action.EXCHANGE_CASE_CREATE: N_("A new case was opened"),
            Action.EXCHANGE_CASE_READ: N_("A case was viewed"),
            Action.EXCHANGE_CASE_LIST: N_("The list of cases was viewed"),
            Action.EXCHANGE_CONSENT_CREATE: N_("A consent was recorded"),
            Action.EXCHANGE_CONSENT_LIST: N_("A case's consents were listed"),
            Action.EXCHANGE_CONSENT_WITHDRAW: N_("A consent was withdrawn"),
            Action.EXCHANGE_CONSENT_WITHDRAWAL_APPLY: N_("A withdrawn consent was applied to data received"),
            Action.EXCHANGE_DOCUMENT_CREATE: N_("A document was uploaded"),
            Action.EXCHANGE_DOCUMENT_READ: N_("A document was opened"),
            Action.EXCHANGE_SUBJECTS_INDEX: N_("The index for finding people was rebuilt"),
            Action.EXCHANGE_SUBJECTS_MATCH: N_("The people of a new case were checked against the agency's own cases"),
        },
    ),
    (
        N_("Referrals, letters and messages"),
        {
            Action.EXCHANGE_REFERRAL_SEND: N_("A referral was sent"),
            Action.EXCHANGE_REFERRAL_RECEIVE: N_("A referral was received"),
            Action.EXCHANGE_REFERRAL_READ: N_("A referral was viewed"),
            Action.EXCHANGE_REFERRAL_LIST: N_("A list of referrals was viewed"),
            Action.EXCHANGE_REFERRAL_TRANSITION: N_("A referral's status was changed"),
            Action.EXCHANGE_REFERRAL_ASSIGN: N_("A referral was assigned to a member of staff"),
            Action.EXCHANGE_REFERRAL_ESCALATE: N_("A referral left overdue was escalated to a supervisor by email"),
            Action.EXCHANGE_REFERRAL_BASIS: N_("The recipient recorded its own legal basis"),
            Action.EXCHANGE_LETTER_READ: N_("A referral's signed letter was opened"),
            Action.EXCHANGE_LETTER_RECEIVE: N_("A partner's signed letter was received"),
            Action.EXCHANGE_MESSAGE_CREATE: N_("A message was written in a referral's thread"),
            Action.EXCHANGE_MESSAGE_LIST: N_("A referral's thread was read"),
            Action.EXCHANGE_ENVELOPE_PARK: N_("A partner's message could not be processed and was set aside"),
            Action.EXCHANGE_REMINDER_LIST: N_("Deadline reminders were viewed"),
            Action.EXCHANGE_REPORT_READ: N_("The referral report was viewed"),
        },
    ),
    (
        N_("Multi-agency plans"),
        {
            Action.EXCHANGE_PLAN_CREATE: N_("A multi-agency plan was created"),
            Action.EXCHANGE_PLAN_LIST: N_("The list of plans was viewed"),
            Action.EXCHANGE_PLAN_READ: N_("A plan was viewed"),
            Action.EXCHANGE_PLAN_ADD_TASKS: N_("Tasks were added to a plan"),
            Action.EXCHANGE_PLAN_CLOSE: N_("A plan was closed"),
            Action.EXCHANGE_PLAN_REPORT: N_("A plan's summary report was downloaded"),
        },
    ),
    (
        N_("Care plans"),
        {
            Action.EXCHANGE_CARE_PLAN_READ: N_("A case's care plan was viewed"),
            Action.EXCHANGE_CARE_PLAN_ADD_GOAL: N_("A goal was added to a care plan"),
            Action.EXCHANGE_CARE_PLAN_ADD_ACTION: N_("An action was added to a care plan"),
            Action.EXCHANGE_CARE_PLAN_LINK_REFERRAL: N_("A referral was linked to a care plan's action"),
            Action.EXCHANGE_CARE_PLAN_COMPLETE_ACTION: N_("A care plan's action was recorded as done"),
            Action.EXCHANGE_CARE_PLAN_REPORT: N_("A care plan was printed"),
        },
    ),
    (
        N_("Signing in"),
        {
            Action.TENANTS_SESSION_SIGN_IN: N_("A member of staff signed in"),
            Action.TENANTS_SESSION_SIGN_IN_FAILED: N_("A sign-in was refused"),
            Action.TENANTS_SESSION_LOCKED: N_("An account was locked after repeated failed sign-ins"),
            Action.TENANTS_INVITATION_ACCEPT: N_("An invitation was accepted and a password chosen"),
            Action.TENANTS_TOKEN_ISSUE: N_("An agency system was given an access token"),
            Action.TENANTS_TOKEN_REFUSE: N_("An agency system was refused an access token"),
        },
    ),
    (
        N_("Staff and agency systems"),
        {
            Action.TENANTS_USER_LIST: N_("The list of staff was viewed"),
            Action.TENANTS_USER_READ: N_("A member of staff's account was viewed"),
            Action.TENANTS_USER_INVITE: N_("A member of staff was invited"),
            Action.TENANTS_USER_ROLES: N_("A member of staff's roles were changed"),
            Action.TENANTS_USER_SECOND_FACTOR_RESET: N_("A member of staff's second factor was reset"),
            Action.TENANTS_USER_DEACTIVATE: N_("An account was deactivated"),
            Action.TENANTS_USER_REACTIVATE: N_("An account was reactivated"),
            Action.TENANTS_CLIENT_LIST: N_("The list of agency systems was viewed"),
            Action.TENANTS_CLIENT_REGISTER: N_("An agency system was registered"),
            Action.TENANTS_CLIENT_REVOKE: N_("An agency system was revoked"),
        },
    ),
    (
        N_("The organisation, the directory and keys"),
        {
            Action.TENANTS_DIRECTORY_READ: N_("The partner directory was searched"),
            Action.TENANTS_PROFILE_UPDATE: N_("The organisation's directory profile was changed"),
            Action.TENANTS_KEYS_READ: N_("The organisation's keys were viewed"),
            Action.TENANTS_KEYS_ROTATE: N_("The organisation's keys were replaced"),
            Action.TENANTS_SETTINGS_READ: N_("The organisation's settings were viewed"),
            Action.TENANTS_TIME_ZONE_SET: N_("The organisation's time zone was changed"),
            Action.TENANTS_PEER_KEYS_ACCEPT: N_("A partner node's new keys were accepted"),
        },
    ),
    (
        N_("The audit trail"),
        {
            Action.AUDIT_EVENTS_SEARCH: N_("The audit trail was searched"),
            Action.AUDIT_SUBJECT_LOOKUP: N_("A person was looked up by full name and birth date"),
            Action.AUDIT_SUBJECT_REPORT: N_("A subject access report was made"),
            Action.AUDIT_REVIEW_LIST: N_("The review queue was viewed"),
            Action.AUDIT_REVIEW_MARK: N_("An event was marked as reviewed"),
            Action.AUDIT_ANOMALIES_LIST: N_("The trail was checked for anomalies"),
            Action.AUDIT_CHECKPOINT_READ: N_("The trail's latest checkpoint was read"),
            Action.AUDIT_PROOF_READ: N_("A proof that an event is in the trail was read"),
            Action.AUDIT_LOG_VERIFY: N_("The trail was verified"),
            Action.AUDIT_CHECKPOINT_REFUSE: N_("A checkpoint of the trail was refused a co-signature"),
            Action.AUDIT_LOG_RENAME: N_("The trail's signing name was changed"),
        },
    ),
)
SENTENCES: Final[Mapping[str, str]] = {a.value: s for _, group in ACTION_GROUPS for a, s in group.items()}
BASIS_LABELS: Final = {"consent": N_("consent"), "statutory": N_("statute, without consent")}


def action_filter() -> list[tuple[str, list[tuple[str, str]]]]:
    """The search form's action choices: (group label, [(code, sentence), …]), each group in its own order."""
    return [(label, [(a.value, s) for a, s in group.items()]) for label, group in ACTION_GROUPS]


# -- events as shown --------------------------------------------------------------------------------------------------


def shown(event: Mapping[str, Any], zone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """An event as the templates show it: its time as a datetime and as the day and time in the agency's zone."""
    at = dt.datetime.fromisoformat(event["time"])
    local = at.astimezone(zone)
    return {**event, "at": at, "day": local.date(), "clock": f"{local:%H:%M}"}


@dataclass(frozen=True, slots=True)
class Day:
    day: dt.date
    events: list[dict[str, Any]]


def by_day(events: Iterable[dict[str, Any]]) -> list[Day]:
    """Shown events (newest first) in runs of one local day each."""
    days: list[Day] = []
    for event in events:
        if not days or days[-1].day != event["day"]:
            days.append(Day(event["day"], []))
        days[-1].events.append(event)
    return days


# -- who acted --------------------------------------------------------------------------------------------------------


def _uuid(value: object) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(value) if isinstance(value, str) and value else None


async def named(ctx: Context, actors: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """What `dpo_words.html`'s `who` needs to name these actors (`kind`, `id`, `tenant` as in an event; a kind of
    None looks the id up as a person and as a system): the caller's own staff and systems, partners' names."""
    own = ctx.principal.tenant_id
    people: set[uuid.UUID] = set()
    systems: set[uuid.UUID] = set()
    organisations: set[uuid.UUID] = set()
    for actor in actors:
        tenant, actor_id = _uuid(actor.get("tenant")), _uuid(actor.get("id"))
        if tenant is not None and tenant != own:
            organisations.add(tenant)
        elif tenant == own and actor_id is not None:
            if actor.get("kind") in ("user", None):
                people.add(actor_id)
            if actor.get("kind") in ("client", None):
                systems.add(actor_id)
    found = await names.actor_names(
        ctx.session, ctx.principal, user_ids=people, client_ids=systems, tenant_ids=organisations
    )
    return {
        "colleagues": {str(k): v for k, v in found.staff.items()},
        "systems": {str(k): v for k, v in found.systems.items()},
        "partners": {str(k): v for k, v in found.organisations.items()},
    }
