"""Apply realm-config/ to a realm that already exists, idempotently, with a dry run first.

Keycloak imports `realm-config/*-realm.json` only when the realm does not exist yet, so a
role, client, flow or setting changed there later never reaches a running Keycloak. This
module compares the file (Keycloak's own export format, `${VAR}` placeholders resolved
from the environment, failing loudly when one is unset) with the live realm, section by
section, and lists each difference as a `Change`; applying runs each change's step.

What is applied: realm settings (flow bindings, events, SMTP, ... — every top-level value
that is not a collection), realm roles and their composites, client roles, clients (their
fields and secrets, never printed), the roles of each client's service account (extra
roles are removed: the file is the least-privilege truth), required actions, the
declarative user profile, client policies and profiles, and authentication flows that do
not exist yet. A flow that exists but differs is reported, not rebuilt: its executions
carry ids other settings point to; give the changed flow a new alias in the file instead.
Things in the realm that the file does not name (users, organizations, Keycloak's own
default roles and clients) are left alone.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import requests

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::([^}]*))?\}")
# Top-level keys that are collections handled by their own section (or not at all).
COLLECTIONS = {"roles", "clients", "users", "components", "requiredActions", "groups", "authenticationFlows",
               "authenticatorConfig", "clientPolicies", "clientProfiles", "clientScopes", "identityProviders",
               "identityProviderMappers", "scopeMappings", "clientScopeMappings", "defaultRoles", "organizations",
               "id", "realm"}
SECRET_KEYS = {"secret", "password"}


class RealmConfigError(RuntimeError):
    """The realm file or the Keycloak connection cannot be used; the message says what to do."""


@dataclass
class Change:
    """One difference between the file and the realm, and how to remove it."""

    section: str
    name: str
    action: str  # create | update | remove | manual
    details: list[str] = field(default_factory=list)
    apply: Callable[[], None] | None = None

    def __str__(self) -> str:
        head = f"{self.action:<7} {self.section} {self.name}"
        return "\n".join([head] + [f"          {line}" for line in self.details])


# -- the file ------------------------------------------------------------------------

def resolve_placeholders(value, env: dict[str, str] | None = None):
    """`${VAR}` and `${VAR:default}` replaced from the environment, as Keycloak's import does.

    Lower-case `${name}` (message keys such as `${username}`) stay as they are.
    Raises RealmConfigError naming every placeholder that is unset and has no default.
    """
    env = os.environ if env is None else env
    missing: set[str] = set()

    def sub(text: str) -> str:
        def one(match):
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.add(name)
            return match.group(0)

        return PLACEHOLDER.sub(one, text)

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return sub(node) if isinstance(node, str) else node

    resolved = walk(value)
    if missing:
        raise RealmConfigError(
            f"realm-config uses {', '.join(sorted(missing))} as placeholders and they are not set; export them "
            "(the same values Keycloak was started with) and run again.")
    return resolved


def load_realm_file(path: str | os.PathLike, env: dict[str, str] | None = None) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RealmConfigError(f"cannot read the realm file {path}: {exc}") from None
    if not isinstance(raw, dict) or not raw.get("realm"):
        raise RealmConfigError(f"{path} is not a realm export: it needs a top-level \"realm\" name.")
    return resolve_placeholders(raw, env)


# -- the live realm ----------------------------------------------------------------

class RealmAdmin:
    """A master-realm administrator's REST session on one realm (this command's only credential)."""

    def __init__(self, base_url: str, realm: str, user: str, password: str, admin_realm: str = "master",
                 timeout: float = 20.0):
        self.base = base_url.rstrip("/")
        self.realm = realm
        self.timeout = timeout
        self.http = requests.Session()
        try:
            response = self.http.post(f"{self.base}/realms/{quote(admin_realm, safe='')}/protocol/openid-connect/token",
                                      data={"grant_type": "password", "client_id": "admin-cli",
                                            "username": user, "password": password}, timeout=timeout)
        except requests.RequestException as exc:
            raise RealmConfigError(f"Keycloak at {self.base} does not answer ({exc}); is it running?") from None
        if response.status_code != 200:
            raise RealmConfigError(
                f"Keycloak refused the administrator login ({response.status_code}): check "
                f"KEYBRIDGE_REALM_ADMIN_USER / KEYBRIDGE_REALM_ADMIN_PASSWORD (an administrator of the {admin_realm} realm).")
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def url(self, *segments: str) -> str:
        return "/".join([f"{self.base}/admin/realms/{quote(self.realm, safe='')}"] + [quote(s, safe="") for s in segments])

    def call(self, method: str, *segments: str, ok=(200, 201, 204), **kwargs):
        response = self.http.request(method, self.url(*segments), timeout=self.timeout, **kwargs)
        if response.status_code not in ok:
            raise RealmConfigError(f"{method} {'/'.join(segments) or 'realm'} answered {response.status_code}: "
                                   f"{response.text[:300]}")
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def get(self, *segments: str, **params):
        return self.call("GET", *segments, params=params or None)


# -- comparing -----------------------------------------------------------------------

def _differs(want, have) -> bool:
    """Whether `have` lacks what `want` says (extra keys in `have` are Keycloak's defaults)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return True
        return any(_differs(v, have.get(k)) for k, v in want.items() if k not in SECRET_KEYS)
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return True
        if all(not isinstance(v, (dict, list)) for v in want + have):
            return sorted(map(str, want)) != sorted(map(str, have))
        return any(_differs(w, h) for w, h in zip(want, have))
    if isinstance(want, bool) or isinstance(have, bool):
        return str(want).lower() != str(have).lower()
    return str(want) != str(have) if want is not None else have not in (None, "", [], {})


def _fields(want: dict, have: dict, skip=()) -> list[str]:
    return [k for k, v in want.items() if k not in skip and k not in SECRET_KEYS and _differs(v, have.get(k))]


# -- sections ------------------------------------------------------------------------

def _realm_settings(admin: RealmAdmin, desired: dict, current: dict) -> list[Change]:
    want = {k: v for k, v in desired.items() if k not in COLLECTIONS}
    keys = _fields(want, current)
    if not keys:
        return []
    body = {k: want[k] for k in keys}
    if "smtpServer" in body:  # PUT replaces the whole map: keep the live password unless the file sets one
        body["smtpServer"] = {**(current.get("smtpServer") or {}), **want["smtpServer"]}
    return [Change("realm", desired["realm"], "update", [f"{k}: {json.dumps(current.get(k))[:80]} -> "
                                                         f"{json.dumps(want[k])[:80]}" for k in keys if k != "smtpServer"]
                   + (["smtpServer: differs"] if "smtpServer" in keys else []),
                   lambda: admin.call("PUT", json=body))]


def _role_ref_set(composites: dict | None) -> set[tuple[str, str]]:
    """{("", realm role), (clientId, client role), ...} of an export's `composites`."""
    out = {("", name) for name in (composites or {}).get("realm", [])}
    for client_id, names in ((composites or {}).get("client") or {}).items():
        out |= {(client_id, name) for name in names}
    return out


def _realm_roles(admin: RealmAdmin, desired: dict, client_ids_by_uuid: dict) -> list[Change]:
    changes = []
    live = {r["name"]: r for r in admin.get("roles", briefRepresentation="false")}
    for role in (desired.get("roles") or {}).get("realm", []):
        name = role["name"]
        have = live.get(name)
        want_composites = _role_ref_set(role.get("composites"))
        if have is None:
            changes.append(Change("realm role", name, "create", [role.get("description") or ""],
                                  lambda role=role: (admin.call("POST", "roles", json={k: v for k, v in role.items() if k != "composites"}),
                                                     _set_composites(admin, role["name"], set(), _role_ref_set(role.get("composites"))))))
            continue
        details, steps = [], []
        if (role.get("description") or "") != (have.get("description") or ""):
            details.append(f"description: {have.get('description')!r} -> {role.get('description')!r}")
            steps.append(lambda role=role, have=have: admin.call("PUT", "roles", role["name"], json={**have, "description": role.get("description")}))
        have_composites = {("" if not c.get("clientRole") else client_ids_by_uuid.get(c.get("containerId"), "?"), c["name"])
                           for c in admin.get("roles", name, "composites")} if have.get("composite") else set()
        if "composites" in role and want_composites != have_composites:
            added, removed = want_composites - have_composites, have_composites - want_composites
            details.append("composites: " + ", ".join([f"+{c or 'realm'}:{r}" for c, r in sorted(added)]
                                                      + [f"-{c or 'realm'}:{r}" for c, r in sorted(removed)]))
            steps.append(lambda name=name, a=added, r=removed: _set_composites(admin, name, r, a))
        if details:
            changes.append(Change("realm role", name, "update", details, lambda steps=steps: [s() for s in steps]))
    return changes


def _role_reps(admin: RealmAdmin, refs: set[tuple[str, str]]) -> list[dict]:
    reps = []
    for client_id, name in sorted(refs):
        if client_id:
            uuid = _client_uuid(admin, client_id)
            reps.append(admin.get("clients", uuid, "roles", name))
        else:
            reps.append(admin.get("roles", name))
    return reps


def _set_composites(admin: RealmAdmin, role_name: str, remove: set, add: set) -> None:
    if remove:
        admin.call("DELETE", "roles", role_name, "composites", json=_role_reps(admin, remove))
    if add:
        admin.call("POST", "roles", role_name, "composites", json=_role_reps(admin, add))


def _client_uuid(admin: RealmAdmin, client_id: str) -> str:
    found = admin.get("clients", clientId=client_id)
    if not found:
        raise RealmConfigError(f"client {client_id} is not in realm {admin.realm}")
    return found[0]["id"]


CLIENT_SKIP = {"secret", "protocolMappers", "authorizationSettings", "id"}


def _clients(admin: RealmAdmin, desired: dict) -> list[Change]:
    changes = []
    for client in desired.get("clients") or []:
        client_id = client["clientId"]
        found = admin.get("clients", clientId=client_id)
        if not found:
            changes.append(Change("client", client_id, "create", [client.get("description") or ""],
                                  lambda client=client: admin.call("POST", "clients", json=client)))
            continue
        have = found[0]
        keys = _fields(client, have, skip=CLIENT_SKIP)
        details, steps = [f"{k}: {json.dumps(have.get(k))[:80]} -> {json.dumps(client[k])[:80]}" for k in keys], []
        if keys:
            merged = {**have, **{k: client[k] for k in keys}}
            steps.append(lambda uuid=have["id"], merged=merged: admin.call("PUT", "clients", uuid, json=merged))
        if client.get("secret") and not client.get("publicClient"):
            live_secret = (admin.get("clients", have["id"], "client-secret") or {}).get("value")
            if live_secret != client["secret"]:
                details.append("secret: differs (not shown)")
                steps.append(lambda uuid=have["id"], have=have, secret=client["secret"]:
                             admin.call("PUT", "clients", uuid, json={**admin.get("clients", uuid), "secret": secret}))
        if details:
            changes.append(Change("client", client_id, "update", details, lambda steps=steps: [s() for s in steps]))
    for client_id, roles in ((desired.get("roles") or {}).get("client") or {}).items():
        existing = None
        for role in roles:
            if existing is None:
                found = admin.get("clients", clientId=client_id)
                if not found:
                    existing = set()  # created by the client change above; all its roles are new
                else:
                    existing = {r["name"] for r in admin.get("clients", found[0]["id"], "roles")}
            if role["name"] not in existing:
                changes.append(Change("client role", f"{client_id}:{role['name']}", "create", [role.get("description") or ""],
                                      lambda client_id=client_id, role=role: admin.call(
                                          "POST", "clients", _client_uuid(admin, client_id), "roles",
                                          json={k: v for k, v in role.items() if k != "composites"})))
    return changes


def _service_accounts(admin: RealmAdmin, desired: dict) -> list[Change]:
    changes = []
    for user in desired.get("users") or []:
        client_id = user.get("serviceAccountClientId")
        if not client_id:
            continue
        found = admin.get("clients", clientId=client_id)
        if not found:
            changes.append(Change("service account", client_id, "manual",
                                  ["its client is created by this run; run again to give it its roles"]))
            continue
        account = admin.get("clients", found[0]["id"], "service-account-user")
        mappings = admin.get("users", account["id"], "role-mappings")
        want = {("", r) for r in user.get("realmRoles") or []}
        for c, names in (user.get("clientRoles") or {}).items():
            want |= {(c, n) for n in names}
        have = {("", r["name"]) for r in mappings.get("realmMappings") or []
                if not r["name"].startswith("default-roles-")}
        for c, entry in (mappings.get("clientMappings") or {}).items():
            have |= {(c, r["name"]) for r in entry.get("mappings") or []}
        added, removed = want - have, have - want
        if added or removed:
            changes.append(Change("service account", client_id, "update",
                                  [", ".join([f"+{c or 'realm'}:{r}" for c, r in sorted(added)]
                                             + [f"-{c or 'realm'}:{r}" for c, r in sorted(removed)])],
                                  lambda uid=account["id"], a=added, r=removed: _map_roles(admin, uid, a, r)))
    return changes


def _map_roles(admin: RealmAdmin, user_id: str, add: set, remove: set) -> None:
    for refs, method in ((remove, "DELETE"), (add, "POST")):
        realm_refs = {r for r in refs if not r[0]}
        if realm_refs:
            admin.call(method, "users", user_id, "role-mappings", "realm", json=_role_reps(admin, realm_refs))
        for client_id in sorted({c for c, _ in refs if c}):
            reps = _role_reps(admin, {r for r in refs if r[0] == client_id})
            admin.call(method, "users", user_id, "role-mappings", "clients", _client_uuid(admin, client_id), json=reps)


def _required_actions(admin: RealmAdmin, desired: dict) -> list[Change]:
    changes = []
    live = {a["alias"]: a for a in admin.get("authentication", "required-actions")}
    for action in desired.get("requiredActions") or []:
        have = live.get(action["alias"])
        if have is None:
            changes.append(Change("required action", action["alias"], "manual",
                                  ["not registered in this Keycloak (its provider is missing?)"]))
            continue
        keys = _fields(action, have, skip=("name", "priority"))
        if keys:
            changes.append(Change("required action", action["alias"], "update",
                                  [f"{k}: {have.get(k)} -> {action[k]}" for k in keys],
                                  lambda a=action, h=have: admin.call("PUT", "authentication", "required-actions",
                                                                      a["alias"], json={**h, **a})))
    return changes


def _user_profile(admin: RealmAdmin, desired: dict) -> list[Change]:
    for component in (desired.get("components") or {}).get("org.keycloak.userprofile.UserProfileProvider", []):
        text = ((component.get("config") or {}).get("kc.user.profile.config") or [None])[0]
        if not text:
            continue
        want = json.loads(text)
        have = admin.get("users", "profile")
        want_attrs = {a["name"]: a for a in want.get("attributes", [])}
        have_attrs = {a["name"]: a for a in have.get("attributes", [])}
        details = [f"attribute {n}: {'added' if n not in have_attrs else 'differs'}"
                   for n, a in want_attrs.items() if n not in have_attrs or _differs(a, have_attrs[n])]
        details += [f"attribute {n}: not in the file (removed)" for n in have_attrs if n not in want_attrs]
        if want.get("unmanagedAttributePolicy") != have.get("unmanagedAttributePolicy"):
            details.append(f"unmanagedAttributePolicy: {have.get('unmanagedAttributePolicy')} -> {want.get('unmanagedAttributePolicy')}")
        if _differs(want.get("groups", []), have.get("groups", [])):
            details.append("attribute groups differ")
        if details:
            return [Change("user profile", desired["realm"], "update", details,
                           lambda: admin.call("PUT", "users", "profile", json=want))]
    return []


def _client_policies(admin: RealmAdmin, desired: dict) -> list[Change]:
    changes = []
    for key, path, inner in (("clientProfiles", "profiles", "profiles"), ("clientPolicies", "policies", "policies")):
        if key not in desired:
            continue
        want = desired[key]
        have = admin.get("client-policies", path, **({"include-global-profiles": "false"} if path == "profiles" else {}))
        if _differs(want.get(inner, []), have.get(inner, [])):
            names = [p.get("name") for p in want.get(inner, [])]
            changes.append(Change(f"client {path}", ", ".join(names) or "(none)", "update", [],
                                  lambda path=path, want=want: admin.call("PUT", "client-policies", path, json=want)))
    return changes


# Flows every realm has that GET /authentication/flows leaves out (26.7.3 hides "saml ecp").
HIDDEN_FLOWS = {"saml ecp"}


def _flows(admin: RealmAdmin, desired: dict) -> list[Change]:
    changes = []
    live = {f["alias"]: f for f in admin.get("authentication", "flows")}
    wanted = {f["alias"]: f for f in desired.get("authenticationFlows") or []}
    configs = {c["alias"]: c for c in desired.get("authenticatorConfig") or []}
    for alias, flow in wanted.items():
        if not flow.get("topLevel", True) or alias in HIDDEN_FLOWS:
            continue
        if alias not in live:
            changes.append(Change("flow", alias, "create", [flow.get("description") or ""],
                                  lambda flow=flow: _create_flow(admin, flow, wanted, configs)))
            continue
        have = admin.get("authentication", "flows", alias, "executions")
        want_shape = _flow_shape(flow, wanted)
        # a subflow is named by its alias (displayName); a form flow's providerId is its form
        have_shape = [(e.get("level"), e.get("displayName") if e.get("authenticationFlow") else
                       e.get("providerId") or e.get("displayName"), e.get("requirement")) for e in have]
        if want_shape != have_shape:
            changes.append(Change("flow", alias, "manual", [
                "exists and differs; flows are not rebuilt in place (their executions are referenced by id): "
                "give the changed flow a new alias in realm-config, bind that alias, and run again"]))
    return changes


def _flow_shape(flow: dict, wanted: dict, level: int = 0) -> list[tuple]:
    shape = []
    for execution in sorted(flow.get("authenticationExecutions") or [], key=lambda e: e.get("priority", 0)):
        if execution.get("authenticatorFlow"):
            sub = wanted.get(execution.get("flowAlias"), {})
            shape.append((level, sub.get("alias"), execution.get("requirement")))
            shape += _flow_shape(sub, wanted, level + 1)
        else:
            shape.append((level, execution.get("authenticator"), execution.get("requirement")))
    return shape


def _create_flow(admin: RealmAdmin, flow: dict, wanted: dict, configs: dict, parent: str | None = None,
                 execution: dict | None = None) -> None:
    if parent is None:
        admin.call("POST", "authentication", "flows", json={
            "alias": flow["alias"], "description": flow.get("description", ""), "providerId": flow.get("providerId", "basic-flow"),
            "topLevel": True, "builtIn": False})
    else:
        admin.call("POST", "authentication", "flows", parent, "executions", "flow", json={
            "alias": flow["alias"], "description": flow.get("description", ""),
            "type": flow.get("providerId", "basic-flow"), "provider": "registration-page-form"
            if flow.get("providerId") == "form-flow" else ""})
        _set_requirement(admin, parent, flow["alias"], execution.get("requirement"), None, configs)
    for step in sorted(flow.get("authenticationExecutions") or [], key=lambda e: e.get("priority", 0)):
        if step.get("authenticatorFlow"):
            _create_flow(admin, wanted[step["flowAlias"]], wanted, configs, flow["alias"], step)
        else:
            admin.call("POST", "authentication", "flows", flow["alias"], "executions", "execution",
                       json={"provider": step["authenticator"]})
            _set_requirement(admin, flow["alias"], step["authenticator"], step.get("requirement"),
                             step.get("authenticatorConfig"), configs)


def _set_requirement(admin: RealmAdmin, flow_alias: str, name: str, requirement: str | None, config_alias: str | None,
                     configs: dict) -> None:
    executions = admin.get("authentication", "flows", flow_alias, "executions")
    mine = [e for e in executions if e.get("level") == 0 and name in (e.get("providerId"), e.get("displayName"))][-1]
    if requirement and mine.get("requirement") != requirement:
        admin.call("PUT", "authentication", "flows", flow_alias, "executions", json={**mine, "requirement": requirement})
    if config_alias and config_alias in configs:
        admin.call("POST", "authentication", "executions", mine["id"], "config",
                   json={"alias": config_alias, "config": configs[config_alias].get("config", {})})


def plan(admin: RealmAdmin, desired: dict) -> list[Change]:
    """Every difference between `desired` (a resolved realm file) and the live realm, in apply order."""
    current = admin.get()
    clients_by_uuid = {c["id"]: c["clientId"] for c in admin.get("clients")}
    # Flows before the realm settings that bind them; clients before the roles and accounts that use them.
    return (_flows(admin, desired) + _clients(admin, desired) + _realm_roles(admin, desired, clients_by_uuid)
            + _service_accounts(admin, desired) + _required_actions(admin, desired) + _user_profile(admin, desired)
            + _client_policies(admin, desired) + _realm_settings(admin, desired, current))


def apply(changes: list[Change], report: Callable[[Change], None] = lambda c: None) -> int:
    """Run every applicable change in order; returns how many ran (manual ones are only reported)."""
    done = 0
    for change in changes:
        if change.apply is not None:
            change.apply()
            done += 1
        report(change)
    return done
