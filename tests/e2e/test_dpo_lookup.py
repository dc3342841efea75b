"""In a real browser, in both languages: the centre's DPO finds a person by full name and birth date (typed in another
case, with е for ё) and SNILS, reads their subject access report and downloads it; a search that matches no one says
so without listing anyone. Each page passes the axe check and is saved as a screenshot."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import Agencies, LiveServer, case_system, check_page, sign_in

# The heading of the form, the answer to a search that matches no one and the words for opening a case, in each
# language.
TEXTS = {
    "en": ("Find a person", "only an exact match is found", "A new case was opened"),
    "ru": ("Найти человека", "находится только точное совпадение", "Заведено новое дело"),
}


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_dpo_finds_a_person_by_name_and_birth_date(
    agencies: Agencies, live_server: LiveServer, new_page: Callable[[str], Page], language: str
) -> None:
    heading, no_match, case_opened = TEXTS[language]
    with case_system(live_server, agencies.centre.id) as api:
        child = {
            "ref": "child 1",
            "full_name": "Сёмина Алёна Игоревна",
            "birth_date": "2014-03-05",
            "role": "child",
            "identifiers": {"snils": "123-456-789 64"},
        }
        created = api.post("/cases", json={"title": "Сёмины", "subjects": [child]})
        assert created.status_code == 201, created.text

    dpo = new_page(language)
    sign_in(dpo, agencies.centre.staff["dpo"])
    dpo.goto("/dpo/subjects")
    assert dpo.locator("h2", has_text=heading).count() == 1
    check_page(dpo, "dpo-lookup-form", language)

    dpo.fill("#full_name", "СЕМИНА  алена игоревна")
    dpo.fill("#birth_date", "2014-03-05")
    dpo.fill("#snils", "12345678964")
    dpo.click("form#lookup button[type=submit]:not([name])")
    dpo.wait_for_url("**/dpo/subjects/lookup")
    table = dpo.locator("table").inner_text()
    assert case_opened in table
    assert "exchange:case:create" in dpo.locator("table").inner_html()  # the code, one click away
    assert "Алёна" not in dpo.content()  # the report names no one; the form shows only what was typed
    assert dpo.input_value("#full_name") == "СЕМИНА  алена игоревна"
    check_page(dpo, "dpo-lookup-report", language)

    with dpo.expect_download() as csv_download:
        dpo.click("button[form=lookup][value=csv]")
    assert csv_download.value.suggested_filename == "subject-access-report.csv"
    assert "exchange:case:create" in csv_download.value.path().read_text(encoding="utf-8")
    with dpo.expect_download() as pdf_download:
        dpo.click("button[form=lookup][value=pdf]")
    assert pdf_download.value.path().read_bytes()[:5] == b"%PDF-"

    # A day off: no one, and no hint of who else there is.
    dpo.fill("#birth_date", "2014-03-06")
    dpo.click("form#lookup button[type=submit]:not([name])")
    assert no_match in dpo.locator("#lookup-error").inner_text()
    assert dpo.locator("table").count() == 0
    check_page(dpo, "dpo-lookup-no-match", language)

    # A partner's DPO finds nothing of the centre's people.
    partner = new_page(language)
    sign_in(partner, agencies.partner.staff["dpo"])
    partner.goto("/dpo/subjects")
    partner.fill("#full_name", "Сёмина Алёна Игоревна")
    partner.fill("#birth_date", "2014-03-05")
    partner.click("form#lookup button[type=submit]:not([name])")
    assert no_match in partner.locator("#lookup-error").inner_text()
