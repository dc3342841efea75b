"""CSRF tokens are good only with the session cookie they were issued for."""

from __future__ import annotations

import pytest

from gateway.auth.csrf import CsrfTokens

TOKENS = CsrfTokens(secret=b"k" * 32, session_cookie="cb_session", secure_cookie=False)


@pytest.mark.parametrize("session", [None, "session-a"])
def test_a_token_is_valid_for_its_own_session_only(session: str | None) -> None:
    token = TOKENS.issue(session)
    assert TOKENS.valid(token, session)
    for other in (None, "session-a", "session-b", "session-a "):
        if other != session:
            assert not TOKENS.valid(token, other)


def test_tokens_of_another_deployment_or_mangled_ones_are_refused() -> None:
    token = TOKENS.issue("session-a")
    elsewhere = CsrfTokens(secret=b"x" * 32, session_cookie="cb_session", secure_cookie=False)
    assert not elsewhere.valid(token, "session-a")
    for mangled in ("", token[:64], token[:-1], token + "0", "0" * 128, "ж" * 128, token[:64] + token[:64]):
        assert not TOKENS.valid(mangled, "session-a")


def test_every_token_is_new() -> None:
    assert len({TOKENS.issue("session-a") for _ in range(20)}) == 20
