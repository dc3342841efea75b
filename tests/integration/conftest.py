"""Fixtures shared by the integration tests of every area: three agencies, English pages and the directory's
scenario. The helpers they are built from are in tests/integration/helpers/."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller

from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tests.environment import TravelClock
from tests.integration.helpers.agencies import Agency, agency
from tests.integration.helpers.directory import Network, referral_network
from tests.integration.helpers.mail import Sink, free_port


@pytest.fixture
async def agencies(api: httpx.AsyncClient, runtime: Runtime) -> tuple[Agency, Agency, Agency]:
    """A social centre's specialist, and the intake of a guardianship body and of a juvenile commission."""
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    kdn = await agency(api, runtime, "kdn", TenantKind.JUVENILE_COMMISSION, Role.INTAKE)
    return centre, opeka, kdn


@pytest.fixture
def english(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """The `api` client as a browser set to English: tests that read the English texts use it."""
    api.headers["Accept-Language"] = "en"
    return api


@pytest.fixture
async def network(api: httpx.AsyncClient, runtime: Runtime, clock: TravelClock) -> Network:
    """The directory's scenario (tests/integration/helpers/directory.py): a centre's history with two partners."""
    return await referral_network(api, runtime, clock)


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    """A real SMTP server on loopback and its port; the sink holds what it was given."""
    port = free_port()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()
