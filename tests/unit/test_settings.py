"""Settings come from CASEBRIDGE_* variables, with embedded defaults and clear errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError


def test_embedded_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"CASEBRIDGE_DATA_DIR": str(tmp_path)})
    assert settings.database.url == f"sqlite+aiosqlite:///{tmp_path / 'casebridge.db'}"
    assert settings.bus.nats_url is None
    assert settings.bus.store_dir == tmp_path / "nats"
    assert settings.paths.master_key_file == tmp_path / "master.key"
    assert settings.paths.master_key_generated
    assert settings.server.issuer == "http://127.0.0.1:8000"
    assert not settings.server.secure_cookies
    assert settings.tokens.access_token_ttl == dt.timedelta(minutes=5)
    assert settings.operations.log_format == "json"
    assert settings.operations.metrics_token is None


def test_overrides() -> None:
    settings = Settings.from_env(
        {
            "CASEBRIDGE_DATABASE_URL": "postgresql+asyncpg://cb@db/cb",
            "CASEBRIDGE_NATS_URL": "nats://n1:4222,nats://n2:4222",
            "CASEBRIDGE_MASTER_KEY_FILE": "/run/secrets/master.key",
            "CASEBRIDGE_BASE_URL": "https://cb.example.org/",
            "CASEBRIDGE_ACCESS_TOKEN_TTL": "120",
            "CASEBRIDGE_RATE_LIMIT_PER_MINUTE": "60",
        }
    )
    assert not settings.database.is_sqlite
    assert settings.bus.nats_url == "nats://n1:4222,nats://n2:4222"
    assert not settings.paths.master_key_generated
    assert settings.server.token_endpoint == "https://cb.example.org/oauth/token"
    assert settings.server.secure_cookies
    assert settings.tokens.access_token_ttl == dt.timedelta(seconds=120)
    assert settings.rate_limits.requests_per_minute == 60


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CASEBRIDGE_PORT": "eighty"}, "CASEBRIDGE_PORT must be a whole number"),
        ({"CASEBRIDGE_PORT": "70000"}, "between 1 and 65535"),
        ({"CASEBRIDGE_BASE_URL": "ftp://x"}, "http:// or https://"),
        ({"CASEBRIDGE_BASE_URL": "http://cb.example.org"}, "must use https://"),
        ({"CASEBRIDGE_ACCESS_TOKEN_TTL": "5"}, "between 30"),
        ({"CASEBRIDGE_LOG_FORMAT": "xml"}, 'CASEBRIDGE_LOG_FORMAT must be "json" or "text"'),
        ({"CASEBRIDGE_METRICS_TOKEN": "short"}, "CASEBRIDGE_METRICS_TOKEN must be at least 16 characters"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
