"""The operator dashboard on the real Keycloak, in Chromium: an operator signs in through Keycloak,
watches an invitation move through the funnel as the person registers and logs in, approves a
pending registration and replays a dead letter from the page; an org admin is refused.
Screenshots of each step go to test-artifacts/dashboard-*.png.

These tests are about the page and Keycloak, so they run on one adapter storage (SQLite).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from .conftest import run_until, wait_for_mail
from .test_core_loop import PASSWORD, register_through_invitation
from .test_delegated_admin import adapter_url, post, realm_admin  # noqa: F401  (fixtures)
from .test_self_service import self_register

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'keybridge.db'}"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def sign_in(page, adapter_url: str, email: str) -> None:  # noqa: F811
    """Open the dashboard: Keycloak's login page (keybridge theme), then back to the dashboard."""
    page.goto(f"{adapter_url}/dashboard/")
    page.wait_for_selector("#username")
    page.fill("#username", email)
    if not page.locator("#password").count():
        page.click("[type=submit]")
        page.wait_for_selector("#password")
    page.fill("#password", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(f"{adapter_url}/dashboard/**")


def totals(page, account_id: str) -> dict[str, int]:
    row = page.locator(f"#funnel-totals tr[data-account='{account_id}']")
    if not row.count():
        return {}
    return {stage: int(row.locator(f"td[data-stage='{stage}']").inner_text()) for stage in ("invited", "registered", "active")}


def password_login(keycloak, email: str) -> None:
    """The person logs in to the demo service (a LOGIN in Keycloak's event log)."""
    r = requests.post(f"{keycloak.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "customer-portal", "username": email, "password": PASSWORD, "scope": "openid"})
    assert r.status_code == 200, r.text


def test_an_operator_sees_an_invitation_through_the_funnel_approves_a_registration_and_replays_a_dead_letter(
        adapter, adapter_url, worker, crm, mail_dir, keycloak, kc_admin, realm_admin, chromium, page, unique):  # noqa: F811
    kb = adapter.extensions["keybridge"]
    client = adapter.test_client()
    worker.run_once()  # Keycloak's event log is read from here on
    account_id, domain = f"ACC-{unique}", f"funnel-{unique}.example"
    post(client, "account.upserted", {"account_id": account_id, "name": f"Funnel {unique}", "domains": [domain],
                                      "contract": {"status": "active"}})
    jane = f"jane.{unique}@{domain}"
    post(client, "contact.invite_requested", {"contact_id": f"C-{unique}", "email": jane, "account_id": account_id,
                                              "first_name": "Jane", "last_name": "Funnel", "roles": ["Buyer"]})
    run_until(worker, lambda: crm.of_type("invitation.sent"), what="invitation.sent")

    operator = f"olivia.{unique}@ops-{unique}.example"
    realm_admin.give_realm_roles(realm_admin.create_user(operator, PASSWORD), "keybridge-operator")

    # 1. The operator signs in through Keycloak and sees the invitation in the funnel.
    sign_in(page, adapter_url, operator)
    page.get_by_role("heading", name="Funnel: invited, registered, active").wait_for()
    assert totals(page, account_id) == {"invited": 1, "registered": 0, "active": 0}
    assert page.get_by_role("img", name="Funnel per day, All accounts, last 30 days").count() == 1
    shot(page, "01-invited")

    # 2. Jane registers through her invitation in Chromium and logs in: registered, then active.
    context = page.context.browser.new_context()
    register_through_invitation(context.new_page(), wait_for_mail(mail_dir, to=jane)[0].link, "Jane", "Funnel")
    context.close()
    run_until(worker, lambda: crm.of_type("identity.registered"), what="identity.registered")
    page.reload()
    assert {k: v for k, v in totals(page, account_id).items() if k != "active"} == {"invited": 1, "registered": 1}
    password_login(keycloak, jane)

    def active():
        worker.run_once()
        page.reload()
        return totals(page, account_id).get("active") == 1
    run_until(worker, active, what="Jane active in the funnel")
    page.select_option("#account-select", account_id)
    page.get_by_role("button", name="Show").click()
    chart = page.get_by_role("img", name=f"Funnel per day, Funnel {unique}, last 30 days")
    chart.wait_for()
    assert "1 invited, 1 registered, 1 active." in page.locator("#funnel-chart-desc").text_content()
    shot(page, "02-registered-and-active")

    # 3. Someone at an unknown domain registers: the operator approves them into the account, as Buyer.
    sam = f"sam.{unique}@unknown-{unique}.example"
    context = page.context.browser.new_context()
    self_register(context.new_page(), keycloak, crm, sam, "Sam", "Pending")
    context.close()
    run_until(worker, lambda: [e for e in crm.of_type("registration.pending_approval") if e["data"]["email"] == sam],
              what="registration.pending_approval")
    page.goto(f"{adapter_url}/dashboard/")
    row = page.locator(f"#registrations tr[data-email='{sam}']")
    row.wait_for()
    row.get_by_label(f"Account for {sam}").select_option(account_id)
    row.get_by_label(f"CRM roles for {sam}").fill("Buyer")
    shot(page, "03-pending-registration")
    row.get_by_role("button", name=f"Approve {sam}").click()
    page.get_by_text(f"{sam}: approval queued").wait_for()
    registered = run_until(worker, lambda: [e["data"] for e in crm.of_type("identity.registered") if e["data"]["email"] == sam],
                           what="Sam approved")
    assert registered[0]["account_id"] == account_id and registered[0]["via"] == "self_service"
    sam_id = kc_admin.user_by_email(sam)["id"]
    assert "buyer" in kc_admin.realm_roles(sam_id)
    assert [m["id"] for m in kc_admin.get(f"/organizations/{kc_admin.organization_of(account_id)['id']}/members")
            if m["id"] == sam_id] == [sam_id]

    # 4. The CRM is down past the retry window: the event about Sam is a dead letter; the operator replays it.
    kb.settings.outbox_retry_window_seconds = 0
    crm.fail_with = 503
    bob = f"bob.{unique}@{domain}"
    post(client, "contact.invite_requested", {"contact_id": f"CB-{unique}", "email": bob, "account_id": account_id,
                                              "first_name": "Bob", "last_name": "Dead"})
    run_until(worker, lambda: [d for d in _dead(kb) if d["what"] == "invitation.sent"], what="a dead outbound event")
    crm.fail_with = None
    page.goto(f"{adapter_url}/dashboard/")
    (dead,) = [d for d in _dead(kb) if d["what"] == "invitation.sent"]
    dead_row = page.locator(f"#dead-letters tr[data-id='{dead['id']}']")
    dead_row.wait_for()
    shot(page, "04-dead-letter")
    dead_row.get_by_role("button", name=f"Replay outbound {dead['id']}").click()
    page.get_by_text(f"Outbound event {dead['id']} is queued again.").wait_for()
    run_until(worker, lambda: [e for e in crm.of_type("invitation.sent") if e["data"].get("email") == bob], what="the replayed event")
    page.reload()
    assert page.get_by_role("heading", name="Dead letters (0)").count() == 1
    audit = page.locator("#audit tbody").inner_text()
    assert f"dead_letter.replayed\toutbound:{dead['id']}\toperator {operator} (dashboard)" in audit
    assert f"registration.decision_requested\tuser:{sam_id}\toperator {operator} (dashboard)" in audit
    assert totals(page, account_id)["invited"] == 2
    shot(page, "05-replayed")


def _dead(kb) -> list[dict]:
    from adapter import dead_letters

    return dead_letters.list_all(kb.db)


def test_an_org_admin_is_refused(adapter, adapter_url, keycloak, realm_admin, page, unique):  # noqa: F811
    kc = adapter.extensions["keybridge"].keycloak
    client = adapter.test_client()
    account_id = f"ACC-{unique}"
    post(client, "account.upserted", {"account_id": account_id, "name": f"Refused {unique}", "contract": {"status": "active"}})
    from adapter.worker import Worker

    run_until(Worker(adapter.extensions["keybridge"]), lambda: kc.find_organization(account_id), what="organization")
    ada = f"ada.{unique}@refused-{unique}.example"
    ada_id = realm_admin.create_user(ada, PASSWORD)
    realm_admin.add_member(kc.find_organization(account_id)["id"], ada_id)
    realm_admin.give_realm_roles(ada_id, "org_admin")

    sign_in(page, adapter_url, ada)
    assert page.get_by_role("heading", name="Not done").count() == 1
    assert "This page is for Keybridge operators (realm role keybridge-operator)" in page.content()
    assert page.locator("#funnel").count() == 0
    shot(page, "06-org-admin-refused")
