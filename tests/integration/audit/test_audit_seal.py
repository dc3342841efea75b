"""Sealing the audit trail on SQLite and PostgreSQL: checkpoints, `casebridge audit verify/export`, tampering found.

The tampering here is done the way an attacker with database access would: raw SQL on a platform session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped] # asyncpg ships no type information
import pytest
from advanced_alchemy.types import GUID
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.checkpoint import parse_note
from audit.merkle import verify_consistency, verify_inclusion
from audit.models import AuditCheckpoint, AuditEvent, AuditSeal
from audit.sealer import ProofUnavailable, Sealer, SealIntegrityError, log_origin
from audit.verify import verify_database
from gateway.db import create_engine, upgrade_schema
from gateway.runtime import Runtime
from gateway.settings import DatabaseSettings
from gateway.workers import Worker, WorkerName
from tenants.persistence import make_sessionmaker, platform_session
from tests.conftest import BASE_URL
from tests.integration.audit.sealing import (
    Cli,
    Finding,
    Node,
    append_events,
    event_at,
    execute,
    seal_everything,
)
from tests.integration.helpers.agencies import Agency, open_case, referral_body
from tests.pg import HOST, SUPERUSER, ThrowawayPostgres
from tests.polling import eventually

EVENTS = 30
SEALED_AT = AuditSeal.__table__.c.sealed_at.type


# -- sealing and verifying -------------------------------------------------------------------------------------------


async def test_a_sealed_log_verifies_from_the_command_line(node: Node, cli: Cli) -> None:
    await append_events(node, EVENTS)
    note = await seal_everything(node.sealer)
    assert note is not None
    checkpoint = parse_note(note).checkpoint
    assert (checkpoint.origin, checkpoint.size) == ("localhost/audit", EVENTS)

    code, result, err = await cli("audit", "verify")
    assert (code, err) == (0, "")
    assert result == {
        "ok": True,
        "size": EVENTS,
        "root": checkpoint.root.hex(),
        "problems": [],
        "pending": 0,
        "checkpoints": 1,
    }

    # Nothing new: no second checkpoint. More events: a checkpoint that extends the first.
    assert await node.sealer.checkpoint_once() is None
    await append_events(node, 5)
    assert await seal_everything(node.sealer) is not None
    code, result, _ = await cli("audit", "verify")
    assert code == 0
    assert result is not None
    assert (result["size"], result["checkpoints"]) == (EVENTS + 5, 2)


async def test_sealing_orders_by_time_and_never_updates_events(node: Node) -> None:
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later_ids = await append_events(node, 3)
    earlier_ids = await append_events(node, 3, at=earlier)
    async with platform_session(node.sessions) as session:
        before = {e.id: (e.canonical, e.updated_at) for e in await session.scalars(select(AuditEvent))}
    assert await node.sealer.seal_once() == 6
    assert await node.sealer.seal_once() == 0
    async with platform_session(node.sessions) as session:
        sealed = list(await session.scalars(select(AuditSeal.event_id).order_by(AuditSeal.seq)))
        after = {e.id: (e.canonical, e.updated_at) for e in await session.scalars(select(AuditEvent))}
    assert sealed == sorted(earlier_ids) + sorted(later_ids)
    assert after == before


async def test_an_event_committed_long_after_its_id_waits_for_the_next_full_sweep(node: Node) -> None:
    await append_events(node, 3)
    assert await node.sealer.seal_once() == 3
    hour_ago_ms = int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).timestamp() * 1000)
    late = uuid.UUID(int=(hour_ago_ms << 80) | (7 << 76) | (2 << 62) | 1)  # a UUIDv7 from an hour ago
    async with platform_session(node.sessions) as session, session.begin():
        session.add(
            AuditEvent(
                id=late,
                recorded_at=dt.datetime.now(dt.UTC),
                action="x",
                outcome="success",
                canonical=json.dumps({"id": str(late)}),
            )
        )
    assert await node.sealer.seal_once() == 0  # outside the late-commit window of the running term
    await node.sealer.release()
    successor = Sealer(node.sessions, node.runtime.keyring, node.runtime.clock, origin=node.sealer.origin)
    assert await successor.seal_once() == 1  # a new term starts with a sweep over every event


async def change_a_canonical_text(node: Node) -> tuple[str, list[Finding]]:
    victim = await event_at(node, 12)
    await execute(
        node,
        "UPDATE audit_event SET canonical = replace(canonical, 'social_support', 'social_suppqrt') "
        "WHERE id = :event_id",
        event_id=victim,
    )
    return str(victim), [("changed", 12)]


async def delete_a_seal(node: Node) -> tuple[str, list[Finding]]:
    victim = await event_at(node, 7)
    await execute(node, "DELETE FROM audit_seal WHERE seq = 7")
    return str(victim), [("deleted", 7)]


async def insert_a_rogue_event(node: Node) -> tuple[str, list[Finding]]:
    victim = uuid.uuid4()
    async with platform_session(node.sessions) as session, session.begin():
        session.add(
            AuditEvent(
                id=victim,
                recorded_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                action="exchange:case:read",
                outcome="success",
                canonical=json.dumps({"v": 1, "id": str(victim), "action": "exchange:case:read"}),
            )
        )
    return str(victim), [("inserted", None)]


async def swap_two_seals_event_ids(node: Node) -> tuple[str, list[Finding]]:
    insert = text(
        "INSERT INTO audit_seal (seq, event_id, chain_hash, leaf_hash, sealed_at) "
        "VALUES (:seq, :event_id, :chain_hash, :leaf_hash, :sealed_at)"
    ).bindparams(bindparam("event_id", type_=GUID()), bindparam("sealed_at", type_=SEALED_AT))
    async with platform_session(node.sessions) as session, session.begin():
        rows = {r.seq: r for r in await session.scalars(select(AuditSeal).where(AuditSeal.seq.in_([3, 9])))}
        # event_id is unique, so the exchange is a delete and two inserts rather than two updates.
        await session.execute(text("DELETE FROM audit_seal WHERE seq IN (3, 9)"))
        for seq, other in ((3, 9), (9, 3)):
            row = rows[seq]
            await session.execute(
                insert,
                {
                    "seq": seq,
                    "event_id": rows[other].event_id,
                    "chain_hash": row.chain_hash,
                    "leaf_hash": row.leaf_hash,
                    "sealed_at": row.sealed_at,
                },
            )
    return "sealed at seq 9", [("reordered", 3), ("reordered", 9)]


@pytest.mark.parametrize(
    "tamper", [change_a_canonical_text, delete_a_seal, insert_a_rogue_event, swap_two_seals_event_ids]
)
async def test_tampering_with_the_database_is_reported(
    node: Node, cli: Cli, tamper: Callable[[Node], Awaitable[tuple[str, list[Finding]]]]
) -> None:
    await append_events(node, EVENTS)
    await seal_everything(node.sealer)
    assert (await cli("audit", "verify"))[0] == 0

    named, expected = await tamper(node)

    code, result, err = await cli("audit", "verify")
    assert code == 1, err
    assert result is not None
    assert result["ok"] is False
    assert [(p["kind"], p["seq"]) for p in result["problems"]] == expected
    assert named in result["problems"][0]["detail"]


async def test_a_shorter_log_than_its_checkpoint_is_truncated(node: Node, cli: Cli) -> None:
    await append_events(node, EVENTS)
    await seal_everything(node.sealer)
    await execute(node, "DELETE FROM audit_seal WHERE seq > 25")
    code, result, _ = await cli("audit", "verify")
    assert code == 1
    assert result is not None
    assert [(p["kind"], p["seq"]) for p in result["problems"]] == [("truncated", 26)]


async def test_the_sealer_refuses_to_sign_over_a_rewritten_history(node: Node) -> None:
    await append_events(node, 10)
    await seal_everything(node.sealer)
    await execute(node, "UPDATE audit_seal SET leaf_hash = chain_hash WHERE seq = 4")
    await append_events(node, 3)
    fresh = Sealer(node.sessions, node.runtime.keyring, node.runtime.clock, origin=node.sealer.origin)
    await node.sealer.release()
    assert await fresh.seal_once() == 3
    with pytest.raises(SealIntegrityError, match="checkpoint of size 10"):
        await fresh.checkpoint_once()


# -- export ----------------------------------------------------------------------------------------------------------


async def test_an_export_verifies_offline_and_damage_is_named(node: Node, cli: Cli, tmp_path: Path) -> None:
    await append_events(node, EVENTS)
    note = await seal_everything(node.sealer)
    assert note is not None
    export = tmp_path / "evidence" / "audit.jsonl"
    export.parent.mkdir()

    code, summary, _ = await cli("audit", "export", "--out", str(export))
    assert code == 0
    assert summary == {"size": EVENTS, "root": parse_note(note).checkpoint.root.hex(), "file": str(export)}
    code, result, _ = await cli("audit", "verify", "--from-export", str(export))
    assert code == 0
    assert result is not None
    assert (result["ok"], result["size"], result["root"]) == (True, EVENTS, summary["root"])

    # The file on its own, with the database gone, is still verifiable.
    await node.runtime.engine.dispose()
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    header = json.loads(lines[0])
    pinned = header["public_keys"][0]
    assert (await cli("audit", "verify", "--from-export", str(export), "--key", pinned))[0] == 0

    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:20]) + lines[20][:50], encoding="utf-8")
    code, result, err = await cli("audit", "verify", "--from-export", str(cut))
    assert (code, result) == (1, None)
    assert "line 21: the line is incomplete" in err

    edited = tmp_path / "edited.jsonl"
    lines_edited = list(lines)
    lines_edited[5] = lines_edited[5].replace("social_support", "social_suppqrt")
    edited.write_text("".join(lines_edited), encoding="utf-8")
    code, result, _ = await cli("audit", "verify", "--from-export", str(edited))
    assert code == 1
    assert result is not None
    assert [(p["kind"], p["seq"]) for p in result["problems"]] == [("changed", 5)]

    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines[:9]) + "{not json\n" + "".join(lines[10:]), encoding="utf-8")
    code, _, err = await cli("audit", "verify", "--from-export", str(broken))
    assert code == 1
    assert "line 10: not a valid JSON line" in err

    stranger = "elsewhere/audit+00000000+AWk8D3N0rHlm0E/2mVVWe5VgqYVtIJZm2JL3I5O9P1Ts"
    code, _, err = await cli("audit", "verify", "--from-export", str(export), "--key", stranger)
    assert code == 1
    assert "--key" in err


async def test_verify_refuses_an_unmigrated_database_and_a_missing_file(cli: Cli, tmp_path: Path) -> None:
    code, _, err = await cli("audit", "verify")
    assert code == 1
    assert "db upgrade" in err
    code, _, err = await cli("audit", "verify", "--from-export", str(tmp_path / "nowhere.jsonl"))
    assert code == 1
    assert "cannot read the export file" in err
    assert (await cli("audit", "export"))[0] == 2  # --out is required: a usage error


# -- leadership ------------------------------------------------------------------------------------------------------


async def test_only_the_lease_holder_seals_until_it_lets_go(node: Node) -> None:
    other = Sealer(node.sessions, node.runtime.keyring, node.runtime.clock, origin=node.sealer.origin)
    await append_events(node, 4)
    assert await node.sealer.seal_once() == 4
    await append_events(node, 2)
    assert await other.seal_once() == 0
    assert await other.checkpoint_once() is None
    assert not other.is_leader
    await node.sealer.release()
    assert await other.seal_once() == 2
    assert other.is_leader
    assert await node.sealer.seal_once() == 0
    assert await other.checkpoint_once() is not None


async def test_a_missing_lease_row_is_put_back(node: Node) -> None:
    await execute(node, "DELETE FROM audit_sealer_lease")
    await append_events(node, 2)
    assert await node.sealer.seal_once() == 0  # restores the row, seals next time
    assert await node.sealer.seal_once() == 2


def _own_engine(database_url: str) -> AsyncEngine:
    return create_engine(DatabaseSettings(url=database_url, pool_size=2))


async def test_two_sealers_racing_never_duplicate_or_skip_a_seq(node: Node, database_url: str, backend: str) -> None:
    """Two 'processes' (own engines, own sealers) with a lease so short that leadership changes all the time."""
    engines = [_own_engine(database_url), _own_engine(database_url)]
    sealers = [
        Sealer(
            make_sessionmaker(engine),
            node.runtime.keyring,
            node.runtime.clock,
            origin=node.sealer.origin,
            lease_seconds=0.0,
            batch_size=7,
        )
        for engine in engines
    ]
    writing = asyncio.Event()
    writing.set()
    appended: list[uuid.UUID] = []
    shares = [0, 0]

    async def write() -> None:
        # At least ten batches, and on until both sealers have had a turn (a busy machine may favour one for long).
        for batch in range(100):
            appended.extend(await append_events(node, 10))
            await asyncio.sleep(0.01)
            if batch >= 9 and all(shares):
                break
        writing.clear()

    async def seal(index: int) -> None:
        idle = 0
        while writing.is_set() or idle < 3:
            sealed = await sealers[index].seal_once()
            await sealers[index].checkpoint_once()
            shares[index] += sealed
            idle = 0 if sealed or writing.is_set() else idle + 1
            await asyncio.sleep(random.uniform(0, 0.005))  # noqa: S311 - jitter, so neither sealer always wins

    try:
        await asyncio.gather(write(), seal(0), seal(1))
        if backend == "postgresql":
            # Both really sealed: leadership changed hands mid-run. (On SQLite the database's busy handler may let
            # one connection win every time; the invariants below are what must hold either way.)
            assert all(shares), shares
        while await sealers[0].seal_once() or await sealers[1].seal_once():
            pass
        await sealers[0].checkpoint_once()
        await sealers[1].checkpoint_once()
    finally:
        for engine in engines:
            await engine.dispose()

    async with platform_session(node.sessions) as session:
        seals = (await session.execute(select(AuditSeal.seq, AuditSeal.event_id).order_by(AuditSeal.seq))).all()
        checkpoints = list(await session.scalars(select(AuditCheckpoint.size)))
    assert [s.seq for s in seals] == list(range(1, len(appended) + 1))
    assert sorted(s.event_id for s in seals) == sorted(appended)
    assert len(checkpoints) >= 2
    result = await verify_database(node.sessions, origin=node.sealer.origin, now=dt.datetime.now(dt.UTC))
    assert result.ok, result.problems
    assert (result.size, result.checkpoints) == (len(appended), len(checkpoints))


async def test_the_run_loop_seals_checkpoints_publishes_and_finishes_on_stop(node: Node) -> None:
    published: list[tuple[str, bytes]] = []
    failures = [RuntimeError("bus down")]

    async def publish(subject: str, payload: bytes) -> None:
        if failures:
            raise failures.pop()
        published.append((subject, payload))

    sealer = Sealer(
        node.sessions,
        node.runtime.keyring,
        node.runtime.clock,
        origin=node.sealer.origin,
        every_events=10,
        every_seconds=0.2,
        poll_seconds=0.05,
        publish=publish,
    )
    worker = Worker(WorkerName.SEALER, sealer, grace_s=10.0)
    worker.start()
    try:
        await append_events(node, 12)
        await eventually(
            lambda: published and parse_note(published[-1][1].decode()).checkpoint.size == 12,
            within=10.0,
            what="the run loop to publish the checkpoint of the first 12 events",
        )
        assert sealer.status().healthy
        assert sealer.status().leader
        await append_events(node, 3)  # sealed and checkpointed by stop(), at the latest
    finally:
        await worker.stop()
    assert not sealer.status().running
    assert {subject for subject, _ in published} == {"cb.audit.checkpoint"}
    final = parse_note(published[-1][1].decode()).checkpoint
    assert final.size == 15
    result = await verify_database(node.sessions, origin=sealer.origin, now=dt.datetime.now(dt.UTC))
    assert result.ok
    assert result.root == final.root


# -- proofs ----------------------------------------------------------------------------------------------------------


async def test_inclusion_and_consistency_proofs_check_out(node: Node) -> None:
    assert await node.sealer.latest_checkpoint() is None
    ids = await append_events(node, 13)
    first = parse_note(await seal_everything(node.sealer) or "").checkpoint
    more = await append_events(node, 8)
    second = parse_note(await seal_everything(node.sealer) or "").checkpoint
    latest = await node.sealer.latest_checkpoint()
    assert latest is not None
    assert (latest.origin, latest.size, latest.root) == ("localhost/audit", 21, second.root)

    for event_id in (ids[0], ids[6], more[-1]):
        proof = await node.sealer.inclusion(event_id)
        assert proof.size == second.size
        assert proof.root == second.root
        assert proof.note.startswith("localhost/audit\n21\n")
        assert verify_inclusion(proof.leaf_hash, proof.leaf_index, proof.size, proof.proof, second.root)
    old = await node.sealer.inclusion(ids[6], size=13)
    assert verify_inclusion(old.leaf_hash, old.leaf_index, 13, old.proof, first.root)

    consistency = await node.sealer.consistency(13, 21)
    assert verify_consistency(13, 21, first.root, second.root, consistency.proof)

    with pytest.raises(ProofUnavailable, match="no checkpoint of size 14"):
        await node.sealer.inclusion(ids[0], size=14)
    with pytest.raises(ProofUnavailable, match="covers this event"):
        await node.sealer.inclusion(more[0], size=13)
    (pending,) = await append_events(node, 1)
    with pytest.raises(ProofUnavailable, match="not sealed yet"):
        await node.sealer.inclusion(pending)


# -- events from real requests ---------------------------------------------------------------------------------------


async def test_events_of_real_requests_seal_and_verify(
    agencies: tuple[Agency, Agency, Agency], runtime: Runtime, cli: Cli
) -> None:
    centre, opeka, _ = agencies
    case, _ = await open_case(centre, opeka)
    await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity", "family"]))
    await centre.get(f"/api/v1/cases/{case['id']}")
    # The gateway's own sealer when it runs one; otherwise this test seals, as a gateway would.
    running: Sealer | None = getattr(runtime, "sealer", None)
    sealer = running or Sealer(runtime.sessions, runtime.keyring, runtime.clock, origin=log_origin(BASE_URL))

    async def everything_checkpointed() -> bool:
        if running is None:
            await seal_everything(sealer)
        latest = await sealer.latest_checkpoint()
        async with platform_session(runtime.sessions) as session:
            events = await session.scalar(select(func.count()).select_from(AuditEvent))
        return latest is not None and latest.size == events

    await eventually(everything_checkpointed)  # the recipient's events arrive over the bus meanwhile
    code, result, _ = await cli("audit", "verify")
    assert code == 0, result
    assert result is not None
    assert result["ok"]


# -- PostgreSQL grants -----------------------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_the_app_role_may_only_add_and_read_audit_rows(postgres: ThrowawayPostgres) -> None:
    admin = await asyncpg.connect(host=HOST, port=postgres.port, user=SUPERUSER, database="postgres", ssl=False)
    try:
        await admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'casebridge_app') THEN "
            "CREATE ROLE casebridge_app LOGIN; END IF; END $$"
        )
    finally:
        await admin.close()
    owner_url = postgres.create_database(f"grants_{uuid.uuid4().hex[:12]}")
    owner = create_engine(DatabaseSettings(url=owner_url, pool_size=1))
    app_url = make_url(owner_url).set(username="casebridge_app").render_as_string(hide_password=False)
    app = create_engine(DatabaseSettings(url=app_url, pool_size=1))
    try:
        await upgrade_schema(owner)  # the migration finds the role and grants it INSERT and SELECT only
        sessions = make_sessionmaker(app)
        event_id = uuid.uuid4()
        async with platform_session(sessions) as session, session.begin():
            session.add(
                AuditEvent(
                    id=event_id, recorded_at=dt.datetime.now(dt.UTC), action="x", outcome="success", canonical="{}"
                )
            )
        async with platform_session(sessions) as session, session.begin():
            assert await session.scalar(select(func.count()).select_from(AuditEvent)) == 1
            await session.execute(text("UPDATE audit_sealer_lease SET holder = 'app' WHERE id = 1"))
        for statement in (
            "UPDATE audit_event SET canonical = '{}'",
            "DELETE FROM audit_event",
            "TRUNCATE audit_event",
            "UPDATE audit_seal SET seq = seq",
            "DELETE FROM audit_checkpoint",
            "DELETE FROM audit_event_subject",
            "DELETE FROM audit_sealer_lease",
            "UPDATE audit_cosignature SET size = size",
            "DELETE FROM audit_cosignature",
            "UPDATE audit_log_name SET origin = 'elsewhere/audit'",
            "DELETE FROM audit_log_name",
        ):
            with pytest.raises(DBAPIError, match="permission denied"):
                async with platform_session(sessions) as session, session.begin():
                    await session.execute(text(statement))
    finally:
        await app.dispose()
        await owner.dispose()
