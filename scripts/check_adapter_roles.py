#!/usr/bin/env python3
"""Checks, against a running Keycloak, that each of Keybridge's two service
accounts can make every admin call it needs and is refused what it must not do
-- and, with --minimize, finds a least-privilege set of realm-management roles
for each by taking roles away until a call breaks.

- keybridge-adapter (runtime: webhooks, worker, page): organizations, users,
  organization groups, role mappings, event logs; refused: realm settings,
  admin permissions, realm-management roles for anyone.
- keybridge-delegation (the worker's delegation step only): the fine-grained
  admin permissions; refused: users and organizations.

    python scripts/check_adapter_roles.py --url http://127.0.0.1:18080 --client-secret S --delegation-secret D
    python scripts/check_adapter_roles.py --url ... --client-secret S --delegation-secret D --minimize

--minimize changes the service accounts' roles while it runs and puts back
the imported ones at the end: use it on a test instance only. The result is
recorded in realm-config/customers-realm.json and explained in
realm-config/README.md. No probe changes a realm setting: a refused write is
sent with a body Keycloak rejects (400) once the permission check passed.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable

import requests

REALM = "customers"
CLIENT_ID = "keybridge-adapter"
DELEGATION_CLIENT_ID = "keybridge-delegation"
# Broadest first: --minimize tries to take these away in this order, so a
# narrower role that is enough survives a broader one that is not needed.
CANDIDATE_ROLES = [
    "realm-admin", "manage-realm", "manage-events", "manage-users", "manage-organizations",
    "view-realm", "view-users", "view-organizations", "view-events",
    "query-users", "query-groups", "query-organizations",
]


class Session:
    """A bearer-token session against one Keycloak realm's admin API."""

    def __init__(self, base: str, token: str) -> None:
        self.base = f"{base}/admin/realms/{REALM}"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, self.base + path, timeout=30, **kwargs)


def admin_session(url: str, user: str, password: str) -> Session:
    response = requests.post(
        f"{url}/realms/master/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "admin-cli", "username": user, "password": password},
        timeout=30,
    )
    response.raise_for_status()
    return Session(url, response.json()["access_token"])


def adapter_session(url: str, secret: str, client_id: str = CLIENT_ID) -> Session:
    response = requests.post(
        f"{url}/realms/{REALM}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        timeout=30,
    )
    response.raise_for_status()
    return Session(url, response.json()["access_token"])


def created_id(response: requests.Response) -> str:
    response.raise_for_status()
    return response.headers["Location"].rstrip("/").rsplit("/", 1)[1]


class Fixtures:
    """Objects made with the admin account, so each adapter call is tried on its own."""

    def __init__(self, admin: Session) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.account_id = f"acc-{tag}"
        self.org_id = created_id(admin.call("POST", "/organizations", json={
            "name": f"Probe {tag}", "alias": f"probe-{tag}",
            "domains": [{"name": f"probe-{tag}.example"}],
            "attributes": {"crm_account_id": [self.account_id]},
        }))
        self.contact_id = f"con-{tag}"
        self.email = f"probe-{tag}@probe-{tag}.example"
        self.user_id = created_id(admin.call("POST", "/users", json={
            "username": self.email, "email": self.email, "enabled": True,
            "firstName": "Probe", "lastName": "User", "attributes": {"crm_contact_id": [self.contact_id]},
        }))
        self.member_id = created_id(admin.call("POST", "/users", json={
            "username": f"member-{tag}@probe-{tag}.example", "email": f"member-{tag}@probe-{tag}.example",
            "enabled": True, "firstName": "Probe", "lastName": "Member",
        }))
        admin.call("POST", f"/organizations/{self.org_id}/members", json=self.member_id).raise_for_status()
        self.buyer = admin.call("GET", "/roles/buyer").json()
        self.created_orgs = [self.org_id]
        self.created_users = [self.user_id, self.member_id]

    def cleanup(self, admin: Session) -> None:
        for org_id in self.created_orgs:
            admin.call("DELETE", f"/organizations/{org_id}")
        for user_id in self.created_users:
            admin.call("DELETE", f"/users/{user_id}")
        for user in admin.call("GET", "/users", params={"search": f"-{self.tag}@"}).json():
            admin.call("DELETE", f"/users/{user['id']}")


