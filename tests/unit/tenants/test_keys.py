"""Key wrapping by the master key, and key ring rotation with a grace period."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import create_engine, upgrade_schema
from gateway.settings import DatabaseSettings
from tenants.clock import FixedClock
from tenants.errors import KeyUnavailable
from tenants.keys import KeyRing, MasterKey, PublishedKeys
from tenants.models import KeyUse, PlatformKey, PlatformKeyUse, PublishedKey, Tenant, TenantKey
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
    assert (sig.alg, (sig.public_jwk or {})["alg"]) == ("Ed25519", "Ed25519")
    token = jws.serialize_compact({"alg": "Ed25519", "kid": sig.kid}, b"hello", private, algorithms=["Ed25519"])
    jwks = KeySet.import_key_set(await ring.public_jwks(session, tenant.id))
    assert jws.deserialize_compact(token, jwks, algorithms=["Ed25519"]).payload == b"hello"
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


# RFC 9864: keys made before casebridge wrote "Ed25519" are recorded as "EdDSA" and keep signatures of both names.
reads_eddsa = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


@reads_eddsa
async def test_a_signing_key_recorded_as_eddsa_signs_as_ed25519_and_is_published_without_alg(
    session: AsyncSession, ring: KeyRing, tenant: Tenant, clock: FixedClock
) -> None:
    created = await ring.create_tenant_keys(session, tenant.id)
    # As the release before RFC 9864's names stored a tenant's signing key (its old JWK shows "alg": "EdDSA").
    old_private = ring.private_jwk((await ring.usable_tenant_keys(session, tenant.id, KeyUse.SIGNING))[0])
    recorded = {**old_private.as_dict(private=False), "alg": "EdDSA", "use": "sig"}
    await session.execute(
        update(TenantKey).where(TenantKey.kid == created.sig_kid).values(alg="EdDSA", public_jwk=recorded)
    )
    await session.execute(update(PublishedKey).where(PublishedKey.kid == created.sig_kid).values(public_jwk=recorded))
    ring.cache.forget()
    fresh = KeyRing(ring._master, clock, grace=dt.timedelta(days=30))  # no key opened yet in this process

    sig = (await fresh.usable_tenant_keys(session, tenant.id, KeyUse.SIGNING))[0]
    private = fresh.private_jwk(sig)
    new = jws.serialize_compact({"alg": "Ed25519", "kid": sig.kid}, b"new", private, algorithms=["Ed25519"])
    as_then = OKPKey.import_key({**old_private.as_dict(private=True), "alg": "EdDSA"})
    old = jws.serialize_compact({"alg": "EdDSA", "kid": sig.kid}, b"old", as_then, algorithms=["EdDSA"])
    published = [k for k in (await fresh.public_jwks(session, tenant.id))["keys"] if k["use"] == "sig"]
    partners_see = await PublishedKeys(clock).signing_keys(session, tenant.id)
    assert published == partners_see == [{k: v for k, v in recorded.items() if k != "alg"}]
    # A strict verifier (joserfc matches the key's alg to the header's) finds it for either name.
    jwks = KeySet.import_key_set({"keys": published})
    for token, payload in ((new, b"new"), (old, b"old")):
        assert jws.deserialize_compact(token, jwks, algorithms=["Ed25519", "EdDSA"]).payload == payload


@reads_eddsa
async def test_a_new_signing_key_is_published_for_ed25519_only(
    session: AsyncSession, ring: KeyRing, tenant: Tenant
) -> None:
    await ring.create_tenant_keys(session, tenant.id)
    sig = (await ring.usable_tenant_keys(session, tenant.id, KeyUse.SIGNING))[0]
    misnamed = OKPKey.import_key({**ring.private_jwk(sig).as_dict(private=True), "alg": "EdDSA"})
    token = jws.serialize_compact({"alg": "EdDSA", "kid": sig.kid}, b"x", misnamed, algorithms=["EdDSA"])
    jwks = KeySet.import_key_set(await ring.public_jwks(session, tenant.id))
    with pytest.raises(JoseError):
        jws.deserialize_compact(token, jwks, algorithms=["Ed25519", "EdDSA"])


@reads_eddsa
async def test_the_gateway_signing_key_follows_the_same_names(session: AsyncSession, ring: KeyRing) -> None:
    key = await ring.ensure_platform_key(session, PlatformKeyUse.ACCESS_TOKEN)
    assert (key.alg, key.public_jwk["alg"]) == ("Ed25519", "Ed25519")
    await session.execute(update(PlatformKey).where(PlatformKey.kid == key.kid).values(alg="EdDSA"))
    await session.refresh(key)
    private = ring.platform_private_jwk(key)
    assert private.alg == "Ed25519"
    jws.serialize_compact({"alg": "Ed25519", "kid": key.kid}, b"x", private, algorithms=["Ed25519"])


def test_ed25519_private_bytes_are_not_in_the_public_jwk() -> None:
    from tenants.keys import public_jwk_of

    private = Ed25519PrivateKey.generate()
    jwk = public_jwk_of(private, kid="k", alg="Ed25519", use="sig")
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
