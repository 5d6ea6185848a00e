"""Delegated administration on the real Keycloak: org admins manage their own people, and only them.

- A member's token carries the application roles of their business roles and their organization.
- An org admin logs into Keycloak's admin console (realm `customers`) with their own password,
  sees their organization's members and gives business roles; on the adapter's page (/portal,
  behind a Keycloak login) they invite someone, take business roles away and remove someone.
  Screenshots of each step go to test-artifacts/.
- With their own token, every attempt on another organization's people or on realm settings is refused.
- Taking someone's last business role, or removing them, ends their application access at their next refresh.

These tests are about Keycloak, so they run on one adapter storage (SQLite); test_core_loop runs both.
"""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import requests

from adapter import delegation
from tests.conftest import envelope, signed_post

from .conftest import run_until, wait_for_mail, served
from .test_core_loop import PASSWORD, register_through_invitation

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BUSINESS_ROLES = {"member", "buyer", "technical_contact", "billing_admin"}


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'keybridge.db'}"


@pytest.fixture
def adapter_url(adapter):
    with served(adapter) as url:
        yield url


class RealmAdmin:
    """Setup and checks as the master admin (Keycloak's operator), independent of the adapter."""

    def __init__(self, kc):
        self.kc = kc
        self.base = kc.admin_url
        self.session = requests.Session()
        self._token_at = 0.0

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        if time.monotonic() - self._token_at > 30:  # the master realm's access tokens live 60 s
            self.session.headers["Authorization"] = f"Bearer {self.kc.admin_token()}"
            self._token_at = time.monotonic()
        r = self.session.request(method, self.base + path, timeout=30, **kwargs)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:300]}"
        return r

    def create_user(self, email: str, password: str | None = None) -> str:
        rep = {"username": email, "email": email, "enabled": True, "emailVerified": True, "firstName": email.split("@")[0],
               "lastName": "Test"}
        if password:
            rep["credentials"] = [{"type": "password", "value": password, "temporary": False}]
        return self.call("POST", "/users", json=rep).headers["Location"].rsplit("/", 1)[1]

    def add_member(self, org_id: str, user_id: str) -> None:
        self.call("POST", f"/organizations/{org_id}/members", data=user_id, headers={"content-type": "application/json"})

    def give_realm_roles(self, user_id: str, *names: str) -> None:
        self.call("POST", f"/users/{user_id}/role-mappings/realm", json=[self.call("GET", f"/roles/{n}").json() for n in names])

    def realm_roles(self, user_id: str) -> set[str]:
        return {r["name"] for r in self.call("GET", f"/users/{user_id}/role-mappings/realm").json()}

    def admin_policy(self, name: str) -> dict | None:
        client = self.call("GET", "").json()["adminPermissionsClient"]["id"]
        found = self.call("GET", f"/clients/{client}/authz/resource-server/policy", params={"name": name}).json()
        return next((p for p in found if p["name"] == name), None)


@pytest.fixture
def realm_admin(keycloak):
    return RealmAdmin(keycloak)


def token(kc, email: str, client_id: str = "customer-portal", password: str = PASSWORD) -> dict:
    r = requests.post(f"{kc.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": client_id, "username": email, "password": password, "scope": "openid"})
    assert r.status_code == 200, r.text
    return r.json()


def refresh(kc, tokens: dict) -> requests.Response:
    return requests.post(f"{kc.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "refresh_token", "client_id": "customer-portal", "refresh_token": tokens["refresh_token"]})


def claims(access_token: str) -> dict:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def app_roles(access_token: str) -> set[str]:
    return set(claims(access_token).get("resource_access", {}).get("customer-portal", {}).get("roles", []))


def post(client, event_type: str, data: dict) -> None:
    assert signed_post(client, envelope(event_type, data)).status_code == 202


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"delegated-admin-{name}.png"), full_page=True)


def changes(crm, **match) -> list[dict]:
    return [e["data"] for e in crm.of_type("membership.changed") if all(e["data"].get(k) == v for k, v in match.items())]


