"""Registering an API client with `casebridge client create`, for the tests of the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from joserfc.jwk import OKPKey


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
