"""The Keycloak gateway builds admin URLs safely: ids are Keycloak ids, every path segment is escaped.

The HTTP boundary is faked with `responses` (any call not registered fails the test); the
gateway and python-keycloak underneath it run for real. An id like `..` must never reach
Keycloak: python-keycloak joins paths with urljoin and urllib3 removes dot segments, so
`organizations/<org>/members/..` would be the organization itself (DELETE it, and it is gone).
"""
from __future__ import annotations

import ast
import inspect
import re

import pytest
import responses

from adapter import keycloak as gateway_module
from adapter.keycloak import InvalidKeycloakId, KeycloakGateway, is_keycloak_id

KC = "http://keycloak.test"
ADMIN = f"{KC}/admin/realms/customers"
ORG = "0b9d6f0e-3c55-4a0e-9a51-2f0c2b7d5e11"
USER = "7f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7"
BAD_IDS = ["..", ".", "", "/", "%2F", "..%2F..", "a/b", "../" + ORG, "..?", "..#", ORG + "/..", ORG.upper() + "x", None, 42]


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, f"{KC}/realms/customers/protocol/openid-connect/token",
                 json={"access_token": "t", "expires_in": 300, "refresh_token": "r", "refresh_expires_in": 1800, "token_type": "Bearer"})
        yield mock


@pytest.fixture
def gateway(http):
    return KeycloakGateway(KC, "customers", "keybridge-adapter", "secret")


def admin_calls(http) -> list[tuple[str, str]]:
    return [(c.request.method, c.request.url) for c in http.calls if "/admin/" in c.request.url]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_gateway_refuses_an_id_that_is_no_keycloak_id_before_calling_keycloak(gateway, http, bad):
    calls = [
        lambda: gateway.remove_member(ORG, bad),
        lambda: gateway.remove_member(bad, USER),
        lambda: gateway.is_member(ORG, bad),
        lambda: gateway.membership_type(ORG, bad),
        lambda: gateway.get_user(bad),
        lambda: gateway.set_enabled(bad, False),
        lambda: gateway.logout(bad),
        lambda: gateway.add_member(ORG, bad),
        lambda: gateway.invite_existing_member(ORG, bad),
        lambda: gateway.organizations_of_member(bad),
        lambda: gateway.organization_members(bad),
        lambda: gateway.resend_organization_invitation(ORG, bad),
        lambda: gateway.send_actions_email(bad, ["UPDATE_PASSWORD"], 60),
        # python-keycloak formats ids into URLs unescaped: validated before it is called
        lambda: gateway.get_organization(bad),
        lambda: gateway.update_organization(bad, {"name": "x"}),
        lambda: gateway.update_user(bad, {"firstName": "x"}),
        lambda: gateway.user_realm_roles(bad),
        lambda: gateway.ensure_realm_roles(bad, {"buyer"}),
        lambda: gateway.has_password(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidKeycloakId, match="nothing was sent to Keycloak"):
            call()
    assert admin_calls(http) == []


def test_a_valid_id_goes_into_exactly_one_path_segment(gateway, http):
    http.add(responses.GET, f"{ADMIN}/organizations/{ORG}/members/{USER}", json={"id": USER, "membershipType": "MANAGED"})
    http.add(responses.DELETE, f"{ADMIN}/organizations/{ORG}/members/{USER}", status=204)

    assert gateway.membership_type(ORG, USER) == "MANAGED"
    gateway.remove_member(ORG, USER)

    assert admin_calls(http) == [("GET", f"{ADMIN}/organizations/{ORG}/members/{USER}"),
                                 ("DELETE", f"{ADMIN}/organizations/{ORG}/members/{USER}")]


def test_a_name_in_a_path_is_escaped_as_one_segment(gateway, http):
    http.add(responses.GET, re.compile(rf"{re.escape(ADMIN)}/roles/.*"), json=[])

    gateway.realm_role_user_ids("a b/..%2F?x")

    (call,) = admin_calls(http)
    assert call[1].startswith(f"{ADMIN}/roles/a%20b%2F..%252F%3Fx/users?")


@pytest.mark.parametrize("bad", ["..", ".", ""])
def test_a_name_that_is_a_dot_segment_or_empty_is_refused(gateway, http, bad):
    with pytest.raises(InvalidKeycloakId):
        gateway.realm_role_user_ids(bad)
    with pytest.raises(InvalidKeycloakId):
        gateway.realm_role(bad)
    assert admin_calls(http) == []


def test_keycloak_ids_are_uuids():
    assert is_keycloak_id(ORG) and is_keycloak_id(USER.upper())
    assert not any(is_keycloak_id(bad) for bad in BAD_IDS)


def test_every_raw_admin_call_builds_its_path_with_the_one_helper():
    """A path built with an f-string or .format would skip validation and escaping: none in the gateway."""
    tree = ast.parse(inspect.getsource(gateway_module))
    helpers = {"_path", "_permissions_path", "_export_path"}
    offenders = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
            name = call.func.attr
            if name in ("raw_get", "raw_post", "raw_put", "raw_delete") and call.args:
                first = call.args[0]
                built = isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute) and first.func.attr in helpers
                if not built and not (fn.name == "_form_post" and isinstance(first, ast.Name)):
                    offenders.append(f"{fn.name}: {ast.unparse(call)[:100]}")
            if name in helpers | {"_form_post"} and call.args:
                template = call.args[0]
                if any(isinstance(n, (ast.JoinedStr, ast.Call)) and not (isinstance(n, ast.Call) and getattr(n.func, "attr", "") in helpers)
                       for n in ast.walk(template)):
                    offenders.append(f"{fn.name}: {ast.unparse(call)[:100]}")
    assert offenders == []


def test_the_export_pages_are_asked_with_their_cursor_and_a_missing_extension_or_role_says_what_to_do(gateway, http):
    from urllib.parse import parse_qs, urlsplit

    from adapter.errors import PermanentError
    from adapter.keycloak import ExportMissing

    export = f"{KC}/realms/customers/keybridge-export/users"
    http.add(responses.GET, export, json={"users": [{"id": USER}], "next": USER})
    assert gateway.export_users_page("a b", 2, ["crm_contact_id", "phone"]) == ([{"id": USER}], USER)
    query = parse_qs(urlsplit(http.calls[-1].request.url).query, keep_blank_values=True)
    assert query == {"after": ["a b"], "max": ["2"], "attribute": ["crm_contact_id", "phone"]}

    http.replace(responses.GET, export, status=404, body="")
    with pytest.raises(ExportMissing, match="install Keybridge's Keycloak extension"):
        gateway.export_users_page(None, 2, [])
    http.add(responses.GET, f"{KC}/realms/customers/keybridge-export/invitations", status=403, json={"error": "..."})
    with pytest.raises(PermanentError, match="view-users"):
        gateway.export_invitations_page(None, 2)