def onboard_by_invitation(client, worker, crm, mail_dir, chromium, unique: str, with_member_roles=("Buyer",)) -> dict:
    """Account A-<unique> onboarded the real way: its admin contact and one contact register through their invitations."""
    account_id = f"ACC-{unique}"
    admin_email, member_email = f"ada.{unique}@acme-{unique}.example", f"bob.{unique}@acme-{unique}.example"
    post(client, "account.upserted", {"account_id": account_id, "name": f"Acme {unique}", "domains": [f"acme-{unique}.example"],
                                      "contract": {"status": "active", "ends_at": "2030-01-01T00:00:00Z"},
                                      "admin_contact": {"contact_id": f"CA-{unique}", "email": admin_email,
                                                        "first_name": "Ada", "last_name": "Admin"}})
    post(client, "contact.invite_requested", {"contact_id": f"CB-{unique}", "email": member_email, "account_id": account_id,
                                              "first_name": "Bob", "last_name": "Buyer", "roles": list(with_member_roles)})
    run_until(worker, lambda: len(crm.of_type("invitation.sent")) >= 2, what="both invitations sent")
    for email, (first, last) in ((admin_email, ("Ada", "Admin")), (member_email, ("Bob", "Buyer"))):
        context = chromium.new_context()
        register_through_invitation(context.new_page(), wait_for_mail(mail_dir, to=email)[0].link, first, last)
        context.close()
    run_until(worker, lambda: len(crm.of_type("identity.registered")) >= 2, what="both registrations at the CRM")
    by_email = {e["data"]["email"]: e["data"]["user_id"] for e in crm.of_type("identity.registered")}
    return {"account_id": account_id, "alias": delegation_alias(account_id), "admin_email": admin_email,
            "member_email": member_email, "admin": by_email[admin_email], "member": by_email[member_email]}


def delegation_alias(account_id: str) -> str:
    from adapter.handlers.accounts import organization_alias

    return organization_alias(account_id)


# -- tokens ---------------------------------------------------------------------------------

def test_a_members_token_carries_their_application_roles_and_organization(adapter, worker, crm, keycloak, realm_admin, unique):
    client = adapter.test_client()
    worker.run_once()
    account_id = f"ACC-{unique}"
    post(client, "account.upserted", {"account_id": account_id, "name": f"Tokens {unique}", "contract": {"status": "active"}})
    run_until(worker, lambda: adapter.extensions["keybridge"].keycloak.find_organization(account_id), what="organization")
    org = adapter.extensions["keybridge"].keycloak.find_organization(account_id)
    email = f"tess.{unique}@tokens-{unique}.example"
    user_id = realm_admin.create_user(email, PASSWORD)
    realm_admin.add_member(org["id"], user_id)
    realm_admin.give_realm_roles(user_id, "buyer", "technical_contact")

    access = claims(token(keycloak, email)["access_token"])

    assert set(access["resource_access"]["customer-portal"]["roles"]) == {"docs:read", "orders:read", "orders:write", "tickets:write"}
    assert access["organization"] == [org["alias"]]


# -- the console and the page -------------------------------------------------------------

def console_login(page, kc, email: str) -> None:
    page.goto(f"{kc.url}/admin/{kc.realm}/console/")
    page.fill("#username", email)
    page.click("[type=submit]")
    page.wait_for_selector("#password")
    page.fill("#password", PASSWORD)
    page.click("[type=submit]")
    page.get_by_role("link", name="Users").wait_for()


def console_users(page, expected: set[str]) -> set[str]:
    """The usernames the console's Users list shows, refreshed until they are `expected` (or 20 s passed)."""
    page.get_by_role("link", name="Users").click()
    links = page.locator("table tbody tr td:nth-child(2) a")
    shown: set[str] = set()
    for _ in range(20):
        page.get_by_role("button", name="Refresh").click()
        try:
            links.first.wait_for(timeout=5000)
        except Exception:  # noqa: BLE001 — an empty list shows no link; refresh again
            pass
        shown = {t.strip() for t in links.all_inner_texts()}
        if shown == expected:
            break
        page.wait_for_timeout(1000)
    return shown


