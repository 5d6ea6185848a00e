"""The org admin page under attack, on the real Keycloak and in Chromium (issue 9, findings 2 and 6).

- Path traversal: a member id like `..?` or `..#` in the page's own remove/take forms (with
  their CSRF token) would make the adapter ask Keycloak about `organizations/<org>/` and then
  DELETE it. The page answers 404 and the organization, and its members, are still there.
- The session: the cookie is SameSite=Lax and HttpOnly, and a login works although Keycloak
  (localhost) and the page (127.0.0.1) are different sites; signing out ends the page's
  session on the server (a copy of the cookie opens nothing any more) and Keycloak's session.

One adapter storage (SQLite) is enough: these tests are about the page and Keycloak.
"""
from __future__ import annotations


import pytest
import requests

from adapter import org_admins
from tests.conftest import envelope, signed_post

from .conftest import run_until, served
from .test_core_loop import PASSWORD
from .test_delegated_admin import RealmAdmin, shot

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'keybridge.db'}"


@pytest.fixture
def adapter_url(adapter):
    with served(adapter) as url:
        yield url


@pytest.fixture
def realm_admin(keycloak):
    return RealmAdmin(keycloak)


@pytest.fixture
def acme(adapter, worker, realm_admin, unique) -> dict:
    """An organization from the CRM with an admin (Ada) and a buyer (Bob), made by Keycloak's operator."""
    kb = adapter.extensions["keybridge"]
    account_id = f"ACC-{unique}"
    body = envelope("account.upserted", {"account_id": account_id, "name": f"Acme {unique}", "contract": {"status": "active"}})
    assert signed_post(adapter.test_client(), body).status_code == 202
    org = run_until(worker, lambda: kb.keycloak.find_organization(account_id), what="the organization")
    admin_email, member_email = f"ada.{unique}@acme-{unique}.example", f"bob.{unique}@acme-{unique}.example"
    admin, member = realm_admin.create_user(admin_email, PASSWORD), realm_admin.create_user(member_email, PASSWORD)
    for user in (admin, member):
        realm_admin.add_member(org["id"], user)
    realm_admin.give_realm_roles(admin, "org_admin")
    realm_admin.give_realm_roles(member, "buyer")
    # She belongs to this organization only, so the worker makes her its admin (its admins group).
    run_until(worker, lambda: org_admins.is_admin_of(kb, org["id"], admin), what="Ada administers the organization")
    return {"org": org["id"], "admin": admin, "admin_email": admin_email, "member": member, "member_email": member_email}


def portal_login(page, adapter_url: str, email: str) -> str:
    """Open the page; Keycloak asks who it is; back on the page with the members listed.

    Returns the Set-Cookie header of the page's login callback."""
    page.goto(f"{adapter_url}/portal/")
    page.fill("#username", email)
    page.click("[type=submit]")
    page.wait_for_selector("#password")
    page.fill("#password", PASSWORD)
    with page.expect_response(lambda r: r.url.startswith(f"{adapter_url}/portal/callback")) as callback:
        page.click("[type=submit]")
    page.locator("#members").wait_for()
    return callback.value.all_headers().get("set-cookie", "")


def still_there(realm_admin, acme) -> None:
    """The organization and Bob's membership, as Keycloak's operator sees them (raises if gone)."""
    assert realm_admin.call("GET", f"/organizations/{acme['org']}").json()["id"] == acme["org"]
    assert realm_admin.call("GET", f"/organizations/{acme['org']}/members/{acme['member']}").json()["id"] == acme["member"]


def submit_to(page, form, action: str) -> int:
    """Submit one of the page's own forms (its CSRF token and org field included) to another action; the status."""
    form.evaluate("(f, action) => f.setAttribute('action', action)", action)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.locator("button").first.click()
    return answer.value.status


