"""In a real browser: the centre's DPO finds the partner intake officer's read in a subject access report and downloads
it as PDF and CSV; the tenant administrator invites a member of staff, registers and revokes an API client and rotates
the keys; the API reference at /schema renders with no request beyond the gateway. Each page passes the axe check and
is saved as a screenshot."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import zxingcpp
from joserfc.jwk import OKPKey
from PIL import Image
from playwright.sync_api import Page, Route

from tests.e2e.browser import (
    Agencies,
    LiveServer,
    case_system,
    check_page,
    reload_until,
    screenshot,
    shared_referral,
    sign_in,
)
from tests.factories import ClientKey, client_assertion, token_form


def test_the_dpo_finds_the_partners_read_and_downloads_the_report(
    agencies: Agencies, live_server: LiveServer, new_page: Callable[[str], Page]
) -> None:
    with case_system(live_server, agencies.centre.id) as api:
        child, referral_id = shared_referral(api, agencies.partner.id)

    # The partner's intake officer opens the referral: a read of the centre's family's data.
    intake = new_page("en")
    sign_in(intake, agencies.partner.staff["intake"])
    reload_until(intake, "/inbox", f"/referrals/{referral_id}")
    intake.goto(f"/referrals/{referral_id}")
    assert intake.locator("h1").count() == 1

    dpo = new_page("en")
    sign_in(dpo, agencies.centre.staff["dpo"])
    dpo.goto("/dpo")
    check_page(dpo, "dpo-search", "en")
    dpo.click("nav.tabs a[href='/dpo/subjects']")
    check_page(dpo, "dpo-subject-form", "en")
    # The partner's read reaches the centre's trail as an access receipt over the bus: look until it is there.
    for _ in range(60):
        dpo.fill("#subject_id", child)
        dpo.click("form[action='/dpo/subjects'] button[type=submit]")
        if agencies.partner.name in dpo.locator("table").inner_text(timeout=5_000):
            break
        dpo.wait_for_timeout(500)
    row = dpo.locator("tr", has_text=agencies.partner.name)
    assert "A referral was viewed" in row.inner_text()  # the action in words, its code behind them
    assert "exchange:referral:read" not in row.inner_text()
    row.locator("summary").click()
    assert "exchange:referral:read" in row.inner_text()
    assert "Intake officer" in row.inner_text()
    assert agencies.partner.staff["intake"].display_name not in dpo.content()  # a partner's staff stay unnamed
    assert "Мария" not in dpo.content()  # the report names no one
    check_page(dpo, "dpo-subject-report", "en")

    with dpo.expect_download() as pdf_download:
        dpo.click("a[href$='/report.pdf']")
    pdf = pdf_download.value
    assert pdf.suggested_filename == "subject-access-report.pdf"
    assert pdf.path().read_bytes()[:5] == b"%PDF-"
    with dpo.expect_download() as csv_download:
        dpo.click("a[href$='/report.csv']")
    csv_text = csv_download.value.path().read_text(encoding="utf-8")
    partner_rows = [line for line in csv_text.splitlines() if agencies.partner.name in line]
    assert any("exchange:referral:read" in line and "intake" in line for line in partner_rows)

    for path, name in (("/dpo/review", "dpo-review"), ("/dpo/anomalies", "dpo-anomalies")):
        dpo.goto(path)
        check_page(dpo, name, "en")
    dpo.goto("/dpo/verification")
    dpo.click("form[action='/dpo/verification'] button[type=submit]")
    assert "no problems were found" in dpo.locator(".flash").inner_text()
    check_page(dpo, "dpo-verification", "en")

    # A user of a third agency without the DPO role cannot open the console.
    outsider = new_page("en")
    sign_in(outsider, agencies.third.staff["specialist"])
    outsider.goto("/dpo/subjects")
    assert outsider.locator("h1").inner_text() == "Not allowed"


def test_an_administrator_invites_a_user_and_revokes_a_client(
    agencies: Agencies, live_server: LiveServer, new_page: Callable[[str], Page]
) -> None:
    admin = new_page("en")
    sign_in(admin, agencies.centre.staff["admin"])
    admin.goto("/admin")
    check_page(admin, "admin-staff", "en")

    email = f"new-{uuid.uuid4().hex[:8]}@semya.example"
    admin.click("main a[href='/admin/invite']")
    check_page(admin, "admin-invite", "en")
    admin.fill("#email", email)
    admin.fill("#display_name", "Анна Петрова")
    admin.check("#role-intake")
    admin.click("form[action='/admin/invite'] button[type=submit]")
    link = admin.input_value("#invitation-link")
    assert link.startswith(f"{live_server.base_url}/account/invitation/")
    check_page(admin, "admin-invited", "en")
    admin.click("a:has-text('Back to the account')")
    assert "Invited, not yet accepted" in admin.locator("main").inner_text()
    check_page(admin, "admin-user", "en")

    invitee = new_page("en")
    invitee.goto(link)
    check_page(invitee, "invitation", "en")
    invitee.fill("#new_password", "the newcomer's own passphrase")
    invitee.fill("#confirmation", "the newcomer's own passphrase")
    invitee.click("main form button[type=submit]")
    invitee.wait_for_url(re.compile(r"/login$"))
    assert "Your password is set." in invitee.locator(".flash").inner_text()
    invitee.fill("#email", email)
    invitee.fill("#password", "the newcomer's own passphrase")
    invitee.click("form[action='/login'] button[type=submit]")
    invitee.wait_for_url(re.compile(r"/account/second-factor/enrol$"))  # the second factor comes next
    # The setup QR code, as Chromium draws it, reads back (with an independent decoder) as the setup address shown.
    check_page(invitee, "enrol", "en")
    assert _scanned(invitee) == [invitee.locator("#totp-uri").inner_text()]
    invitee.select_option("#language-select", "ru")
    invitee.click("form.language-switch button[type=submit]")
    invitee.wait_for_url(re.compile(r"/account/second-factor/enrol$"))
    check_page(invitee, "enrol", "ru")
    assert _scanned(invitee) == [invitee.locator("#totp-uri").inner_text()]

    # An API client registered with its public key, then revoked.
    key = OKPKey.generate_key("Ed25519", {"kid": "e2e-desk"})
    admin.goto("/admin/clients/new")
    check_page(admin, "admin-client-new", "en")
    admin.fill("#name", "Intake desk")
    admin.fill("#jwk", json.dumps(key.as_dict(private=False)))
    admin.select_option("#role", "intake")
    admin.check("input[value='referrals:read']")
    admin.click("form[action='/admin/clients/new'] button[type=submit]")
    assert "The client was registered." in admin.locator(".flash").inner_text()
    client_id = re.search(r"client_id is ([0-9a-f-]{36})", admin.locator(".flash").inner_text())
    assert client_id is not None
    check_page(admin, "admin-clients", "en")
    token = _token(live_server, ClientKey(client_id.group(1), uuid.UUID(agencies.centre.id), key))
    assert _inbox_status(live_server, token) == 200

    row = admin.locator("tr", has_text="Intake desk")
    row.locator("input[name='confirm']").check()
    row.locator("button[type=submit]").click()
    assert "The client was revoked." in admin.locator(".flash").inner_text()
    assert _inbox_status(live_server, token) == 401  # its token stopped working at once

    admin.goto("/admin/keys")
    check_page(admin, "admin-keys", "en")
    admin.check("#confirm")
    admin.click("form[action='/admin/keys/rotate'] button[type=submit]")
    assert "New keys are in use." in admin.locator(".flash").inner_text()

    # The organisation's clock: the administrator moves it east, in English, then reads the page in Russian.
    admin.goto("/admin/organisation")
    check_page(admin, "admin-organisation", "en")
    admin.select_option("#time_zone", "Asia/Vladivostok")
    admin.click("form[action='/admin/organisation/time-zone'] button[type=submit]")
    assert "The time zone is now Asia/Vladivostok." in admin.locator(".flash").inner_text()
    in_russian = new_page("ru")
    sign_in(in_russian, agencies.centre.staff["admin"])
    in_russian.goto("/admin/organisation")
    assert in_russian.locator("#time_zone").input_value() == "Asia/Vladivostok"
    check_page(in_russian, "admin-organisation", "ru")


def _scanned(page: Page) -> list[str]:
    """What a QR reader finds in the screenshot of the page's setup code (zxing-cpp, not the library that drew it)."""
    shot = Image.open(io.BytesIO(page.locator("#totp-qr svg").screenshot()))
    return [found.text for found in zxingcpp.read_barcodes(shot)]


