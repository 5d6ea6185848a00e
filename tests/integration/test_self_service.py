"""Self-registration checked against the CRM, approvals, and what customers change themselves,
end to end on the real Keycloak with registration in headless Chromium."""
from __future__ import annotations

import pytest

from tests.conftest import envelope, signed_post

from tests.support import stack

from .conftest import run_until
from .test_contract_access import Person

pytestmark = pytest.mark.integration

PASSWORD = "Corr3ct-Horse-Battery!"
AUTH = {"Authorization": "Bearer op-token"}


def self_register(page, keycloak, crm, email: str, first: str = "Sam", last: str = "Self") -> None:
    """Keycloak's own registration page, reached from the demo service's login."""
    page.goto(f"{keycloak.url}/realms/{keycloak.realm}/protocol/openid-connect/registrations"
              f"?client_id=customer-portal&response_type=code&scope=openid&redirect_uri={crm.callback}")
    page.fill("#email", email)
    page.fill("#firstName", first)
    page.fill("#lastName", last)
    page.fill("#password", PASSWORD)
    page.fill("#password-confirm", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url("**/callback**")


def one(crm, event_type: str, **match):
    found = [e["data"] for e in crm.of_type(event_type) if all(e["data"].get(k) == v for k, v in match.items())]
    return found[0] if len(found) == 1 else None


@pytest.fixture
def operator_adapter(adapter):
    adapter.extensions["keybridge"].settings.operator_token = "op-token"
    return adapter


def test_registration_at_an_active_customer_domain_is_approved_after_verification(adapter, worker, crm, mail_dir, kc_admin, keycloak, page, unique):
    client = adapter.test_client()
    account_id, domain = f"ACC-{unique}", f"self-{unique}.example"
    signed_post(client, envelope("account.upserted", {"account_id": account_id, "name": f"Self {unique}", "domains": [domain],
                                                      "contract": {"status": "active"}}))
    run_until(worker, lambda: kc_admin.organization_of(account_id), what="the organization")
    email = f"sam.{unique}@{domain}"

    self_register(page, keycloak, crm, email)
    # The adapter asks Keycloak to verify the address first.
    verification = run_until(worker, lambda: stack.read_mails(mail_dir, to=email), what="the verification email")
    assert crm.of_type("identity.registered") == [], "no membership before the email is verified"
    page.goto(verification[0].link)
    proceed = page.locator("a[href*='action-token']")
    if proceed.count():
        proceed.first.click()

    registered = run_until(worker, lambda: one(crm, "identity.registered", email=email), what="identity.registered")
    user = kc_admin.user_by_email(email)
    assert registered == {"user_id": user["id"], "email": email, "account_id": account_id, "via": "self_service",
                          "registered_at": registered["registered_at"]}
    assert one(crm, "identity.email_verified", user_id=user["id"]) == {"user_id": user["id"]}
    org = kc_admin.organization_of(account_id)
    assert [m["id"] for m in kc_admin.get(f"/organizations/{org['id']}/members")] == [user["id"]]
    assert "member" in kc_admin.realm_roles(user["id"])


def test_unknown_domain_waits_for_approval_then_the_crm_approves(operator_adapter, worker, crm, kc_admin, keycloak, page, unique):
    client = operator_adapter.test_client()
    account_id = f"ACC-{unique}"
    signed_post(client, envelope("account.upserted", {"account_id": account_id, "name": f"Approve {unique}", "contract": {"status": "active"}}))
    email = f"pat.{unique}@unknown-{unique}.example"
    self_register(page, keycloak, crm, email, "Pat", "Pending")

    pending = run_until(worker, lambda: one(crm, "registration.pending_approval", email=email), what="pending_approval")
    user = kc_admin.user_by_email(email)
    assert pending == {"user_id": user["id"], "email": email, "company": None, "matched_account_id": None}
    listed = client.get("/api/registrations", headers=AUTH).json["registrations"]
    assert [r["user_id"] for r in listed if r["email"] == email] == [user["id"]]
    assert not kc_admin.realm_roles(user["id"]) & {"member", "buyer"}, "no application access while pending"

    signed_post(client, envelope("registration.decided", {"decision": "approved", "email": email, "account_id": account_id,
                                                          "roles": ["Buyer"]}))
    registered = run_until(worker, lambda: one(crm, "identity.registered", email=email), what="identity.registered")
    assert registered["via"] == "self_service" and registered["account_id"] == account_id
    assert "buyer" in kc_admin.realm_roles(user["id"])
    assert client.get("/api/registrations", headers=AUTH).json["registrations"] == [
        r for r in client.get("/api/registrations", headers=AUTH).json["registrations"] if r["email"] != email]


def test_rejected_registration_ends_access(operator_adapter, worker, crm, kc_admin, keycloak, page, unique):
    client = operator_adapter.test_client()
    email = f"rex.{unique}@reject-{unique}.example"
    self_register(page, keycloak, crm, email, "Rex", "Rejected")
    run_until(worker, lambda: one(crm, "registration.pending_approval", email=email), what="pending_approval")
    user = kc_admin.user_by_email(email)

    r = client.post(f"/api/registrations/{user['id']}/decision", json={"decision": "rejected"}, headers=AUTH)
    assert r.status_code == 202
    changed = run_until(worker, lambda: one(crm, "identity.access_changed", user_id=user["id"]), what="access_changed")
    assert changed == {"user_id": user["id"], "contact_id": None, "enabled": False, "reason": "rejected"}
    probe = Person.__new__(Person)
    probe.keycloak, probe.email = keycloak, email
    assert probe.password_login().status_code in (400, 401)


def test_profile_and_email_changes_in_the_account_console_reach_the_crm(adapter, worker, crm, mail_dir, kc_admin, keycloak, page, unique):
    email = f"eve.{unique}@edit-{unique}.example"
    self_register(page, keycloak, crm, email, "Eve", "Edit")  # the browser keeps the session for the account console
    run_until(worker, lambda: one(crm, "registration.pending_approval", email=email), what="pending_approval")
    user = kc_admin.user_by_email(email)

    page.goto(f"{keycloak.url}/realms/{keycloak.realm}/account/")
    page.wait_for_selector("#firstName")
    page.fill("#firstName", "Evelyn")
    page.get_by_role("button", name="Save").click()
    changed = run_until(worker, lambda: one(crm, "identity.profile_updated", user_id=user["id"]), what="profile_updated")
    assert changed == {"user_id": user["id"], "changes": {"first_name": {"old": "Eve", "new": "Evelyn"}}}

    new_email = f"evelyn.{unique}@edit-{unique}.example"
    page.goto(f"{keycloak.url}/realms/{keycloak.realm}/protocol/openid-connect/auth?client_id=customer-portal"
              f"&response_type=code&scope=openid&redirect_uri={crm.callback}&kc_action=UPDATE_EMAIL")
    page.wait_for_selector("#email")
    page.fill("#email", new_email)
    page.click("[type=submit]")
    page.wait_for_url("**/callback**")
    updated = run_until(worker, lambda: [e["data"] for e in crm.of_type("identity.profile_updated")
                                         if e["data"]["user_id"] == user["id"] and "email" in e["data"]["changes"]],
                        what="email change")
    assert updated[0]["changes"]["email"] == {"old": email, "new": new_email}
