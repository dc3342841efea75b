"""The partner directory's scenario: the guardianship body's published profile and a social centre's referral history
with two partners, from which the directory's figures and the reports are computed."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tests.environment import TravelClock
from tests.integration.helpers.agencies import Agency, agency_clients, open_case, referral_body, status_is
from tests.polling import eventually

TOLERANCE = 0.01  # the least tolerance, in hours or days (see Network.tolerance)

OPEKA_PROFILE: dict[str, Any] = {
    "contacts": {"phone": "+7 812 111-11-11", "email": "opeka@example.org"},
    "address": {"address_1": "ул. Ёлочная, 5", "city": "Санкт-Петербург", "postal_code": "190000"},
    "districts": ["Северный район"],
    "opening_hours": [
        {"days": ["mo", "tu", "we", "th"], "opens_at": "09:00", "closes_at": "18:00"},
        {"days": ["fr"], "opens_at": "09:00", "closes_at": "16:45", "note": "сокращённый день"},
    ],
    "documents_required": ["паспорт заявителя"],
    "intake_rules": "Приём по предварительной записи",
    "services": [
        {
            "code": "family_support",
            "name": "Сопровождение семьи",
            "problems": ["family_conflict", "child_neglect"],
            "description": "Социальный патронат семей с детьми",
            "districts": ["Ёлкин район"],
        },
        {
            "name": "Жилищные вопросы опекаемых",
            "problems": ["housing"],
            "documents_required": ["свидетельство о рождении ребёнка"],
        },
    ],
}


@dataclass
class Network:
    """The scenario `referral_network` made: the agencies and the referrals the centre sent."""

    centre: Agency
    opeka: Agency
    kdn: Agency
    opeka_admin: Agency
    sent: dict[str, str]  # scenario name -> referral id
    started: dt.datetime
    real_started: float  # time.monotonic() when the first step began

    def tolerance(self) -> float:
        """How far a figure may be off, in hours or days: the real time the steps took, on top of the travelled time.

        Every duration the figures are made of lies between the first step and now, so its real part is at most the
        real time since the network was built (a few seconds, more on a loaded machine).
        """
        return max(TOLERANCE, (time.monotonic() - self.real_started) / 3600)

    async def send_another(self, clock: TravelClock) -> httpx.Response:
        """The centre sends the guardianship body one more referral about a new case, due in 3 and 30 days from now."""
        case, _ = await open_case(self.centre, self.opeka)
        body = referral_body(
            case,
            self.opeka.id,
            ["identity"],
            respond_by=(clock.now() + dt.timedelta(days=3)).isoformat(),
            complete_by=(clock.now() + dt.timedelta(days=30)).isoformat(),
        )
        return await self.centre.post("/api/v1/referrals", body)


async def move(agency: Agency, referral_id: str, body: dict[str, Any], sender: Agency) -> None:
    """`agency` moves its referral as `body` says; returns once the sender's copy has heard of it."""
    moved = await agency.post(f"/api/v1/referrals/{referral_id}/transition", body)
    assert moved.status_code == 200, moved.text
    await eventually(lambda: status_is(sender, referral_id, body["to"]))  # the sender's copy has heard of it


async def referral_network(api: httpx.AsyncClient, runtime: Runtime, clock: TravelClock) -> Network:
    """A social centre's referral history with two partners, made through the API while the clock moves on.

    Relative to the moment S they are sent (respond_by S+3d, complete_by S+10d):
      family  -> opeka, service family_support: accepted S+2h, completed S+2d (resolved)       on time
      housing -> opeka, petition, service housing: accepted S+4h, completed S+12d (partially)  late
      open    -> opeka: accepted S+8h, still in hand at S+12d                                  due, overdue
      slow    -> opeka: accepted S+4d (after respond_by), still in hand at S+12d              due, overdue
      refused -> kdn, document_request: rejected S+4h
    The clock ends at S+12d.
    """
    (centre,) = await agency_clients(
        api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST, name="Центр «Семья»"
    )
    opeka, opeka_admin = await agency_clients(
        api,
        runtime,
        "opeka",
        TenantKind.GUARDIANSHIP_BODY,
        Role.INTAKE,
        Role.SUPERVISOR,
        region="Северный район",
        name="Отдел опеки",
    )
    (kdn,) = await agency_clients(api, runtime, "kdn", TenantKind.JUVENILE_COMMISSION, Role.INTAKE, name="КДН и ЗП")
    published = await opeka_admin.api.put("/api/v1/directory/profile", json=OPEKA_PROFILE, headers=opeka_admin.headers)
    assert published.status_code == 200, published.text

    start, real_started = clock.now(), time.monotonic()
    deadlines = {
        "respond_by": (start + dt.timedelta(days=3)).isoformat(),
        "complete_by": (start + dt.timedelta(days=10)).isoformat(),
    }
    case_opeka, _ = await open_case(centre, opeka)
    case_kdn, _ = await open_case(centre, kdn)
    plan = {
        "family": (case_opeka, opeka, {"service": "family_support"}),
        "housing": (case_opeka, opeka, {"service": "housing", "kind": "petition"}),
        "open": (case_opeka, opeka, {}),
        "slow": (case_opeka, opeka, {}),
        "refused": (case_kdn, kdn, {"kind": "document_request"}),
    }
    sent = {}
    for name, (case, partner, extra) in plan.items():
        response = await centre.post(
            "/api/v1/referrals", referral_body(case, partner.id, ["identity"], **deadlines, **extra)
        )
        assert response.status_code == 201, response.text
        sent[name] = response.json()["id"]
    for name, referral_id in sent.items():
        partner = plan[name][1]
        await eventually(lambda: status_is(partner, referral_id, "received"))  # noqa: B023 - awaited at once
        await eventually(lambda: status_is(centre, referral_id, "received"))  # noqa: B023 - awaited at once

    accept = {"to": "accepted"}
    clock.advance(dt.timedelta(hours=2))
    await move(opeka, sent["family"], accept, centre)
    clock.advance(dt.timedelta(hours=2))
    await move(opeka, sent["housing"], accept, centre)
    await move(kdn, sent["refused"], {"to": "rejected", "reason": "Не наша компетенция"}, centre)
    clock.advance(dt.timedelta(hours=4))
    await move(opeka, sent["open"], accept, centre)
    clock.advance(dt.timedelta(hours=40))  # S+2d
    await move(
        opeka, sent["family"], {"to": "completed", "outcome": {"result": "resolved", "note": "Помощь оказана"}}, centre
    )
    clock.advance(dt.timedelta(days=2))  # S+4d
    await move(opeka, sent["slow"], accept, centre)
    clock.advance(dt.timedelta(days=4))  # S+8d
    clock.advance(dt.timedelta(days=4))  # S+12d
    partly = {"to": "completed", "outcome": {"result": "partially_resolved", "note": "Частично"}}
    await move(opeka, sent["housing"], partly, centre)
    return Network(centre, opeka, kdn, opeka_admin, sent, start, real_started)
