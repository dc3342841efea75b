"""Cross-node witnessing over HTTP (docs/audit.md, "Witnessing across nodes"): the peers' connections for both ends.

This node witnesses each peer's audit log (``POST /witness/add-checkpoint``, audit/peer_witness.py), reading the
peer's log names and keys from its ``/.well-known/audit-log``; and it sends its own checkpoints to each peer's
witness (audit/peer_cosign.py). Every request to a peer goes through that peer's pinned client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import httpx

from audit.peer_cosign import PeerWitness, Post, WitnessReply
from audit.peer_witness import FetchLog, PeerLogs
from audit.tlog_witness import ADD_CHECKPOINT_PATH
from tenants.peers import Peer

AUDIT_LOG_PATH = "/.well-known/audit-log"


ClientFor = Callable[[Peer], httpx.AsyncClient]
"""The pinned HTTP client of one peer, its base URL set to the peer's."""


class PeerClients:
    """One kept-alive pinned client per peer (tlog-witness asks for keep-alive), closed with the process."""

    def __init__(self, peers: Sequence[Peer], client_for: ClientFor) -> None:
        self._peers = {peer.name: peer for peer in peers}
        self._client_for = client_for
        self._clients: dict[str, httpx.AsyncClient] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def client(self, name: str) -> httpx.AsyncClient:
        client = self._clients.get(name)
        if client is None or client.is_closed:
            client = self._clients[name] = self._client_for(self._peers[name])
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()

    def witnesses(self) -> list[PeerWitness]:
        """Each peer's witness, for the submitter."""
        return [PeerWitness(name, self._post_to(name)) for name in self._peers]

    def logs(self) -> PeerLogs:
        """The peers' logs, for the witness."""
        return PeerLogs({name: self._fetch_log(name) for name in self._peers})

    def _post_to(self, name: str) -> Post:
        async def post(body: bytes) -> WitnessReply:
            response = await self.client(name).post(
                ADD_CHECKPOINT_PATH, content=body, headers={"Content-Type": "text/plain; charset=utf-8"}
            )
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            return WitnessReply(response.status_code, media_type, response.content)

        return post

    def _fetch_log(self, name: str) -> FetchLog:
        async def fetch() -> object:
            response = await self.client(name).get(AUDIT_LOG_PATH)
            response.raise_for_status()
            return response.json()

        return fetch
