"""Throwaway PostgreSQL clusters for tests.

``ThrowawayPostgres`` runs ``initdb`` into a fresh temporary directory, starts a private ``postgres`` on a free
loopback port, and creates a non-superuser ``casebridge`` role owning a ``casebridge`` database.  The role must not be
a superuser (nor have BYPASSRLS): superusers silently bypass row-level security, which would make RLS tests pass
vacuously.

The cluster is torn down by ``stop()``, by ``__exit__``, by an ``atexit`` hook and -- for the cases ``atexit`` cannot
cover (SIGKILL, SIGTERM, a crashed interpreter) -- by a tiny shell watchdog that fires when this process dies.

PostgreSQL refuses to run as root.  When the tests run as root, every PostgreSQL command is executed as an
unprivileged OS user (``CASEBRIDGE_PG_OS_USER``, else ``postgres``, else ``nobody``) via ``subprocess``'s
``user``/``group``/``extra_groups`` arguments, so neither ``runuser`` nor ``setpriv`` is needed.

Whether a missing PostgreSQL skips or fails the tests is the conftest's policy; ``postgres_available()`` only reports.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import asyncpg

from tests.polling import eventually_blocking

__all__ = [
    "APP_DATABASE",
    "APP_ROLE",
    "SUPERUSER",
    "PostgresUnavailableError",
    "ThrowawayPostgres",
    "ThrowawayPostgresError",
    "postgres_available",
    "process_alive",
]

APP_ROLE = "casebridge"
APP_DATABASE = "casebridge"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
MIN_MAJOR_VERSION = 15

_BINARIES = ("initdb", "pg_ctl", "postgres")
# Debian/Ubuntu keep the server binaries off PATH; look there too so a plain ``apt-get install postgresql-15`` works.
_FALLBACK_BINDIR = Path("/usr/lib/postgresql/15/bin")
_OS_USER_CANDIDATES = ("postgres", "nobody")
# Identifiers end up both in SQL and in URLs; restricting them avoids quoting and percent-encoding bugs entirely.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# sun_path is 108 bytes on Linux (104 on macOS) including the NUL; postgres appends "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 103 - len("/.s.PGSQL.65535")
_START_ATTEMPTS = 5
_PORT_CONFLICT_MARKERS = ("could not bind", "Address already in use", "could not create any TCP/IP sockets")

_T = TypeVar("_T")

# Blocks until this process dies (EOF on stdin) unless told to stand down, then stops the cluster and deletes it.
# Plain sh, so it works for an unprivileged OS user that cannot read the virtualenv, and survives SIGKILL of pytest.
_WATCHDOG_SCRIPT = """
if read -r line && [ "$line" = cancel ]; then exit 0; fi
"$1" -D "$2" -m immediate -w -t 30 stop >/dev/null 2>&1
rm -rf -- "$3"
"""


class ThrowawayPostgresError(RuntimeError):
    """The throwaway cluster could not be created, started or used."""


class PostgresUnavailableError(ThrowawayPostgresError):
    """No usable PostgreSQL installation (or no unprivileged OS user to run it as) on this machine."""


@dataclass(frozen=True)
class _Installation:
    bindir: Path
    version: str
    os_user: pwd.struct_passwd | None  # None: we are not root, so run as ourselves

    def binary(self, name: str) -> str:
        return str(self.bindir / name)

    def describe(self) -> str:
        who = f"as OS user {self.os_user.pw_name!r}" if self.os_user else "as the current user"
        return f"PostgreSQL {self.version} from {self.bindir}, run {who}"


def _locate_installation() -> _Installation:
    """Find server binaries of a supported version and the OS user to run them as, or explain why not."""
    override = os.environ.get("CASEBRIDGE_PG_BINDIR")
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))
    else:
        # Resolve the symlink so initdb/pg_ctl/postgres all come from one installation; pg_ctl and initdb locate
        # postgres next to themselves, and mixing majors fails in confusing ways.
        found = shutil.which("postgres")
        if found:
            candidates.append(Path(found).resolve().parent)
        candidates.append(_FALLBACK_BINDIR)
    bindir = next((c for c in candidates if all(os.access(c / b, os.X_OK) for b in _BINARIES)), None)
    if bindir is None:
        where = ", ".join(str(c) for c in candidates) or "nowhere"
        raise PostgresUnavailableError(
            f"PostgreSQL server binaries {', '.join(_BINARIES)} not found (looked in: {where}). Install PostgreSQL "
            f"{MIN_MAJOR_VERSION} (e.g. apt-get install postgresql-{MIN_MAJOR_VERSION}) or set CASEBRIDGE_PG_BINDIR."
        )

    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PostgresUnavailableError(f"cannot run {bindir / 'postgres'} --version: {exc}") from exc
    match = re.search(r"\(PostgreSQL\) (\d+)(\.\d+)?", out.stdout)
    if match is None:
        raise PostgresUnavailableError(f"unrecognised `postgres --version` output: {out.stdout or out.stderr!r}")
    if int(match.group(1)) < MIN_MAJOR_VERSION:
        raise PostgresUnavailableError(
            f"PostgreSQL {match.group(0)} in {bindir} is too old; production runs {MIN_MAJOR_VERSION}"
        )
    return _Installation(bindir=bindir, version=match.group(1) + (match.group(2) or ""), os_user=_pick_os_user())


def _pick_os_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    override = os.environ.get("CASEBRIDGE_PG_OS_USER")
    for name in (override,) if override else _OS_USER_CANDIDATES:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry
    wanted = repr(override) if override else " or ".join(_OS_USER_CANDIDATES)
    raise PostgresUnavailableError(
        f"running as root and no unprivileged OS user {wanted} exists to run PostgreSQL as (it refuses root); "
        "create one or set CASEBRIDGE_PG_OS_USER"
    )


def postgres_available() -> tuple[bool, str]:
    """Report whether a throwaway cluster can be started here, without starting one.

    Returns ``(True, description)`` or ``(False, reason)``; deciding between skip and fail is the caller's job.
    """
    try:
        return True, _locate_installation().describe()
    except PostgresUnavailableError as exc:
        return False, str(exc)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process.

    Zombies count as dead: a stopped postmaster is re-parented to PID 1, and in containers PID 1 often never reaps,
    so ``kill(pid, 0)`` alone would report a stopped server as running.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs (macOS) or hidepid: fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The command name is in parentheses and may itself contain ") ", so split at the last one.
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def _free_port() -> int:
    # Racy by nature (someone may take it before postgres binds), which is why start() retries on bind failures.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _run_coroutine_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    # A private thread with its own loop works both from plain sync code and from inside a running event loop (an
    # async fixture or test), where asyncio.run() would refuse to start.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="throwaway-pg") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class ThrowawayPostgres:
    """A private, disposable PostgreSQL cluster; use as a context manager or call ``start()``/``stop()``.

    After ``start()``: ``url`` (non-superuser ``casebridge`` on database ``casebridge``), ``admin_url`` (superuser
    ``postgres`` on database ``postgres``), ``port``, ``base_dir`` and ``data_dir`` are available.
    """

    def __init__(self, *, start_timeout: float = 60.0) -> None:
        self._start_timeout = start_timeout
        self._lock = threading.RLock()
        self._installation: _Installation | None = None
        self._base_dir: Path | None = None
        self._port: int | None = None
        self._postmaster_pid: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_fd: int | None = None
        self._owner_pid = os.getpid()

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Create and start the cluster; raises ``PostgresUnavailableError`` if PostgreSQL cannot be run here."""
        with self._lock:
            if self._base_dir is not None:
                raise ThrowawayPostgresError("cluster already started")
            self._installation = _locate_installation()
            self._owner_pid = os.getpid()
            # Register before creating anything so a failure half-way through is still cleaned up at exit.
            atexit.register(self.stop)
            try:
                self._create_base_dir()
                self._start_watchdog()
                self._initdb()
                self._start_postmaster()
                self._execute_as_superuser(
                    # Spelled out rather than relying on defaults: this role exists to be subject to RLS.
                    f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
                    f"CREATE DATABASE {APP_DATABASE} OWNER {APP_ROLE}",
                )
            except BaseException:
                self.stop()
                atexit.unregister(self.stop)  # stop() skips this when we failed before the directory existed
                raise
            return self

    def stop(self) -> None:
        """Kill the server (immediate mode: durability is irrelevant) and delete its directory; idempotent."""
        with self._lock:
            # A forked child (multiprocessing) inherits this object and its atexit hook; only the creator may stop.
            if self._base_dir is None or os.getpid() != self._owner_pid:
                return
            base_dir = self._base_dir
            try:
                self._stop_postmaster()
            finally:
                shutil.rmtree(base_dir, ignore_errors=True)
                # Only now stand the watchdog down: had we died before this point it would have finished the job.
                self._cancel_watchdog()
                atexit.unregister(self.stop)
                self._base_dir = None
                self._port = None
                self._postmaster_pid = None

    # -- public accessors ----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise ThrowawayPostgresError("cluster is not running")
        return self._port

    @property
    def base_dir(self) -> Path:
        """Temporary directory holding ``data/``, ``sock/`` and ``postgres.log``; removed by ``stop()``."""
        if self._base_dir is None:
            raise ThrowawayPostgresError("cluster is not running")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the non-superuser ``casebridge`` role on the ``casebridge`` database."""
        return self.database_url(APP_DATABASE)

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the superuser on the ``postgres`` database (bypasses RLS: setup only)."""
        return f"postgresql+asyncpg://{SUPERUSER}@{HOST}:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        """SQLAlchemy URL of the ``casebridge`` role on database ``name`` (which must already exist)."""
        return f"postgresql+asyncpg://{APP_ROLE}@{HOST}:{self.port}/{name}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` owned by ``casebridge`` and return its SQLAlchemy URL.

        ``name`` must be a lower-case identifier (``[a-z_][a-z0-9_]*``, at most 63 characters).  Blocking; callable
        from async code too (it runs on a private thread), e.g. once per test module. ``template``: copy that
        database (which nobody may be connected to) instead of starting empty, e.g. one already migrated.
        """
        for identifier in (name, template):
            if identifier is not None and not _IDENTIFIER.fullmatch(identifier):
                raise ValueError(f"database name must match {_IDENTIFIER.pattern}: {identifier!r}")
        copy = f" TEMPLATE {template}" if template else ""
        self._execute_as_superuser(f"CREATE DATABASE {name} OWNER {APP_ROLE}{copy}")
        return self.database_url(name)

    def recreate_database(self, name: str, *, template: str) -> str:
        """Replace database ``name`` (nobody connected to it) with a copy of ``template``; returns its URL."""
        for identifier in (name, template):
            if not _IDENTIFIER.fullmatch(identifier):
                raise ValueError(f"database name must match {_IDENTIFIER.pattern}: {identifier!r}")
        self._execute_as_superuser(
            f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name} OWNER {APP_ROLE} TEMPLATE {template}"
        )
        return self.database_url(name)

    # -- internals -----------------------------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        user = self._require_installation().os_user
        return subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base_dir,  # the unprivileged user may not be able to enter our cwd
            env=self._env(),
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,  # drop root's supplementary groups too
        )

    def _env(self) -> dict[str, str]:
        # Ambient PG* variables (PGPORT, PGOPTIONS, PGDATA, ...) would leak into initdb/pg_ctl/postgres; drop them.
        # LC_ALL=C keeps messages English so start() can recognise port clashes in the log.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", HOME=str(self.base_dir))
        return env

    def _require_installation(self) -> _Installation:
        if self._installation is None:
            raise ThrowawayPostgresError("cluster is not running")
        return self._installation

    def _create_base_dir(self) -> None:
        user = self._require_installation().os_user
        parent = os.environ.get("CASEBRIDGE_PG_TMPDIR") or tempfile.gettempdir()
        base_dir = Path(tempfile.mkdtemp(prefix="casebridge-pg-", dir=parent))
        self._base_dir = base_dir
        (base_dir / "sock").mkdir(mode=0o700)
        if user is not None:
            for path in (base_dir, base_dir / "sock"):
                os.chown(path, user.pw_uid, user.pw_gid)
        if len(str(base_dir / "sock")) > _MAX_SOCKET_DIR:
            raise ThrowawayPostgresError(
                f"{base_dir} is too long for a unix socket path; set CASEBRIDGE_PG_TMPDIR to a shorter directory"
            )
        if user is not None:
            # Fail with a clear message if e.g. TMPDIR sits under /root, instead of an obscure initdb error.
            probe = self._run("/bin/sh", "-c", 'test -w "$1" && test -x "$1"', "probe", str(base_dir), timeout=30)
            if probe.returncode != 0:
                raise ThrowawayPostgresError(
                    f"OS user {user.pw_name!r} cannot use {base_dir} (is a parent directory private to root?); "
                    "set CASEBRIDGE_PG_TMPDIR to a world-traversable directory"
                )

    def _start_watchdog(self) -> None:
        installation = self._require_installation()
        user = installation.os_user
        read_fd, write_fd = os.pipe()  # non-inheritable, so no other child keeps the pipe open after we die
        try:
            self._watchdog = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    _WATCHDOG_SCRIPT,
                    "casebridge-pg-watchdog",
                    installation.binary("pg_ctl"),
                    str(self.data_dir),
                    str(self.base_dir),
                ],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                env=self._env(),
                # Own session: a Ctrl-C or a CI runner killing our process group must not take the watchdog along.
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._watchdog_fd = write_fd

    def _cancel_watchdog(self) -> None:
        watchdog, fd = self._watchdog, self._watchdog_fd
        self._watchdog, self._watchdog_fd = None, None
        if fd is not None:
            try:
                os.write(fd, b"cancel\n")
            except OSError:
                pass  # watchdog already gone (killed by someone): nothing to cancel
            finally:
                os.close(fd)
        if watchdog is not None:
            try:
                watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()

    def _initdb(self) -> None:
        installation = self._require_installation()
        result = self._run(
            installation.binary("initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            "--locale=C",
            # initdb's pg_hba.conf only has local-socket and loopback entries; trust them, never anything else.
            "--auth-local=trust",
            "--auth-host=trust",
            "--no-sync",  # durability of a throwaway cluster is worthless; saves most of initdb's time
            "--no-instructions",
            timeout=120,
        )
        if result.returncode != 0:
            raise ThrowawayPostgresError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        settings = {
            "listen_addresses": _conf_quote(HOST),
            "unix_socket_directories": _conf_quote(str(self.base_dir / "sock")),
            "unix_socket_permissions": "0700",
            # Crash safety is pointless for a cluster that is deleted afterwards; these make DDL-heavy tests faster.
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            "lc_messages": _conf_quote("C"),
        }
        # Later settings win, so appending overrides initdb's defaults without parsing the file.
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# throwaway test cluster (tests/pg.py)\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_postmaster(self) -> None:
        pg_ctl = self._require_installation().binary("pg_ctl")
        log = self.log_file
        for _attempt in range(_START_ATTEMPTS):
            port = _free_port()
            offset = log.stat().st_size if log.exists() else 0
            # -l is essential, not cosmetic: without it the postmaster inherits our captured stdout/stderr pipes and
            # subprocess.run() would wait for them to close, i.e. forever.
            result = self._run(
                pg_ctl,
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-w",
                "-t",
                str(int(self._start_timeout)),
                "-o",
                f"-p {port}",  # numeric only: pg_ctl hands -o to /bin/sh, so no paths with spaces in here
                "start",
                timeout=self._start_timeout + 30,
            )
            if result.returncode == 0:
                self._port = port
                self._postmaster_pid = self._read_postmaster_pid()
                return
            log_tail = self._read_log(offset)
            if not any(marker in log_tail for marker in _PORT_CONFLICT_MARKERS):
                raise ThrowawayPostgresError(
                    f"pg_ctl start failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                    f"--- {log} ---\n{log_tail}"
                )
            # Someone grabbed the port between _free_port() and bind(); try another.
        raise ThrowawayPostgresError(f"could not find a free port after {_START_ATTEMPTS} attempts")

    def _read_log(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")[-8000:]
        except OSError:
            return "(no log)"

    def _read_postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _stop_postmaster(self) -> None:
        pid = self._postmaster_pid or self._read_postmaster_pid()
        if (self.data_dir / "postmaster.pid").exists() and self._installation is not None:
            # A hung or failed pg_ctl falls through to the SIGKILL below.
            with contextlib.suppress(subprocess.TimeoutExpired):
                pg_ctl = self._installation.binary("pg_ctl")
                self._run(pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", timeout=60)
        if pid is not None and process_alive(pid) and _looks_like_postgres(pid):
            # pg_ctl failed or timed out; backends notice postmaster death on their own and exit.
            os.kill(pid, signal.SIGKILL)
            eventually_blocking(lambda: not process_alive(pid), within=10, what=f"postmaster {pid} gone after SIGKILL")

    def _execute_as_superuser(self, *statements: str) -> None:
        port = self.port

        async def execute() -> None:
            # Direct asyncpg rather than psql: asyncpg is a project dependency, psql may not be installed.
            conn = await asyncpg.connect(host=HOST, port=port, user=SUPERUSER, database="postgres", ssl=False)
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.close()

        _run_coroutine_sync(execute)


def _looks_like_postgres(pid: int) -> bool:
    # Guards the SIGKILL fallback against PID reuse: never kill a recycled pid that is not a postgres.
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith("postgres")
    except OSError:
        return True  # no procfs: the pid came from our own postmaster.pid moments ago, accept the tiny risk
