"""Key rings: each tenant's encryption, signing and data-at-rest keys, wrapped by the master key."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import OKPKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.algorithms import SIGNATURE_ALG, current_name, published_jwk
from tenants.clock import Clock
from tenants.errors import KeyUnavailable
from tenants.models import KeyUse, PeerKey, PlatformKey, PlatformKeyUse, PublishedKey, TenantKey

MASTER_KEY_BYTES = 32
_WRAP_VERSION = b"\x01"
_NONCE_BYTES = 12

# JOSE algorithm each new key is used with (RFC 8037 and RFC 9864 for OKP keys, RFC 7518 for AES-GCM). Signing keys
# made before RFC 9864 are recorded as "EdDSA" and sign as "Ed25519" now (tenants.algorithms).
_ALG = {
    KeyUse.ENCRYPTION: "ECDH-ES+A256KW",
    KeyUse.SIGNING: SIGNATURE_ALG,
    KeyUse.KEY_ENCRYPTION: "A256GCM",
}


class MasterKey:
    """The deployment's key-wrapping key. Lives outside the database; never logged or printed."""

    def __init__(self, key: bytes) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise KeyUnavailable("the master key must be exactly 32 bytes")
        self._key = key
        self._aead = AESGCM(key)

    def wrap(self, secret: bytes, *, context: str) -> bytes:
        """Encrypt `secret` bound to `context`, so a wrapped value cannot be moved to another record."""
        nonce = os.urandom(_NONCE_BYTES)
        return _WRAP_VERSION + nonce + self._aead.encrypt(nonce, secret, context.encode())

    def unwrap(self, wrapped: bytes, *, context: str) -> bytes:
        if wrapped[:1] != _WRAP_VERSION:
            raise KeyUnavailable("unknown key wrapping version")
        nonce, ciphertext = wrapped[1 : 1 + _NONCE_BYTES], wrapped[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, context.encode())
        except InvalidTag as exc:
            raise KeyUnavailable("key material cannot be unwrapped with this master key") from exc

    def derive(self, purpose: str) -> bytes:
        """An independent 32-byte secret for `purpose` (HKDF-SHA256, RFC 5869)."""
        return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose.encode()).derive(self._key)

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"


def tenant_key_context(tenant_id: uuid.UUID, kid: str, use: str) -> str:
    return f"casebridge/tenant-key/v1/{tenant_id}/{kid}/{use}"


def platform_key_context(kid: str, use: str) -> str:
    return f"casebridge/platform-key/v1/{kid}/{use}"


