"""What the DPO's queries read beside the sealed log, rewritten in the database, is named by `casebridge audit verify`.

On SQLite and PostgreSQL, as an insider with database access would do it: raw SQL on a platform session. Each case
rewrites something the search, the subject access report, the review queue or the anomaly rules read (a column of
the event row, a subject pseudonym row, a review mark) and leaves the sealed events, the chain and the tree alone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from uuid_utils.compat import uuid7

from audit.events import Action, Actor, Outcome
from audit.models import AuditEvent, AuditEventSubject, AuditSeal
from audit.services import AccessScope, RequestContext
from exchange.context import Context
from exchange.reports import dpo
from tenants.models import Role
from tenants.persistence import platform_session, tenant_session
from tenants.principal import ActorKind, Principal
from tests.integration.audit.sealing import (
    TENANTS,
    Cli,
    Finding,
    Node,
    append_events,
    event_at,
    execute,
    seal_everything,
)

EVENTS = 30
OTHER = uuid.UUID("01960000-0000-7000-8000-0000000000ff")


async def verify(cli: Cli, *argv: str) -> list[dict[str, Any]]:
    code, result, err = await cli("audit", "verify", *argv)
    assert result is not None, err
    assert code == (0 if result["ok"] else 1)
    problems: list[dict[str, Any]] = result["problems"]
    return problems


def found(problems: list[dict[str, Any]]) -> list[Finding]:
    return [(p["kind"], p["seq"]) for p in problems]


async def sealed_log(node: Node, cli: Cli) -> None:
    await append_events(node, EVENTS)  # every fifth event is the platform's own, the others name one subject each
    await seal_everything(node.sealer)
    assert await verify(cli) == []


# Each column, rewritten on an event of its own (seq), as raw SQL with its parameters.
REWRITES: dict[str, tuple[int, str, dict[str, Any]]] = {
    "log_tenant_id": (2, "log_tenant_id = :other_id", {"other_id": OTHER}),
    "recorded_at": (3, "recorded_at = :at", {"at": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)}),
    "action": (4, "action = 'exchange:case:list'", {}),
    "outcome": (7, "outcome = 'denied'", {}),
    "actor_id": (8, "actor_id = :other_id", {"other_id": OTHER}),
    "actor_tenant_id": (9, "actor_tenant_id = NULL", {}),
    "resource_id": (12, "resource_id = 'elsewhere'", {}),
}


async def test_each_rewritten_search_column_is_named_at_its_event(node: Node, cli: Cli, tmp_path: Path) -> None:
    await sealed_log(node, cli)
    for seq, assignment, params in REWRITES.values():
        await execute(
            node,
            f"UPDATE audit_event SET {assignment} WHERE id = :event_id",
            event_id=await event_at(node, seq),
            **params,
        )

    problems = await verify(cli)
    assert found(problems) == [("column_changed", seq) for seq, _, _ in REWRITES.values()]
    for column, (seq, _, _) in REWRITES.items():
        (detail,) = [p["detail"] for p in problems if p["seq"] == seq]
        assert (
            detail == f"event {await event_at(node, seq)} (seq {seq}): {column} on its row disagree with the "
            "sealed event"
        )

    # The export carries the rewritten columns, and its offline verifier names the same problems.
    export = tmp_path / "audit.jsonl"
    assert (await cli("audit", "export", "--out", str(export)))[0] == 0
    assert found(await verify(cli, "--from-export", str(export))) == found(problems)


async def test_deleted_added_and_moved_pseudonym_rows_are_named(node: Node, cli: Cli, tmp_path: Path) -> None:
    await sealed_log(node, cli)
    await execute(node, "DELETE FROM audit_event_subject WHERE event_id = :event_id", event_id=await event_at(node, 2))
    await execute(
        node,
        "INSERT INTO audit_event_subject (id, event_id, pseudonym, created_at, updated_at) "
        "VALUES (:row_id, :event_id, 'ps_00000000000000000000000000000000', :at, :at)",
        row_id=uuid7(),
        event_id=await event_at(node, 6),
        at=dt.datetime.now(dt.UTC),  # the platform's: no subject
    )
    async with platform_session(node.sessions) as session:
        row = await session.scalar(
            select(AuditEventSubject.id).where(AuditEventSubject.event_id == await event_at(node, 3))
        )
    await execute(
        node,
        "UPDATE audit_event_subject SET event_id = :event_id WHERE id = :row_id",
        event_id=await event_at(node, 4),
        row_id=row,
    )

    problems = await verify(cli)
    assert found(problems) == [
        ("subject_deleted", 2),
        ("subject_deleted", 3),
        ("subject_inserted", 4),
        ("subject_inserted", 6),
    ]
    assert all("ps_" not in p["detail"] for p in problems)  # pseudonyms stay out of what verify prints

    export = tmp_path / "audit.jsonl"
    assert (await cli("audit", "export", "--out", str(export)))[0] == 0
    assert found(await verify(cli, "--from-export", str(export))) == found(problems)


async def test_hiding_every_access_as_the_probe_did_is_reported_for_every_event(node: Node, cli: Cli) -> None:
    """Every pseudonym row deleted, and action and actor rewritten on every event: each event is named."""
    await sealed_log(node, cli)
    await execute(node, "DELETE FROM audit_event_subject")
    await execute(
        node, "UPDATE audit_event SET action = 'tenants:directory:read', actor_id = :other_id", other_id=OTHER
    )

    problems = await verify(cli)
    tenant_events = [seq for seq in range(1, EVENTS + 1) if (seq - 1) % 5]  # append_events: each names a subject
    expected = [("column_changed", seq) for seq in range(1, EVENTS + 1)]
    expected += [("subject_deleted", seq) for seq in tenant_events]
    assert sorted(found(problems), key=lambda f: (f[1], f[0])) == sorted(expected, key=lambda f: (f[1], f[0]))
    assert all("action, actor_id on its row" in p["detail"] for p in problems if p["kind"] == "column_changed")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_values_that_queries_would_miss_are_changes(node: Node, cli: Cli) -> None:
    """SQLite keeps whatever it is given: the same instant or the same id, stored in a form `=` and `<` treat
    otherwise, is a change (the report's time window and the search by actor would miss them)."""
    await sealed_log(node, cli)
    await execute(
        node,
        "UPDATE audit_event SET recorded_at = replace(recorded_at, ' ', 'T') WHERE id = :event_id",
        event_id=await event_at(node, 2),
    )
    await execute(
        node,
        "UPDATE audit_event SET actor_id = lower(hex(actor_id)) WHERE id = :event_id",
        event_id=await event_at(node, 3),
    )
    await execute(
        node,
        "UPDATE audit_event_subject SET pseudonym = CAST(pseudonym AS BLOB) WHERE event_id = :event_id",
        event_id=await event_at(node, 4),
    )
    problems = await verify(cli)
    assert found(problems) == [
        ("column_changed", 2),
        ("column_changed", 3),
        ("subject_deleted", 4),
        ("subject_inserted", 4),
    ]
    assert "recorded_at on its row" in problems[0]["detail"]
    assert "actor_id on its row" in problems[1]["detail"]


async def test_an_unsealed_event_dated_ahead_is_not_left_waiting_for_its_seal(node: Node, cli: Cli) -> None:
    """Only a minute's wait for the sealer is normal: a recorded time in the future does not make an event that was
    added behind the sealer's back look like one still waiting."""
    await sealed_log(node, cli)
    (ahead,) = await append_events(node, 1, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    problems = await verify(cli)
    assert found(problems) == [("inserted", None)]
    assert str(ahead) in problems[0]["detail"]


# -- review marks ------------------------------------------------------------------------------------------------


async def _statutory_shares(node: Node, count: int) -> list[uuid.UUID]:
    audit = node.runtime.exchange.audit
    async with tenant_session(node.sessions, TENANTS[0]) as session, session.begin():
        return [
            audit.append(
                session,
                action=Action.EXCHANGE_REFERRAL_SEND,
                outcome=Outcome.SUCCESS,
                actor=Actor(kind="user", id=uuid.uuid4(), tenant_id=TENANTS[0], role="intake"),
                log_tenant_id=TENANTS[0],
                resource_type="referral",
                resource_id=str(uuid.uuid4()),
                legal_basis="statutory",
            ).id
            for _ in range(count)
        ]


async def _review(node: Node, event_id: uuid.UUID, reviewer: Principal) -> None:
    """A DPO's review, through the same operation as the API and the console, its event written as they write it."""
    actor = Actor(kind=reviewer.actor_kind.value, id=reviewer.actor_id, tenant_id=reviewer.tenant_id, role="dpo")
    scope = AccessScope(
        log=node.runtime.exchange.audit,
        actor=actor,
        log_tenant_id=reviewer.tenant_id,
        action=Action.AUDIT_REVIEW_MARK,
        context=RequestContext(None, None, None),
    )
    async with tenant_session(node.sessions, reviewer.tenant_id) as session, session.begin():
        await dpo.mark_reviewed(Context(session, node.runtime.exchange, reviewer, scope), event_id=event_id, note=None)
        scope.write(session)


async def test_deleted_and_forged_review_marks_are_named(node: Node, cli: Cli, tmp_path: Path) -> None:
    reviewer = Principal(TENANTS[0], ActorKind.USER, uuid.uuid4(), frozenset({Role.DPO}), None)
    first, second, third = await _statutory_shares(node, 3)
    await _review(node, first, reviewer)
    await _review(node, second, reviewer)
    await seal_everything(node.sealer)
    assert await verify(cli) == []

    # The first review's mark removed: that share is back in the review queue. A mark forged on the third takes it
    # off the queue with no review behind it.
    await execute(node, "DELETE FROM audit_review_mark WHERE event_id = :event_id", event_id=first)
    await execute(
        node,
        "INSERT INTO audit_review_mark (id, log_tenant_id, event_id, reviewer_kind, reviewer_id, at, created_at, "
        "updated_at) VALUES (:mark_id, :tenant_id, :event_id, 'user', :reviewer_id, :at, :at, :at)",
        mark_id=uuid7(),
        tenant_id=TENANTS[0],
        event_id=third,
        reviewer_id=reviewer.actor_id,
        at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
    )
    async with platform_session(node.sessions) as session:
        review_of_first = await session.scalar(
            select(AuditSeal.seq)
            .join(AuditEvent, AuditEvent.id == AuditSeal.event_id)
            .where(AuditEvent.action == Action.AUDIT_REVIEW_MARK.value, AuditEvent.resource_id == str(first))
        )
    problems = await verify(cli)
    assert found(problems) == [("review_deleted", review_of_first), ("review_inserted", None)]
    assert str(first) in problems[0]["detail"]
    assert str(third) in problems[1]["detail"]

    export = tmp_path / "audit.jsonl"
    assert (await cli("audit", "export", "--out", str(export)))[0] == 0
    assert found(await verify(cli, "--from-export", str(export))) == found(problems)
