"""Key wrapping by the master key, and key ring rotation with a grace period."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import create_engine, upgrade_schema
from gateway.settings import DatabaseSettings
from tenants.clock import FixedClock
from tenants.errors import KeyUnavailable
from tenants.keys import KeyRing, MasterKey
from tenants.models import KeyUse, Tenant, TenantKey
from tenants.persistence import make_sessionmaker


def test_wrap_round_trip_and_binding_to_context() -> None:
    master = MasterKey(os.urandom(32))
    wrapped = master.wrap(b"secret key bytes", context="tenant/a/kid-1")
    assert b"secret key bytes" not in wrapped
    assert master.unwrap(wrapped, context="tenant/a/kid-1") == b"secret key bytes"
    with pytest.raises(KeyUnavailable):
        master.unwrap(wrapped, context="tenant/b/kid-1")  # moved to another record


def test_wrong_master_key_and_tampering_are_detected() -> None:
    wrapped = MasterKey(os.urandom(32)).wrap(b"k", context="c")
    with pytest.raises(KeyUnavailable):
        MasterKey(os.urandom(32)).unwrap(wrapped, context="c")
    master = MasterKey(os.urandom(32))
    good = master.wrap(b"k", context="c")
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(KeyUnavailable):
        master.unwrap(tampered, context="c")
    with pytest.raises(KeyUnavailable):
        master.unwrap(b"\x02" + good[1:], context="c")


def test_master_key_must_be_32_bytes_and_never_prints() -> None:
    with pytest.raises(KeyUnavailable):
        MasterKey(b"short")
    key = os.urandom(32)
    assert key.hex() not in repr(MasterKey(key))


def test_derived_secrets_are_independent() -> None:
    master = MasterKey(os.urandom(32))
    assert master.derive("csrf") != master.derive("pseudonyms")
    assert master.derive("csrf") == master.derive("csrf")


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[AsyncSession]:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", pool_size=1))
    await upgrade_schema(engine)
    async with make_sessionmaker(engine)() as session:
        yield session
    await engine.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(dt.datetime(2026, 11, 1, tzinfo=dt.UTC))


@pytest.fixture
def ring(clock: FixedClock) -> KeyRing:
    return KeyRing(MasterKey(os.urandom(32)), clock, grace=dt.timedelta(days=30))


@pytest.fixture
async def tenant(session: AsyncSession) -> Tenant:
    tenant = Tenant(slug="semya", name="Семья", kind="social_centre")
    session.add(tenant)
    await session.flush()
    return tenant


async def test_tenant_keys_are_stored_wrapped_and_published(
    session: AsyncSession, ring: KeyRing, tenant: Tenant
) -> None:
    created = await ring.create_tenant_keys(session, tenant.id)

    sig = (await ring.usable_tenant_keys(session, tenant.id, KeyUse.SIGNING))[0]
    private = ring.private_jwk(sig)
    assert sig.kid == created.sig_kid
    assert b"PRIVATE" not in sig.wrapped_private
    assert "d" not in (sig.public_jwk or {})
    token = jws.serialize_compact({"alg": "EdDSA", "kid": sig.kid}, b"hello", private, algorithms=["EdDSA"])
    jwks = KeySet.import_key_set(await ring.public_jwks(session, tenant.id))
    assert jws.deserialize_compact(token, jwks, algorithms=["EdDSA"]).payload == b"hello"
    assert {k["use"] for k in (await ring.public_jwks(session, tenant.id))["keys"]} == {"enc", "sig"}
    kek = (await ring.usable_tenant_keys(session, tenant.id, KeyUse.KEY_ENCRYPTION))[0]
    assert len(ring.private_key_bytes(kek)) == 32
    assert kek.public_jwk is None


async def test_rotation_keeps_old_keys_for_the_grace_period_only(
    session: AsyncSession, ring: KeyRing, tenant: Tenant, clock: FixedClock
) -> None:
    first = await ring.create_tenant_keys(session, tenant.id)
    clock.advance(dt.timedelta(days=1))
    second = await ring.rotate_tenant_keys(session, tenant.id)
    assert {second.enc_kid, second.sig_kid}.isdisjoint({first.enc_kid, first.sig_kid})

    signing = await ring.usable_tenant_keys(session, tenant.id, KeyUse.SIGNING)
    assert [k.kid for k in signing] == [second.sig_kid, first.sig_kid]  # active first
    published = {k["kid"] for k in (await ring.public_jwks(session, tenant.id))["keys"]}
    assert {first.enc_kid, first.sig_kid, second.enc_kid, second.sig_kid} <= published
    # The retired key still opens what was sealed with it during the grace period.
    assert ring.private_jwk(signing[1]).kid == first.sig_kid

    clock.advance(dt.timedelta(days=31))
    published = {k["kid"] for k in (await ring.public_jwks(session, tenant.id))["keys"]}
    assert published == {second.enc_kid, second.sig_kid}
    # A retired KEK is never dropped: data keys wrapped by it must stay readable until re-wrapped.
    keks = [k.kid for k in await ring.usable_tenant_keys(session, tenant.id, KeyUse.KEY_ENCRYPTION)]
    assert keks == [second.kek_kid, first.kek_kid]


async def test_keys_cannot_be_opened_with_another_master_key(
    session: AsyncSession, ring: KeyRing, tenant: Tenant, clock: FixedClock
) -> None:
    other = KeyRing(MasterKey(os.urandom(32)), clock, grace=dt.timedelta(days=1))
    await ring.create_tenant_keys(session, tenant.id)
    key: TenantKey = (await ring.usable_tenant_keys(session, tenant.id, KeyUse.ENCRYPTION))[0]
    with pytest.raises(KeyUnavailable):
        other.private_jwk(key)


def test_ed25519_private_bytes_are_not_in_the_public_jwk() -> None:
    from tenants.keys import _public_jwk

    private = Ed25519PrivateKey.generate()
    jwk = _public_jwk(private, kid="k", alg="EdDSA", use="sig")
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
