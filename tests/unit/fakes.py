"""An in-memory Keycloak for unit tests: the boundary faked, never the adapter code.

`FakeKeycloak` has the public methods of `adapter.keycloak.KeycloakGateway` and answers
them from dictionaries, the way the real gateway would for one realm:

- organizations with attributes and domains, members, organization invitations
  (status PENDING until the invitee registers: `register_invited_user`),
- users with attributes, realm roles (those of realm-config/customers-realm.json) and a password flag,
- the realm's user event log (`add_event`, read by `user_events`, dateFrom inclusive, oldest first),
- every email Keycloak would have sent (`emails`), and every call made (`calls`).

Failures are injected at the boundary only: `down = True` makes every call raise
`RetryableError` (Keycloak unreachable); `fail_next(method)` makes the next call of one
method raise; `go_down_after(method)` lets one call succeed and then takes Keycloak down
(a crash right after Keycloak did something); `fail_for(method, *ids)` makes the calls of
one method for some users (or organizations) fail until `heal()`.

The helpers at the end (`make_everything_due`, `outbox_events`, ...) read and age the
adapter's own storage; they never replace adapter code.
"""
from __future__ import annotations

import copy
import functools
import itertools
import json
import threading
import time
import uuid
from datetime import datetime, timezone

from adapter.jobs import PermanentError, RetryableError
from adapter.keycloak import KeycloakGateway


def realm_roles_of_realm_config() -> list[str]:
    """The realm roles declared in realm-config/customers-realm.json: the fake has exactly those."""
    from adapter.config import REPO_ROOT

    realm = json.loads((REPO_ROOT / "realm-config" / "customers-realm.json").read_text())
    return [role["name"] for role in realm["roles"]["realm"]]


def _kc(fn):
    """Record the call and apply the injected failures before running the fake."""

    @functools.wraps(fn)
    def inner(self, *args, **kwargs):
        with self._lock:  # one call at a time, like one consistent server (workers may run jobs in threads)
            name = fn.__name__
            self.calls.append((name, args, kwargs))
            if self.down:
                raise RetryableError(f"Keycloak unreachable while trying to {name} (fake is down)")
            if args and args[0] in self._fail_for.get(name, ()):
                raise RetryableError(f"Keycloak answered 503 while trying to {name} for {args[0]} (injected)")
            if self._fail_next.get(name):
                self._fail_next[name] -= 1
                raise self._fail_with.pop(name, None) or RetryableError(f"Keycloak answered 503 while trying to {name} (injected)")
            result = fn(self, *args, **kwargs)
            if name in self._down_after:
                self._down_after.discard(name)
                self.down = True
            return copy.deepcopy(result)

    return inner


