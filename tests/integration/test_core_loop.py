"""The core loop on the real Keycloak: a CRM invites, the person registers in a browser, the CRM is told.

Runs once on SQLite and once on PostgreSQL: the same code, both storages.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from adapter.models import Invitation, OutboxEvent
from tests.conftest import envelope, signed_post

from .conftest import run_until, wait_for_mail

pytestmark = pytest.mark.integration

PASSWORD = "Corr3ct-Horse-Battery!"


def register_through_invitation(page, link: str, first: str, last: str) -> None:
    """Follow an organization invitation link and fill Keycloak's registration form."""
    page.goto(link)
    page.wait_for_selector("#password")
    if page.locator("#firstName").count():
        page.fill("#firstName", first)
        page.fill("#lastName", last)
    page.fill("#password", PASSWORD)
    page.fill("#password-confirm", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_load_state()


def set_password_through_invitation(page, link: str) -> None:
    """Follow a lead invitation (execute-actions) link and choose a password."""
    page.goto(link)
    proceed = page.locator("a[href*='action-token']")
    if proceed.count():
        proceed.first.click()
    page.wait_for_selector("#password-new")
    page.fill("#password-new", PASSWORD)
    page.fill("#password-confirm", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_load_state()


def test_contact_invitation_registration_and_crm_events(adapter, worker, crm, mail_dir, kc_admin, page, unique):
    client = adapter.test_client()
    account_id, contact_id = f"ACC-{unique}", f"CON-{unique}"
    email = f"jane.{unique}@acme-{unique}.example"

    r = signed_post(client, envelope("account.upserted", {
        "account_id": account_id, "name": f"Acme {unique}", "domains": [f"acme-{unique}.example"],
        "contract": {"status": "active", "ends_at": "2030-01-01T00:00:00Z"}}))
    assert r.status_code == 202
    invite = {"contact_id": contact_id, "email": email, "account_id": account_id, "first_name": "Jane",
              "last_name": "Doe", "roles": ["Buyer", "Technical Contact"]}
    assert signed_post(client, envelope("contact.invite_requested", invite)).status_code == 202
    run_until(worker, lambda: crm.of_type("invitation.sent"), what="invitation.sent at the CRM")

    org = kc_admin.organization_of(account_id)
    assert org["attributes"]["contract_status"] == ["active"]
    assert org["attributes"]["contract_ends_at"] == ["2030-01-01T00:00:00Z"]
    sent = dict(crm.of_type("invitation.sent")[0]["data"])
    assert sent.pop("expires_at")  # when Keybridge ends the link (KEYBRIDGE_INVITE_EXPIRES_IN_DAYS)
    assert sent == {"contact_id": contact_id, "email": email, "account_id": account_id}

    # The same request again (a new webhook-id) while the invitation is pending sends nothing.
    assert signed_post(client, envelope("contact.invite_requested", invite)).status_code == 202
    worker.run_once()
    worker.run_once()
    mails = wait_for_mail(mail_dir, to=email)
    assert len(mails) == 1, "a repeated invite request must not send a second email"
    assert len(crm.of_type("invitation.sent")) == 1

    register_through_invitation(page, mails[0].link, "Jane", "Doe")

    registered = run_until(worker, lambda: crm.of_type("identity.registered"), what="identity.registered at the CRM")
    user = kc_admin.user_by_email(email)
    assert registered[0]["data"] == {
        "user_id": user["id"], "email": email, "contact_id": contact_id, "account_id": account_id,
        "via": "invitation", "registered_at": registered[0]["data"]["registered_at"]}
    assert user["attributes"]["crm_contact_id"] == [contact_id]
    assert {"buyer", "technical_contact"} <= kc_admin.realm_roles(user["id"])
    members = kc_admin.get(f"/organizations/{org['id']}/members")
    assert [m["id"] for m in members] == [user["id"]]

    # Nothing is told twice, whatever the worker re-reads.
    for _ in range(3):
        worker.run_once()
    assert len(crm.of_type("identity.registered")) == 1
    ids = [h["webhook-id"] for h in crm.headers]
    assert len(ids) == len(set(ids))


def test_lead_invitation_gives_the_lead_role(adapter, worker, crm, mail_dir, kc_admin, page, unique):
    client = adapter.test_client()
    lead_id, email = f"LEAD-{unique}", f"lee.{unique}@prospect-{unique}.example"
    assert signed_post(client, envelope("lead.invite_requested", {
        "lead_id": lead_id, "email": email, "first_name": "Lee", "last_name": "Prospect", "company": "Prospect Ltd"})).status_code == 202
    run_until(worker, lambda: crm.of_type("invitation.sent"), what="invitation.sent for the lead")
    mails = wait_for_mail(mail_dir, to=email)
    set_password_through_invitation(page, mails[0].link)

    registered = run_until(worker, lambda: crm.of_type("identity.registered"), what="identity.registered for the lead")
    user = kc_admin.user_by_email(email)
    assert registered[0]["data"]["lead_id"] == lead_id and registered[0]["data"]["user_id"] == user["id"]
    assert user["attributes"]["crm_lead_id"] == [lead_id]
    assert "lead" in kc_admin.realm_roles(user["id"])


def test_lead_at_public_webmail_is_refused_and_reported(adapter, worker, crm, mail_dir, kc_admin, unique):
    client = adapter.test_client()
    email = f"someone.{unique}@gmail.com"
    assert signed_post(client, envelope("lead.invite_requested", {"lead_id": f"LEAD-{unique}", "email": email})).status_code == 202
    skipped = run_until(worker, lambda: crm.of_type("invitation.skipped"), what="invitation.skipped")
    assert skipped[0]["data"]["reason"] == "public_webmail_domain"
    assert kc_admin.user_by_email(email) is None
    assert stack_mails(mail_dir, email) == []


def stack_mails(mail_dir, email):
    from tests.support import stack

    return stack.read_mails(mail_dir, to=email)


def test_events_survive_an_adapter_restart_without_repeats(adapter_settings, adapter, worker, crm, mail_dir, kc_admin, page, unique):
    """Registration read from Keycloak's log by one adapter process is not lost or repeated by the next."""
    from adapter.worker import Worker
    from adapter.runtime import Keybridge

    client = adapter.test_client()
    account_id = f"ACC-{unique}"
    email = f"max.{unique}@restart-{unique}.example"
    signed_post(client, envelope("account.upserted", {"account_id": account_id, "name": f"Restart {unique}",
                                                      "contract": {"status": "active"}}))
    signed_post(client, envelope("contact.invite_requested", {"contact_id": f"CON-{unique}", "email": email,
                                                              "account_id": account_id, "first_name": "Max", "last_name": "R"}))
    run_until(worker, lambda: crm.of_type("invitation.sent"), what="invitation.sent")
    register_through_invitation(page, wait_for_mail(mail_dir, to=email)[0].link, "Max", "R")

    # The first process stops before reading the log; a new one (same database) picks it up.
    adapter.extensions["keybridge"].db.dispose()
    second = Worker(Keybridge(adapter_settings))
    run_until(second, lambda: crm.of_type("identity.registered"), what="identity.registered after restart")
    third = Worker(Keybridge(adapter_settings))
    for _ in range(3):
        third.run_once()
    assert len(crm.of_type("identity.registered")) == 1
    with third.kb.db.session() as s:
        inv = s.scalar(select(Invitation).where(Invitation.email == email))
        assert inv.status == "accepted"
        assert s.scalar(select(OutboxEvent).where(OutboxEvent.type == "identity.registered")).status == "delivered"