def expect(response: requests.Response, *statuses: int, non_empty: bool = False) -> str | None:
    """None when the call did what the adapter needs, else a short reason."""
    if response.status_code not in statuses:
        return f"HTTP {response.status_code}"
    if non_empty and not response.json():
        return "empty result (the account cannot see the object)"
    return None


def adapter_calls(fx: Fixtures, admin: Session) -> dict[str, Callable[[Session], str | None]]:
    """Every admin call the adapter makes, by name."""

    def create_organization(sa: Session) -> str | None:
        tag = uuid.uuid4().hex[:8]
        response = sa.call("POST", "/organizations", json={
            "name": f"Probe new {tag}", "alias": f"probe-new-{tag}",
            "domains": [{"name": f"new-{tag}.example"}], "attributes": {"crm_account_id": [f"acc-{tag}"]},
        })
        if response.status_code == 201:
            fx.created_orgs.append(created_id(response))
        return expect(response, 201)

    def update_organization(sa: Session) -> str | None:
        org = admin.call("GET", f"/organizations/{fx.org_id}").json()
        org["attributes"] = {"crm_account_id": [fx.account_id], "contract_status": ["active"], "contract_ends_at": ["2030-01-01"]}
        org["domains"] = [{"name": f"probe-{fx.tag}.example"}, {"name": f"probe2-{fx.tag}.example"}]
        return expect(sa.call("PUT", f"/organizations/{fx.org_id}", json=org), 204)

    def create_user(sa: Session) -> str | None:
        tag = uuid.uuid4().hex[:8]
        email = f"new-{tag}-{fx.tag}@example.com"
        response = sa.call("POST", "/users", json={
            "username": email, "email": email, "enabled": True, "firstName": "New", "lastName": "User",
            "attributes": {"crm_contact_id": [f"con-{tag}"]},
        })
        if response.status_code == 201:
            fx.created_users.append(created_id(response))
        return expect(response, 201)

    def update_user_attributes(sa: Session) -> str | None:
        user = admin.call("GET", f"/users/{fx.user_id}").json()
        user["firstName"] = "Changed"
        user["attributes"] = {"crm_contact_id": [fx.contact_id], "phone": ["+1 555 0100"]}
        problem = expect(sa.call("PUT", f"/users/{fx.user_id}", json=user), 204)
        if problem:
            return problem
        stored = admin.call("GET", f"/users/{fx.user_id}").json().get("attributes", {})
        return None if stored.get("phone") == ["+1 555 0100"] else f"attribute not stored: {stored}"

    def disable_and_enable_user(sa: Session) -> str | None:
        for enabled in (False, True):
            user = admin.call("GET", f"/users/{fx.user_id}").json()
            user["enabled"] = enabled
            problem = expect(sa.call("PUT", f"/users/{fx.user_id}", json=user), 204)
            if problem:
                return problem
        return None

    def assign_realm_role(sa: Session) -> str | None:
        return expect(sa.call("POST", f"/users/{fx.user_id}/role-mappings/realm", json=[fx.buyer]), 204)

    def remove_realm_role(sa: Session) -> str | None:
        admin.call("POST", f"/users/{fx.user_id}/role-mappings/realm", json=[fx.buyer])
        return expect(sa.call("DELETE", f"/users/{fx.user_id}/role-mappings/realm", json=[fx.buyer]), 204)

    def add_org_member(sa: Session) -> str | None:
        admin.call("DELETE", f"/organizations/{fx.org_id}/members/{fx.user_id}")
        return expect(sa.call("POST", f"/organizations/{fx.org_id}/members", json=fx.user_id), 201)

    def remove_org_member(sa: Session) -> str | None:
        admin.call("POST", f"/organizations/{fx.org_id}/members", json=fx.user_id)
        return expect(sa.call("DELETE", f"/organizations/{fx.org_id}/members/{fx.user_id}"), 204)

    def invite_new_user(sa: Session) -> str | None:
        tag = uuid.uuid4().hex[:8]
        return expect(sa.call("POST", f"/organizations/{fx.org_id}/members/invite-user", data={
            "email": f"invitee-{tag}-{fx.tag}@example.com", "firstName": "In", "lastName": "Vitee"}), 204)

    def fresh_user() -> str:
        email = f"existing-{uuid.uuid4().hex[:8]}-{fx.tag}@example.com"
        user_id = created_id(admin.call("POST", "/users", json={
            "username": email, "email": email, "enabled": True, "firstName": "Ex", "lastName": "Isting"}))
        fx.created_users.append(user_id)
        return user_id

    def pending_invitation() -> str:
        email = f"pending-{uuid.uuid4().hex[:8]}-{fx.tag}@example.com"
        admin.call("POST", f"/organizations/{fx.org_id}/members/invite-user", data={"email": email}).raise_for_status()
        return admin.call("GET", f"/organizations/{fx.org_id}/invitations", params={"email": email}).json()[0]["id"]

    def invite_existing_user(sa: Session) -> str | None:
        # A second invitation of the same person answers 409 while the first is pending.
        return expect(sa.call("POST", f"/organizations/{fx.org_id}/members/invite-existing-user", data={"id": fresh_user()}), 204)

    def list_invitations(sa: Session) -> str | None:
        pending_invitation()
        return expect(sa.call("GET", f"/organizations/{fx.org_id}/invitations", params={"status": "PENDING"}), 200, non_empty=True)

    def resend_invitation(sa: Session) -> str | None:
        return expect(sa.call("POST", f"/organizations/{fx.org_id}/invitations/{pending_invitation()}/resend"), 204)

    def delete_invitation(sa: Session) -> str | None:
        return expect(sa.call("DELETE", f"/organizations/{fx.org_id}/invitations/{pending_invitation()}"), 204)

    def execute_actions_email(sa: Session) -> str | None:
        return expect(sa.call(
            "PUT", f"/users/{fx.user_id}/execute-actions-email",
            params={"client_id": "customer-portal", "redirect_uri": "http://localhost:3000/", "lifespan": 86400},
            json=["VERIFY_EMAIL", "UPDATE_PASSWORD"]), 204)

    def logout_user(sa: Session) -> str | None:
        return expect(sa.call("POST", f"/users/{fx.user_id}/logout"), 204)

    def admins_group() -> str:
        found = admin.call("GET", f"/organizations/{fx.org_id}/groups", params={"search": "admins", "exact": "true"}).json()
        if found:
            return found[0]["id"]
        return admin.call("POST", f"/organizations/{fx.org_id}/groups", json={"name": "admins"}).json()["id"]

    def create_organization_group(sa: Session) -> str | None:
        return expect(sa.call("POST", f"/organizations/{fx.org_id}/groups", json={"name": f"g-{uuid.uuid4().hex[:8]}"}), 201)

    def join_organization_group(sa: Session) -> str | None:
        group = admins_group()
        admin.call("DELETE", f"/organizations/{fx.org_id}/groups/{group}/members/{fx.member_id}")
        return expect(sa.call("PUT", f"/organizations/{fx.org_id}/groups/{group}/members/{fx.member_id}"), 204)

    def leave_organization_group(sa: Session) -> str | None:
        group = admins_group()
        admin.call("PUT", f"/organizations/{fx.org_id}/groups/{group}/members/{fx.member_id}")
        return expect(sa.call("DELETE", f"/organizations/{fx.org_id}/groups/{group}/members/{fx.member_id}"), 204)

    def list_organization_group_members(sa: Session) -> str | None:
        group = admins_group()
        admin.call("PUT", f"/organizations/{fx.org_id}/groups/{group}/members/{fx.member_id}")
        return expect(sa.call("GET", f"/organizations/{fx.org_id}/groups/{group}/members"), 200, non_empty=True)

    return {
        "create organization": create_organization,
        "find organization by crm_account_id": lambda sa: expect(
            sa.call("GET", "/organizations", params={"q": f"crm_account_id:{fx.account_id}", "exact": "true"}), 200, non_empty=True),
        "read organization": lambda sa: expect(sa.call("GET", f"/organizations/{fx.org_id}"), 200),
        "update organization (attributes, domains)": update_organization,
        "read organization member": lambda sa: expect(sa.call("GET", f"/organizations/{fx.org_id}/members/{fx.member_id}"), 200),
        "list organization members": lambda sa: expect(sa.call("GET", f"/organizations/{fx.org_id}/members"), 200, non_empty=True),
        "a user's organizations": lambda sa: expect(sa.call("GET", f"/organizations/members/{fx.member_id}/organizations"), 200, non_empty=True),
        "add organization member": add_org_member,
        "remove organization member": remove_org_member,
        "invite new user to organization": invite_new_user,
        "invite existing user to organization": invite_existing_user,
        "list pending invitations": list_invitations,
        "resend invitation": resend_invitation,
        "delete invitation": delete_invitation,
        "create user": create_user,
        "find user by email": lambda sa: expect(sa.call("GET", "/users", params={"email": fx.email, "exact": "true"}), 200, non_empty=True),
        "find user by attribute": lambda sa: expect(sa.call("GET", "/users", params={"q": f"crm_contact_id:{fx.contact_id}"}), 200, non_empty=True),
        "read user": lambda sa: expect(sa.call("GET", f"/users/{fx.user_id}"), 200),
        "update user and attributes": update_user_attributes,
        "disable and enable user": disable_and_enable_user,
        "read user's credentials": lambda sa: expect(sa.call("GET", f"/users/{fx.user_id}/credentials"), 200),
        "read realm role": lambda sa: expect(sa.call("GET", "/roles/buyer"), 200),
        "search realm roles": lambda sa: expect(sa.call("GET", "/roles", params={"search": "lead", "briefRepresentation": "true"}), 200, non_empty=True),
        "read user's realm roles": lambda sa: expect(sa.call("GET", f"/users/{fx.user_id}/role-mappings/realm"), 200),
        "assign realm role": assign_realm_role,
        "remove realm role": remove_realm_role,
        "execute-actions-email": execute_actions_email,
        "log user out": logout_user,
        "read events": lambda sa: expect(sa.call("GET", "/events", params={"max": 5}), 200),
        "read admin events": lambda sa: expect(sa.call("GET", "/admin-events", params={"max": 5}), 200),
        "users holding a realm role": lambda sa: expect(sa.call("GET", "/roles/buyer/users", params={"max": 5}), 200),
        "find an organization group": lambda sa: expect(sa.call(
            "GET", f"/organizations/{fx.org_id}/groups", params={"search": "admins", "exact": "true"}), 200),
        "create an organization group": create_organization_group,
        "put a member into an organization group": join_organization_group,
        "take a member out of an organization group": leave_organization_group,
        "list an organization group's members": list_organization_group_members,
        "a member's organization groups": lambda sa: expect(
            sa.call("GET", f"/organizations/{fx.org_id}/members/{fx.member_id}/groups"), 200),
        "read client profiles and policies (is contract access enforced)": lambda sa: expect(
            sa.call("GET", "/client-policies/profiles"), 200) or expect(sa.call("GET", "/client-policies/policies"), 200),
    }


