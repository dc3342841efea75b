"""Prometheus metrics (prometheus-client): HTTP requests by route template, and gauges read when /metrics is scraped.

Labels never carry personal data or ids: routes are templates, statuses and methods are codes, and a gauge's labels
come from a fixed vocabulary (a parked envelope's reason, a gauge source's name).

With one process (`casebridge serve`, the embedded default) the counters live in the process. Under
`serve --workers N` every web process writes its counts to files in a directory of that service run
(prometheus-client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, made empty by `serve` before its web processes
start), and whichever process answers a scrape adds them up. The gauges are read from the database and JetStream
at scrape time, so every web process reports the same deployment-wide backlog.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.ext.asyncio import AsyncSession

from audit.sealer import unsealed
from exchange.letters.services import waiting_layout
from exchange.transport.backlog import parked_by_reason, unsent
from exchange.transport.held import held_by_reason
from exchange.transport.jetstream import inbox_lag
from tenants.peer_keys import PeerState, peer_states
from tenants.persistence import read_only_platform_session

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from gateway.settings import Settings

log = logging.getLogger("casebridge.gateway")
_T = TypeVar("_T")

MULTIPROCESS_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable, read at its import
# One slow source (a NATS server that does not answer) must not hold up the scrape; it is reported as down.
SOURCE_TIMEOUT_S: Final = 5.0
# Request durations, in seconds: from a cached read to a large PDF report.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HttpMetrics:
    """The request counter and latency histogram of one process's app."""

    def __init__(self) -> None:
        # registry=None: each scrape's registry takes them (one process), or prometheus-client's files hold their
        # values (several), never a registry global to the Python process that a second app would collide with.
        self.requests = Counter(
            "casebridge_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=None,
        )
        self.latency = Histogram(
            "casebridge_http_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


@dataclass(frozen=True, slots=True)
class Reading:
    """One gauge value read at scrape time. `labels` must come from a fixed vocabulary: never an id or a name."""

    name: str
    documentation: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


GaugeSource = Callable[[], Awaitable[Iterable[Reading]]]
"""Reads a few related gauges (one query, one request to the bus) when /metrics is scraped."""


class Gauges:
    """The gauge sources /metrics reads, each reported as up or down (`casebridge_metrics_source_up`).

    Other parts of casebridge register theirs with `runtime.gauges.add(name, source)` where the runtime is built.
    """

    def __init__(self, *, timeout_s: float = SOURCE_TIMEOUT_S) -> None:
        self._sources: dict[str, GaugeSource] = {}
        self._timeout_s = timeout_s

    def add(self, name: str, source: GaugeSource) -> None:
        if name in self._sources:
            raise ValueError(f"a gauge source named {name!r} is registered already")
        self._sources[name] = source

    async def read(self) -> list[Metric]:
        """Every source's gauges, one after another (on SQLite a process has one database connection)."""
        families: dict[str, GaugeMetricFamily] = {}
        up = GaugeMetricFamily(
            "casebridge_metrics_source_up",
            "1 when this scrape could read the source's gauges, else 0",
            labels=["source"],
        )
        for name, source in self._sources.items():
            try:
                readings = list(await asyncio.wait_for(source(), self._timeout_s))
            except Exception as exc:  # the type only: a driver's message can carry SQL or a server's reply
                log.warning("metrics: the %s gauges could not be read (%s)", name, type(exc).__name__)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            for reading in readings:
                family = families.get(reading.name)
                if family is None:
                    family = families[reading.name] = GaugeMetricFamily(
                        reading.name, reading.documentation, labels=list(reading.labels)
                    )
                family.add_metric(list(reading.labels.values()), reading.value)
        return [*families.values(), up]


class _Collected:
    """Metrics already read, handed to a registry for exposition."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


async def exposition(runtime: Runtime) -> bytes:
    """The text exposition format of this process's (or this service run's) requests and the deployment's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # registers itself
    else:
        registry.register(runtime.http_metrics.requests)
        registry.register(runtime.http_metrics.latency)
    registry.register(_Collected(await runtime.gauges.read()))
    return generate_latest(registry)


