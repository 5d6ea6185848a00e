"""Contracts drive access on the real Keycloak: a cut-off really stops logins and refreshes.

The adapter writes the organization's contract attributes; Keybridge's Keycloak extension
refuses logins and refreshes from them. Nobody's `enabled` flag changes for a contract."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from adapter.worker import Worker
from adapter.runtime import Keybridge
from tests.conftest import envelope, signed_post

from .conftest import run_until

pytestmark = pytest.mark.integration

PASSWORD = "Corr3ct-Horse-Battery!"


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Person:
    """A registered member, made directly through the admin API (registration itself is tested elsewhere)."""

    def __init__(self, kc_admin, keycloak, org_id: str, email: str, contact_id: str, enabled: bool = True):
        self.keycloak, self.email = keycloak, email
        r = requests.post(f"{kc_admin.base}/users", headers=kc_admin.headers, timeout=30, json={
            "username": email, "email": email, "enabled": enabled, "emailVerified": True, "firstName": "P", "lastName": "M",
            "attributes": {"crm_contact_id": [contact_id]},
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]})
        r.raise_for_status()
        self.id = r.headers["Location"].rsplit("/", 1)[1]
        requests.post(f"{kc_admin.base}/organizations/{org_id}/members", headers=kc_admin.headers, data=self.id,
                      timeout=30).raise_for_status()

    def token_endpoint(self):
        return f"{self.keycloak.url}/realms/{self.keycloak.realm}/protocol/openid-connect/token"

    def password_login(self) -> requests.Response:
        return requests.post(self.token_endpoint(), timeout=30, data={
            "grant_type": "password", "client_id": "customer-portal", "username": self.email, "password": PASSWORD, "scope": "openid"})

    def refresh(self, refresh_token: str) -> requests.Response:
        return requests.post(self.token_endpoint(), timeout=30, data={
            "grant_type": "refresh_token", "client_id": "customer-portal", "refresh_token": refresh_token})


def account(account_id: str, status: str, ends_at: str | None = None) -> dict:
    contract = {"status": status}
    if ends_at:
        contract["ends_at"] = ends_at
    return {"account_id": account_id, "name": f"Contract {account_id}", "contract": contract}


def test_expiry_cuts_logins_and_refresh_tokens_and_renewal_restores(adapter, worker, crm, kc_admin, keycloak, unique):
    client = adapter.test_client()
    account_id = f"ACC-{unique}"
    assert signed_post(client, envelope("account.upserted", account(account_id, "active"))).status_code == 202
    run_until(worker, lambda: kc_admin.organization_of(account_id), what="the organization")
    org = kc_admin.organization_of(account_id)
    alice = Person(kc_admin, keycloak, org["id"], f"alice.{unique}@contract-{unique}.example", f"CON-A-{unique}")
    bob = Person(kc_admin, keycloak, org["id"], f"bob.{unique}@contract-{unique}.example", f"CON-B-{unique}", enabled=False)

    tokens = alice.password_login()
    assert tokens.status_code == 200, tokens.text
    refresh_token = tokens.json()["refresh_token"]

    assert signed_post(client, envelope("account.upserted", account(account_id, "expired"))).status_code == 202
    changed = run_until(worker, lambda: crm.of_type("identity.access_changed"), what="identity.access_changed")
    assert [e["data"] for e in changed] == [
        {"user_id": alice.id, "contact_id": f"CON-A-{unique}", "enabled": False, "reason": "contract_inactive"}]
    assert alice.password_login().status_code in (400, 401)
    assert alice.refresh(refresh_token).status_code == 400
    assert kc_admin.organization_of(account_id)["attributes"]["contract_status"] == ["expired"]
    assert kc_admin.get(f"/users/{alice.id}")["enabled"] is True, "refused by the organization's attribute, not her flag"

    assert signed_post(client, envelope("account.upserted", account(account_id, "active"))).status_code == 202
    run_until(worker, lambda: len(crm.of_type("identity.access_changed")) == 2, what="access restored")
    assert crm.of_type("identity.access_changed")[1]["data"]["enabled"] is True
    assert crm.of_type("identity.access_changed")[1]["data"]["reason"] == "contract_active"
    assert alice.password_login().status_code == 200
    assert kc_admin.get(f"/users/{bob.id}")["enabled"] is False, "someone an admin disabled stays disabled"
    assert bob.password_login().status_code in (400, 401)


def test_end_date_passing_is_enforced_without_webhook_even_across_a_restart(adapter_settings, adapter, worker, crm, kc_admin, keycloak, unique):
    client = adapter.test_client()
    account_id = f"ACC-{unique}"
    # Keycloak's extension refuses carol from the end date on, whatever the adapter does: the
    # margin must cover the setup (account, organization, user) on a busy machine.
    ends = datetime.now(timezone.utc) + timedelta(seconds=15)
    signed_post(client, envelope("account.upserted", account(account_id, "active", iso(ends))))
    run_until(worker, lambda: kc_admin.organization_of(account_id), what="the organization")
    carol = Person(kc_admin, keycloak, kc_admin.organization_of(account_id)["id"], f"carol.{unique}@end-{unique}.example", f"CON-C-{unique}")
    assert carol.password_login().status_code == 200

    # The adapter is down while the end date passes; a new process enforces it on start.
    adapter.extensions["keybridge"].db.dispose()
    time.sleep(max(0.0, (ends - datetime.now(timezone.utc)).total_seconds()) + 1.5)
    restarted = Worker(Keybridge(adapter_settings))
    run_until(restarted, lambda: crm.of_type("identity.access_changed"), what="cut-off by the schedule")
    assert carol.password_login().status_code in (400, 401)
    assert kc_admin.organization_of(account_id)["attributes"]["contract_status"] == ["expired"]
    from adapter import reports

    status = reports.account_status(restarted.kb, account_id)
    assert (status["members"], status["members_with_access"], status["access"]) == (1, 0, "inactive")
    causes = [e["cause"] for e in reports.audit_trail(restarted.kb, f"account:{account_id}")]
    assert any(c.startswith("schedule: contract ended at") for c in causes)


def test_contact_left_loses_access_and_membership(adapter, worker, crm, kc_admin, keycloak, unique):
    client = adapter.test_client()
    account_id, contact_id = f"ACC-{unique}", f"CON-D-{unique}"
    signed_post(client, envelope("account.upserted", account(account_id, "active")))
    run_until(worker, lambda: kc_admin.organization_of(account_id), what="the organization")
    org = kc_admin.organization_of(account_id)
    dave = Person(kc_admin, keycloak, org["id"], f"dave.{unique}@left-{unique}.example", contact_id)

    signed_post(client, envelope("contact.upserted", {"contact_id": contact_id, "email": dave.email, "account_id": account_id,
                                                      "first_name": "David", "last_name": "Mason", "phone": "+358 40 123",
                                                      "roles": ["Billing Contact"]}))
    run_until(worker, lambda: kc_admin.get(f"/users/{dave.id}")["firstName"] == "David", what="profile update")
    assert "billing_admin" in kc_admin.realm_roles(dave.id)
    assert kc_admin.get(f"/users/{dave.id}")["attributes"]["phone"] == ["+358 40 123"]

    signed_post(client, envelope("contact.upserted", {"contact_id": contact_id, "email": dave.email, "status": "left"}))
    left = run_until(worker, lambda: crm.of_type("identity.access_changed"), what="access_changed for the leaver")
    assert left[0]["data"] == {"user_id": dave.id, "contact_id": contact_id, "enabled": False, "reason": "left_company"}
    assert dave.password_login().status_code in (400, 401)
    assert kc_admin.get(f"/organizations/{org['id']}/members") == []
    removed = [e["data"] for e in crm.of_type("membership.changed") if e["data"]["change"] == "removed"]
    assert removed and removed[0]["user_id"] == dave.id


def test_a_member_of_two_accounts_keeps_access_while_either_contract_is_active(adapter, worker, crm, kc_admin, keycloak, unique):
    """Access belongs to whichever contract is active: the extension and the adapter's counts and events agree."""
    from adapter import reports

    client, kb = adapter.test_client(), adapter.extensions["keybridge"]
    first, second = f"ACC-1-{unique}", f"ACC-2-{unique}"
    for account_id in (first, second):
        assert signed_post(client, envelope("account.upserted", account(account_id, "active"))).status_code == 202
    run_until(worker, lambda: kc_admin.organization_of(first) and kc_admin.organization_of(second), what="both organizations")
    both = Person(kc_admin, keycloak, kc_admin.organization_of(first)["id"], f"both.{unique}@two-{unique}.example", f"CON-2-{unique}")
    requests.post(f"{kc_admin.base}/organizations/{kc_admin.organization_of(second)['id']}/members", headers=kc_admin.headers,
                  data=both.id, timeout=30).raise_for_status()
    only = Person(kc_admin, keycloak, kc_admin.organization_of(first)["id"], f"only.{unique}@two-{unique}.example", f"CON-1-{unique}")

    signed_post(client, envelope("account.upserted", account(first, "suspended")))
    changed = run_until(worker, lambda: crm.of_type("identity.access_changed"), what="the first suspension's follow-up")
    assert only.password_login().status_code in (400, 401)
    assert both.password_login().status_code == 200, "the second account's active contract still lets them in"
    assert [e["data"]["user_id"] for e in changed] == [only.id]
    status = reports.account_status(kb, first)
    assert (status["members"], status["members_with_access"], status["members_cut_off_by_contract"]) == (2, 1, 1)

    signed_post(client, envelope("account.upserted", account(second, "suspended")))
    run_until(worker, lambda: len(crm.of_type("identity.access_changed")) == 2, what="the second suspension's follow-up")
    assert both.password_login().status_code in (400, 401)
    assert crm.of_type("identity.access_changed")[1]["data"] == {
        "user_id": both.id, "contact_id": f"CON-2-{unique}", "enabled": False, "reason": "contract_inactive"}
    assert reports.account_status(kb, first)["members_with_access"] == 0


