"""Fixtures of the gateway's tests: the command line run in-process."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`casebridge` in-process on the test's (upgraded) database: run(*argv) gives (exit code, JSON, stderr)."""
    monkeypatch.setenv("CASEBRIDGE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CASEBRIDGE_DATABASE_URL", database_url)
    monkeypatch.delenv("CASEBRIDGE_MASTER_KEY_FILE", raising=False)

    def run(*argv: str, stdin: str | None = None) -> tuple[int, dict[str, Any] | None, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr("sys.stdout", out)
        monkeypatch.setattr("sys.stderr", err)
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        text = out.getvalue().strip()
        return code, json.loads(text) if text else None, err.getvalue()

    code, result, _ = run("db", "upgrade")
    assert code == 0
    assert result == {"upgraded": True, "database": result["database"] if result else None}
    return run
