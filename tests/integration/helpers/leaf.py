"""The hub's NATS and an agency node's leaf NATS on loopback, each a real nats-server started from its template
(deploy/nats/hub.conf and leaf.conf) with the placeholders filled in.

    async with hub_and_leaf(tmp_path, agency_tenant_id) as nats:
        nats.hub_url    # the hub's gateways: the HUB account
        nats.leaf_url   # the agency's node: its own server, joined to the hub as a leaf node
"""

from __future__ import annotations

import contextlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.bus import ENVELOPE_STREAM, answers_nats, nats_server_binary
from tests.polling import eventually
from tests.processes import START_WITHIN_S, Child, free_port

DEPLOY_NATS = Path(__file__).resolve().parents[3] / "deploy" / "nats"
HOST = "127.0.0.1"
HUB_API = "hub.$JS.API"
"""The prefix under which the node's account sees the hub's JetStream API (CASEBRIDGE_NATS_HUB_API)."""


def render(template: Path, target: Path, values: dict[str, str]) -> Path:
    """`template` with each placeholder (a whole UPPER_CASE word) replaced; every placeholder outside comments must
    be filled, so a template that grows one fails here rather than as a server that will not start."""
    text = template.read_text(encoding="utf-8")
    names = "|".join(re.escape(name) for name in values)
    text = re.sub(rf"\b({names})\b", lambda match: values[match.group(1)], text)
    settings = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    left = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", settings)) - {ENVELOPE_STREAM}
    assert not left, f"placeholders left in {template.name}: {sorted(left)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


class ConfiguredNats(Child):
    """nats-server -c CONFIG, answering on `port`; `monitor_port` serves the monitoring endpoints (/leafz)."""

    def __init__(self, name: str, config: Path, port: int, log_file: Path) -> None:
        super().__init__(name, log_file)
        self.config = config
        self.port = port
        self.monitor_port = free_port()

    async def start(self) -> None:
        await self.spawn(str(nats_server_binary()), "-c", str(self.config), "-m", str(self.monitor_port))

        async def answers() -> bool:
            assert self.running, f"{self.name} exited while starting\n{self.log_tail()}"
            return await answers_nats(self.port)

        await eventually(answers, within=START_WITHIN_S, what=lambda: f"{self.name} to answer\n{self.log_tail()}")

    async def leaf_connections(self) -> int:
        async with httpx.AsyncClient(timeout=2.0) as client:
            reply = await client.get(f"http://{HOST}:{self.monitor_port}/leafz")
        return int(reply.json().get("leafnodes", 0))


@dataclass(frozen=True, slots=True)
class HubAndLeaf:
    hub: ConfiguredNats
    leaf: ConfiguredNats
    hub_url: str
    leaf_url: str
    agency_tenant: uuid.UUID


@contextlib.asynccontextmanager
async def hub_and_leaf(directory: Path, agency_tenant: uuid.UUID) -> AsyncIterator[HubAndLeaf]:
    """Start the hub's nats-server and the agency node's, and wait until the node has joined the hub."""
    hub_port, leaf_port, hub_leafnode_port = free_port(), free_port(), free_port()
    hub_password, node_password, leaf_password = (secrets.token_urlsafe(16) for _ in range(3))
    hub_config = render(
        DEPLOY_NATS / "hub.conf",
        directory / "hub.conf",
        {
            "CLIENT_HOST": HOST,
            "CLIENT_PORT": str(hub_port),
            "HUB_PASSWORD": hub_password,
            "AGENCY_TENANT_ID": str(agency_tenant),
            "AGENCY_ACCOUNT": "agency_node",
            "AGENCY_NODE_USER": "agency-node",
            "AGENCY_NODE_PASSWORD": node_password,
            "STORE_DIR": str(directory / "hub-store"),
            "LEAF_HOST": HOST,
            "LEAF_PORT": str(hub_leafnode_port),
        },
    )
    leaf_config = render(
        DEPLOY_NATS / "leaf.conf",
        directory / "leaf.conf",
        {
            "CLIENT_HOST": HOST,
            "CLIENT_PORT": str(leaf_port),
            "CASEBRIDGE_PASSWORD": leaf_password,
            "STORE_DIR": str(directory / "leaf-store"),
            "AGENCY_NODE_USER": "agency-node",
            "AGENCY_NODE_PASSWORD": node_password,
            "HUB_HOST": HOST,
            "HUB_LEAF_PORT": str(hub_leafnode_port),
        },
    )
    hub = ConfiguredNats("hub nats-server", hub_config, hub_port, directory / "hub-nats.log")
    leaf = ConfiguredNats("leaf nats-server", leaf_config, leaf_port, directory / "leaf-nats.log")
    try:
        await hub.start()
        await leaf.start()
        await eventually(
            lambda: _joined(hub),
            within=START_WITHIN_S,
            what=lambda: f"the leaf node to join the hub\n{hub.log_tail()}\n{leaf.log_tail()}",
        )
        yield HubAndLeaf(
            hub,
            leaf,
            hub_url=f"nats://casebridge:{hub_password}@{HOST}:{hub_port}",
            leaf_url=f"nats://casebridge:{leaf_password}@{HOST}:{leaf_port}",
            agency_tenant=agency_tenant,
        )
    finally:
        await leaf.kill()
        await hub.kill()


async def _joined(hub: ConfiguredNats) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return await hub.leaf_connections() >= 1
    return False
