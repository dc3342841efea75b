"""Naming the audit trail's actors: the caller's own staff and systems by name, partners by organisation only, and
only for the roles that review the trail or manage the accounts."""

from __future__ import annotations

import uuid

import pytest
from uuid_utils.compat import uuid7

from gateway.runtime import Runtime
from tenants import names
from tenants.errors import Forbidden
from tenants.models import Role, User
from tenants.persistence import tenant_session
from tenants.principal import ActorKind, Principal
from tests.factories import make_client, make_tenant, make_user


def principal_for(user: User) -> Principal:
    return Principal(
        tenant_id=user.tenant_id, actor_kind=ActorKind.USER, actor_id=user.id, roles=frozenset(user.roles), scopes=None
    )


async def test_own_staff_and_systems_are_named_and_partners_only_by_organisation(runtime: Runtime) -> None:
    centre = await make_tenant(runtime, "semya", name="Центр «Семья»")
    opeka = await make_tenant(runtime, "opeka", name="Отдел опеки")
    dpo = await make_user(runtime, centre, roles=[Role.DPO], email="dpo@semya.test")
    worker = await make_user(runtime, centre, email="anna@semya.test", display_name="Анна Петрова")
    desk = await make_client(runtime, centre)
    partner_worker = await make_user(runtime, opeka, email="ivan@opeka.test", display_name="Иван Сидоров")
    partner_desk = await make_client(runtime, opeka)
    never = uuid7()

    async with tenant_session(runtime.sessions, centre.id) as session:
        found = await names.actor_names(
            session,
            principal_for(dpo),
            user_ids={worker.id, dpo.id, partner_worker.id, never},
            client_ids={uuid.UUID(desk.client_id), uuid.UUID(partner_desk.client_id), never},
            tenant_ids={opeka.id, centre.id},
        )
    assert found.staff == {
        worker.id: names.StaffName("anna@semya.test", "Анна Петрова"),
        dpo.id: names.StaffName("dpo@semya.test", None),
    }
    assert found.systems == {uuid.UUID(desk.client_id): "agency system"}
    assert found.organisations == {opeka.id: "Отдел опеки"}  # one's own organisation is not a partner


@pytest.mark.parametrize("roles", [[Role.SPECIALIST], [Role.INTAKE, Role.SUPERVISOR]])
async def test_other_roles_are_not_told_who_their_colleagues_are(runtime: Runtime, roles: list[str]) -> None:
    centre = await make_tenant(runtime, "semya")
    colleague = await make_user(runtime, centre, display_name="Анна Петрова")
    asker = await make_user(runtime, centre, roles=roles)
    async with tenant_session(runtime.sessions, centre.id) as session:
        with pytest.raises(Forbidden):
            await names.actor_names(
                session, principal_for(asker), user_ids={colleague.id}, client_ids=set(), tenant_ids=set()
            )
