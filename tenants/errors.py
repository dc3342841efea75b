"""Failures that the tenants area reports to its callers, independent of HTTP."""

from __future__ import annotations


class CasebridgeError(Exception):
    """Base of every domain failure; the message is safe to show to a user."""


class NotFound(CasebridgeError):
    """The thing does not exist, or the caller may not know that it does: both look the same."""


class Conflict(CasebridgeError):
    """The request contradicts the current state (a duplicate slug, an email already registered)."""


class InvalidInput(CasebridgeError):
    """The request is well-formed but its content is not acceptable."""


class NotAuthenticated(CasebridgeError):
    """Credentials are missing, wrong, expired or belong to a suspended tenant."""


class Forbidden(CasebridgeError):
    """The caller is known but its role or scopes do not allow the action."""


class KeyUnavailable(CasebridgeError):
    """Key material cannot be unwrapped: a wrong master key or a damaged record."""


class PartnerKeysUnavailable(KeyUnavailable):
    """The partner's public envelope key is not known here (its node's keys were never fetched, or not accepted):
    nothing can be sealed for it until they are."""
