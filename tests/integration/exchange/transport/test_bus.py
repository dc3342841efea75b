"""The bus runtime against a real nats-server: streams, deduplication, external servers, no orphaned processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gateway.bus import AUDIT_STREAM, ENVELOPE_STREAM, Bus, BusError, EmbeddedNats
from tests.polling import eventually

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG")

REPO_ROOT = Path(__file__).resolve().parents[4]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # A zombie has exited; it only waits for a parent (maybe a container's PID 1 that never reaps) to collect it.
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def _servers_using(store_dir: Path) -> list[int]:
    """Live nats-server processes started with this store directory."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"nats-server") and str(store_dir).encode() in argv and _alive(int(proc.name)):
                pids.append(int(proc.name))
    return pids


async def _assert_streams(bus: Bus) -> None:
    envelopes = await bus.js.stream_info(ENVELOPE_STREAM)
    audit = await bus.js.stream_info(AUDIT_STREAM)
    assert envelopes.config.subjects == ["cb.v2.>", "cb.v1.>"]
    assert audit.config.subjects == ["cb.audit.>"]
    for info in (envelopes, audit):
        assert info.config.storage == "file"
        assert info.config.retention == "limits"
        assert info.config.num_replicas == 1
        assert info.config.duplicate_window == 120.0
        assert info.config.max_age == 30 * 24 * 3600.0


def test_properties_refuse_use_before_start(tmp_path: Path) -> None:
    bus = Bus(None, tmp_path / "nats", 1)
    for name in ("nc", "js", "url"):
        with pytest.raises(RuntimeError, match="not started"):
            getattr(bus, name)


@pytest.mark.asyncio
async def test_embedded_bus_serves_streams_deduplicates_and_stops(tmp_path: Path) -> None:
    bus = Bus(None, tmp_path / "nats", 1)
    await bus.start()
    try:
        assert bus.embedded is not None
        pid = bus.embedded.pid
        assert pid is not None
        assert _alive(pid)
        assert bus.url.startswith("nats://127.0.0.1:")
        assert bus.ready
        await _assert_streams(bus)

        subject = f"cb.v2.{uuid.uuid4()}.{uuid.uuid4()}.receipt"
        headers = {"Nats-Msg-Id": str(uuid.uuid4())}
        first = await bus.js.publish(subject, b"envelope", headers=headers)
        again = await bus.js.publish(subject, b"envelope", headers=headers)
        assert first.stream == ENVELOPE_STREAM
        assert not first.duplicate
        assert again.duplicate
        assert again.seq == first.seq
        assert (await bus.js.stream_info(ENVELOPE_STREAM)).state.messages == 1

        checkpoint = await bus.js.publish("cb.audit.checkpoint", b"checkpoint")
        assert checkpoint.stream == AUDIT_STREAM
    finally:
        await bus.stop()

    await eventually(lambda: not _alive(pid), within=5.0, what="the embedded nats-server to exit")
    assert not bus.ready
    assert bus.embedded is None
    await bus.stop()  # idempotent


@pytest.mark.asyncio
async def test_embedded_store_survives_a_restart(tmp_path: Path) -> None:
    bus = Bus(None, tmp_path / "nats", 1)
    await bus.start()
    try:
        await bus.js.publish(f"cb.v2.{uuid.uuid4()}.{uuid.uuid4()}.receipt", b"envelope")
    finally:
        await bus.stop()

    bus = Bus(None, tmp_path / "nats", 1)
    await bus.start()
    try:
        assert (await bus.js.stream_info(ENVELOPE_STREAM)).state.messages == 1
    finally:
        await bus.stop()


