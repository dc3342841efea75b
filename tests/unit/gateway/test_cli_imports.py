"""The command line loads only what a command uses: `--help` no framework at all, an admin command no web layer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gateway.app import build_runtime
from gateway.cli_admin import build_admin_context
from gateway.settings import Settings

# Runs one command in a fresh interpreter and writes the names of the modules it loaded to the file it is given.
_RUN_AND_LIST_MODULES = """
import json, sys
from gateway.cli import main
modules_file, argv = sys.argv[1], sys.argv[2:]
try:
    main(argv)
    code = 0
except SystemExit as exit:
    code = exit.code or 0
with open(modules_file, "w", encoding="utf-8") as out:
    json.dump({"code": code, "modules": sorted(k for k, v in sys.modules.items() if v is not None)}, out)
"""

# What serving needs and administering does not: the ASGI server, the templates, the bus, the PDF typesetter.
SERVICE_ONLY = ("uvicorn", "jinja2", "nats", "typst")
# casebridge's own web layer and background workers, which gateway.app builds.
WEB_LAYER = (
    "gateway.app",
    "gateway.runtime",
    "gateway.controllers",
    "gateway.web",
    "gateway.auth",
    "gateway.bus",
    "exchange",
)


def _loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return sorted({m for m in modules for p in packages if m == p or m.startswith(p + ".")})


def _environment(data_dir: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")}
    return clean | {"CASEBRIDGE_DATA_DIR": str(data_dir)}  # the embedded SQLite database


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    return _environment(tmp_path / "var")


@pytest.fixture(scope="module")
def _set_up(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory as `db upgrade` and `tenant create` left it, made once by the command line itself."""
    tmp_path = tmp_path_factory.mktemp("set-up")
    environment = _environment(tmp_path / "var")
    _run(environment, tmp_path, "db", "upgrade")
    _run(environment, tmp_path, "tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")
    return tmp_path / "var"


@pytest.fixture
def set_up(_set_up: Path, environment: dict[str, str]) -> dict[str, str]:
    """`environment` on a copy of that data directory (database and master key): migrated, with the tenant semya."""
    shutil.copytree(_set_up, environment["CASEBRIDGE_DATA_DIR"])
    return environment


def _run(environment: dict[str, str], tmp_path: Path, *argv: str, stdin: str = "") -> list[str]:
    modules_file = tmp_path / "modules.json"
    command = [sys.executable, "-c", _RUN_AND_LIST_MODULES, str(modules_file), *argv]
    finished = subprocess.run(
        command, env=environment, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    report = json.loads(modules_file.read_text(encoding="utf-8"))
    assert report["code"] == 0, finished.stderr
    return list(report["modules"])


def test_help_loads_no_framework(environment: dict[str, str], tmp_path: Path) -> None:
    modules = _run(environment, tmp_path, "--help")
    assert _loaded(modules, ("litestar", "sqlalchemy", "alembic", *SERVICE_ONLY, *WEB_LAYER)) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("tenant", "create", "--slug", "kdn", "--name", "КДН", "--kind", "juvenile_commission"),
        ("keys", "rotate", "--tenant", "semya"),  # writes to the audit trail as well
        ("user", "create", "--tenant", "semya", "--email", "dpo@semya.test", "--role", "dpo", "--password-stdin"),
    ],
)
def test_admin_commands_load_no_web_layer(set_up: dict[str, str], tmp_path: Path, argv: tuple[str, ...]) -> None:
    modules = _run(set_up, tmp_path, *argv, stdin="a long enough passphrase\n")
    # Not even Litestar, which advanced_alchemy (the tables' base classes) would load for its DTO types.
    assert _loaded(modules, ("litestar", "alembic", *SERVICE_ONLY, *WEB_LAYER)) == []


def test_an_up_to_date_database_is_not_migrated_again(set_up: dict[str, str], tmp_path: Path) -> None:
    modules = _run(set_up, tmp_path, "db", "upgrade")
    assert _loaded(modules, ("exchange", *SERVICE_ONLY)) == []  # the tables are defined only to migrate them


async def test_the_command_line_pseudonymises_as_the_service_does(tmp_path: Path) -> None:
    """Both derive each tenant's pseudonym key from the master key, so a subject has one pseudonym in the trail."""
    settings = Settings.from_env({"CASEBRIDGE_DATA_DIR": str(tmp_path / "var"), "CASEBRIDGE_PDF_PROCESSES": "0"})
    service = build_runtime(settings)
    command_line = build_admin_context(settings)
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    try:
        assert command_line.audit.pseudonyms(tenant, [subject]) == service.exchange.audit.pseudonyms(tenant, [subject])
    finally:
        await command_line.engine.dispose()
        await service.engine.dispose()
