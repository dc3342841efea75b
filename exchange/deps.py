"""The collaborators exchange operations need besides the session and the principal."""

from __future__ import annotations

from dataclasses import dataclass

from audit.services import AuditLog
from exchange.cases.datakeys import DataKeys
from exchange.cases.lookup import PersonIndex
from exchange.cases.policy import AgeRules
from exchange.letters.render import LetterRenderer
from tenants.clock import Clock
from tenants.keys import KeyRing, PublishedKeys


@dataclass(frozen=True, slots=True)
class ExchangeDeps:
    keyring: KeyRing
    published: PublishedKeys
    datakeys: DataKeys
    clock: Clock
    age_rules: AgeRules
    audit: AuditLog
    letters: LetterRenderer
    persons: PersonIndex
