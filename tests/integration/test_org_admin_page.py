"""The org admin page as the one place for what an org admin does (issue 11), on the real Keycloak, in Chromium.

Ada administers Acme. On the page, on a desktop and on a phone (390 px wide), she gives and takes
business roles, invites someone (Keycloak's organization invitation, as the CRM's), sends an
invitation again, revokes the CRM's invitation (its link stops working; the CRM hears it), and sees
the person she invited join. Screenshots of each step go to test-artifacts/org-admin-page-*.png.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from adapter import org_admins
from tests.conftest import envelope, signed_post

from .conftest import run_until, wait_for_mail, served
from .test_core_loop import PASSWORD, register_through_invitation
from .test_delegated_admin import RealmAdmin

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 390, "height": 844}


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"org-admin-page-{name}.png"), full_page=True)


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'keybridge.db'}"


@pytest.fixture
def adapter_url(adapter):
    with served(adapter, public=True) as url:
        yield url


@pytest.fixture
def realm_admin(keycloak):
    return RealmAdmin(keycloak)


@pytest.fixture
def acme(adapter, adapter_url, worker, realm_admin, unique) -> dict:
    """Acme from the CRM with its admin Ada and a buyer Bob (made by Keycloak's operator)."""
    kb = adapter.extensions["keybridge"]
    account_id = f"ACC-{unique}"
    assert signed_post(adapter.test_client(), envelope("account.upserted", {
        "account_id": account_id, "name": f"Acme {unique}", "contract": {"status": "active"}})).status_code == 202
    org = run_until(worker, lambda: kb.keycloak.find_organization(account_id), what="the organization")
    admin_email, member_email = f"ada.{unique}@acme-{unique}.example", f"bob.{unique}@acme-{unique}.example"
    admin, member = realm_admin.create_user(admin_email, PASSWORD), realm_admin.create_user(member_email, PASSWORD)
    for user in (admin, member):
        realm_admin.add_member(org["id"], user)
    realm_admin.give_realm_roles(admin, "org_admin")
    realm_admin.give_realm_roles(member, "buyer")
    run_until(worker, lambda: org_admins.is_admin_of(kb, org["id"], admin), what="Ada administers the organization")
    return {"account_id": account_id, "org": org["id"], "admin": admin, "admin_email": admin_email, "member": member,
            "member_email": member_email}


def login(page, adapter_url: str, email: str) -> None:
    page.goto(f"{adapter_url}/portal/")
    page.fill("#username", email)
    page.click("[type=submit]")
    page.wait_for_selector("#password")
    page.fill("#password", PASSWORD)
    page.click("[type=submit]")
    page.locator("#members").wait_for()


def changes(crm, **match) -> list[dict]:
    return [e["data"] for e in crm.of_type("membership.changed") if all(e["data"].get(k) == v for k, v in match.items())]


def fits_the_screen(page) -> bool:
    """Nothing wider than the viewport: no sideways scrolling on a phone."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_an_org_admin_does_everything_on_one_page_on_a_desktop_and_a_phone(
        adapter, adapter_url, worker, crm, mail_dir, keycloak, realm_admin, chromium, acme, unique):
    client = adapter.test_client()
    carol = f"carol.{unique}@acme-{unique}.example"
    assert signed_post(client, envelope("contact.invite_requested", {
        "contact_id": f"CC-{unique}", "email": carol, "account_id": acme["account_id"], "first_name": "Carol",
        "last_name": "Crm"})).status_code == 202
    run_until(worker, lambda: crm.of_type("invitation.sent"), what="the CRM's invitation sent")
    carol_link = wait_for_mail(mail_dir, to=carol)[0].link

    desktop = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = desktop.new_page()
    login(page, adapter_url, acme["admin_email"])
    bob_row = page.locator(f"#members tr[data-email='{acme['member_email']}']")
    assert "buyer" in bob_row.inner_text()
    assert page.locator(f"#invitations tr[data-email='{carol}']").count() == 1  # the CRM's invitation, listed
    assert page.evaluate("getComputedStyle(document.querySelector('.kb-card')).borderTopColor") == "rgb(20, 184, 166)"
    shot(page, "01-desktop")

    # Give a business role on the page (before: only in Keycloak's console) ...
    bob_row.get_by_label(f"Role to give {acme['member_email']}").select_option("technical_contact")
    bob_row.get_by_role("button", name=f"Give the role to {acme['member_email']}").click()
    page.get_by_text("technical_contact given.").wait_for()
    assert realm_admin.realm_roles(acme["member"]) >= {"buyer", "technical_contact"}
    # ... and take one away.
    page.locator(f"#members tr[data-email='{acme['member_email']}']").get_by_role(
        "button", name=f"Take buyer from {acme['member_email']}").click()
    page.get_by_text("buyer taken away.").wait_for()
    assert realm_admin.realm_roles(acme["member"]) & {"buyer", "technical_contact"} == {"technical_contact"}
    run_until(worker, lambda: [c["roles"] for c in changes(crm, change="roles_changed", user_id=acme["member"],
                                                            actor=acme["admin_email"])]
              == [["buyer", "technical_contact"], ["technical_contact"]], what="both role changes at the CRM, Ada as actor")
    shot(page, "02-desktop-roles-changed")

    # Invite Dee: Keycloak's organization invitation, listed at once; send it again.
    dee = f"dee.{unique}@acme-{unique}.example"
    page.fill("#invite input[name=email]", dee)
    page.fill("#invite input[name=first_name]", "Dee")
    page.fill("#invite input[name=last_name]", "Newcomer")
    page.click("#invite button[type=submit]")
    page.get_by_text(f"{dee} is invited").wait_for()
    assert page.locator(f"#invitations tr[data-email='{dee}']").count() == 1
    wait_for_mail(mail_dir, to=dee)
    page.get_by_role("button", name=f"Resend the invitation to {dee}").click()
    page.get_by_text("The invitation was sent again.").wait_for()
    dee_link = wait_for_mail(mail_dir, to=dee, count=2)[-1].link
    shot(page, "03-desktop-invited-and-resent")

    # Revoke the CRM's invitation: its link no longer lets anyone in; the CRM hears it.
    page.get_by_role("button", name=f"Revoke the invitation to {carol}").click()
    page.get_by_text("The invitation is revoked").wait_for()
    assert page.locator(f"#invitations tr[data-email='{carol}']").count() == 0
    revoked = run_until(worker, lambda: crm.of_type("invitation.revoked"), what="invitation.revoked at the CRM")
    assert (revoked[0]["data"]["contact_id"], revoked[0]["data"]["email"]) == (f"CC-{unique}", carol)
    shot(page, "04-desktop-revoked")
    stranger = chromium.new_context()
    link_page = stranger.new_page()
    link_page.goto(carol_link)
    link_page.wait_for_load_state()
    assert link_page.locator("#password").count() == 0, "the revoked link still opens a registration form"
    stranger.close()

    # Dee accepts: she lands welcomed and signed in, and is a member Ada sees, with the default role.
    invitee = chromium.new_context()
    dee_page = invitee.new_page()
    register_through_invitation(dee_page, dee_link, "Dee", "Newcomer")
    dee_page.locator("#welcome").wait_for()
    assert "Welcome, Dee!" in dee_page.inner_text("h1")
    invitee.close()
    added = run_until(worker, lambda: changes(crm, change="added", actor=acme["admin_email"]), what="Dee added at the CRM")
    assert added[0]["roles"] == ["member"] and added[0]["account_id"] == acme["account_id"]
    page.goto(f"{adapter_url}/portal/")
    assert page.locator(f"#members tr[data-email='{dee}']").count() == 1
    assert page.locator(f"#invitations tr[data-email='{dee}']").count() == 0
    assert not crm.of_type("registration.pending_approval"), "an invited person is no self-registration"
    shot(page, "05-desktop-joined")
    desktop.close()

    # The same page on a phone: nothing runs off the screen, and it works.
    phone = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = phone.new_page()
    login(page, adapter_url, acme["admin_email"])
    assert fits_the_screen(page)
    assert page.evaluate("getComputedStyle(document.querySelector('#members thead')).display") == "none"  # rows as cards
    shot(page, "06-phone")
    row = page.locator(f"#members tr[data-email='{dee}']")
    row.get_by_label(f"Role to give {dee}").select_option("billing_admin")
    row.get_by_role("button", name=f"Give the role to {dee}").tap()
    page.get_by_text("billing_admin given.").wait_for()
    assert fits_the_screen(page)
    shot(page, "07-phone-role-given")
    phone.close()
