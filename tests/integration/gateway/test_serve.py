"""`casebridge serve` on the embedded defaults: ready within a minute, and nothing left behind after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.polling import eventually_blocking
from tests.processes import free_port

CASEBRIDGE = str(Path(sys.executable).parent / "casebridge")


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found |= {child} | _descendants(child)
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_serve_is_ready_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")}
    env["CASEBRIDGE_DATA_DIR"] = str(tmp_path / "var")
    subprocess.run([CASEBRIDGE, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    server = subprocess.Popen(
        [CASEBRIDGE, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:

        def ready() -> bool:
            assert server.poll() is None, "casebridge serve exited before it was ready"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        eventually_blocking(ready, within=60, every=0.2, what="casebridge serve answering /health/ready with 200")
        metadata = httpx.get(f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server", timeout=5).json()
        assert metadata["issuer"] == f"http://127.0.0.1:{port}"
        children = _descendants(server.pid)
        assert children, "the embedded nats-server should run as a child"

        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        stderr = server.stderr.read().decode() if server.stderr else ""
        assert server.returncode == 0, stderr
        assert f"sign in at http://127.0.0.1:{port}/login" in stderr
        eventually_blocking(
            lambda: all(_gone(pid) for pid in children),
            within=10,
            every=0.1,
            what="a child process outlived the server",
        )
        assert (tmp_path / "var" / "nats").is_dir()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for pipe in (server.stdout, server.stderr):
            if pipe is not None:
                pipe.close()
