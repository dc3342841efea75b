"""Two real nodes on loopback: the peer (east) over TLS with a throwaway certificate, this node reaching it through
its pin. Keys are fetched, never read from a shared database; envelopes from the peer wait while its keys cannot be
fetched or changed without notice, and are applied exactly once when they can be trusted."""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from joserfc.jwk import OKPKey
from litestar import Litestar
from sqlalchemy import func, select

from exchange.referrals.models import Referral
from exchange.transport.bodies import LegalBasisBody, ReferralRequested, encode_body
from exchange.transport.envelopes import EnvelopeHeader, EnvelopeType, seal
from exchange.transport.models import HeldEnvelope, InboxEnvelope, OutboxEnvelope
from exchange.transport.outbox import subject_for
from gateway.app import create_app
from gateway.peering import PeerRefresh
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants.models import KeyUse, Role, Tenant, TenantKind
from tenants.peers import Peer
from tenants.persistence import platform_session
from tenants.services import create_tenant
from tests.environment import running_app, settings_for
from tests.integration.helpers.agencies import Agency, agency, open_case, referral_body
from tests.integration.helpers.cli import cli_beside
from tests.integration.helpers.nodes import Certificate, peers_file, served, throwaway_certificate
from tests.processes import free_port

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


class East:
    """The peer node: its own database and master key, its app, the port and certificate it is served with."""

    def __init__(self, app: Litestar, port: int, certificate: Certificate) -> None:
        self.app, self.port, self.certificate = app, port, certificate

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @property
    def peer(self) -> Peer:
        return Peer(name="east-node", url=f"https://127.0.0.1:{self.port}", pin=self.certificate.pin)

    def serving(self) -> Any:
        return served(self.app, certificate=self.certificate, port=self.port, lifespan=False)


@pytest.fixture
async def east(tmp_path: Path, nats_url: str, _migrated_sqlite: Path) -> AsyncIterator[East]:
    database = tmp_path / "east" / "casebridge.db"
    database.parent.mkdir()
    shutil.copyfile(_migrated_sqlite, database)
    settings = settings_for(
        f"sqlite+aiosqlite:///{database}", tmp_path / "east" / "var", nats_url, CASEBRIDGE_IN_PROCESS_WORKERS="none"
    )
    app = create_app(settings)
    async with running_app(app):
        node = East(app, free_port(), throwaway_certificate(tmp_path / "east"))
        async with platform_session(node.runtime.sessions) as session, session.begin():
            await create_tenant(
                session, node.runtime.keyring, slug="east-opeka", name="Opeka East", kind=TenantKind.GUARDIANSHIP_BODY
            )
        yield node


@pytest.fixture
def settings(database_url: str, _schema: None, tmp_path: Path, nats_url: str, east: East) -> Settings:
    """This node: the peers file names east with its pin; the test runs the peers Worker's rounds itself."""
    file = peers_file(tmp_path / "peers.toml", east.peer)
    workers = "relay,inbox,sealer,letters"
    return settings_for(
        database_url, tmp_path / "var", nats_url, CASEBRIDGE_PEERS=str(file), CASEBRIDGE_IN_PROCESS_WORKERS=workers
    )


def _job(runtime: Runtime) -> PeerRefresh:
    return PeerRefresh(
        runtime.sessions,
        runtime.clock,
        runtime.settings.peers.peers,
        published=runtime.exchange.published,
        receive_batch=runtime.inbox.receive_batch,
        every_s=3600,
    )


async def _east_tenant(east: East) -> uuid.UUID:
    async with platform_session(east.runtime.sessions) as session:
        return (await session.scalars(select(Tenant.id).where(Tenant.slug == "east-opeka"))).one()


async def _referral_envelope(east: East, recipient: uuid.UUID, recipient_key: dict[str, Any]) -> tuple[str, bytes]:
    """A referral from east's agency, signed on east with its own key, as east's relay would put it on the bus."""
    sender = await _east_tenant(east)
    async with platform_session(east.runtime.sessions) as session:
        signing = await east.runtime.keyring.usable_tenant_keys(session, sender, KeyUse.SIGNING)
    now = east.runtime.clock.now().replace(microsecond=0).astimezone(dt.UTC)
    header = EnvelopeHeader(uuid.uuid4(), EnvelopeType.REFERRAL_REQUESTED, sender, recipient, now)
    body = ReferralRequested(
        referral_id=uuid.uuid4(),
        kind="referral",
        purpose="social_support",
        urgency="urgent",
        respond_by=now + dt.timedelta(days=3),
        complete_by=now + dt.timedelta(days=30),
        case_ref="EAST-1",
        categories=["identity"],
        legal_basis=LegalBasisBody(type="statutory", reference="art. 122"),
        requested_at=now,
        subjects=[{"ref": "child 1"}],
    )
    token = seal(
        header,
        encode_body(body),
        signing_key=east.runtime.keyring.private_jwk(signing[0]),
        recipient_key=OKPKey.import_key(recipient_key),
    )
    return subject_for(recipient, sender, EnvelopeType.REFERRAL_REQUESTED), token.encode()


async def _counts(runtime: Runtime) -> tuple[int, int, int]:
    """(referrals here, applied envelopes, held envelopes)."""
    async with platform_session(runtime.sessions) as session:
        return (
            int(await session.scalar(select(func.count()).select_from(Referral)) or 0),
            int(await session.scalar(select(func.count()).select_from(InboxEnvelope)) or 0),
            int(await session.scalar(select(func.count()).select_from(HeldEnvelope)) or 0),
        )


