"""contact.upserted: an existing identity follows its CRM contact; `left` ends access and membership.

Signed webhooks in through the real endpoint, the worker runs, the in-memory Keycloak shows the result.
"""
from __future__ import annotations

import pytest

from tests.unit.fakes import all_jobs, deliver, drain, invitation_row, make_everything_due, outbox_events

ACME = {"account_id": "A-1", "name": "Acme Corporation", "domains": ["acme.example"],
        "contract": {"status": "active", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-12-31T23:59:59Z"}}
GLOBEX = {"account_id": "A-2", "name": "Globex", "domains": ["globex.example"],
          "contract": {"status": "active", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-12-31T23:59:59Z"}}
CONTACT = {"contact_id": "C-1", "email": "jane.doe@acme.example", "account_id": "A-1", "first_name": "Jane",
           "last_name": "Doe", "phone": "+1 555 0100", "roles": ["Buyer"], "status": "active"}


def org_id(keycloak, account_id) -> str:
    (org,) = [o for o in keycloak.organizations.values() if o["attributes"].get("crm_account_id") == [account_id]]
    return org["id"]


def memberships(keycloak, user_id) -> list[str]:
    """The CRM accounts whose organization the user is a member of."""
    return sorted(o["attributes"]["crm_account_id"][0] for oid, o in keycloak.organizations.items()
                  if user_id in keycloak.members[oid])


def access_changes(kb) -> list[dict]:
    return [e.data for e in outbox_events(kb, "identity.access_changed")]


def membership_changes(kb) -> list[tuple]:
    return [(e.data["account_id"], e.data["user_id"], e.data["contact_id"], e.data["change"], e.data["actor"])
            for e in outbox_events(kb, "membership.changed")]


@pytest.fixture
def jane(client, kb, keycloak, worker) -> str:
    """Jane registered earlier: linked to contact C-1, member of Acme, a buyer who is also a lead and Acme's org admin."""
    deliver(client, worker, "account.upserted", ACME)
    deliver(client, worker, "account.upserted", GLOBEX)
    user_id = keycloak.add_user("jane@old-mail.example", "J", "D", password=True, crm_contact_id=["C-1"])
    keycloak.users[user_id]["emailVerified"] = True
    keycloak.members[org_id(keycloak, "A-1")].add(user_id)
    keycloak.user_roles[user_id] = {"buyer", "lead", "org_admin"}
    return user_id


# -- profile, organization, roles ------------------------------------------------------

def test_the_identity_linked_to_the_contact_gets_the_crm_names_email_and_phone(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "email": "Jane.Doe@acme.example"})

    user = keycloak.users[jane]
    assert (user["firstName"], user["lastName"], user["email"]) == ("Jane", "Doe", "jane.doe@acme.example")
    assert user["attributes"]["phone"] == ["+1 555 0100"]
    assert user["attributes"]["crm_contact_id"] == ["C-1"]
    assert user["emailVerified"] is False  # a new address is not verified yet
    assert user["enabled"] is True


def test_an_unchanged_contact_makes_no_keycloak_change(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", CONTACT, webhook_id="msg_c1")
    before = {m: len(keycloak.calls_to(m)) for m in ("update_user", "add_member", "remove_member", "set_enabled")}

    deliver(client, worker, "contact.upserted", CONTACT, webhook_id="msg_c2")

    assert {m: len(keycloak.calls_to(m)) for m in before} == before
    assert len(outbox_events(kb, "membership.changed")) == 0


def test_a_contact_moved_to_another_account_moves_to_its_organization(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "account_id": "A-2"})

    assert memberships(keycloak, jane) == ["A-2"]
    assert membership_changes(kb) == [("A-1", jane, "C-1", "removed", "crm"), ("A-2", jane, "C-1", "added", "crm")]
    assert keycloak.users[jane]["enabled"] is True


def test_crm_roles_set_the_business_roles_and_leave_other_roles_alone(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "roles": ["Technical Contact", "Billing Contact"]})
    assert keycloak.user_roles[jane] == {"technical_contact", "billing_admin", "lead", "org_admin"}

    deliver(client, worker, "contact.upserted", {**CONTACT, "roles": ["Decision Maker"]})
    assert keycloak.user_roles[jane] == {"buyer", "lead", "org_admin"}


def test_crm_roles_that_map_to_nothing_leave_the_default_business_role(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "roles": ["Golf Partner"]})
    assert keycloak.user_roles[jane] == {"member", "lead", "org_admin"}


def test_a_contact_without_roles_in_the_event_keeps_its_roles(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {k: v for k, v in CONTACT.items() if k != "roles"})
    assert keycloak.user_roles[jane] == {"buyer", "lead", "org_admin"}


def test_a_contact_moved_into_an_account_without_a_contract_loses_access(client, kb, keycloak, worker, jane):
    deliver(client, worker, "account.upserted", {**GLOBEX, "contract": {"status": "suspended"}})

    deliver(client, worker, "contact.upserted", {**CONTACT, "account_id": "A-2"})

    assert memberships(keycloak, jane) == ["A-2"]
    assert not keycloak.can_log_in(jane) and jane in keycloak.sessions_ended
    assert keycloak.users[jane]["enabled"] is True, "a contract touches nobody's enabled flag"
    assert access_changes(kb) == [{"user_id": jane, "contact_id": "C-1", "enabled": False, "reason": "contract_inactive"}]


def test_a_contact_of_an_account_keybridge_has_not_seen_waits_for_it(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "account_id": "A-3"})
    (job,) = [j for j in all_jobs(kb, "inbound_event") if j.status != "done"]
    assert job.status == "queued" and "A-3" in job.last_error

    deliver(client, worker, "account.upserted", {**ACME, "account_id": "A-3", "name": "Initech", "domains": []})
    make_everything_due(kb)
    drain(worker)
    assert memberships(keycloak, jane) == ["A-3"]


