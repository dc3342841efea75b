"""Who is acting: a member of staff or an agency system, always on behalf of one tenant."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass


class ActorKind(enum.StrEnum):
    USER = "user"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: uuid.UUID
    actor_kind: ActorKind
    actor_id: uuid.UUID
    roles: frozenset[str]
    # None for staff sessions: a person is limited by roles alone, a client also by its token's scopes.
    scopes: frozenset[str] | None

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def has_scope(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes
