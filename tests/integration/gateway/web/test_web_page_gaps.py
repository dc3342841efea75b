"""The staff pages' smaller gaps over HTTP (no browser): a document attached to a thread message, the recipient's own
legal basis, the key worker chosen on the case form, assigning an incoming referral (pages and API), the consent
form's pages of agencies, and invitation links sent by email."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

import httpx
import pytest

from gateway.runtime import Runtime
from gateway.web import casework
from tenants.models import Role, Tenant, TenantKind
from tests.factories import access_token, make_client, make_tenant
from tests.integration.helpers.agencies import Agency
from tests.integration.helpers.web import Client, act_as, form, ok, referral_fields, staff
from tests.polling import eventually

PDF = b"%PDF-1.4 school report"


def location(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:2000]
    return response.headers["location"]


@dataclass(frozen=True, slots=True)
class Exchange:
    centre: Tenant
    opeka: Tenant
    specialist: str
    intake: str
    case_path: str
    referral_path: str


def consent_form(subject_id: str, categories: tuple[str, ...], **recipients: object) -> dict[str, object]:
    """The consent form as Masha's mother signed it, for these categories and `recipients`, valid for 200 days."""
    return {
        "subject_id": subject_id,
        "given_by_name": "Anna Ivanova",
        "relation": "parent",
        "purposes": "social_support",
        "categories": list(categories),
        "valid_until": (dt.date.today() + dt.timedelta(days=200)).isoformat(),
        **recipients,
    }


async def sent_referral(api: Client, runtime: Runtime, *, categories: tuple[str, ...]) -> Exchange:
    """A centre's specialist opens a case for Masha, records her mother's consent to share `categories` with any
    guardianship body and refers her to Opeka through the pages; Opeka's intake officer then finds it in the inbox."""
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    opeka = await make_tenant(runtime, kind=TenantKind.GUARDIANSHIP_BODY, name="Opeka")
    specialist = await staff(runtime, centre, Role.SPECIALIST)
    intake = await staff(runtime, opeka, Role.INTAKE)
    act_as(api, specialist)
    fields = {
        "title": "Family Ivanov",
        "subject-0-name": "Masha Ivanova",
        "subject-0-role": "child",
        "subject-0-birth": "2015-04-02",
    }
    case_path = location(await form(api, "/cases/new", fields))
    subject = re.search(
        r'name="subject_id" required>\s*<option value="([0-9a-f-]+)"', ok(await api.get(f"{case_path}/consents/new"))
    )
    assert subject is not None
    consent = consent_form(subject.group(1), categories, recipient_kinds="guardianship_body")
    signed = {"evidence": ("consent.pdf", b"%PDF-1.4 signed form", "application/pdf")}
    response = await form(api, f"{case_path}/consents/new", consent, files=signed)
    assert location(response) == case_path, ok(await api.get(location(response)))
    referral = referral_fields({"subjects": [{"id": subject.group(1)}]}, opeka.id) | {"categories": list(categories)}
    referral_path = location(await form(api, f"{case_path}/referrals/new", referral))
    act_as(api, intake)

    async def arrived() -> str | None:
        return referral_path if referral_path in ok(await api.get("/inbox")) else None

    await eventually(arrived)
    return Exchange(centre, opeka, specialist, intake, case_path, referral_path)


async def message(api: Client, referral_path: str, body: str, *, attachment: tuple[str, bytes, str]) -> str:
    """Write `body` to the partner with a file attached, and the page the form leads back to."""
    response = await form(api, f"{referral_path}/messages", {"body": body}, files={"attachment": attachment})
    return ok(await api.get(location(response)))


async def test_a_message_carries_a_document_to_the_partner(english: Client, runtime: Runtime) -> None:
    api = english
    sent = await sent_referral(api, runtime, categories=("identity", "documents"))
    act_as(api, sent.specialist)
    page = ok(await api.get(sent.referral_path))
    assert 'enctype="multipart/form-data"' in page
    assert '<label for="attachment">Attach a document (optional)</label>' in page

    # A file that is not what it says it is is refused in words, and neither the message nor the file is kept.
    refused = await message(api, sent.referral_path, "The report, as a picture", attachment=("r.png", PDF, "image/png"))
    assert "The file&#39;s content does not match its type" in refused
    assert "The report, as a picture" not in refused

    page = await message(
        api,
        sent.referral_path,
        "The school report is attached.",
        attachment=("school-report.pdf", PDF, "application/pdf"),
    )
    assert "The message is sent to the partner." in page
    own = re.search(r'<a href="(/documents/[0-9a-f-]+)">school-report.pdf</a>', page)
    assert own is not None
    download = await api.get(own.group(1))
    assert download.status_code == 200
    assert download.content == PDF

    # The partner receives the document with the message, under its own keys, and opens it from its page.
    act_as(api, sent.intake)

    async def received() -> str | None:
        text = ok(await api.get(sent.referral_path))
        return text if "The school report is attached." in text else None

    theirs = re.search(r'<a href="(/documents/[0-9a-f-]+)">school-report.pdf</a>', await eventually(received))
    assert theirs is not None
    assert theirs.group(1) != own.group(1)
    assert (await api.get(theirs.group(1))).content == PDF
    # The sender's copy is another agency's document: it answers like one that does not exist.
    assert (await api.get(own.group(1))).status_code == 404
    assert (await api.get(f"/documents/{uuid.uuid4()}")).status_code == 404


