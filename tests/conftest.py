"""Shared fixtures: the real nats-server, a throwaway PostgreSQL cluster, and a migrated database per test."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from litestar import Litestar
from sqlalchemy.engine import make_url

from gateway.app import create_app
from gateway.bus import EmbeddedNats
from gateway.db import create_engine, upgrade_schema
from gateway.runtime import Runtime
from gateway.settings import DatabaseSettings, Settings
from tenants import credentials
from tests.environment import BASE_URL, TravelClock, empty_bus, running_app, settings_for
from tests.pg import ThrowawayPostgres, postgres_available


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread while the
    session's browser is open, and no asyncio test can run after that."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/e2e/"))


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashes() -> None:
    """argon2id with 1 MiB and one pass for the suite's passwords, which guard nothing: the staff profile spends a
    quarter of a second of CPU per hash and per sign-in, a quarter of a web test's time. Processes a test starts
    (`casebridge serve`, the CLI) keep the staff profile; tests/unit/tenants/test_credentials.py checks that profile."""
    credentials.use_password_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
async def nats_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats") / "store")
    url = await server.start()
    yield url
    await server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    available, why = postgres_available()
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {why}")
        pytest.skip(f"PostgreSQL not available here: {why}")
    with ThrowawayPostgres() as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of the test's backend."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'casebridge.db'}"
    cluster: ThrowawayPostgres = request.getfixturevalue("postgres")
    return cluster.create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(scope="session")
async def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "casebridge.db"
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}", pool_size=1))
    await upgrade_schema(engine)
    await engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
async def _migrated_postgres(postgres: ThrowawayPostgres) -> str:
    name = f"template_{uuid.uuid4().hex[:12]}"
    engine = create_engine(DatabaseSettings(url=postgres.create_database(name), pool_size=1))
    await upgrade_schema(engine)
    await engine.dispose()
    return name


def _from_template(database_url: str, backend: str, request: pytest.FixtureRequest) -> None:
    """Make the test's (still empty) database a copy of the one migrated once per session: running the migrations
    for every test would cost more than most tests."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("_migrated_sqlite")
        shutil.copyfile(template, make_url(database_url).database or "")
        return
    cluster: ThrowawayPostgres = request.getfixturevalue("postgres")
    template_name: str = request.getfixturevalue("_migrated_postgres")
    cluster.recreate_database(make_url(database_url).database or "", template=template_name)


@pytest.fixture
def _schema(database_url: str, backend: str, request: pytest.FixtureRequest) -> None:
    _from_template(database_url, backend, request)


@pytest.fixture
async def settings(database_url: str, _schema: None, tmp_path: Path, nats_url: str) -> Settings:
    """Settings for the test's database (at the newest schema), data directory and nats-server."""
    await empty_bus(nats_url)
    return settings_for(database_url, tmp_path / "var", nats_url)


@pytest.fixture
def clock() -> TravelClock:
    return TravelClock()


@pytest.fixture
def app(settings: Settings, clock: TravelClock) -> Litestar:
    return create_app(settings, clock=clock)


@pytest.fixture
async def api(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app, running in the test's own event loop (asyncpg connections are loop-bound)."""
    async with (
        running_app(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield client


@pytest.fixture
def runtime(app: Litestar, api: httpx.AsyncClient) -> Runtime:
    """The running app's collaborators (after its lifespan has started)."""
    runtime: Runtime = app.state.runtime
    return runtime
