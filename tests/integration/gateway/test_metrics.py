"""GET /metrics: requests by route template and status, gauges read from the database and JetStream, who may scrape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families

from exchange.transport.jetstream import JetStreamPublisher, inbox_durable
from exchange.transport.relay import OutboxRelay
from gateway.app import create_app
from gateway.bus import ENVELOPE_STREAM
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workers import WorkerName
from tests.environment import BASE_URL, empty_bus, running_app, settings_for
from tests.integration.helpers.agencies import PERSONAL_DATA, Agency, open_case, referral_body
from tests.polling import eventually
from tests.processes import CASEBRIDGE, Gateway, NatsServer, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(api: httpx.AsyncClient, **headers: str) -> Samples:
    response = await api.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


async def test_requests_are_counted_by_route_template_and_status(
    agencies: tuple[Agency, Agency, Agency], api: httpx.AsyncClient, app: Litestar
) -> None:
    centre, opeka, _ = agencies
    case, _ = await open_case(centre, opeka)
    missing = uuid.uuid4()
    assert (await centre.get(f"/api/v1/referrals/{missing}")).status_code == 404
    assert (await centre.get(f"/api/v1/cases/{case['id']}")).status_code == 200
    assert (await centre.get(f"/api/v1/referrals?box=incoming&status={PERSONAL_DATA[1]}")).status_code == 400
    assert (await api.get(f"/no/such/page/{missing}?q={PERSONAL_DATA[0]}")).status_code == 404
    assert (await api.delete("/health/live")).status_code == 405
    for _ in range(3):
        assert (await api.get("/health/live")).status_code == 200

    samples = await scrape(api)
    requests = "casebridge_http_requests_total"
    assert value(samples, requests, method="GET", route="/api/v1/referrals/{referral_id}", status="404") == 1
    assert value(samples, requests, method="GET", route="/api/v1/cases/{case_id}", status="200") == 1
    assert value(samples, requests, method="GET", route="/api/v1/referrals", status="400") == 1
    assert value(samples, requests, method="POST", route="/api/v1/cases", status="201") == 1
    assert value(samples, requests, method="POST", route="/oauth/token", status="200") == 3  # one per agency
    assert value(samples, requests, method="GET", route="/health/live", status="200") == 3
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert value(samples, requests, method="DELETE", route="unmatched", status="405") == 1
    # A histogram per route: its buckets, its count and its sum.
    latency = "casebridge_http_request_duration_seconds"
    live = {"method": "GET", "route": "/health/live"}
    assert value(samples, f"{latency}_count", **live) == 3
    assert value(samples, f"{latency}_bucket", **live, le="+Inf") == 3
    assert value(samples, f"{latency}_bucket", **live, le="0.005") is not None
    assert (value(samples, f"{latency}_sum", **live) or 0) > 0

    # Only templates of routes the app has, never a path, an id or a query.
    templates = {route.path_format for route in app.routes} | {"unmatched"}
    routes = {dict(labels).get("route") for name, labels in samples if name.startswith("casebridge_http_")}
    assert routes - {None} <= templates
    everything = " ".join(f"{name} {sorted(labels)}" for name, labels in samples)
    for leak in (str(missing), case["id"], str(centre.id), str(opeka.id), *PERSONAL_DATA):
        assert leak not in everything


@pytest.fixture
async def settings(database_url: str, _schema: None, tmp_path: Path, nats_url: str) -> Settings:
    """Only the inbox runs in the app, so the test decides when the outbox is relayed and the log sealed."""
    await empty_bus(nats_url)
    return settings_for(database_url, tmp_path / "var", nats_url, CASEBRIDGE_IN_PROCESS_WORKERS="inbox")


async def test_gauges_show_the_outbox_the_inbox_parked_envelopes_the_sealer_and_letters(
    agencies: tuple[Agency, Agency, Agency], api: httpx.AsyncClient, runtime: Runtime, nats_url: str
) -> None:
    centre, opeka, _ = agencies
    inbox = runtime.workers[WorkerName.INBOX]
    # The inbox creates the recipient's consumer, then stops: envelopes wait on the stream for it.
    await eventually(lambda: _consumer_exists(runtime, opeka.id))
    await inbox.stop()
    samples = await scrape(api)
    assert value(samples, "casebridge_inbox_pending_envelopes") == 0
    assert value(samples, "casebridge_outbox_unsent_envelopes") == 0
    assert value(samples, "casebridge_outbox_oldest_unsent_age_seconds") == 0
    assert not [name for name, _ in samples if name == "casebridge_parked_envelopes"]

    case, _ = await open_case(centre, opeka)
    sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity"]))
    assert sent.status_code == 201, sent.text
    samples = await scrape(api)
    assert value(samples, "casebridge_outbox_unsent_envelopes") == 1  # the referral, for the relay to publish
    assert (value(samples, "casebridge_outbox_oldest_unsent_age_seconds") or 0) > 0
    assert value(samples, "casebridge_letters_waiting_layout") == 1  # its letter, numbered, for the letters Worker
    unsealed = value(samples, "casebridge_audit_unsealed_events") or 0
    assert unsealed >= 4  # tokens, the case, its consent, the send: no sealer runs
    assert (value(samples, "casebridge_audit_oldest_unsealed_age_seconds") or 0) > 0
    for source in ("outbox", "inbox", "parked", "sealer", "letters"):
        assert value(samples, "casebridge_metrics_source_up", source=source) == 1

    # Relayed, and something that is no envelope beside it: both wait for the inbox.
    assert await OutboxRelay(runtime.sessions, JetStreamPublisher(runtime.bus), runtime.clock).relay_once() == 1
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().publish(
            f"cb.v2.{opeka.id}.{centre.id}.referral", b"not an envelope", stream=ENVELOPE_STREAM
        )
    finally:
        await client.close()
    samples = await scrape(api)
    assert value(samples, "casebridge_outbox_unsent_envelopes") == 0
    assert value(samples, "casebridge_inbox_pending_envelopes") == 2
    assert value(samples, "casebridge_inbox_unacknowledged_envelopes") == 0

    inbox.start()  # applies the referral and parks the other
    parked = await eventually(lambda: _parked(api))
    assert parked == {"malformed": 1}
    samples = await eventually(lambda: _drained(api))
    assert value(samples, "casebridge_inbox_unacknowledged_envelopes") == 0

    while await runtime.sealer.seal_once():
        pass
    samples = await scrape(api)
    assert value(samples, "casebridge_audit_unsealed_events") == 0
    assert value(samples, "casebridge_audit_oldest_unsealed_age_seconds") == 0
    assert value(samples, "casebridge_letters_waiting_layout") == 1  # no letters Worker here


async def _consumer_exists(runtime: Runtime, tenant: uuid.UUID) -> bool:
    try:
        await runtime.bus.js.consumer_info(ENVELOPE_STREAM, inbox_durable(tenant))
    except nats.js.errors.NotFoundError:
        return False
    return True


async def _has(scraping: Any, name: str) -> bool:
    return any(sample == name for sample, _ in await scraping)


async def _parked(api: httpx.AsyncClient) -> dict[str, float] | None:
    samples = await scrape(api)
    found = {
        dict(labels)["reason"]: v for (name, labels), v in samples.items() if name == "casebridge_parked_envelopes"
    }
    return found or None


async def _drained(api: httpx.AsyncClient) -> Samples | None:
    samples = await scrape(api)
    return samples if value(samples, "casebridge_inbox_pending_envelopes") == 0 else None


@contextlib.asynccontextmanager
async def _client_of(app: Litestar, client: tuple[str, int] = ("127.0.0.1", 40000)) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as each:
        yield each


async def test_without_a_token_only_direct_loopback_clients_may_scrape(app: Litestar, api: httpx.AsyncClient) -> None:
    assert (await api.get("/metrics")).status_code == 200
    proxied = await api.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    assert proxied.headers["content-type"] == "application/problem+json"
    assert proxied.json()["type"].endswith("/forbidden")
    assert "CASEBRIDGE_METRICS_TOKEN" in proxied.json()["detail"]
    async with _client_of(app, ("10.0.0.8", 5000)) as remote:
        refused = await remote.get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


@pytest.mark.usefixtures("_schema")
async def test_with_a_token_every_scraper_needs_it(database_url: str, tmp_path: Path, nats_url: str) -> None:
    token = secrets.token_urlsafe(24)
    settings = settings_for(database_url, tmp_path / "var", nats_url, CASEBRIDGE_METRICS_TOKEN=token)
    app = create_app(settings)
    async with running_app(app), _client_of(app) as local, _client_of(app, ("10.0.0.8", 5000)) as remote:
        for client in (local, remote):
            for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": token}):
                refused = await client.get("/metrics", headers=headers)
                assert refused.status_code == 401, headers
                assert refused.json()["type"].endswith("/unauthenticated")
                assert refused.headers["www-authenticate"].startswith("Bearer")
                assert token not in refused.text
            samples = await scrape(client, Authorization=f"Bearer {token}")
            assert value(samples, "casebridge_metrics_source_up", source="outbox") == 1


@pytest.mark.postgres
async def test_two_web_processes_count_into_one_exposition(tmp_path: Path, postgres: Any) -> None:
    nats_server = NatsServer(tmp_path)
    key_file = tmp_path / "master.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASEBRIDGE_", "PROMETHEUS_"))} | {
        "CASEBRIDGE_DATABASE_URL": postgres.create_database("metrics_processes"),
        "CASEBRIDGE_DATA_DIR": str(tmp_path / "var"),
        "CASEBRIDGE_MASTER_KEY_FILE": str(key_file),
        "CASEBRIDGE_PORT": str(port),
        "CASEBRIDGE_BASE_URL": f"http://127.0.0.1:{port}",
        "CASEBRIDGE_NATS_URL": nats_server.url,
        "CASEBRIDGE_PDF_PROCESSES": "0",
    }
    # Counts an earlier run of this service left behind are not this run's.
    stale = tmp_path / "var" / "metrics" / f"serve-{port}" / "counter_1.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an earlier run")
    gateway = Gateway(env, port, tmp_path / "serve.log", web_processes=2)
    try:
        await nats_server.start()
        upgraded = await asyncio.to_thread(
            subprocess.run, [CASEBRIDGE, "db", "upgrade"], env=env, capture_output=True, timeout=120
        )
        assert upgraded.returncode == 0, upgraded.stderr
        await gateway.start()
        assert not stale.exists()
        web = set(gateway.web_pids())
        assert len(web) == 2
        # New connections, so both web processes answer some of them.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10, limits=fresh) as each:
            before = value(await scrape(each), "casebridge_http_requests_total", **_LIVE) or 0
            sent = 0

            async def counted_by_both() -> bool:
                nonlocal sent
                assert (await each.get("/health/live")).status_code == 200
                sent += 1
                files = {path.stem.rsplit("_", 1)[-1] for path in stale.parent.glob("counter_*.db")}
                return {str(pid) for pid in web} <= files

            # The kernel hands each connection to one of them; sooner or later both have answered some.
            await eventually(counted_by_both, within=60, every=0.01, what="both web processes to count requests")
            # Whichever process answers, the exposition adds up every process's counts.
            for _ in range(4):
                samples = await scrape(each)
                assert value(samples, "casebridge_http_requests_total", **_LIVE) == before + sent
                assert value(samples, "casebridge_metrics_source_up", source="outbox") == 1
        # Every line the service logged is one JSON object; request lines carry the request id.
        logged = [line for line in gateway.log_file.read_text().splitlines() if line]
        # Beside them only the test's own start marker and the one line `serve` writes to the operator's terminal.
        assert [line for line in logged if not line.startswith(("{", "=====", "casebridge: serving on"))] == []
        lines = [line for line in logged if line.startswith("{")]
        access = [_json(line) for line in lines if '"casebridge.access"' in line]
        assert len(access) >= sent + 5
        assert all(line["request_id"] and line["route"] != "unmatched" for line in access)
        assert any(_json(line)["logger"].startswith("uvicorn") for line in lines)
    finally:
        await gateway.kill()
        await nats_server.kill()


_LIVE = {"method": "GET", "route": "/health/live", "status": "200"}


def _json(line: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(line)
    return parsed
