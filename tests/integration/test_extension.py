"""Keybridge's Keycloak extension on the real Keycloak (keycloak-extension/, built and
installed by scripts/keycloak.sh): access follows the organization's contract attributes
at login (Chromium, themed page; direct grant) and at refresh, without touching anyone's
`enabled` flag; the registration page tells an active customer's people that access is
automatic; the nudge listener makes the worker read the event log at once."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from werkzeug.serving import make_server

from adapter import create_app
from adapter.worker import Worker
from tests.support import stack

from .test_contract_access import PASSWORD, Person

pytestmark = pytest.mark.integration

ENDED = "Your company's access to the Customer Portal has ended; contact your account manager."
LEFT = "Your access to the Customer Portal has ended because you are no longer with your company; contact your account manager."


class Organization:
    """A CRM organization made through the admin API, its contract attributes written like the adapter writes them."""

    def __init__(self, kc_admin, unique: str, status: str = "active"):
        self.kc_admin, self.domain = kc_admin, f"ext-{unique}.example"
        r = requests.post(f"{kc_admin.base}/organizations", headers=kc_admin.headers, timeout=30, json={
            "name": f"Extension {unique}", "alias": f"crm-ext-{unique}", "enabled": True,
            "domains": [{"name": self.domain, "verified": False}],
            "attributes": {"crm_account_id": [f"EXT-{unique}"], "contract_status": [status]}})
        r.raise_for_status()
        self.id = r.headers["Location"].rsplit("/", 1)[1]

    def set_contract(self, status: str, ends_at: str | None = None) -> None:
        """One attribute write: the whole cut-off or renewal, whatever the organization's size."""
        org = self.kc_admin.get(f"/organizations/{self.id}")
        org["attributes"]["contract_status"] = [status]
        org["attributes"]["contract_ends_at"] = [ends_at] if ends_at else []
        requests.put(f"{self.kc_admin.base}/organizations/{self.id}", headers=self.kc_admin.headers, json=org,
                     timeout=30).raise_for_status()


def set_user(kc_admin, user_id: str, **fields) -> None:
    user = kc_admin.get(f"/users/{user_id}")
    attributes = fields.pop("attributes", None)
    if attributes:
        user.setdefault("attributes", {}).update(attributes)
    user.update(fields)
    requests.put(f"{kc_admin.base}/users/{user_id}", headers=kc_admin.headers, json=user, timeout=30).raise_for_status()


def browser_login(page, keycloak, crm, email: str):
    """Keycloak's login (identity first) for the demo service; returns the last page response's status."""
    page.goto(f"{keycloak.realm_url}/protocol/openid-connect/auth?client_id=customer-portal&response_type=code"
              f"&scope=openid&redirect_uri={crm.callback}")
    page.fill("#username", email)
    page.click("[type=submit]")
    page.wait_for_selector("#password")
    page.fill("#password", PASSWORD)
    with page.expect_response(lambda r: "login-actions/authenticate" in r.url) as answer:
        page.click("[type=submit]")
    return answer.value.status


def test_suspended_organization_is_refused_at_login_and_refresh_and_renewal_restores_both(
        kc_admin, keycloak, crm, chromium, unique):
    org = Organization(kc_admin, unique)
    alice = Person(kc_admin, keycloak, org.id, f"alice.{unique}@{org.domain}", f"CON-A-{unique}")
    bob = Person(kc_admin, keycloak, org.id, f"bob.{unique}@{org.domain}", f"CON-B-{unique}")
    tokens = alice.password_login()
    assert tokens.status_code == 200, tokens.text
    refresh_token = tokens.json()["refresh_token"]
    set_user(kc_admin, bob.id, enabled=False)  # an administrator's decision, for another reason

    org.set_contract("suspended")
    context = chromium.new_context()
    page = context.new_page()
    try:
        assert browser_login(page, keycloak, crm, alice.email) == 403
        page.wait_for_selector("#kb-access-ended")
        assert page.locator("#kb-access-ended .instruction").inner_text().strip() == ENDED
        assert page.locator("#kb-access-ended").get_attribute("data-reason") == "contract_inactive"
        page.screenshot(path=str(stack.REPO_DIR / "test-artifacts" / "extension-access-ended.png"))
        assert "/callback" not in page.url
    finally:
        context.close()
    refused = alice.refresh(refresh_token)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant"), refused.text
    grant = alice.password_login()
    assert (grant.status_code, grant.json()["error"]) == (400, "invalid_grant"), grant.text
    assert "contract_inactive" in grant.json()["error_description"]
    assert kc_admin.get(f"/users/{alice.id}")["enabled"] is True, "the cut-off touched no one's enabled flag"

    org.set_contract("active")
    assert alice.refresh(refresh_token).status_code == 200, "the session outlived the cut-off and works again"
    assert alice.password_login().status_code == 200
    context = chromium.new_context()
    page = context.new_page()
    try:
        browser_login(page, keycloak, crm, alice.email)
        page.wait_for_url("**/callback**")
    finally:
        context.close()
    assert kc_admin.get(f"/users/{bob.id}")["enabled"] is False, "an administrator's disable survives the renewal"
    assert bob.password_login().status_code in (400, 401)