class FakeKeycloak:
    """One realm of Keycloak, in memory. See the module docstring."""

    def __init__(self, realm: str = "customers", realm_roles=None):
        self._lock = threading.RLock()
        self.realm = realm
        self.down = False
        self.calls: list[tuple[str, tuple, dict]] = []
        self.emails: list[dict] = []
        self.organizations: dict[str, dict] = {}
        self.members: dict[str, set[str]] = {}
        self.invitations: dict[str, dict] = {}  # invitation id -> {id, organizationId, email, status, ...}
        self.users: dict[str, dict] = {}
        self.user_roles: dict[str, set[str]] = {}
        self.passwords: set[str] = set()
        names = realm_roles_of_realm_config() if realm_roles is None else realm_roles
        self.realm_roles: dict[str, dict] = {n: {"id": f"role-{n}", "name": n} for n in names}
        self.events: list[dict] = []
        self.sessions_ended: list[str] = []
        self._ids = itertools.count(1)
        self._fail_next: dict[str, int] = {}
        self._fail_with: dict[str, Exception] = {}
        self._down_after: set[str] = set()
        self._fail_for: dict[str, set] = {}
        self.has_export = True  # whether Keybridge's extension serves /realms/<realm>/keybridge-export

    # -- failure injection (test controls, not Keycloak API) ---------------------------

    def fail_next(self, method: str, times: int = 1, error: Exception | None = None) -> None:
        """The next `times` calls of `method` raise `error` (RetryableError by default)."""
        self._fail_next[method] = times
        if error is not None:
            self._fail_with[method] = error

    def fail_for(self, method: str, *first_args) -> None:
        """Calls of `method` whose first argument (a user or organization id) is one of
        `first_args` raise RetryableError until `heal()`; the other calls succeed."""
        self._fail_for.setdefault(method, set()).update(first_args)

    def heal(self) -> None:
        """Keycloak is healthy again: up, and every injected failure cleared."""
        self.down = False
        self._fail_next.clear()
        self._fail_with.clear()
        self._down_after.clear()
        self._fail_for.clear()

    def go_down_after(self, method: str) -> None:
        """The next call of `method` succeeds, then Keycloak is down."""
        self._down_after.add(method)

    def calls_to(self, method: str) -> list[tuple[tuple, dict]]:
        return [(a, k) for n, a, k in self.calls if n == method]

    def _new_id(self, prefix: str) -> str:
        """A UUID, as Keycloak's ids are (the adapter refuses anything else in a URL); stable per run."""
        return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{prefix}-{next(self._ids):04d}"))

    # -- organizations -----------------------------------------------------------------

    @_kc
    def find_organization(self, account_id: str) -> dict | None:
        found = [o for o in self.organizations.values() if account_id in (o.get("attributes") or {}).get("crm_account_id", [])]
        if len(found) > 1:
            raise PermanentError(f"Several organizations carry crm_account_id={account_id}")
        return found[0] if found else None

    @_kc
    def get_organization(self, org_id: str) -> dict:
        if org_id not in self.organizations:
            raise PermanentError(f"Keycloak refused to read an organization (404): {org_id}")
        return self.organizations[org_id]

    @_kc
    def create_organization(self, representation: dict) -> str:
        for org in self.organizations.values():
            if org["name"] == representation["name"] or org.get("alias") == representation.get("alias"):
                raise PermanentError("Keycloak refused to create an organization (409): name or alias in use")
        org_id = self._new_id("org")
        org = copy.deepcopy(representation)
        org["id"] = org_id
        org.setdefault("attributes", {})
        org.setdefault("domains", [])
        self.organizations[org_id] = org
        self.members[org_id] = set()
        return org_id

    @_kc
    def update_organization(self, org_id: str, representation: dict) -> None:
        if org_id not in self.organizations:
            raise PermanentError(f"Keycloak refused to update an organization (404): {org_id}")
        org = copy.deepcopy(representation)
        org["id"] = org_id
        self.organizations[org_id] = org

    @_kc
    def organization_invitations(self, org_id: str, email: str | None = None) -> list[dict]:
        found = [i for i in self.invitations.values() if i["organizationId"] == org_id]
        if email:
            found = [i for i in found if i["email"].lower() == email.lower()]
        return found

    @_kc
    def invite_new_member(self, org_id: str, email: str, first_name: str | None, last_name: str | None) -> None:
        self._require_org(org_id)
        invitation = self._pending_invitation(org_id, email, first_name, last_name)
        self.emails.append({"kind": "org_invite", "to": email.lower(), "organization_id": org_id, "invitation_id": invitation["id"]})

    @_kc
    def resend_organization_invitation(self, org_id: str, invitation_id: str) -> None:
        invitation = self.invitations.get(invitation_id)
        if invitation is None or invitation["organizationId"] != org_id:
            raise PermanentError(f"Keycloak refused to resend an invitation (404): {invitation_id}")
        self.emails.append({"kind": "org_invite_resend", "to": invitation["email"], "organization_id": org_id, "invitation_id": invitation_id})

    @_kc
    def delete_organization_invitation(self, org_id: str, invitation_id: str) -> bool:
        invitation = self.invitations.get(invitation_id)
        if invitation is None or invitation["organizationId"] != org_id:
            return False
        del self.invitations[invitation_id]
        return True

    @_kc
    def invite_existing_member(self, org_id: str, user_id: str) -> None:
        self._require_org(org_id)
        user = self.users.get(user_id)
        if user is None:
            raise PermanentError(f"Keycloak refused to send an organization join invitation (404): {user_id}")
        invitation = self._pending_invitation(org_id, user["email"], user.get("firstName"), user.get("lastName"))
        self.emails.append({"kind": "org_invite_existing", "to": user["email"], "organization_id": org_id,
                            "invitation_id": invitation["id"], "user_id": user_id})

    @_kc
    def is_member(self, org_id: str, user_id: str) -> bool:
        return user_id in self.members.get(org_id, set())

    @_kc
    def add_member(self, org_id: str, user_id: str) -> None:
        self._require_org(org_id)
        if user_id not in self.users:
            raise PermanentError(f"Keycloak refused to add a member (404): {user_id}")
        self.members[org_id].add(user_id)

    @_kc
    def remove_member(self, org_id: str, user_id: str) -> None:
        self.members.get(org_id, set()).discard(user_id)
        self._leave_groups(org_id, user_id)

    # -- organization groups (Keycloak 26.6+) ------------------------------------------

    @property
    def org_groups(self) -> dict[str, dict]:
        """group id -> {id, name, path, organizationId, members: set of user ids}."""
        return self.__dict__.setdefault("_org_groups", {})

    def _leave_groups(self, org_id: str, user_id: str) -> None:
        """Leaving an organization leaves its groups too, as in Keycloak."""
        for group in self.org_groups.values():
            if group["organizationId"] == org_id:
                group["members"].discard(user_id)

    @_kc
    def organization_group(self, org_id: str, name: str) -> dict | None:
        self._require_org(org_id)
        found = [g for g in self.org_groups.values() if g["organizationId"] == org_id and g["name"] == name]
        return {k: v for k, v in found[0].items() if k != "members"} if found else None

    @_kc
    def create_organization_group(self, org_id: str, name: str, description: str = "") -> str:
        self._require_org(org_id)
        existing = self.organization_group(org_id, name)
        if existing:
            return existing["id"]
        group_id = self._new_id("grp")
        self.org_groups[group_id] = {"id": group_id, "name": name, "path": f"/{name}", "organizationId": org_id, "members": set()}
        return group_id

    @_kc
    def organization_group_member_ids(self, org_id: str, group_id: str, page_size: int = 500) -> set[str]:
        return set(self.org_groups[group_id]["members"])

    @_kc
    def add_organization_group_member(self, org_id: str, group_id: str, user_id: str) -> bool:
        if user_id not in self.members.get(org_id, set()):
            raise PermanentError("Keycloak refused to add a member to an organization group (400): User is not member of the organization")
        group = self.org_groups[group_id]
        if user_id in group["members"]:
            return False
        group["members"].add(user_id)
        return True

    @_kc
    def remove_organization_group_member(self, org_id: str, group_id: str, user_id: str) -> None:
        self.org_groups[group_id]["members"].discard(user_id)

    @_kc
    def member_organization_groups(self, org_id: str, user_id: str) -> list[dict]:
        if user_id not in self.members.get(org_id, set()):
            return []
        return [{k: v for k, v in g.items() if k != "members"} for g in self.org_groups.values()
                if g["organizationId"] == org_id and user_id in g["members"]]

    @_kc
    def organization_members(self, org_id: str, page_size: int = 500) -> list[dict]:
        self._require_org(org_id)
        return [copy.deepcopy(self.users[u]) for u in sorted(self.members[org_id])]

    @_kc
    def user_organizations(self, user_id: str) -> list[dict]:
        return [copy.deepcopy(o) for oid, o in self.organizations.items() if user_id in self.members.get(oid, set())]

    @_kc
    def update_organization_attributes(self, org_id: str, attributes: dict[str, list[str]]) -> None:
        self._require_org(org_id)
        self.organizations[org_id].setdefault("attributes", {}).update(copy.deepcopy(attributes))

    def warm_up(self) -> None:
        pass

    #: set to a CredentialError (or RetryableError) to make the token request fail, as a wrong secret does
    token_refusal: Exception | None = None

    def check_credentials(self) -> None:
        """The adapter's token request: raises `token_refusal` when set."""
        if self.token_refusal is not None:
            raise self.token_refusal

    def _require_org(self, org_id: str) -> None:
        if org_id not in self.organizations:
            raise PermanentError(f"Keycloak refused the call (404): no organization {org_id}")

    def _pending_invitation(self, org_id, email, first_name, last_name) -> dict:
        invitation = {"id": self._new_id("inv"), "organizationId": org_id, "email": email.lower(),
                      "firstName": first_name or "", "lastName": last_name or "", "status": "PENDING",
                      "sentDate": int(time.time())}
        self.invitations[invitation["id"]] = invitation
        return invitation

    # -- users -------------------------------------------------------------------------

    @_kc
    def find_user_by_email(self, email: str) -> dict | None:
        found = [u for u in self.users.values() if (u.get("email") or "").lower() == email.lower()]
        return found[0] if found else None

    @_kc
    def find_user_by_attribute(self, name: str, value: str) -> dict | None:
        found = [u for u in self.users.values() if value in (u.get("attributes") or {}).get(name, [])]
        return found[0] if found else None

    @_kc
    def get_user(self, user_id: str) -> dict | None:
        return self.users.get(user_id)

    @_kc
    def create_user(self, representation: dict) -> str:
        return self._create_user(representation)

    def _create_user(self, representation: dict) -> str:
        email = (representation.get("email") or "").lower()
        username = (representation.get("username") or email).lower()
        for user in self.users.values():
            if user["username"] == username or (email and user.get("email") == email):
                raise PermanentError("Keycloak refused to create a user (409): User exists with same username or email")
        user_id = self._new_id("user")
        user = copy.deepcopy(representation)
        user.update(id=user_id, username=username, email=email)
        user.setdefault("attributes", {})
        user.setdefault("enabled", True)
        self.users[user_id] = user
        self.user_roles[user_id] = set()
        return user_id

    @_kc
    def update_user(self, user_id: str, representation: dict) -> None:
        if user_id not in self.users:
            raise PermanentError(f"Keycloak refused to update a user (404): {user_id}")
        self.users[user_id].update(copy.deepcopy(representation))

    @_kc
    def set_enabled(self, user_id: str, enabled: bool) -> None:
        if user_id not in self.users:
            raise PermanentError(f"Keycloak refused to update a user (404): {user_id}")
        self.users[user_id]["enabled"] = enabled

    @_kc
    def send_verify_email(self, user_id: str) -> None:
        self.emails.append({"kind": "verify_email", "to": self.users[user_id]["email"], "user_id": user_id})

    @_kc
    def logout(self, user_id: str) -> None:
        self.sessions_ended.append(user_id)

    # Not a Keycloak call but a merge over update_user: use the gateway's own code, not a copy of it.
    set_user_attributes = KeycloakGateway.set_user_attributes

    @_kc
    def has_password(self, user_id: str) -> bool:
        return user_id in self.passwords

    @_kc
    def send_actions_email(self, user_id: str, actions: list[str], lifespan_seconds: int,
                           client_id: str | None = None, redirect_uri: str | None = None) -> None:
        user = self.users.get(user_id)
        if user is None:
            raise PermanentError(f"Keycloak refused to send the invitation email (404): {user_id}")
        self.emails.append({"kind": "actions", "to": user["email"], "user_id": user_id, "actions": list(actions),
                            "lifespan": lifespan_seconds, "client_id": client_id, "redirect_uri": redirect_uri})

    # -- roles -------------------------------------------------------------------------

    @_kc
    def realm_role(self, name: str) -> dict:
        if name not in self.realm_roles:
            raise PermanentError(f"Keycloak refused to read a realm role (404): {name}")
        return self.realm_roles[name]

    @_kc
    def user_realm_roles(self, user_id: str) -> set[str]:
        return set(self.user_roles.get(user_id, set()))

    @_kc
    def user_effective_realm_roles(self, user_id: str) -> set[str]:
        """Direct roles plus the groups' roles of the user (`group_roles`: group -> roles, `user_groups`: user -> groups)."""
        groups = self.__dict__.setdefault("user_groups", {}).get(user_id, set())
        inherited = {r for g in groups for r in self.__dict__.setdefault("group_roles", {}).get(g, set())}
        return set(self.user_roles.get(user_id, set())) | inherited

    @_kc
    def ensure_realm_roles(self, user_id: str, wanted: set[str], managed: set[str] | None = None) -> tuple[set[str], set[str]]:
        if user_id not in self.users:
            raise PermanentError(f"Keycloak refused to assign realm roles (404): {user_id}")
        unknown = set(wanted) - set(self.realm_roles)
        if unknown:
            raise PermanentError(f"Keycloak refused to assign realm roles (404): {sorted(unknown)}")
        have = self.user_roles[user_id]
        add = set(wanted) - have
        remove = (set(managed or ()) & have) - set(wanted)
        have |= add
        have -= remove
        return add, remove

    # -- event log ---------------------------------------------------------------------

    @_kc
    def user_events(self, date_from_ms: int, first: int, max_results: int) -> list[dict]:
        """User events at or after `date_from_ms` (inclusive), oldest first, paged by first/max."""
        matching = sorted((e for e in self.events if e["time"] >= date_from_ms), key=lambda e: e["time"])
        return matching[first:first + max_results]

    @_kc
    def ping(self) -> None:
        return None

    # -- the realm read in pages (reconciliation) ---------------------------------------

    @_kc
    def organizations_page(self, first: int, max_results: int) -> list[dict]:
        orgs = sorted(self.organizations.values(), key=lambda o: o["name"])
        return orgs[first:first + max_results]

    @_kc
    def organization_members_page(self, org_id: str, first: int, max_results: int, brief: bool = True) -> list[dict]:
        self._require_org(org_id)
        page = sorted(self.members[org_id], key=lambda u: self.users[u]["username"])[first:first + max_results]
        if not brief:
            return [copy.deepcopy(self.users[u]) for u in page]
        return [{k: self.users[u].get(k) for k in ("id", "username", "email", "enabled")}
                | {"membershipType": "MANAGED" if (org_id, u) in self.managed_members else "UNMANAGED"} for u in page]

    @_kc
    def organization_invitations_page(self, org_id: str, first: int, max_results: int) -> list[dict]:
        self._require_org(org_id)
        found = [i for i in self.invitations.values() if i["organizationId"] == org_id and i["status"] == "PENDING"]
        return found[first:first + max_results]

    @_kc
    def users_count(self) -> int:
        return len(self.users)

    @_kc
    def users_page(self, first: int, max_results: int) -> list[dict]:
        return sorted(self.users.values(), key=lambda u: u["username"])[first:first + max_results]

    # -- the extension's bulk export (keycloak-extension/, io.keybridge.keycloak.export) ---

    def _export(self, items: list[dict], after: str | None, max_results: int) -> tuple[list[dict], str | None]:
        if not self.has_export:
            from adapter.keycloak import ExportMissing

            raise ExportMissing("Keycloak has no keybridge-export endpoint (404)")
        page = [i for i in sorted(items, key=lambda i: i["id"]) if i["id"] > (after or "")][:max_results]
        return page, page[-1]["id"] if len(page) == max_results else None

    @_kc
    def export_users_page(self, after: str | None, max_results: int, attributes) -> tuple[list[dict], str | None]:
        users = [{k: u.get(k) for k in ("id", "username", "email", "emailVerified", "firstName", "lastName")}
                 | {"enabled": u.get("enabled", True),
                    "attributes": {n: v for n, v in (u.get("attributes") or {}).items() if n in attributes},
                    "realmRoles": sorted(self.user_roles.get(u["id"], set())),
                    "organizations": sorted(o for o, members in self.members.items() if u["id"] in members)}
                 for u in self.users.values()]
        return self._export(users, after, max_results)

    @_kc
    def export_invitations_page(self, after: str | None, max_results: int) -> tuple[list[dict], str | None]:
        pending = [{"id": i["id"], "organizationId": i["organizationId"], "email": i["email"], "expiresAt": 0}
                   for i in self.invitations.values() if i["status"] == "PENDING"]
        return self._export(pending, after, max_results)

    # -- what happens in Keycloak without the adapter (test controls) ------------------

    def add_event(self, type: str, user_id: str | None, details: dict | None = None, time_ms: int | None = None,
                  event_id: str | None = None) -> dict:
        """Append a user event to the realm's log, as Keycloak does when someone acts."""
        event = {"id": event_id or self._new_id("evt"), "time": time_ms if time_ms is not None else int(time.time() * 1000),
                 "type": type, "realmId": self.realm, "clientId": "account-console", "userId": user_id,
                 "details": dict(details or {})}
        self.events.append(event)
        return event

    def add_user(self, email: str, first_name: str = "", last_name: str = "", password: bool = False, verified: bool = False,
                 **attributes) -> str:
        """A user that exists in Keycloak already (registered earlier, or by an admin); `verified`: emailVerified."""
        user_id = self._create_user({"username": email, "email": email, "firstName": first_name, "lastName": last_name,
                                     "enabled": True, "emailVerified": verified,
                                     "attributes": {k: list(v) for k, v in attributes.items()}})
        if password:
            self.passwords.add(user_id)
        return user_id

    def register_invited_user(self, invitation_id: str, first_name: str = "Jane", last_name: str = "Doe") -> tuple[str, dict]:
        """The invitee follows the link and registers: the user exists, the invitation is used up,
        and a REGISTER event carrying the invitation id (details.token_id) is in the log.

        Membership and roles are left to the adapter, which is what the tests look at.
        Returns (user_id, event).
        """
        invitation = self.invitations.pop(invitation_id)
        user_id = self.add_user(invitation["email"], first_name, last_name, password=True)
        event = self.add_event("REGISTER", user_id, {"token_id": invitation_id, "email": invitation["email"],
                                                     "username": invitation["email"], "register_method": "form"})
        return user_id, event

    def choose_password(self, user_id: str) -> dict:
        """The lead follows the execute-actions link and sets a password: UPDATE_PASSWORD in the log.
        Following that link verifies the address, as in Keycloak 26.7.3."""
        self.passwords.add(user_id)
        self.users[user_id]["emailVerified"] = True
        return self.add_event("UPDATE_PASSWORD", user_id, {"custom_required_action": "UPDATE_PASSWORD"})

    def change_password(self, user_id: str) -> dict:
        """The account's holder changes its password in the account console (no link: nothing verified)."""
        self.passwords.add(user_id)
        return self.add_event("UPDATE_PASSWORD", user_id, {"credential_type": "password"})

    def self_register(self, email: str, verified: bool = False) -> tuple[str, dict]:
        """Someone registers on the login page (no invitation link): the realm does not verify the address."""
        user_id = self.add_user(email, "Some", "One", password=True, verified=verified)
        return user_id, self.add_event("REGISTER", user_id, {"email": email, "username": email, "register_method": "form"})

    def pending_invitations(self, email: str | None = None) -> list[dict]:
        return [i for i in self.invitations.values() if i["status"] == "PENDING" and (email is None or i["email"] == email.lower())]

    def emails_to(self, email: str) -> list[dict]:
        return [m for m in self.emails if m["to"] == email.lower()]

    # -- delegated administration: fine-grained admin permissions (v2) -----------------
    # Stored by name as Keycloak keeps them in the realm's admin-permissions client;
    # `grants` evaluates them the way Keycloak 26.7.3 does (see delegation.py).

    @property
    def admin_policies(self) -> dict[str, dict]:
        return self.__dict__.setdefault("_admin_policies", {})

    @property
    def admin_log(self) -> list[dict]:
        return self.__dict__.setdefault("_admin_log", [])

    @_kc
    def realm_role_user_ids(self, name: str, page_size: int = 500) -> set[str]:
        return {u for u, roles in self.user_roles.items() if name in roles}

    @_kc
    def admin_policy(self, name: str) -> dict | None:
        return self.admin_policies.get(name)

    @_kc
    def save_admin_user_policy(self, name: str, user_ids: list[str], description: str = "") -> str:
        if not user_ids:
            raise PermanentError(f"Admin policy {name!r} would name nobody; delete it instead.")
        return self._save_admin({"name": name, "type": "user", "users": sorted(user_ids), "description": description})

    @_kc
    def save_admin_permission(self, name: str, resource_type: str, resource_ids: list[str], scopes: list[str],
                              policy_ids: list[str], description: str = "") -> str:
        if not resource_ids:
            raise PermanentError(f"Admin permission {name!r} would cover every {resource_type}; delete it instead.")
        return self._save_admin({"name": name, "type": "scope", "resourceType": resource_type, "resources": sorted(resource_ids),
                                 "scopes": sorted(scopes), "policies": sorted(policy_ids), "description": description})

    def _save_admin(self, rep: dict) -> str:
        current = self.admin_policies.get(rep["name"])
        rep["id"] = current["id"] if current else self._new_id("pol")
        self.admin_policies[rep["name"]] = rep
        return rep["id"]

    @_kc
    def delete_admin_policy(self, name: str) -> bool:
        return self.admin_policies.pop(name, None) is not None

    @_kc
    def admin_events(self, date_from_ms: int, first: int, max_results: int, resource_types: list[str] | None = None) -> list[dict]:
        """Admin events at or after `date_from_ms` (inclusive), of these resource types, oldest first."""
        matching = sorted((e for e in self.admin_log if e["time"] >= date_from_ms
                           and (not resource_types or e["resourceType"] in resource_types)), key=lambda e: e["time"])
        return matching[first:first + max_results]

    SERVICE_ACCOUNT_ID = "user-service-account-keybridge-adapter"

    @_kc
    def service_account_user_id(self) -> str:
        return self.SERVICE_ACCOUNT_ID

    @_kc
    def openid_configuration(self) -> dict:
        base = f"http://keycloak.test/realms/{self.realm}/protocol/openid-connect"
        return {"issuer": f"http://keycloak.test/realms/{self.realm}", "authorization_endpoint": f"{base}/auth", "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/userinfo", "end_session_endpoint": f"{base}/logout"}

    @_kc
    def exchange_login_code(self, client_id: str, code: str, redirect_uri: str, code_verifier: str) -> dict:
        user_id = self.__dict__.setdefault("_login_codes", {}).pop(code, None)
        if user_id is None:
            raise PermanentError("Keycloak refused to exchange a login code (400): invalid_grant")
        return {"access_token": f"token-{user_id}", "id_token": f"id-token-{user_id}", "token_type": "Bearer"}

    @_kc
    def userinfo(self, access_token: str) -> dict:
        user = self.users.get(access_token.removeprefix("token-"))
        if user is None:
            raise PermanentError("Keycloak refused to read the logged-in person (401)")
        return {"sub": user["id"], "email": user["email"], "preferred_username": user["username"]}

    #: whether the realm applies keycloak-extension's client policy (the adapter checks before lifting old cut-offs)
    enforces_contract_access = True

    @_kc
    def contract_access_enforced(self) -> bool:
        return self.enforces_contract_access

    def can_log_in(self, user_id: str, now: datetime | None = None) -> bool:
        """What Keycloak with keybridge's extension answers to this person's login or refresh (test control,
        written from AccessRule.java, not from the adapter): enabled, crm_status not `left`, and, when they
        belong to CRM organizations, at least one of them with status `active` and no end date passed."""
        user = self.users.get(user_id)
        if user is None or not user.get("enabled", True):
            return False
        if [s.lower() for s in (user.get("attributes") or {}).get("crm_status") or []][:1] == ["left"]:
            return False
        now = now or datetime.now(timezone.utc)
        customers = [o for oid, o in self.organizations.items()
                     if user_id in self.members.get(oid, set()) and (o.get("attributes") or {}).get("crm_account_id")]

        def active(org):
            attributes = org.get("attributes") or {}
            if (attributes.get("contract_status") or [None])[0] != "active":
                return False
            ends = (attributes.get("contract_ends_at") or [None])[0]
            return ends is None or datetime.fromisoformat(ends.replace("Z", "+00:00")) > now

        return not customers or any(active(o) for o in customers)

    @_kc
    def organizations_of_member(self, user_id: str) -> list[dict]:
        return [copy.deepcopy(o) for oid, o in self.organizations.items() if user_id in self.members.get(oid, set())]

    @property
    def managed_members(self) -> set[tuple[str, str]]:
        """(organization id, user id) of MANAGED memberships: removing one deletes the user, as Keycloak does."""
        return self.__dict__.setdefault("_managed_members", set())

    @_kc
    def membership_type(self, org_id: str, user_id: str) -> str | None:
        if user_id not in self.members.get(org_id, set()):
            return None
        return "MANAGED" if (org_id, user_id) in self.managed_members else "UNMANAGED"

    # -- what admins do in Keycloak's console (test controls) -----------------------------

    def login_code_for(self, user_id: str) -> str:
        """The code Keycloak would hand the browser after `user_id` logged in."""
        code = self._new_id("code")
        self.__dict__.setdefault("_login_codes", {})[code] = user_id
        return code

    def add_admin_event(self, operation: str, resource_type: str, path: str, actor_id: str,
                        representation=None, details: dict | None = None, time_ms: int | None = None) -> dict:
        """Append an admin event, as Keycloak does for every admin API call."""
        event = {"id": self._new_id("adm"), "time": time_ms if time_ms is not None else int(time.time() * 1000),
                 "realmId": self.realm, "authDetails": {"realmId": self.realm, "clientId": "console", "userId": actor_id},
                 "operationType": operation, "resourceType": resource_type, "resourcePath": path,
                 "representation": json.dumps(representation) if representation is not None else None}
        if details:
            event["details"] = dict(details)
        self.admin_log.append(event)
        return event

    def admin_maps_roles(self, actor_id: str, user_id: str, roles: set[str], add: bool = True) -> dict:
        """An admin gives (or takes) realm roles in the console: the roles change and the log says who."""
        if add:
            self.user_roles[user_id] |= set(roles)
        else:
            self.user_roles[user_id] -= set(roles)
        return self.add_admin_event("CREATE" if add else "DELETE", "REALM_ROLE_MAPPING", f"users/{user_id}/role-mappings/realm",
                                    actor_id, [self.realm_roles[r] for r in sorted(roles)])

    def admin_changes_membership(self, actor_id: str, org_id: str, user_id: str, add: bool = True) -> dict:
        """An admin adds or removes an organization member through the admin API."""
        user = self.users[user_id]
        if add:
            self.members[org_id].add(user_id)
            path = f"organizations/{org_id}/members"
        else:
            self.members[org_id].discard(user_id)
            self._leave_groups(org_id, user_id)
            path = f"organizations/{org_id}/members/{user_id}"
        return self.add_admin_event("CREATE" if add else "DELETE", "ORGANIZATION_MEMBERSHIP", path, actor_id,
                                    {"id": org_id, "name": self.organizations[org_id]["name"]},
                                    {"username": user["username"], "email": user["email"]})

    def admin_changes_group_membership(self, actor_id: str, org_id: str, group_id: str, user_id: str, add: bool = True) -> dict:
        """An admin puts a member into (or takes them out of) one of the organization's groups in the console."""
        group = self.org_groups[group_id]
        (group["members"].add if add else group["members"].discard)(user_id)
        user = self.users[user_id]
        return self.add_admin_event("CREATE" if add else "DELETE", "ORGANIZATION_GROUP_MEMBERSHIP",
                                    f"organizations/{org_id}/groups/{group_id}/members/{user_id}", actor_id,
                                    {"id": group_id, "name": group["name"], "path": group["path"]},
                                    {"username": user["username"], "email": user["email"]})

    def join_through_link(self, invitation_id: str) -> str:
        """An existing user follows an organization's join link: a member now (no admin event)."""
        invitation = self.invitations.pop(invitation_id)
        user = next(u for u in self.users.values() if u["email"] == invitation["email"])
        self.members[invitation["organizationId"]].add(user["id"])
        self.add_event("INVITE_ORG", user["id"], {"token_id": invitation_id, "org_id": invitation["organizationId"]})
        return user["id"]

    def grants(self, admin_id: str, resource_type: str, resource_id: str, scope: str) -> bool:
        """Whether Keycloak would let `admin_id` use `scope` on this resource: some permission covers it,
        and every permission covering it grants (its user policy names the admin)."""
        covering = [p for p in self.admin_policies.values() if p["type"] == "scope" and p["resourceType"] == resource_type
                    and resource_id in p["resources"] and scope in p["scopes"]]
        by_id = {p["id"]: p for p in self.admin_policies.values()}
        return bool(covering) and all(all(admin_id in by_id.get(pid, {}).get("users", []) for pid in p["policies"])
                                      for p in covering)


