"""Gauge sources: read at scrape time, one failing or slow source reported as down without holding up the others."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import Gauges, Reading


async def _exposed(gauges: Gauges) -> str:
    registry = CollectorRegistry(auto_describe=False)

    class Collected:
        def __init__(self, metrics: list[object]) -> None:
            self.metrics = metrics

        def collect(self) -> list[object]:
            return self.metrics

    registry.register(Collected(await gauges.read()))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


async def test_a_source_that_fails_or_hangs_is_down_and_the_others_are_read() -> None:
    gauges = Gauges(timeout_s=0.2)

    async def peers() -> list[Reading]:
        return [Reading("casebridge_peers_unreachable", "Peers whose keys cannot be fetched", 2)]

    async def broken() -> list[Reading]:
        raise ConnectionError("database at 10.0.0.5 refused")

    async def hanging() -> list[Reading]:
        await asyncio.sleep(10)
        return []

    gauges.add("peers", peers)
    gauges.add("broken", broken)
    gauges.add("hanging", hanging)
    text = await _exposed(gauges)
    assert "casebridge_peers_unreachable 2.0" in text
    assert 'casebridge_metrics_source_up{source="peers"} 1.0' in text
    assert 'casebridge_metrics_source_up{source="broken"} 0.0' in text
    assert 'casebridge_metrics_source_up{source="hanging"} 0.0' in text
    assert "10.0.0.5" not in text


async def test_labelled_readings_share_one_family() -> None:
    gauges = Gauges()

    async def parked() -> list[Reading]:
        return [Reading("casebridge_x", "x", n, {"reason": r}) for r, n in (("stale", 1), ("malformed", 3))]

    gauges.add("parked", parked)
    text = await _exposed(gauges)
    assert text.count("# TYPE casebridge_x gauge") == 1
    assert 'casebridge_x{reason="stale"} 1.0' in text
    assert 'casebridge_x{reason="malformed"} 3.0' in text
    with pytest.raises(ValueError, match="registered already"):
        gauges.add("parked", parked)
