"""Encryption at rest: per-record data keys (AES-256-GCM) wrapped by the owning tenant's KEK.

Each subject, case, document and received referral has its own data key, so erasing one record's wrapped key
makes its fields unreadable (crypto-shredding) without touching anything else.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.errors import KeyUnavailable
from tenants.keys import KeyRing

_VERSION = b"\x01"
_NONCE = 12


@dataclass(frozen=True, slots=True)
class WrappedKey:
    kek_kid: str
    wrapped: bytes


class DataKey:
    """An unwrapped data key; seals and opens JSON values bound to a context string (record kind and id)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, value: Any, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        plaintext = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, *, context: str) -> Any:
        return json.loads(self.open_bytes(sealed, context=context))

    def seal_bytes(self, data: bytes, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, data, context.encode())

    def open_bytes(self, sealed: bytes, *, context: str) -> bytes:
        if sealed[:1] != _VERSION:
            raise KeyUnavailable("unknown sealing version")
        try:
            return self._aead.decrypt(sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], context.encode())
        except InvalidTag as exc:
            raise KeyUnavailable("sealed data does not open with its data key") from exc


def _wrap_context(tenant_id: uuid.UUID, record: str) -> bytes:
    return f"casebridge/data-key/v1/{tenant_id}/{record}".encode()


class DataKeys:
    """Creates and opens data keys for one tenant's records through its key ring."""

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    async def create(self, session: AsyncSession, tenant_id: uuid.UUID, record: str) -> tuple[DataKey, WrappedKey]:
        kid, kek = await self._keyring.active_kek(session, tenant_id)
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        wrapped = _VERSION + nonce + AESGCM(kek).encrypt(nonce, key, _wrap_context(tenant_id, record))
        return DataKey(key), WrappedKey(kid, wrapped)

    async def open(self, session: AsyncSession, tenant_id: uuid.UUID, record: str, wrapped: WrappedKey) -> DataKey:
        kek = await self._keyring.kek(session, tenant_id, wrapped.kek_kid)
        blob = wrapped.wrapped
        if blob[:1] != _VERSION:
            raise KeyUnavailable("unknown data key wrapping version")
        try:
            key = AESGCM(kek).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], _wrap_context(tenant_id, record))
        except InvalidTag as exc:
            raise KeyUnavailable("the data key does not unwrap with its KEK") from exc
        return DataKey(key)


def sealed_context(kind: str, record_id: uuid.UUID) -> str:
    """What a record's sealed fields are bound to (its kind and id): sealed data opens only as the record it was."""
    return f"casebridge/{kind}/v1/{record_id}"
