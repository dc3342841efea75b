"""The process model (docs/architecture.md, "Workers and processes"): `serve --workers N` and `casebridge worker` on
PostgreSQL, one process on SQLite."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import build_runtime
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants.models import Role, TenantKind
from tests.factories import access_token, make_client, make_tenant
from tests.integration.helpers.agencies import referral_body
from tests.polling import eventually, eventually_blocking
from tests.processes import CASEBRIDGE, Gateway, NatsServer, WorkerProcess, children_of, free_port

WITHIN_S = 60.0


def _environment(tmp: Path, database_url: str, **extra: str) -> dict[str, str]:
    key_file = tmp / "master.key"
    if not key_file.exists():
        key_file.write_bytes(secrets.token_bytes(32))
        key_file.chmod(0o600)
    port = free_port()
    variables = {
        "CASEBRIDGE_DATABASE_URL": database_url,
        "CASEBRIDGE_DATA_DIR": str(tmp / "var"),
        "CASEBRIDGE_MASTER_KEY_FILE": str(key_file),
        "CASEBRIDGE_PORT": str(port),
        "CASEBRIDGE_BASE_URL": f"http://127.0.0.1:{port}",
        **extra,
    }
    return {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")} | variables


def _casebridge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CASEBRIDGE, *args], env=env, capture_output=True, text=True, timeout=120)


def test_sqlite_refuses_a_second_process_and_says_to_use_postgresql(tmp_path: Path) -> None:
    env = _environment(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'var' / 'casebridge.db'}")
    assert _casebridge(env, "db", "upgrade").returncode == 0
    several = _casebridge(env, "serve", "--workers", "2")
    assert several.returncode != 0
    assert "serve --workers 2 needs PostgreSQL" in several.stderr
    assert "CASEBRIDGE_DATABASE_URL" in several.stderr

    server = subprocess.Popen([CASEBRIDGE, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base_url = env["CASEBRIDGE_BASE_URL"]

        def ready() -> bool:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200
            return False

        eventually_blocking(ready, within=60, every=0.1, what="casebridge serve on SQLite answering /health/ready")
        for second in (["serve", "--port", str(free_port())], ["worker"], ["worker", "--only", "relay"]):
            refused = _casebridge(env, *second)
            assert refused.returncode != 0, second
            assert "SQLite allows one casebridge process" in refused.stderr, refused.stderr
            assert "PostgreSQL" in refused.stderr
        # Admin commands still work beside the running server.
        created = _casebridge(env, "tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")
        assert created.returncode == 0, created.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
    # The lock went with the process: the next serve (or a worker) may start.
    assert server.returncode == 0


def test_worker_names_must_be_known_and_configured(tmp_path: Path) -> None:
    env = _environment(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'var' / 'casebridge.db'}")
    assert _casebridge(env, "db", "upgrade").returncode == 0
    unknown = _casebridge(env, "worker", "--only", "relay,typesetter")
    assert unknown.returncode != 0
    assert "--only: expected" in unknown.stderr
    assert "'relay,typesetter'" in unknown.stderr
    no_smtp = _casebridge(env, "worker", "--only", "reminders")
    assert no_smtp.returncode != 0
    assert "the reminders worker needs CASEBRIDGE_SMTP_HOST" in no_smtp.stderr
    bad_setting = _casebridge({**env, "CASEBRIDGE_IN_PROCESS_WORKERS": "relay,sealers"}, "serve")
    assert bad_setting.returncode != 0
    assert "CASEBRIDGE_IN_PROCESS_WORKERS" in bad_setting.stderr


def test_several_processes_on_postgresql_need_a_shared_nats(tmp_path: Path, postgres: Any) -> None:
    env = _environment(tmp_path, postgres.create_database("processes_no_nats"))
    assert _casebridge(env, "db", "upgrade").returncode == 0
    for command in (["serve", "--workers", "2"], ["worker"]):
        refused = _casebridge(env, *command)
        assert refused.returncode != 0
        assert "CASEBRIDGE_NATS_URL" in refused.stderr, refused.stderr


@contextlib.asynccontextmanager
async def _seeded(env: dict[str, str]) -> AsyncIterator[Runtime]:
    runtime = build_runtime(Settings.from_env({k: v for k, v in env.items() if k.startswith("CASEBRIDGE_")}))
    try:
        yield runtime
    finally:
        await runtime.engine.dispose()


@pytest.mark.postgres
async def test_two_web_processes_and_a_worker_process_carry_the_referral_loop(tmp_path: Path, postgres: Any) -> None:
    nats_server = NatsServer(tmp_path)
    env = _environment(
        tmp_path,
        postgres.create_database("processes_loop"),
        CASEBRIDGE_NATS_URL=nats_server.url,
        CASEBRIDGE_IN_PROCESS_WORKERS="none",
    )
    gateway = Gateway(env, int(env["CASEBRIDGE_PORT"]), tmp_path / "serve.log", web_processes=2)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        await nats_server.start()
        assert _casebridge(env, "db", "upgrade").returncode == 0
        async with _seeded(env) as runtime:
            centre_tenant = await make_tenant(runtime, "semya", kind=TenantKind.SOCIAL_CENTRE)
            opeka_tenant = await make_tenant(runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
            centre_client = await make_client(runtime, centre_tenant, role=Role.SPECIALIST)
            opeka_client = await make_client(runtime, opeka_tenant, role=Role.INTAKE)
        await worker.start()
        await gateway.start()  # ready only once the worker's sealer holds its lease
        web = gateway.web_pids()
        assert len(web) == 2
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as api:
            ready = (await api.get("/health/ready")).json()
            assert ready["workers"] == {}  # the web processes run no Worker of their own
            assert ready["checks"] == {"database": True, "bus": True, "audit_sealer": True}

            centre = {"Authorization": f"Bearer {await access_token(api, centre_client)}"}
            opeka = {"Authorization": f"Bearer {await access_token(api, opeka_client)}"}
            child = {"ref": "child 1", "full_name": "Петров Иван", "birth_date": "2014-02-03", "role": "child"}
            opened = await api.post("/api/v1/cases", headers=centre, json={"title": "Семья", "subjects": [child]})
            case = opened.json()
            consent = await api.post(
                f"/api/v1/cases/{case['id']}/consents",
                headers=centre,
                json={
                    "subject_id": case["subjects"][0]["id"],
                    "given_by": {"name": "Петрова Анна", "relation": "parent"},
                    "purposes": ["social_support"],
                    "categories": ["identity"],
                    "recipients": {"tenants": [str(opeka_tenant.id)], "kinds": []},
                    "valid_until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).isoformat(),
                },
            )
            assert consent.status_code == 201, consent.text
            sent = await api.post(
                "/api/v1/referrals",
                headers=centre,
                json=referral_body(
                    case, opeka_tenant.id, ["identity"], problem="Семья нуждается в помощи", urgency="routine"
                ),
            )
            assert sent.status_code == 201, sent.text
            referral_id = sent.json()["id"]

            async def delivered() -> bool:
                theirs = await api.get(f"/api/v1/referrals/{referral_id}", headers=opeka)
                ours = await api.get(f"/api/v1/referrals/{referral_id}", headers=centre)
                return (
                    theirs.status_code == 200
                    and ours.json()["status"] == "received"
                    and ours.json()["letter"]["status"] == "ready"
                    and theirs.json()["letter"]["status"] == "ready"
                )

            await eventually(delivered, within=WITHIN_S, every=0.1)

            # Revoked from another process (the command line): its tokens stop working at once in every web
            # process, on routes that read in a transaction and on those that do not.
            opeka_token = opeka["Authorization"].removeprefix("Bearer ")
            revoked = _casebridge(env, "client", "revoke", "--tenant", "opeka", "--client-id", opeka_client.client_id)
            assert revoked.returncode == 0, revoked.stderr
            fresh = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10, limits=fresh) as each:
                for path in [f"/api/v1/referrals/{referral_id}", "/api/v1/directory/tenants"] * 5:
                    refused = await each.get(path, headers={"Authorization": f"Bearer {opeka_token}"})
                    assert refused.status_code == 401, (path, refused.text)
                    assert refused.json()["type"].endswith("/invalid-token"), refused.text

            # A web process killed outright is replaced by `serve`, and the port keeps answering new connections
            # meanwhile (a connection the dead process held is gone with it, as for any client).
            os.kill(web[0], signal.SIGKILL)
            fresh = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10, limits=fresh) as probe:
                answered = [(await probe.get("/health/live")).status_code for _ in range(20)]
            assert answered == [200] * 20
            await eventually(lambda: _replaced(gateway, web), within=WITHIN_S, every=0.1)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as api:
            await eventually(lambda: _ready(api), within=WITHIN_S, every=0.1)
        assert await worker.stop() == 0
        assert "worker stopping" in worker.log_file.read_text()
        # The supervisor killed outright takes its web processes with it: nothing serves on without it.
        web = gateway.web_pids()
        await gateway.kill()
        await eventually(
            lambda: _all_gone(web),
            within=30,
            every=0.1,
            what=lambda: (
                f"the web processes to die with the supervisor: {[(p, _state(p), children_of(p)) for p in web]}"
            ),
        )
    finally:
        await gateway.kill()
        await worker.kill()
        await nats_server.kill()


async def _all_gone(pids: list[int]) -> bool:
    return all(_state(pid) == "Z" for pid in pids)  # a dead child nobody reaps stays a zombie


def _state(pid: int) -> str:
    """The process's state letter; "Z" also when it is gone altogether."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


async def _ready(api: httpx.AsyncClient) -> bool:
    return (await api.get("/health/ready")).status_code == 200


async def _replaced(gateway: Gateway, before: list[int]) -> bool:
    now = gateway.web_pids()
    return len(now) == 2 and before[0] not in now and before[1] in now
