"""In a real browser, in both languages: a specialist opening a case for a child the centre already knows is shown
the centre's case (never a partner's), opens it from the warning, and can still open the new case by ticking the box.
Each page passes the axe check and is saved as a screenshot."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import Agencies, LiveServer, case_system, check_page, fill_case, sign_in

# The warning's heading in each language.
HEADINGS = {"en": "Already known to your agency", "ru": "Уже известны вашей организации"}


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_child_already_on_a_case_is_pointed_out(
    agencies: Agencies, new_page: Callable[[str], Page], live_server: LiveServer, language: str
) -> None:
    heading = HEADINGS[language]
    with case_system(live_server, agencies.partner.id) as api:
        # The partner knows the same child: its case must never be named to the centre.
        child = {"ref": "child 1", "full_name": "Мария Иванова", "birth_date": "2015-04-02", "role": "child"}
        assert api.post("/cases", json={"title": "Опека", "subjects": [child]}).status_code == 201

    specialist = new_page(language)
    sign_in(specialist, agencies.centre.staff["specialist"])
    specialist.goto("/cases/new")
    first_case = fill_case(specialist)
    assert first_case != "/cases/new"

    specialist.goto("/cases/new")
    fill_case(specialist)
    warning = specialist.locator("#known")
    assert heading in warning.inner_text()
    assert warning.locator("a").count() == 1
    assert warning.locator("a").get_attribute("href") == first_case
    assert specialist.input_value("#subject-0-name") == "Мария Иванова"  # the form keeps what was typed
    check_page(specialist, "case-known-person", language)

    specialist.check("#known-checked")
    specialist.click("form[action='/cases/new'] button[type=submit]")
    specialist.wait_for_load_state()
    second_case = urlparse(specialist.url).path
    assert second_case not in (first_case, "/cases/new")
    check_page(specialist, "case-opened-anyway", language)

    specialist.goto("/cases/new")
    fill_case(specialist)
    specialist.locator("#known a").first.click()
    specialist.wait_for_load_state()
    assert urlparse(specialist.url).path in (first_case, second_case)
