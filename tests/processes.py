"""Real casebridge processes for tests: nats-server, `casebridge serve [--workers N]` and `casebridge worker`.

Each child's output is appended to a log file that a failing test shows; every child gets SIGKILL if the test
process dies, so a killed pytest leaves no server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from gateway.bus import answers_nats, nats_server_binary
from tests.polling import eventually

CASEBRIDGE = str(Path(sys.executable).parent / "casebridge")
START_WITHIN_S = 60.0  # a gateway or nats-server that is not serving by then has failed to start
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024  # as production NATS servers are configured (deploy/nats)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dies_with_us(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A preexec_fn: send the child `sig` when the thread that starts it dies (the test process, the benchmark)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(sig)) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _tail(path: Path, size: int = 3000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return f"(no log at {path})"
    return data[-size:].decode("utf-8", "replace")


def children_of(pid: int) -> list[int]:
    """The direct children of a process (uvicorn's web processes under `serve --workers N`)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class Child:
    """One child process with its output appended to a log file; kill() is SIGKILL, and it is safe to repeat."""

    def __init__(self, name: str, log_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def spawn(self, *argv: str, env: dict[str, str] | None = None) -> None:
        assert self.proc is None or self.proc.returncode is not None, f"{self.name} is already running"
        self.starts += 1
        with self.log_file.open("ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=dies_with_us(),
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await asyncio.wait_for(proc.wait(), 10)

    async def stop(self, within_s: float = 30.0) -> int:
        """SIGTERM and wait; the exit status."""
        proc = self.proc
        assert proc is not None
        if proc.returncode is None:
            proc.terminate()
        return await asyncio.wait_for(proc.wait(), within_s)

    def log_tail(self) -> str:
        return f"--- {self.name} log ({self.log_file}) ---\n{_tail(self.log_file)}"


class NatsServer(Child):
    """A JetStream nats-server on a fixed port and store dir, so a restart comes back at the same URL with its data."""

    def __init__(self, tmp: Path) -> None:
        super().__init__("nats-server", tmp / "nats-server.log")
        self.store_dir = tmp / "nats-store"
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # The gateway refuses a bus that cannot carry its largest envelopes (8 MiB); NATS's default is 1 MiB.
        config = self.store_dir.parent / "nats-server.conf"
        config.write_text(f"max_payload: {MAX_PAYLOAD_BYTES}\n", encoding="utf-8")
        argv = ["-c", str(config), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        await self.spawn(str(nats_server_binary()), *argv)

        async def answers() -> bool:
            assert self.running, f"nats-server exited while starting\n{self.log_tail()}"
            return await answers_nats(self.port)

        await eventually(answers, within=START_WITHIN_S, what=lambda: f"nats-server to answer\n{self.log_tail()}")


class Gateway(Child):
    """`casebridge serve [--workers N]` on a fixed port: a restarted gateway answers at the same base URL."""

    def __init__(self, env: dict[str, str], port: int, log_file: Path, *, web_processes: int = 1) -> None:
        super().__init__("casebridge serve", log_file)
        self.env = env
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.web_processes = web_processes

    async def start(self) -> None:
        await self.spawn(
            CASEBRIDGE, "serve", "--port", str(self.port), "--workers", str(self.web_processes), env=self.env
        )
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as probe:

            async def serving() -> bool:
                assert self.running, f"the gateway exited while starting\n{self.log_tail()}"
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/health/ready")).status_code == 200 and self._all_web_processes_up():
                        return True
                return False

            await eventually(
                serving, within=START_WITHIN_S, every=0.1, what=lambda: f"the gateway to be ready\n{self.log_tail()}"
            )

    def _all_web_processes_up(self) -> bool:
        return self.web_processes == 1 or len(self.web_pids()) == self.web_processes

    def web_pids(self) -> list[int]:
        """The web processes of `serve --workers N` (uvicorn's children that run the app)."""
        if self.web_processes == 1:
            return [self.pid]
        return [pid for pid in children_of(self.pid) if "spawn_main" in " ".join(command_line(pid))]

    def kill_web_process(self) -> int:
        """SIGKILL one web process of `serve --workers N`, not the supervisor; its process id."""
        assert self.web_processes > 1, "one process serves: kill() the gateway instead"
        pid = self.web_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def replaced(self, dead: int) -> bool:
        """Whether `serve` runs all its web processes again, the dead one no longer among them."""
        serving = self.web_pids()
        return len(serving) == self.web_processes and dead not in serving


class WorkerProcess(Child):
    """`casebridge worker [--only NAMES]`: Workers without HTTP."""

    def __init__(self, env: dict[str, str], log_file: Path, *, only: str | None = None) -> None:
        super().__init__("casebridge worker", log_file)
        self.env = env
        self.only = only

    async def start(self) -> None:
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        await self.spawn(CASEBRIDGE, "worker", *(["--only", self.only] if self.only else []), env=self.env)

        def running() -> bool:
            assert self.running, f"the worker exited while starting\n{self.log_tail()}"
            return "worker running" in self.log_file.read_bytes()[offset:].decode(errors="replace")

        await eventually(
            running, within=START_WITHIN_S, every=0.1, what=lambda: f"the worker to run\n{self.log_tail()}"
        )
