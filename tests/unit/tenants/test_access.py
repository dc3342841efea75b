"""Access functions: one implementation for every tenant-scoped row; a foreign id answers exactly as a missing one."""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from tenants.access import RowAccess, written_by
from tenants.errors import Forbidden, NotFound
from tenants.models import Role
from tenants.principal import ActorKind, Principal
from tests.unit.tenants.tables import Note

REPO = Path(__file__).resolve().parents[3]
ACCESS_MODULES = sorted(p for package in ("tenants", "audit", "exchange") for p in (REPO / package).rglob("access.py"))


access_note = RowAccess(
    Note,
    Note.id,
    Note.tenant_id,
    missing="No such note.",
    permits=written_by(Role.SUPERVISOR),
    refusal="Only a supervisor may change a note.",
)


def _principal(tenant_id: uuid.UUID, *roles: Role) -> Principal:
    return Principal(
        tenant_id=tenant_id, actor_kind=ActorKind.USER, actor_id=uuid7(), roles=frozenset(roles), scopes=frozenset()
    )


async def test_a_foreign_id_answers_exactly_as_a_missing_one(session: AsyncSession) -> None:
    mine, theirs = uuid7(), uuid7()
    own, foreign = Note(id=uuid7(), tenant_id=mine, text="a"), Note(id=uuid7(), tenant_id=theirs, text="b")
    session.add_all([own, foreign])
    await session.flush()
    reader = _principal(mine, Role.SPECIALIST)
    assert await access_note(session, reader, own.id, for_write=False) is own
    answers = []
    for row_id in (foreign.id, uuid7()):
        with pytest.raises(NotFound) as refused:
            await access_note(session, reader, row_id, for_write=True)  # not Forbidden: nothing is known of it
        answers.append((type(refused.value), str(refused.value)))
    assert answers == [(NotFound, "No such note.")] * 2


async def test_changing_a_row_needs_a_role_that_may(session: AsyncSession) -> None:
    tenant = uuid7()
    note = Note(id=uuid7(), tenant_id=tenant, text="a")
    session.add(note)
    await session.flush()
    with pytest.raises(Forbidden) as refused:
        await access_note(session, _principal(tenant, Role.SPECIALIST), note.id, for_write=True)
    assert str(refused.value) == "Only a supervisor may change a note."
    assert await access_note(session, _principal(tenant, Role.SUPERVISOR), note.id, for_write=True) is note


def test_every_access_function_is_built_by_the_one_implementation() -> None:
    """Each `access_X` of an access module is a RowAccess, whose statement always names the caller's tenant; the one
    exception is `access_subjects`, the subjects of a case already reached with `access_case`."""
    found = {}
    for path in ACCESS_MODULES:
        module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
        found.update({f"{module.__name__}.{n}": v for n, v in vars(module).items() if n.startswith("access_")})
    others = sorted(name for name, value in found.items() if not isinstance(value, RowAccess))
    assert others == ["exchange.cases.access.access_subjects"]
    assert {name.rsplit(".", 1)[1] for name, value in found.items() if isinstance(value, RowAccess)} >= {
        "access_user",
        "access_client",
        "access_tenant",
        "access_event",
        "access_case",
        "access_consent",
        "access_document",
        "access_subject",
        "access_referral",
        "access_plan",
    }
