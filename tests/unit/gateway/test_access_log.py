"""The access log keeps method, path and status, never query strings or the secret of an invitation link."""

from __future__ import annotations

import logging
import logging.config

import pytest

from gateway.access_log import RedactedAccessLog, redact, uvicorn_log_config


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/api/v1/referrals/0193?box=incoming", "/api/v1/referrals/0193"),
        ("/dpo?actor=ivanova%40semya.example", "/dpo"),
        ("/account/invitation/Zx9-secret_token", "/account/invitation/<redacted>"),
        ("/account/invitation/Zx9-secret_token?lang=ru", "/account/invitation/<redacted>"),
        ("/health/ready", "/health/ready"),
    ],
)
def test_paths_are_logged_without_secrets(path: str, logged: str) -> None:
    assert redact(path) == logged


def test_the_uvicorn_access_record_is_rewritten(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("casebridge.test.access")
    logger.addFilter(RedactedAccessLog())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info('%s - "%s %s HTTP/%s" %d', "10.0.0.8:5000", "GET", "/dpo?actor=a%40b.example", "1.1", 200)
    assert caplog.messages == ['10.0.0.8:5000 - "GET /dpo HTTP/1.1" 200']


def test_the_log_configuration_is_accepted_by_logging() -> None:
    config = uvicorn_log_config()
    assert config["handlers"]["access"]["filters"] == ["redact"]
    logging.config.dictConfig(config)
    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, RedactedAccessLog) for h in access.handlers for f in h.filters)
