"""The casebridge command line: JSON on stdout for success, a message on stderr and non-zero exit for failure."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import OKPKey

from gateway.cli import main
from tests.integration.helpers.cli import create_client, public_jwk_file


def test_tenant_user_client_and_key_rotation(cli: Any, tmp_path: Path) -> None:
    code, tenant, _ = cli(
        "tenant",
        "create",
        "--slug",
        "semya",
        "--name",
        "Центр «Семья»",
        "--kind",
        "social_centre",
        "--region",
        "Центральный район",
    )
    assert code == 0
    assert tenant["slug"] == "semya"
    assert tenant["name"] == "Центр «Семья»"
    assert tenant["jwks_url"].endswith(f"/.well-known/tenants/{tenant['id']}/jwks.json")

    code, user, _ = cli(
        "user",
        "create",
        "--tenant",
        "semya",
        "--email",
        "Intake@Semya.test",
        "--role",
        "intake",
        "--role",
        "supervisor",
    )
    assert code == 0
    assert user["email"] == "intake@semya.test"
    assert user["roles"] == ["intake", "supervisor"]
    assert len(user["one_time_password"]) >= 16

    code, chosen, _ = cli(
        "user",
        "create",
        "--tenant",
        "semya",
        "--email",
        "dpo@semya.test",
        "--role",
        "dpo",
        "--password-stdin",
        stdin="a long enough passphrase\n",
    )
    assert code == 0
    assert "one_time_password" not in chosen

    jwk_file = public_jwk_file(tmp_path / "client.jwk")
    code, client, _ = create_client(cli, jwk_file, name="МИС", scopes="referrals:read referrals:write", role="intake")
    assert code == 0
    assert client["tenant_id"] == tenant["id"]
    assert client["scopes"] == ["referrals:read", "referrals:write"]

    code, first, _ = cli("keys", "rotate", "--tenant", "semya")
    code2, second, _ = cli("keys", "rotate", "--tenant", "semya")
    assert code == code2 == 0
    assert first["enc_kid"] != second["enc_kid"]
    assert first["sig_kid"] != second["sig_kid"]

    code, suspended, _ = cli("tenant", "suspend", "--slug", "semya")
    assert code == 0
    assert suspended["status"] == "suspended"


def test_master_key_file_is_created_owner_only(cli: Any, tmp_path: Path) -> None:
    cli("tenant", "create", "--slug", "kdn", "--name", "КДН", "--kind", "juvenile_commission")
    key_file = tmp_path / "var" / "master.key"
    assert key_file.stat().st_size == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("tenant", "create", "--slug", "x1", "--name", "X", "--kind", "bank"), "Unknown tenant kind 'bank'"),
        (("tenant", "create", "--slug", "Bad Slug", "--name", "X", "--kind", "ngo"), "slug must be"),
        (("user", "create", "--tenant", "nowhere", "--email", "a@b.test", "--role", "intake"), "No tenant"),
        (("user", "create", "--tenant", "semya", "--email", "not-an-email", "--role", "intake"), "valid email"),
        (("user", "create", "--tenant", "semya", "--email", "a@b.test", "--role", "admin"), "Unknown role 'admin'"),
        (("keys", "rotate", "--tenant", "nowhere"), "No tenant"),
        (
            ("tenant", "create", "--slug", "x2", "--name", "X", "--kind", "ngo", "--time-zone", "Moscow"),
            "Unknown time zone 'Moscow'",
        ),
        (("tenant", "update", "--slug", "semya", "--time-zone", "Europe/Mordor"), "Unknown time zone 'Europe/Mordor'"),
        (("tenant", "update", "--slug", "nowhere", "--time-zone", "Asia/Vladivostok"), "No tenant"),
    ],
)
def test_bad_input_fails_clearly(cli: Any, argv: tuple[str, ...], message: str) -> None:
    cli("tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")
    code, result, err = cli(*argv)
    assert code != 0
    assert result is None
    assert err.startswith("casebridge: error: ")
    assert message in err


def test_an_agency_keeps_its_days_in_the_time_zone_it_is_given(cli: Any) -> None:
    code, created, _ = cli(
        "tenant",
        "create",
        "--slug",
        "kdn",
        "--name",
        "КДН",
        "--kind",
        "juvenile_commission",
        "--time-zone",
        "Asia/Vladivostok",
    )
    assert code == 0
    assert set(created) == {"id", "slug", "name", "kind", "jwks_url"}  # docs/api.md: the time zone is not part of it
    code, moved, _ = cli("tenant", "update", "--slug", "kdn", "--time-zone", "Europe/Kaliningrad")
    assert code == 0
    assert moved == {"id": created["id"], "slug": "kdn", "time_zone": "Europe/Kaliningrad"}


def test_duplicates_are_refused_and_change_nothing(cli: Any) -> None:
    assert cli("tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")[0] == 0
    code, _, err = cli("tenant", "create", "--slug", "semya", "--name", "Другая", "--kind", "ngo")
    assert code == 1
    assert "already exists" in err
    assert cli("user", "create", "--tenant", "semya", "--email", "a@semya.test", "--role", "intake")[0] == 0
    code, _, err = cli("user", "create", "--tenant", "semya", "--email", "A@semya.test", "--role", "dpo")
    assert code == 1
    assert "already exists" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"kty": "OKP", "crv": "Ed25519"}', "malformed"),
        ('{"kty": "RSA", "n": "x", "e": "AQAB"}', "Ed25519"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_jwk_is_refused(cli: Any, tmp_path: Path, content: str, message: str) -> None:
    cli("tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")
    jwk_file = tmp_path / "bad.jwk"
    jwk_file.write_text(content)
    code, _, err = create_client(cli, jwk_file, scopes="cases:read")
    assert code == 1
    assert message in err


def test_private_jwk_and_bad_scopes_are_refused(cli: Any, tmp_path: Path) -> None:
    cli("tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")
    private = tmp_path / "private.jwk"
    private.write_text(json.dumps(OKPKey.generate_key("Ed25519").as_dict(private=True)))
    code, _, err = create_client(cli, private, scopes="cases:read")
    assert code == 1
    assert "private key" in err
    public = public_jwk_file(tmp_path / "public.jwk")
    code, _, err = create_client(cli, public, scopes="everything")
    assert code == 1
    assert "Unknown scope" in err
    code, _, err = create_client(cli, tmp_path / "none", scopes="cases:read")
    assert code == 1
    assert "cannot read" in err


def test_demo_seed_prints_passwords_once_and_refuses_a_second_run(cli: Any, tmp_path: Path) -> None:
    code, seeded, _ = cli("demo", "seed")
    assert code == 0
    slugs = [t["slug"] for t in seeded["tenants"]]
    assert slugs == ["semya", "opeka", "kdn"]
    kinds = [t["kind"] for t in seeded["tenants"]]
    assert kinds == ["social_centre", "guardianship_body", "juvenile_commission"]
    for tenant in seeded["tenants"]:
        assert sorted(r for u in tenant["users"] for r in u["roles"]) == ["dpo", "intake", "specialist", "tenant_admin"]
        assert all(len(u["one_time_password"]) >= 16 for u in tenant["users"])
        key_file = Path(tenant["client"]["private_jwk_file"])
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert seeded["tenants"][0]["name"].endswith("«Семья»")

    code, again, _ = cli("demo", "seed", "--if-empty")
    assert code == 0
    assert again == {"seeded": False, "reason": "tenants already exist"}
    code, _, err = cli("demo", "seed")
    assert code == 1
    assert "empty database" in err


def test_demo_seed_as_a_table_shows_every_account_with_its_password_once(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make run` prints: the sign-in address, then per agency its staff with their one-time passwords."""

    def table(*argv: str) -> str:
        out = io.StringIO()
        monkeypatch.setattr("sys.stdout", out)
        main(["demo", "seed", *argv, "--table"])
        return out.getvalue()

    shown = table()
    assert shown.startswith("casebridge demo data. Sign in at http://")
    assert "/login\n" in shown.splitlines(keepends=True)[0]
    passwords = {}
    for slug in ("semya", "opeka", "kdn"):
        for role in ("specialist", "intake", "dpo", "tenant_admin"):
            email = f"{role.replace('_', '-')}@{slug}.demo"
            (row,) = [line.split() for line in shown.splitlines() if line.split()[:1] == [email]]
            assert row[1] == role
            assert len(row[2]) >= 16
            passwords[email] = row[2]
        assert f"{slug}-client.jwk" in shown
    assert len(set(passwords.values())) == 12
    assert shown.count("API client ") == 3
    assert not shown.lstrip().startswith("{")

    again = table("--if-empty")
    assert "exist already" in again
    assert not any(password in again for password in passwords.values())


