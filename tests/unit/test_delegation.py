"""Delegated administration: each organization's admins, and only they, manage its people.

CRM webhooks in through the real endpoint, the worker runs, the in-memory Keycloak keeps the
fine-grained admin permissions; `FakeKeycloak.grants` answers what Keycloak 26.7.3 would allow.
The org admin page (/portal) is driven through Flask's test client.
"""
from __future__ import annotations

import pytest

from adapter import delegation
from adapter.jobs import PermanentError
from adapter.keycloak import KeycloakGateway
from tests.unit.fakes import drain, deliver
from tests.unit.fakes import FakeKeycloak, outbox_events

ACTIVE = {"status": "active", "ends_at": "2030-01-01T00:00:00Z"}
ACME = {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": ACTIVE,
        "admin_contact": {"contact_id": "C-ADM", "email": "ada@acme.example", "first_name": "Ada", "last_name": "Admin"}}
GLOBEX = {"account_id": "A-2", "name": "Globex", "domains": ["globex.example"], "contract": ACTIVE,
          "admin_contact": {"contact_id": "C-GADM", "email": "gus@globex.example", "first_name": "Gus", "last_name": "Admin"}}


@pytest.fixture
def settings(settings):
    """The worker reads the logs and looks at join links on every pass."""
    settings.events_poll_seconds = 0.0
    return settings


class KeycloakWithManagedMembers(FakeKeycloak):
    """As Keycloak 26.7.3 does: registering through an organization invitation makes a MANAGED member,
    and removing a managed member deletes the user."""

    def register_invited_user(self, invitation_id, first_name="Jane", last_name="Doe"):
        org_id = self.invitations[invitation_id]["organizationId"]
        user_id, event = super().register_invited_user(invitation_id, first_name, last_name)
        self.members[org_id].add(user_id)
        self.managed_members.add((org_id, user_id))
        return user_id, event

    def remove_member(self, org_id, user_id):
        super().remove_member(org_id, user_id)
        if (org_id, user_id) in self.managed_members:
            self.managed_members.discard((org_id, user_id))
            self.users.pop(user_id, None)
            self.user_roles.pop(user_id, None)


@pytest.fixture
def keycloak():
    return KeycloakWithManagedMembers()


def register(keycloak, worker, email: str) -> str:
    """The person follows their invitation link and registers; the adapter finishes the job."""
    (invitation,) = keycloak.pending_invitations(email)
    user_id, _ = keycloak.register_invited_user(invitation["id"])
    drain(worker)
    return user_id


def org_of(keycloak, account_id: str) -> dict:
    (org,) = [o for o in keycloak.organizations.values() if o["attributes"].get("crm_account_id") == [account_id]]
    return org


@pytest.fixture
def acme(client, keycloak, worker) -> dict:
    """Acme onboarded: its admin contact and a buyer registered through their invitations."""
    deliver(client, worker, "account.upserted", ACME)
    admin = register(keycloak, worker, "ada@acme.example")
    deliver(client, worker, "contact.invite_requested", {"contact_id": "C-1", "email": "bob@acme.example",
                                                          "account_id": "A-1", "roles": ["Buyer"]})
    bob = register(keycloak, worker, "bob@acme.example")
    return {"org": org_of(keycloak, "A-1"), "admin": admin, "bob": bob}


@pytest.fixture
def globex(client, keycloak, worker) -> dict:
    deliver(client, worker, "account.upserted", GLOBEX)
    admin = register(keycloak, worker, "gus@globex.example")
    deliver(client, worker, "contact.invite_requested", {"contact_id": "C-2", "email": "gina@globex.example",
                                                          "account_id": "A-2", "roles": ["Technical Contact"]})
    gina = register(keycloak, worker, "gina@globex.example")
    return {"org": org_of(keycloak, "A-2"), "admin": admin, "gina": gina}


def role_id(keycloak, name: str) -> str:
    return keycloak.realm_roles[name]["id"]


def membership_changes(kb) -> list[dict]:
    return [e.data for e in outbox_events(kb, "membership.changed")]


# -- what Keycloak lets an org admin do ---------------------------------------------------

