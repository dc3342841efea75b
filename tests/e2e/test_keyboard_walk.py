"""The referral loop with the keyboard only: a specialist opens a case, records the parent's consent and sends a
referral; the partner's intake officer accepts it and records the outcome; the specialist reads it. Tab, typing,
Space and Enter only (signing in aside, as in the other walks), so every step is reachable and operable without a
mouse."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlparse

from playwright.sync_api import Page, expect

from tests.e2e.browser import Agencies, find_in_directory, reload_until, sign_in, tab_to

OUTCOME = "Место в кружке найдено"


def _type_into(page: Page, values: dict[str, str]) -> None:
    for selector, text in values.items():
        tab_to(page, selector)
        page.keyboard.type(text)


def _press_button(page: Page, selector: str, then: str) -> None:
    """Reach the button with Tab, press Enter, and wait for the page the form leads to (a path pattern)."""
    tab_to(page, selector)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(then))


def _arrow_to_radio(page: Page, group: str, radio_id: str, *, within: int = 60) -> None:
    """Tab into a group of radio buttons, then the arrow keys to the one wanted (which checks it), as a keyboard
    moves within a radio group."""
    tab_to(page, group)
    for _ in range(within):
        if page.evaluate("id => document.activeElement !== null && document.activeElement.id === id", radio_id):
            if not page.locator(f"#{radio_id}").is_checked():  # Tab lands on a group's first radio unchecked
                page.keyboard.press("Space")
            assert page.locator(f"#{radio_id}").is_checked()
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"#{radio_id} is not reached with the arrow keys on {page.url}")


def test_open_a_case_consent_send_accept_and_outcome_with_the_keyboard_only(
    agencies: Agencies, new_page: Callable[[str], Page]
) -> None:
    specialist, intake = new_page("ru"), new_page("ru")
    sign_in(specialist, agencies.centre.staff["specialist"])
    specialist.goto("/dashboard")

    # Open a case.
    _press_button(specialist, "main a[href='/cases/new']", r"/cases/new$")
    _type_into(specialist, {"#title": "Сидоровы: досуг", "#subject-0-name": "Павел Сидоров", "#needs-client": "Досуг"})
    _press_button(specialist, "form[action='/cases/new'] button[type=submit]", r"/cases/[0-9a-f-]+$")
    case_path = urlparse(specialist.url).path

    # The parent's consent: who gave it, two categories, guardianship bodies as recipients.
    _press_button(specialist, f"main a[href='{case_path}/consents/new']", r"/consents/new$")
    _type_into(specialist, {"#given_by_name": "Ольга Сидорова"})
    for box in ("#category-identity", "#category-social_assessment", "#kind-guardianship_body"):
        tab_to(specialist, box)
        specialist.keyboard.press("Space")
    _press_button(
        specialist, "form[action$='/consents/new'] button[type=submit]:not([name=agencies])", re.escape(case_path) + "$"
    )
    expect(specialist.locator(".flash")).to_contain_text("Согласие сохранено.")

    # The composer: the partner from the directory, the consented categories, the problem and the service.
    _press_button(specialist, f"main a[href='{case_path}/referrals/new']", r"/referrals/new")
    find_in_directory(specialist, agencies.partner.id, keyboard=True)
    _arrow_to_radio(specialist, "input[name=to]", f"to-{agencies.partner.id}")
    _press_button(specialist, "form[method=get]:has(#purpose-choice) button[type=submit]", r"/referrals/new\?")
    for box in ("#cat-identity", "#cat-social_assessment"):
        tab_to(specialist, box)
        specialist.keyboard.press("Space")
    _type_into(specialist, {"#problem": "Нет занятий после школы", "#requested_service": "Кружок рядом с домом"})
    _press_button(specialist, "form[method=post]:has(#problem) button[type=submit]", r"/referrals/[0-9a-f-]+$")
    expect(specialist.locator(".flash")).to_contain_text("Направление отправлено.")
    referral_path = urlparse(specialist.url).path

    # The partner's intake officer: from the inbox to the referral, accepted, completed with its outcome.
    sign_in(intake, agencies.partner.staff["intake"])
    reload_until(intake, "/inbox", referral_path)
    _press_button(intake, f"main a[href='{referral_path}']", re.escape(referral_path) + "$")
    _press_button(intake, "form:has(input[value=accepted]) button[type=submit]", re.escape(referral_path) + "$")
    expect(intake.locator(".flash")).to_contain_text("Статус направления изменён.")
    _type_into(intake, {"#note": OUTCOME})  # the result and the outcome keep their first choices: completed, resolved
    tab_to(intake, "form.outcome-form button[type=submit]")
    intake.keyboard.press("Enter")
    expect(intake.locator(".outcome")).to_contain_text("Решено")
    expect(intake.locator("main")).to_contain_text(OUTCOME)

    # The specialist reads the outcome on the referral's page, reached from the dashboard by the keyboard.
    reload_until(specialist, referral_path, OUTCOME)
    specialist.goto("/dashboard")
    _press_button(specialist, f"main a[href='{referral_path}']", re.escape(referral_path) + "$")
    expect(specialist.locator(".outcome")).to_contain_text("Решено")
    expect(specialist.locator("main")).to_contain_text(OUTCOME)
