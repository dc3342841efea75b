"""The partner directory: published profiles, search on both databases, and real figures from referral timelines."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import msgspec
import pytest

from exchange.reports.statistics import MIN_CELL, PartnerFigures, partner_figures
from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tenants.persistence import platform_session
from tenants.schemas import DirectoryStats
from tests.environment import TravelClock
from tests.integration.helpers.agencies import Agency, agency_clients, open_case, referral_body, status_is
from tests.integration.helpers.directory import OPEKA_PROFILE, Network, move
from tests.polling import eventually


async def _directory(agency: Agency, **params: str) -> dict[str, dict[str, Any]]:
    response = await agency.get("/api/v1/directory/tenants", params=params)
    assert response.status_code == 200, response.text
    return {item["slug"]: item for item in response.json()["items"]}


async def _computed(runtime: Runtime, clock: TravelClock, *agencies: Agency) -> dict[uuid.UUID, PartnerFigures]:
    """The figures as the directory computes them from the database, without the small-cell threshold."""
    async with platform_session(runtime.sessions) as session:
        return await partner_figures(session, partners=[a.id for a in agencies], now=clock.now(), min_cell=0)


def _as_json(stats: DirectoryStats) -> dict[str, Any]:
    return msgspec.to_builtins(stats)  # type: ignore[no-any-return]


async def test_figures_come_from_the_senders_timelines(network: Network, runtime: Runtime, clock: TravelClock) -> None:
    computed = await _computed(runtime, clock, network.opeka, network.kdn, network.centre)
    opeka = _as_json(computed[network.opeka.id].overall)
    # Hours to accept: 2, 4, 8, 96 -> median (4 + 8) / 2; p90 at rank 2.7: 8 + 0.7 * (96 - 8).
    assert opeka["median_hours_to_accept"] == pytest.approx(6.0, abs=network.tolerance())
    assert opeka["p90_hours_to_accept"] == pytest.approx(69.6, abs=network.tolerance())
    # Days to complete: 2 and 12 -> median 7; p90 2 + 0.9 * 10.
    assert opeka["median_days_to_complete"] == pytest.approx(7.0, abs=network.tolerance())
    assert opeka["p90_days_to_complete"] == pytest.approx(11.0, abs=network.tolerance())
    assert opeka["acceptance_rate"] == 1.0
    assert opeka["on_time_rate"] == 0.25  # of four due (two completed, two in hand past complete_by) one on time
    # Only the sender's copies count: the partner's own four copies would double every count.
    assert (opeka["referral_count"], opeka["answered_count"], opeka["accepted_count"]) == (4, 4, 4)
    assert (opeka["completed_count"], opeka["due_count"], opeka["window_days"]) == (2, 4, 365)

    services = computed[network.opeka.id].by_service
    assert set(services) == {"family_support", "housing"}  # the referrals that named no service count only above
    family, housing = _as_json(services["family_support"]), _as_json(services["housing"])
    assert family["median_hours_to_accept"] == pytest.approx(2.0, abs=network.tolerance())
    assert family["median_days_to_complete"] == pytest.approx(2.0, abs=network.tolerance())
    assert (family["on_time_rate"], family["referral_count"]) == (1.0, 1)
    assert housing["median_hours_to_accept"] == pytest.approx(4.0, abs=network.tolerance())
    assert housing["median_days_to_complete"] == pytest.approx(12.0, abs=network.tolerance())
    assert (housing["on_time_rate"], housing["referral_count"]) == (0.0, 1)

    kdn = _as_json(computed[network.kdn.id].overall)  # rejected everything it was sent
    assert kdn["acceptance_rate"] == 0.0
    assert kdn["median_hours_to_accept"] is None
    assert kdn["median_days_to_complete"] is None
    assert kdn["on_time_rate"] is None
    assert (kdn["referral_count"], kdn["answered_count"], kdn["accepted_count"]) == (1, 1, 0)

    semya = _as_json(computed[network.centre.id].overall)  # it only sends: no history as a partner
    assert semya["median_hours_to_accept"] is None
    assert semya["acceptance_rate"] is None
    assert semya["referral_count"] == 0


NO_FIGURES = {
    "median_hours_to_accept": None,
    "median_days_to_complete": None,
    "p90_hours_to_accept": None,
    "p90_days_to_complete": None,
    "acceptance_rate": None,
    "on_time_rate": None,
    "referral_count": None,
    "answered_count": None,
    "accepted_count": None,
    "completed_count": None,
    "due_count": None,
    "window_days": 365,
    "min_cell": MIN_CELL,
}


async def test_partners_with_fewer_than_five_referrals_show_no_figures(network: Network) -> None:
    listing = await _directory(network.centre)
    # opeka had four referrals, kdn one, semya none: the API shows none of their figures or counts.
    for slug in ("opeka", "kdn", "semya"):
        assert listing[slug]["stats"] == NO_FIGURES, slug
    for service in listing["opeka"]["services"]:  # one referral each
        assert service["stats"] == NO_FIGURES, service["code"]
    # Every agency sees the same; a partner's view of itself is no different.
    assert (await _directory(network.opeka))["opeka"]["stats"] == NO_FIGURES
    # The entry the profile update answers with is the directory's own: no figures either.
    admin = network.opeka_admin
    republished = await admin.api.put("/api/v1/directory/profile", json=OPEKA_PROFILE, headers=admin.headers)
    assert republished.status_code == 200, republished.text
    assert republished.json()["stats"] == NO_FIGURES


async def test_the_fifth_referral_brings_the_figures_that_rest_on_five(network: Network, clock: TravelClock) -> None:
    sent = await network.send_another(clock)
    assert sent.status_code == 201, sent.text
    fifth = sent.json()["id"]
    await eventually(lambda: status_is(network.opeka, fifth, "received"))
    await eventually(lambda: status_is(network.centre, fifth, "received"))
    clock.advance(dt.timedelta(hours=10))
    await move(network.opeka, fifth, {"to": "accepted"}, network.centre)

    opeka = (await _directory(network.kdn))["opeka"]["stats"]
    # Hours to accept: 2, 4, 8, 10, 96 -> median 8; p90 at rank 3.6: 10 + 0.6 * (96 - 10).
    assert opeka["median_hours_to_accept"] == pytest.approx(8.0, abs=network.tolerance())
    assert opeka["p90_hours_to_accept"] == pytest.approx(61.6, abs=network.tolerance())
    assert opeka["acceptance_rate"] == 1.0
    assert (opeka["referral_count"], opeka["answered_count"], opeka["accepted_count"]) == (5, 5, 5)
    # Two completed and four due: still below five, still hidden.
    assert (opeka["median_days_to_complete"], opeka["p90_days_to_complete"], opeka["completed_count"]) == (None,) * 3
    assert (opeka["on_time_rate"], opeka["due_count"]) == (None, None)


async def test_figures_hold_only_aggregates(network: Network) -> None:
    response = await network.kdn.get("/api/v1/directory/tenants")
    for referral_id in network.sent.values():
        assert referral_id not in response.text
    assert "Помощь оказана" not in response.text  # outcome notes
    assert "Иванова" not in response.text  # the family


async def test_the_window_drops_old_history(network: Network, runtime: Runtime, clock: TravelClock) -> None:
    assert (await _computed(runtime, clock, network.opeka))[network.opeka.id].overall.referral_count == 4
    clock.advance(dt.timedelta(days=365 - 12 + 1))  # the referrals were sent more than 365 days ago
    assert (await _computed(runtime, clock, network.opeka))[network.opeka.id].overall.referral_count == 0
    listing = await _directory(network.kdn)
    assert listing["opeka"]["stats"] == NO_FIGURES


async def test_a_referral_names_only_a_service_the_partner_offers(network: Network, clock: TravelClock) -> None:
    case, _ = await open_case(network.centre, network.opeka)
    body = referral_body(
        case,
        network.opeka.id,
        ["identity"],
        service="dentistry",
        respond_by=(clock.now() + dt.timedelta(days=3)).isoformat(),
        complete_by=(clock.now() + dt.timedelta(days=30)).isoformat(),
    )
    refused = await network.centre.post("/api/v1/referrals", body)
    assert refused.status_code == 400, refused.text
    assert "no service with the code 'dentistry'" in refused.json()["detail"]
    assert "family_support, housing" in refused.json()["detail"]
    sent = await network.centre.post("/api/v1/referrals", {**body, "service": "housing"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["service"] == "housing"
    received = await eventually(lambda: status_is(network.opeka, sent.json()["id"], "received"))
    assert received
    copy = await network.opeka.get(f"/api/v1/referrals/{sent.json()['id']}")
    assert copy.json()["service"] == "housing"


# -- search -----------------------------------------------------------------------------------------------------------


@pytest.fixture
async def searcher(api: httpx.AsyncClient, runtime: Runtime) -> Agency:
    (centre,) = await agency_clients(
        api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST, name="Центр «Семья»"
    )
    (opeka,) = await agency_clients(
        api,
        runtime,
        "opeka",
        TenantKind.GUARDIANSHIP_BODY,
        Role.SUPERVISOR,
        region="Северный район",
        name="Отдел ОПЕКИ",
    )
    (ngo,) = await agency_clients(
        api, runtime, "dom", TenantKind.NGO, Role.SUPERVISOR, region="Южный район", name="Фонд «Дом»"
    )
    assert (await opeka.api.put("/api/v1/directory/profile", json=OPEKA_PROFILE, headers=opeka.headers)).is_success
    ngo_profile = {
        "contacts": {},
        "districts": ["Южный район"],
        "services": [{"name": "Временное жильё для матерей с детьми", "problems": ["housing", "domestic_violence"]}],
    }
    assert (await ngo.api.put("/api/v1/directory/profile", json=ngo_profile, headers=ngo.headers)).is_success
    return centre


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["dom", "opeka", "semya"]),
        ({"problem": "housing"}, ["dom", "opeka"]),
        ({"problem": "child_neglect"}, ["opeka"]),
        ({"problem": "family_support"}, ["opeka"]),  # a service's own code is a term too
        ({"problem": "child"}, []),  # whole codes only
        ({"district": "ёлкин РАЙОН"}, ["opeka"]),  # a service's district; case and ё folded
        ({"district": "северный район"}, ["opeka"]),  # the agency's district
        ({"district": "Северный"}, []),  # whole districts only
        ({"kind": "ngo", "problem": "housing"}, ["dom"]),
        ({"region": "ЮЖНЫЙ район"}, ["dom"]),
        ({"q": "опеки"}, ["opeka"]),  # a name in capitals, found in lower case
        ({"q": "ПАТРОНАТ"}, ["opeka"]),  # a service's description
        ({"q": "елочная"}, ["opeka"]),  # the address, ё typed as е
        ({"q": "жильё матерей"}, ["dom"]),  # every word must match
        ({"q": "100%_"}, []),  # LIKE wildcards are plain characters
        ({"problem": "housing", "district": "Южный район", "q": "фонд"}, ["dom"]),
    ],
)
async def test_search_filters(searcher: Agency, params: dict[str, str], expected: list[str]) -> None:
    assert sorted(await _directory(searcher, **params)) == expected


async def test_bad_search_parameters_are_problems(searcher: Agency) -> None:
    for params in ({"problem": "Жильё"}, {"kind": "bank"}, {"district": "x" * 129}):
        response = await searcher.get("/api/v1/directory/tenants", params=params)
        assert response.status_code == 400, params
        assert response.json()["type"] == "/problems/validation"


async def test_the_entry_has_the_api_shape(searcher: Agency) -> None:
    entry = (await _directory(searcher, problem="child_neglect"))["opeka"]
    assert set(entry) >= {"id", "slug", "name", "kind", "region", "services", "jwks_url", "stats"}
    uuid.UUID(entry["id"])
    assert (entry["kind"], entry["region"]) == ("guardianship_body", "Северный район")
    assert {"median_hours_to_accept", "median_days_to_complete"} <= set(entry["stats"])
    assert entry["address"]["city"] == "Санкт-Петербург"
    assert entry["address"]["country"] == "RU"
    assert entry["districts"] == ["Северный район"]
    assert entry["opening_hours"][1] == {
        "days": ["fr"],
        "opens_at": "09:00",
        "closes_at": "16:45",
        "note": "сокращённый день",
    }
    assert entry["documents_required"] == ["паспорт заявителя"]
    assert entry["intake_rules"] == "Приём по предварительной записи"
    family = entry["services"][0]
    assert family["code"] == "family_support"
    assert family["problems"] == ["family_conflict", "child_neglect"]
    assert family["stats"] == NO_FIGURES


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (
            {"services": [{"name": "A", "problems": ["housing"]}, {"name": "B", "problems": ["housing"]}]},
            "services[1] has the code 'housing', already used by services[0]",
        ),
        ({"services": [{"name": "A", "problems": []}]}, "services[0] needs a code or at least one problem category"),
        ({"services": [{"name": "A", "problems": ["Жильё"]}]}, "services[0].problems[0]"),
        (
            {"opening_hours": [{"days": ["mo"], "opens_at": "18:00", "closes_at": "09:00"}]},
            "opening_hours[0]: opens_at must be earlier than closes_at",
        ),
        (
            {"opening_hours": [{"days": ["monday"], "opens_at": "09:00", "closes_at": "18:00"}]},
            "opening_hours[0].days[0]",
        ),
        ({"address": {"address_1": "ул. Садовая, 1", "country": "Russia"}}, "address.country"),
    ],
    ids=["duplicate-code", "no-code", "bad-problem", "hours-reversed", "bad-day", "bad-country"],
)
async def test_bad_profiles_are_precise_problems(
    api: httpx.AsyncClient, runtime: Runtime, change: dict[str, Any], detail: str
) -> None:
    (admin,) = await agency_clients(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.SUPERVISOR)
    response = await api.put("/api/v1/directory/profile", json={**OPEKA_PROFILE, **change}, headers=admin.headers)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "/problems/validation"
    assert detail in response.json()["detail"]
