"""Passwords, TOTP codes and recovery codes."""

from __future__ import annotations

import base64

from tenants import credentials


def test_password_hash_is_argon2id_and_verifies() -> None:
    hashed = credentials.hash_password("a long enough passphrase")
    assert hashed.startswith("$argon2id$")
    assert credentials.verify_password(hashed, "a long enough passphrase")
    assert not credentials.verify_password(hashed, "a long enough passphrasE")
    assert not credentials.verify_password("not a hash", "anything")


def test_staff_passwords_use_the_rfc_9106_low_memory_profile_and_either_profile_verifies() -> None:
    hashed = credentials.STAFF_PASSWORDS.hash("a long enough passphrase")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    # The suite hashes with a cheaper profile (tests/conftest.py); a hash carries its parameters, so both verify.
    assert credentials.verify_password(hashed, "a long enough passphrase")
    assert not credentials.verify_password(hashed, "a long enough passphrasE")


def test_password_rules() -> None:
    assert credentials.password_problem("short") is not None
    assert credentials.password_problem("aaaaaaaaaaaaaaaa") is not None
    assert credentials.password_problem("correct horse battery") is None


def test_totp_accepts_current_and_adjacent_steps_once() -> None:
    secret = credentials.new_totp_secret()
    now = 1_790_000_000.0
    code = credentials.totp_code(secret, now)
    match = credentials.match_totp(secret, code, at_unix=now, last_step=None)
    assert match is not None
    assert match.step == int(now) // 30
    # The same code again (replay) is refused once its step has been used.
    assert credentials.match_totp(secret, code, at_unix=now, last_step=match.step) is None
    # A code from the previous step is still accepted (clock drift), one from two steps ago is not.
    assert credentials.match_totp(secret, credentials.totp_code(secret, now - 30), at_unix=now, last_step=None)
    assert credentials.match_totp(secret, credentials.totp_code(secret, now - 60), at_unix=now, last_step=None) is None
    assert credentials.match_totp(secret, "12345", at_unix=now, last_step=None) is None
    assert credentials.match_totp(secret, "abcdef", at_unix=now, last_step=None) is None


def test_totp_matches_rfc6238_reference_vector() -> None:
    # RFC 6238 Appendix B, SHA-1, T = 59: 94287082 (8 digits); the 6-digit code is its last six digits.
    secret = b"12345678901234567890"
    assert credentials.totp_code(secret, 59) == "287082"
    text = credentials.totp_secret_text(secret)
    assert base64.b32decode(text + "=" * (-len(text) % 8)) == secret
    assert credentials.totp_uri(secret, account="a@b.org", issuer="casebridge").startswith("otpauth://totp/")


def test_recovery_codes_are_single_use() -> None:
    codes = credentials.new_recovery_codes()
    assert len(set(codes)) == credentials.RECOVERY_CODE_COUNT
    hashes = [credentials.recovery_code_hash(c) for c in codes]
    remaining = credentials.consume_recovery_code(hashes, codes[3].upper())
    assert remaining is not None
    assert len(remaining) == len(hashes) - 1
    assert credentials.consume_recovery_code(remaining, codes[3]) is None
