"""In a real browser, in both languages: the centre's DPO searches the audit trail and reads it in words. Colleagues
appear by name and email, the centre's own system by its name, the partner by organisation and role (never its
staff's names), actions as sentences with their codes one click away; the action filter is grouped by area with
plain labels; results come by day, a page at a time. Each page passes the axe check and is saved as a screenshot."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, Page

from audit.events import Action
from gateway.web.dpo_words import ACTION_GROUPS
from gateway.web.paging import AUDIT_EVENTS_PER_PAGE
from tests.e2e.browser import Agencies, LiveServer, case_system, check_page, reload_until, shared_referral, sign_in

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What the page says, in each language: some actions' sentences, the intake role, the system's kind, a refusal and
# the next page's link.
TEXTS = {
    "en": {
        "read": "A referral was viewed",
        "opened": "A new case was opened",
        "listed": "The list of cases was viewed",
        "failed": "A sign-in was refused",
        "signed_in": "A member of staff signed in",
        "only": "Only what this member of staff or system did",
        "intake": "Intake officer",
        "system": "Agency system",
        "refused": "Refused",
        "next": "Next page",
    },
    "ru": {
        "read": "Просмотрено направление",
        "opened": "Заведено новое дело",
        "listed": "Просмотрен список дел",
        "failed": "Во входе отказано",
        "signed_in": "Сотрудник вошёл в систему",
        "only": "Только действия этого сотрудника или системы",
        "intake": "Специалист по приёму",
        "system": "Информационная система",
        "refused": "Отказано",
        "next": "Следующая страница",
    },
}
# More events than one page holds, so that the search has a second page.
EXTRA_EVENTS = 30
# A page of events with the form and the day headings: about two screens at 1366x768, one line an event (it was
# 5,800 px for a handful of events when each showed its ids).
COMPACT_PX = 2_000


def _rows(page: Page) -> list[str]:
    """The ids of the events listed, in order (each row is the event's anchor)."""
    return [str(r.get_attribute("id")) for r in page.locator("table.events tbody tr[id^='event-']").all()]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_dpo_reads_the_trail_in_words(
    agencies: Agencies, live_server: LiveServer, new_page: Callable[[str], Page], language: str
) -> None:
    words = TEXTS[language]
    centre, partner = agencies.centre, agencies.partner
    with case_system(live_server, centre.id) as api:
        _, referral_id = shared_referral(api, partner.id)
        for _ in range(EXTRA_EVENTS):
            assert api.get("/cases").status_code == 200

    # A colleague signs in and an administrator mistypes their password: both land in the centre's trail.
    specialist = new_page(language)
    sign_in(specialist, centre.staff["specialist"])
    mistyped = new_page(language)
    mistyped.goto("/login")
    mistyped.fill("#email", centre.staff["admin"].email)
    mistyped.fill("#password", "not the password")
    mistyped.click("form[action='/login'] button[type=submit]")
    # The partner's intake officer opens the referral; the read reaches the centre's trail as an access receipt.
    intake = new_page(language)
    sign_in(intake, partner.staff["intake"])
    reload_until(intake, "/inbox", f"/referrals/{referral_id}")
    intake.goto(f"/referrals/{referral_id}")

    dpo = new_page(language)
    sign_in(dpo, centre.staff["dpo"])
    reload_until(dpo, f"/dpo?action={Action.EXCHANGE_REFERRAL_READ}", partner.name)
    dpo.goto("/dpo")
    check_page(dpo, "dpo-search-words", language)
    shown = dpo.locator("table.events").inner_text()
    # Nobody and nothing appears as an id; the codes are behind the sentences; the DPO's own searches by name.
    assert UUID.findall(shown) == []
    assert "exchange:" not in shown
    assert "audit:" not in shown
    assert centre.staff["dpo"].display_name in shown
    assert centre.staff["dpo"].email in shown
    assert dpo.locator("table.events th[scope=rowgroup]").count() >= 1  # by day
    rows = _rows(dpo)
    assert len(rows) == AUDIT_EVENTS_PER_PAGE
    height = dpo.evaluate("document.documentElement.scrollHeight")
    assert height < COMPACT_PX, f"a page of events is {height} px tall"
    assert partner.staff["intake"].display_name not in dpo.content()  # a partner's staff are never named
    assert partner.staff["intake"].email not in dpo.content()

    # The next page: older events, none of those already shown.
    dpo.click(f"nav.pager a:has-text('{words['next']}')")
    dpo.wait_for_url(re.compile(r"cursor="))
    older = _rows(dpo)
    assert older
    assert not set(older) & set(rows)
    check_page(dpo, "dpo-search-next-page", language)

    # The filter: grouped by area, every action by its sentence.
    dpo.goto("/dpo")
    assert dpo.locator("#action optgroup").count() == len(ACTION_GROUPS)
    labels = dpo.locator("#action optgroup option").all_inner_texts()
    assert len(labels) == len(Action)
    assert [label for label in labels if ":" in label or UUID.search(label)] == []

    # Chosen by its words: the partner's read, by organisation and role, its code one click away.
    row = _search(dpo, words["read"]).filter(has_text=partner.name).first
    assert words["intake"] in row.inner_text()
    assert "exchange:referral:read" not in row.inner_text()
    row.locator("summary").click()
    assert "exchange:referral:read" in row.inner_text()
    check_page(dpo, "dpo-search-code-shown", language)
    # The centre's own system by its name; a colleague by name and email; a refusal says so.
    row = _search(dpo, words["opened"]).first
    assert "agency system" in row.inner_text()
    assert words["system"] in row.inner_text()
    row = _search(dpo, words["listed"]).first
    assert "agency system" in row.inner_text()
    row = _search(dpo, words["failed"]).filter(has_text=centre.staff["admin"].display_name).first
    assert centre.staff["admin"].email in row.inner_text()
    assert words["refused"] in row.inner_text()
    check_page(dpo, "dpo-search-refused", language)
    colleague = centre.staff["specialist"]
    row = _search(dpo, words["signed_in"]).filter(has_text=colleague.display_name).first
    assert colleague.email in row.inner_text()

    # A colleague's name leads to everything they did, and the page says whose events these are.
    row.get_by_role("link", name=colleague.display_name).click()
    dpo.wait_for_url(re.compile(r"actor="))
    assert colleague.display_name in dpo.locator("p", has_text=words["only"]).inner_text()
    theirs = dpo.locator("table.events tbody tr[id^='event-']").all_inner_texts()
    assert len(theirs) >= 2  # signing in, and the list of referrals their dashboard showed
    assert all(colleague.display_name in text for text in theirs)
    check_page(dpo, "dpo-search-colleague", language)


def _search(page: Page, sentence: str) -> Locator:
    """The rows the search finds for the action chosen in the filter by its sentence; each of them says it."""
    page.select_option("#action", label=sentence)
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    rows = page.locator("table.events tbody tr[id^='event-']")
    assert rows.count() >= 1
    assert all(sentence in text for text in rows.all_inner_texts())
    return rows
