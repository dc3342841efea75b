"""In a real browser: a specialist records a consent and sends a referral; the partner's intake officer accepts and
completes it; the specialist sees the outcome; a third agency's user gets 404 on every page of it. Once in English,
once in Russian, with an accessibility check and a screenshot of each main page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import (
    Agencies,
    check_page,
    choose_partner,
    fill_case,
    fill_consent,
    find_in_directory,
    reload_until,
    sign_in,
)

# What each page must say, in the language of the run.
TEXTS = {
    "en": {
        "dashboard": "Dashboard",
        "case_opened": "The case is opened.",
        "consent_recorded": "The consent is recorded.",
        "why_not": "No active consent of child 1 covers this",
        "sent": "The referral is sent.",
        "inbox": "Inbox",
        "updated": "The referral's status is updated.",
        "resolved": "Resolved",
        "not_found": "Page not found",
        "signed_out": "You have signed out.",
    },
    "ru": {
        "dashboard": "Рабочий стол",
        "case_opened": "Случай открыт.",
        "consent_recorded": "Согласие сохранено.",
        "why_not": "Нет действующего согласия (child 1)",
        "sent": "Направление отправлено.",
        "inbox": "Входящие",
        "updated": "Статус направления изменён.",
        "resolved": "Решено",
        "not_found": "Страница не найдена",
        "signed_out": "Вы вышли из системы.",
    },
}


@pytest.mark.parametrize("language", ["en", "ru"])
def test_consent_referral_outcome_and_isolation(
    language: str, agencies: Agencies, new_page: Callable[[str], Page]
) -> None:
    say = TEXTS[language]
    specialist, intake, outsider = new_page(language), new_page(language), new_page(language)

    # The sign-in page, then the specialist's dashboard.
    specialist.goto("/login")
    check_page(specialist, "sign-in", language)
    sign_in(specialist, agencies.centre.staff["specialist"])
    assert specialist.url.endswith("/dashboard")
    assert say["dashboard"] in specialist.locator("h1").inner_text()
    check_page(specialist, "dashboard", language)

    # A case for a child.
    specialist.click("main a[href='/cases/new']")
    check_page(specialist, "case-new", language)
    case_path = fill_case(specialist)
    assert say["case_opened"] in specialist.locator(".flash").inner_text()
    check_page(specialist, "case", language)

    # Without a consent the composer (linked from the case) shows why nothing can be ticked.
    specialist.click(f"a[href='{case_path}/referrals/new']")
    find_in_directory(specialist, agencies.partner.id)
    specialist.check(f"#to-{agencies.partner.id}")
    specialist.click("form[method=get]:has(#purpose-choice) button[type=submit]")
    assert specialist.locator("#cat-identity").is_disabled()
    assert say["why_not"] in specialist.locator("#why-identity").inner_text()

    # The parent's consent, with the signed form uploaded.
    specialist.goto(f"{case_path}/consents/new")
    check_page(specialist, "consent-form", language)
    fill_consent(specialist)
    assert say["consent_recorded"] in specialist.locator(".flash").inner_text()

    # The composer: the partner from the directory, only consented categories may be ticked.
    choose_partner(specialist, case_path, agencies.partner.id)
    assert specialist.locator("#cat-identity").is_enabled()
    assert specialist.locator("#cat-health").is_disabled()
    check_page(specialist, "composer", language)
    specialist.check("#cat-identity")
    specialist.check("#cat-social_assessment")
    specialist.select_option("#urgency", "urgent")
    specialist.fill("#problem", "Ребёнок не посещает школу")
    specialist.fill("#requested_service", "Помочь с местом в школе")
    specialist.fill("#respond_by", (dt.date.today() + dt.timedelta(days=3)).isoformat())
    specialist.click("form[method=post]:has(#problem) button[type=submit]")
    assert say["sent"] in specialist.locator(".flash").inner_text()
    referral_path = urlparse(specialist.url).path
    check_page(specialist, "referral-sent", language)

    # The partner's intake officer: inbox, accept, complete with an outcome.
    sign_in(intake, agencies.partner.staff["intake"])
    assert intake.url.endswith("/inbox")
    reload_until(intake, "/inbox", referral_path)
    assert say["inbox"] in intake.locator("h1").inner_text()
    check_page(intake, "inbox", language)
    intake.click(f"a[href='{referral_path}']")
    expect(intake.locator("main")).to_contain_text("Мария Иванова")
    check_page(intake, "referral-received", language)
    intake.click("form:has(input[value=accepted]) button[type=submit]")
    assert say["updated"] in intake.locator(".flash").inner_text()
    intake.select_option("#to-final", "completed")
    intake.select_option("#outcome", "resolved")
    intake.fill("#note", "Место в школе № 5 найдено")
    intake.click("form.outcome-form button[type=submit]")
    assert say["updated"] in intake.locator(".flash").inner_text()
    check_page(intake, "referral-completed", language)

    # The specialist sees the outcome once the status envelope has arrived.
    reload_until(specialist, referral_path, "Место в школе № 5 найдено")
    assert say["resolved"] in specialist.locator(".outcome").inner_text()
    check_page(specialist, "referral-outcome", language)

    # A user of a third agency: every page of this case and referral is a 404, as if it did not exist.
    sign_in(outsider, agencies.third.staff["specialist"])
    for path in (case_path, f"{case_path}/consents/new", f"{case_path}/referrals/new", referral_path):
        response = outsider.goto(path)
        assert response is not None
        assert response.status == 404, path
        assert say["not_found"] in outsider.locator("h1").inner_text()
    check_page(outsider, "not-found", language)

    # Signing out ends the session.
    specialist.click("form.sign-out button[type=submit]")
    assert say["signed_out"] in specialist.locator(".flash").inner_text()
    specialist.goto(case_path)
    assert specialist.url.endswith("/login")
