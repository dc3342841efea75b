"""Fixtures of the audit log's tests: a node on the test's database and `casebridge` run in-process beside it."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from audit.sealer import Sealer, log_origin
from gateway.app import build_runtime
from gateway.cli import main
from gateway.db import upgrade_schema
from gateway.settings import Settings
from tests.conftest import BASE_URL, settings_for
from tests.integration.audit.sealing import Cli, Node


@pytest.fixture
def node_settings(database_url: str, tmp_path: Path) -> Settings:
    return settings_for(database_url, tmp_path / "var", None)


@pytest.fixture
async def node(node_settings: Settings) -> AsyncIterator[Node]:
    runtime = build_runtime(node_settings)
    await upgrade_schema(runtime.engine)
    sealer = Sealer(runtime.sessions, runtime.keyring, runtime.clock, origin=log_origin(node_settings.server.base_url))
    yield Node(runtime, sealer)
    await runtime.engine.dispose()


@pytest.fixture
def cli(node_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`casebridge` in-process, on a thread of its own (it runs its own event loop), with the node's settings."""
    monkeypatch.setenv("CASEBRIDGE_DATA_DIR", str(node_settings.paths.data_dir))
    monkeypatch.setenv("CASEBRIDGE_DATABASE_URL", node_settings.database.url)
    monkeypatch.setenv("CASEBRIDGE_BASE_URL", BASE_URL)
    monkeypatch.delenv("CASEBRIDGE_NATS_URL", raising=False)  # verify and export must not need the bus
    monkeypatch.delenv("CASEBRIDGE_MASTER_KEY_FILE", raising=False)

    async def run(*argv: str) -> tuple[int, dict[str, Any] | None, str]:
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr("sys.stdout", out)
        monkeypatch.setattr("sys.stderr", err)

        def call() -> int:
            try:
                main(list(argv))
            except SystemExit as exc:
                return int(exc.code or 0)
            return 0

        code = await asyncio.to_thread(call)
        printed = out.getvalue().strip()
        return code, json.loads(printed) if printed else None, err.getvalue()

    return run
