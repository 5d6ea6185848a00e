"""The invitation lifecycle on the real Keycloak, mail sink and CRM sink, with links followed in Chromium:
revoke (the link lets nobody in), expiry (the CRM is told, the link ends), and the one reminder
(exactly one more email, however often the scheduler runs), for a contact and a lead.

Days pass on the Keybridge clock (kb.clock), which the worker's scheduler reads; nothing sleeps.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from adapter.db import utcnow
from adapter.handlers import invitation_lifecycle
from adapter.worker import Worker
from tests.conftest import envelope, signed_post
from tests.support import stack

from .conftest import run_until
from .test_core_loop import PASSWORD, register_through_invitation

pytestmark = pytest.mark.integration

SLOW = 120  # seconds: the machine is shared with several Keycloaks


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keybridge.db'}"
    return stack.create_database(request.getfixturevalue("postgres_url"))


class Clock:
    def __init__(self):
        self.offset = timedelta()

    def __call__(self):
        return utcnow() + self.offset

    def move(self, **delta):
        self.offset += timedelta(**delta)


@pytest.fixture
def kb(adapter):
    kb = adapter.extensions["keybridge"]
    kb.clock = Clock()
    return kb


@pytest.fixture
def people(adapter, worker, crm, mail_dir, kb, unique):
    """An account and its organization; `invite_contact` / `invite_lead` send one invitation and
    return (id, email, link)."""
    client = adapter.test_client()
    account_id = f"ACC-{unique}"
    assert signed_post(client, envelope("account.upserted", {
        "account_id": account_id, "name": f"Lifecycle {unique}", "domains": [f"life-{unique}.example"],
        "contract": {"status": "active"}})).status_code == 202

    class People:
        account = account_id

        @staticmethod
        def post(event_type, data):
            assert signed_post(client, envelope(event_type, data)).status_code == 202

        @staticmethod
        def invite_contact(name: str, **extra):
            contact_id, email = f"C-{name}-{unique}", f"{name}.{unique}@life-{unique}.example"
            People.post("contact.invite_requested", {"contact_id": contact_id, "email": email, "account_id": account_id,
                                                     "first_name": name.title(), "last_name": "Doe", **extra})
            mail = _wait_mail(worker, mail_dir, email)
            return contact_id, email, mail.link

        @staticmethod
        def invite_lead(name: str, **extra):
            lead_id, email = f"L-{name}-{unique}", f"{name}.{unique}@prospect-{unique}.example"
            People.post("lead.invite_requested", {"lead_id": lead_id, "email": email, "first_name": name.title(), **extra})
            mail = _wait_mail(worker, mail_dir, email)
            return lead_id, email, mail.link

    return People


def _wait_mail(worker, mail_dir, email, count=1):
    run_until(worker, lambda: len(stack.read_mails(mail_dir, to=email)) >= count, timeout=SLOW, what=f"mail {count} to {email}")
    return stack.read_mails(mail_dir, to=email)[-1]


def _shot(page, name):
    (stack.REPO_DIR / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(stack.REPO_DIR / "test-artifacts" / f"lifecycle-{name}.png"))


def _contact_link_lets_nobody_in(chromium, link, email, kc_admin, org_id, name):
    """Follow an organization invitation link and try to register: nobody may end up a member."""
    context = chromium.new_context()
    page = context.new_page()
    page.goto(link)
    page.wait_for_load_state()
    if page.locator("#password").count():  # a registration form after all: try it
        register_through_invitation(page, link, "Eve", "Late")
    _shot(page, name)
    text = page.inner_text("body")
    context.close()
    assert kc_admin.get(f"/organizations/{org_id}/members") == []
    assert kc_admin.user_by_email(email) is None, "the link made an identity"
    return text


def _lead_link_lets_nobody_in(chromium, link, user_id, kc_admin, name):
    """Follow a lead's execute-actions link: no password can be chosen with it."""
    context = chromium.new_context()
    page = context.new_page()
    page.goto(link)
    page.wait_for_load_state()
    proceed = page.locator("a[href*='action-token']")
    if proceed.count():
        proceed.first.click()
        page.wait_for_load_state()
    assert page.locator("#password-new").count() == 0, "the link still offers to choose a password"
    _shot(page, name)
    text = page.inner_text("body")
    context.close()
    assert [c for c in kc_admin.get(f"/users/{user_id}/credentials") if c["type"] == "password"] == []
    return text


