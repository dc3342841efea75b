"""The collaborators one casebridge process shares between requests and Workers, built once by the app factory."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from audit.peer_witness import WitnessService
from audit.sealer import Sealer
from exchange.deps import ExchangeDeps
from exchange.letters.render import TypstRenderer
from exchange.letters.services import LETTER_PENDING
from exchange.plans.mail import Mailer
from exchange.plans.reminders import ReminderMail
from exchange.transport.envelopes import MAX_TOKEN_BYTES
from exchange.transport.inbox import Inbox
from exchange.transport.outbox import OUTBOX_WRITTEN
from gateway.auth.oauth import TokenEndpoint
from gateway.auth.tokens import AccessTokenVerifier
from gateway.bus import Bus, BusError
from gateway.metrics import Gauges, HttpMetrics
from gateway.peer_witnessing import PeerClients
from gateway.settings import Settings
from gateway.workers import WorkerName, Workers
from tenants.clock import Clock
from tenants.keys import KeyRing, MasterKey
from tenants.persistence import read_only_platform_session
from tenants.services import LockoutPolicy, hosted_tenant_ids
from tenants.staff_sessions import SessionPolicy


@dataclass(slots=True)
class Runtime:
    """Built once per process by gateway.app.build_runtime; started and stopped with the app (or a worker)."""

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
    sealer: Sealer
    reminders: ReminderMail
    # Where outgoing email goes (reminders, invitation links); None when CASEBRIDGE_SMTP_HOST is unset.
    mailer: Mailer | None = None
    # Answers peers' add-checkpoint requests (POST /witness/add-checkpoint); None when no peers are configured.
    peer_witness: WitnessService | None = None
    # The pinned connections to the configured peers, shared by the witness and the checkpoint submitter.
    peer_clients: PeerClients | None = None
    # The Workers this process runs (gateway.app._workers); none until build_runtime sets them.
    workers: Workers = field(default_factory=lambda: Workers(()))
    # What GET /metrics reports: this process's requests, and the gauges read when it is scraped (gateway.metrics).
    http_metrics: HttpMetrics = field(default_factory=HttpMetrics)
    gauges: Gauges = field(default_factory=Gauges)

    async def start(self) -> None:
        """Keys, then the bus, then the Workers in order."""
        await self.token_endpoint.load_signing_key()
        await self.token_verifier.refresh()
        await self.bus.start()
        _check_bus_payload_limit(self.bus)
        await self.bus.on_wake(self.workers.names, lambda name: self.workers.wake(WorkerName(name)))
        self.workers.start()

    async def stop(self) -> None:
        """Workers in reverse order, then the bus, the PDF engine and the database. Safe after a failed start."""
        try:
            await self.workers.stop()
            await self.bus.stop()
        finally:
            if isinstance(self.exchange.letters, TypstRenderer):
                self.exchange.letters.close()
            if self.peer_clients is not None:
                await self.peer_clients.aclose()
            await self.engine.dispose()

    async def consumed_tenants(self) -> Collection[uuid.UUID]:
        """The tenants whose envelopes this node's inbox consumes: those configured, else every tenant its database
        hosts (not a peer's directory rows) but the ones agencies' own nodes host (CASEBRIDGE_NATS_HOSTED_TENANTS,
        _LEAF_TENANTS)."""
        bus = self.settings.bus
        if bus.hosted_tenants is not None:
            return bus.hosted_tenants
        async with await read_only_platform_session(self.sessions) as session:
            return await hosted_tenant_ids(session) - set(bus.leaf_tenants)

    def wake_relay(self) -> None:
        """Nudge the outbox relay and the letter layout after a commit that may have added envelopes or letters."""
        self.workers.wake(WorkerName.RELAY, WorkerName.LETTERS)

    def wake_after(self, session: AsyncSession) -> None:
        """After `session` committed: wake the Workers it left work for (most requests leave none)."""
        if session.info.get(OUTBOX_WRITTEN):
            self.workers.wake(WorkerName.RELAY)
        if session.info.get(LETTER_PENDING):
            self.workers.wake(WorkerName.LETTERS)


def _check_bus_payload_limit(bus: Bus) -> None:
    """An envelope the bus refuses would stay in the outbox for ever; refuse to start instead."""
    if bus.nc.max_payload < MAX_TOKEN_BYTES:
        raise BusError(
            f"the NATS server accepts messages up to {bus.nc.max_payload} bytes, but envelopes may reach "
            f"{MAX_TOKEN_BYTES}; set max_payload: 8MB on every NATS server"
        )
