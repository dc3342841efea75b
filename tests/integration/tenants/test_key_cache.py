"""Key rings are cached per process, and a rotation anywhere reaches every process's cache."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select

from exchange.transport.bodies import ReferralStatus
from exchange.transport.models import DeadLetter
from exchange.transport.outbox import enqueue
from gateway.app import build_runtime
from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants import services
from tenants.keys import KEY_CACHE_CHECK_S
from tenants.models import KeyUse, TenantKind
from tenants.persistence import platform_session
from tests.factories import forged_envelope, make_tenant


async def _encryption_kid(runtime: Runtime, tenant_id: object) -> str:
    async with platform_session(runtime.sessions) as session:
        jwk = await runtime.exchange.published.encryption_key(session, tenant_id)  # type: ignore[arg-type]
    assert jwk is not None
    return str(jwk["kid"])


async def _signing_kid(runtime: Runtime, tenant_id: object) -> str:
    async with platform_session(runtime.sessions) as session:
        (key, *_) = await runtime.keyring.usable_tenant_keys(session, tenant_id, KeyUse.SIGNING)  # type: ignore[arg-type]
    return key.kid


async def test_a_rotation_in_another_process_reaches_this_processs_cache(settings: Settings) -> None:
    here, there = build_runtime(settings, workers=()), build_runtime(settings, workers=())  # two processes' views
    try:
        tenant = await make_tenant(here, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
        cached_encryption, cached_signing = await _encryption_kid(here, tenant.id), await _signing_kid(here, tenant.id)
        async with platform_session(there.sessions) as session, session.begin():
            rotated = await services.rotate_keys(session, there.keyring, slug="opeka")
        assert rotated.enc_kid != cached_encryption

        await asyncio.sleep(KEY_CACHE_CHECK_S + 0.1)  # the longest this process trusts its cache unchecked
        assert await _encryption_kid(here, tenant.id) == rotated.enc_kid
        assert await _signing_kid(here, tenant.id) == rotated.sig_kid
        assert cached_signing != rotated.sig_kid
    finally:
        await here.engine.dispose()
        await there.engine.dispose()


async def test_an_envelope_under_a_key_this_process_has_not_seen_is_opened_not_refused(settings: Settings) -> None:
    """The inbox looks again at the key ring before it refuses an envelope for an unknown key."""
    here, there = build_runtime(settings, workers=()), build_runtime(settings, workers=())
    try:
        centre = await make_tenant(here, "semya", kind=TenantKind.SOCIAL_CENTRE)
        opeka = await make_tenant(here, "opeka", kind=TenantKind.GUARDIANSHIP_BODY)
        await _encryption_kid(here, opeka.id)
        await _signing_kid(here, centre.id)  # both cached here, before the rotations below
        for slug in ("semya", "opeka"):
            async with platform_session(there.sessions) as session, session.begin():
                await services.rotate_keys(session, there.keyring, slug=slug)
        # Sealed by the other process under the new keys, at once: this process's cache is still the old one.
        async with platform_session(there.sessions) as session, session.begin():
            sent = await enqueue(
                session,
                there.exchange,
                sender=centre.id,
                recipient=opeka.id,
                body=ReferralStatus(referral_id=centre.id, status="accepted", at=dt.datetime.now(dt.UTC)),
            )
        (settled,) = await here.inbox.receive_batch([(sent.subject, sent.token.encode())])
        assert not settled  # opened and verified: it only waits for its referral, it is not parked
        forged = await forged_envelope(
            here, sender=centre.id, recipient=opeka.id, envelope_type=ReferralStatus.TYPE, body={"referral_id": "x"}
        )
        (parked,) = await here.inbox.receive_batch([(forged.subject, forged.token.encode())])
        assert parked
        async with platform_session(here.sessions) as session:
            reasons = list(await session.scalars(select(DeadLetter.reason)))
        assert reasons == ["unapplicable"], "opened under the new keys, then refused for its body, not its key"
    finally:
        await here.engine.dispose()
        await there.engine.dispose()
