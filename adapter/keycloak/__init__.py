"""The only place that talks to Keycloak: python-keycloak plus the few raw calls it lacks.

Every failure is translated into the job vocabulary: `RetryableError` when Keycloak
is down, slow or overloaded (the job is retried later), `PermanentError` when it
refuses the request for a reason retrying cannot fix.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
import json
import logging
import re
import time
from urllib.parse import quote

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
import requests
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakConnectionError, KeycloakError

from .. import metrics
from ..jobs import PermanentError, RetryableError

log = logging.getLogger(__name__)

CREDENTIAL_HINT = ("check KEYBRIDGE_KEYCLOAK_CLIENT_ID and KEYBRIDGE_KEYCLOAK_CLIENT_SECRET against the client's "
                   "Credentials tab in Keycloak (and that its service account is enabled)")


class CredentialError(RetryableError):
    """Keycloak refuses the adapter's own credential (401 on the token request).

    Retried like any Keycloak outage (nothing is lost once the secret is fixed), but it is
    no passing failure: the worker logs it as an ERROR on every job and /readyz fails.
    """


def _is_token_refusal(exc: Exception) -> bool:
    """A 401 from the token endpoint (invalid_client / unauthorized_client), not from an admin call."""
    body = getattr(exc, "response_body", None) or b""
    if isinstance(body, str):
        body = body.encode()
    return isinstance(exc, KeycloakAuthenticationError) and (b"invalid_client" in body or b"unauthorized_client" in body)


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, KeycloakConnectionError):
        return RetryableError(f"Keycloak unreachable while trying to {what}: {exc}")
    if _is_token_refusal(exc):
        return CredentialError(f"Keycloak refused the adapter's client credential (401) while trying to {what}: {CREDENTIAL_HINT}")
    code = getattr(exc, "response_code", None)
    if code is None or code >= 500 or code in (401, 408, 429):
        # 401 here means our token expired mid-flight or Keycloak restarted: a new token fixes it.
        return RetryableError(f"Keycloak answered {code} while trying to {what}")
    body = getattr(exc, "error_message", b"")
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return PermanentError(f"Keycloak refused to {what} ({code}): {str(body)[:500]}")


_KEYCLOAK_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class ExportMissing(PermanentError):
    """Keycloak has no `keybridge-export` endpoint: Keybridge's extension (keycloak-extension/) is not installed."""


class InvalidKeycloakId(PermanentError):
    """An id or name that cannot be part of a Keycloak URL; nothing was sent to Keycloak."""


def is_keycloak_id(value) -> bool:
    """Whether `value` looks like the id Keycloak gives users, organizations, invitations and clients (a UUID)."""
    return isinstance(value, str) and _KEYCLOAK_ID.fullmatch(value) is not None


def keycloak_id(value, what: str = "id") -> str:
    """`value` when it is a Keycloak id (a UUID); raises InvalidKeycloakId naming `what` otherwise."""
    if not is_keycloak_id(value):
        raise InvalidKeycloakId(f"{what} {str(value)[:80]!r} is not a Keycloak id (a UUID such as "
                                "3f2c9a1e-5b7d-4c1a-9e2f-0a1b2c3d4e5f); nothing was sent to Keycloak.")
    return value


def path_segment(value, what: str) -> str:
    """`value` escaped as one URL path segment (quote, safe=""); a name ending in `_id` must be a Keycloak id.

    Raises InvalidKeycloakId for an empty value, "." or "..": escaping leaves dots alone,
    and a dot segment would move the request to another resource.
    """
    if what.endswith("_id"):
        keycloak_id(value, what)
    if not isinstance(value, str) or value in ("", ".", ".."):
        raise InvalidKeycloakId(f"{what} {str(value)[:80]!r} cannot be part of a Keycloak URL; nothing was sent to Keycloak.")
    return quote(value, safe="")


