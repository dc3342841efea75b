"""The audit log's name is stored with the log: a command's URL or port changes nothing, a command that cannot be
right says so before checking, an upgrade adopts the names checkpoints were signed under, and a rename is audited
and keeps every older checkpoint verifiable. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import Connection

from audit.checkpoint import parse_note, verifier_key
from audit.identity import LogName, LogNames, load_names, rename
from audit.models import AuditCheckpoint, AuditEvent, AuditVerification
from audit.sealer import Sealer
from audit.verify import checkpoint_keys, verify_database
from audit.witness import Witness
from gateway.db import alembic_config, upgrade_schema
from tenants.models import TenantKind
from tenants.persistence import platform_session
from tests.factories import make_tenant
from tests.integration.audit.sealing import Cli, Node, append_events, seal_everything

SERVER_ORIGIN = "localhost/audit"  # tests.conftest.BASE_URL's host, as the node's sealer names a new log
PUBLIC_ORIGIN = "casebridge.example/audit"


async def _verifications(node: Node) -> int:
    async with platform_session(node.sessions) as session:
        return len(list(await session.scalars(select(AuditVerification))))


async def _origins(node: Node) -> list[str]:
    async with platform_session(node.sessions) as session:
        notes = await session.scalars(select(AuditCheckpoint.note).order_by(AuditCheckpoint.size))
        return [parse_note(note).checkpoint.origin for note in notes]


async def _log_key(node: Node, origin: str) -> str:
    async with platform_session(node.sessions) as session:
        (key,) = await checkpoint_keys(session)
    return verifier_key(origin, key)


async def test_a_command_with_another_port_or_url_verifies_and_exports_the_log_under_its_own_name(
    node: Node,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    await append_events(node, 12)
    assert await seal_everything(node.sealer) is not None
    for variable, value in (("CASEBRIDGE_PORT", "9999"), ("CASEBRIDGE_BASE_URL", "https://casebridge.example")):
        monkeypatch.delenv("CASEBRIDGE_BASE_URL", raising=False)
        monkeypatch.setenv(variable, value)
        code, result, err = await cli("audit", "verify")
        assert (code, err) == (0, "")
        assert result is not None
        assert (result["ok"], result["checkpoints"]) == (True, 1)
        export = tmp_path / f"{variable}.jsonl"
        assert (await cli("audit", "export", "--out", str(export)))[0] == 0
        header = json.loads(export.read_text().splitlines()[0])
        assert (header["origin"], header["origins"]) == (SERVER_ORIGIN, [{"origin": SERVER_ORIGIN, "from_size": 1}])
        assert (await cli("audit", "verify", "--from-export", str(export)))[0] == 0

    # A process configured with another URL that leads the sealing later signs under the log's name, not its own.
    await node.sealer.release()
    moved = Sealer(node.sessions, node.runtime.keyring, node.runtime.clock, origin="moved.example:8443/audit")
    await append_events(node, 3)
    assert await seal_everything(moved) is not None
    assert moved.origin == SERVER_ORIGIN
    assert await _origins(node) == [SERVER_ORIGIN, SERVER_ORIGIN]
    result = await verify_database(node.sessions, now=node.runtime.clock.now())
    assert (result.ok, result.checkpoints) == (True, 2)


async def test_a_command_that_cannot_be_right_fails_before_checking_and_records_nothing(
    node: Node,
    cli: Cli,
    tmp_path: Path,
) -> None:
    # A database with no audit trail at all (migrated, but no server ever ran on it): not the server's database.
    for argv in (("audit", "verify"), ("audit", "export", "--out", str(tmp_path / "out.jsonl"))):
        code, result, err = await cli(*argv)
        assert (code, result) == (1, None)
        assert "holds no audit trail" in err
        assert "CASEBRIDGE_DATABASE_URL" in err
    assert not (tmp_path / "out.jsonl").exists()
    assert await _verifications(node) == 0

    await append_events(node, 5)
    assert await seal_everything(node.sealer) is not None
    # A key pinned for another log: every checkpoint would be "not signed by a known key"; say why instead.
    stranger = await _log_key(node, "elsewhere.example/audit")
    code, result, err = await cli("audit", "verify", "--key", stranger)
    assert (code, result) == (1, None)
    assert err.startswith("casebridge: error: --key is for the log 'elsewhere.example/audit'")
    assert f"is named '{SERVER_ORIGIN}'" in err
    assert await _verifications(node) == 0

    code, result, _ = await cli("audit", "verify", "--key", await _log_key(node, SERVER_ORIGIN))
    assert (code, result is not None and result["ok"]) == (0, True)
    assert await _verifications(node) == 1


async def test_renaming_the_log_is_audited_and_keeps_every_checkpoint_verifiable(
    node: Node,
    cli: Cli,
    tmp_path: Path,
) -> None:
    await make_tenant(node.runtime, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
    witness = Witness(node.sessions, node.runtime.keyring, node.runtime.clock, node.runtime.exchange.audit)
    await append_events(node, 10)
    before = await seal_everything(node.sealer)
    assert before is not None
    assert [o.status for o in await witness.witness(before)] == ["cosigned"]

    code, renamed, err = await cli("audit", "rename-origin", "--to", PUBLIC_ORIGIN)
    assert (code, err) == (0, "")
    assert renamed == {"origin": PUBLIC_ORIGIN, "previous": SERVER_ORIGIN, "from_size": 11}
    async with platform_session(node.sessions) as session:
        (event,) = await session.scalars(select(AuditEvent).where(AuditEvent.action == "audit:log:rename"))
    recorded = json.loads(event.canonical)
    assert (recorded["actor"]["kind"], recorded["log_tenant"], recorded["outcome"]) == ("operator", None, "success")
    assert recorded["extra"] == {"from": SERVER_ORIGIN, "to": PUBLIC_ORIGIN, "from_size": 11}

    for wrong, message in ((PUBLIC_ORIGIN, "already named"), ("public host/audit", "cannot name the audit log")):
        code, _, err = await cli("audit", "rename-origin", "--to", wrong)
        assert code == 1
        assert message in err

    await append_events(node, 4)
    after = await seal_everything(node.sealer)  # seals the rename's own event too
    assert after is not None
    assert await _origins(node) == [SERVER_ORIGIN, PUBLIC_ORIGIN]
    assert node.sealer.origin == PUBLIC_ORIGIN
    # The witness takes the new name from the log, and the tree still extends the one it co-signed before.
    assert [o.status for o in await witness.witness(after)] == ["cosigned"]

    code, result, _ = await cli("audit", "verify")
    assert code == 0
    assert result is not None
    assert (result["ok"], result["checkpoints"]) == (True, 2)
    export = tmp_path / "audit.jsonl"
    assert (await cli("audit", "export", "--out", str(export)))[0] == 0
    header = json.loads(export.read_text().splitlines()[0])
    assert header["origins"] == [{"origin": SERVER_ORIGIN, "from_size": 1}, {"origin": PUBLIC_ORIGIN, "from_size": 11}]
    # The same key may be pinned under either name; the log's checkpoints are checked under the name of their time.
    for origin in (SERVER_ORIGIN, PUBLIC_ORIGIN):
        pinned = await _log_key(node, origin)
        for source in ((), ("--from-export", str(export))):
            code, result, _ = await cli("audit", "verify", *source, "--key", pinned)
            assert code == 0, result


async def test_an_upgrade_adopts_the_names_existing_checkpoints_were_signed_under(node: Node) -> None:
    await append_events(node, 6)
    assert await seal_everything(node.sealer) is not None
    async with platform_session(node.sessions) as session, session.begin():
        await rename(session, PUBLIC_ORIGIN, at=node.runtime.clock.now())
    await append_events(node, 6)
    assert await seal_everything(node.sealer) is not None
    await append_events(node, 2)
    assert await seal_everything(node.sealer) is not None
    assert await _origins(node) == [SERVER_ORIGIN, PUBLIC_ORIGIN, PUBLIC_ORIGIN]

    # Back to the schema before names were stored (the checkpoints stay), then upgraded as a deployment would be.
    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0013")

    async with node.runtime.engine.begin() as connection:
        await connection.run_sync(downgrade)
    await upgrade_schema(node.runtime.engine)

    async with platform_session(node.sessions) as session:
        names = await load_names(session)
    assert names == LogNames((LogName(SERVER_ORIGIN, 1), LogName(PUBLIC_ORIGIN, 7)))
    result = await verify_database(node.sessions, now=node.runtime.clock.now())
    assert (result.ok, result.checkpoints) == (True, 3), result.problems
