"""The command line beside a running app, and registering an API client with `casebridge client create`, for the
tests of the command line."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import OKPKey

from gateway.cli import main
from gateway.runtime import Runtime


async def cli_beside(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, *argv: str
) -> tuple[int, dict[str, Any] | None, str]:
    """`casebridge ...` in a thread of this process (it runs its own event loop), on this node's database, master key
    and peers file, beside the running app: (exit code, JSON printed, stderr)."""
    settings = runtime.settings
    monkeypatch.setenv("CASEBRIDGE_DATA_DIR", str(settings.paths.data_dir))
    monkeypatch.setenv("CASEBRIDGE_DATABASE_URL", settings.database.url)
    if settings.peers.file is not None:
        monkeypatch.setenv("CASEBRIDGE_PEERS", str(settings.peers.file))
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    try:
        await asyncio.to_thread(main, list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    text = out.getvalue().strip()
    return code, json.loads(text) if text else None, err.getvalue()


def public_jwk_file(path: Path) -> Path:
    """A fresh Ed25519 public key, as a partner's system registers it, written to `path`."""
    path.write_text(json.dumps(OKPKey.generate_key("Ed25519").as_dict(private=False)), encoding="utf-8")
    return path


def create_client(
    cli: Any, jwk_file: Path, *, scopes: str, name: str = "X", role: str | None = None
) -> tuple[int, dict[str, Any] | None, str]:
    """`casebridge client create` for the agency "semya": (exit code, JSON printed, stderr)."""
    argv = ["client", "create", "--tenant", "semya", "--name", name, "--jwk-file", str(jwk_file), "--scopes", scopes]
    result: tuple[int, dict[str, Any] | None, str] = cli(*argv, *(("--role", role) if role else ()))
    return result
