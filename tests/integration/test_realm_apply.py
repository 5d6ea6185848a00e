"""`keybridge realm apply`: realm-config/ reaches a realm that already exists, with a dry run first."""
from __future__ import annotations

import os

import pytest
import requests
from click.testing import CliRunner

from adapter.cli import main
from tests.support import stack


@pytest.fixture
def apply_env(keycloak, monkeypatch):
    """What the operator sets: the placeholders Keycloak was started with, and an administrator."""
    for name in [n for n in os.environ if n.startswith("KEYBRIDGE_KEYCLOAK_DELEGATION") or n.startswith("KEYBRIDGE_NUDGE")]:
        monkeypatch.delenv(name)
    for name, value in {"KEYBRIDGE_KEYCLOAK_CLIENT_SECRET": keycloak.client_secret,
                        "KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET": keycloak.delegation_client_secret,
                        "KC_SMTP_HOST": "127.0.0.1",
                        "KC_SMTP_PORT": str(keycloak.smtp_port), "KEYBRIDGE_KEYCLOAK_URL": keycloak.url,
                        "KEYBRIDGE_REALM_ADMIN_USER": keycloak.admin_user,
                        "KEYBRIDGE_REALM_ADMIN_PASSWORD": keycloak.admin_password}.items():
        monkeypatch.setenv(name, value)
    return keycloak


def _admin(keycloak) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {keycloak.admin_token()}"
    return session


def _run(*args):
    return CliRunner().invoke(main, ["realm", "apply", *args])


def test_an_untouched_realm_matches_its_file(apply_env):
    result = _run("--dry-run")
    assert result.exit_code == 0, result.output
    assert "matches" in result.output


def test_drift_is_shown_by_the_dry_run_and_removed_by_apply(apply_env):
    keycloak = apply_env
    admin, base = _admin(keycloak), keycloak.admin_url
    realm = admin.get(base).json()
    portal = admin.get(f"{base}/clients", params={"clientId": "customer-portal"}).json()[0]
    adapter = admin.get(f"{base}/clients", params={"clientId": "keybridge-adapter"}).json()[0]
    account = admin.get(f"{base}/clients/{adapter['id']}/service-account-user").json()
    management = admin.get(f"{base}/clients", params={"clientId": "realm-management"}).json()[0]
    # an older Keybridge's adapter held manage-realm (now the keybridge-delegation client's alone)
    manage_realm = admin.get(f"{base}/clients/{management['id']}/roles/manage-realm").json()
    portal_roles = {r["name"]: r for r in admin.get(f"{base}/clients/{portal['id']}/roles").json()}
    try:
        # Drift an operator or an older Keybridge would leave behind.
        admin.put(base, json={"displayName": "Someone changed this"}).raise_for_status()
        admin.put(f"{base}/clients/{portal['id']}", json={**portal, "description": "edited by hand"}).raise_for_status()
        admin.request("DELETE", f"{base}/roles/buyer/composites", json=[portal_roles["orders:write"]]).raise_for_status()
        admin.post(f"{base}/users/{account['id']}/role-mappings/clients/{management['id']}", json=[manage_realm]).raise_for_status()

        dry = _run("--dry-run")
        assert dry.exit_code == 3, dry.output
        assert "update  realm customers" in dry.output and "displayName" in dry.output
        assert "update  client customer-portal" in dry.output and "description" in dry.output
        assert "update  realm role buyer" in dry.output and "+customer-portal:orders:write" in dry.output
        assert "update  service account keybridge-adapter" in dry.output and "-realm-management:manage-realm" in dry.output
        assert keycloak.client_secret not in dry.output
        # A dry run changes nothing.
        assert admin.get(base).json()["displayName"] == "Someone changed this"

        applied = _run()
        assert applied.exit_code == 0, applied.output
        assert "4 change(s) applied" in applied.output

        assert admin.get(base).json()["displayName"] == realm["displayName"]
        assert admin.get(f"{base}/clients/{portal['id']}").json()["description"] == portal["description"]
        composites = {r["name"] for r in admin.get(f"{base}/roles/buyer/composites").json()}
        assert "orders:write" in composites
        mapped = {r["name"] for r in admin.get(f"{base}/users/{account['id']}/role-mappings/clients/{management['id']}").json()}
        assert "manage-realm" not in mapped and "view-realm" in mapped
        # The adapter's secret was left as it was: its own login still works.
        token = requests.post(f"{keycloak.realm_url}/protocol/openid-connect/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": keycloak.client_id, "client_secret": keycloak.client_secret})
        assert token.status_code == 200

        again = _run("--dry-run")
        assert again.exit_code == 0 and "matches" in again.output, again.output
    finally:
        _run()  # leave the shared test realm as realm-config says, whatever happened above