def fresh_multiprocess_dir(settings: Settings) -> Path:
    """An empty directory for the counts of one `serve --workers N` run: DATA_DIR/metrics/serve-PORT, emptied here.

    Counts left by an earlier run must not be added to this one's; the port tells apart two `serve` runs sharing a
    data directory on one machine, as two cannot listen on one port.
    """
    directory = settings.paths.data_dir / "metrics" / f"serve-{settings.server.port}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    return directory


def loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_standard_gauges(runtime: Runtime) -> None:
    """The backlogs an operator watches: the outbox, the inbox consumer, parked envelopes, the sealer, letters."""
    sessions, clock, bus = runtime.sessions, runtime.clock, runtime.bus

    async def read(query: Callable[[AsyncSession], Awaitable[_T]]) -> _T:
        async with await read_only_platform_session(sessions) as session:
            return await query(session)

    def queue(name: str, age_name: str, what: str, count: int, oldest: dt.datetime | None) -> list[Reading]:
        """How many are waiting, and how long the oldest of them has (0 when none)."""
        age = 0.0 if oldest is None else max((clock.now() - oldest).total_seconds(), 0.0)
        return [Reading(name, what, count), Reading(age_name, f"Age in seconds of the oldest of: {what}", age)]

    async def outbox() -> list[Reading]:
        what = "Envelopes in the outbox not yet stored by JetStream"
        return queue(
            "casebridge_outbox_unsent_envelopes",
            "casebridge_outbox_oldest_unsent_age_seconds",
            what,
            *await read(unsent),
        )

    async def inbox() -> list[Reading]:
        lag = await inbox_lag(bus, await runtime.consumed_tenants())
        if lag is None:  # no inbox has created a consumer yet: nothing to report rather than a made-up zero
            return []
        pending, unacknowledged = lag
        return [
            Reading(
                "casebridge_inbox_pending_envelopes",
                "Envelopes on the stream not yet handed to an inbox (the backlog of this node's tenants' consumers)",
                pending,
            ),
            Reading(
                "casebridge_inbox_unacknowledged_envelopes",
                "Envelopes handed to an inbox and not yet acknowledged (being applied, or to come again)",
                unacknowledged,
            ),
        ]

    async def parked() -> list[Reading]:
        return [
            Reading("casebridge_parked_envelopes", "Envelopes parked as dead letters, by reason", count, {"reason": r})
            for r, count in sorted((await read(parked_by_reason)).items())
        ]

    async def sealer() -> list[Reading]:
        what = "Audit events recorded and not yet sealed"
        return queue(
            "casebridge_audit_unsealed_events",
            "casebridge_audit_oldest_unsealed_age_seconds",
            what,
            *await read(unsealed),
        )

    async def letters() -> list[Reading]:
        what = "Sent letters waiting for their PDF to be laid out"
        return [Reading("casebridge_letters_waiting_layout", what, await read(waiting_layout))]

    async def peers() -> list[Reading]:
        configured = {peer.name for peer in runtime.settings.peers.peers}
        nodes = await read(peer_states)
        states = [nodes[name].state if name in nodes else PeerState.NEW.value for name in configured]
        held = await read(held_by_reason)
        return [
            *(
                Reading(
                    "casebridge_peers", "Configured peer nodes, by state", states.count(s.value), {"state": s.value}
                )
                for s in PeerState
            ),
            *(
                Reading(
                    "casebridge_held_envelopes",
                    "Envelopes from peer nodes' agencies waiting for trusted keys, by reason",
                    count,
                    {"reason": reason},
                )
                for reason, count in sorted(held.items())
            ),
        ]

    for name, source in (
        ("outbox", outbox),
        ("inbox", inbox),
        ("parked", parked),
        ("sealer", sealer),
        ("letters", letters),
        ("peers", peers),
    ):
        runtime.gauges.add(name, source)


__all__ = ["Gauges", "HttpMetrics", "Reading", "add_standard_gauges", "exposition", "fresh_multiprocess_dir"]
