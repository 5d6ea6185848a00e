"""The org admin page's session and member ids (issue 9, findings 2 and 6), through Flask's test client.

Keycloak is faked at its boundary (tests/unit/fakes.py); the page, its sessions and the storage are real.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from adapter import create_app
from adapter import org_admins
from adapter.config import ConfigError, Settings
from adapter.db import utcnow
from adapter.models import PortalSession
from tests.conftest import SESSION_SECRET


@pytest.fixture
def acme(kb, keycloak) -> dict:
    """An organization of a CRM account with an admin (Ada) and a buyer (Bob)."""
    org = keycloak.create_organization({"name": "Acme", "alias": "acme", "attributes": {"crm_account_id": ["A-1"]}})
    ada, bob = keycloak.add_user("ada@acme.example", password=True), keycloak.add_user("bob@acme.example", password=True)
    for user in (ada, bob):
        keycloak.add_member(org, user)
    org_admins.make_admin(kb, org, ada, "test setup")  # the organization's admins group, and org_admin
    keycloak.ensure_realm_roles(bob, {"buyer"})
    return {"org": org, "ada": ada, "bob": bob}


def sign_in(client, keycloak, user_id: str) -> str:
    """Log in through the page (Keycloak's side faked); returns the page's CSRF token."""
    location = client.get("/portal/login").headers["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    r = client.get(f"/portal/callback?state={state}&code={keycloak.login_code_for(user_id)}")
    assert r.status_code == 302
    with client.session_transaction() as session:
        return session["csrf"]


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def app_with(settings, keycloak=None, **changes):
    app = create_app({"KEYBRIDGE_SETTINGS": replace(settings, **changes), "TESTING": True})
    if keycloak is not None:
        app.extensions["keybridge"].keycloak = keycloak
    return app


# -- the cookie ---------------------------------------------------------------------------

def test_the_cookie_is_lax_httponly_and_secure_by_default(client):
    set_cookie = client.get("/portal/login").headers["Set-Cookie"]
    assert "SameSite=Lax" in set_cookie and "HttpOnly" in set_cookie and "Secure" in set_cookie


def test_over_plain_http_secure_can_be_switched_off_but_https_through_a_trusted_proxy_sets_it(settings, keycloak):
    app = app_with(settings, keycloak, session_cookie_secure=False, trusted_proxies=1)
    client = app.test_client()
    assert "Secure" not in client.get("/portal/login").headers["Set-Cookie"]

    r = client.get("/portal/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "admin.acme.example"})
    assert "Secure" in r.headers["Set-Cookie"]
    redirect_uri = parse_qs(urlsplit(r.headers["Location"]).query)["redirect_uri"][0]
    assert redirect_uri == "https://admin.acme.example/portal/callback"
    app.extensions["keybridge"].db.dispose()


def test_forwarded_headers_count_for_nothing_without_trusted_proxies(settings, keycloak):
    app = app_with(settings, keycloak, session_cookie_secure=False)
    r = app.test_client().get("/portal/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
    assert "Secure" not in r.headers["Set-Cookie"]
    assert parse_qs(urlsplit(r.headers["Location"]).query)["redirect_uri"][0] == "http://localhost/portal/callback"
    app.extensions["keybridge"].db.dispose()


# -- the signing key ----------------------------------------------------------------------

def test_the_cookie_is_signed_with_the_session_secret_not_with_the_keycloak_client_secret(settings, tmp_path, keycloak, acme):
    """Two deployments sharing a Keycloak client secret (and here even the database) do not share sessions."""
    one = app_with(settings, keycloak, keycloak_client_secret="the-same-client-secret-for-both")
    other = app_with(settings, keycloak, keycloak_client_secret="the-same-client-secret-for-both",
                     session_secret="another-deployments-session-secret-0123456789")
    assert one.secret_key == SESSION_SECRET
    client = one.test_client()
    sign_in(client, keycloak, acme["ada"])
    assert client.get("/portal/").status_code == 200

    stranger = other.test_client()
    stranger.set_cookie("session", session_cookie(client))
    r = stranger.get("/portal/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/portal/login")
    for app in (one, other):
        app.extensions["keybridge"].db.dispose()


def test_without_a_session_secret_the_page_does_not_start_and_the_error_says_how_to_make_one(settings):
    with pytest.raises(ConfigError, match=r"KEYBRIDGE_SESSION_SECRET is not set.*secrets.token_urlsafe\(32\).*KEYBRIDGE_PORTAL_ENABLED=false"):
        app_with(settings, session_secret="")


def test_with_the_pages_switched_off_no_session_secret_is_needed(settings):
    app = app_with(settings, session_secret="", portal_enabled=False, dashboard_enabled=False)
    assert app.test_client().get("/portal/").status_code == 404
    assert app.test_client().get("/dashboard/").status_code == 404
    app.extensions["keybridge"].db.dispose()


@pytest.mark.parametrize("env, message", [
    ({"KEYBRIDGE_SESSION_SECRET": "short"}, "KEYBRIDGE_SESSION_SECRET is too short"),
    ({"KEYBRIDGE_SESSION_SECRET": "x" * 40, "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET": "x" * 40}, "must not be the Keycloak client secret"),
    ({"KEYBRIDGE_TRUSTED_PROXIES": "-1"}, "KEYBRIDGE_TRUSTED_PROXIES"),
    ({"KEYBRIDGE_SESSION_COOKIE_SECURE": "false", "KEYBRIDGE_TRUSTED_PROXIES": "two"}, "KEYBRIDGE_TRUSTED_PROXIES='two'"),
])
def test_session_settings_that_cannot_work_are_refused_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_session_settings_are_read_from_the_environment():
    s = Settings.from_env({"KEYBRIDGE_SESSION_SECRET": "s" * 43, "KEYBRIDGE_SESSION_COOKIE_SECURE": "false",
                           "KEYBRIDGE_TRUSTED_PROXIES": "2", "KEYBRIDGE_PORTAL_ENABLED": "false"})
    assert (s.session_secret, s.session_cookie_secure, s.trusted_proxies, s.portal_enabled) == ("s" * 43, False, 2, False)
    assert Settings.from_env({}).session_cookie_secure is True


# -- signing out ---------------------------------------------------------------------------

def test_signing_out_ends_the_session_for_every_copy_of_the_cookie_and_then_keycloaks(client, kb, keycloak, acme):
    csrf = sign_in(client, keycloak, acme["ada"])
    copied = session_cookie(client)
    with kb.db.session() as s:
        (stored,) = s.scalars(select(PortalSession)).all()
    assert stored.user_id == acme["ada"] and copied not in stored.id  # only a digest of the token is kept

    r = client.post("/portal/logout", data={"csrf": csrf})

    assert r.status_code == 302
    end_session = urlsplit(r.headers["Location"])
    assert f"{end_session.scheme}://{end_session.netloc}{end_session.path}" == keycloak.openid_configuration()["end_session_endpoint"]
    assert parse_qs(end_session.query) == {"client_id": ["keybridge-portal"], "id_token_hint": [f"id-token-{acme['ada']}"],
                                            "post_logout_redirect_uri": ["http://localhost/portal/signed-out"]}
    assert "signed out" in client.get("/portal/signed-out").get_data(as_text=True)
    thief = client.application.test_client()
    thief.set_cookie("session", copied)
    r = thief.get("/portal/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/portal/login")
    r = thief.post(f"/portal/members/{acme['bob']}/remove", data={"csrf": csrf, "org": acme["org"]})
    assert r.status_code == 302 and r.headers["Location"].startswith("/portal/login")
    assert acme["bob"] in keycloak.members[acme["org"]]
    with kb.db.session() as s:
        assert s.scalars(select(PortalSession)).all() == []


def test_a_session_past_its_lifetime_opens_nothing(client, kb, keycloak, acme):
    sign_in(client, keycloak, acme["ada"])
    assert client.get("/portal/").status_code == 200
    with kb.db.session() as s:
        s.execute(update(PortalSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = client.get("/portal/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/portal/login")


def test_a_new_login_replaces_the_browsers_earlier_session_and_clears_expired_ones(client, kb, keycloak, acme):
    elsewhere = client.application.test_client()
    sign_in(elsewhere, keycloak, acme["ada"])  # another browser, whose sign-in then expires
    with kb.db.session() as s:
        s.execute(update(PortalSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    sign_in(client, keycloak, acme["ada"])
    first = session_cookie(client)
    sign_in(client, keycloak, acme["ada"])
    assert session_cookie(client) != first
    with kb.db.session() as s:
        assert len(s.scalars(select(PortalSession)).all()) == 1
    old = client.application.test_client()
    old.set_cookie("session", first)
    assert old.get("/portal/").status_code == 302


# -- member ids ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["%2E%2E", "..%3F", "%2E%2E%23", "..%2F..", "%252E%252E", "bob", "%20"])
def test_a_member_id_that_is_no_keycloak_id_answers_404_and_keycloak_is_not_asked(client, keycloak, acme, path):
    csrf = sign_in(client, keycloak, acme["ada"])
    form = {"csrf": csrf, "org": acme["org"]}
    keycloak.calls.clear()
    for url in (f"/portal/members/{path}/remove", f"/portal/members/{path}/roles/buyer/take"):
        r = client.post(url, data=form)
        assert r.status_code == 404, url  # "no such member" (or, for an id with a slash in it, no such page)
    touched = {name for name, args, _ in keycloak.calls if name in ("membership_type", "is_member", "remove_member", "ensure_realm_roles")}
    assert touched == set()
    assert acme["bob"] in keycloak.members[acme["org"]] and "buyer" in keycloak.user_roles[acme["bob"]]