def permissions_base(admin: Session) -> str:
    client = admin.call("GET", "").json()["adminPermissionsClient"]["id"]
    return f"/clients/{client}/authz/resource-server"


def delegation_calls(fx: Fixtures, admin: Session) -> dict[str, Callable[[Session], str | None]]:
    """Every admin call of the delegation step (adapter/delegation.py, KeycloakGateway admin_* methods)."""
    base = permissions_base(admin)

    def write_and_delete_permission(sa: Session) -> str | None:
        tag = uuid.uuid4().hex[:8]
        policy = sa.call("POST", f"{base}/policy/user", json={
            "name": f"probe admins {tag}", "type": "user", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS",
            "users": [fx.member_id]})
        if policy.status_code != 201:
            return f"create user policy: HTTP {policy.status_code}"
        policy_id = policy.json()["id"]
        try:
            permission = sa.call("POST", f"{base}/permission/scope", json={
                "name": f"probe members {tag}", "type": "scope", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS",
                "resourceType": "Users", "resources": [fx.member_id], "scopes": ["view"], "policies": [policy_id]})
            if permission.status_code != 201:
                return f"create permission: HTTP {permission.status_code}"
            permission_id = permission.json()["id"]
            for part in ("resources", "scopes", "associatedPolicies"):
                problem = expect(sa.call("GET", f"{base}/policy/{permission_id}/{part}"), 200)
                if problem:
                    return f"read a permission's {part}: {problem}"
            problem = expect(sa.call("PUT", f"{base}/permission/scope/{permission_id}", json={
                **permission.json(), "resourceType": "Users", "resources": [fx.member_id], "scopes": ["view", "map-roles"],
                "policies": [policy_id]}), 201, 204)
            if problem:
                return f"update permission: {problem}"
            return expect(sa.call("DELETE", f"{base}/policy/{permission_id}"), 204)
        finally:
            admin.call("DELETE", f"{base}/policy/{policy_id}")

    return {
        "read the realm (admin permissions client id)": lambda sa: expect(sa.call("GET", ""), 200),
        "search admin permissions": lambda sa: expect(sa.call("GET", f"{base}/policy", params={"name": "keybridge"}), 200),
        "write, read, update and delete a permission": write_and_delete_permission,
    }