def test_an_org_admin_manages_their_members_in_the_console_and_on_the_page(
        adapter, adapter_url, worker, crm, mail_dir, keycloak, realm_admin, chromium, page, unique):
    client = adapter.test_client()
    worker.run_once()  # the admin event log is read from here on
    acme = onboard_by_invitation(client, worker, crm, mail_dir, chromium, unique)
    assert "org_admin" in realm_admin.realm_roles(acme["admin"])
    member_tokens = token(keycloak, acme["member_email"])
    assert app_roles(member_tokens["access_token"]) == {"docs:read", "orders:read", "orders:write"}

    # Another customer, with a person Ada must never see.
    other = realm_admin.create_user(f"olga.{unique}@other-{unique}.example", PASSWORD)
    post(client, "account.upserted", {"account_id": f"OTHER-{unique}", "name": f"Other {unique}", "contract": {"status": "active"}})
    run_until(worker, lambda: adapter.extensions["keybridge"].keycloak.find_organization(f"OTHER-{unique}"), what="other org")
    realm_admin.add_member(adapter.extensions["keybridge"].keycloak.find_organization(f"OTHER-{unique}")["id"], other)

    # 1. The console, with Ada's own password: her organization's members, nobody else.
    console_login(page, keycloak, acme["admin_email"])
    expected = {acme["admin_email"], acme["member_email"]}
    assert console_users(page, expected) == expected
    shot(page, "01-console-members")

    # 2. Give Bob a business role: only business roles are offered.
    page.get_by_role("link", name=acme["member_email"]).click()
    page.get_by_test_id("role-mapping-tab").click()
    page.get_by_role("button", name="Assign role").click()
    page.get_by_role("menuitem", name="Realm roles").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("row", name="technical_contact").wait_for()
    offered = {t.strip() for t in dialog.locator("tbody tr td:nth-child(2)").all_inner_texts()}
    assert offered == BUSINESS_ROLES - {"buyer"}, offered
    shot(page, "02-console-assign-business-role")
    dialog.get_by_role("row", name="technical_contact").get_by_role("checkbox").check()
    dialog.get_by_role("button", name="Assign", exact=True).click()
    page.get_by_text("User role mapping successfully updated").wait_for()
    shot(page, "03-console-role-given")
    given = run_until(worker, lambda: changes(crm, change="roles_changed", user_id=acme["member"]), what="roles_changed at the CRM")
    assert given[0] == {"account_id": acme["account_id"], "user_id": acme["member"], "contact_id": f"CB-{unique}",
                        "change": "roles_changed", "roles": ["buyer", "technical_contact"], "actor": acme["admin_email"],
                        "actor_user_id": acme["admin"]}
    member_tokens = refresh(keycloak, member_tokens).json()
    assert "tickets:write" in app_roles(member_tokens["access_token"])

    # 3. The page, behind the same Keycloak login: take both business roles away.
    page.goto(f"{adapter_url}/portal/")
    row = page.locator(f"#members tr[data-email='{acme['member_email']}']")
    row.wait_for()
    assert "buyer" in row.inner_text() and "technical_contact" in row.inner_text()
    assert other not in page.content() and f"olga.{unique}" not in page.content()
    shot(page, "04-page-members")
    for role in ("technical_contact", "buyer"):
        page.locator(f"#members tr[data-email='{acme['member_email']}']").get_by_role("button", name=f"Take {role} from").click()
        page.get_by_text(f"{role} taken away").wait_for()
    shot(page, "05-page-roles-taken")
    assert realm_admin.realm_roles(acme["member"]) & BUSINESS_ROLES == set()
    run_until(worker, lambda: [(c["roles"], c["actor"]) for c in changes(crm, change="roles_changed", user_id=acme["member"])][1:]
              == [(["buyer"], acme["admin_email"]), ([], acme["admin_email"])], what="both roles taken, at the CRM")
    # Their last business role gone: the next refresh carries no application role.
    refreshed = refresh(keycloak, member_tokens)
    assert refreshed.status_code == 200 and app_roles(refreshed.json()["access_token"]) == set()
    member_tokens = refreshed.json()

    # 4. Invite a new person from the page (Keycloak's organization invitation, as the CRM's): she
    #    registers through the link and belongs to Acme with the default business role.
    dee = f"dee.{unique}@acme-{unique}.example"
    page.fill("#invite input[name=email]", dee)
    page.fill("#invite input[name=first_name]", "Dee")
    page.fill("#invite input[name=last_name]", "Newcomer")
    page.click("#invite button[type=submit]")
    page.get_by_text(f"{dee} is invited").wait_for()
    assert page.locator(f"#invitations tr[data-email='{dee}']").count() == 1
    shot(page, "06-page-invited")
    context = chromium.new_context()
    register_through_invitation(context.new_page(), wait_for_mail(mail_dir, to=dee)[0].link, "Dee", "Newcomer")
    context.close()
    added = run_until(worker, lambda: changes(crm, change="added", actor=acme["admin_email"]), what="added at the CRM")
    assert added[0]["roles"] == ["member"] and added[0]["account_id"] == acme["account_id"]
    dee_access = claims(token(keycloak, dee)["access_token"])
    assert dee_access["organization"] == [acme["alias"]] and "docs:read" in dee_access["resource_access"]["customer-portal"]["roles"]
    # Eve, who had an identity, is added to Acme by Keycloak's operator (an unmanaged member).
    eve = f"eve.{unique}@acme-{unique}.example"
    eve_id = realm_admin.create_user(eve, PASSWORD)
    acme_org = adapter.extensions["keybridge"].keycloak.find_organization(acme["account_id"])["id"]
    realm_admin.add_member(acme_org, eve_id)
    realm_admin.give_realm_roles(eve_id, "member")
    run_until(worker, lambda: _admin_events_done(adapter.extensions["keybridge"], f"organizations/{acme_org}/members"),
              what="Eve's membership followed by Ada's permissions")
    page.goto(f"{keycloak.url}/admin/{keycloak.realm}/console/")
    expected = {acme["admin_email"], acme["member_email"], dee, eve}
    assert console_users(page, expected) == expected
    shot(page, "07-console-members-after-invite")

    # 5. Remove Eve from the page: she keeps her identity, but her next refresh is refused and a new
    #    login carries neither the organization nor an application role.
    eve_tokens = token(keycloak, eve)
    page.goto(f"{adapter_url}/portal/")
    page.locator(f"#members tr[data-email='{eve}']").get_by_role("button", name="Remove").click()
    page.get_by_text("they are no longer a member").wait_for()
    shot(page, "08-page-removed")
    removed = run_until(worker, lambda: changes(crm, change="removed", user_id=eve_id), what="removed at the CRM")
    assert (removed[0]["actor"], removed[0]["roles"], removed[0]["identity_deleted"]) == (acme["admin_email"], [], False)
    assert refresh(keycloak, eve_tokens).status_code == 400
    after = claims(token(keycloak, eve)["access_token"])
    assert "organization" not in after and app_roles(token(keycloak, eve)["access_token"]) == set()

    # 6. Remove Bob, who registered through his invitation: Keycloak 26.7.3 deletes such a (managed) member.
    page.locator(f"#members tr[data-email='{acme['member_email']}']").get_by_role("button", name="Remove").click()
    page.get_by_text("Keycloak deleted their account").wait_for()
    removed = run_until(worker, lambda: changes(crm, change="removed", user_id=acme["member"]), what="removed at the CRM")
    assert (removed[0]["actor"], removed[0]["identity_deleted"]) == (acme["admin_email"], True)
    assert refresh(keycloak, member_tokens).status_code == 400
    page.goto(f"{keycloak.url}/admin/{keycloak.realm}/console/")
    assert console_users(page, {acme["admin_email"], dee}) == {acme["admin_email"], dee}
    shot(page, "09-console-members-after-removals")