# -- helpers for tests that drive the runtime ----------------------------------------------

def make_everything_due(kb) -> None:
    """Time passes: every queued job and pending outbound event is due now (backoffs elapsed)."""
    from sqlalchemy import update

    from adapter.db import utcnow
    from adapter.models import Job, OutboxEvent

    with kb.db.session() as session:
        session.execute(update(Job).where(Job.status == "queued").values(run_at=utcnow()))
        session.execute(update(OutboxEvent).where(OutboxEvent.status == "pending").values(next_attempt_at=utcnow()))


def outbox_events(kb, event_type: str | None = None) -> list:
    """Identity events owed or sent to the CRM, oldest first (detached rows)."""
    from sqlalchemy import select

    from adapter.models import OutboxEvent

    with kb.db.session() as session:
        query = select(OutboxEvent).order_by(OutboxEvent.seq)
        if event_type:
            query = query.where(OutboxEvent.type == event_type)
        return list(session.scalars(query))


def all_jobs(kb, kind: str | None = None) -> list:
    from sqlalchemy import select

    from adapter.models import Job

    with kb.db.session() as session:
        query = select(Job).order_by(Job.id)
        if kind:
            query = query.where(Job.kind == kind)
        return list(session.scalars(query))


def invitation_row(kb, kind: str, crm_id: str):
    from sqlalchemy import select

    from adapter.models import Invitation

    with kb.db.session() as session:
        return session.scalar(select(Invitation).where(Invitation.kind == kind, Invitation.crm_id == crm_id))


def drain(worker, passes: int = 50) -> None:
    """Run the worker until it has nothing left to do now."""
    for _ in range(passes):
        if not worker.run_once():
            return
    raise AssertionError("the worker never went idle")


def deliver(client, worker, event_type, data, webhook_id=None):
    """Post a signed webhook, expect it accepted, and let the worker do everything it causes."""
    from tests.conftest import envelope, signed_post

    r = signed_post(client, envelope(event_type, data), webhook_id=webhook_id)
    assert r.status_code == 202, r.json
    drain(worker)
