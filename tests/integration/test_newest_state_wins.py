"""The CRM's state wins on the real Keycloak: the four sequences of issue 8 that used to leave access wrong.

A person registers in Chromium through the invitation email; the CRM's events arrive
late, early or twice; an administrator disables someone. Each runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from adapter import reports
from tests.conftest import signed_post

from .conftest import run_until, wait_for_mail
from .test_contract_access import Person
from .test_core_loop import PASSWORD, register_through_invitation

pytestmark = pytest.mark.integration


def at(minutes_ago: int) -> str:
    """A CRM time: `minutes_ago` before now."""
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def post_at(client, event_type: str, data: dict, timestamp: str) -> None:
    r = signed_post(client, {"type": event_type, "timestamp": timestamp, "data": data})
    assert r.status_code == 202, r.json


def password_login(keycloak, email: str) -> int:
    return requests.post(f"{keycloak.url}/realms/{keycloak.realm}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "customer-portal", "username": email, "password": PASSWORD,
        "scope": "openid"}).status_code


def audit_actions(kb, subject: str) -> list[str]:
    return [e["action"] for e in reports.audit_trail(kb, subject)]


def onboard(client, worker, kc_admin, account_id: str, unique: str) -> dict:
    post_at(client, "account.upserted", {"account_id": account_id, "name": f"State {unique}", "contract": {"status": "active"}},
            at(60))
    return run_until(worker, lambda: kc_admin.organization_of(account_id), what="the organization")


def test_registration_read_after_the_contact_left_ends_with_no_access(adapter, worker, crm, mail_dir, kc_admin, keycloak, page, unique):
    """1. The contact registers; before the worker reads the registration, the CRM says they left."""
    client, kb = adapter.test_client(), adapter.extensions["keybridge"]
    account_id, contact_id = f"ACC-{unique}", f"CON-{unique}"
    email = f"lena.{unique}@state-{unique}.example"
    org = onboard(client, worker, kc_admin, account_id, unique)
    post_at(client, "contact.invite_requested", {"contact_id": contact_id, "email": email, "account_id": account_id,
                                                 "first_name": "Lena", "last_name": "Left", "roles": ["Buyer"]}, at(30))
    run_until(worker, lambda: crm.of_type("invitation.sent"), what="invitation.sent")

    register_through_invitation(page, wait_for_mail(mail_dir, to=email)[0].link, "Lena", "Left")
    assert password_login(keycloak, email) == 200, "registered: Keycloak lets them in (the adapter has not looked yet)"
    post_at(client, "contact.upserted", {"contact_id": contact_id, "email": email, "status": "left"}, at(1))

    run_until(worker, lambda: password_login(keycloak, email) in (400, 401), what="the leaver losing access")
    for _ in range(3):  # the registration event, read now, gives nothing back
        worker.run_once()
    assert password_login(keycloak, email) in (400, 401)
    user = kc_admin.user_by_email(email)
    assert user is None or user["enabled"] is False
    assert kc_admin.get(f"/organizations/{org['id']}/members") == []
    assert crm.of_type("identity.registered") == []
    left = [e["data"] for e in crm.of_type("identity.access_changed")]
    assert left and left[0]["reason"] == "left_company" and left[0]["enabled"] is False


def test_left_before_accepting_makes_the_invitation_link_stop_working(adapter, worker, crm, mail_dir, kc_admin, keycloak, page, unique):
    """2. Invited, then left before accepting: the link no longer lets them in."""
    client = adapter.test_client()
    account_id, contact_id = f"ACC-{unique}", f"CON-{unique}"
    email = f"otto.{unique}@state-{unique}.example"
    org = onboard(client, worker, kc_admin, account_id, unique)
    post_at(client, "contact.invite_requested", {"contact_id": contact_id, "email": email, "account_id": account_id,
                                                 "first_name": "Otto", "last_name": "Gone"}, at(30))
    run_until(worker, lambda: crm.of_type("invitation.sent"), what="invitation.sent")
    link = wait_for_mail(mail_dir, to=email)[0].link
    assert kc_admin.get(f"/organizations/{org['id']}/invitations")

    post_at(client, "contact.upserted", {"contact_id": contact_id, "email": email, "status": "left"}, at(1))
    revoked = run_until(worker, lambda: crm.of_type("invitation.revoked"), what="invitation.revoked")
    assert revoked[0]["data"] == {"contact_id": contact_id, "email": email, "account_id": account_id, "reason": "contact_left"}
    assert [i for i in kc_admin.get(f"/organizations/{org['id']}/invitations") if i.get("status", "PENDING") == "PENDING"] == []

    page.goto(link)
    page.wait_for_load_state()
    assert page.locator("#password").count() == 0, "the withdrawn invitation's link offers no registration"
    assert page.locator("body").inner_text().strip(), "Keycloak answered with its page (link no longer valid)"
    for _ in range(3):
        worker.run_once()
    assert kc_admin.user_by_email(email) is None
    assert kc_admin.get(f"/organizations/{org['id']}/members") == []


def test_an_older_account_state_arriving_late_does_not_reactivate_anyone(adapter, worker, crm, kc_admin, keycloak, unique):
    """3. Suspended at T2; a delayed retry of `active` from T1 < T2 arrives afterwards."""
    client, kb = adapter.test_client(), adapter.extensions["keybridge"]
    account_id = f"ACC-{unique}"
    org = onboard(client, worker, kc_admin, account_id, unique)
    alice = Person(kc_admin, keycloak, org["id"], f"alice.{unique}@state-{unique}.example", f"CON-A-{unique}")
    account = {"account_id": account_id, "name": f"State {unique}"}
    t1, t2 = at(20), at(10)

    post_at(client, "account.upserted", {**account, "contract": {"status": "suspended"}}, t2)
    run_until(worker, lambda: crm.of_type("identity.access_changed"), what="the suspension")
    assert alice.password_login().status_code in (400, 401)

    post_at(client, "account.upserted", {**account, "contract": {"status": "active"}}, t1)
    run_until(worker, lambda: "state.stale" in audit_actions(kb, f"account:{account_id}"), what="the stale event audited")
    assert alice.password_login().status_code in (400, 401)
    assert kc_admin.get(f"/users/{alice.id}")["enabled"] is True, "the organization's attribute refuses her, not her flag"
    assert kc_admin.organization_of(account_id)["attributes"]["contract_status"] == ["suspended"]
    assert len(crm.of_type("identity.access_changed")) == 1


def test_a_renewal_does_not_re_enable_someone_an_administrator_disabled(adapter, worker, crm, kc_admin, keycloak, unique):
    """4. During a suspension an administrator disables one member; the renewal gives access back to the others only.

    A contract never touches anyone's `enabled` flag (the organization's attributes decide), so the
    administrator's disable is simply never undone."""
    client, kb = adapter.test_client(), adapter.extensions["keybridge"]
    account_id = f"ACC-{unique}"
    org = onboard(client, worker, kc_admin, account_id, unique)
    alice = Person(kc_admin, keycloak, org["id"], f"alice.{unique}@state-{unique}.example", f"CON-A-{unique}")
    bob = Person(kc_admin, keycloak, org["id"], f"bob.{unique}@state-{unique}.example", f"CON-B-{unique}")
    account = {"account_id": account_id, "name": f"State {unique}"}

    post_at(client, "account.upserted", {**account, "contract": {"status": "suspended"}}, at(20))
    run_until(worker, lambda: len(crm.of_type("identity.access_changed")) == 2, what="the suspension")

    # The administrator switches Bob off (what the console's Enabled switch sends).
    rep = kc_admin.get(f"/users/{bob.id}")
    requests.put(f"{kc_admin.base}/users/{bob.id}", headers=kc_admin.headers, json={**rep, "enabled": False},
                 timeout=30).raise_for_status()
    run_until(worker, lambda: "access.admin_disabled" in audit_actions(kb, f"user:{bob.id}"), what="the admin's disable read")

    post_at(client, "account.upserted", {**account, "contract": {"status": "active"}}, at(10))
    run_until(worker, lambda: alice.password_login().status_code == 200, what="Alice's access back")
    assert bob.password_login().status_code in (400, 401)
    assert kc_admin.get(f"/users/{bob.id}")["enabled"] is False
    restored = run_until(worker, lambda: [e["data"]["user_id"] for e in crm.of_type("identity.access_changed") if e["data"]["enabled"]],
                         what="the CRM told who has access again")
    for _ in range(3):
        worker.run_once()
    assert restored == [alice.id]
    assert reports.account_status(kb, account_id)["members_with_access"] == 1