def test_a_person_in_two_customers_organizations_is_let_in_while_either_contract_is_active(kc_admin, keycloak, unique):
    first, second = Organization(kc_admin, unique), Organization(kc_admin, f"{unique}-2")
    consultant = Person(kc_admin, keycloak, first.id, f"consultant.{unique}@{first.domain}", f"CON-K-{unique}")
    requests.post(f"{kc_admin.base}/organizations/{second.id}/members", headers=kc_admin.headers, data=consultant.id,
                  timeout=30).raise_for_status()
    tokens = consultant.password_login()
    assert tokens.status_code == 200, tokens.text

    first.set_contract("suspended")
    assert consultant.password_login().status_code == 200, "the second customer's contract is active"
    assert consultant.refresh(tokens.json()["refresh_token"]).status_code == 200

    second.set_contract("active", "2020-01-01T00:00:00Z")  # ended too
    grant = consultant.password_login()
    assert (grant.status_code, grant.json()["error"]) == (400, "invalid_grant")
    assert consultant.refresh(tokens.json()["refresh_token"]).status_code == 400

    first.set_contract("active")
    assert consultant.password_login().status_code == 200


def test_an_end_date_in_the_past_refuses_without_any_write(kc_admin, keycloak, unique):
    org = Organization(kc_admin, unique)
    carol = Person(kc_admin, keycloak, org.id, f"carol.{unique}@{org.domain}", f"CON-C-{unique}")
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    org.set_contract("active", ends)
    tokens = carol.password_login()
    assert tokens.status_code == 200, tokens.text
    time.sleep(4.5)  # the end date passes; nobody writes anything
    assert carol.password_login().status_code == 400
    assert carol.refresh(tokens.json()["refresh_token"]).status_code == 400


def test_a_member_who_left_is_refused_with_their_own_message(kc_admin, keycloak, crm, page, unique):
    org = Organization(kc_admin, unique)
    dave = Person(kc_admin, keycloak, org.id, f"dave.{unique}@{org.domain}", f"CON-D-{unique}")
    tokens = dave.password_login()
    assert tokens.status_code == 200
    set_user(kc_admin, dave.id, attributes={"crm_status": ["left"]})
    assert browser_login(page, keycloak, crm, dave.email) == 403
    assert page.locator("#kb-access-ended .instruction").inner_text().strip() == LEFT
    grant = dave.password_login()
    assert grant.status_code == 400 and "left_company" in grant.json()["error_description"]
    assert dave.refresh(tokens.json()["refresh_token"]).status_code == 400


def test_people_in_no_crm_organization_and_service_accounts_are_not_refused(kc_admin, keycloak, unique):
    lead_email = f"lead.{unique}@lead-{unique}.example"
    r = requests.post(f"{kc_admin.base}/users", headers=kc_admin.headers, timeout=30, json={
        "username": lead_email, "email": lead_email, "enabled": True, "emailVerified": True, "firstName": "L", "lastName": "D",
        "attributes": {"crm_lead_id": [f"LEAD-{unique}"]},
        "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]})
    r.raise_for_status()
    token = requests.post(f"{keycloak.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "customer-portal", "username": lead_email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    service = requests.post(f"{keycloak.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": keycloak.client_id, "client_secret": keycloak.client_secret})
    assert service.status_code == 200, service.text


def test_registration_page_tells_whether_access_is_automatic(kc_admin, keycloak, crm, page, unique):
    active = Organization(kc_admin, unique)
    paused = Organization(kc_admin, f"{unique}-p", status="suspended")
    page.goto(f"{keycloak.realm_url}/protocol/openid-connect/registrations"
              f"?client_id=customer-portal&response_type=code&scope=openid&redirect_uri={crm.callback}")
    hint = page.locator("#kb-registration-hint")
    page.fill("#email", f"new.{unique}@{active.domain}")
    page.locator("#firstName").click()
    page.wait_for_function("document.getElementById('kb-registration-hint').dataset.access === 'automatic'")
    assert "set up automatically" in hint.inner_text()
    page.screenshot(path=str(stack.REPO_DIR / "test-artifacts" / "extension-registration-hint.png"))
    page.fill("#email", f"new.{unique}@{paused.domain}")
    page.locator("#firstName").click()
    page.wait_for_function("document.getElementById('kb-registration-hint').dataset.access === 'approval'")
    assert "needs approval" in hint.inner_text()
    assert requests.get(f"{keycloak.realm_url}/keybridge/registration-hint", params={"email": "x"}, timeout=30).json() == {
        "access": "unknown"}


@pytest.fixture
def served_adapter(adapter_settings):
    """The adapter's web app on the port Keycloak's nudge listener posts to, with an hour between polls."""
    adapter_settings.nudge_secret = stack.NUDGE_SECRET
    adapter_settings.events_poll_seconds = 3600.0
    app = create_app({"KEYBRIDGE_SETTINGS": adapter_settings, "TESTING": True})
    server = make_server("127.0.0.1", stack.NUDGE_PORT, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    app.extensions["keybridge"].db.dispose()


def test_a_nudge_brings_a_registration_to_the_crm_long_before_the_next_poll(served_adapter, crm, keycloak, page, unique):
    from .test_self_service import self_register

    worker = Worker(served_adapter.extensions["keybridge"])
    worker.run_once(force_poll=False)  # the first pass polls; the next poll is an hour away
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            if not worker.run_once(force_poll=False):
                time.sleep(0.2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        email = f"nudged.{unique}@nudge-{unique}.example"
        self_register(page, keycloak, crm, email)
        registered = time.monotonic()
        while not [e for e in crm.of_type("registration.pending_approval") if e["data"].get("email") == email]:
            assert time.monotonic() - registered < 30, "no registration.pending_approval within 30 s: the nudge did not wake the worker"
            time.sleep(0.1)
        latency = time.monotonic() - registered
    finally:
        stop.set()
        thread.join(timeout=30)
    assert latency < 30 < served_adapter.extensions["keybridge"].settings.events_poll_seconds
    print(f"registration -> CRM with the nudge: {latency:.2f} s (poll interval 3600 s)")