def test_an_unset_placeholder_is_named(apply_env, monkeypatch):
    monkeypatch.delenv("KC_SMTP_HOST")
    result = _run("--dry-run")
    assert result.exit_code == 1
    assert "KC_SMTP_HOST" in result.output and "not set" in result.output


def test_a_wrong_administrator_is_told_what_to_set(apply_env, monkeypatch):
    monkeypatch.setenv("KEYBRIDGE_REALM_ADMIN_PASSWORD", "wrong")
    result = _run("--dry-run")
    assert result.exit_code == 1
    assert "KEYBRIDGE_REALM_ADMIN_PASSWORD" in result.output


def test_new_flows_roles_and_client_profiles_are_created_once(apply_env, tmp_path):
    """What a later realm-config adds (a flow with a sub-flow, a role, a client profile) is created,
    and a second run finds nothing to do."""
    import json
    from pathlib import Path

    keycloak = apply_env
    realm_file = json.loads((Path(__file__).resolve().parents[2] / "realm-config" / "customers-realm.json").read_text())
    suffix = os.urandom(3).hex()
    flow, sub, role, profile = f"kb-test-{suffix}", f"kb-test-{suffix}-forms", f"kb-test-role-{suffix}", f"kb-test-{suffix}"
    realm_file.setdefault("authenticationFlows", []).extend([
        {"alias": flow, "description": "test flow", "providerId": "basic-flow", "topLevel": True, "builtIn": False,
         "authenticationExecutions": [
             {"authenticator": "auth-cookie", "requirement": "ALTERNATIVE", "priority": 10, "authenticatorFlow": False},
             {"flowAlias": sub, "requirement": "ALTERNATIVE", "priority": 20, "authenticatorFlow": True}]},
        {"alias": sub, "description": "forms", "providerId": "basic-flow", "topLevel": False, "builtIn": False,
         "authenticationExecutions": [
             {"authenticator": "auth-username-password-form", "requirement": "REQUIRED", "priority": 10,
              "authenticatorFlow": False}]},
    ])
    realm_file["roles"]["realm"].append({"name": role, "description": "added later", "composite": True,
                                         "composites": {"client": {"customer-portal": ["docs:read"]}}})
    admin, base = _admin(keycloak), keycloak.admin_url
    live_profiles = admin.get(f"{base}/client-policies/profiles", params={"include-global-profiles": "false"}).json()
    realm_file["clientProfiles"] = {"profiles": live_profiles.get("profiles", []) + [
        {"name": profile, "description": "added later", "executors": []}]}
    path = tmp_path / "realm.json"
    path.write_text(json.dumps(realm_file))
    try:
        dry = _run("--file", str(path), "--dry-run")
        assert dry.exit_code == 3, dry.output
        assert f"create  flow {flow}" in dry.output
        assert f"create  realm role {role}" in dry.output
        assert f"update  client profiles" in dry.output

        applied = _run("--file", str(path))
        assert applied.exit_code == 0, applied.output
        executions = admin.get(f"{base}/authentication/flows/{flow}/executions").json()
        assert [(e["level"], e.get("providerId") or e["displayName"], e["requirement"]) for e in executions] == [
            (0, "auth-cookie", "ALTERNATIVE"), (0, sub, "ALTERNATIVE"), (1, "auth-username-password-form", "REQUIRED")]
        assert {r["name"] for r in admin.get(f"{base}/roles/{role}/composites").json()} == {"docs:read"}
        names = [p["name"] for p in admin.get(f"{base}/client-policies/profiles").json()["profiles"]]
        assert profile in names

        again = _run("--file", str(path), "--dry-run")
        assert again.exit_code == 0 and "matches" in again.output, again.output
    finally:
        flows = {f["alias"]: f["id"] for f in admin.get(f"{base}/authentication/flows").json()}
        if flow in flows:
            admin.delete(f"{base}/authentication/flows/{flows[flow]}")
        admin.delete(f"{base}/roles/{role}")
        admin.put(f"{base}/client-policies/profiles", json=live_profiles)
