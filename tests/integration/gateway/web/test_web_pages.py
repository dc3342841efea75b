"""Staff pages over HTTP (no browser): the specialist and intake flow, Russian and English, and tenant isolation."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import httpx

from gateway.runtime import Runtime
from tenants.models import Role, TenantKind
from tests.factories import make_tenant
from tests.integration.helpers.web import (
    SESSION,
    Client,
    act_as,
    form,
    ok,
    staff,
)
from tests.polling import eventually


def location(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:2000]
    return response.headers["location"]


async def test_specialist_and_intake_flow_with_isolation(english: Client, runtime: Runtime) -> None:
    api = english
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    opeka = await make_tenant(runtime, kind=TenantKind.GUARDIANSHIP_BODY, name="Opeka")
    third = await make_tenant(runtime, kind=TenantKind.NGO, name="Third")
    specialist = await staff(runtime, centre, Role.SPECIALIST)
    intake = await staff(runtime, opeka, Role.INTAKE)
    outsider = await staff(runtime, third, Role.SPECIALIST, Role.INTAKE)

    act_as(api, specialist)
    assert location(await api.get("/")) == "/dashboard"
    ok(await api.get("/dashboard"))
    ok(await api.get("/cases/new"))
    response = await form(
        api,
        "/cases/new",
        {
            "title": "Family Ivanov",
            "subject-0-name": "Masha Ivanova",
            "subject-0-birth": "2015-04-02",
            "subject-0-role": "child",
            "subject-0-ref": "child 1",
            "needs-client": "school support",
        },
    )
    case_path = location(response)
    page = ok(await api.get(case_path))
    assert "The case is opened." in page
    assert "Masha Ivanova" in page
    case_id = case_path.rsplit("/", 1)[1]
    subject_id = re.search(
        r'name="subject_id" required>\s*<option value="([0-9a-f-]+)"', ok(await api.get(f"{case_path}/consents/new"))
    )
    assert subject_id is not None

    # The composer offers nothing before a consent, and says why.
    composer = ok(await api.get(f"{case_path}/referrals/new", params={"to": str(opeka.id)}))
    assert 'id="cat-identity" name="categories" value="identity" disabled' in composer
    assert "No active consent of child 1 covers this" in composer

    until = (dt.date.today() + dt.timedelta(days=200)).isoformat()
    response = await form(
        api,
        f"{case_path}/consents/new",
        {
            "subject_id": subject_id.group(1),
            "given_by_name": "Anna Ivanova",
            "relation": "parent",
            "purposes": "social_support",
            "categories": ["identity", "social_assessment"],
            "recipient_kinds": "guardianship_body",
            "valid_until": until,
        },
        files={"evidence": ("consent.pdf", b"%PDF-1.4 signed form", "application/pdf")},
    )
    assert location(response) == case_path
    page = ok(await api.get(case_path))
    assert "The consent is recorded." in page
    assert "Signed form" in page

    # A consent form with nothing ticked is refused with what to fix, and nothing is recorded.
    response = await form(api, f"{case_path}/consents/new", {"subject_id": subject_id.group(1), "valid_until": ""})
    refused = ok(await api.get(location(response)))
    assert "Enter the name of the person who signed." in refused
    assert "Tick at least one kind of data." in refused
    assert ok(await api.get(case_path)).count('action="/consents/') == 1

    composer = ok(await api.get(f"{case_path}/referrals/new", params={"to": str(opeka.id)}))
    assert 'value="identity">' in composer
    assert 'value="health" disabled' in composer
    referral = {
        "to": str(opeka.id),
        "purpose": "social_support",
        "basis": "consent",
        "subjects": subject_id.group(1),
        "kind": "referral",
        "urgency": "urgent",
        "problem": "No school place",
        "requested_service": "Arrange a place",
        "respond_by": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
        "complete_by": (dt.date.today() + dt.timedelta(days=20)).isoformat(),
    }
    response = await form(api, f"{case_path}/referrals/new", {**referral, "categories": ["identity", "health"]})
    assert response.status_code == 400
    assert "No active consent covers sharing" in response.text
    response = await form(api, f"{case_path}/referrals/new", {**referral, "categories": ["identity"]})
    referral_path = location(response)
    assert "The referral is sent." in ok(await api.get(referral_path))

    async def letter_ready() -> httpx.Response | None:
        response = await api.get(f"{referral_path}/letter.pdf")
        if response.status_code == 303:  # still being laid out: the referral page says so
            assert "The letter is still being prepared." in ok(await api.get(location(response)))
            return None
        return response

    letter = await eventually(letter_ready)
    assert letter.status_code == 200
    assert letter.headers["content-type"] == "application/pdf"
    assert letter.content.startswith(b"%PDF")

    act_as(api, intake)
    assert location(await api.get("/")) == "/inbox"

    async def arrived() -> str | None:
        text = ok(await api.get("/inbox"))
        return text if referral_path in text else None

    await eventually(arrived)

    async def letter_verified() -> str | None:
        text = ok(await api.get(referral_path))
        return text if "Signature valid" in text else None

    # The recipient's node checked the sender's signature on the letter when it arrived, and the page says so.
    page = await eventually(letter_verified)
    assert "Download the signed letter (PDF)" in page
    assert "Masha Ivanova" in page
    assert "No school place" in page
    assign_form = (
        r'<option value="([0-9a-f-]+)">[^<]*</option>\s*</select>\s*<button type="submit" class="small">Assign'
    )
    intake_id = re.search(assign_form, page)
    assert intake_id is not None
    assert "Nobody" in page
    assert referral_path not in ok(await api.get("/inbox", params={"tab": "mine"}))
    await form(api, f"{referral_path}/assign", {"assignee": intake_id.group(1)})
    assert "The referral is assigned." in ok(await api.get(referral_path))
    assert referral_path in ok(await api.get("/inbox", params={"tab": "mine"}))
    assert location(await form(api, f"{referral_path}/transition", {"to": "accepted"})) == referral_path
    assert "The referral&#39;s status is updated." in ok(await api.get(referral_path))
    await form(api, f"{referral_path}/messages", {"body": "Please send the school report."})
    response = await form(api, f"{referral_path}/transition", {"to": "completed", "outcome": ""})
    assert "Choose the outcome" in ok(await api.get(location(response)))
    await form(api, f"{referral_path}/transition", {"to": "completed", "outcome": "resolved", "note": "Place found"})
    assert "Resolved" in ok(await api.get(referral_path))
    # A worker of the recipient cannot open the sender's case.
    assert (await api.get(case_path)).status_code in (403, 404)

    act_as(api, specialist)

    async def outcome_seen() -> str | None:
        text = ok(await api.get(referral_path))
        return text if "Place found" in text else None

    seen = await eventually(outcome_seen)
    assert "Please send the school report." in seen
    assert 'action="/logout"' in seen  # the layout shows who is signed in, with the sign-out button

    # The family withdraws its consent: the partner keeps only a restricted copy, without the personal data.
    consent_id = re.search(r'action="/consents/([0-9a-f-]+)/withdraw"', ok(await api.get(case_path)))
    assert consent_id is not None
    response = await form(api, f"/consents/{consent_id.group(1)}/withdraw", {"case_id": case_id, "reason": "asked"})
    assert "The consent is withdrawn." in ok(await api.get(location(response)))
    act_as(api, intake)

    async def restricted() -> str | None:
        text = ok(await api.get(referral_path))
        return text if "The family withdrew the consent" in text else None

    shown = await eventually(restricted)
    assert "Masha Ivanova" not in shown
    assert "No school place" not in shown

    # Another agency: every one of these pages answers 404, exactly like a missing id.
    act_as(api, outsider)
    for path in (
        case_path,
        f"{case_path}/consents/new",
        f"{case_path}/referrals/new",
        referral_path,
        f"{referral_path}/letter.pdf",
        f"/referrals/{uuid.uuid4()}",
        f"/cases/{uuid.uuid4()}",
    ):
        response = await api.get(path)
        assert response.status_code == 404, path
        assert response.headers["cache-control"] == "no-store"
        assert "Page not found" in response.text
        assert "Traceback" not in response.text
    assert case_id not in (await api.get("/cases")).text


async def test_pages_speak_russian_by_default_and_the_switcher_saves_the_setting(api: Client, runtime: Runtime) -> None:
    centre = await make_tenant(runtime)
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))
    page = ok(await api.get("/dashboard"))
    assert '<html lang="ru">' in page
    assert "Выйти" in page
    response = await form(api, "/account/language", {"language": "en", "next": "/cases"})
    assert location(response) == "/cases"
    api.cookies.delete("cb_lang")  # the saved setting, not the cookie, keeps the language
    page = ok(await api.get("/cases"))
    assert '<html lang="en">' in page
    assert "The language is changed." in page
    # A foreign site cannot be the target of the switcher's redirect.
    assert location(await form(api, "/account/language", {"language": "ru", "next": "//evil.example/"})) == "/"


async def test_a_person_added_without_a_reference_is_named_by_role_in_the_pages_language(
    api: Client, runtime: Runtime
) -> None:
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Центр")
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))
    fields = {"title": "Ивановы", "subject-0-name": "Мария Иванова", "subject-0-role": "child", "needs-client": "школа"}
    fields |= {"subject-1-name": "Анна Иванова", "subject-1-role": "parent"}
    page = ok(await api.get(location(await form(api, "/cases/new", fields))))
    assert "ребёнок 1" in page
    assert "родитель 2" in page
    assert "child 1" not in page


async def test_the_switcher_works_before_signing_in(api: Client) -> None:
    assert '<html lang="ru">' in ok(await api.get("/login"))
    assert location(await form(api, "/account/language", {"language": "en", "next": "/login"})) == "/login"
    page = ok(await api.get("/login", headers={"Accept-Language": "ru"}))  # the choice wins over the browser's
    assert '<html lang="en">' in page
    assert "The language is changed." in page


async def test_signed_out_visitors_are_sent_to_sign_in_and_errors_are_pages(api: Client, runtime: Runtime) -> None:
    assert location(await api.get("/cases")) == "/login"
    api.cookies.set(SESSION, "not-a-session")
    assert location(await api.get("/cases")) == "/login?expired=1"
    assert "Your session has ended" not in ok(await api.get("/login"))
    assert "Сеанс завершён" in ok(await api.get("/login?expired=1"))
    missing = await api.get("/no/such/page", headers={"Accept-Language": "en"})
    assert missing.status_code == 404
    assert "Page not found" in missing.text
    problem = await api.get("/api/v1/cases")
    assert problem.headers["content-type"].startswith("application/problem+json")
    intake = await staff(runtime, await make_tenant(runtime), Role.INTAKE)
    act_as(api, intake)
    forbidden = await api.get("/cases", headers={"Accept-Language": "en"})
    assert forbidden.status_code == 403
    assert "Not allowed" in forbidden.text


async def test_the_composer_keeps_every_person_ticked(english: Client, runtime: Runtime) -> None:
    """Its first form is a GET with one `subjects` parameter per person ticked: all of them are kept, not the first."""
    api = english
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))
    people = {"subject-0-name": "Masha Ivanova", "subject-1-name": "Anna Ivanova", "subject-2-name": "Oleg Ivanov"}
    case_path = location(await form(api, "/cases/new", {"title": "Family Ivanov", **people}))
    page = ok(await api.get(f"{case_path}/referrals/new"))
    ids = re.findall(r'id="subj-([0-9a-f-]+)" name="subjects"', page)
    assert len(ids) == 3
    ticked = ok(await api.get(f"{case_path}/referrals/new", params={"subjects": ids[:2]}))
    checked = re.findall(r'id="subj-([0-9a-f-]+)" name="subjects" value="[0-9a-f-]+" checked', ticked)
    assert checked == ids[:2]