async def test_a_referral_without_documents_refuses_an_attachment(english: Client, runtime: Runtime) -> None:
    api = english
    sent = await sent_referral(api, runtime, categories=("identity",))
    act_as(api, sent.specialist)
    page = ok(await api.get(sent.referral_path))
    assert "This referral does not share documents" in page
    refused = await message(
        api, sent.referral_path, "A report", attachment=("report.txt", b"plain words", "text/plain")
    )
    assert "No consent or legal basis covers this share, so nothing was sent." in refused
    # Without a file the message goes.
    response = await form(api, f"{sent.referral_path}/messages", {"body": "A question, without papers"})
    assert "The message is sent to the partner." in ok(await api.get(location(response)))


JUSTIFICATION = "The commission's resolution obliges us to keep the file for the child's protection"


async def test_the_recipient_records_its_own_legal_basis(english: Client, runtime: Runtime) -> None:
    api = english
    sent = await sent_referral(api, runtime, categories=("identity",))
    page = ok(await api.get(sent.referral_path))
    assert '<label for="own-reference">Provision of the law</label>' in page
    assert '<option value="120-FZ art. 9">' in page

    path = f"{sent.referral_path}/legal-basis"
    response = await form(api, path, {"reference": "120-FZ art. 9", "justification": "too short"})
    assert "Explain in at least 20 characters" in ok(await api.get(location(response)))
    response = await form(api, path, {"reference": "no such law", "justification": JUSTIFICATION})
    assert "Choose the provision of the law from the list." in ok(await api.get(location(response)))

    response = await form(api, path, {"reference": "120-FZ art. 9", "justification": JUSTIFICATION})
    page = ok(await api.get(location(response)))
    assert "Your organisation&#39;s own legal basis is recorded" in page
    assert JUSTIFICATION.replace("'", "&#39;") in page
    assert '<option value="120-FZ art. 9" selected>' in page

    # The sender's page has no such form, and a post to it from the sender is refused in words.
    act_as(api, sent.specialist)
    assert "Your own legal basis" not in ok(await api.get(sent.referral_path))
    response = await form(api, path, {"reference": "120-FZ art. 9", "justification": JUSTIFICATION})
    assert "You are not allowed to do this." in ok(await api.get(location(response)))
    # Another agency's referral answers like a missing one.
    response = await form(
        api, f"/referrals/{uuid.uuid4()}/legal-basis", {"reference": "120-FZ art. 9", "justification": JUSTIFICATION}
    )
    assert response.status_code == 404


async def test_a_case_is_opened_for_a_colleague_as_its_key_worker(english: Client, runtime: Runtime) -> None:
    api = english
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    other = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Other centre")
    specialist = await staff(runtime, centre, Role.SPECIALIST)
    for tenant, role in ((centre, Role.SUPERVISOR), (centre, Role.INTAKE), (other, Role.SPECIALIST)):
        await staff(runtime, tenant, role)
    act_as(api, specialist)
    page = ok(await api.get("/cases/new"))
    assert '<label for="key-worker">Key worker</label>' in page
    options = dict(re.findall(r'<option value="([0-9a-f-]+)"(?: selected)?>([^<]+)</option>', page))
    selected = re.search(r'<option value="([0-9a-f-]+)" selected>', page)
    assert selected is not None  # the person opening the case, unless they choose someone else
    # Specialists and supervisors of this organisation only: no intake officer, nobody of another organisation.
    assert len(options) == 2
    colleague = next(user_id for user_id in options if user_id != selected.group(1))

    fields = {"title": "Family Petrov", "subject-0-name": "Petya Petrov", "subject-0-role": "child"}
    response = await form(api, "/cases/new", fields | {"key-worker": str(uuid.uuid4())})
    assert response.status_code == 400
    assert "Choose the key worker from the list." in response.text
    assert 'value="Family Petrov"' in response.text
    case_path = location(await form(api, "/cases/new", fields | {"key-worker": colleague}))
    assert f"<dd>{options[colleague].split(' (')[0]}</dd>" in ok(await api.get(case_path))


