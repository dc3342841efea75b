"""The collaborators one gateway process shares between requests, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from audit.sealer import Sealer
from exchange.deps import ExchangeDeps
from exchange.inbox import Inbox
from gateway.audit_runtime import CheckpointWitnessing
from gateway.auth.oauth import TokenEndpoint
from gateway.auth.tokens import AccessTokenVerifier
from gateway.bus import Bus
from gateway.exchange_runtime import ExchangeWorkers
from gateway.letter_runtime import LetterRuntime
from gateway.reminder_runtime import ReminderWorker
from gateway.settings import Settings
from tenants.clock import Clock
from tenants.keys import KeyRing, MasterKey
from tenants.services import LockoutPolicy
from tenants.staff_sessions import SessionPolicy


@dataclass(slots=True)
class Runtime:
    """Built once per process by gateway.app.build_runtime."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    master_key: MasterKey
    keyring: KeyRing
    token_endpoint: TokenEndpoint
    token_verifier: AccessTokenVerifier
    bus: Bus
    lockout: LockoutPolicy
    session_policy: SessionPolicy
    exchange: ExchangeDeps
    inbox: Inbox
    workers: ExchangeWorkers
    sealer: Sealer
    reminders: ReminderWorker
    witnessing: CheckpointWitnessing

    # Appended last: lays out the letters sends leave pending (gateway/letter_runtime.py).
    letters: LetterRuntime | None = None

    def wake_relay(self) -> None:
        """Nudge the outbox relay (and the letter worker) after a commit that may have added envelopes or letters."""
        self.workers.wake_relay()
        if self.letters is not None:
            self.letters.wake()