def keycloak_call(what: str):
    """Decorator: run a Keycloak call and translate its failures (see module docstring)."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            started, error = time.perf_counter(), None
            try:
                return fn(*args, **kwargs)
            except (RetryableError, PermanentError) as exc:
                error = exc
                raise
            except KeycloakError as exc:
                error = _translate(exc, what)
                raise error from exc
            except OSError as exc:  # requests' ConnectionError/Timeout are OSErrors
                error = RetryableError(f"Keycloak unreachable while trying to {what}: {exc}")
                raise error from exc
            finally:
                metrics.observe_keycloak(fn.__name__, time.perf_counter() - started, error)

        return inner

    return wrap


def _check(response, what: str, ok=(200, 201, 204)):
    if response.status_code in ok:
        return response
    code = response.status_code
    if code >= 500 or code in (401, 408, 429):
        raise RetryableError(f"Keycloak answered {code} while trying to {what}")
    raise PermanentError(f"Keycloak refused to {what} ({code}): {response.text[:500]}")


class KeycloakGateway:
    """Keycloak operations Keybridge needs, in domain words, for one realm."""

    def __init__(self, server_url: str, realm: str, client_id: str, client_secret: str, timeout: int = 20,
                 concurrency: int = 8):
        self.realm = realm
        self.concurrency = concurrency
        self.server_url = server_url.rstrip("/")
        self._connection = KeycloakOpenIDConnection(
            server_url=self.server_url + "/",
            realm_name=realm,
            user_realm_name=realm,
            client_id=client_id,
            client_secret_key=client_secret,
            timeout=timeout,
            # one pooled connection per parallel caller (requests keeps 10 by default)
            pool_maxsize=max(10, concurrency),
        )
        self._admin: KeycloakAdmin | None = None
        self._role_cache: dict[str, dict] = {}

    @classmethod
    def from_settings(cls, settings) -> "KeycloakGateway":
        return cls(settings.keycloak_url, settings.keycloak_realm, settings.keycloak_client_id,
                   settings.keycloak_client_secret, settings.keycloak_timeout_seconds, settings.keycloak_concurrency)

    def check_credentials(self) -> None:
        """Ask Keycloak for a token with the adapter's own credential, as every job does.

        Raises CredentialError when Keycloak refuses it (401), RetryableError when Keycloak
        cannot be reached or answers otherwise. The secret is sent, never logged or raised.
        """
        connection = self._connection
        url = f"{self.server_url}/realms/{self.realm}/protocol/openid-connect/token"
        try:
            response = requests.post(url, data={"grant_type": "client_credentials", "client_id": connection.client_id,
                                                "client_secret": connection.client_secret_key}, timeout=5)
        except requests.RequestException as exc:
            raise RetryableError(f"Keycloak unreachable at {self.server_url} ({type(exc).__name__}); check KEYBRIDGE_KEYCLOAK_URL") from None
        refused = response.status_code == 401 or (response.status_code == 400 and "client" in response.text[:300])
        if refused:
            # 401 invalid_client: wrong id or secret; 400 unauthorized_client: service accounts off for the client
            raise CredentialError(f"Keycloak refused the adapter's client credential ({response.status_code}) in realm {self.realm}: {CREDENTIAL_HINT}")
        if response.status_code == 404:
            raise RetryableError(f"Keycloak has no realm {self.realm!r} at {self.server_url} (404); check KEYBRIDGE_KEYCLOAK_REALM")
        if response.status_code != 200:
            raise RetryableError(f"Keycloak answered {response.status_code} to the adapter's token request")

    def warm_up(self) -> None:
        """Log in now, so that threads sharing this gateway find a token ready."""
        self.admin.connection._refresh_if_required()

    @property
    def admin(self) -> KeycloakAdmin:
        if self._admin is None:
            try:
                self._admin = KeycloakAdmin(connection=self._connection)
            except KeycloakError as exc:
                raise _translate(exc, "log in as the adapter's service account") from exc
            except OSError as exc:
                raise RetryableError(f"Keycloak unreachable at {self.server_url}: {exc}") from exc
        return self._admin

    def _path(self, template: str = "", **values: str) -> str:
        """The admin API path `admin/realms/<realm>/<template>`, every `{name}` in the template filled in.

        The one place a value becomes part of a Keycloak URL (every raw call goes through it):
        each value is one path segment, escaped with quote(safe=""), never empty, "." or ".."
        (python-keycloak's urljoin and urllib3 would collapse those: `members/..` is the
        organization itself); a value whose name ends in `_id` must be a Keycloak id (a UUID).
        `template` is a constant. Raises InvalidKeycloakId before anything is sent.
        """
        filled = {name: path_segment(value, name) for name, value in values.items()}
        rest = template.format(**filled)
        return f"admin/realms/{path_segment(self.realm, 'realm')}" + (f"/{rest}" if rest else "")

    # -- organizations -------------------------------------------------------------

    @keycloak_call("find the organization of a CRM account")
    def find_organization(self, account_id: str) -> dict | None:
        """The organization whose attribute crm_account_id is `account_id`, with attributes; or None."""
        query = {"q": f"crm_account_id:{account_id}", "exact": "true", "briefRepresentation": "false", "first": 0, "max": 10}
        found = [o for o in self.admin.get_organizations(query) if account_id in (o.get("attributes") or {}).get("crm_account_id", [])]
        if len(found) > 1:
            raise PermanentError(f"Several organizations carry crm_account_id={account_id}: {[o['id'] for o in found]}; merge them in Keycloak.")
        return found[0] if found else None

    @keycloak_call("read an organization")
    def get_organization(self, org_id: str) -> dict:
        return self.admin.get_organization(keycloak_id(org_id, "org_id"))

    @keycloak_call("create an organization")
    def create_organization(self, representation: dict) -> str:
        return self.admin.create_organization(representation)

    @keycloak_call("update an organization")
    def update_organization(self, org_id: str, representation: dict) -> None:
        self.admin.update_organization(keycloak_id(org_id, "org_id"), representation)

    @keycloak_call("update an organization's attributes")
    def update_organization_attributes(self, org_id: str, attributes: dict[str, list[str]]) -> None:
        """Merge `attributes` into the organization's (no call when they already match)."""
        org = self.admin.get_organization(keycloak_id(org_id, "org_id"))
        current = dict(org.get("attributes") or {})
        if all(current.get(k) == v for k, v in attributes.items()):
            return
        current.update(attributes)
        self.admin.update_organization(org_id, {**org, "attributes": current})

    @keycloak_call("list an organization's pending invitations")
    def organization_invitations(self, org_id: str, email: str | None = None) -> list[dict]:
        r = self.admin.connection.raw_get(self._path("organizations/{org_id}/invitations", org_id=org_id), **({"email": email} if email else {}))
        invitations = _check(r, "list invitations").json()
        if email:
            invitations = [i for i in invitations if (i.get("email") or "").lower() == email.lower()]
        return invitations

    @keycloak_call("invite a new person to an organization")
    def invite_new_member(self, org_id: str, email: str, first_name: str | None, last_name: str | None) -> None:
        form = {"email": email, "firstName": first_name or "", "lastName": last_name or ""}
        self._form_post(self._path("organizations/{org_id}/members/invite-user", org_id=org_id), form, "send an organization invitation")

    @keycloak_call("resend an organization invitation")
    def resend_organization_invitation(self, org_id: str, invitation_id: str) -> None:
        r = self.admin.connection.raw_post(self._path("organizations/{org_id}/invitations/{invitation_id}/resend", org_id=org_id, invitation_id=invitation_id), data=None)
        _check(r, "resend an invitation")

    @keycloak_call("delete an organization invitation")
    def delete_organization_invitation(self, org_id: str, invitation_id: str) -> bool:
        """Withdraw a pending invitation: its link stops working. False when it was gone already."""
        r = self.admin.connection.raw_delete(self._path("organizations/{org_id}/invitations/{invitation_id}",
                                                        org_id=org_id, invitation_id=invitation_id))
        if r.status_code == 404:
            return False
        _check(r, "delete an invitation")
        return True

    @keycloak_call("invite an existing user to an organization")
    def invite_existing_member(self, org_id: str, user_id: str) -> None:
        form = {"id": keycloak_id(user_id, "user_id")}
        self._form_post(self._path("organizations/{org_id}/members/invite-existing-user", org_id=org_id), form,
                        "send an organization join invitation")

    @keycloak_call("check an organization membership")
    def is_member(self, org_id: str, user_id: str) -> bool:
        r = self.admin.connection.raw_get(self._path("organizations/{org_id}/members/{user_id}", org_id=org_id, user_id=user_id))
        if r.status_code == 404:
            return False
        _check(r, "check a membership")
        return True

    @keycloak_call("add a member to an organization")
    def add_member(self, org_id: str, user_id: str) -> None:
        r = self.admin.connection.raw_post(self._path("organizations/{org_id}/members", org_id=org_id), data=keycloak_id(user_id, "user_id"))
        if r.status_code == 409:
            return  # already a member
        _check(r, "add a member")

    @keycloak_call("remove a member from an organization")
    def remove_member(self, org_id: str, user_id: str) -> None:
        r = self.admin.connection.raw_delete(self._path("organizations/{org_id}/members/{user_id}", org_id=org_id, user_id=user_id))
        if r.status_code == 404:
            return
        _check(r, "remove a member")

    def _form_post(self, path: str, form: dict, what: str) -> None:
        connection = self.admin.connection
        connection.add_param_headers("Content-Type", "application/x-www-form-urlencoded")
        try:
            r = connection.raw_post(path, data=form)
        finally:
            connection.add_param_headers("Content-Type", "application/json")
        _check(r, what)

    @keycloak_call("list an organization's members")
    def organization_members(self, org_id: str, page_size: int = 100) -> list[dict]:
        """Every member with attributes; pages are fetched in parallel (the full
        representation is what makes a large listing slow, not the number of calls)."""
        r = self.admin.connection.raw_get(self._path("organizations/{org_id}/members/count", org_id=org_id))
        total = int(_check(r, "count members").json())

        def page(first: int) -> list[dict]:
            r = self.admin.connection.raw_get(self._path("organizations/{org_id}/members", org_id=org_id),
                                              first=first, max=page_size, briefRepresentation="false")
            return _check(r, "list members").json()

        starts = list(range(0, total + page_size, page_size))  # one extra page: members added meanwhile
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(starts)))) as pool:
            pages = list(pool.map(page, starts))
        seen: dict[str, dict] = {}
        for members in pages:
            for member in members:
                seen.setdefault(member["id"], member)
        return list(seen.values())

    # -- organization groups: who administers which organization -------------------

    @keycloak_call("find an organization group")
    def organization_group(self, org_id: str, name: str) -> dict | None:
        """The top-level group `name` of the organization, or None."""
        r = self.admin.connection.raw_get(self._path("organizations/{org_id}/groups", org_id=org_id), search=name,
                                          exact="true", briefRepresentation="true", first=0, max=10)
        found = [g for g in _check(r, "list an organization's groups").json() if g.get("name") == name and g.get("path") == f"/{name}"]
        return found[0] if found else None

    @keycloak_call("create an organization group")
    def create_organization_group(self, org_id: str, name: str, description: str = "") -> str:
        """Create the top-level group `name` in the organization (or find it, if another worker just did); returns its id."""
        r = self.admin.connection.raw_post(self._path("organizations/{org_id}/groups", org_id=org_id),
                                           data=json.dumps({"name": name, "description": description}))
        if r.status_code == 409:
            found = self.organization_group(org_id, name)
            if found is not None:
                return found["id"]
        return _check(r, "create an organization group").json()["id"]

    @keycloak_call("list an organization group's members")
    def organization_group_member_ids(self, org_id: str, group_id: str, page_size: int = 500) -> set[str]:
        ids: set[str] = set()
        first = 0
        while True:
            r = self.admin.connection.raw_get(
                self._path("organizations/{org_id}/groups/{group_id}/members", org_id=org_id, group_id=group_id),
                first=first, max=page_size, briefRepresentation="true")
            page = _check(r, "list a group's members").json()
            ids.update(u["id"] for u in page)
            if len(page) < page_size:
                return ids
            first += page_size

    @keycloak_call("add a member to an organization group")
    def add_organization_group_member(self, org_id: str, group_id: str, user_id: str) -> bool:
        """Put an organization member into one of its groups; returns False when they were in it already."""
        r = self.admin.connection.raw_put(
            self._path("organizations/{org_id}/groups/{group_id}/members/{user_id}", org_id=org_id, group_id=group_id,
                       user_id=user_id), data=None)
        if r.status_code == 409:
            return False
        _check(r, "add a member to an organization group")
        return True

    @keycloak_call("remove a member from an organization group")
    def remove_organization_group_member(self, org_id: str, group_id: str, user_id: str) -> None:
        r = self.admin.connection.raw_delete(
            self._path("organizations/{org_id}/groups/{group_id}/members/{user_id}", org_id=org_id, group_id=group_id,
                       user_id=user_id))
        if r.status_code == 404:
            return
        _check(r, "remove a member from an organization group")

    @keycloak_call("list a member's organization groups")
    def member_organization_groups(self, org_id: str, user_id: str) -> list[dict]:
        """The organization's groups the user is in; [] when they are no member."""
        r = self.admin.connection.raw_get(
            self._path("organizations/{org_id}/members/{user_id}/groups", org_id=org_id, user_id=user_id),
            briefRepresentation="true", first=0, max=100)
        if r.status_code == 404:
            return []
        return _check(r, "list a member's organization groups").json()

    @keycloak_call("list a user's organizations")
    def user_organizations(self, user_id: str) -> list[dict]:
        r = self.admin.connection.raw_get(self._path("organizations/members/{user_id}/organizations", user_id=user_id), briefRepresentation="false")
        return _check(r, "list a user's organizations").json()

    # -- users -----------------------------------------------------------------------

    @keycloak_call("enable or disable a user")
    def set_enabled(self, user_id: str, enabled: bool) -> None:
        """Only `enabled` is sent: Keycloak keeps the rest of the user as it is."""
        r = self.admin.connection.raw_put(self._path("users/{user_id}", user_id=user_id), data=json.dumps({"enabled": enabled}))
        _check(r, "enable or disable a user")

    @keycloak_call("end a user's sessions")
    def logout(self, user_id: str) -> None:
        """End every session of the user (refresh tokens stop working)."""
        r = self.admin.connection.raw_post(self._path("users/{user_id}/logout", user_id=user_id), data=None)
        _check(r, "end a user's sessions")

    @keycloak_call("find a user by email")
    def find_user_by_email(self, email: str) -> dict | None:
        users = self.admin.get_users({"email": email, "exact": "true"})
        users = [u for u in users if (u.get("email") or "").lower() == email.lower()]
        return users[0] if users else None

    @keycloak_call("find a user by CRM id")
    def find_user_by_attribute(self, name: str, value: str) -> dict | None:
        users = self.admin.get_users({"q": f"{name}:{value}", "exact": "true"})
        users = [u for u in users if value in (u.get("attributes") or {}).get(name, [])]
        return users[0] if users else None

    @keycloak_call("read a user")
    def get_user(self, user_id: str) -> dict | None:
        r = self.admin.connection.raw_get(self._path("users/{user_id}", user_id=user_id))
        if r.status_code == 404:
            return None
        return _check(r, "read a user").json()

    @keycloak_call("create a user")
    def create_user(self, representation: dict) -> str:
        return self.admin.create_user(representation, exist_ok=False)

    @keycloak_call("update a user")
    def update_user(self, user_id: str, representation: dict) -> None:
        self.admin.update_user(keycloak_id(user_id, "user_id"), representation)

    def set_user_attributes(self, user: dict, attributes: dict[str, list[str]]) -> bool:
        """Merge `attributes` into the user's; returns whether anything changed (no call if not)."""
        current = dict(user.get("attributes") or {})
        merged = {**current, **attributes}
        if merged == current:
            return False
        rep = {k: user[k] for k in ("username", "email", "firstName", "lastName", "enabled", "emailVerified") if k in user}
        rep["attributes"] = merged
        self.update_user(user["id"], rep)
        user["attributes"] = merged
        return True

    @keycloak_call("check a user's credentials")
    def has_password(self, user_id: str) -> bool:
        return any(c.get("type") == "password" for c in self.admin.get_credentials(keycloak_id(user_id, "user_id")))

    @keycloak_call("send a verification email")
    def send_verify_email(self, user_id: str) -> None:
        r = self.admin.connection.raw_put(self._path("users/{user_id}/send-verify-email", user_id=user_id), data=None)
        _check(r, "send a verification email")

    @keycloak_call("send an execute-actions email")
    def send_actions_email(self, user_id: str, actions: list[str], lifespan_seconds: int,
                           client_id: str | None = None, redirect_uri: str | None = None) -> None:
        params = {"lifespan": lifespan_seconds}
        if client_id and redirect_uri:
            params.update(client_id=client_id, redirect_uri=redirect_uri)
        r = self.admin.connection.raw_put(self._path("users/{user_id}/execute-actions-email", user_id=user_id), data=json.dumps(actions), **params)
        _check(r, "send the invitation email")

    # -- roles -----------------------------------------------------------------------

    @keycloak_call("read a realm role")
    def realm_role(self, name: str) -> dict:
        if name not in self._role_cache:
            r = self.admin.connection.raw_get(self._path("roles/{role_name}", role_name=name))
            self._role_cache[name] = _check(r, f"read realm role {name}").json()
        return self._role_cache[name]

    @keycloak_call("read a user's realm roles")
    def user_realm_roles(self, user_id: str) -> set[str]:
        return {r["name"] for r in self.admin.get_realm_roles_of_user(keycloak_id(user_id, "user_id"))}

    @keycloak_call("read a user's effective realm roles")
    def user_effective_realm_roles(self, user_id: str) -> set[str]:
        """The realm roles the user holds directly, through groups or through composite roles."""
        return {r["name"] for r in self.admin.get_composite_realm_roles_of_user(keycloak_id(user_id, "user_id"))}

    @keycloak_call("assign realm roles")
    def ensure_realm_roles(self, user_id: str, wanted: set[str], managed: set[str] | None = None) -> tuple[set[str], set[str]]:
        """Give the user every role in `wanted`; take away roles in `managed` that are not wanted.

        Returns (added, removed). Roles outside `managed` are never removed.
        """
        keycloak_id(user_id, "user_id")
        have = self.user_realm_roles(user_id)
        add = set(wanted) - have
        remove = (set(managed or ()) & have) - set(wanted)
        if add:
            self.admin.assign_realm_roles(user_id, [self.realm_role(n) for n in sorted(add)])
        if remove:
            self.admin.delete_realm_roles_of_user(user_id, [self.realm_role(n) for n in sorted(remove)])
        return add, remove

    # -- event log -------------------------------------------------------------------

    @keycloak_call("read the realm's event log")
    def user_events(self, date_from_ms: int, first: int, max_results: int) -> list[dict]:
        """User events at or after `date_from_ms`, oldest first."""
        query = {"dateFrom": str(date_from_ms), "direction": "asc", "first": first, "max": max_results}
        r = self.admin.connection.raw_get(self._path("events"), **query)
        return _check(r, "read the event log").json()

    @keycloak_call("check that Keycloak is reachable")
    def ping(self) -> None:
        self.admin.get_realm_roles(brief_representation=True, search_text="lead")

    # -- the realm read in pages (reconciliation) -------------------------------------

    @keycloak_call("list organizations")
    def organizations_page(self, first: int, max_results: int) -> list[dict]:
        """Organizations with their attributes and domains, `max_results` from `first`."""
        r = self.admin.connection.raw_get(self._path("organizations"), first=first, max=max_results, briefRepresentation="false")
        return _check(r, "list organizations").json()

    @keycloak_call("list an organization's members")
    def organization_members_page(self, org_id: str, first: int, max_results: int, brief: bool = True) -> list[dict]:
        """Members in brief (id, username, email, enabled, membershipType), `max_results` from `first`;
        with `brief=False`, whole users (with attributes)."""
        r = self.admin.connection.raw_get(self._path("organizations/{org_id}/members", org_id=org_id), first=first, max=max_results,
                                          briefRepresentation="true" if brief else "false")
        return _check(r, "list members").json()

    @keycloak_call("list an organization's pending invitations")
    def organization_invitations_page(self, org_id: str, first: int, max_results: int) -> list[dict]:
        """Pending invitations (id, email, status), `max_results` from `first`."""
        r = self.admin.connection.raw_get(self._path("organizations/{org_id}/invitations", org_id=org_id), first=first, max=max_results,
                                          status="PENDING")
        return _check(r, "list invitations").json()

    @keycloak_call("count users")
    def users_count(self) -> int:
        r = self.admin.connection.raw_get(self._path("users/count"))
        return int(_check(r, "count users").json())

    @keycloak_call("list users")
    def users_page(self, first: int, max_results: int) -> list[dict]:
        """Users with their attributes (ordered by username), `max_results` from `first`."""
        r = self.admin.connection.raw_get(self._path("users"), first=first, max=max_results, briefRepresentation="false")
        return _check(r, "list users").json()

    # -- the bulk export of Keybridge's Keycloak extension (keycloak-extension/, io.keybridge.keycloak.export) --

    def _export_path(self, resource: str) -> str:
        """`realms/<realm>/keybridge-export/<resource>` (the realm escaped as `_path` does; `resource` is a constant)."""
        return f"realms/{path_segment(self.realm, 'realm')}/keybridge-export/{path_segment(resource, 'resource')}"

    def _export_page(self, what: str, resource: str, after: str | None, max_results: int, **params) -> tuple[list[dict], str | None]:
        r = self.admin.connection.raw_get(self._export_path(resource), after=after or "", max=max_results, **params)
        if r.status_code == 404:
            raise ExportMissing(f"Keycloak has no keybridge-export endpoint in realm {self.realm} (404): install Keybridge's "
                                "Keycloak extension (keycloak-extension/) to read large realms quickly")
        if r.status_code == 403:
            raise PermanentError(f"Keycloak refused to {what} (403): give the adapter's service account the realm-management "
                                 "role view-users (or manage-users)")
        body = _check(r, what).json()
        return body[resource], body.get("next")

    @keycloak_call("read a page of the user export")
    def export_users_page(self, after: str | None, max_results: int, attributes: list[str]) -> tuple[list[dict], str | None]:
        """Users whose id follows `after` (in the database's order), with the named attributes, their direct realm
        role names (`realmRoles`) and organization ids (`organizations`); and the next page's `after` (None: last page).
        Raises ExportMissing when the extension is not installed."""
        return self._export_page("read a page of the user export", "users", after, max_results, attribute=list(attributes))

    @keycloak_call("read a page of the invitation export")
    def export_invitations_page(self, after: str | None, max_results: int) -> tuple[list[dict], str | None]:
        """The realm's pending organization invitations (id, organizationId, email, expiresAt) after `after`, and the next `after`."""
        return self._export_page("read a page of the invitation export", "invitations", after, max_results)

    # -- delegated administration: fine-grained admin permissions (v2) ----------------

    def _permissions_path(self, template: str, **values: str) -> str:
        """A path under the authorization settings of the realm's `admin-permissions` client (filled in as `_path` does).

        Keycloak creates that client when the realm's adminPermissionsEnabled is on
        (realm-config does it); raises PermanentError when it is off.
        """
        client_id = getattr(self, "_permissions_client_id", None)
        if client_id is None:
            r = self.admin.connection.raw_get(self._path())
            client = (_check(r, "read the realm").json().get("adminPermissionsClient") or {}).get("id")
            if not client:
                raise AdminPermissionsOff(f"Realm {self.realm} has no admin permissions (adminPermissionsEnabled is off): "
                                          "import realm-config/customers-realm.json again or switch them on in Realm settings.")
            client_id = self._permissions_client_id = client
        return self._path("clients/{client_id}/authz/resource-server/" + template, client_id=client_id, **values)

    @keycloak_call("read the users holding a realm role")
    def realm_role_user_ids(self, name: str, page_size: int = 500) -> set[str]:
        """Ids of the users given realm role `name` directly."""
        ids: set[str] = set()
        first = 0
        while True:
            r = self.admin.connection.raw_get(self._path("roles/{role_name}/users", role_name=name), first=first, max=page_size,
                                              briefRepresentation="true")
            page = _check(r, "list a role's users").json()
            ids.update(u["id"] for u in page)
            if len(page) < page_size:
                return ids
            first += page_size

    @keycloak_call("read an admin permission")
    def admin_policy(self, name: str) -> dict | None:
        """The admin policy or permission called `name`, or None.

        A permission comes with `resources` (the ids of the users, organizations or
        roles it covers), `scopes` (names) and `policies` (ids) filled in.
        """
        r = self.admin.connection.raw_get(self._permissions_path("policy"), name=name, first=0, max=100)
        found = [p for p in _check(r, "search admin permissions").json() if p.get("name") == name]
        if not found:
            return None
        policy = found[0]
        r = self.admin.connection.raw_get(self._permissions_path("policy/{policy_type}/{policy_id}", policy_type=policy["type"], policy_id=policy["id"]))
        policy = _check(r, "read an admin permission").json()
        if policy["type"] == "scope":
            for part, key in (("resources", "name"), ("scopes", "name"), ("associatedPolicies", "id")):
                r = self.admin.connection.raw_get(self._permissions_path("policy/{policy_id}/{part}", policy_id=policy["id"], part=part))
                policy["policies" if part == "associatedPolicies" else part] = [x[key] for x in _check(r, "read an admin permission").json()]
        return policy

    @keycloak_call("save an admin user policy")
    def save_admin_user_policy(self, name: str, user_ids: list[str], description: str = "") -> str:
        """Create or overwrite the user policy `name` (these users, and only they, match); returns its id."""
        if not user_ids:
            raise PermanentError(f"Admin policy {name!r} would name nobody; delete it instead.")
        rep = {"name": name, "description": description, "type": "user", "logic": "POSITIVE",
               "decisionStrategy": "UNANIMOUS", "users": sorted(user_ids)}
        return self._save_admin_policy("user", rep)

    @keycloak_call("save an admin permission")
    def save_admin_permission(self, name: str, resource_type: str, resource_ids: list[str], scopes: list[str],
                              policy_ids: list[str], description: str = "") -> str:
        """Create or overwrite the permission `name`: `scopes` on these resources for whoever the policies match.

        Refuses an empty `resource_ids`: Keycloak reads that as every resource of the type.
        Returns the permission's id.
        """
        if not resource_ids:
            raise PermanentError(f"Admin permission {name!r} would cover every {resource_type}; delete it instead.")
        rep = {"name": name, "description": description, "type": "scope", "logic": "POSITIVE",
               "decisionStrategy": "UNANIMOUS", "resourceType": resource_type, "resources": sorted(resource_ids),
               "scopes": sorted(scopes), "policies": sorted(policy_ids)}
        return self._save_admin_policy("scope", rep, kind="permission")

    def _save_admin_policy(self, policy_type: str, rep: dict, kind: str = "policy") -> str:
        r = self.admin.connection.raw_get(self._permissions_path("policy"), name=rep["name"], first=0, max=100)
        existing = [p for p in _check(r, "search admin permissions").json() if p.get("name") == rep["name"]]
        if not existing:
            r = self.admin.connection.raw_post(self._permissions_path("{kind}/{policy_type}", kind=kind, policy_type=policy_type),
                                               data=json.dumps(rep))
            if r.status_code != 409:  # 409: another worker made it a moment ago; overwrite it below
                return _check(r, f"create admin {kind} {rep['name']}").json()["id"]
            r = self.admin.connection.raw_get(self._permissions_path("policy"), name=rep["name"], first=0, max=100)
            existing = [p for p in _check(r, "search admin permissions").json() if p.get("name") == rep["name"]]
        policy_id = existing[0]["id"]
        r = self.admin.connection.raw_put(self._permissions_path("{kind}/{policy_type}/{policy_id}", kind=kind, policy_type=policy_type,
                                                                  policy_id=policy_id), data=json.dumps({**rep, "id": policy_id}))
        _check(r, f"update admin {kind} {rep['name']}")
        return policy_id

    @keycloak_call("delete an admin permission")
    def delete_admin_policy(self, name: str) -> bool:
        """Delete the admin policy or permission `name`; returns whether there was one."""
        r = self.admin.connection.raw_get(self._permissions_path("policy"), name=name, first=0, max=100)
        found = [p for p in _check(r, "search admin permissions").json() if p.get("name") == name]
        for policy in found:
            r = self.admin.connection.raw_delete(self._permissions_path("policy/{policy_id}", policy_id=policy["id"]))
            if r.status_code != 404:
                _check(r, f"delete admin permission {name}")
        return bool(found)

    # -- admin event log -------------------------------------------------------------

    @keycloak_call("read the realm's admin event log")
    def admin_events(self, date_from_ms: int, first: int, max_results: int, resource_types: list[str] | None = None) -> list[dict]:
        """Admin events at or after `date_from_ms` (only of these resource types, if given), oldest first."""
        query = {"dateFrom": str(date_from_ms), "direction": "asc", "first": first, "max": max_results}
        if resource_types:
            query["resourceTypes"] = list(resource_types)
        r = self.admin.connection.raw_get(self._path("admin-events"), **query)
        return _check(r, "read the admin event log").json()

    @keycloak_call("find the adapter's service account")
    def service_account_user_id(self) -> str:
        """The user id the adapter acts as (its admin events carry it)."""
        if getattr(self, "_service_account_id", None) is None:
            username = f"service-account-{self._connection.client_id}".lower()
            r = self.admin.connection.raw_get(self._path("users"), username=username, exact="true", briefRepresentation="true")
            found = [u for u in _check(r, "find the service account").json() if u.get("username") == username]
            if not found:
                raise PermanentError(f"No user {username}: is {self._connection.client_id} a service-account client?")
            self._service_account_id = found[0]["id"]
        return self._service_account_id

    # -- logging people in (OpenID Connect, for the org admin page) ------------------

    @keycloak_call("read the realm's OpenID configuration")
    def openid_configuration(self) -> dict:
        """The realm's discovery document. Browser-facing endpoints carry Keycloak's public hostname."""
        import requests

        config = getattr(self, "_openid_configuration", None)
        if config is None:
            r = requests.get(f"{self.server_url}/realms/{self.realm}/.well-known/openid-configuration", timeout=self._connection.timeout)
            config = self._openid_configuration = _check(r, "read the OpenID configuration").json()
        return config

    @keycloak_call("log a person in")
    def exchange_login_code(self, client_id: str, code: str, redirect_uri: str, code_verifier: str) -> dict:
        """The authorization code of a browser login turned into tokens (public client with PKCE)."""
        import requests

        r = requests.post(self.openid_configuration()["token_endpoint"], timeout=self._connection.timeout, data={
            "grant_type": "authorization_code", "client_id": client_id, "code": code,
            "redirect_uri": redirect_uri, "code_verifier": code_verifier})
        return _check(r, "exchange a login code").json()

    @keycloak_call("read who logged in")
    def userinfo(self, access_token: str) -> dict:
        """The claims of the person an access token belongs to (Keycloak checks the token)."""
        import requests

        r = requests.get(self.openid_configuration()["userinfo_endpoint"], timeout=self._connection.timeout,
                         headers={"Authorization": f"Bearer {access_token}"})
        return _check(r, "read the logged-in person").json()

    @keycloak_call("read the realm's client policies")
    def contract_access_enforced(self) -> bool:
        """Whether an enabled client policy of the realm uses a profile with Keybridge's `keybridge-contract-access`
        executor (keycloak-extension installed and wired: tokens follow the contract attributes)."""
        r = self.admin.connection.raw_get(self._path("client-policies/profiles"), **{"include-global-profiles": "false"})
        profiles = {p.get("name") for p in _check(r, "read the client profiles").json().get("profiles") or []
                    if any(e.get("executor") == "keybridge-contract-access" for e in p.get("executors") or [])}
        r = self.admin.connection.raw_get(self._path("client-policies/policies"), **{"include-global-policies": "false"})
        return any(p.get("enabled", True) and profiles & set(p.get("profiles") or [])
                   for p in _check(r, "read the client policies").json().get("policies") or [])

    @keycloak_call("list a user's organizations")
    def organizations_of_member(self, user_id: str) -> list[dict]:
        """The organizations (with attributes) the user belongs to; [] for nobody's member.

        (Keycloak 26.7.3 answers 404 for a user in no organization, which `user_organizations` reports as a refusal.)
        """
        r = self.admin.connection.raw_get(self._path("organizations/members/{user_id}/organizations", user_id=user_id), briefRepresentation="false")
        if r.status_code == 404:
            return []
        return _check(r, "list a user's organizations").json()

    @keycloak_call("read an organization membership")
    def membership_type(self, org_id: str, user_id: str) -> str | None:
        """MANAGED, UNMANAGED, or None when the user is no member.

        Keycloak 26.7.3 makes people who registered through an organization invitation
        MANAGED members, and deletes a managed member's identity when the membership is removed.
        """
        r = self.admin.connection.raw_get(self._path("organizations/{org_id}/members/{user_id}", org_id=org_id, user_id=user_id))
        if r.status_code == 404:
            return None
        return _check(r, "read a membership").json().get("membershipType") or "UNMANAGED"


class AdminPermissionsOff(PermanentError):
    """The realm's fine-grained admin permissions are off: delegated administration cannot be kept."""