def test_upgrading_gives_back_the_flags_the_per_user_path_took_but_not_an_administrators(adapter, worker, crm, kc_admin, keycloak, unique):
    """An earlier version disabled the members of a suspended account one by one (and remembered it); at
    start, this version enables them again: the extension keeps refusing them until the renewal."""
    from adapter.models import AccessRevocation, AdminAccessDecision
    from adapter.db import utcnow

    client, kb = adapter.test_client(), adapter.extensions["keybridge"]
    account_id = f"ACC-{unique}"
    signed_post(client, envelope("account.upserted", account(account_id, "suspended")))
    run_until(worker, lambda: kc_admin.organization_of(account_id), what="the organization")
    org_id = kc_admin.organization_of(account_id)["id"]
    cut = Person(kc_admin, keycloak, org_id, f"cut.{unique}@upgrade-{unique}.example", f"CON-C-{unique}", enabled=False)
    admins = Person(kc_admin, keycloak, org_id, f"adm.{unique}@upgrade-{unique}.example", f"CON-D-{unique}", enabled=False)
    with kb.db.session() as session:  # what the per-user path left behind
        for person in (cut, admins):
            session.add(AccessRevocation(user_id=person.id, reason="contract_inactive", account_id=account_id,
                                         contact_id=None, revoked_at=utcnow()))
        session.add(AdminAccessDecision(user_id=admins.id, enabled=False, actor="console", decided_at=utcnow(), event_id="adm"))

    worker.queue_upgrade_steps()  # what a worker does when it starts
    run_until(worker, lambda: kc_admin.get(f"/users/{cut.id}")["enabled"] is True, what="the flag given back")
    assert cut.password_login().status_code in (400, 401), "the suspended organization still refuses them"
    assert kc_admin.get(f"/users/{admins.id}")["enabled"] is False

    signed_post(client, envelope("account.upserted", account(account_id, "active")))
    run_until(worker, lambda: cut.password_login().status_code == 200, what="access after the renewal")
    assert admins.password_login().status_code in (400, 401)
