"""The peers Worker: refresh each configured peer's agencies and keys through its pinned client, release held
envelopes of trusted peers, and report peers' states to health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exchange.transport.held import forget_settled, held_by_reason, releasable
from tenants.clock import Clock
from tenants.keys import PublishedKeys
from tenants.peer_keys import PeerState, RefreshResult, peer_states, refresh_peer
from tenants.peers import Peer
from tenants.persistence import platform_session
from tenants.pinning import pinned_client

log = logging.getLogger("casebridge.peers")


class PeerRefresh:
    """The peers Worker's job: a round at start, then one every `every_s` seconds or when woken."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        peers: Sequence[Peer],
        *,
        published: PublishedKeys,
        receive_batch: Callable[[Sequence[tuple[str, bytes]]], Awaitable[list[bool]]],
        every_s: float,
        client_for: Callable[[Peer], httpx.AsyncClient] = pinned_client,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._peers = tuple(peers)
        self._published = published
        self._receive_batch = receive_batch
        self.every_s = every_s
        self._client_for = client_for

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        while not stop.is_set():
            wake.clear()
            try:
                await self.round()
            except Exception as exc:  # the type only: a driver's message can carry SQL
                log.warning("peer refresh round failed (%s); retrying in %.0fs", type(exc).__name__, self.every_s)
            with contextlib.suppress(TimeoutError):
                stop_or_wake = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
                try:
                    await asyncio.wait_for(
                        asyncio.wait(stop_or_wake, return_when=asyncio.FIRST_COMPLETED), self.every_s
                    )
                finally:
                    for task in stop_or_wake:
                        task.cancel()

    async def round(self) -> list[RefreshResult]:
        """Refresh every peer, then release what their trusted keys let the inbox open."""
        results = [await self.refresh(peer) for peer in self._peers]
        await self.release()
        return results

    async def refresh(self, peer: Peer) -> RefreshResult:
        return await refresh(self._sessions, self._clock, peer, client_for=self._client_for, published=self._published)

    async def release(self) -> int:
        """Apply held envelopes of trusted peers through the inbox (once each, by envelope id); how many settled."""
        released = 0
        while messages := await releasable(self._sessions):
            await self._receive_batch(messages)
            settled = await forget_settled(self._sessions)
            released += settled
            if settled == 0:  # held again (a key still unknown) or to come later: the next round tries again
                break
        return released


async def refresh(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    peer: Peer,
    *,
    client_for: Callable[[Peer], httpx.AsyncClient] = pinned_client,
    published: PublishedKeys | None = None,
) -> RefreshResult:
    """One peer's refresh, committed; the process's key cache is dropped so accepted keys are used at once."""
    async with client_for(peer) as client, platform_session(sessions) as session, session.begin():
        result = await refresh_peer(session, peer, client, now=clock.now())
    if published is not None:
        published.forget()
    return result


async def peers_report(sessions: async_sessionmaker[AsyncSession], peers: Sequence[Peer]) -> dict[str, Any]:
    """Each configured peer's state and problem, and the held envelopes by reason: for health and `peers status`."""
    async with platform_session(sessions) as session:
        nodes = await peer_states(session)
        held = await held_by_reason(session)
    report = {}
    for peer in peers:
        node = nodes.get(peer.name)
        report[peer.name] = {
            "state": node.state if node else PeerState.NEW.value,
            "problem": node.problem if node else None,
            "checked_at": node.checked_at.isoformat() if node and node.checked_at else None,
            "slug_collisions": list(node.slug_collisions) if node else [],
        }
    return {"peers": report, "held": held}