def refused_calls(fx: Fixtures, admin: Session, client_id: str) -> dict[str, Callable[[Session], str | None]]:
    """What each client must be refused (403). Writes carry a body Keycloak would reject after the
    permission check (400), so a client that is wrongly allowed changes nothing either."""
    management = admin.call("GET", "/clients", params={"clientId": "realm-management"}).json()[0]["id"]
    manage_realm = admin.call("GET", f"/clients/{management}/roles/manage-realm").json()
    base = permissions_base(admin)

    def refused(response: requests.Response) -> str | None:
        return None if response.status_code == 403 else f"HTTP {response.status_code} (must be 403)"

    if client_id == DELEGATION_CLIENT_ID:
        return {
            # (manage-realm also reads and writes organizations themselves on 26.7.3, not their members)
            "read users": lambda sa: refused(sa.call("GET", "/users", params={"max": 1})),
            "list an organization's members": lambda sa: refused(sa.call("GET", f"/organizations/{fx.org_id}/members")),
            "change a user": lambda sa: refused(sa.call("PUT", f"/users/{fx.user_id}", json={"email": "not an address"})),
            "read the event log": lambda sa: refused(sa.call("GET", "/events", params={"max": 1})),
            "create a client": lambda sa: refused(sa.call("POST", "/clients", json={"clientId": ""})),
        }
    return {
        "write realm settings": lambda sa: refused(sa.call("PUT", "", json={"realm": "not/a/realm/name"})),
        "write admin permissions": lambda sa: refused(sa.call("POST", f"{base}/policy/user", json={"name": ""})),
        "give a realm-management role": lambda sa: refused(sa.call(
            "POST", f"/users/{fx.member_id}/role-mappings/clients/{management}", json=[manage_realm])),
        "create a client": lambda sa: refused(sa.call("POST", "/clients", json={"clientId": ""})),
    }


