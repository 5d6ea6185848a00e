"""Where an invited person lands after accepting their invitation (issue 11), on the real Keycloak, in Chromium.

Before: a contact who registered from an organization invitation ended on Keycloak's "Something
went wrong - Invalid parameter: redirect_uri" (adapter/handlers/landing.py says why), and a lead on
Keycloak's "You are all set" page, signed in nowhere. Now both pass the adapter's welcome page
(the portal's look) and end where their invitation said, signed in: the tests look at the page
each person ends on (its URL and what it says) and then at Keycloak's account page, which opens
without asking for a password.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import envelope, signed_post

from .conftest import run_until, wait_for_mail
from .test_core_loop import PASSWORD, register_through_invitation, set_password_through_invitation
from .test_org_admin_page import adapter_url, database_url  # noqa: F401 (fixtures: the adapter knows its public URL)

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"invite-landing-{name}.png"), full_page=True)


def post(client, event_type: str, data: dict) -> None:
    assert signed_post(client, envelope(event_type, data)).status_code == 202


def signed_in_to_the_account_page(page, kc, email: str) -> None:
    """Keycloak's account page opens for this person without asking who they are."""
    page.goto(f"{kc.url}/realms/{kc.realm}/account/")
    page.get_by_role("heading", name="Personal info").wait_for(timeout=30000)
    assert page.url.startswith(f"{kc.url}/realms/{kc.realm}/account") and page.locator("#kc-form-login").count() == 0
    page.wait_for_function("email => [...document.querySelectorAll('input')].some(i => i.value === email)", arg=email)


def test_contacts_land_signed_in_where_their_invitation_says(adapter, adapter_url, worker, crm, mail_dir, keycloak,  # noqa: F811
                                                             chromium, unique):
    client = adapter.test_client()
    account_id = f"ACC-{unique}"
    post(client, "account.upserted", {"account_id": account_id, "name": f"Acme {unique}", "contract": {"status": "active"}})
    jane, john = f"jane.{unique}@acme-{unique}.example", f"john.{unique}@acme-{unique}.example"
    post(client, "contact.invite_requested", {"contact_id": f"CJ-{unique}", "email": jane, "account_id": account_id,
                                              "first_name": "Jane", "last_name": "Doe", "redirect_uri": crm.callback})
    post(client, "contact.invite_requested", {"contact_id": f"CO-{unique}", "email": john, "account_id": account_id,
                                              "first_name": "John", "last_name": "Roe"})  # no redirect_uri: the account page
    run_until(worker, lambda: len(crm.of_type("invitation.sent")) >= 2, what="both invitations sent")
    org = adapter.extensions["keybridge"].keycloak.find_organization(account_id)
    assert org["redirectUrl"] == f"{adapter_url}/portal/welcome"

    # Jane's invitation names the demo service: welcomed, then there.
    context = chromium.new_context()
    page = context.new_page()
    register_through_invitation(page, wait_for_mail(mail_dir, to=jane)[0].link, "Jane", "Doe")
    page.locator("#welcome").wait_for()
    assert page.url == f"{adapter_url}/portal/welcome"
    assert "Welcome, Jane!" in page.inner_text("h1")
    assert f"member of Acme {unique}" in page.inner_text("#welcome") and "You are signed in." in page.inner_text("#welcome")
    assert "Something went wrong" not in page.content() and "Invalid parameter" not in page.content()
    shot(page, "01-contact-welcome")
    page.wait_for_url(re.compile(re.escape(crm.callback)))
    assert page.url == crm.callback and page.inner_text("h1") == "Signed in to the demo service"
    shot(page, "02-contact-at-the-service")
    signed_in_to_the_account_page(page, keycloak, jane)
    context.close()

    # John's names nothing (and KEYBRIDGE_INVITE_REDIRECT_URI is unset): Keycloak's account page, signed in.
    context = chromium.new_context()
    page = context.new_page()
    register_through_invitation(page, wait_for_mail(mail_dir, to=john)[0].link, "John", "Roe")
    page.locator("#welcome").wait_for()
    assert "Welcome, John!" in page.inner_text("h1")
    page.get_by_role("link", name="Continue").click()
    page.get_by_role("heading", name="Personal info").wait_for(timeout=30000)
    assert page.url.startswith(f"{keycloak.url}/realms/{keycloak.realm}/account")
    assert "Invalid parameter" not in page.content() and page.locator("#kc-form-login").count() == 0
    shot(page, "03-contact-at-the-account-page")
    context.close()
    run_until(worker, lambda: len(crm.of_type("identity.registered")) >= 2, what="both registrations at the CRM")


def test_a_lead_lands_signed_in_where_their_invitation_says(adapter, adapter_url, worker, crm, mail_dir, keycloak, page, unique):  # noqa: F811
    client = adapter.test_client()
    email = f"leo.{unique}@lead-{unique}.example"
    post(client, "lead.invite_requested", {"lead_id": f"L-{unique}", "email": email, "first_name": "Leo", "last_name": "Lead",
                                           "redirect_uri": crm.callback})
    run_until(worker, lambda: crm.of_type("invitation.sent"), what="invitation.sent")
    set_password_through_invitation(page, wait_for_mail(mail_dir, to=email)[0].link)
    page.get_by_text("You are all set").wait_for()
    page.locator("#kc-info-message a").first.click()  # Keycloak's last page leads to the welcome
    # Keycloak's execute-actions link makes no session: the password just chosen signs them in.
    page.wait_for_selector("#username, #password")
    if page.locator("#username").count() and page.locator("#username").is_editable():
        page.fill("#username", email)
        if not page.locator("#password").count():
            page.click("[type=submit]")
            page.wait_for_selector("#password")
    page.fill("#password", PASSWORD)
    page.click("[type=submit]")
    page.locator("#welcome").wait_for()
    assert "Welcome, Leo!" in page.inner_text("h1") and "You are signed in." in page.inner_text("#welcome")
    shot(page, "04-lead-welcome")
    page.wait_for_url(re.compile(re.escape(crm.callback)))
    assert page.inner_text("h1") == "Signed in to the demo service"
    signed_in_to_the_account_page(page, keycloak, email)
    run_until(worker, lambda: crm.of_type("identity.registered"), what="the lead's registration at the CRM")