def _new_kid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def _okp_private_bytes(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_jwk_of(key: Ed25519PrivateKey | X25519PrivateKey, *, kid: str, alg: str, use: str) -> dict[str, Any]:
    """The public half of `key` as a JWK naming its key id, algorithm and use."""
    jwk = OKPKey.import_key(key.public_key()).as_dict(private=False)
    return {**jwk, "kid": kid, "alg": alg, "use": use}


def _generate(use: KeyUse) -> tuple[bytes, dict[str, Any] | None, str]:
    kid = _new_kid(use.value)
    alg = _ALG[use]
    if use is KeyUse.KEY_ENCRYPTION:
        return AESGCM.generate_key(bit_length=256), None, kid
    private = X25519PrivateKey.generate() if use is KeyUse.ENCRYPTION else Ed25519PrivateKey.generate()
    jose_use = "enc" if use is KeyUse.ENCRYPTION else "sig"
    return _okp_private_bytes(private), public_jwk_of(private, kid=kid, alg=alg, use=jose_use), kid


@dataclass(frozen=True, slots=True)
class UsableKey:
    """One tenant key as the key ring serves it: an immutable copy of its row, safe to share between sessions."""

    tenant_id: uuid.UUID
    kid: str
    use: str
    alg: str
    public_jwk: dict[str, Any] | None
    wrapped_private: bytes
    retired_at: dt.datetime | None
    usable_until: dt.datetime | None

    @classmethod
    def of(cls, row: TenantKey) -> UsableKey:
        return cls(
            row.tenant_id,
            row.kid,
            row.use,
            row.alg,
            row.public_jwk,
            row.wrapped_private,
            row.retired_at,
            row.usable_until,
        )

    def usable_at(self, now: dt.datetime) -> bool:
        return self.retired_at is None or self.usable_until is None or self.usable_until > now


# A process trusts its cached key rings this long before it asks the database whether any ring changed (a rotation
# in another process or by the command line); a rotation in this process is seen at once. Rotation keeps the old
# keys usable for decryption and verification through a grace period, so a stale second is harmless; and an
# envelope under a key not cached yet makes the inbox look again before it refuses it.
KEY_CACHE_CHECK_S = 1.0


class KeyCache:
    """Rows of the key tables, cached per process and dropped whenever the published keys change.

    Every rotation and every new tenant adds published keys, so the number of published keys and the newest one's
    creation time change with any change to a key ring: one small query at most once a second tells every process.
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[Any, ...], Any] = {}
        self._epoch: tuple[Any, ...] | None = None
        self._checked_at = -KEY_CACHE_CHECK_S

    async def get(self, session: AsyncSession, key: tuple[Any, ...], load: Any) -> Any:
        """The cached value for `key`, or what `await load()` returns (then cached)."""
        if time.monotonic() - self._checked_at >= KEY_CACHE_CHECK_S:
            await self._check(session)
        try:
            return self._rows[key]
        except KeyError:
            value = self._rows[key] = await load()
            return value

    def forget(self) -> None:
        """Drop everything (after a change to a key ring in this process)."""
        self._rows.clear()
        self._checked_at = -KEY_CACHE_CHECK_S

    async def _check(self, session: AsyncSession) -> None:
        # A refresh of a peer's keys adds or updates peer_key rows (tenants.peer_keys): their count and newest change.
        epoch = tuple(
            (
                await session.execute(
                    select(
                        select(func.count()).select_from(PublishedKey).scalar_subquery(),
                        select(func.max(PublishedKey.created_at)).scalar_subquery(),
                        select(func.count()).select_from(PeerKey).scalar_subquery(),
                        select(func.max(PeerKey.updated_at)).scalar_subquery(),
                    )
                )
            ).one()
        )
        if epoch != self._epoch:
            self._rows.clear()
            self._epoch = epoch
        self._checked_at = time.monotonic()


@dataclass(frozen=True, slots=True)
class RotatedKeys:
    tenant_id: uuid.UUID
    enc_kid: str
    sig_kid: str
    kek_kid: str


class KeyRing:
    """Creates, rotates and opens tenant and platform keys inside the caller's transaction."""

    def __init__(
        self, master_key: MasterKey, clock: Clock, *, grace: dt.timedelta, cache: KeyCache | None = None
    ) -> None:
        self._master = master_key
        self._clock = clock
        self._grace = grace
        self.cache = cache or KeyCache()
        # Unwrapped private keys by (tenant, kid, use): a kid names the same key material for ever.
        self._opened: dict[tuple[uuid.UUID, str, str], Any] = {}

    async def create_tenant_keys(self, session: AsyncSession, tenant_id: uuid.UUID) -> RotatedKeys:
        kids = {use: self._add_tenant_key(session, tenant_id, use) for use in KeyUse}
        await session.flush()
        self.cache.forget()
        return RotatedKeys(tenant_id, kids[KeyUse.ENCRYPTION], kids[KeyUse.SIGNING], kids[KeyUse.KEY_ENCRYPTION])

    async def rotate_tenant_keys(self, session: AsyncSession, tenant_id: uuid.UUID) -> RotatedKeys:
        """Retire the active keys and add new ones.

        Retired encryption and signing keys stay usable for decryption and verification until the
        grace period ends. A retired KEK never stops being usable for unwrapping: data keys wrapped
        by it must stay readable until they are re-wrapped, or data would be lost.
        """
        now = self._clock.now()
        active = await session.scalars(
            select(TenantKey).where(TenantKey.tenant_id == tenant_id, TenantKey.retired_at.is_(None))
        )
        for key in active:
            key.retired_at = now
            key.usable_until = None if key.use == KeyUse.KEY_ENCRYPTION else now + self._grace
        for published in await session.scalars(
            select(PublishedKey).where(PublishedKey.owner_tenant_id == tenant_id, PublishedKey.retired_at.is_(None))
        ):
            published.retired_at = now
            published.usable_until = now + self._grace
        return await self.create_tenant_keys(session, tenant_id)

    def _add_tenant_key(self, session: AsyncSession, tenant_id: uuid.UUID, use: KeyUse) -> str:
        secret, public_jwk, kid = _generate(use)
        session.add(
            TenantKey(
                tenant_id=tenant_id,
                kid=kid,
                use=use.value,
                alg=_ALG[use],
                public_jwk=public_jwk,
                wrapped_private=self._master.wrap(secret, context=tenant_key_context(tenant_id, kid, use.value)),
            )
        )
        if public_jwk is not None:
            session.add(PublishedKey(owner_tenant_id=tenant_id, kid=kid, use=use.value, public_jwk=public_jwk))
        return kid

    async def usable_tenant_keys(self, session: AsyncSession, tenant_id: uuid.UUID, use: KeyUse) -> list[UsableKey]:
        """The active key first, then retired keys still inside their grace period.

        Served from the process's cache, so callers must ask only for keys their session may see (their own
        tenant's, or any tenant's in platform work); the cache does not repeat row-level security.
        """

        async def load() -> tuple[UsableKey, ...]:
            rows = await session.scalars(
                select(TenantKey)
                .where(TenantKey.tenant_id == tenant_id, TenantKey.use == use.value)
                .order_by(TenantKey.retired_at.is_not(None), TenantKey.created_at.desc())
            )
            return tuple(UsableKey.of(row) for row in rows)

        ring: tuple[UsableKey, ...] = await self.cache.get(session, ("tenant", tenant_id, use), load)
        now = self._clock.now()
        return [key for key in ring if key.usable_at(now)]

    async def public_jwks(self, session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, Any]:
        keys: list[dict[str, Any]] = []
        for use in (KeyUse.ENCRYPTION, KeyUse.SIGNING):
            keys.extend(
                published_jwk(k.public_jwk)
                for k in await self.usable_tenant_keys(session, tenant_id, use)
                if k.public_jwk
            )
        return {"keys": keys}

    def private_key_bytes(self, key: TenantKey | UsableKey) -> bytes:
        """PKCS#8 DER of an OKP private key, or the raw 32 bytes of a KEK."""
        return self._master.unwrap(key.wrapped_private, context=tenant_key_context(key.tenant_id, key.kid, key.use))

    def private_jwk(self, key: TenantKey | UsableKey) -> OKPKey:
        if key.use == KeyUse.KEY_ENCRYPTION:
            raise KeyUnavailable("a KEK is not an asymmetric key")
        opened = self._opened.get((key.tenant_id, key.kid, key.use))
        if opened is None:
            private = serialization.load_der_private_key(self.private_key_bytes(key), password=None)
            params = {"kid": key.kid, "alg": current_name(key.alg)}
            opened = OKPKey.import_key(private, params)  # type: ignore[arg-type] # joserfc accepts cryptography keys
            self._opened[(key.tenant_id, key.kid, key.use)] = opened
        return opened

    async def active_kek(self, session: AsyncSession, tenant_id: uuid.UUID) -> tuple[str, bytes]:
        """The tenant's current key-encryption key (kid, 32 bytes) for wrapping new data keys."""
        keys = await self.usable_tenant_keys(session, tenant_id, KeyUse.KEY_ENCRYPTION)
        if not keys or keys[0].retired_at is not None:
            raise KeyUnavailable("the tenant has no active data key-encryption key")
        return keys[0].kid, self._kek_bytes(keys[0])

    async def kek(self, session: AsyncSession, tenant_id: uuid.UUID, kid: str) -> bytes:
        """A KEK by id, retired ones included: data keys wrapped under it must stay readable."""
        opened = self._opened.get((tenant_id, kid, KeyUse.KEY_ENCRYPTION.value))
        if opened is not None:
            return opened  # type: ignore[no-any-return]
        key = await session.scalar(
            select(TenantKey).where(
                TenantKey.tenant_id == tenant_id, TenantKey.kid == kid, TenantKey.use == KeyUse.KEY_ENCRYPTION.value
            )
        )
        if key is None:
            raise KeyUnavailable("the key-encryption key for this record is missing")
        return self._kek_bytes(key)

    def _kek_bytes(self, key: TenantKey | UsableKey) -> bytes:
        opened = self._opened.get((key.tenant_id, key.kid, key.use))
        if opened is None:
            opened = self._opened[(key.tenant_id, key.kid, key.use)] = self.private_key_bytes(key)
        return opened

    async def check_master_key(self, session: AsyncSession) -> None:
        """Raise KeyUnavailable unless the master key opens the newest stored tenant and platform keys."""
        tenant_key = await session.scalar(select(TenantKey).order_by(TenantKey.created_at.desc()).limit(1))
        if tenant_key is not None:
            self.private_key_bytes(tenant_key)
        platform_key = await session.scalar(select(PlatformKey).order_by(PlatformKey.created_at.desc()).limit(1))
        if platform_key is not None:
            self._master.unwrap(
                platform_key.wrapped_private, context=platform_key_context(platform_key.kid, platform_key.use)
            )

    # -- the gateway's own keys ---------------------------------------------------------------

    async def ensure_platform_key(self, session: AsyncSession, use: PlatformKeyUse) -> PlatformKey:
        """The active platform key for `use`, created on first start."""
        active = await session.scalar(
            select(PlatformKey)
            .where(PlatformKey.use == use.value, PlatformKey.retired_at.is_(None))
            .order_by(PlatformKey.created_at.desc())
        )
        if active is not None:
            return active
        return await self._add_platform_key(session, use)

    async def rotate_platform_key(self, session: AsyncSession, use: PlatformKeyUse) -> PlatformKey:
        now = self._clock.now()
        for key in await session.scalars(
            select(PlatformKey).where(PlatformKey.use == use.value, PlatformKey.retired_at.is_(None))
        ):
            key.retired_at = now
            key.usable_until = now + self._grace
        return await self._add_platform_key(session, use)

    async def _add_platform_key(self, session: AsyncSession, use: PlatformKeyUse) -> PlatformKey:
        private = Ed25519PrivateKey.generate()
        kid = _new_kid(use.value)
        key = PlatformKey(
            kid=kid,
            use=use.value,
            alg=SIGNATURE_ALG,
            public_jwk=public_jwk_of(private, kid=kid, alg=SIGNATURE_ALG, use="sig"),
            wrapped_private=self._master.wrap(
                _okp_private_bytes(private), context=platform_key_context(kid, use.value)
            ),
        )
        session.add(key)
        await session.flush()
        return key

    async def usable_platform_keys(self, session: AsyncSession, use: PlatformKeyUse) -> list[PlatformKey]:
        rows = await session.scalars(
            select(PlatformKey)
            .where(PlatformKey.use == use.value)
            .order_by(PlatformKey.retired_at.is_not(None), PlatformKey.created_at.desc())
        )
        now = self._clock.now()
        return [key for key in rows if key.retired_at is None or (key.usable_until and key.usable_until > now)]

    def platform_private_jwk(self, key: PlatformKey) -> OKPKey:
        der = self._master.unwrap(key.wrapped_private, context=platform_key_context(key.kid, key.use))
        private = serialization.load_der_private_key(der, password=None)
        params = {"kid": key.kid, "alg": current_name(key.alg)}
        return OKPKey.import_key(private, params)  # type: ignore[arg-type] # joserfc accepts cryptography keys


@dataclass(frozen=True, slots=True)
class _Published:
    public_jwk: dict[str, Any]
    retired_at: dt.datetime | None
    usable_until: dt.datetime | None


class PublishedKeys:
    """Tenants' public envelope keys, as any partner may fetch them from the JWKS URLs (cached like the key ring)."""

    def __init__(self, clock: Clock, cache: KeyCache | None = None) -> None:
        self._clock = clock
        self._cache = cache or KeyCache()

    async def _usable(self, session: AsyncSession, tenant_id: uuid.UUID, use: KeyUse) -> list[_Published]:
        async def load() -> tuple[_Published, ...]:
            rows = await session.scalars(
                select(PublishedKey)
                .where(PublishedKey.owner_tenant_id == tenant_id, PublishedKey.use == use.value)
                .order_by(PublishedKey.retired_at.is_not(None), PublishedKey.created_at.desc())
            )
            local = tuple(_Published(row.public_jwk, row.retired_at, row.usable_until) for row in rows)
            if local:
                return local
            # A peer node's agency: only keys fetched over the pinned connection and accepted (tenants.peer_keys),
            # the newest first, as the peer lists its active key first.
            fetched = await session.scalars(
                select(PeerKey.public_jwk)
                .where(
                    PeerKey.owner_tenant_id == tenant_id,
                    PeerKey.use == use.value,
                    PeerKey.accepted_at.is_not(None),
                    PeerKey.withdrawn_at.is_(None),
                )
                .order_by(PeerKey.created_at.desc())
            )
            return tuple(_Published(jwk, None, None) for jwk in fetched)

        keys: tuple[_Published, ...] = await self._cache.get(session, ("published", tenant_id, use), load)
        now = self._clock.now()
        return [k for k in keys if k.retired_at is None or (k.usable_until is not None and k.usable_until > now)]

    def forget(self) -> None:
        """Look again at the database on the next use (an envelope signed with a key not seen yet)."""
        self._cache.forget()

    async def encryption_key(self, session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, Any] | None:
        """The tenant's active X25519 public key, to encrypt envelopes for it."""
        active = [
            k.public_jwk for k in await self._usable(session, tenant_id, KeyUse.ENCRYPTION) if k.retired_at is None
        ]
        return active[0] if active else None

    async def signing_keys(self, session: AsyncSession, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
        """The tenant's Ed25519 public keys usable for verification now (active and in grace), as published."""
        return [published_jwk(k.public_jwk) for k in await self._usable(session, tenant_id, KeyUse.SIGNING)]
