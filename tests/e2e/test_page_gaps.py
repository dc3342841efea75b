"""In a real browser, in English and Russian: the case form's key worker, the consent form's pages of agencies, a
document attached to a thread message and opened by the partner, the partner's own legal basis and assignment."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page
from sqlalchemy import select

from tenants.models import Role, Tenant, TenantKind
from tenants.persistence import platform_session
from tests.e2e.browser import Agencies, LiveServer, check_page, choose_partner, reload_until, sign_in
from tests.factories import make_tenant, make_user

TEXTS = {
    "en": {
        "kept": "Chosen on other pages:",
        "sent": "The message is sent to the partner.",
        "basis": "own legal basis is recorded",
        "assigned": "The referral is assigned.",
    },
    "ru": {
        "kept": "Выбраны на других страницах:",
        "sent": "Сообщение отправлено партнёру.",
        "basis": "правовое основание вашей организации записано",
        "assigned": "Ответственный назначен.",
    },
}
REPORT = b"%PDF-1.4 school report"


async def _colleague_and_more_agencies(live_server: LiveServer, centre_id: str) -> str:
    """A supervisor at the centre (to be the key worker), and enough agencies for the consent form to page."""
    runtime = live_server.runtime
    assert runtime is not None
    async with platform_session(runtime.sessions) as session:
        centre = await session.scalar(select(Tenant).where(Tenant.id == uuid.UUID(centre_id)))
    assert centre is not None
    await make_user(runtime, centre, roles=[Role.SUPERVISOR], display_name="Нина Белова")
    async with platform_session(runtime.sessions) as session:
        count = len(list(await session.scalars(select(Tenant))))
    for n in range(max(0, 30 - count)):
        await make_tenant(runtime, kind=TenantKind.NGO, name=f"Фонд {n:02d}")
    return "Нина Белова"


@pytest.mark.parametrize("language", ["en", "ru"])
def test_page_gaps_in_the_browser(
    language: str, agencies: Agencies, live_server: LiveServer, new_page: Callable[[str], Page]
) -> None:
    say = TEXTS[language]
    colleague = live_server.run(_colleague_and_more_agencies(live_server, agencies.centre.id))
    specialist, intake = new_page(language), new_page(language)
    sign_in(specialist, agencies.centre.staff["specialist"])

    # The case form: the key worker is the specialist unless another colleague is chosen.
    specialist.goto("/cases/new")
    check_page(specialist, "case-new-key-worker", language)
    specialist.fill("#title", "Ивановы: школа")
    specialist.fill("#subject-0-name", "Мария Иванова")
    specialist.fill("#subject-0-birth", "2015-04-02")
    specialist.select_option("#subject-0-role", "child")
    chosen = specialist.locator("#key-worker option", has_text=colleague).get_attribute("value")
    assert chosen is not None
    specialist.select_option("#key-worker", value=chosen)
    specialist.click("form[action='/cases/new'] button[type=submit]")
    case_path = urlparse(specialist.url).path
    assert colleague in specialist.locator(".facts").first.inner_text()

    # The consent form pages its agencies and keeps what was filled in.
    specialist.goto(f"{case_path}/consents/new")
    specialist.fill("#given_by_name", "Анна Иванова")
    specialist.select_option("#relation", "parent")
    specialist.check("#category-identity")
    specialist.check("#category-documents")
    specialist.check("#kind-guardianship_body")
    first_agency = specialist.locator("fieldset.agencies input[type=checkbox]").first
    first_name = specialist.locator("fieldset.agencies .check label").first.inner_text().split(" (")[0]
    first_agency.check()
    specialist.click("button[name=agencies]")
    check_page(specialist, "consent-agencies-page-2", language)
    assert specialist.input_value("#given_by_name") == "Анна Иванова"
    assert specialist.locator("#category-documents").is_checked()
    assert first_name in specialist.locator("fieldset.agencies").inner_text()
    assert say["kept"] in specialist.locator("fieldset.agencies").inner_text()
    specialist.set_input_files(
        "#evidence", files=[{"name": "consent.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 signed"}]
    )
    specialist.click("form[action$='/consents/new'] button[type=submit]:not([name=agencies])")
    assert urlparse(specialist.url).path == case_path

    choose_partner(specialist, case_path, agencies.partner.id)
    specialist.check("#cat-identity")
    specialist.check("#cat-documents")
    specialist.fill("#problem", "Ребёнок не посещает школу")
    specialist.fill("#requested_service", "Помочь с местом в школе")
    specialist.fill("#respond_by", (dt.date.today() + dt.timedelta(days=3)).isoformat())
    specialist.click("form[method=post]:has(#problem) button[type=submit]")
    referral_path = urlparse(specialist.url).path

    # A message with a document attached.
    specialist.fill("#body", "Справка из школы во вложении.")
    specialist.set_input_files(
        "#attachment", files=[{"name": "spravka.pdf", "mimeType": "application/pdf", "buffer": REPORT}]
    )
    specialist.click(f"form[action='{referral_path}/messages'] button[type=submit]")
    assert say["sent"] in specialist.locator(".flash").inner_text()
    check_page(specialist, "message-with-document", language)
    assert specialist.locator("a", has_text="spravka.pdf").count() == 1

    # The partner opens the document, records its own legal basis and assigns the referral.
    sign_in(intake, agencies.partner.staff["intake"])
    reload_until(intake, referral_path, "spravka.pdf")
    href = intake.locator("a", has_text="spravka.pdf").get_attribute("href")
    assert href is not None
    assert intake.request.get(href).body() == REPORT
    intake.select_option("#own-reference", "120-FZ art. 9")
    intake.fill("#own-justification", "Постановление комиссии обязывает хранить материалы о ребёнке")
    intake.click(f"form[action='{referral_path}/legal-basis'] button[type=submit]")
    assert say["basis"] in intake.locator(".flash").inner_text()
    intake.select_option("#assignee", index=1)
    intake.click(f"form[action='{referral_path}/assign'] button[type=submit]")
    assert say["assigned"] in intake.locator(".flash").inner_text()
    check_page(intake, "referral-own-basis-assigned", language)
