"""`casebridge subjects index`: subjects recorded before the lookup digests existed become findable by a DPO."""

from __future__ import annotations

import functools
import json

import httpx
import pytest
from sqlalchemy import select, update

from audit.models import AuditEvent
from exchange.cases.models import Subject
from gateway.runtime import Runtime
from tenants.persistence import platform_session
from tests.integration.helpers.agencies import CHILD_BIRTH, CHILD_NAME, CHILD_SNILS, PERSONAL_DATA, Agency, dpo_of
from tests.integration.helpers.cli import cli_beside

LOOKUP = "/api/v1/audit/subjects/lookup"


async def test_older_subjects_are_found_once_the_index_command_has_run(
    agencies: tuple[Agency, Agency, Agency],
    api: httpx.AsyncClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    centre, _, _ = agencies
    cli = functools.partial(cli_beside, runtime, monkeypatch)
    dpo = await dpo_of(api, runtime, centre)
    subjects = [
        {
            "ref": "child 1",
            "full_name": CHILD_NAME,
            "birth_date": CHILD_BIRTH,
            "role": "child",
            "identifiers": {"snils": CHILD_SNILS},
        },
        {"ref": "other 1", "full_name": "Без Даты Рождения", "role": "other"},
    ]
    created = await centre.post("/api/v1/cases", {"title": "Семья", "subjects": subjects})
    assert created.status_code == 201, created.text
    child_id = created.json()["subjects"][0]["id"]
    details = {"full_name": CHILD_NAME, "birth_date": CHILD_BIRTH, "snils": CHILD_SNILS}
    assert (await dpo.post(LOOKUP, details)).status_code == 200
    # As rows recorded before the digests existed are: none at all.
    async with platform_session(runtime.sessions) as session, session.begin():
        await session.execute(update(Subject).values(name_lookup=None, snils_lookup=None))
    assert (await dpo.post(LOOKUP, details)).status_code == 404

    code, counts, err = await cli("subjects", "index")
    assert code == 0, err
    # The one without a birth date cannot be found by name and birth date, and says so.
    assert counts == {"subjects": 2, "indexed": 1, "without_digest": 1}
    for personal in PERSONAL_DATA:
        assert personal not in str(counts) + err

    found = await dpo.post(LOOKUP, details)
    assert found.status_code == 200, found.text
    assert found.json()["subject_ids"] == [child_id]
    assert await cli("subjects", "index") == (0, counts, "")  # running it again changes nothing

    # Each run is in the centre's trail, by the operator, with counts and nothing about anyone.
    async with platform_session(runtime.sessions) as session:
        recorded = list(
            await session.scalars(select(AuditEvent.canonical).where(AuditEvent.action == "exchange:subjects:index"))
        )
    events = [json.loads(text) for text in recorded]
    assert [(e["log_tenant"], e["actor"]["kind"], e["extra"]) for e in events] == [
        (str(centre.id), "operator", {"subjects": 2, "indexed": 1})
    ] * 2
    assert all(e["subjects"] == [] for e in events)