def test_usage_errors_exit_2(cli: Any) -> None:
    code, _, err = cli("tenant", "create", "--slug", "x")
    assert code == 2
    assert "required" in err


def test_bad_settings_are_reported(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBRIDGE_PORT", "not-a-port")
    code, _, err = cli("keys", "rotate", "--tenant", "semya")
    assert code == 1
    assert "CASEBRIDGE_PORT" in err


def test_missing_configured_master_key_is_an_error(cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASEBRIDGE_MASTER_KEY_FILE", str(tmp_path / "absent.key"))
    code, _, err = cli("tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")
    assert code == 1
    assert "does not exist" in err


def test_db_upgrade_creates_no_master_key(cli: Any, tmp_path: Path) -> None:
    assert not (tmp_path / "var" / "master.key").exists()


def test_commands_before_migration_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBRIDGE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CASEBRIDGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    with pytest.raises(SystemExit) as exit_info:
        main(["tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre"])
    assert exit_info.value.code == 1
    assert "casebridge db upgrade" in err.getvalue()
    serve = _serve_briefly(
        {
            "CASEBRIDGE_DATA_DIR": str(tmp_path / "var"),
            "CASEBRIDGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
        }
    )
    assert serve.returncode == 1
    assert "schema is not up to date" in serve.stderr


def test_serve_refuses_a_different_master_key(cli: Any, tmp_path: Path, database_url: str) -> None:
    code, _, _ = cli("demo", "seed")
    assert code == 0
    other = tmp_path / "other.key"
    other.write_bytes(b"\x01" * 32)
    other.chmod(0o600)
    serve = _serve_briefly(
        {
            "CASEBRIDGE_DATA_DIR": str(tmp_path / "var"),
            "CASEBRIDGE_DATABASE_URL": database_url,
            "CASEBRIDGE_MASTER_KEY_FILE": str(other),
        }
    )
    assert serve.returncode == 1
    assert "master key" in serve.stderr
    assert "Traceback" not in serve.stderr


def _serve_briefly(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `casebridge serve` expecting it to refuse to start; a server that does start is stopped by the timeout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CASEBRIDGE_")}
    command = [str(Path(sys.executable).parent / "casebridge"), "serve", "--port", "1"]
    return subprocess.run(command, env=clean | env, capture_output=True, text=True, timeout=60, check=False)


def test_a_readable_master_key_file_is_refused(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(b"\x02" * 32)
    loose.chmod(0o644)
    monkeypatch.setenv("CASEBRIDGE_MASTER_KEY_FILE", str(loose))
    code, _, err = cli("tenant", "create", "--slug", "semya", "--name", "Семья", "--kind", "social_centre")
    assert code == 1
    assert "chmod 600" in err