class ServiceAccountRoles:
    """Reads and replaces the service account's realm-management roles."""

    def __init__(self, admin: Session, client_id: str = CLIENT_ID) -> None:
        self.admin = admin
        client = admin.call("GET", "/clients", params={"clientId": client_id}).json()[0]
        self.user_id = admin.call("GET", f"/clients/{client['id']}/service-account-user").json()["id"]
        management = admin.call("GET", "/clients", params={"clientId": "realm-management"}).json()[0]
        self.management_id = management["id"]
        self.all_roles = {role["name"]: role for role in admin.call("GET", f"/clients/{self.management_id}/roles").json()}
        self.path = f"/users/{self.user_id}/role-mappings/clients/{self.management_id}"

    def current(self) -> list[str]:
        return sorted(role["name"] for role in self.admin.call("GET", self.path).json())

    def set(self, names: list[str]) -> None:
        existing = self.admin.call("GET", self.path).json()
        if existing:
            self.admin.call("DELETE", self.path, json=existing).raise_for_status()
        if names:
            self.admin.call("POST", self.path, json=[self.all_roles[name] for name in names]).raise_for_status()


def run_calls(calls: dict[str, Callable[[Session], str | None]], sa: Session) -> dict[str, str | None]:
    return {name: call(sa) for name, call in calls.items()}


