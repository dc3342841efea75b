"""The operator's commands for staff and clients (deactivate, reset a second factor, revoke) and verification runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select

from audit.models import AuditEvent, AuditVerification
from gateway.db import create_engine
from gateway.settings import DatabaseSettings
from tenants.models import ApiClient, User
from tenants.persistence import make_sessionmaker, platform_session
from tests.integration.helpers.cli import create_client, public_jwk_file


def _rows(database_url: str, query: Any) -> list[Any]:
    """Rows read after the command finished (the commands run their own event loop, so the test has none)."""
    return asyncio.run(_read(database_url, query))


async def _read(database_url: str, query: Any) -> list[Any]:
    engine = create_engine(DatabaseSettings(url=database_url, pool_size=1))
    try:
        async with platform_session(make_sessionmaker(engine)) as session:
            return list(await session.scalars(query))
    finally:
        await engine.dispose()


def _tenant_with_user(cli: Any) -> None:
    assert cli("tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")[0] == 0
    assert cli("user", "create", "--tenant", "semya", "--email", "intake@semya.test", "--role", "intake")[0] == 0


def test_deactivate_activate_and_reset_a_user(cli: Any, database_url: str) -> None:
    _tenant_with_user(cli)
    code, result, _ = cli("user", "deactivate", "--tenant", "semya", "--email", "Intake@Semya.test")
    assert code == 0
    assert result is not None
    assert result["active"] is False
    assert result["email"] == "intake@semya.test"
    code, _, err = cli("user", "deactivate", "--tenant", "semya", "--email", "intake@semya.test")
    assert code == 1
    assert err == "casebridge: error: The account is already deactivated.\n"
    code, result, _ = cli("user", "activate", "--tenant", "semya", "--email", "intake@semya.test")
    assert code == 0
    assert result is not None
    assert result["active"] is True
    code, result, _ = cli("user", "reset-second-factor", "--tenant", "semya", "--email", "intake@semya.test")
    assert code == 0
    assert result is not None
    assert result["second_factor_enrolled"] is False

    code, _, err = cli("user", "deactivate", "--tenant", "semya", "--email", "nobody@semya.test")
    assert code == 1
    assert "No user with this email address" in err
    code, _, err = cli("user", "deactivate", "--tenant", "nowhere", "--email", "intake@semya.test")
    assert code == 1
    assert "No tenant with the slug" in err

    users = _rows(database_url, select(User))
    assert [u.active for u in users] == [True]
    actions = [e.action for e in _rows(database_url, select(AuditEvent).order_by(AuditEvent.recorded_at))]
    assert actions == ["tenants:user:deactivate", "tenants:user:reactivate", "tenants:user:second-factor-reset"]


def test_revoke_a_client(cli: Any, tmp_path: Path, database_url: str) -> None:
    _tenant_with_user(cli)
    jwk_file = public_jwk_file(tmp_path / "client-public.jwk")
    code, client, _ = create_client(cli, jwk_file, name="desk", scopes="referrals:read")
    assert code == 0
    assert client is not None
    code, result, _ = cli("client", "revoke", "--tenant", "semya", "--client-id", client["client_id"])
    assert code == 0
    assert result is not None
    assert result["client_id"] == client["client_id"]
    assert result["revoked_at"].startswith("20")
    code, _, err = cli("client", "revoke", "--tenant", "semya", "--client-id", client["client_id"])
    assert code == 1
    assert err == "casebridge: error: This client has already been revoked.\n"
    code, _, err = cli("client", "revoke", "--tenant", "semya", "--client-id", "not-a-uuid")
    assert code == 1
    assert "is a UUID" in err
    assert cli("tenant", "create", "--slug", "opeka", "--name", "Опека", "--kind", "guardianship_body")[0] == 0
    code, _, err = cli("client", "revoke", "--tenant", "opeka", "--client-id", client["client_id"])
    assert code == 1
    assert "No API client" in err
    (stored,) = _rows(database_url, select(ApiClient))
    assert stored.revoked_at is not None


def test_each_verification_of_the_live_log_is_recorded(cli: Any, database_url: str) -> None:
    _tenant_with_user(cli)
    assert cli("user", "deactivate", "--tenant", "semya", "--email", "intake@semya.test")[0] == 0  # one event
    code, result, _ = cli("audit", "verify")
    assert result is not None
    (run,) = _rows(database_url, select(AuditVerification))
    assert run.trigger == "cli"
    assert run.ok is result["ok"]
    assert code == (0 if result["ok"] else 1)
    assert run.size == result["size"]
    assert run.root.hex() == result["root"]
    assert run.problems == len(result["problems"])
    assert run.pending == result["pending"]
