"""docs/tutorial.md runs as written: its shell blocks, in order in one shell, against `make run`'s setup on any port."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.processes import CASEBRIDGE, Gateway, free_port

ROOT = Path(__file__).resolve().parents[3]
TUTORIAL = ROOT / "docs" / "tutorial.md"
STEP_WITHIN_S = 120.0  # one block: a few CLI starts and, at most, the bounded waits the tutorial itself writes
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
_DONE = "__tutorial_block_done__"
_FAILED = "__tutorial_command_failed__"


def _json(directory: Path, name: str) -> Any:
    return json.loads((directory / name).read_text(encoding="utf-8"))


def _ready(d: Path, out: str) -> None:
    assert _json(d, "ready.json")["status"] == "ok"


def _clients(d: Path, out: str) -> None:
    roles = {name: _json(d, f"{name}.json")["role"] for name in ("semya-cases", "opeka-desk", "semya-dpo")}
    assert roles == {"semya-cases": "specialist", "opeka-desk": "intake", "semya-dpo": "dpo"}
    assert (d / "semya-cases-private.jwk").stat().st_mode & 0o077 == 0


def _tokens(d: Path, out: str) -> None:
    assert [t["slug"] for t in _json(d, "directory.json")["items"]] == ["opeka"]


def _case(d: Path, out: str) -> None:
    case = _json(d, "case.json")
    assert [s["ref"] for s in case["subjects"]] == ["child 1", "parent 1"]
    assert case["reference"].startswith("C-")


def _consent(d: Path, out: str) -> None:
    assert _json(d, "consent.json")["status"] == "active"


def _sent(d: Path, out: str) -> None:
    assert _json(d, "sent.json")["status"] == "requested"


def _refused(d: Path, out: str) -> None:
    assert out.strip() == "403"
    problem = _json(d, "refused.json")
    assert (problem["type"], problem["code"], problem["subject_ref"], problem["category"]) == (
        "/problems/consent-required",
        "no_consent",
        "child 1",
        "contacts",
    )


def _received(d: Path, out: str) -> None:
    assert out.strip() == "received"
    child = _json(d, "received.json")["subjects"][0]
    assert child["full_name"] == "Иванова Мария"
    assert "address" not in child or child["address"] is None
    assert [r["id"] for r in _json(d, "incoming.json")["items"]] == [_json(d, "sent.json")["id"]]


def _answered(d: Path, out: str) -> None:
    assert [_json(d, f"{step}.json")["status"] for step in ("accepted", "in-progress", "completed")] == [
        "accepted",
        "in-progress",
        "completed",
    ]
    assert out.strip() == "completed"
    assert _json(d, "answered.json")["outcome"]["result"] == "resolved"


def _audited(d: Path, out: str) -> None:
    actions = {row["action"] for row in _json(d, "report.json")["items"]}
    assert {"exchange:case:create", "exchange:consent:create", "exchange:referral:send"} <= actions
    assert "exchange:referral:send" in out


STEPS: list[Callable[[Path, str], None]] = [
    _ready,
    _clients,
    _tokens,
    _case,
    _consent,
    _sent,
    _refused,
    _received,
    _answered,
    _audited,
]


class Shell:
    """One bash for the whole tutorial, so each block sees the variables and functions of the blocks before it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def run(self, block: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{block}\necho {_DONE}\n".encode())
        await self.proc.stdin.drain()
        lines: list[str] = []
        async with asyncio.timeout(STEP_WITHIN_S):
            while (line := (await self.proc.stdout.readline()).decode()) != f"{_DONE}\n":
                assert line, "the shell exited:\n" + "".join(lines)
                lines.append(line)
        output = "".join(lines)
        assert _FAILED not in output, output
        return output


@pytest.fixture
async def shell(tmp_path: Path) -> AsyncIterator[tuple[Shell, Path]]:
    """`make run`'s steps in a directory laid out like a checkout: migrations, demo seed, serve on a free port."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")}
    for command in (("db", "upgrade"), ("demo", "seed", "--if-empty")):
        setup = await asyncio.create_subprocess_exec(
            CASEBRIDGE, *command, cwd=checkout, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(setup.communicate(), STEP_WITHIN_S)
        assert setup.returncode == 0, err.decode()
    gateway = Gateway(env | {"CASEBRIDGE_DATA_DIR": str(checkout / "var")}, free_port(), tmp_path / "serve.log")
    await gateway.start()
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "--noprofile",
        "--norc",
        cwd=checkout,
        env=env | {"CASEBRIDGE_URL": gateway.base_url},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        runner = Shell(proc)
        # -E: the trap also fires inside the tutorial's functions; pipefail: a failing curl before a pipe counts.
        await runner.run(f"set -E -o pipefail; trap 'echo {_FAILED}: $BASH_COMMAND' ERR")
        yield runner, checkout
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        try:
            await gateway.stop()
        finally:
            await gateway.kill()
        print(gateway.log_tail())


async def test_the_tutorial_runs_as_written_and_each_step_answers_as_it_says(shell: tuple[Shell, Path]) -> None:
    runner, checkout = shell
    blocks = _BLOCK.findall(TUTORIAL.read_text(encoding="utf-8"))
    assert len(blocks) == len(STEPS), "each shell block of docs/tutorial.md needs its check in STEPS"
    for block, check in zip(blocks, STEPS, strict=True):
        output = await runner.run(block)
        check(checkout, output)