def check(name: str, calls: dict, must_refuse: dict, sa: Session, roles: list[str]) -> bool:
    print(f"{name} service account roles: {', '.join(roles)}")
    results = {**run_calls(calls, sa), **{f"refused: {n}": problem for n, problem in run_calls(must_refuse, sa).items()}}
    for call, problem in results.items():
        print(f"  {'ok  ' if problem is None else 'FAIL'} {call}{'' if problem is None else ': ' + problem}")
    return all(problem is None for problem in results.values())


def minimize(name: str, calls: dict, roles: ServiceAccountRoles, login: Callable[[], Session]) -> bool:
    kept = [role for role in CANDIDATE_ROLES if role in roles.all_roles]
    roles.set(kept)
    broken = {call: problem for call, problem in run_calls(calls, login()).items() if problem}
    if broken:
        print(f"{name}: even with every candidate role these calls fail: {broken}")
        return False
    for role in list(kept):
        trial = [r for r in kept if r != role]
        roles.set(trial)
        failing = [call for call, problem in run_calls(calls, login()).items() if problem]
        if failing:
            print(f"{name}: keep   {role:22} without it: {', '.join(failing)}")
        else:
            kept = trial
            print(f"{name}: remove {role:22} nothing breaks")
    print(f"{name}: least-privilege set: {', '.join(kept)}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:18080")
    parser.add_argument("--client-secret", required=True, help="the keybridge-adapter client's secret")
    parser.add_argument("--delegation-secret", help="the keybridge-delegation client's secret (its checks are skipped without it)")
    parser.add_argument("--admin-user", default="admin")
    parser.add_argument("--admin-password", default="admin")
    parser.add_argument("--minimize", action="store_true", help="find a least-privilege role set (changes the roles while it runs)")
    args = parser.parse_args(argv)

    admin = admin_session(args.url, args.admin_user, args.admin_password)
    clients = [(CLIENT_ID, args.client_secret, adapter_calls)]
    if args.delegation_secret:
        clients.append((DELEGATION_CLIENT_ID, args.delegation_secret, delegation_calls))
    accounts = {client_id: ServiceAccountRoles(admin, client_id) for client_id, _, _ in clients}
    imported = {client_id: roles.current() for client_id, roles in accounts.items()}
    fx = Fixtures(admin)
    ok = True
    try:
        for client_id, secret, calls_of in clients:
            calls = calls_of(fx, admin)
            login = lambda client_id=client_id, secret=secret: adapter_session(args.url, secret, client_id)  # noqa: E731
            if args.minimize:
                ok = minimize(client_id, calls, accounts[client_id], login) and ok
            else:
                ok = check(client_id, calls, refused_calls(fx, admin, client_id), login(), imported[client_id]) and ok
        return 0 if ok else 1
    finally:
        if args.minimize:
            for client_id, roles in accounts.items():
                roles.set(imported[client_id])
        fx.cleanup(admin)


if __name__ == "__main__":
    sys.exit(main())