def test_a_revoked_invitation_link_lets_nobody_in(adapter, worker, crm, mail_dir, kc_admin, chromium, kb, people):
    contact_id, contact_email, contact_link = people.invite_contact("rita")
    lead_id, lead_email, lead_link = people.invite_lead("rolf")
    org = kc_admin.organization_of(people.account)

    people.post("contact.invite_revoked", {"contact_id": contact_id, "account_id": people.account})
    people.post("lead.invite_revoked", {"lead_id": lead_id})
    people.post("lead.invite_revoked", {"lead_id": lead_id})  # twice: changes nothing
    run_until(worker, lambda: len(crm.of_type("invitation.revoked")) == 2, timeout=SLOW, what="invitation.revoked for both")

    assert kc_admin.get(f"/organizations/{org['id']}/invitations") == []
    text = _contact_link_lets_nobody_in(chromium, contact_link, contact_email, kc_admin, org["id"], "revoked-contact")
    assert "invitation link is no longer valid" in text, text
    lead_user = kc_admin.user_by_email(lead_email)
    text = _lead_link_lets_nobody_in(chromium, lead_link, lead_user["id"], kc_admin, "revoked-lead")
    assert "Account is disabled" in text, text  # Keycloak refuses a disabled identity's action token

    for _ in range(3):
        worker.run_once()
    assert sorted(e["data"].get("contact_id") or e["data"]["lead_id"] for e in crm.of_type("invitation.revoked")) == sorted([contact_id, lead_id])
    assert crm.of_type("invitation.accepted") == [] and crm.of_type("identity.registered") == []


def test_an_expired_invitation_is_told_to_the_crm_and_its_link_ends(adapter, worker, crm, mail_dir, kc_admin, chromium, kb, people):
    contact_id, contact_email, contact_link = people.invite_contact("erin", expires_in_days=2)
    lead_id, lead_email, lead_link = people.invite_lead("emil", expires_in_days=2)
    org = kc_admin.organization_of(people.account)
    assert len(kc_admin.get(f"/organizations/{org['id']}/invitations")) == 1

    kb.clock.move(days=1, hours=23)
    for _ in range(3):
        worker.run_once()
    assert crm.of_type("invitation.expired") == []

    kb.clock.move(hours=1, seconds=1)
    expired = run_until(worker, lambda: len(crm.of_type("invitation.expired")) == 2 and crm.of_type("invitation.expired"),
                        timeout=SLOW, what="invitation.expired at the CRM for both")
    by_id = {e["data"].get("contact_id") or e["data"].get("lead_id"): e["data"] for e in expired}
    assert set(by_id) == {contact_id, lead_id}
    assert by_id[contact_id]["email"] == contact_email and by_id[contact_id]["account_id"] == people.account
    assert by_id[lead_id]["expired_at"]
    assert kc_admin.get(f"/organizations/{org['id']}/invitations") == []

    _contact_link_lets_nobody_in(chromium, contact_link, contact_email, kc_admin, org["id"], "expired-contact")
    _lead_link_lets_nobody_in(chromium, lead_link, kc_admin.user_by_email(lead_email)["id"], kc_admin, "expired-lead")
    assert invitation_lifecycle.list_invitations(kb, account_id=people.account)["counts"] == {"expired": 1}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_one_reminder_before_expiry_however_often_the_scheduler_runs(adapter, worker, crm, mail_dir, kc_admin, page, kb, people):
    contact_id, contact_email, _ = people.invite_contact("remy", expires_in_days=7)
    lead_id, lead_email, _ = people.invite_lead("rhea", expires_in_days=7)

    kb.clock.move(days=5, seconds=1)  # KEYBRIDGE_INVITE_REMINDER_DAYS_BEFORE (2) before the expiry
    other = Worker(kb)  # a second worker's scheduler decides at the same time
    reminders = _wait_mail(worker, mail_dir, contact_email, count=2)
    _wait_mail(other, mail_dir, lead_email, count=2)
    for _ in range(5):
        worker.run_once()
        other.run_once()
    kb.clock.move(hours=12)
    for _ in range(3):
        worker.run_once()
        other.run_once()

    assert len(stack.read_mails(mail_dir, to=contact_email)) == 2, "one invitation and exactly one reminder"
    assert len(stack.read_mails(mail_dir, to=lead_email)) == 2, "one invitation and exactly one reminder"
    run_until(worker, lambda: len(crm.of_type("invitation.reminded")) == 2, timeout=SLOW, what="invitation.reminded for both")
    assert sorted(e["data"].get("contact_id") or e["data"]["lead_id"] for e in crm.of_type("invitation.reminded")) == sorted([contact_id, lead_id])

    # The reminder's link works: the contact registers through it and is accepted.
    register_through_invitation(page, reminders.link, "Remy", "Doe")
    run_until(worker, lambda: crm.of_type("identity.registered"), timeout=SLOW, what="the reminded contact registered")
    assert crm.of_type("identity.registered")[0]["data"]["contact_id"] == contact_id
    assert requests.post(f"{kb.settings.keycloak_url}/realms/{kb.settings.keycloak_realm}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "customer-portal", "username": contact_email, "password": PASSWORD}).status_code == 200