def test_a_dot_dot_member_id_cannot_reach_the_organization(adapter_url, acme, realm_admin, page):
    portal_login(page, adapter_url, acme["admin_email"])
    row = f"#members tr[data-email='{acme['member_email']}']"
    # Chromium keeps these paths as they are (`..?`, `..#` once decoded are no dot segments for it);
    # python-keycloak's urljoin cut the `?`/`#` off and then collapsed `members/..` into the organization.
    for action in ("/portal/members/..%3F/remove", "/portal/members/%2E%2E%23/remove", "/portal/members/..%3F/roles/buyer/take"):
        page.goto(f"{adapter_url}/portal/")
        form = page.locator(f"{row} form").filter(has=page.locator("button[name=remove]")) if action.endswith("/remove") \
            else page.locator(f"{row} form").first
        status = submit_to(page, form, action)
        still_there(realm_admin, acme)
        assert status == 404, action
        page.get_by_text("There is no such member in your organization.").wait_for()
    shot(page, "traversal-refused")

    # The request of the issue, exactly (`%2E%2E` sent as is), with the page's session and CSRF token.
    cookies = {c["name"]: c["value"] for c in page.context.cookies(adapter_url)}
    page.goto(f"{adapter_url}/portal/")
    csrf = page.locator("#invite input[name=csrf]").get_attribute("value")
    r = requests.post(f"{adapter_url}/portal/members/%2E%2E/remove", cookies=cookies, data={"csrf": csrf, "org": acme["org"]},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 404
    still_there(realm_admin, acme)
    assert page.locator(row).count() == 1


def test_every_new_form_of_the_page_needs_its_csrf_token_and_a_real_id(adapter_url, acme, realm_admin, page, unique):
    """Giving a role, sending an invitation again and revoking it: a post without the page's CSRF token
    changes nothing (400), and an invitation id that is no Keycloak id never reaches Keycloak (404)."""
    portal_login(page, adapter_url, acme["admin_email"])
    realm_admin.call("POST", f"/organizations/{acme['org']}/members/invite-user", data={"email": f"ivy.{unique}@acme-{unique}.example"})
    (invitation,) = [i["id"] for i in realm_admin.call("GET", f"/organizations/{acme['org']}/invitations").json()]
    page.goto(f"{adapter_url}/portal/")
    csrf = page.locator("#invite input[name=csrf]").get_attribute("value")
    for action, form in ((f"/portal/members/{acme['member']}/roles/give", {"role": "billing_admin"}),
                         (f"/portal/invitations/{invitation}/resend", {}), (f"/portal/invitations/{invitation}/revoke", {})):
        for token in ({}, {"csrf": ""}, {"csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}):
            answer = page.request.post(f"{adapter_url}{action}", form={"org": acme["org"], **form, **token})
            assert answer.status == 400, (action, token, answer.status)
    for bad in ("..%3F", "%2E%2E", "not-an-id", f"{invitation}x"):
        for verb in ("resend", "revoke"):
            answer = page.request.post(f"{adapter_url}/portal/invitations/{bad}/{verb}", form={"csrf": csrf, "org": acme["org"]})
            assert answer.status == 404, (bad, verb, answer.status)
    assert "billing_admin" not in realm_admin.realm_roles(acme["member"])
    assert [i["id"] for i in realm_admin.call("GET", f"/organizations/{acme['org']}/invitations").json()] == [invitation]
    still_there(realm_admin, acme)


def test_signing_out_ends_the_session_on_the_server_and_in_keycloak(adapter_url, acme, realm_admin, page):
    set_cookie = portal_login(page, adapter_url, acme["admin_email"])  # Keycloak on localhost, the page on 127.0.0.1: two sites
    assert "SameSite=Lax" in set_cookie and "HttpOnly" in set_cookie, set_cookie  # said, not left to the browser's default
    (cookie,) = [c for c in page.context.cookies(adapter_url) if c["name"] == "session"]
    assert (cookie["sameSite"], cookie["httpOnly"]) == ("Lax", True)
    copy = requests.Session()
    copy.cookies.set(cookie["name"], cookie["value"])
    assert copy.get(f"{adapter_url}/portal/", allow_redirects=False, timeout=30).status_code == 200  # a copy works while signed in
    csrf = page.locator("#invite input[name=csrf]").get_attribute("value")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You are signed out of the organization admin page.").wait_for()
    assert page.url.startswith(f"{adapter_url}/portal/signed-out")
    shot(page, "signed-out")

    # The copied cookie opens nothing now, and cannot act with the CSRF token it came with.
    r = copy.get(f"{adapter_url}/portal/", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"].startswith("/portal/login")
    r = copy.post(f"{adapter_url}/portal/members/{acme['member']}/remove", data={"csrf": csrf, "org": acme["org"]},
                  allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"].startswith("/portal/login")
    still_there(realm_admin, acme)
    # Keycloak's session ended too: the page needs the password again.
    page.goto(f"{adapter_url}/portal/")
    page.locator("#username").wait_for()
    assert page.locator("#members").count() == 0