# -- the org admin's own token: refused outside their organization -------------------------------

def test_an_org_admins_token_is_refused_everything_outside_their_organization(adapter, worker, keycloak, realm_admin, unique):
    client = adapter.test_client()
    kb = adapter.extensions["keybridge"]
    worker.run_once()
    for account in ("A", "B"):
        post(client, "account.upserted", {"account_id": f"{account}-{unique}", "name": f"{account} {unique}",
                                          "contract": {"status": "active"}})
    run_until(worker, lambda: kb.keycloak.find_organization(f"B-{unique}"), what="both organizations")
    org_a, org_b = kb.keycloak.find_organization(f"A-{unique}"), kb.keycloak.find_organization(f"B-{unique}")
    # People and an admin made by an operator in Keycloak: the adapter follows from the admin event log.
    ada = realm_admin.create_user(f"ada.{unique}@a-{unique}.example", PASSWORD)
    amy = realm_admin.create_user(f"amy.{unique}@a-{unique}.example", PASSWORD)
    ben = realm_admin.create_user(f"ben.{unique}@b-{unique}.example", PASSWORD)
    for org, user in ((org_a, ada), (org_a, amy), (org_b, ben)):
        realm_admin.add_member(org["id"], user)
    realm_admin.give_realm_roles(ada, "org_admin")
    realm_admin.give_realm_roles(amy, "buyer")
    realm_admin.give_realm_roles(ben, "buyer")
    names = delegation.DelegationNames.of(org_a["alias"])
    run_until(worker, lambda: realm_admin.admin_policy(names.members) is not None, what="the delegated permissions of A")

    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token(keycloak, f'ada.{unique}@a-{unique}.example', client_id='admin-cli')['access_token']}"
    base = keycloak.admin_url

    def call(method, path, **kwargs):
        return api.request(method, base + path, timeout=30, **kwargs).status_code

    buyer = realm_admin.call("GET", "/roles/buyer").json()
    billing = realm_admin.call("GET", "/roles/billing_admin").json()
    org_admin = realm_admin.call("GET", "/roles/org_admin").json()
    realm_management = realm_admin.call("GET", "/clients", params={"clientId": "realm-management"}).json()[0]
    manage_users = realm_admin.call("GET", f"/clients/{realm_management['id']}/roles/manage-users").json()
    permissions_client = realm_admin.call("GET", "").json()["adminPermissionsClient"]["id"]

    # What an org admin may do, for contrast.
    assert call("GET", f"/users/{amy}") == 200
    assert call("GET", f"/organizations/{org_a['id']}") == 200
    assert call("POST", f"/users/{amy}/role-mappings/realm", json=[billing]) == 204
    assert call("DELETE", f"/users/{amy}/role-mappings/realm", json=[billing]) == 204
    listed = api.get(base + "/users", params={"max": 100}, timeout=30).json()
    assert {u["id"] for u in listed} == {ada, amy}
    assert api.get(base + "/users", params={"search": f"ben.{unique}"}, timeout=30).json() == []

    refused = {
        # another organization's people
        "read B's person": call("GET", f"/users/{ben}"),
        "change B's person": call("PUT", f"/users/{ben}", json={"firstName": "X"}),
        "delete B's person": call("DELETE", f"/users/{ben}"),
        "read B's person's roles": call("GET", f"/users/{ben}/role-mappings/realm"),
        "give B's person a role": call("POST", f"/users/{ben}/role-mappings/realm", json=[billing]),
        "take B's person's role": call("DELETE", f"/users/{ben}/role-mappings/realm", json=[buyer]),
        "reset B's password": call("PUT", f"/users/{ben}/reset-password", json={"type": "password", "value": "x-Y-z-123456!"}),
        "mail B an action": call("PUT", f"/users/{ben}/execute-actions-email", json=["UPDATE_PASSWORD"]),
        "end B's sessions": call("POST", f"/users/{ben}/logout"),
        "read B's sessions": call("GET", f"/users/{ben}/sessions"),
        "impersonate B": call("POST", f"/users/{ben}/impersonation"),
        "read B's credentials": call("GET", f"/users/{ben}/credentials"),
        "read organization B": call("GET", f"/organizations/{org_b['id']}"),
        "list B's members": call("GET", f"/organizations/{org_b['id']}/members"),
        "remove B's member": call("DELETE", f"/organizations/{org_b['id']}/members/{ben}"),
        "invite into B": call("POST", f"/organizations/{org_b['id']}/members/invite-user", data={"email": f"x.{unique}@b.example"}),
        "join B": call("POST", f"/organizations/{org_b['id']}/members", data=ada, headers={"content-type": "application/json"}),
        "pull B's person into A": call("POST", f"/organizations/{org_a['id']}/members", data=ben, headers={"content-type": "application/json"}),
        "rename B": call("PUT", f"/organizations/{org_b['id']}", json={"name": "taken"}),
        "delete B": call("DELETE", f"/organizations/{org_b['id']}"),
        # beyond the business roles, and beyond the four actions in their own organization
        "make a member org_admin": call("POST", f"/users/{amy}/role-mappings/realm", json=[org_admin]),
        "give a realm-management role": call("POST", f"/users/{amy}/role-mappings/clients/{realm_management['id']}", json=[manage_users]),
        "give themselves manage-users": call("POST", f"/users/{ada}/role-mappings/clients/{realm_management['id']}", json=[manage_users]),
        "create a user": call("POST", "/users", json={"username": f"new.{unique}", "email": f"new.{unique}@a.example"}),
        "delete a member": call("DELETE", f"/users/{amy}"),
        "edit a member": call("PUT", f"/users/{amy}", json={"firstName": "X"}),
        "reset a member's password": call("PUT", f"/users/{amy}/reset-password", json={"type": "password", "value": "x-Y-z-123456!"}),
        "change organization A": call("PUT", f"/organizations/{org_a['id']}", json={**org_a, "attributes": {"contract_status": ["active"]}}),
        "delete organization A": call("DELETE", f"/organizations/{org_a['id']}"),
        "list all organizations": call("GET", "/organizations"),
        # realm settings
        "change the realm": call("PUT", "", json={"displayName": "taken", "registrationAllowed": False}),
        "list roles": call("GET", "/roles"),
        "create a role": call("POST", "/roles", json={"name": f"evil-{unique}"}),
        "change a business role": call("PUT", "/roles/buyer", json={**buyer, "description": "x"}),
        "add to a business role": call("POST", "/roles/buyer/composites", json=[org_admin]),
        "list clients": call("GET", "/clients"),
        "list client scopes": call("GET", "/client-scopes"),
        "read keys": call("GET", "/keys"),
        "read components": call("GET", "/components"),
        "read authentication flows": call("GET", "/authentication/flows"),
        "read identity providers": call("GET", "/identity-provider/instances"),
        "list groups": call("GET", "/groups"),
        "read events": call("GET", "/events"),
        "read admin events": call("GET", "/admin-events"),
        "change the user profile": call("PUT", "/users/profile", json={"attributes": []}),
        "read the permissions": call("GET", f"/clients/{permissions_client}/authz/resource-server/permission"),
        "change the permissions": call("POST", f"/clients/{permissions_client}/authz/resource-server/policy/user",
                                       json={"name": f"evil-{unique}", "users": [ada]}),
        "partial import": call("POST", "/partialImport", json={"users": []}),
    }
    assert {what: code for what, code in refused.items() if code != 403} == {}
    assert realm_admin.realm_roles(ben) & BUSINESS_ROLES == {"buyer"}
    assert realm_admin.call("GET", f"/organizations/{org_b['id']}").json()["name"] == f"B {unique}"


