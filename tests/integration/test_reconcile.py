"""Reconciliation on the real Keycloak: a small CRM export with every kind of drift. The dry run (operator API)
reports them and changes nothing; the real run (`keybridge reconcile`) feeds them through the inbox and the worker
converges Keycloak; a second run finds no drift it could fix and stores nothing.

The realm is shared with the other tests, so assertions look at this test's own records only (unique ids)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import requests
from click.testing import CliRunner

from adapter import cli
from tests.conftest import envelope, signed_post

from .conftest import KeycloakAdminView, run_until
from .test_contract_access import PASSWORD, Person

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer op-token"}


def account(account_id: str, name: str, status: str) -> dict:
    return {"account_id": account_id, "name": name, "contract": {"status": status}}


def mine(drift: dict, unique: str) -> dict[str, list[str]]:
    """Drift items about this test's records: kind -> sorted records."""
    found: dict[str, list[str]] = {}
    for kind, items in drift["items"].items():
        for item in items:
            if unique in item["record"] or unique in item.get("detail", ""):
                found.setdefault(kind, []).append(item["record"])
    return {kind: sorted(records) for kind, records in sorted(found.items())}


class Member(Person):
    """A person with crm_contact_id and the default business role `member`; in no organization when org_id is None."""

    def __init__(self, kc_admin, keycloak, org_id: str | None, email: str, contact_id: str):
        if org_id is not None:
            super().__init__(kc_admin, keycloak, org_id, email, contact_id)
        else:
            self.keycloak, self.email = keycloak, email
            r = requests.post(f"{kc_admin.base}/users", headers=kc_admin.headers, timeout=30, json={
                "username": email, "email": email, "enabled": True, "emailVerified": True, "firstName": "P", "lastName": "M",
                "attributes": {"crm_contact_id": [contact_id]},
                "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]})
            r.raise_for_status()
            self.id = r.headers["Location"].rsplit("/", 1)[1]
        requests.post(f"{kc_admin.base}/users/{self.id}/role-mappings/realm", headers=kc_admin.headers, timeout=30,
                      json=[kc_admin.get("/roles/member")]).raise_for_status()


class FreshAdmin(KeycloakAdminView):
    """The master admin's view, logging in again before its 60-second token runs out (this test takes minutes)."""

    def __init__(self, kc):
        self.kc = kc
        super().__init__(kc)
        self.logged_in = time.monotonic()

    @property
    def headers(self):
        if time.monotonic() - self.logged_in > 30:
            self.logged_in = time.monotonic()
            self.__dict__["_headers"] = KeycloakAdminView(self.kc).headers
        return self.__dict__["_headers"]

    @headers.setter
    def headers(self, value):
        self.__dict__["_headers"] = value


@pytest.fixture
def operator_api(adapter):
    adapter.extensions["keybridge"].settings.operator_token = "op-token"
    return adapter.test_client()


def test_dry_run_reports_each_drift_real_run_converges_second_run_stores_nothing(
        adapter, worker, crm, keycloak, unique, operator_api, tmp_path, monkeypatch):
    kc_admin = FreshAdmin(keycloak)
    client = adapter.test_client()
    kb = adapter.extensions["keybridge"]
    a, b, c, d = (f"ACC-{x}-{unique}" for x in "ABCD")
    for account_id, status in ((a, "active"), (b, "active"), (d, "active")):
        assert signed_post(client, envelope("account.upserted", account(account_id, f"Org {account_id}", status))).status_code == 202
    run_until(worker, lambda: all(kc_admin.organization_of(x) for x in (a, b, d)), what="the organizations")
    org = {x: kc_admin.organization_of(x)["id"] for x in (a, b, d)}
    domain = f"recon-{unique}.example"

    def person(key: str, account_id: str | None) -> Member:
        return Member(kc_admin, keycloak, org[account_id] if account_id else None, f"{key.lower()}.{unique}@{domain}",
                      f"{key}-{unique}")

    ann, bob, flo, gil, hal, ivy, zed = (person("ANN", a), person("BOB", a), person("FLO", a), person("GIL", None),
                                         person("HAL", b), person("IVY", d), person("ZED", a))
    # D was suspended (IVY refused by its attributes); the CRM's renewal never arrived.
    assert signed_post(client, envelope("account.upserted", account(d, f"Org {d}", "suspended"))).status_code == 202
    run_until(worker, lambda: ivy.password_login().status_code in (400, 401), what="IVY cut off")
    # CY was invited, then left before registering.
    cy = f"cy.{unique}@{domain}"
    assert signed_post(client, envelope("contact.invite_requested", {"contact_id": f"CY-{unique}", "email": cy, "account_id": a})).status_code == 202
    run_until(worker, lambda: kc_admin.get(f"/organizations/{org[a]}/invitations", email=cy), what="CY's invitation")

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [
        ["account", a, f"Org {a}", "active", "", "", "", "", "", ""],
        ["account", b, f"Org {b}", "suspended", "", "", "", "", "", ""],
        ["account", c, f"Org {c}", "active", "", "", "", "", "", ""],
        ["account", d, f"Org {d}", "active", "", "", "", "", "", ""],
        ["contact", f"ANN-{unique}", "", "", ann.email, a, "P", "M", "Buyer", "active"],
        ["contact", f"BOB-{unique}", "", "", bob.email, a, "P", "M", "", "left"],
        ["contact", f"CY-{unique}", "", "", cy, a, "", "", "", "left"],
        ["contact", f"DI-{unique}", "", "", f"di.{unique}@{domain}", a, "", "", "", "active"],
        ["contact", f"FLO-{unique}", "", "", flo.email, a, "Florence", "M", "", "active"],
        ["contact", f"GIL-{unique}", "", "", gil.email, a, "P", "M", "", "active"],
        ["contact", f"HAL-{unique}", "", "", hal.email, b, "P", "M", "", "active"],
        ["contact", f"IVY-{unique}", "", "", ivy.email, d, "P", "M", "", "active"],
    ]
    export = "record_type,id,name,contract_status,email,account_id,first_name,last_name,roles,status\n" + \
        "".join(",".join(row) + "\n" for row in rows)

    # Dry run through the operator API: every kind reported, nothing changed.
    r = operator_api.post(f"/api/reconcile?dry_run=true&exported_at={now}", data=export, content_type="text/csv", headers=AUTH)
    assert r.status_code == 202, r.json
    dry = run_until(worker, lambda: (b := operator_api.get(f"{r.json['url']}?limit=1000", headers=AUTH).json)["status"] == "completed" and b,
                    what="the dry run")
    # HAL (enabled, B active in Keycloak) and IVY (D suspended in Keycloak) are no drift of their own: the
    # organizations' contract attributes decide their access, and those differ.
    assert mine(dry["drift"], unique) == {
        "account_differs": [f"account:{b}", f"account:{d}"],  # D: Keycloak still says suspended
        "left_can_login": [f"contact:BOB-{unique}"],
        "left_pending_invitation": [f"contact:CY-{unique}"],
        "membership_differs": [f"contact:BOB-{unique}", f"contact:GIL-{unique}"],
        "missing_identity": [f"contact:DI-{unique}"],
        "missing_organization": [f"account:{c}"],
        "profile_differs": [f"contact:FLO-{unique}"],
        "roles_differ": [f"contact:ANN-{unique}"],
        "unknown_identity": [f"user:{zed.id}"],
    }
    assert dry["drift"]["stats"]["read_through_export"] == 1  # Keybridge's extension served the realm in bulk
    assert bob.password_login().status_code == 200 and kc_admin.get(f"/users/{hal.id}")["enabled"] is True
    assert crm.of_type("reconcile.completed") == []

    # The real run, as an operator types it.
    path = tmp_path / "crm-export.csv"
    path.write_text(export)
    monkeypatch.setattr(cli, "_kb", lambda: kb)
    result = CliRunner().invoke(cli.main, ["reconcile", "--from", str(path), "--exported-at", now, "--no-wait"])
    assert result.exit_code == 0, result.output
    assert "people who left but can log in:" in result.output and f"contact:BOB-{unique}" in result.output
    run_until(worker, lambda: kc_admin.organization_of(c) and hal.password_login().status_code in (400, 401)
              and kc_admin.get(f"/users/{bob.id}")["enabled"] is False, what="convergence")
    run_until(worker, lambda: crm.of_type("reconcile.completed"), what="reconcile.completed")

    assert kc_admin.realm_roles(ann.id) >= {"buyer"} and "member" not in kc_admin.realm_roles(ann.id)
    assert bob.password_login().status_code in (400, 401)
    assert kc_admin.get(f"/users/{flo.id}")["firstName"] == "Florence"
    assert gil.id in {m["id"] for m in kc_admin.get(f"/organizations/{org[a]}/members")}
    assert hal.password_login().status_code in (400, 401) and kc_admin.get(f"/users/{hal.id}")["enabled"] is True
    assert ivy.password_login().status_code == 200
    assert kc_admin.organization_of(b)["attributes"]["contract_status"] == ["suspended"]
    run_until(worker, lambda: not kc_admin.get(f"/organizations/{org[a]}/invitations", email=cy), what="CY's invitation revoked")
    (summary,) = [e["data"] for e in crm.of_type("reconcile.completed")]
    assert summary["events_stored"] >= 8 and summary["drift"]["left_can_login"] >= 1

    # The same export again: nothing left that a run can fix, nothing stored.
    again = operator_api.post(f"/api/reconcile?exported_at={now}", data=export, content_type="text/csv", headers=AUTH)
    done = run_until(worker, lambda: (b := operator_api.get(f"{again.json['url']}?limit=1000", headers=AUTH).json)["status"] == "completed" and b,
                     what="the second run")
    assert mine(done["drift"], unique) == {"missing_identity": [f"contact:DI-{unique}"], "unknown_identity": [f"user:{zed.id}"]}
    assert done["events"]["stored"] == 0
