"""Invitations as a CRM admin sees them: signed webhooks in, the worker runs, emails leave Keycloak once."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta


from adapter import outbox
from adapter.worker import Worker
from adapter.runtime import Keybridge
from tests.unit.fakes import all_jobs, deliver, drain, invitation_row, make_everything_due, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme Corporation", "domains": ["acme.example"],
           "contract": {"status": "active", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-12-31T23:59:59Z"}}
INVITE = {"contact_id": "C-1", "email": "Jane.Doe@acme.example", "account_id": "A-1", "first_name": "Jane",
          "last_name": "Doe", "roles": ["Buyer"]}
LEAD = {"lead_id": "L-1", "email": "lee@corp.example", "first_name": "Lee", "last_name": "Park", "company": "Corp"}


def sent_to(keycloak, email):
    return [m["kind"] for m in keycloak.emails_to(email)]


def org_of(keycloak, account_id):
    (org,) = [o for o in keycloak.organizations.values() if o["attributes"].get("crm_account_id") == [account_id]]
    return org


# -- accounts -----------------------------------------------------------------------

def test_account_upserted_creates_the_organization_with_the_contract_on_it(client, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)

    org = org_of(keycloak, "A-1")
    assert org["name"] == "Acme Corporation" and org["alias"] == "crm-a-1"
    assert org["attributes"]["contract_status"] == ["active"]
    assert org["attributes"]["contract_ends_at"] == ["2027-12-31T23:59:59Z"]
    assert [d["name"] for d in org["domains"]] == ["acme.example"]


def test_a_second_identical_account_upsert_changes_nothing_in_keycloak(client, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "account.upserted", ACCOUNT)

    assert len(keycloak.calls_to("create_organization")) == 1
    assert keycloak.calls_to("update_organization") == []
    assert len(keycloak.organizations) == 1


def test_a_changed_account_updates_its_organization_in_place(client, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    changed = {**ACCOUNT, "name": "Acme Corp.", "contract": {"status": "suspended", "ends_at": None}}
    deliver(client, worker, "account.upserted", changed)

    assert len(keycloak.calls_to("update_organization")) == 1
    (org,) = keycloak.organizations.values()
    assert org["name"] == "Acme Corp." and org["attributes"]["contract_status"] == ["suspended"]
    assert org["attributes"]["crm_account_id"] == ["A-1"] and not org["attributes"].get("contract_ends_at")


def test_an_active_accounts_admin_contact_is_invited_once(client, keycloak, worker):
    admin = {"contact_id": "C-ADM", "email": "boss@acme.example", "first_name": "Bo"}
    deliver(client, worker, "account.upserted", {**ACCOUNT, "admin_contact": admin})
    deliver(client, worker, "account.upserted", {**ACCOUNT, "admin_contact": admin})

    assert sent_to(keycloak, "boss@acme.example") == ["org_invite"]
    assert invitation_row(worker.kb, "contact", "C-ADM").details["org_admin"] is True


def test_an_inactive_accounts_admin_contact_is_not_invited(client, keycloak, worker):
    admin = {"contact_id": "C-ADM", "email": "boss@acme.example"}
    deliver(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": "expired"}, "admin_contact": admin})
    assert keycloak.emails == []


# -- contacts -----------------------------------------------------------------------

def test_a_contact_invite_request_sends_one_invitation(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE)

    assert sent_to(keycloak, "jane.doe@acme.example") == ["org_invite"]
    (pending,) = keycloak.pending_invitations("jane.doe@acme.example")
    assert pending["organizationId"] == org_of(keycloak, "A-1")["id"]
    row = invitation_row(kb, "contact", "C-1")
    assert (row.status, row.sent_count, row.keycloak_invitation_id) == ("sent", 1, pending["id"])
    (sent,) = outbox_events(kb, "invitation.sent")
    expires_at = sent.data.pop("expires_at")  # the link's end, KEYBRIDGE_INVITE_EXPIRES_IN_DAYS (7) after sending
    assert sent.data == {"contact_id": "C-1", "email": "jane.doe@acme.example", "account_id": "A-1"}
    assert expires_at == outbox.iso(row.sent_at + timedelta(days=7))


def test_repeating_an_invite_request_while_it_is_pending_sends_nothing_new(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE, webhook_id="msg_first")
    deliver(client, worker, "contact.invite_requested", INVITE, webhook_id="msg_again")

    assert sent_to(keycloak, "jane.doe@acme.example") == ["org_invite"]
    assert len(keycloak.pending_invitations()) == 1
    assert len(outbox_events(kb, "invitation.sent")) == 1
    assert {j.status for j in all_jobs(kb)} == {"done"}


def test_an_invite_request_with_resend_sends_the_pending_invitation_again(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE)
    deliver(client, worker, "contact.invite_requested", {**INVITE, "resend": True})

    assert sent_to(keycloak, "jane.doe@acme.example") == ["org_invite", "org_invite_resend"]
    assert len(keycloak.pending_invitations()) == 1
    assert invitation_row(kb, "contact", "C-1").sent_count == 2
    assert len(outbox_events(kb, "invitation.sent")) == 2


def test_a_contact_of_an_account_without_organization_waits_for_account_upserted(client, kb, keycloak, worker):
    deliver(client, worker, "contact.invite_requested", INVITE)
    (job,) = all_jobs(kb)
    assert job.status == "queued" and "A-1" in job.last_error  # retried, not lost
    assert keycloak.emails == []

    deliver(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": "none"}})
    make_everything_due(kb)
    drain(worker)

    assert sent_to(keycloak, "jane.doe@acme.example") == ["org_invite"]
    assert {j.status for j in all_jobs(kb)} == {"done"}


def test_a_contact_who_already_has_an_identity_gets_a_join_invitation(client, keycloak, worker):
    user_id = keycloak.add_user("jane.doe@acme.example", "Jane", "Doe", password=True)
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE)

    assert sent_to(keycloak, "jane.doe@acme.example") == ["org_invite_existing"]
    assert keycloak.emails[0]["user_id"] == user_id


def test_a_contact_already_in_the_organization_gets_no_email_and_the_crm_hears_why(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    user_id = keycloak.add_user("jane.doe@acme.example", password=True)
    keycloak.members[org_of(keycloak, "A-1")["id"]].add(user_id)

    deliver(client, worker, "contact.invite_requested", INVITE)

    assert keycloak.emails == []
    assert keycloak.users[user_id]["attributes"]["crm_contact_id"] == ["C-1"]
    assert keycloak.user_roles[user_id] == {"buyer"}
    (skipped,) = outbox_events(kb, "invitation.skipped")
    assert skipped.data["reason"] == "already_member" and skipped.data["contact_id"] == "C-1"


# -- leads --------------------------------------------------------------------------

def test_a_lead_invite_creates_the_identity_with_the_lead_role_and_sends_one_email(client, kb, keycloak, worker):
    deliver(client, worker, "lead.invite_requested", LEAD)

    (user,) = keycloak.users.values()
    assert user["email"] == "lee@corp.example" and user["firstName"] == "Lee"
    assert user["attributes"]["crm_lead_id"] == ["L-1"]
    assert keycloak.user_roles[user["id"]] == {"lead"}
    (email,) = keycloak.emails
    assert (email["kind"], email["to"], email["actions"]) == ("actions", "lee@corp.example", ["UPDATE_PASSWORD"])
    assert email["lifespan"] == 7 * 86400
    (sent,) = outbox_events(kb, "invitation.sent")
    assert sent.data["lead_id"] == "L-1"


def test_repeating_a_lead_invite_sends_nothing_new(client, keycloak, worker):
    deliver(client, worker, "lead.invite_requested", LEAD)
    deliver(client, worker, "lead.invite_requested", LEAD)
    assert sent_to(keycloak, "lee@corp.example") == ["actions"]
    assert len(keycloak.users) == 1


def test_a_lead_at_a_public_webmail_domain_is_skipped_and_the_crm_told_why(client, kb, keycloak, worker):
    deliver(client, worker, "lead.invite_requested", {**LEAD, "email": "lee.park@gmail.com"})

    assert keycloak.emails == [] and keycloak.users == {}
    (skipped,) = outbox_events(kb, "invitation.skipped")
    assert skipped.data == {"lead_id": "L-1", "email": "lee.park@gmail.com", "account_id": None, "reason": "public_webmail_domain"}
    assert invitation_row(kb, "lead", "L-1").status == "skipped"
    assert {j.status for j in all_jobs(kb)} == {"done"}


def test_with_the_webmail_policy_allow_a_lead_at_gmail_is_invited(client, settings, keycloak):
    kb = Keybridge(replace(settings, lead_webmail_policy="allow"), keycloak=keycloak)
    worker = Worker(kb)
    deliver(client, worker, "lead.invite_requested", {**LEAD, "email": "lee.park@gmail.com"})

    assert sent_to(keycloak, "lee.park@gmail.com") == ["actions"]
    assert outbox_events(kb, "invitation.skipped") == []
    kb.db.dispose()


def test_a_lead_invite_uses_the_requested_redirect_and_lifetime(client, keycloak, worker):
    deliver(client, worker, "lead.invite_requested", {**LEAD, "redirect_uri": "https://portal.corp.example/welcome", "expires_in_days": 3})
    (email,) = keycloak.emails
    assert (email["client_id"], email["redirect_uri"], email["lifespan"]) == ("customer-portal", "https://portal.corp.example/welcome", 3 * 86400)


def test_a_lead_invite_with_resend_sends_the_email_again(client, kb, keycloak, worker):
    deliver(client, worker, "lead.invite_requested", LEAD)
    deliver(client, worker, "lead.invite_requested", {**LEAD, "resend": True})
    assert sent_to(keycloak, "lee@corp.example") == ["actions", "actions"]
    assert len(keycloak.users) == 1
    assert len(outbox_events(kb, "invitation.sent")) == 2


def test_a_lead_who_already_has_a_password_is_linked_but_not_emailed(client, kb, keycloak, worker):
    user_id = keycloak.add_user("lee@corp.example", password=True, verified=True)
    deliver(client, worker, "lead.invite_requested", LEAD)

    assert keycloak.emails == []
    assert keycloak.users[user_id]["attributes"]["crm_lead_id"] == ["L-1"]
    assert keycloak.user_roles[user_id] == {"lead"}
    (skipped,) = outbox_events(kb, "invitation.skipped")
    assert skipped.data["reason"] == "already_registered"


def test_a_contact_who_registered_is_not_invited_again(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE)
    (invitation,) = keycloak.pending_invitations()
    keycloak.register_invited_user(invitation["id"])
    drain(worker)

    deliver(client, worker, "contact.invite_requested", INVITE)

    assert sent_to(keycloak, "jane.doe@acme.example") == ["org_invite"]
    assert len(outbox_events(kb, "identity.registered")) == 1


def test_an_account_someone_made_with_a_leads_unverified_address_is_not_linked_to_the_lead(client, kb, keycloak, worker):
    """Attack: a stranger registered lee@corp.example (the realm does not verify addresses) before the lead was
    invited. The stranger's account must not become the lead (crm_lead_id, role lead, 'registered'), even
    when the stranger changes its password; the invitation link, sent to the address, still works."""
    stranger = keycloak.add_user("lee@corp.example", password=True)
    deliver(client, worker, "lead.invite_requested", LEAD)

    assert sent_to(keycloak, "lee@corp.example") == ["actions"]  # the link goes to the address's owner
    assert "crm_lead_id" not in keycloak.users[stranger]["attributes"] and keycloak.user_roles[stranger] == set()
    assert outbox_events(kb, "invitation.skipped") == []

    keycloak.change_password(stranger)  # the stranger, in the account console
    drain(worker)
    assert "crm_lead_id" not in keycloak.users[stranger]["attributes"] and keycloak.user_roles[stranger] == set()
    assert outbox_events(kb, "identity.registered") == [] and invitation_row(kb, "lead", "L-1").status == "sent"

    keycloak.choose_password(stranger)  # the address's owner follows the link: the address is verified now
    drain(worker)
    assert keycloak.users[stranger]["attributes"]["crm_lead_id"] == ["L-1"] and keycloak.user_roles[stranger] == {"lead"}
    assert [e.data["lead_id"] for e in outbox_events(kb, "identity.registered")] == ["L-1"]