# -- leaving the company ---------------------------------------------------------------

def test_a_contact_who_left_loses_access_sessions_and_membership(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "status": "left"})

    assert keycloak.users[jane]["enabled"] is False
    assert keycloak.sessions_ended == [jane]
    assert memberships(keycloak, jane) == []
    assert access_changes(kb) == [{"user_id": jane, "contact_id": "C-1", "enabled": False, "reason": "left_company"}]
    assert membership_changes(kb) == [("A-1", jane, "C-1", "removed", "crm")]


def test_a_departure_repeated_changes_nothing_more(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "status": "left"}, webhook_id="msg_left_1")
    deliver(client, worker, "contact.upserted", {**CONTACT, "status": "left"}, webhook_id="msg_left_2")

    assert len(keycloak.calls_to("set_enabled")) == 1 and keycloak.sessions_ended == [jane]
    assert len(access_changes(kb)) == 1 and len(membership_changes(kb)) == 1


def test_a_contact_active_again_gets_access_and_membership_back(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "status": "left"})
    deliver(client, worker, "contact.upserted", CONTACT)

    assert keycloak.users[jane]["enabled"] is True
    assert memberships(keycloak, jane) == ["A-1"]
    (back,) = [d for d in access_changes(kb) if d["enabled"]]
    assert (back["user_id"], back["contact_id"]) == (jane, "C-1")


def test_a_contact_who_left_is_not_given_access_back_by_a_contract_renewal(client, kb, keycloak, worker, jane):
    deliver(client, worker, "account.upserted", {**ACME, "contract": {"status": "suspended"}})
    deliver(client, worker, "contact.upserted", {**CONTACT, "status": "left"})

    deliver(client, worker, "account.upserted", ACME)

    assert keycloak.users[jane]["enabled"] is False
    assert [d for d in access_changes(kb) if d["enabled"]] == []


def test_a_contact_who_left_before_a_suspension_stays_out_after_the_renewal(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "status": "left"})
    deliver(client, worker, "account.upserted", {**ACME, "contract": {"status": "suspended"}})
    deliver(client, worker, "account.upserted", ACME)

    assert keycloak.users[jane]["enabled"] is False
    assert [d for d in access_changes(kb) if d["enabled"]] == []


def test_a_contact_back_from_leaving_while_the_contract_is_suspended_stays_cut_off_until_renewal(client, kb, keycloak, worker, jane):
    deliver(client, worker, "contact.upserted", {**CONTACT, "status": "left"})
    deliver(client, worker, "account.upserted", {**ACME, "contract": {"status": "suspended"}})

    deliver(client, worker, "contact.upserted", CONTACT)
    assert memberships(keycloak, jane) == ["A-1"]
    assert keycloak.users[jane]["enabled"] is True, "back from leaving: Keybridge gives back the flag it took"
    assert not keycloak.can_log_in(jane), "the suspended contract still refuses her"

    deliver(client, worker, "account.upserted", ACME)
    assert keycloak.can_log_in(jane)


# -- no identity yet -------------------------------------------------------------------

def test_a_contact_without_identity_creates_no_user(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACME)
    deliver(client, worker, "contact.upserted", CONTACT)

    assert keycloak.users == {} and keycloak.emails == []
    assert {j.status for j in all_jobs(kb)} == {"done"}


def test_a_contact_without_identity_updates_its_pending_invitation(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACME)
    deliver(client, worker, "contact.invite_requested", {k: v for k, v in CONTACT.items() if k not in ("phone", "status")})

    deliver(client, worker, "contact.upserted", {**CONTACT, "roles": ["Technical Contact"], "first_name": "Janet"})

    assert keycloak.users == {}
    assert [m["kind"] for m in keycloak.emails] == ["org_invite"]
    details = invitation_row(kb, "contact", "C-1").details
    assert (details["roles"], details["first_name"]) == (["Technical Contact"], "Janet")

    (invitation,) = keycloak.pending_invitations()
    user_id, _ = keycloak.register_invited_user(invitation["id"])
    drain(worker)
    assert keycloak.user_roles[user_id] == {"technical_contact"}


def test_a_leaver_who_joined_by_invitation_is_reported_with_the_identity_deleted(client, kb, keycloak, worker):
    """Keycloak 26.7.3 deletes a managed member with its membership: the CRM must know the identity is gone."""
    from tests.unit.fakes import deliver

    deliver(client, worker, "account.upserted", {"account_id": "A-7", "name": "Managed", "contract": {"status": "active"}})
    org_id = keycloak.find_organization("A-7")["id"]
    user_id = keycloak.add_user("m@managed.example", crm_contact_id=["C-7"])
    keycloak.add_member(org_id, user_id)
    keycloak.managed_members.add((org_id, user_id))
    deliver(client, worker, "contact.upserted", {"contact_id": "C-7", "email": "m@managed.example", "status": "left"})
    removed = [e.data for e in outbox_events(kb, "membership.changed") if e.data["change"] == "removed"]
    assert removed == [{"account_id": "A-7", "user_id": user_id, "contact_id": "C-7", "change": "removed", "roles": [],
                        "actor": "crm", "identity_deleted": True}]
