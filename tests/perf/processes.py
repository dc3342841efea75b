"""The benchmark's processes: starting and stopping servers, and the CPU time a process tree has used (from /proc)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.processes import dies_with_us

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """Something the benchmark needs did not come up; the message says what and shows its log."""


@dataclass(frozen=True)
class Server:
    """A process the benchmark started, with the log its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def start(name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> Server:
    with log_path.open("ab") as out:
        # Forked from the event loop thread, which lives as long as the benchmark: the death signal follows it.
        proc = subprocess.Popen(
            args,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=dies_with_us(signal.SIGTERM),  # so even a killed run leaves no server
        )
    return Server(name, proc, log_path)


def tail(path: Path, size: int = 3000) -> str:
    text = path.read_bytes()[-size:].decode("utf-8", "replace") if path.exists() else ""
    return text or "(its log is empty)"


async def wait_until_up(server: Server, url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise BenchError(
                    f"{server.name} exited with status {server.proc.returncode} while starting:\n"
                    f"{tail(server.log_path)}"
                )
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise BenchError(f"{server.name} did not answer {url} within {STARTUP_TIMEOUT_S:g}s:\n{tail(server.log_path)}")


def stop(server: Server) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: the lifespan stops the Workers
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- CPU time from /proc ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the benchmark reads (proc(5)); times in clock ticks."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int  # children that have exited and been waited for
    cstime: int

    @property
    def ticks(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name is in parentheses and may itself hold spaces and parentheses."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    pid = int(head.split("(", 1)[0])
    # proc(5) numbers from 1: state is field 3, so fields[k] is field k + 3.
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def _all_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = parse_stat(Path(entry.path, "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # exited while we looked
    return stats


def tree_cpu_s(roots: Iterable[int]) -> float:
    """CPU seconds (user + system) used so far by the processes `roots` and all their descendants.

    A child that exited and was waited for is in its parent's cutime/cstime, so a pool that replaces its workers
    is still counted; a descendant that appears between two readings counts from zero.
    """
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    seen: set[int] = set()
    pending = [pid for pid in roots if pid in stats]
    while pending:
        pid = pending.pop()
        if pid not in seen:
            seen.add(pid)
            pending.extend(children.get(pid, []))
    return sum(stats[pid].ticks for pid in seen) / CLOCK_TICKS