def test_the_admin_contact_who_registered_administers_exactly_their_organization(keycloak, acme):
    admin, bob, org = acme["admin"], acme["bob"], acme["org"]
    assert keycloak.user_roles[admin] >= {"org_admin"}
    for person in (admin, bob):
        assert keycloak.grants(admin, "Users", person, "view")
        assert keycloak.grants(admin, "Users", person, "map-roles")
    assert keycloak.grants(admin, "Organizations", org["id"], "view")
    assert not keycloak.grants(admin, "Organizations", org["id"], "manage"), "manage would let them delete the organization"
    assert not keycloak.grants(admin, "Users", bob, "manage"), "manage would let them delete people"
    for role in ("member", "buyer", "technical_contact", "billing_admin"):
        assert keycloak.grants(admin, "Roles", role_id(keycloak, role), "map-role")
    for role in ("org_admin", "lead"):
        assert not keycloak.grants(admin, "Roles", role_id(keycloak, role), "map-role")


def test_a_member_without_org_admin_may_do_nothing(keycloak, acme):
    bob = acme["bob"]
    assert not keycloak.grants(bob, "Users", acme["admin"], "view")
    assert not keycloak.grants(bob, "Roles", role_id(keycloak, "buyer"), "map-role")
    assert not keycloak.grants(bob, "Organizations", acme["org"]["id"], "view")


def test_admins_never_reach_another_organizations_people(keycloak, acme, globex):
    for admin, other_org, others in ((acme["admin"], globex["org"], (globex["admin"], globex["gina"])),
                                     (globex["admin"], acme["org"], (acme["admin"], acme["bob"]))):
        for person in others:
            assert not keycloak.grants(admin, "Users", person, "view")
            assert not keycloak.grants(admin, "Users", person, "map-roles")
        assert not keycloak.grants(admin, "Organizations", other_org["id"], "view")
    # Both may map business roles: one permission for all admins, since Keycloak wants every permission on a role to agree.
    assert keycloak.grants(acme["admin"], "Roles", role_id(keycloak, "buyer"), "map-role")
    assert keycloak.grants(globex["admin"], "Roles", role_id(keycloak, "buyer"), "map-role")


def test_a_new_member_is_visible_to_the_admins_as_soon_as_they_registered(client, keycloak, worker, acme):
    deliver(client, worker, "contact.invite_requested", {"contact_id": "C-3", "email": "cy@acme.example", "account_id": "A-1"})
    cy = register(keycloak, worker, "cy@acme.example")
    assert keycloak.grants(acme["admin"], "Users", cy, "map-roles")


def test_running_the_delegation_again_changes_nothing(kb, keycloak, acme):
    before = dict(keycloak.admin_policies)
    keycloak.calls.clear()
    assert delegation.ensure_organization_delegation(kb, acme["org"]["id"], "test") == "delegated"
    writes = [name for name, *_ in keycloak.calls if name.startswith(("save_", "delete_"))]
    assert writes == []
    assert keycloak.admin_policies == before


def test_an_organization_whose_last_admin_left_delegates_nothing(kb, keycloak, acme):
    keycloak.members[acme["org"]["id"]].discard(acme["admin"])
    keycloak.user_roles[acme["admin"]].discard("org_admin")
    assert delegation.ensure_organization_delegation(kb, acme["org"]["id"], "test") == "no_admins"
    names = delegation.DelegationNames.of(acme["org"]["alias"])
    assert not {names.admins, names.organization, names.members, delegation.BUSINESS_ROLES_PERMISSION} & set(keycloak.admin_policies)
    assert not keycloak.grants(acme["admin"], "Users", acme["bob"], "view")


