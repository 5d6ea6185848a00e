#!/usr/bin/env python3
"""The dev stack's demo operator: a user of realm `customers` with the role keybridge-operator,
so /dashboard/ can be opened right after `scripts/dev up`. Dev only (the realm file has no
users besides service accounts); running it again changes nothing.

    scripts/dev_operator.py --keycloak http://127.0.0.1:8080 [--email operator@keybridge.example --password operator]

The master realm's admin is read from KC_BOOTSTRAP_ADMIN_USERNAME/_PASSWORD (default admin/admin,
as scripts/keycloak.sh starts the dev Keycloak).
"""
from __future__ import annotations

import argparse
import os
import sys

import requests

ROLE = "keybridge-operator"


def ensure_operator(keycloak: str, email: str, password: str, realm: str = "customers") -> str:
    """The operator's user id; creates the user and gives the role only when missing."""
    token = requests.post(f"{keycloak}/realms/master/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "admin-cli",
        "username": os.environ.get("KC_BOOTSTRAP_ADMIN_USERNAME", "admin"),
        "password": os.environ.get("KC_BOOTSTRAP_ADMIN_PASSWORD", "admin")})
    token.raise_for_status()
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    base = f"{keycloak}/admin/realms/{realm}"
    found = admin.get(f"{base}/users", params={"email": email, "exact": "true"}, timeout=30).json()
    if found:
        user_id = found[0]["id"]
    else:
        r = admin.post(f"{base}/users", timeout=30, json={
            "username": email, "email": email, "emailVerified": True, "enabled": True, "firstName": "Demo",
            "lastName": "Operator", "credentials": [{"type": "password", "value": password, "temporary": False}]})
        r.raise_for_status()
        user_id = r.headers["Location"].rsplit("/", 1)[1]
    have = {r["name"] for r in admin.get(f"{base}/users/{user_id}/role-mappings/realm", timeout=30).json()}
    if ROLE not in have:
        role = admin.get(f"{base}/roles/{ROLE}", timeout=30)
        if role.status_code == 404:
            sys.exit(f"realm {realm} has no role {ROLE}: it was imported before the role existed; "
                     "run `keybridge realm apply` (README, Realm changes after the first import)")
        role.raise_for_status()
        admin.post(f"{base}/users/{user_id}/role-mappings/realm", json=[role.json()], timeout=30).raise_for_status()
    return user_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keycloak", required=True)
    parser.add_argument("--email", default="operator@keybridge.example")
    parser.add_argument("--password", default="operator")
    args = parser.parse_args()
    ensure_operator(args.keycloak.rstrip("/"), args.email, args.password)


if __name__ == "__main__":
    main()