async def test_an_incoming_referral_is_assigned_on_its_page_and_through_the_api(
    english: Client, runtime: Runtime
) -> None:
    api = english
    sent = await sent_referral(api, runtime, categories=("identity",))
    await staff(runtime, sent.opeka, Role.DPO)  # works on no referral: never offered, never accepted
    page = ok(await api.get(sent.referral_path))
    workers = re.findall(r'<option value="([0-9a-f-]+)"[^>]*>[^<]*</option>', page.split('id="assignee"')[1])
    assert len(workers) == 1  # the intake officer; not the DPO
    referral_id = sent.referral_path.rsplit("/", 1)[1]

    intake = await make_client(runtime, sent.opeka, role=Role.INTAKE)
    agency = Agency(api, intake, await access_token(api, intake))
    path = f"/api/v1/referrals/{referral_id}/assignment"
    response = await agency.post(path, {"assignee_id": workers[0]})
    assert response.status_code == 200, response.text
    assert response.json()["assignee_id"] == workers[0]
    assert (await agency.get(f"/api/v1/referrals/{referral_id}")).json()["assignee_id"] == workers[0]
    assert f'<option value="{workers[0]}" selected>' in ok(await api.get(sent.referral_path))

    # A worker who is not there (or not of this organisation) and a referral that is not there answer alike: 404.
    for where, body in (
        (path, {"assignee_id": str(uuid.uuid4())}),
        (f"/api/v1/referrals/{uuid.uuid4()}/assignment", {"assignee_id": None}),
    ):
        response = await agency.post(where, body)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (await agency.post(path, {"assignee": workers[0]})).status_code == 400
    response = await agency.post(path, {"assignee_id": None})
    assert response.status_code == 200
    assert "assignee_id" not in response.json()

    # Only intake officers and supervisors assign; the sender never learns who works on it.
    specialist = await make_client(runtime, sent.opeka, role=Role.SPECIALIST)
    assert (
        await Agency(api, specialist, await access_token(api, specialist)).post(path, {"assignee_id": None})
    ).status_code == 403
    sender = await make_client(runtime, sent.centre, role=Role.SUPERVISOR)
    sender_agency = Agency(api, sender, await access_token(api, sender))
    assert "assignee_id" not in (await sender_agency.get(f"/api/v1/referrals/{referral_id}")).json()
    response = await sender_agency.post(path, {"assignee_id": None})
    assert response.status_code == 400, response.text


async def test_the_consent_form_pages_its_agencies_and_keeps_what_was_filled_in(
    english: Client, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = english
    monkeypatch.setattr(casework, "AGENCIES_PER_PAGE", 2)
    centre = await make_tenant(runtime, kind=TenantKind.SOCIAL_CENTRE, name="Centre Semya")
    partners = [await make_tenant(runtime, kind=TenantKind.NGO, name=f"Agency {n}") for n in "ABCDE"]
    act_as(api, await staff(runtime, centre, Role.SPECIALIST))
    fields = {"title": "Family Ivanov", "subject-0-name": "Masha Ivanova", "subject-0-birth": "2015-04-02"}
    case_path = location(await form(api, "/cases/new", fields))
    first = ok(await api.get(f"{case_path}/consents/new"))
    assert "Agencies 1–2 of 5." in first
    assert "Agency A" in first
    assert "Agency C" not in first
    assert "Previous agencies" not in first
    subject = re.search(r'<option value="([0-9a-f-]+)"', first.split('id="subject_id"')[1])
    assert subject is not None

    filled = consent_form(subject.group(1), ("identity", "family"), recipient_tenants=str(partners[0].id))
    # "Next agencies" shows the next page with everything kept: Agency A, ticked on the first page, goes along.
    second = await form(api, f"{case_path}/consents/new", filled | {"agencies": "2"})
    text = ok(second)
    assert "Agencies 3–4 of 5." in text
    assert "Chosen on other pages: Agency A" in text
    assert f'type="hidden" name="recipient_tenants" value="{partners[0].id}"' in text
    assert 'value="Anna Ivanova"' in text
    assert 'value="family" checked' in text
    assert "Previous agencies" in text
    assert "Next agencies" in text
    # A page link no button sends goes back to the first page.
    assert "Agencies 1–2 of 5." in ok(await form(api, f"{case_path}/consents/new", filled | {"agencies": "x"}))

    # Agency D ticked on the second page, with A from the first: the consent names both.
    chosen = filled | {"recipient_tenants": [str(partners[0].id), str(partners[3].id)]}
    response = await form(
        api, f"{case_path}/consents/new", chosen, files={"evidence": ("c.pdf", b"%PDF-1 s", "application/pdf")}
    )
    assert location(response) == case_path
    client = await make_client(runtime, centre, role=Role.SPECIALIST)
    consents = await Agency(api, client, await access_token(api, client)).get(f"/api/v1{case_path}/consents")
    [recorded] = consents.json()["items"]
    assert sorted(recorded["recipients"]["tenants"]) == sorted([str(partners[0].id), str(partners[3].id)])
