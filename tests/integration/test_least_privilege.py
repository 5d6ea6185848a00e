"""Least privilege on the real Keycloak: the credential that processes webhooks cannot rewrite the realm.

Two clients (realm-config/README.md): `keybridge-adapter` (runtime: webhooks, worker, page) holds
manage-users, manage-organizations, view-realm and view-events; `keybridge-delegation` holds
manage-realm and is used only to write the org admins' permissions. Every probe of a write is
sent with a body Keycloak rejects after its permission check (400), so it changes nothing even
when it is (wrongly) allowed: 403 means refused, 400 means the caller got past the check.
"""
from __future__ import annotations

import importlib.util

import pytest
import requests

from tests.support import stack

pytestmark = pytest.mark.integration

INVALID_REALM = {"realm": "not/a/realm/name"}  # reserved characters: 400 once manage-realm is checked


def session_of(kc, client_id: str, secret: str) -> requests.Session:
    token = requests.post(f"{kc.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    token.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return session


def test_the_runtime_client_cannot_write_realm_settings_permissions_or_admin_roles(keycloak, kc_admin):
    runtime = session_of(keycloak, keycloak.client_id, keycloak.client_secret)
    delegation = session_of(keycloak, keycloak.delegation_client_id, keycloak.delegation_client_secret)
    base = keycloak.admin_url
    before = kc_admin.get("")

    # The probe is meaningful: the delegation client (manage-realm) gets past the check and is told the
    # body is bad; the runtime client is refused before that.
    assert delegation.put(base, json=INVALID_REALM, timeout=30).status_code == 400
    assert runtime.put(base, json=INVALID_REALM, timeout=30).status_code == 403
    permissions = f"{base}/clients/{before['adminPermissionsClient']['id']}/authz/resource-server"
    assert runtime.post(f"{permissions}/policy/user", json={"name": ""}, timeout=30).status_code == 403
    management = kc_admin.get("/clients", clientId="realm-management")[0]["id"]
    manage_realm = kc_admin.get(f"/clients/{management}/roles/manage-realm")
    own_user = kc_admin.get(f"/clients/{kc_admin.get('/clients', clientId=keycloak.client_id)[0]['id']}/service-account-user")
    assert runtime.post(f"{base}/users/{own_user['id']}/role-mappings/clients/{management}", json=[manage_realm],
                        timeout=30).status_code == 403, "it must not give itself (or anyone) manage-realm"
    assert runtime.post(f"{base}/clients", json={"clientId": ""}, timeout=30).status_code == 403
    assert {r["name"] for r in kc_admin.get(f"/users/{own_user['id']}/role-mappings/clients/{management}")} == \
        {"manage-users", "manage-organizations", "view-realm", "view-events"}
    # ...and the delegation client cannot touch people.
    assert delegation.get(f"{base}/users", params={"max": 1}, timeout=30).status_code == 403
    assert delegation.put(f"{base}/users/{own_user['id']}", json={"email": "not an address"}, timeout=30).status_code == 403

    assert kc_admin.get("") == before, "no probe changed the realm"


def test_check_adapter_roles_passes_for_both_clients(keycloak):
    """scripts/check_adapter_roles.py: every call each client needs works, everything it must not do is refused."""
    spec = importlib.util.spec_from_file_location("check_adapter_roles", stack.REPO_DIR / "scripts" / "check_adapter_roles.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--url", keycloak.url, "--client-secret", keycloak.client_secret,
                        "--delegation-secret", keycloak.delegation_client_secret,
                        "--admin-user", keycloak.admin_user, "--admin-password", keycloak.admin_password]) == 0
