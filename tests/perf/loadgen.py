"""The benchmark's load generator: wrk (C, one event-loop thread) with the Lua scripts in tests/perf/lua.

wrk's own CPU time comes from wait4(2)'s resource usage, so every run can say what share of a core the load
generator needed: far below one core means the server, not the client, set the pace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.perf.processes import BenchError

LUA_DIR = Path(__file__).with_name("lua")
REPORT_MARKER = '{"wrk_report"'
ENOUGH_MARKER = b"casebridge-bench: enough answers"


class WrkError(BenchError):
    """wrk could not run or printed no report."""


@dataclass(frozen=True)
class WrkReport:
    """What report.lua prints from wrk's done() hook, plus the process's own wall and CPU time."""

    requests: int  # answered requests
    duration_s: float  # as wrk counts it: from start until its thread stopped
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]
    wall_s: float = 0.0
    cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def ok(self, *statuses: int) -> int:
        return sum(n for status, n in self.statuses.items() if status in statuses)

    @property
    def cpu_share(self) -> float:
        """wrk's CPU time over its wall time: the share of one core the load generator used."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "statuses": self.statuses,
            "socket_errors": {k: v for k, v in self.socket_errors.items() if v},
            "latency_ms": self.latency_ms,
            "wrk_cpu_share_of_one_core": round(self.cpu_share, 3),
        }


def parse_report(stdout: str) -> WrkReport:
    """The report line among wrk's own output (its text summary comes first)."""
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(REPORT_MARKER)), None)
    if line is None:
        raise WrkError(f"wrk printed no report:\n{stdout[-2000:]}")
    data = json.loads(line)
    latency = {key: round(value / 1000, 2) for key, value in data["latency_us"].items()}
    return WrkReport(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        statuses={int(status): int(n) for status, n in data["statuses"].items()},
        socket_errors={key: int(n) for key, n in data["errors"].items() if key != "status"},
        latency_ms=latency,
    )


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed: `make bench` installs Debian's wrk package (apt-get install wrk)")
    return found


async def run_wrk(
    url: str,
    *,
    script: str,
    connections: int,
    duration_s: float,
    env: Mapping[str, str],
    work: Path,
    timeout_s: float = 30.0,
) -> WrkReport:
    """Run wrk with one thread against `url` until `duration_s` passes or the script says it has had enough."""
    out_path, err_path = work / "wrk.out", work / "wrk.err"
    args = [
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    child_env = {**os.environ, **env, "REPORT_LUA": str(LUA_DIR / "report.lua")}
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(out_path), flags, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, str(err_path), flags, 0o600),
    ]
    began = time.perf_counter()
    # posix_spawn and wait4 rather than subprocess: wait4 hands back the child's own resource usage.
    pid = os.posix_spawn(args[0], args, child_env, file_actions=actions)  # noqa: ASYNC221 - returns once exec'd
    interrupted, done = False, 0
    try:
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG: never blocks
            if done == pid:
                break
            if not interrupted and ENOUGH_MARKER in err_path.read_bytes():
                os.kill(pid, signal.SIGINT)  # wrk stops its threads and prints its report, as at the end of -d
                interrupted = True
            await asyncio.sleep(0.02)
    finally:
        if done != pid:  # the benchmark itself is stopping: wrk must not go on loading the server
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # noqa: ASYNC222 - after SIGKILL: returns at once
    wall_s = time.perf_counter() - began
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        raise WrkError(f"wrk exited with status {os.waitstatus_to_exitcode(status)}:\n{stdout[-1500:]}{stderr[-1500:]}")
    report = parse_report(stdout)
    return dataclasses.replace(report, wall_s=wall_s, cpu_s=usage.ru_utime + usage.ru_stime)
