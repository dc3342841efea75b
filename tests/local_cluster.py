"""deploy/local-cluster from the tests and the benchmark: its commands run as a user would, and its environment file."""

from __future__ import annotations

import asyncio
from pathlib import Path

LOCAL_CLUSTER = Path(__file__).resolve().parents[1] / "deploy" / "local-cluster"


async def local_cluster(command: str, directory: Path) -> tuple[int, str, str]:
    """`deploy/local-cluster COMMAND --dir DIRECTORY`: its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        str(LOCAL_CLUSTER),
        command,
        "--dir",
        str(directory),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def env_file(path: Path) -> dict[str, str]:
    """The KEY=value lines of the environment file `up` writes (what an admin command needs)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