async def test_envelopes_wait_for_trusted_keys_and_apply_once(
    api: httpx.AsyncClient, runtime: Runtime, east: East, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = functools.partial(cli_beside, runtime, monkeypatch)
    async with platform_session(runtime.sessions) as session, session.begin():
        local = await create_tenant(
            session, runtime.keyring, slug="opeka", name="Opeka", kind=TenantKind.GUARDIANSHIP_BODY
        )
        local_id = local.id
    async with platform_session(runtime.sessions) as session:
        local_key = await runtime.exchange.published.encryption_key(session, local_id)
    assert local_key is not None
    job = _job(runtime)

    # Trust on configuration: the first fetch, over the pinned TLS connection, accepts what east lists.
    async with east.serving():
        description = (await api.get("/.well-known/casebridge-node")).json()
        assert [t["slug"] for t in description["tenants"]] == ["opeka"]
        assert "contacts" not in description["tenants"][0]
        (result,) = await job.round()
    assert (result.state, result.agencies, result.new_keys) == ("trusted", 1, 2)
    east_id = await _east_tenant(east)
    async with platform_session(runtime.sessions) as session:
        row = (await session.scalars(select(Tenant).where(Tenant.id == east_id))).one()
        assert (row.slug, row.peer) == ("east-opeka", "east-node")
    assert (await api.get(f"/.well-known/tenants/{east_id}/jwks.json")).status_code == 404  # east publishes it

    # East cannot be reached: its envelope waits, unopened; health and metrics say why; local exchange stays ready.
    (result,) = await job.round()
    assert (result.state, result.problem) == ("unreachable", "unreachable")
    first = await _referral_envelope(east, local_id, local_key)
    assert await runtime.inbox.receive_batch([first]) == [True]
    assert await _counts(runtime) == (0, 0, 1)
    ready = await api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["peers"]["peers"]["east-node"]["state"] == "unreachable"
    assert ready.json()["peers"]["held"] == {"peer_unreachable": 1}
    metrics = (await api.get("/metrics")).text
    assert 'casebridge_held_envelopes{reason="peer_unreachable"} 1.0' in metrics
    assert 'casebridge_peers{state="unreachable"} 1.0' in metrics
    assert "east-node" not in metrics

    # Back: the keys are fetched again and the held envelope is applied, once.
    async with east.serving():
        (result,) = await job.round()
    assert result.state == "trusted"
    assert await _counts(runtime) == (1, 1, 0)
    assert await runtime.inbox.receive_batch([first]) == [True]  # a redelivery changes nothing
    assert await _counts(runtime) == (1, 1, 0)

    # East's keys change without notice: its next envelope waits until the operator accepts them.
    async with platform_session(east.runtime.sessions) as session, session.begin():
        await east.runtime.keyring.rotate_tenant_keys(session, east_id)
    async with east.serving():
        (result,) = await job.round()
        assert (result.state, result.problem, result.new_keys) == ("keys_changed", "new_keys", 2)
        second = await _referral_envelope(east, local_id, local_key)
        assert await runtime.inbox.receive_batch([second]) == [True]
        await job.round()
    assert await _counts(runtime) == (1, 1, 1)
    assert (await api.get("/health/ready")).json()["peers"]["held"] == {"keys_changed": 1}
    code, accepted, _ = await cli("peers", "accept-keys", "east-node")
    assert code == 0
    assert accepted is not None
    assert len(accepted["accepted"]) == 2
    runtime.exchange.published.forget()
    assert await job.release() == 1
    assert await _counts(runtime) == (2, 2, 0)
    code, _, error = await cli("peers", "accept-keys", "east-node")
    assert (code, "no key waiting" in error) == (1, True)


async def test_a_peer_presenting_another_key_is_refused(
    api: httpx.AsyncClient, runtime: Runtime, east: East, tmp_path: Path
) -> None:
    impostor = throwaway_certificate(tmp_path / "impostor")
    async with served(east.app, certificate=impostor, port=east.port, lifespan=False):
        (result,) = await _job(runtime).round()
    assert (result.state, result.problem) == ("unreachable", "pin_mismatch")
    async with platform_session(runtime.sessions) as session:
        assert await session.scalar(select(func.count()).select_from(Tenant).where(Tenant.peer.is_not(None))) == 0


async def test_a_referral_to_a_peer_agency_without_keys_is_a_503_problem(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    async with platform_session(runtime.sessions) as session, session.begin():
        far = Tenant(
            slug="far-opeka", name="Opeka Far", kind=TenantKind.GUARDIANSHIP_BODY, peer="east-node", contacts={}
        )
        far.refresh_search_keys()
        session.add(far)
        await session.flush()
        far_id = far.id
    case, _ = await open_case(centre, cast("Agency", SimpleNamespace(id=far_id)))
    async with platform_session(runtime.sessions) as session:
        outbox_before = await session.scalar(select(func.count()).select_from(OutboxEnvelope))
    response = await centre.post("/api/v1/referrals", referral_body(case, far_id, ["identity"]))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["type"], problem["status"]) == ("/problems/partner-keys-unavailable", 503)
    assert "nothing was sent" in problem["detail"]
    async with platform_session(runtime.sessions) as session:
        assert await session.scalar(select(func.count()).select_from(Referral)) == 0
        assert await session.scalar(select(func.count()).select_from(OutboxEnvelope)) == outbox_before
