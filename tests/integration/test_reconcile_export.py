"""The extension's bulk export (/realms/<realm>/keybridge-export) on the real Keycloak: it gives the same facts as the
admin API for a handful of users in two organizations, pages by id without skipping or repeating anyone, lists pending
invitations, and answers only a service account with a user-viewing role (401/403 otherwise).

The realm is shared with the other tests: assertions look at this test's own users (unique emails)."""
from __future__ import annotations

import requests

import pytest

pytestmark = pytest.mark.integration

LONG = "x" * 300  # Keycloak keeps attribute values over 255 characters in another column (LONG_VALUE)


def client_token(keycloak, client_id: str, secret: str) -> str:
    r = requests.post(f"{keycloak.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    r.raise_for_status()
    return r.json()["access_token"]


def export_page(keycloak, token: str | None, resource: str = "users", **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{keycloak.realm_url}/keybridge-export/{resource}", headers=headers, params=params, timeout=60)


def export_all(keycloak, token: str, resource: str = "users", max_pages: int | None = None, **params) -> list[dict]:
    items, after, pages = [], "", 0
    while True:
        r = export_page(keycloak, token, resource, after=after, **params)
        assert r.status_code == 200, r.text
        assert "no-store" in r.headers["Cache-Control"]
        body = r.json()
        items += body[resource]
        pages += 1
        after = body["next"]
        if after is None or (max_pages and pages >= max_pages):
            return items


@pytest.fixture
def world(keycloak, kc_admin, unique):
    """Two organizations and four users: in X, in Y, in both, in none; with attributes and roles of their own."""
    def post(path: str, **kwargs) -> requests.Response:
        r = requests.post(kc_admin.base + path, headers=kc_admin.headers, timeout=30, **kwargs)
        assert r.status_code in (201, 204), r.text
        return r

    orgs = {}
    for key in "XY":
        r = post("/organizations", json={"name": f"Export {key} {unique}", "alias": f"export-{key.lower()}-{unique}",
                                          "domains": [{"name": f"{key.lower()}-{unique}.example"}],
                                          "attributes": {"crm_account_id": [f"EXP-{key}-{unique}"]}})
        orgs[key] = r.headers["Location"].rsplit("/", 1)[1]
    roles = {r["name"]: r for r in kc_admin.get("/roles")}
    users = {}
    for key, member_of, attributes, extra_roles, enabled in (
            ("in-x", "X", {"crm_contact_id": [f"EXP-1-{unique}"], "phone": ["+1 555 0101"]}, ["member"], True),
            ("in-y", "Y", {"crm_contact_id": [f"EXP-2-{unique}"], "note": [LONG]}, ["member", "buyer"], False),
            ("in-both", "XY", {"crm_contact_id": [f"EXP-3-{unique}"], "crm_lead_id": ["L-9"]}, [], True),
            ("in-none", "", {}, [], True)):
        email = f"{key}.{unique}@export-{unique}.example"
        r = post("/users", json={"username": email, "email": email, "enabled": enabled, "emailVerified": key != "in-none",
                                 "firstName": f"F-{key}", "lastName": "Ünïcode-Ørsted", "attributes": attributes})
        user_id = r.headers["Location"].rsplit("/", 1)[1]
        for org in member_of:
            post(f"/organizations/{orgs[org]}/members", data=user_id)
        if extra_roles:
            post(f"/users/{user_id}/role-mappings/realm", json=[roles[n] for n in extra_roles])
        users[key] = user_id
    invited = f"invited.{unique}@x-{unique}.example"
    post(f"/organizations/{orgs['X']}/members/invite-user", data={"email": invited, "firstName": "In", "lastName": "Vited"})
    return {"orgs": orgs, "users": users, "invited": invited}


def test_the_export_gives_the_admin_apis_facts_in_keyset_pages(keycloak, kc_admin, world):
    token = client_token(keycloak, keycloak.client_id, keycloak.client_secret)
    exported = export_all(keycloak, token, max=500, attribute=["crm_contact_id", "phone", "note"])
    by_id = {u["id"]: u for u in exported}

    for key, user_id in world["users"].items():
        got = by_id[user_id]
        admin = kc_admin.get(f"/users/{user_id}")
        assert {k: got[k] for k in ("username", "email", "emailVerified", "firstName", "lastName", "enabled")} == \
            {k: admin.get(k) for k in ("username", "email", "emailVerified", "firstName", "lastName", "enabled")}, key
        wanted = {n: v for n, v in (admin.get("attributes") or {}).items() if n in ("crm_contact_id", "phone", "note")}
        assert got["attributes"] == wanted, key  # crm_lead_id was not asked for
        assert sorted(got["realmRoles"]) == sorted(kc_admin.realm_roles(user_id)), key
        assert sorted(got["organizations"]) == sorted(o["id"] for o in kc_admin.get(f"/organizations/members/{user_id}/organizations")), key
    assert by_id[world["users"]["in-y"]]["attributes"]["note"] == [LONG]
    assert sorted(by_id[world["users"]["in-both"]]["organizations"]) == sorted(world["orgs"].values())
    assert by_id[world["users"]["in-none"]]["organizations"] == [] and by_id[world["users"]["in-x"]]["enabled"] is True
    assert {"member", "buyer"} <= set(by_id[world["users"]["in-y"]]["realmRoles"])

    # Service accounts are not people: the admin API's user listing leaves them out, and so does the export.
    service_account = kc_admin.get(f"/clients/{kc_admin.get('/clients', clientId=keycloak.client_id)[0]['id']}/service-account-user")
    assert service_account["id"] not in by_id
    listed = {u["id"] for u in kc_admin.get("/users", first=0, max=100000, briefRepresentation="true")}
    assert len(exported) == len(by_id) and set(by_id) == listed  # everyone the admin API lists, once

    # Small pages, each after the last id of the one before: the same users in the same order, none twice.
    # A page holds at most `max` people; it may hold fewer (the page's id range also holds other realms' users
    # and service accounts, which are dropped), and only the last page answers `next: null`.
    small = export_all(keycloak, token, max=3)
    assert [u["id"] for u in small] == [u["id"] for u in exported]
    first = export_page(keycloak, token, max=3).json()
    assert len(first["users"]) <= 3 and first["next"] is not None
    assert small[0]["attributes"].keys() <= {"crm_contact_id"}  # the default attribute only

    invitations = export_all(keycloak, token, "invitations", max=2)
    mine = [i for i in invitations if i["email"] == world["invited"]]
    (admin_view,) = kc_admin.get(f"/organizations/{world['orgs']['X']}/invitations", email=world["invited"])
    assert mine == [{"id": admin_view["id"], "organizationId": world["orgs"]["X"], "email": world["invited"],
                     "expiresAt": mine[0]["expiresAt"]}] and admin_view["status"] == "PENDING"


def test_only_a_service_account_with_a_user_viewing_role_may_read_the_export(keycloak, kc_admin, world, unique):
    # No token, a forged one, or one of another realm (the master admin's): 401, asking for a bearer token.
    for token in (None, "not-a-token", keycloak.admin_token()):
        r = export_page(keycloak, token)
        assert r.status_code == 401, (token, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer") and "bearer token" in r.json()["error"]
        assert export_page(keycloak, token, "invitations").status_code == 401

    # A service account without view-users/manage-users (the delegation client has manage-realm only): 403.
    delegation = client_token(keycloak, keycloak.delegation_client_id, keycloak.delegation_client_secret)
    r = export_page(keycloak, delegation)
    assert r.status_code == 403 and "view-users" in r.json()["error"]
    assert export_page(keycloak, delegation, "invitations").status_code == 403

    # A person, even one holding view-users: 403.
    email = f"viewer.{unique}@export-{unique}.example"
    created = requests.post(f"{kc_admin.base}/users", headers=kc_admin.headers, timeout=30, json={
        "username": email, "email": email, "enabled": True, "emailVerified": True, "firstName": "V", "lastName": "U",
        "credentials": [{"type": "password", "value": "Export-pass-1", "temporary": False}]})
    assert created.status_code == 201
    viewer = created.headers["Location"].rsplit("/", 1)[1]
    management = kc_admin.get("/clients", clientId="realm-management")[0]["id"]
    view_users = kc_admin.get(f"/clients/{management}/roles/view-users")
    requests.post(f"{kc_admin.base}/users/{viewer}/role-mappings/clients/{management}", headers=kc_admin.headers,
                  json=[view_users], timeout=30).raise_for_status()
    login = requests.post(f"{keycloak.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "customer-portal", "username": email, "password": "Export-pass-1"})
    assert login.status_code == 200, login.text
    r = export_page(keycloak, login.json()["access_token"])
    assert r.status_code == 403 and "service account" in r.json()["error"]

    # The adapter's own credential: allowed; a bad page size is refused naming the parameter.
    adapter = client_token(keycloak, keycloak.client_id, keycloak.client_secret)
    assert export_page(keycloak, adapter, max=1).status_code == 200
    r = export_page(keycloak, adapter, max=0)
    assert r.status_code == 400 and r.json()["error"].startswith("max must be")
