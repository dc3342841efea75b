"""Invitation links sent by email when casebridge has a mail server (a real SMTP server on loopback, aiosmtpd), and
shown to the administrator instead when the server does not take the message."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from tenants.models import Role, TenantKind
from tests.factories import make_tenant
from tests.integration.helpers.mail import Sink, free_port, settings_with, smtp
from tests.integration.helpers.web import act_as, form, ok, staff


@pytest.fixture
def mail_server_up() -> bool:
    return True


@pytest.fixture
async def settings(
    database_url: str, tmp_path: Path, nats_url: str, smtp_sink: tuple[Sink, int], mail_server_up: bool
) -> Settings:
    """casebridge with a mail server on loopback: the sink, or (`mail_server_up` False) a port nothing listens on."""
    port = smtp_sink[1] if mail_server_up else free_port()
    return await settings_with(database_url, tmp_path / "var", nats_url, **smtp(port))


async def test_the_invitation_link_goes_by_email_and_opens_the_account(
    english: httpx.AsyncClient, runtime: Runtime, smtp_sink: tuple[Sink, int]
) -> None:
    api, sink = english, smtp_sink[0]
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    act_as(api, await staff(runtime, centre, Role.TENANT_ADMIN))
    page = ok(await form(api, "/admin/invite", {"email": "new@semya.test", "display_name": "Anna", "roles": "intake"}))
    assert "The invitation link was emailed to new@semya.test." in page
    assert "/account/invitation/" not in page  # the link leaves once, in the email
    [message] = sink.messages
    assert message["To"] == "new@semya.test"
    assert message["From"] == "casebridge@example.org"
    assert message["Subject"] == "Your casebridge account at Centre Semya"
    link = re.search(r"http://localhost(/account/invitation/\S+)", message.get_content())
    assert link is not None
    act_as(api, None)
    assert "new@semya.test" in ok(await api.get(link.group(1)))

    # Sent again from the account's page (a new link), in Russian this time.
    act_as(api, await staff(runtime, centre, Role.TENANT_ADMIN))
    user_id = re.search(
        r'href="/admin/users/([0-9a-f-]+)"', ok(await api.get("/admin")).split("new@semya.test")[0][-400:]
    )
    assert user_id is not None
    api.headers["Accept-Language"] = "ru"
    page = ok(await form(api, f"/admin/users/{user_id.group(1)}/invitation", {}))
    assert "Ссылка-приглашение отправлена на new@semya.test." in page
    assert sink.messages[-1]["Subject"] == "Ваша учётная запись casebridge в организации «Centre Semya»"
    assert "Ссылка действует один раз" in sink.messages[-1].get_content()


@pytest.mark.parametrize("mail_server_up", [False])
async def test_when_the_mail_server_refuses_the_link_is_shown(
    english: httpx.AsyncClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    api = english
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    act_as(api, await staff(runtime, centre, Role.TENANT_ADMIN))
    page = ok(await form(api, "/admin/invite", {"email": "new@semya.test", "roles": "intake"}))
    assert "The invitation email could not be sent. Give the person the link below yourself." in page
    assert re.search(r'value="http://localhost/account/invitation/[^"]+"', page)
    assert "new@semya.test" not in caplog.text  # the address never reaches a log line
    assert "did not take an invitation email" in caplog.text
