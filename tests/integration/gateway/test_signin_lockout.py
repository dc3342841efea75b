"""A locked account answers every credential alike, and every attempt made during the lock counts.

Each path that checks a password or a second-factor code is covered: the sign-in page, the second-factor page and
the password change of a signed-in member of staff.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from audit.models import AuditEvent
from gateway.runtime import Runtime
from tenants.models import User
from tenants.persistence import platform_session
from tests.conftest import TravelClock
from tests.factories import PASSWORD, make_tenant, make_user
from tests.integration.helpers.web import (
    SESSION,
    Client,
    current_code,
    enrolled_staff,
    page,
    redirected,
    signed_in,
    submit_code,
    submit_password,
    with_csrf,
)

pytestmark = pytest.mark.usefixtures("english")  # these tests read the English pages

WRONG = "not the password at all"
FAILED = "tenants:session:sign-in-failed"


def answer(response: httpx.Response) -> tuple[int, str, tuple[str, ...]]:
    """What an attacker sees of a response: status, the page without its per-page tokens, the cookies it sets."""
    body = re.sub(r'name="_csrf_token" value="[^"]*"', "", response.text)
    cookies = tuple(sorted(header.partition("=")[0] for header in response.headers.get_list("set-cookie")))
    return response.status_code, body, cookies


async def _user(runtime: Runtime, user_id: uuid.UUID) -> User:
    async with platform_session(runtime.sessions) as session:
        return await session.get_one(User, user_id)


async def _lock(api: Client, runtime: Runtime, email: str) -> None:
    for _ in range(runtime.lockout.max_failures):
        response = await submit_password(api, email, WRONG)
    assert "This account is locked until" in response.text


async def _failures(runtime: Runtime, tenant_id: uuid.UUID) -> list[str]:
    async with platform_session(runtime.sessions) as session:
        rows = await session.scalars(
            select(AuditEvent.canonical)
            .where(AuditEvent.log_tenant_id == tenant_id, AuditEvent.action == FAILED)
            .order_by(AuditEvent.recorded_at, AuditEvent.id)
        )
        return [str(json.loads(row)["reason"]) for row in rows]


async def test_a_locked_account_answers_the_right_password_as_a_wrong_one(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    user = await make_user(runtime, await make_tenant(runtime))
    await _lock(api, runtime, user.email)
    locked_until = (await _user(runtime, user.id)).locked_until

    right = await submit_password(api, user.email, PASSWORD)
    wrong = await submit_password(api, user.email, WRONG)
    page(right, status=400, alert=True)
    assert answer(right) == answer(wrong)
    assert "This account is locked until" in right.text
    # Both attempts counted, and neither moved the lock.
    after = await _user(runtime, user.id)
    assert (after.failed_logins, after.locked_until) == (2, locked_until)
    assert (await _failures(runtime, user.tenant_id))[-2:] == ["password: locked", "password: locked"]


async def test_guesses_during_the_lock_count_and_renew_it_whatever_they_are(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    user = await make_user(runtime, await make_tenant(runtime))
    await _lock(api, runtime, user.email)
    first_lock = (await _user(runtime, user.id)).locked_until
    assert first_lock is not None

    clock.advance(dt.timedelta(minutes=1))
    # As many attempts as lock an account, the right password among them: the lock starts again from the last one.
    attempts = [WRONG] * (runtime.lockout.max_failures - 1) + [PASSWORD]
    answers = [answer(await submit_password(api, user.email, password)) for password in attempts]
    renewed = (await _user(runtime, user.id)).locked_until
    assert renewed is not None
    assert renewed > first_lock
    assert all(a[0] == 400 and "This account is locked until" in a[1] for a in answers)
    assert len(set(answers[:-1])) == 1  # the same answer until the lock is renewed

    # The first lock's end lets nobody in: the guesses made during it renewed it.
    clock.advance(first_lock - clock.now() + dt.timedelta(seconds=1))
    assert "This account is locked until" in (await submit_password(api, user.email, PASSWORD)).text
    clock.advance(runtime.lockout.lock_for)
    redirected(await submit_password(api, user.email, PASSWORD), "/account/second-factor/enrol")


async def test_a_second_factor_during_the_lock_is_answered_alike_and_counts(
    app: Litestar, api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff = await enrolled_staff(runtime, clock)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type] # Litestar's scope TypedDicts vs httpx's
    async with (
        httpx.AsyncClient(transport=transport, base_url=str(api.base_url), headers={"Accept-Language": "en"}) as a,
        httpx.AsyncClient(transport=transport, base_url=str(api.base_url), headers={"Accept-Language": "en"}) as b,
    ):
        # Two half-finished sign-ins (the password passed); then someone else locks the account.
        for browser in (a, b):
            redirected(await submit_password(browser, staff.user.email, staff.password), "/login/second-factor")
        await _lock(api, runtime, staff.user.email)

        right = await submit_code(a, current_code(staff.secret, clock))
        wrong = await submit_code(b, "000000")
    assert answer(right) == answer(wrong)
    assert "This account is locked until" in right.text
    assert (await _user(runtime, staff.user.id)).failed_logins == 2
    assert (await _failures(runtime, staff.tenant.id))[-2:] == ["second-factor: locked"] * 2


async def test_a_password_change_counts_wrong_current_passwords_and_is_refused_alike_while_locked(
    api: Client, runtime: Runtime, clock: TravelClock
) -> None:
    staff = await enrolled_staff(runtime, clock)
    await signed_in(api, staff, clock)
    new = "a passphrase nobody guessed"

    async def change(current: str) -> httpx.Response:
        form = with_csrf(api, current_password=current, new_password=new, confirmation=new)
        return await api.post("/account/password", data=form)

    for _ in range(runtime.lockout.max_failures - 1):
        refused = await change(WRONG)
        page(refused, status=400, alert=True)
        assert "The current password is not correct." in refused.text
    locking = await change(WRONG)
    page(locking, status=400, alert=True)
    assert "This account is locked until" in locking.text

    # Locked: the right current password is refused as a wrong one is, and changes nothing.
    right, wrong = await change(staff.password), await change(WRONG)
    assert answer(right) == answer(wrong)
    assert (await _user(runtime, staff.user.id)).failed_logins == 2
    reasons = await _failures(runtime, staff.tenant.id)
    assert reasons[-3:] == ["password-change: locked"] * 3
    # The lock holds at the sign-in page too (for another browser), and the password is still the old one after it.
    api.cookies.delete(SESSION)
    assert "This account is locked until" in (await submit_password(api, staff.user.email, staff.password)).text
    clock.advance(runtime.lockout.lock_for + dt.timedelta(seconds=1))
    redirected(await submit_password(api, staff.user.email, staff.password), "/login/second-factor")
