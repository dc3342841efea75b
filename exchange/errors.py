"""Failures the exchange reports to its callers, beyond the generic ones in tenants.errors."""

from __future__ import annotations

import uuid

from exchange.cases.policy import Deny
from tenants.errors import CasebridgeError, Conflict


class ConsentRequired(CasebridgeError):
    """The sharing policy refused: the message names the subject (by its case ref) and the category."""

    def __init__(self, message: str, deny: Deny, subject_ref: str | None, *, task: int | None = None) -> None:
        super().__init__(message)
        self.deny = deny
        self.subject_ref = subject_ref
        self.task = task  # a plan's refused task, by its position in the request's `tasks` (from 0)

    @property
    def subject_id(self) -> uuid.UUID | None:
        return self.deny.subject_id


class TransitionNotAllowed(Conflict):
    """The referral cannot move to that status from its current one, or not by this side."""


class IdempotencyMismatch(CasebridgeError):
    """An Idempotency-Key was reused with a different request body."""