# -- admin rights belong to one organization ------------------------------------------------------

def _admin_events_done(kb, path_prefix: str) -> bool:
    from sqlalchemy import select

    from adapter.models import Job

    with kb.db.session() as session:
        jobs = [j for j in session.scalars(select(Job).where(Job.kind == "keycloak_admin_event"))
                if (j.payload.get("resourcePath") or "").startswith(path_prefix)]
    return bool(jobs) and all(j.status == "done" for j in jobs)


def test_an_admin_of_one_organization_who_is_a_plain_member_of_another_cannot_administer_it(
        adapter, adapter_url, worker, keycloak, realm_admin, chromium, unique):
    """Attack: Ada holds org_admin, administers A, and is also a plain member of B. Neither the page nor
    Keycloak (her own token: the console's API) may let her act on B or its people."""
    client = adapter.test_client()
    kb = adapter.extensions["keybridge"]
    worker.run_once()
    for account in ("A", "B"):
        post(client, "account.upserted", {"account_id": f"{account}-{unique}", "name": f"{account} {unique}",
                                          "contract": {"status": "active"}})
    run_until(worker, lambda: kb.keycloak.find_organization(f"B-{unique}"), what="both organizations")
    org_a, org_b = kb.keycloak.find_organization(f"A-{unique}"), kb.keycloak.find_organization(f"B-{unique}")
    ada_email = f"ada.{unique}@a-{unique}.example"
    ada = realm_admin.create_user(ada_email, PASSWORD)
    amy = realm_admin.create_user(f"amy.{unique}@a-{unique}.example", PASSWORD)
    ben = realm_admin.create_user(f"ben.{unique}@b-{unique}.example", PASSWORD)
    for org, user in ((org_a, ada), (org_a, amy), (org_b, ben)):
        realm_admin.add_member(org["id"], user)
    realm_admin.give_realm_roles(ada, "org_admin")  # an operator: she belongs to A only, so she administers A
    realm_admin.give_realm_roles(ben, "buyer")
    run_until(worker, lambda: realm_admin.admin_policy(delegation.DelegationNames.of(org_a["alias"]).members),
              what="A's delegated permissions")
    realm_admin.add_member(org_b["id"], ada)  # ...and later she joins B as a plain member
    run_until(worker, lambda: _admin_events_done(kb, f"organizations/{org_b['id']}/members"), what="B's membership change")

    # Keycloak, with her own token (what the admin console calls).
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token(keycloak, ada_email, client_id='admin-cli')['access_token']}"
    buyer = realm_admin.call("GET", "/roles/buyer").json()

    def call(method, path, **kwargs):
        return api.request(method, keycloak.admin_url + path, timeout=30, **kwargs).status_code

    assert call("GET", f"/users/{amy}") == 200  # A: hers
    refused = {
        "read B's person": call("GET", f"/users/{ben}"),
        "take B's person's role": call("DELETE", f"/users/{ben}/role-mappings/realm", json=[buyer]),
        "give B's person a role": call("POST", f"/users/{ben}/role-mappings/realm", json=[buyer]),
        "read organization B": call("GET", f"/organizations/{org_b['id']}"),
        "list B's members": call("GET", f"/organizations/{org_b['id']}/members"),
    }
    assert {what: code for what, code in refused.items() if code != 403} == {}
    assert {u["id"] for u in api.get(keycloak.admin_url + "/users", params={"max": 100}, timeout=30).json()} == {ada, amy}
    assert realm_admin.admin_policy(delegation.DelegationNames.of(org_b["alias"]).members) is None

    # The page, after her Keycloak login: A is hers, B is not (not shown, not reachable, no action on it).
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{adapter_url}/portal/")
    page.fill("#username", ada_email)
    page.click("[type=submit]")
    page.wait_for_selector("#password")
    page.fill("#password", PASSWORD)
    page.click("[type=submit]")
    page.locator("#members").wait_for()
    assert f"amy.{unique}" in page.content() and f"ben.{unique}" not in page.content() and f"B {unique}" not in page.content()
    csrf = page.locator("#invite input[name=csrf]").input_value()
    assert page.request.get(f"{adapter_url}/portal/?org={org_b['id']}").status == 403
    # B has an invitation waiting (sent by Keycloak's operator): B's, not hers.
    realm_admin.call("POST", f"/organizations/{org_b['id']}/members/invite-user", data={"email": f"bea.{unique}@b-{unique}.example"})
    (b_invitation,) = [i["id"] for i in realm_admin.call("GET", f"/organizations/{org_b['id']}/invitations").json()]
    for action, form in ((f"/portal/members/{ben}/remove", {}), (f"/portal/members/{ben}/roles/buyer/take", {}),
                         (f"/portal/members/{ben}/roles/give", {"role": "billing_admin"}),
                         (f"/portal/invitations/{b_invitation}/resend", {}), (f"/portal/invitations/{b_invitation}/revoke", {}),
                         ("/portal/invite", {"email": f"eve.{unique}@b-{unique}.example"})):
        answer = page.request.post(f"{adapter_url}{action}", form={"csrf": csrf, "org": org_b["id"], **form})
        assert answer.status == 403, (action, answer.status)
    # With her own organization in the form, B's person and B's invitation are still nobody of hers.
    for action, form, status in ((f"/portal/members/{ben}/roles/give", {"role": "billing_admin"}, 400),
                                 (f"/portal/invitations/{b_invitation}/resend", {}, 404),
                                 (f"/portal/invitations/{b_invitation}/revoke", {}, 404)):
        answer = page.request.post(f"{adapter_url}{action}", form={"csrf": csrf, "org": org_a["id"], **form})
        assert answer.status == status, (action, answer.status)
    shot(page, "10-page-other-organization-refused")
    context.close()
    assert ben in {m["id"] for m in realm_admin.call("GET", f"/organizations/{org_b['id']}/members").json()}
    assert realm_admin.realm_roles(ben) & BUSINESS_ROLES == {"buyer"}
    assert [i["id"] for i in realm_admin.call("GET", f"/organizations/{org_b['id']}/invitations").json()] == [b_invitation]
