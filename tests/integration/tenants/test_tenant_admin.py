"""The tenant administrator's services: invitations, roles, second factors, deactivation, API clients, keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from joserfc.jwk import OKPKey
from sqlalchemy import select

from gateway.runtime import Runtime
from tenants import admin, services
from tenants.errors import Conflict, Forbidden, InvalidInput, NotFound
from tenants.models import ApiClient, Invitation, KeyUse, Role, StaffSession, Tenant, User
from tenants.persistence import platform_session, tenant_session
from tenants.principal import ActorKind, Principal
from tenants.staff_sessions import find_session, start_session
from tests.conftest import TravelClock
from tests.factories import PASSWORD, make_tenant, make_user

WEEK = dt.timedelta(days=7)
NEW_PASSWORD = "the invitee's own passphrase"


def principal_for(user: User) -> Principal:
    return Principal(
        tenant_id=user.tenant_id, actor_kind=ActorKind.USER, actor_id=user.id, roles=frozenset(user.roles), scopes=None
    )


async def invite(runtime: Runtime, by: User, email: str, roles: list[str] | None = None) -> admin.Invited:
    async with tenant_session(runtime.sessions, by.tenant_id) as session, session.begin():
        return await admin.invite_user(
            session,
            runtime.clock,
            principal=principal_for(by),
            email=email,
            roles=roles or [Role.INTAKE],
            display_name="  Анна Петрова ",
            valid_for=WEEK,
        )


async def accept(runtime: Runtime, token: str, password: str = NEW_PASSWORD, confirmation: str | None = None) -> User:
    async with platform_session(runtime.sessions) as session, session.begin():
        return await admin.accept_invitation(
            session, runtime.clock, token=token, password=password, confirmation=confirmation or password
        )


async def reload(runtime: Runtime, user_id: uuid.UUID) -> User:
    async with platform_session(runtime.sessions) as session:
        user = await session.scalar(select(User).where(User.id == user_id))
        assert user is not None
        return user


@pytest.fixture
async def centre(runtime: Runtime) -> tuple[Tenant, User]:
    tenant = await make_tenant(runtime, "semya")
    return tenant, await make_user(runtime, tenant, roles=[Role.TENANT_ADMIN], email="admin@semya.test")


async def test_an_invitation_creates_an_account_that_only_its_link_opens(
    runtime: Runtime, centre: tuple[Tenant, User], clock: TravelClock
) -> None:
    _, administrator = centre
    invited = await invite(runtime, administrator, "Anna@Semya.test", [Role.INTAKE, Role.SUPERVISOR])
    assert invited.user.email == "anna@semya.test"
    assert invited.user.roles == [Role.INTAKE, Role.SUPERVISOR]
    assert invited.user.display_name == "Анна Петрова"
    assert invited.expires_at == pytest.approx(clock.now() + WEEK, abs=dt.timedelta(seconds=5))

    async with platform_session(runtime.sessions) as session:
        stored = (await session.scalars(select(Invitation).where(Invitation.user_id == invited.user.id))).one()
    assert invited.token not in stored.token_hash
    assert len(stored.token_hash) == 64

    async with tenant_session(runtime.sessions, administrator.tenant_id) as session:
        page = await admin.list_staff(
            session, runtime.clock, principal=principal_for(administrator), offset=0, limit=10
        )
    states = {m.user.email: m.invitation for m in page.items}
    assert states == {"admin@semya.test": None, "anna@semya.test": admin.InvitationState.PENDING}

    with pytest.raises(InvalidInput, match="do not match"):
        await accept(runtime, invited.token, confirmation="something else entirely")
    with pytest.raises(InvalidInput, match="at least 12"):
        await accept(runtime, invited.token, password="short")
    user = await accept(runtime, invited.token)
    assert not user.must_change_password
    assert not user.totp_enabled  # the second factor is enrolled at the sign-in pages next
    async with platform_session(runtime.sessions) as session, session.begin():
        signed_in = await services.sign_in(
            session, runtime.clock, runtime.lockout, email="anna@semya.test", password=NEW_PASSWORD
        )
    assert isinstance(signed_in, services.SignedIn)
    assert signed_in.needs_enrolment

    with pytest.raises(NotFound, match="not valid any more"):
        await accept(runtime, invited.token)  # a link works once


async def test_an_expired_or_replaced_link_does_not_work(
    runtime: Runtime, centre: tuple[Tenant, User], clock: TravelClock
) -> None:
    _, administrator = centre
    first = await invite(runtime, administrator, "late@semya.test")
    clock.advance(WEEK + dt.timedelta(minutes=1))
    with pytest.raises(NotFound):
        await accept(runtime, first.token)
    async with tenant_session(runtime.sessions, administrator.tenant_id) as session:
        page = await admin.list_staff(
            session, runtime.clock, principal=principal_for(administrator), offset=0, limit=10
        )
    assert {m.user.email: m.invitation for m in page.items}["late@semya.test"] is admin.InvitationState.EXPIRED

    async with tenant_session(runtime.sessions, administrator.tenant_id) as session, session.begin():
        second = await admin.reissue_invitation(
            session, runtime.clock, principal=principal_for(administrator), user_id=first.user.id, valid_for=WEEK
        )
    async with tenant_session(runtime.sessions, administrator.tenant_id) as session, session.begin():
        third = await admin.reissue_invitation(
            session, runtime.clock, principal=principal_for(administrator), user_id=first.user.id, valid_for=WEEK
        )
    with pytest.raises(NotFound):
        await accept(runtime, second.token)  # replaced by the third
    await accept(runtime, third.token)
    async with tenant_session(runtime.sessions, administrator.tenant_id) as session:
        with pytest.raises(Conflict, match="already signed in"):
            await admin.reissue_invitation(
                session, runtime.clock, principal=principal_for(administrator), user_id=first.user.id, valid_for=WEEK
            )


async def test_invitations_refuse_bad_input_and_duplicates(runtime: Runtime, centre: tuple[Tenant, User]) -> None:
    _, administrator = centre
    with pytest.raises(InvalidInput, match="valid email"):
        await invite(runtime, administrator, "not an address")
    with pytest.raises(InvalidInput, match="Unknown role"):
        await invite(runtime, administrator, "x@semya.test", ["platform_operator"])
    with pytest.raises(Conflict, match="cannot be used"):
        await invite(runtime, administrator, "admin@semya.test")


async def test_an_address_in_use_elsewhere_is_refused_without_saying_where(
    runtime: Runtime, centre: tuple[Tenant, User]
) -> None:
    _, administrator = centre
    elsewhere = await make_user(runtime, await make_tenant(runtime), email="taken@opeka.test")
    with pytest.raises(Conflict) as refused:
        await invite(runtime, administrator, "taken@opeka.test")
    # The same words as for an address of one's own organisation, on SQLite and PostgreSQL alike.
    assert str(refused.value) == admin.ADDRESS_UNAVAILABLE
    async with platform_session(runtime.sessions) as session:
        owners = (await session.scalars(select(User.tenant_id).where(User.email == "taken@opeka.test"))).all()
    assert owners == [elsewhere.tenant_id]


async def test_only_an_administrator_of_the_same_organisation_manages_staff(
    runtime: Runtime, centre: tuple[Tenant, User]
) -> None:
    tenant, administrator = centre
    specialist = await make_user(runtime, tenant, roles=[Role.SPECIALIST, Role.DPO])
    other = await make_tenant(runtime, "opeka")
    stranger = await make_user(runtime, other, roles=[Role.INTAKE])
    with pytest.raises(Forbidden):
        await invite(runtime, specialist, "x@semya.test")
    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        with pytest.raises(Forbidden):
            await admin.list_staff(session, runtime.clock, principal=principal_for(specialist), offset=0, limit=10)
        with pytest.raises(Forbidden):
            await admin.set_roles(
                session, principal=principal_for(specialist), user_id=administrator.id, roles=[Role.SPECIALIST]
            )
        # Another organisation's user is simply not there.
        with pytest.raises(NotFound):
            await admin.set_roles(
                session, principal=principal_for(administrator), user_id=stranger.id, roles=[Role.SPECIALIST]
            )
        with pytest.raises(NotFound):
            await admin.set_active(
                session, runtime.clock, principal=principal_for(administrator), user_id=stranger.id, active=False
            )
        with pytest.raises(NotFound):
            await admin.reset_second_factor(
                session, runtime.clock, principal=principal_for(administrator), user_id=uuid.uuid4()
            )


async def test_roles_change_but_an_administrator_keeps_their_own(runtime: Runtime, centre: tuple[Tenant, User]) -> None:
    tenant, administrator = centre
    colleague = await make_user(runtime, tenant, roles=[Role.TENANT_ADMIN])
    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        changed = await admin.set_roles(
            session,
            principal=principal_for(administrator),
            user_id=colleague.id,
            roles=[Role.DPO, Role.SPECIALIST, Role.DPO],
        )
        assert changed.roles == [Role.DPO, Role.SPECIALIST]
        with pytest.raises(Conflict, match="own administrator role"):
            await admin.set_roles(
                session, principal=principal_for(administrator), user_id=administrator.id, roles=[Role.DPO]
            )
        with pytest.raises(InvalidInput, match="at least one role"):
            await admin.set_roles(session, principal=principal_for(administrator), user_id=colleague.id, roles=[])
        # Adding a role to oneself is fine.
        mine = await admin.set_roles(
            session,
            principal=principal_for(administrator),
            user_id=administrator.id,
            roles=[Role.TENANT_ADMIN, Role.DPO],
        )
        assert mine.roles == [Role.DPO, Role.TENANT_ADMIN]
    assert (await reload(runtime, colleague.id)).roles == [Role.DPO, Role.SPECIALIST]


async def _signed_in_session(runtime: Runtime, user: User) -> str:
    async with platform_session(runtime.sessions) as session, session.begin():
        token, _ = await start_session(
            session, runtime.clock, runtime.session_policy, user=user, second_factor_passed=True
        )
    return token


async def _session_alive(runtime: Runtime, token: str) -> bool:
    async with platform_session(runtime.sessions) as session, session.begin():
        return await find_session(session, runtime.clock, runtime.session_policy, token=token) is not None


async def test_a_second_factor_reset_forces_enrolment_and_ends_sessions(
    runtime: Runtime, centre: tuple[Tenant, User]
) -> None:
    tenant, administrator = centre
    worker = await make_user(runtime, tenant, roles=[Role.SPECIALIST])
    async with platform_session(runtime.sessions) as session, session.begin():
        row = await session.scalar(select(User).where(User.id == worker.id))
        assert row is not None
        services.begin_totp_enrolment(runtime.master_key, user=row, issuer="casebridge")
        row.totp_enabled = True
        row.recovery_code_hashes = ["x" * 64]
    token = await _signed_in_session(runtime, worker)
    assert await _session_alive(runtime, token)

    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        await admin.reset_second_factor(
            session, runtime.clock, principal=principal_for(administrator), user_id=worker.id
        )
        with pytest.raises(Conflict, match="own second factor"):
            await admin.reset_second_factor(
                session, runtime.clock, principal=principal_for(administrator), user_id=administrator.id
            )
    after = await reload(runtime, worker.id)
    assert not after.totp_enabled
    assert after.totp_secret_wrapped is None
    assert after.recovery_code_hashes == []
    assert not await _session_alive(runtime, token)
    async with platform_session(runtime.sessions) as session, session.begin():
        result = await services.sign_in(session, runtime.clock, runtime.lockout, email=worker.email, password=PASSWORD)
    assert isinstance(result, services.SignedIn)
    assert result.needs_enrolment


async def test_a_deactivated_user_cannot_sign_in_until_reactivated(
    runtime: Runtime, centre: tuple[Tenant, User]
) -> None:
    tenant, administrator = centre
    worker = await make_user(runtime, tenant, roles=[Role.INTAKE])
    token = await _signed_in_session(runtime, worker)
    pending = await invite(runtime, administrator, "newcomer@semya.test")

    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        me = principal_for(administrator)
        await admin.set_active(session, runtime.clock, principal=me, user_id=worker.id, active=False)
        await admin.set_active(session, runtime.clock, principal=me, user_id=pending.user.id, active=False)
        with pytest.raises(Conflict, match="already deactivated"):
            await admin.set_active(session, runtime.clock, principal=me, user_id=worker.id, active=False)
        with pytest.raises(Conflict, match="your own account"):
            await admin.set_active(session, runtime.clock, principal=me, user_id=administrator.id, active=False)
    assert not await _session_alive(runtime, token)
    async with platform_session(runtime.sessions) as session, session.begin():
        refused = await services.sign_in(session, runtime.clock, runtime.lockout, email=worker.email, password=PASSWORD)
    assert isinstance(refused, services.SignInRefused)
    with pytest.raises(NotFound):
        await accept(runtime, pending.token)  # deactivation withdrew the invitation too

    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        await admin.set_active(
            session, runtime.clock, principal=principal_for(administrator), user_id=worker.id, active=True
        )
    async with platform_session(runtime.sessions) as session, session.begin():
        allowed = await services.sign_in(session, runtime.clock, runtime.lockout, email=worker.email, password=PASSWORD)
    assert isinstance(allowed, services.SignedIn)


async def test_staff_list_pages(runtime: Runtime, centre: tuple[Tenant, User]) -> None:
    tenant, administrator = centre
    for n in range(4):
        await make_user(runtime, tenant, email=f"worker{n}@semya.test")
    await make_user(runtime, await make_tenant(runtime, "opeka"), email="elsewhere@opeka.test")
    me = principal_for(administrator)
    async with tenant_session(runtime.sessions, tenant.id) as session:
        first = await admin.list_staff(session, runtime.clock, principal=me, offset=0, limit=3)
        second = await admin.list_staff(session, runtime.clock, principal=me, offset=3, limit=3)
        with pytest.raises(InvalidInput):
            await admin.list_staff(session, runtime.clock, principal=me, offset=0, limit=1000)
    assert first.total == second.total == 5
    assert [m.user.email for m in first.items] == ["admin@semya.test", "worker0@semya.test", "worker1@semya.test"]
    assert [m.user.email for m in second.items] == ["worker2@semya.test", "worker3@semya.test"]


def _public_jwk() -> dict[str, Any]:
    return OKPKey.generate_key("Ed25519", {"kid": "desk-1"}).as_dict(private=False)


async def test_clients_are_registered_listed_and_revoked(
    runtime: Runtime, centre: tuple[Tenant, User], clock: TravelClock
) -> None:
    tenant, administrator = centre
    me = principal_for(administrator)
    other = await make_tenant(runtime, "opeka")
    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        client = await admin.register_client(
            session,
            principal=me,
            name=" Intake desk ",
            public_jwk=_public_jwk(),
            scopes=["referrals:read", "referrals:write"],
            role=Role.INTAKE,
        )
        private = OKPKey.generate_key("Ed25519").as_dict(private=True)
        with pytest.raises(InvalidInput, match="private key"):
            await admin.register_client(
                session, principal=me, name="x", public_jwk=private, scopes=["cases:read"], role=Role.SPECIALIST
            )
        with pytest.raises(InvalidInput, match="Unknown role"):
            await admin.register_client(
                session, principal=me, name="x", public_jwk=_public_jwk(), scopes=["cases:read"], role=Role.TENANT_ADMIN
            )
        with pytest.raises(InvalidInput, match="at least one scope"):
            await admin.register_client(
                session, principal=me, name="x", public_jwk=_public_jwk(), scopes=[], role=Role.SPECIALIST
            )
    assert client.name == "Intake desk"
    assert client.role == Role.INTAKE
    assert client.tenant_id == tenant.id

    async with platform_session(runtime.sessions) as session, session.begin():
        foreign = await services.create_client(
            session, tenant=other, name="theirs", public_jwk=_public_jwk(), scopes=["cases:read"]
        )
    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        page = await admin.list_clients(session, principal=me, offset=0, limit=10)
        assert [c.id for c in page.items] == [client.id]
        with pytest.raises(NotFound):
            await admin.revoke_client(session, runtime.clock, principal=me, client_id=foreign.id)
        revoked = await admin.revoke_client(session, runtime.clock, principal=me, client_id=client.id)
        assert revoked.revoked_at is not None
        with pytest.raises(Conflict, match="already been revoked"):
            await admin.revoke_client(session, runtime.clock, principal=me, client_id=client.id)
    async with platform_session(runtime.sessions) as session:
        assert (await session.scalar(select(ApiClient).where(ApiClient.id == foreign.id))).revoked_at is None  # type: ignore[union-attr]


async def test_key_rotation_keeps_the_old_keys_for_their_grace_period(
    runtime: Runtime, centre: tuple[Tenant, User]
) -> None:
    tenant, administrator = centre
    me = principal_for(administrator)
    async with tenant_session(runtime.sessions, tenant.id) as session:
        before = await admin.list_keys(session, runtime.clock, principal=me)
    assert {k.use for k in before} == {KeyUse.ENCRYPTION, KeyUse.SIGNING, KeyUse.KEY_ENCRYPTION}
    assert all(k.retired_at is None for k in before)
    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        rotated = await admin.rotate_keys(session, runtime.keyring, principal=me)
    async with tenant_session(runtime.sessions, tenant.id) as session:
        after = await admin.list_keys(session, runtime.clock, principal=me)
    active = {k.kid for k in after if k.retired_at is None}
    assert active == {rotated.enc_kid, rotated.sig_kid, rotated.kek_kid}
    assert {k.kid for k in after if k.retired_at is not None} == {k.kid for k in before}
    specialist = await make_user(runtime, tenant, roles=[Role.SPECIALIST])
    async with tenant_session(runtime.sessions, tenant.id) as session:
        with pytest.raises(Forbidden):
            await admin.rotate_keys(session, runtime.keyring, principal=principal_for(specialist))


async def test_sessions_of_other_users_survive(runtime: Runtime, centre: tuple[Tenant, User]) -> None:
    tenant, administrator = centre
    worker = await make_user(runtime, tenant, roles=[Role.INTAKE])
    bystander = await make_user(runtime, tenant, roles=[Role.INTAKE])
    kept = await _signed_in_session(runtime, bystander)
    await _signed_in_session(runtime, worker)
    async with tenant_session(runtime.sessions, tenant.id) as session, session.begin():
        await admin.set_active(
            session, runtime.clock, principal=principal_for(administrator), user_id=worker.id, active=False
        )
    assert await _session_alive(runtime, kept)
    async with platform_session(runtime.sessions) as session:
        ended = await session.scalars(select(StaffSession).where(StaffSession.user_id == worker.id))
        assert all(s.ended_at is not None for s in ended)
