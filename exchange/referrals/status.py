"""A referral's status and the whole status machine: which side may move a referral from one status to another."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from exchange.referrals.models import Side


class Status(enum.StrEnum):
    """FHIR Task codes as closed-loop referrals use them (HL7 Gravity SDOH); the values are stored and sent as is."""

    DRAFT = "draft"
    REQUESTED = "requested"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IN_PROGRESS = "in-progress"
    ON_HOLD = "on-hold"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The mover of a transition no side makes: the recipient's node, once it has applied the envelope.
SYSTEM: Final = "system"

# Who may move a referral from one status to another: the whole status machine in one table.
TRANSITIONS: Final[Mapping[tuple[str, str], str]] = {
    (Status.DRAFT, Status.REQUESTED): Side.SENDER,
    (Status.REQUESTED, Status.RECEIVED): SYSTEM,
    (Status.RECEIVED, Status.ACCEPTED): Side.RECIPIENT,
    (Status.RECEIVED, Status.REJECTED): Side.RECIPIENT,
    (Status.ACCEPTED, Status.IN_PROGRESS): Side.RECIPIENT,
    (Status.ACCEPTED, Status.ON_HOLD): Side.RECIPIENT,
    (Status.ACCEPTED, Status.COMPLETED): Side.RECIPIENT,
    (Status.ACCEPTED, Status.FAILED): Side.RECIPIENT,
    (Status.IN_PROGRESS, Status.ON_HOLD): Side.RECIPIENT,
    (Status.IN_PROGRESS, Status.COMPLETED): Side.RECIPIENT,
    (Status.IN_PROGRESS, Status.FAILED): Side.RECIPIENT,
    (Status.ON_HOLD, Status.IN_PROGRESS): Side.RECIPIENT,
    (Status.ON_HOLD, Status.COMPLETED): Side.RECIPIENT,
    (Status.ON_HOLD, Status.FAILED): Side.RECIPIENT,
    **{
        (status, Status.CANCELLED): Side.SENDER
        for status in (
            Status.DRAFT,
            Status.REQUESTED,
            Status.RECEIVED,
            Status.ACCEPTED,
            Status.IN_PROGRESS,
            Status.ON_HOLD,
        )
    },
}
TERMINAL: Final = frozenset({Status.REJECTED, Status.COMPLETED, Status.FAILED, Status.CANCELLED})
# Still to be answered by respond_by; accepted and to be finished by complete_by.
AWAITING_ANSWER: Final = (Status.DRAFT, Status.REQUESTED, Status.RECEIVED)
IN_HAND: Final = (Status.ACCEPTED, Status.IN_PROGRESS, Status.ON_HOLD)


def allowed(current: str, target: str, side: str) -> bool:
    # A member hashes and compares as its value, so a status read from the database finds its row of the table.
    return TRANSITIONS.get((current, target)) == side
