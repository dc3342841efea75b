"""The process model (docs/architecture.md, "Workers and processes"): `serve` runs N web processes on one port,
`worker` runs Workers in a process of its own.

The embedded default is one `serve` process on SQLite with every Worker in it. On PostgreSQL any number of web and
worker processes, on one machine or many, share the database and one NATS: the outbox relay and the letter layout
claim rows with SKIP LOCKED, the inbox consumers share one durable consumer and apply each envelope once by its id,
the sealer leads by lease, and reminders are recorded before they are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.settings import Settings
from gateway.workers import WorkerName

if TYPE_CHECKING:
    from gateway.runtime import Runtime


# Set by `serve --workers N` for its web processes: the process id they stop with (end_with_parent).
SUPERVISOR_PID = "CASEBRIDGE_SUPERVISOR_PID"


class LayoutError(Exception):
    """This process layout cannot work with these settings; the message says what to change."""


def check_layout(settings: Settings, *, web_processes: int = 1, worker_process: bool = False) -> None:
    """Refuse, before anything starts, a layout that would lose or double work."""
    if web_processes < 1:
        raise LayoutError("--workers must be at least 1")
    several = web_processes > 1 or worker_process
    if settings.database.is_sqlite and web_processes > 1:
        raise LayoutError(
            f"serve --workers {web_processes} needs PostgreSQL: SQLite allows one casebridge process. "
            "Set CASEBRIDGE_DATABASE_URL to a PostgreSQL database to run several."
        )
    if several and not settings.database.is_sqlite and settings.bus.nats_url is None:
        what = f"serve --workers {web_processes}" if web_processes > 1 else "casebridge worker"
        raise LayoutError(
            f"{what} needs a NATS server shared by every process (CASEBRIDGE_NATS_URL): the embedded nats-server "
            "belongs to one process"
        )


@contextlib.contextmanager
def single_process_lock(settings: Settings) -> Iterator[None]:
    """On SQLite, hold the database's process lock for as long as this serve or worker process runs.

    SQLite allows one writer process, so a second `serve` or a `worker` beside it is refused with a message that says
    to use PostgreSQL. The lock is an flock on a file beside the database: the kernel releases it when the process
    dies, however it dies. Admin commands take no lock: they are short and wait for SQLite's write lock.
    """
    if not settings.database.is_sqlite:
        yield
        return
    from sqlalchemy.engine import make_url

    database = make_url(settings.database.url).database
    if not database or database == ":memory:":
        yield
        return
    path = Path(database).with_name(Path(database).name + ".process-lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LayoutError(
                f"another casebridge process (serve or worker) is using the SQLite database {database}. SQLite allows "
                "one casebridge process; set CASEBRIDGE_DATABASE_URL to a PostgreSQL database to run several."
            ) from None
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def serve(settings: Settings, *, web_processes: int) -> None:
    """Serve HTTP until SIGINT or SIGTERM: in this process, or in `web_processes` processes sharing one socket."""
    import uvicorn

    from gateway.app import build_runtime, create_app
    from gateway.logs import log_config
    from gateway.metrics import MULTIPROCESS_DIR, fresh_multiprocess_dir

    check_layout(settings, web_processes=web_processes)
    server = settings.server
    options = {
        "host": server.host,
        "port": server.port,
        "log_level": "info",
        "proxy_headers": False,
        "server_header": False,
        "log_config": log_config(settings.operations.log_format),
        "access_log": False,  # gateway/access_log.py writes one line per request, with the route template
    }
    with single_process_lock(settings):
        app = create_app(settings) if web_processes == 1 else None
        asyncio.run(_preflight(app.state.runtime if app is not None else build_runtime(settings, workers=())))
        sys.stderr.write(
            f"casebridge: serving on http://{server.host}:{server.port} with {_plural(web_processes, 'web process')}"
            f" — staff sign in at {server.base_url}/login\n"
        )
        if app is not None:
            uvicorn.run(app, **options)  # type: ignore[arg-type]
            return
        # Each web process builds its app from the environment (uvicorn starts them with spawn and restarts any
        # that dies), so the settings this process resolved must be in the environment they inherit.
        os.environ.update(_environment_of(settings))
        os.environ[SUPERVISOR_PID] = str(os.getpid())
        # Set before the web processes start and import prometheus-client: they count into files there.
        os.environ[MULTIPROCESS_DIR] = str(fresh_multiprocess_dir(settings))
        uvicorn.run(
            "gateway.app:app_from_environment",
            factory=True,
            workers=web_processes,
            **options,  # type: ignore[arg-type]
        )


def run_worker(settings: Settings, only: Sequence[WorkerName] | None) -> None:
    """Run Workers (all, or `only` these) without HTTP until SIGINT or SIGTERM, then stop them within their grace."""
    from gateway.app import build_runtime
    from gateway.logs import configure_logging

    check_layout(settings, worker_process=True)
    configure_logging(settings.operations.log_format)
    names = tuple(WorkerName) if only is None else tuple(only)
    with single_process_lock(settings):
        runtime = build_runtime(settings, workers=names)
        asyncio.run(_preflight(runtime))  # disposes of the engine's connections: the next loop opens its own
        missing = [name for name in only or () if name not in runtime.workers]
        if missing:
            raise LayoutError("; ".join(_why_not_configured(name) for name in missing))
        if not runtime.workers.names:
            raise LayoutError("no Worker to run here (reminders need SMTP, co-signing needs agencies)")
        asyncio.run(_work(runtime))


def end_with_parent(*, every_s: float = 1.0) -> None:
    """In a web process of `serve --workers N`: stop (SIGTERM to itself, a graceful shutdown) within `every_s` of the
    supervising `serve` dying, however it dies, so a killed supervisor leaves no web process serving on its own.

    A watching thread rather than Linux's parent-death signal: that signal follows the thread that forked, and
    uvicorn's replacements for dead web processes were seen to outlive a killed supervisor with it.
    """
    # The supervisor says who it is: a replacement web process may start only after it died (its parent is then
    # already someone else), and in a container the supervisor itself may be process 1.
    parent = int(os.environ.get(SUPERVISOR_PID, os.getppid()))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _why_not_configured(name: WorkerName) -> str:
    if name is WorkerName.REMINDERS:
        return "the reminders worker needs CASEBRIDGE_SMTP_HOST and CASEBRIDGE_SMTP_FROM"
    return "the cosigner worker has no agency to co-sign for (CASEBRIDGE_AUDIT_COSIGNERS is none)"


async def _work(runtime: Runtime) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        sys.stderr.write(f"casebridge: worker running {', '.join(runtime.workers.names)} (pid {os.getpid()})\n")
        await stop.wait()
        sys.stderr.write("casebridge: worker stopping\n")
    finally:
        await runtime.stop()


async def _preflight(runtime: Runtime) -> None:
    """Fail here with one clear line rather than inside a server's startup with a traceback."""
    from gateway.db import schema_is_current
    from tenants.errors import KeyUnavailable
    from tenants.persistence import platform_session

    try:
        if not await schema_is_current(runtime.engine):
            raise LayoutError("the database schema is not up to date; run 'casebridge db upgrade' first")
        async with platform_session(runtime.sessions) as session:
            await runtime.keyring.check_master_key(session)
        await runtime.token_endpoint.load_signing_key()
    except KeyUnavailable as exc:
        raise LayoutError(f"{exc} (is CASEBRIDGE_MASTER_KEY_FILE the key this database was created with?)") from exc
    finally:
        await runtime.engine.dispose()


def _environment_of(settings: Settings) -> dict[str, str]:
    """The variables whose resolved values the web processes must share with this one."""
    return {
        "CASEBRIDGE_HOST": settings.server.host,
        "CASEBRIDGE_PORT": str(settings.server.port),
        "CASEBRIDGE_BASE_URL": settings.server.base_url,
        "CASEBRIDGE_DATA_DIR": str(settings.paths.data_dir),
        "CASEBRIDGE_MASTER_KEY_FILE": str(settings.paths.master_key_file),
    }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}es"
