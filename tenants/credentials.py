"""Staff credentials: argon2id passwords, TOTP second factor (RFC 6238) and recovery codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

# OWASP's argon2id baseline (m=19 MiB, t=2, p=1) raised to 64 MiB / t=3, argon2-cffi's RFC 9106 low-memory profile.
STAFF_PASSWORDS = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)


@dataclass(slots=True)
class _Hashing:
    hasher: PasswordHasher


_hashing = _Hashing(STAFF_PASSWORDS)


def use_password_hasher(hasher: PasswordHasher) -> None:
    """Hash new passwords with `hasher` in this process from now on. Only the test suite calls it (tests/conftest.py),
    with a cheap argon2id profile: a hash names its own parameters, so hashes of either profile verify."""
    _hashing.hasher = hasher


MIN_PASSWORD_LENGTH = 12
TOTP_DIGITS = 6
TOTP_PERIOD = 30
RECOVERY_CODE_COUNT = 10


def hash_password(password: str) -> str:
    return _hashing.hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hashing.hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(set(password)) < 5:
        return "The password repeats too few different characters."
    return None


def one_time_password() -> str:
    """An initial password handed to a new user, who must change it at first sign-in."""
    return secrets.token_urlsafe(15)


def new_totp_secret() -> bytes:
    return secrets.token_bytes(20)  # 160 bits, the size RFC 4226 §4 recommends


def totp_secret_text(secret: bytes) -> str:
    """The base32 form authenticator apps accept."""
    return base64.b32encode(secret).decode().rstrip("=")


def totp_uri(secret: bytes, *, account: str, issuer: str) -> str:
    return _totp(secret).get_provisioning_uri(account, issuer)


def totp_code(secret: bytes, at_unix: float) -> str:
    return _totp(secret).generate(int(at_unix)).decode()


@dataclass(frozen=True, slots=True)
class TotpMatch:
    step: int


def match_totp(secret: bytes, code: str, *, at_unix: float, last_step: int | None) -> TotpMatch | None:
    """Accept a code for the current step or one step either side (clock drift), never a step used before."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = _totp(secret)
    current = int(at_unix) // TOTP_PERIOD
    for step in (current, current - 1, current + 1):
        if last_step is not None and step <= last_step:
            continue
        try:
            totp.verify(code.encode(), step * TOTP_PERIOD)
        except InvalidToken:
            continue
        return TotpMatch(step)
    return None


def _totp(secret: bytes) -> TOTP:
    # SHA-1 is what RFC 6238 authenticator apps implement; HMAC-SHA1 remains sound for this use.
    return TOTP(secret, TOTP_DIGITS, SHA1(), TOTP_PERIOD, enforce_key_length=False)  # noqa: S303


def new_recovery_codes() -> list[str]:
    # 10 groups of base32 characters = 50 bits each; shown once, stored only as hashes.
    return ["-".join(_b32(5) for _ in range(2)) for _ in range(RECOVERY_CODE_COUNT)]


def recovery_code_hash(code: str) -> str:
    normalised = code.strip().lower().replace(" ", "")
    return hashlib.sha256(normalised.encode()).hexdigest()


def consume_recovery_code(hashes: list[str], code: str) -> list[str] | None:
    """The remaining hashes when `code` is one of them, else None."""
    candidate = recovery_code_hash(code)
    for index, stored in enumerate(hashes):
        if hmac.compare_digest(stored, candidate):
            return hashes[:index] + hashes[index + 1 :]
    return None


def _b32(length: int) -> str:
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))