def test_a_new_organization_without_members_costs_no_permission(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", {"account_id": "A-9", "name": "Initech", "contract": {"status": "none"}})
    assert keycloak.admin_policies == {}
    assert keycloak.calls_to("realm_role_user_ids") == []


def test_the_gateway_never_writes_a_permission_without_resources():
    gateway = KeycloakGateway("http://keycloak.invalid", "customers", "keybridge-adapter", "secret")
    with pytest.raises(PermanentError, match="every Users"):
        gateway.save_admin_permission("keybridge: members of x", "Users", [], ["view"], ["p"])
    with pytest.raises(PermanentError, match="nobody"):
        gateway.save_admin_user_policy("keybridge: admins of x", [])


# -- the org admin page: inviting and removing ------------------------------------------

def test_an_admin_invites_a_new_person_who_becomes_a_member_the_admin_sees(kb, keycloak, worker, acme):
    """The page's invitation is Keycloak's organization invitation, as the CRM's contact invitation is:
    listed with the organization's pending invitations, and settled when the person registered."""
    admin = keycloak.users[acme["admin"]]
    assert delegation.invite_member(kb, acme["org"], "Dee@Acme.example", "Dee", "New", admin) == "invited"

    assert keycloak.find_user_by_email("dee@acme.example") is None, "nobody exists before they registered"
    (mail,) = keycloak.emails_to("dee@acme.example")
    assert mail["kind"] == "org_invite"
    (pending,) = delegation.pending_invitations(kb, acme["org"])
    assert (pending["email"], pending["name"]) == ("dee@acme.example", "Dee New")
    assert delegation.invite_member(kb, acme["org"], "dee@acme.example", None, None, admin) == "already_invited"
    assert len(keycloak.emails_to("dee@acme.example")) == 1

    dee, _ = keycloak.register_invited_user(pending["id"], "Dee", "New")  # a (managed) member now, as in Keycloak
    drain(worker)

    assert keycloak.user_roles[dee] == {"member"}
    assert keycloak.grants(acme["admin"], "Users", dee, "map-roles")
    assert membership_changes(kb)[-1] == {"account_id": "A-1", "user_id": dee, "contact_id": None, "change": "added",
                                          "roles": ["member"], "actor": "ada@acme.example", "actor_user_id": acme["admin"]}
    assert not any(e.type == "registration.pending_approval" for e in outbox_events(kb)), "no self-registration"
    assert not [m for m in keycloak.emails_to("dee@acme.example") if m["kind"] != "org_invite"], "no verify email either"
    drain(worker)
    assert len([c for c in membership_changes(kb) if c["user_id"] == dee]) == 1
    assert delegation.invite_member(kb, acme["org"], "dee@acme.example", None, None, admin) == "already_member"


def test_an_admin_gives_only_business_roles_and_only_to_their_members(kb, keycloak, acme, globex):
    admin = keycloak.users[acme["admin"]]
    bob = acme["bob"]
    assert delegation.give_business_role(kb, acme["org"], bob, "technical_contact", admin) == "given"
    assert delegation.give_business_role(kb, acme["org"], bob, "technical_contact", admin) == "held"
    assert "technical_contact" in keycloak.user_roles[bob]
    change = membership_changes(kb)[-1]
    assert (change["change"], change["actor"], change["user_id"]) == ("roles_changed", "ada@acme.example", bob)
    for role in ("org_admin", "lead", "keybridge-operator", "realm-admin", ""):
        with pytest.raises(ValueError, match="is not a business role"):
            delegation.give_business_role(kb, acme["org"], bob, role, admin)
    with pytest.raises(ValueError, match="not a member of your organization"):
        delegation.give_business_role(kb, acme["org"], globex["gina"], "buyer", admin)
    assert "org_admin" not in keycloak.user_roles[bob] and "buyer" not in keycloak.user_roles[globex["gina"]]


def test_an_admin_resends_and_revokes_only_their_organizations_invitations(kb, keycloak, acme, globex):
    admin = keycloak.users[acme["admin"]]
    delegation.invite_member(kb, acme["org"], "dee@acme.example", "Dee", "New", admin)
    delegation.invite_member(kb, globex["org"], "gwen@globex.example", "Gwen", "G", keycloak.users[globex["admin"]])
    (ours,) = delegation.pending_invitations(kb, acme["org"])
    (theirs,) = delegation.pending_invitations(kb, globex["org"])

    assert delegation.resend_invitation(kb, acme["org"], theirs["id"], admin) == "gone"
    assert delegation.revoke_invitation(kb, acme["org"], theirs["id"], admin) == "gone"
    assert [i["id"] for i in delegation.pending_invitations(kb, globex["org"])] == [theirs["id"]]
    assert len(keycloak.emails_to("gwen@globex.example")) == 1

    assert delegation.resend_invitation(kb, acme["org"], ours["id"], admin) == "resent"
    assert [m["kind"] for m in keycloak.emails_to("dee@acme.example")] == ["org_invite", "org_invite_resend"]
    assert delegation.revoke_invitation(kb, acme["org"], ours["id"], admin) == "revoked"
    assert delegation.pending_invitations(kb, acme["org"]) == []
    assert delegation.revoke_invitation(kb, acme["org"], ours["id"], admin) == "gone"


def test_someone_with_an_identity_gets_a_join_link_and_counts_once_they_joined(kb, keycloak, worker, acme, globex):
    admin = keycloak.users[acme["admin"]]
    lee = keycloak.add_user("lee@prospect.example", "Lee", "P", password=True)
    assert delegation.invite_member(kb, acme["org"], "lee@prospect.example", None, None, admin) == "join_link_sent"
    assert delegation.invite_member(kb, acme["org"], "lee@prospect.example", None, None, admin) == "already_invited"
    drain(worker)
    assert not keycloak.grants(acme["admin"], "Users", lee, "view"), "not before they accepted"
    assert [m["kind"] for m in keycloak.emails_to("lee@prospect.example")] == ["org_invite_existing"]

    (invitation,) = keycloak.pending_invitations("lee@prospect.example")
    keycloak.join_through_link(invitation["id"])
    drain(worker)

    assert keycloak.grants(acme["admin"], "Users", lee, "map-roles")
    assert keycloak.user_roles[lee] == {"member"}
    added = [c for c in membership_changes(kb) if c["user_id"] == lee]
    assert [(c["change"], c["actor"]) for c in added] == [("added", "ada@acme.example")]
    drain(worker)
    assert len([c for c in membership_changes(kb) if c["user_id"] == lee]) == 1


def test_a_join_link_that_lapsed_tells_nobody_anything(kb, keycloak, worker, acme):
    keycloak.add_user("lee@prospect.example", password=True)
    delegation.invite_member(kb, acme["org"], "lee@prospect.example", None, None, keycloak.users[acme["admin"]])
    keycloak.invitations.clear()  # expired (or deleted by an administrator)
    drain(worker)
    from adapter.models import OrgAdminInvitation

    with kb.db.session() as session:
        assert [i.status for i in session.query(OrgAdminInvitation)] == ["expired"]
    assert [c for c in membership_changes(kb) if c["change"] == "added" and c["actor"] != "crm"] == []


def test_an_admin_removes_someone_who_keeps_their_identity_but_no_role_nor_visibility(kb, keycloak, worker, acme):
    admin = keycloak.users[acme["admin"]]
    dee = keycloak.add_user("dee@acme.example", "Dee", "New", password=True)  # joins with the identity they had: unmanaged
    assert delegation.invite_member(kb, acme["org"], "dee@acme.example", "Dee", "New", admin) == "join_link_sent"
    (invitation,) = keycloak.pending_invitations("dee@acme.example")
    keycloak.join_through_link(invitation["id"])
    drain(worker)
    assert delegation.remove_member(kb, acme["org"], dee, admin) == "removed"

    assert dee not in keycloak.members[acme["org"]["id"]]
    assert keycloak.user_roles[dee] & {"member", "buyer", "technical_contact", "billing_admin", "org_admin"} == set()
    assert not keycloak.grants(acme["admin"], "Users", dee, "view")
    assert dee in keycloak.users, "the identity stays; only the membership goes"
    change = membership_changes(kb)[-1]
    assert (change["change"], change["user_id"], change["roles"], change["actor"], change["identity_deleted"]) == \
        ("removed", dee, [], "ada@acme.example", False)


def test_removing_someone_who_registered_through_an_invitation_deletes_them_as_keycloak_does(kb, keycloak, acme):
    admin, bob = keycloak.users[acme["admin"]], acme["bob"]
    assert keycloak.membership_type(acme["org"]["id"], bob) == "MANAGED"
    assert delegation.remove_member(kb, acme["org"], bob, admin) == "removed_and_deleted"

    assert bob not in keycloak.users
    assert not keycloak.grants(acme["admin"], "Users", bob, "view")
    change = membership_changes(kb)[-1]
    assert (change["change"], change["user_id"], change["contact_id"], change["roles"], change["identity_deleted"]) == \
        ("removed", bob, "C-1", [], True)


def test_an_admin_cannot_remove_themselves_nor_someone_of_another_organization(kb, keycloak, acme, globex):
    admin = keycloak.users[acme["admin"]]
    with pytest.raises(ValueError, match="yourself"):
        delegation.remove_member(kb, acme["org"], acme["admin"], admin)
    assert delegation.remove_member(kb, acme["org"], globex["gina"], admin) == "not_member"
    assert globex["gina"] in keycloak.members[globex["org"]["id"]]


# -- the page itself ------------------------------------------------------------------------

def sign_in(client, keycloak, user_id: str):
    r = client.get("/portal/login")
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith("http://keycloak.test/realms/customers/protocol/openid-connect/auth?")
    assert "client_id=keybridge-portal" in location and "code_challenge_method=S256" in location
    state = location.split("state=")[1].split("&")[0]
    r = client.get(f"/portal/callback?state={state}&code={keycloak.login_code_for(user_id)}")
    assert r.status_code == 302
    with client.session_transaction() as session:
        return session["csrf"]


def test_the_page_asks_for_a_keycloak_login_first(client):
    r = client.get("/portal/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/portal/login")


def test_a_login_with_a_forged_state_is_refused(client, keycloak, acme):
    client.get("/portal/login")
    r = client.get(f"/portal/callback?state=forged&code={keycloak.login_code_for(acme['admin'])}")
    assert r.status_code == 400


def test_the_page_lists_the_admins_members_with_their_business_roles(client, keycloak, acme, globex):
    sign_in(client, keycloak, acme["admin"])
    page = client.get("/portal/").get_data(as_text=True)
    assert "bob@acme.example" in page and "buyer" in page and "ada@acme.example" in page
    assert "gina@globex.example" not in page
    assert client.get(f"/portal/?org={globex['org']['id']}").status_code == 403


def test_a_member_who_is_no_admin_is_turned_away(client, keycloak, acme):
    sign_in(client, keycloak, acme["bob"])
    assert client.get("/portal/").status_code == 403


def test_the_page_invites_and_removes_with_the_admin_as_actor(client, kb, keycloak, worker, acme, globex):
    csrf = sign_in(client, keycloak, acme["admin"])
    org = acme["org"]["id"]
    r = client.post("/portal/invite", data={"csrf": csrf, "org": org, "email": "dee@acme.example", "first_name": "Dee"})
    assert r.status_code == 302
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "dee@acme.example is invited" in page and 'id="invitations"' in page and 'data-email="dee@acme.example"' in page
    register(keycloak, worker, "dee@acme.example")

    assert client.post(f"/portal/members/{globex['gina']}/remove", data={"csrf": csrf, "org": org}).status_code == 404
    assert client.post(f"/portal/members/{acme['bob']}/remove", data={"csrf": "stale", "org": org}).status_code == 400
    assert client.post(f"/portal/members/{acme['bob']}/remove", data={"csrf": csrf, "org": org}).status_code == 302
    assert "Keycloak deleted their account" in client.get(f"/portal/?org={org}").get_data(as_text=True)
    changes = [(c["change"], c["actor"]) for c in membership_changes(kb) if c["actor"] != "crm"]
    assert changes == [("added", "ada@acme.example"), ("removed", "ada@acme.example")]
    assert client.post("/portal/invite", data={"csrf": csrf, "org": globex["org"]["id"], "email": "x@y.example"}).status_code == 403


def test_the_page_gives_business_roles_and_handles_only_its_own_invitations(client, kb, keycloak, acme, globex):
    csrf = sign_in(client, keycloak, acme["admin"])
    org, bob = acme["org"]["id"], acme["bob"]
    r = client.post(f"/portal/members/{bob}/roles/give", data={"csrf": csrf, "org": org, "role": "billing_admin"})
    assert r.status_code == 302 and "billing_admin given" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert "billing_admin" in keycloak.user_roles[bob]
    for role in ("org_admin", "keybridge-operator", "realm-admin", "lead"):  # only the business roles
        r = client.post(f"/portal/members/{bob}/roles/give", data={"csrf": csrf, "org": org, "role": role})
        assert r.status_code == 400 and "is not a business role" in r.get_data(as_text=True), role
        assert role not in keycloak.user_roles[bob]
    assert client.post(f"/portal/members/{globex['gina']}/roles/give",
                       data={"csrf": csrf, "org": org, "role": "buyer"}).status_code == 400  # not her member
    assert client.post(f"/portal/members/{bob}/roles/give", data={"csrf": "stale", "org": org, "role": "buyer"}).status_code == 400
    assert client.post(f"/portal/members/{bob}/roles/give",
                       data={"csrf": csrf, "org": globex["org"]["id"], "role": "buyer"}).status_code == 403

    delegation.invite_member(kb, globex["org"], "gwen@globex.example", "Gwen", "G", keycloak.users[globex["admin"]])
    (theirs,) = delegation.pending_invitations(kb, globex["org"])
    for action in ("resend", "revoke"):
        assert client.post(f"/portal/invitations/{theirs['id']}/{action}", data={"csrf": csrf, "org": org}).status_code == 404
        assert client.post(f"/portal/invitations/{theirs['id']}/{action}",
                           data={"csrf": csrf, "org": globex["org"]["id"]}).status_code == 403
        assert client.post(f"/portal/invitations/..%2F{theirs['id']}/{action}", data={"csrf": csrf, "org": org}).status_code == 404
        assert client.post(f"/portal/invitations/{theirs['id']}/{action}", data={"org": org}).status_code == 400
    assert [i["id"] for i in delegation.pending_invitations(kb, globex["org"])] == [theirs["id"]]
    assert len(keycloak.emails_to("gwen@globex.example")) == 1

    client.post("/portal/invite", data={"csrf": csrf, "org": org, "email": "dee@acme.example", "first_name": "Dee"})
    (ours,) = delegation.pending_invitations(kb, acme["org"])
    r = client.post(f"/portal/invitations/{ours['id']}/resend", data={"csrf": csrf, "org": org})
    assert r.status_code == 302 and "sent again" in client.get(r.headers["Location"]).get_data(as_text=True)
    r = client.post(f"/portal/invitations/{ours['id']}/revoke", data={"csrf": csrf, "org": org})
    assert r.status_code == 302 and "its link no longer works" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert delegation.pending_invitations(kb, acme["org"]) == []
    assert client.post(f"/portal/invitations/{ours['id']}/revoke", data={"csrf": csrf, "org": org}).status_code == 404


def test_revoking_the_crms_invitation_on_the_page_tells_the_crm(client, kb, keycloak, worker, acme):
    deliver(client, worker, "contact.invite_requested", {"contact_id": "C-9", "email": "cleo@acme.example", "account_id": "A-1"})
    csrf = sign_in(client, keycloak, acme["admin"])
    (pending,) = delegation.pending_invitations(kb, acme["org"])
    assert client.post(f"/portal/invitations/{pending['id']}/revoke", data={"csrf": csrf, "org": acme["org"]["id"]}).status_code == 302
    (revoked,) = [e.data for e in outbox_events(kb) if e.type == "invitation.revoked"]
    assert (revoked["contact_id"], revoked["email"], revoked["account_id"]) == ("C-9", "cleo@acme.example", "A-1")
    assert keycloak.pending_invitations("cleo@acme.example") == []


def test_an_admin_takes_a_business_role_and_the_crm_hears_it(kb, keycloak, acme, globex):
    admin = keycloak.users[acme["admin"]]
    assert delegation.take_business_role(kb, acme["org"], acme["bob"], "buyer", admin) == "taken"
    assert "buyer" not in keycloak.user_roles[acme["bob"]]
    change = membership_changes(kb)[-1]
    assert (change["change"], change["user_id"], change["roles"], change["actor"]) == \
        ("roles_changed", acme["bob"], [], "ada@acme.example")
    assert delegation.take_business_role(kb, acme["org"], acme["bob"], "buyer", admin) == "not_held"
    with pytest.raises(ValueError, match="not a business role"):
        delegation.take_business_role(kb, acme["org"], acme["bob"], "org_admin", admin)
    with pytest.raises(ValueError, match="not a member"):
        delegation.take_business_role(kb, acme["org"], globex["gina"], "technical_contact", admin)
    assert "technical_contact" in keycloak.user_roles[globex["gina"]]


def test_the_page_takes_a_business_role(client, kb, keycloak, acme):
    csrf = sign_in(client, keycloak, acme["admin"])
    r = client.post(f"/portal/members/{acme['bob']}/roles/buyer/take", data={"csrf": csrf, "org": acme["org"]["id"]})
    assert r.status_code == 302
    assert "buyer taken away" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert client.post(f"/portal/members/{acme['bob']}/roles/org_admin/take",
                       data={"csrf": csrf, "org": acme["org"]["id"]}).status_code == 400


def test_without_admin_permissions_in_the_realm_accounts_and_registrations_still_go_through(client, kb, keycloak, worker):
    from adapter.keycloak import AdminPermissionsOff
    from tests.unit.fakes import all_jobs

    for method in ("admin_policy", "save_admin_user_policy", "save_admin_permission", "delete_admin_policy"):
        keycloak.fail_next(method, times=100, error=AdminPermissionsOff("adminPermissionsEnabled is off"))
    deliver(client, worker, "account.upserted", ACME)
    register(keycloak, worker, "ada@acme.example")
    assert {j.status for j in all_jobs(kb)} == {"done"}
    assert "org_admin" in keycloak.user_roles[keycloak.find_user_by_email("ada@acme.example")["id"]]
    assert len(outbox_events(kb, "identity.registered")) == 1


# -- admin rights belong to one organization ---------------------------------------------------

def admins_group(keycloak, org_id: str) -> dict:
    (group,) = [g for g in keycloak.org_groups.values() if g["organizationId"] == org_id and g["name"] == "admins"]
    return group


def test_the_invited_admin_is_in_their_organizations_admins_group_only(keycloak, acme, globex):
    assert admins_group(keycloak, acme["org"]["id"])["members"] == {acme["admin"]}
    assert admins_group(keycloak, globex["org"]["id"])["members"] == {globex["admin"]}


def test_an_admin_of_one_organization_who_is_a_plain_member_of_another_administers_only_the_first(
        client, kb, keycloak, worker, acme, globex):
    """Attack: Ada administers Acme and is also a plain member of Globex (an operator added her). Holding
    org_admin must not make her an admin of Globex: neither in the permissions nor on the page."""
    ada, globex_id = acme["admin"], globex["org"]["id"]
    keycloak.admin_changes_membership("operator", globex_id, ada)
    drain(worker)
    assert ada in keycloak.members[globex_id] and "org_admin" in keycloak.user_roles[ada]

    for person in (globex["admin"], globex["gina"]):
        assert not keycloak.grants(ada, "Users", person, "view")
        assert not keycloak.grants(ada, "Users", person, "map-roles")
    assert not keycloak.grants(ada, "Organizations", globex_id, "view")
    assert keycloak.grants(ada, "Users", acme["bob"], "map-roles")

    csrf = sign_in(client, keycloak, ada)
    assert client.get(f"/portal/?org={globex_id}").status_code == 403
    assert client.post(f"/portal/members/{globex['gina']}/roles/technical_contact/take",
                       data={"csrf": csrf, "org": globex_id}).status_code == 403
    assert client.post(f"/portal/members/{globex['gina']}/remove", data={"csrf": csrf, "org": globex_id}).status_code == 403
    assert client.post("/portal/invite", data={"csrf": csrf, "org": globex_id, "email": "x@globex.example"}).status_code == 403
    page = client.get("/portal/").get_data(as_text=True)
    assert "bob@acme.example" in page and "gina@globex.example" not in page and "Globex" not in page
    assert globex["gina"] in keycloak.members[globex_id] and "technical_contact" in keycloak.user_roles[globex["gina"]]


def test_an_operator_putting_a_member_into_the_admins_group_makes_them_admin_of_that_organization(kb, keycloak, worker, acme):
    org_id, bob = acme["org"]["id"], acme["bob"]
    keycloak.admin_changes_group_membership("operator", org_id, admins_group(keycloak, org_id)["id"], bob)
    drain(worker)
    assert "org_admin" in keycloak.user_roles[bob] and keycloak.grants(bob, "Users", acme["admin"], "view")

    keycloak.admin_changes_group_membership("operator", org_id, admins_group(keycloak, org_id)["id"], bob, add=False)
    drain(worker)
    assert "org_admin" not in keycloak.user_roles[bob] and not keycloak.grants(bob, "Users", acme["admin"], "view")


def test_org_admin_given_by_an_operator_to_a_member_of_one_organization_means_admin_of_that_one(kb, keycloak, worker, acme, globex):
    bob = acme["bob"]
    keycloak.admin_maps_roles("operator", bob, {"org_admin"})
    drain(worker)
    assert bob in admins_group(keycloak, acme["org"]["id"])["members"]
    assert keycloak.grants(bob, "Users", acme["admin"], "view") and not keycloak.grants(bob, "Users", globex["gina"], "view")

    keycloak.admin_maps_roles("operator", bob, {"org_admin"}, add=False)  # taken: admin of nothing
    drain(worker)
    assert bob not in admins_group(keycloak, acme["org"]["id"])["members"]
    assert not keycloak.grants(bob, "Users", acme["admin"], "view")


def test_org_admin_given_to_a_member_of_several_organizations_administers_none_until_an_operator_says_which(
        kb, keycloak, worker, acme, globex):
    from adapter.models import AuditEntry

    bob = acme["bob"]
    keycloak.admin_changes_membership("operator", globex["org"]["id"], bob)
    keycloak.admin_maps_roles("operator", bob, {"org_admin"})
    drain(worker)
    assert not keycloak.grants(bob, "Users", acme["admin"], "view") and not keycloak.grants(bob, "Users", globex["gina"], "view")
    with kb.db.session() as session:
        (entry,) = session.query(AuditEntry).filter_by(action="org_admin.unassigned").all()
        assert entry.subject == f"user:{bob}" and "admins" in entry.details["fix"]


def test_the_migration_gives_each_org_admin_from_before_the_organization_they_administer(client, kb, keycloak, worker):
    """Before: org_admin alone made anyone an admin of every organization they belonged to."""
    from adapter import org_admins

    deliver(client, worker, "account.upserted", {**ACME, "admin_contact": None})
    deliver(client, worker, "account.upserted", {**GLOBEX, "admin_contact": None})
    acme_id, globex_id = org_of(keycloak, "A-1")["id"], org_of(keycloak, "A-2")["id"]
    one = keycloak.add_user("one@acme.example")
    two = keycloak.add_user("two@acme.example")
    for org_id, user in ((acme_id, one), (acme_id, two), (globex_id, two)):
        keycloak.members[org_id].add(user)
    keycloak.user_roles[one] |= {"org_admin"}
    keycloak.user_roles[two] |= {"org_admin"}

    assert org_admins.migrate(kb) == {"holders": 2, "adopted": 1}
    assert org_admins.migrate(kb) == {"holders": 2, "adopted": 0}
    assert [o["id"] for o in org_admins.administered_organizations(kb, one)] == [acme_id]
    assert org_admins.administered_organizations(kb, two) == []  # several: an operator decides


def test_without_the_delegation_clients_secret_delegation_is_skipped_and_audited(client, kb, keycloak, worker):
    from adapter.models import AuditEntry

    kb.delegation_keycloak = None
    deliver(client, worker, "account.upserted", ACME)
    ada = register(keycloak, worker, "ada@acme.example")
    assert keycloak.admin_policies == {}
    assert "org_admin" in keycloak.user_roles[ada] and len(outbox_events(kb, "identity.registered")) == 1
    with kb.db.session() as session:
        reasons = {e.details["reason"] for e in session.query(AuditEntry).filter_by(action="delegation.unavailable")}
    assert reasons and all("KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET" in r for r in reasons)