@pytest.mark.asyncio
async def test_bus_uses_an_external_server_without_starting_one(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "external")
    url = await server.start()
    unused_store = tmp_path / "unused"
    try:
        bus = Bus(url, unused_store, 1)
        await bus.start()
        try:
            assert bus.embedded is None
            assert bus.url == url
            assert bus.ready
            await _assert_streams(bus)

            # A second gateway replica starting against the same streams is a no-op, not an error.
            replica = Bus(url, unused_store, 1)
            await replica.start()
            await replica.stop()
            await _assert_streams(bus)
        finally:
            await bus.stop()

        assert server.pid is not None
        assert _alive(server.pid), "stopping a bus must leave an external server running"
    finally:
        await server.stop()
    assert not unused_store.exists()


# Short for the test (production: READY_GRACE_S); the probe asks often enough that its last answer precedes the
# server's stop by a small part of it.
GRACE_S = 3.0
PROBE_EVERY_S = 0.1


@pytest.mark.asyncio
async def test_readiness_outlasts_a_short_bus_outage_and_lapses_after_the_grace(tmp_path: Path) -> None:
    """A JetStream that stops answering keeps the bus ready for the grace after its last answer (an election, or a
    reconnect to another node, takes less), and no longer: then readiness reports the bus down."""
    server = EmbeddedNats(tmp_path / "external")
    url = await server.start()
    bus = Bus(url, tmp_path / "unused", 1, ready_grace_s=GRACE_S, probe_every_s=PROBE_EVERY_S)
    try:
        await bus.start()
        assert bus.ready
        stopping = time.monotonic()
        await server.stop()
        assert bus.ready, "readiness lapsed as soon as the server went away"

        await eventually(lambda: not bus.ready, within=GRACE_S + 2.0, what="readiness to lapse after the grace")
        ready_for_s = time.monotonic() - stopping
        # The last answer came at most a probe's interval (and its request) before the stop; the lapse comes a grace
        # after it, give or take a poll of `eventually` (at most half a second apart).
        assert GRACE_S - 0.5 <= ready_for_s <= GRACE_S + 1.0, f"ready for {ready_for_s:.1f} s after the stop"
    finally:
        await bus.stop()
        await server.stop()
    assert not bus.ready


@pytest.mark.asyncio
async def test_server_that_cannot_start_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    store_dir = tmp_path / "not-a-directory"
    store_dir.write_text("")
    bus = Bus(None, store_dir, 1)

    with pytest.raises(BusError, match="nats-server exited") as failure:
        await bus.start()

    assert "not a directory" in str(failure.value), "the server's own reason belongs in the error"
    assert _servers_using(store_dir) == []
    assert not bus.ready
    await bus.stop()


@pytest.mark.asyncio
async def test_unreachable_external_server_fails_within_the_deadline(tmp_path: Path) -> None:
    bus = Bus("nats://someone:secret@127.0.0.1:1", tmp_path / "nats", 1, connect_timeout=1.0)

    started = time.monotonic()
    with pytest.raises(BusError, match="did not accept a connection") as failure:
        await bus.start()

    assert time.monotonic() - started < 5.0
    assert "secret" not in str(failure.value)


CHILD = """
import asyncio, sys
from pathlib import Path
from gateway.bus import EmbeddedNats

async def main() -> None:
    server = EmbeddedNats(Path(sys.argv[1]))
    await server.start()
    print(server.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_embedded_server_dies_with_a_gateway_killed_hard(tmp_path: Path) -> None:
    store_dir = tmp_path / "nats"
    gateway = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(store_dir),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    server_pid: int | None = None
    try:
        assert gateway.stdout is not None
        line = await asyncio.wait_for(gateway.stdout.readline(), 20.0)
        assert line.strip().isdigit(), f"child did not report a pid: {line!r}"
        server_pid = int(line)
        assert _alive(server_pid)

        gateway.kill()
        await asyncio.wait_for(gateway.wait(), 5.0)

        await eventually(
            lambda: not _alive(server_pid), within=5.0, what="nats-server outlived the gateway that started it"
        )
    finally:
        if gateway.returncode is None:
            gateway.kill()
            await gateway.wait()
        for pid in _servers_using(store_dir):
            os.kill(pid, signal.SIGKILL)