def _token(live_server: LiveServer, client: ClientKey) -> str:
    endpoint = f"{live_server.base_url}/oauth/token"
    response = httpx.post(endpoint, data=token_form(client, client_assertion(client, endpoint)))
    assert response.status_code == 200, response.text
    token: Any = response.json()["access_token"]
    return str(token)


def _inbox_status(live_server: LiveServer, token: str) -> int:
    response = httpx.get(
        f"{live_server.base_url}/api/v1/referrals",
        params={"box": "incoming"},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code


# Swagger UI parses a 1.5 MB bundle and draws every operation before its page counts as loaded: on a loaded
# two-core machine that has outlasted the default 15 s, so this page alone gets a minute.
DRAWN_WITHIN_MS = 60_000


def test_the_api_reference_renders_from_the_gateway_alone(
    live_server: LiveServer, new_page: Callable[[str], Page]
) -> None:
    """/schema draws the API reference offline: any request for another host is refused, and none is made."""
    reader = new_page("en")
    elsewhere: list[str] = []

    def only_the_gateway(route: Route) -> None:
        if route.request.url.startswith(f"{live_server.base_url}/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    reader.route("**/*", only_the_gateway)
    failed: list[str] = []
    reader.on("requestfailed", lambda request: failed.append(request.url))
    reader.goto("/schema", wait_until="commit")
    reader.get_by_role("heading", name=re.compile("casebridge")).first.wait_for(timeout=DRAWN_WITHIN_MS)
    reader.locator(".opblock-summary-path", has_text="/oauth/token").first.wait_for(timeout=DRAWN_WITHIN_MS)
    reader.wait_for_load_state("load", timeout=DRAWN_WITHIN_MS)
    assert elsewhere == []
    assert failed == []
    screenshot(reader, "api-reference")
