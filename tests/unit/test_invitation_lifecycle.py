"""The invitation lifecycle as the CRM and an operator see it: revoke, expiry, the one reminder,
resend, and the list with each invitation's state. Keycloak is faked at its boundary; time is
moved with the Keybridge clock (kb.clock), never slept."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner

from adapter import cli
from adapter.db import utcnow
from adapter.handlers import invitation_expiry
from adapter.handlers import invitation_lifecycle as lifecycle
from adapter.models import AccessRevocation
from adapter.worker import Worker
from tests.unit.fakes import all_jobs, deliver, drain, invitation_row, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": {"status": "active"}}
JANE = {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "first_name": "Jane", "roles": ["Buyer"]}
LEE = {"lead_id": "L-1", "email": "lee@corp.example", "first_name": "Lee", "company": "Corp"}
OP = {"Authorization": "Bearer op-token"}


class Clock:
    """The Keybridge clock, moved by the test."""

    def __init__(self):
        self.offset = timedelta()

    def __call__(self):
        return utcnow() + self.offset

    def move(self, **delta):
        self.offset += timedelta(**delta)


@pytest.fixture
def clock(kb):
    kb.clock = Clock()
    return kb.clock


@pytest.fixture
def invited(client, kb, worker, clock):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", {**JANE, "expires_in_days": 7})
    return invitation_row(kb, "contact", "C-1")


def mails(keycloak, email):
    return [m["kind"] for m in keycloak.emails_to(email)]


# -- revoke ------------------------------------------------------------------------------

def test_revoking_a_contact_invitation_deletes_it_in_keycloak_and_tells_the_crm_once(client, kb, keycloak, worker, invited):
    assert keycloak.pending_invitations("jane@acme.example")

    deliver(client, worker, "contact.invite_revoked", {"contact_id": "C-1", "account_id": "A-1"})
    deliver(client, worker, "contact.invite_revoked", {"contact_id": "C-1"})  # again: changes nothing

    assert keycloak.pending_invitations("jane@acme.example") == []
    row = invitation_row(kb, "contact", "C-1")
    assert row.status == "revoked" and row.ended_at is not None
    (revoked,) = outbox_events(kb, "invitation.revoked")
    assert revoked.data == {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "reason": "revoked"}
    assert lifecycle.revoke_invitation(kb, "contact", "C-1", "test") == "already_revoked"


def test_revoking_after_acceptance_says_so_and_changes_nothing(client, kb, keycloak, worker, invited):
    user_id, _ = keycloak.register_invited_user(invited.keycloak_invitation_id)
    drain(worker)
    assert invitation_row(kb, "contact", "C-1").status == "accepted"

    assert lifecycle.revoke_invitation(kb, "contact", "C-1", "test") == "already_accepted"
    r = client.post("/api/invitations/contact/C-1/revoke", headers=OP)
    assert r.status_code == 409 and "already accepted" in r.json["message"]
    assert outbox_events(kb, "invitation.revoked") == []
    assert keycloak.is_member(invited.organization_id, user_id)


def test_a_link_used_after_its_invitation_was_revoked_lets_nobody_in(client, kb, keycloak, worker, invited):
    # Keycloak accepted the link in the moment before the invitation was deleted: the registration
    # arrives after the revoke; the person is removed again and the CRM hears no acceptance.
    invitation_id = invited.keycloak_invitation_id
    invitation = dict(keycloak.invitations[invitation_id])
    deliver(client, worker, "contact.invite_revoked", {"contact_id": "C-1"})
    keycloak.invitations[invitation_id] = invitation
    user_id, _ = keycloak.register_invited_user(invitation_id)
    keycloak.members[invited.organization_id].add(user_id)  # Keycloak makes the registered invitee a member
    drain(worker)

    assert not keycloak.is_member(invited.organization_id, user_id)
    assert invitation_row(kb, "contact", "C-1").status == "revoked"
    assert outbox_events(kb, "invitation.accepted") == [] and outbox_events(kb, "identity.registered") == []


def test_revoking_a_lead_ends_its_link_and_a_new_invitation_opens_it_again(client, kb, keycloak, worker, clock):
    deliver(client, worker, "lead.invite_requested", LEE)
    user_id = invitation_row(kb, "lead", "L-1").keycloak_user_id

    deliver(client, worker, "lead.invite_revoked", {"lead_id": "L-1"})
    assert keycloak.users[user_id]["enabled"] is False  # Keycloak refuses a disabled user's action token
    assert invitation_row(kb, "lead", "L-1").status == "revoked"
    assert len(outbox_events(kb, "invitation.revoked")) == 1
    assert outbox_events(kb, "identity.access_changed") == []  # a lead that never got in lost no access

    deliver(client, worker, "lead.invite_requested", {**LEE, "resend": True})
    assert keycloak.users[user_id]["enabled"] is True
    assert invitation_row(kb, "lead", "L-1").status == "sent"
    assert mails(keycloak, "lee@corp.example") == ["actions", "actions"]
    with kb.db.session() as session:
        assert session.get(AccessRevocation, (user_id, "invitation_ended")) is None


def test_a_lead_identity_an_administrator_disabled_is_not_enabled_by_a_new_invitation(client, kb, keycloak, worker, clock):
    deliver(client, worker, "lead.invite_requested", LEE)
    user_id = invitation_row(kb, "lead", "L-1").keycloak_user_id
    keycloak.users[user_id]["enabled"] = False  # an administrator did it before the revoke
    deliver(client, worker, "lead.invite_revoked", {"lead_id": "L-1"})
    deliver(client, worker, "lead.invite_requested", {**LEE, "resend": True})
    assert keycloak.users[user_id]["enabled"] is False


def test_a_lead_who_chose_a_password_is_not_disabled_by_a_revoke(client, kb, keycloak, worker, clock):
    user_id = keycloak.add_user("lee@corp.example", password=True)  # someone's account, address not verified
    deliver(client, worker, "lead.invite_requested", LEE)
    deliver(client, worker, "lead.invite_revoked", {"lead_id": "L-1"})
    assert keycloak.users[user_id]["enabled"] is True
    assert invitation_row(kb, "lead", "L-1").status == "revoked"


def test_a_lead_registration_read_while_its_revocation_waits_in_the_queue_is_settled_after_it(client, kb, keycloak, worker, clock):
    """A worker thread reads the lead's new password (under the person's key) while the revocation is queued under the
    lead's: the registration waits for it, so the CRM hears the revocation and not a registration as well."""
    from adapter.handlers import registrations
    from tests.conftest import envelope, signed_post

    deliver(client, worker, "lead.invite_requested", LEE)
    user_id = invitation_row(kb, "lead", "L-1").keycloak_user_id
    event = keycloak.choose_password(user_id)
    keycloak.events.remove(event)
    assert signed_post(client, envelope("lead.invite_revoked", {"lead_id": "L-1"})).status_code == 202  # not run yet

    assert registrations.handle_keycloak_event(kb, event) == "registration_queued"  # another thread, at that moment
    assert outbox_events(kb, "identity.registered") == []
    drain(worker)
    assert invitation_row(kb, "lead", "L-1").status == "revoked"
    assert outbox_events(kb, "identity.registered") == [] and len(outbox_events(kb, "invitation.revoked")) == 1
    (settled,) = all_jobs(kb, "lead_registration")
    assert settled.ordering_key == "lead:L-1" and settled.status == "done"


def test_a_lead_registration_is_settled_in_the_leads_order(client, kb, keycloak, worker, clock):
    deliver(client, worker, "lead.invite_requested", LEE)
    user_id = invitation_row(kb, "lead", "L-1").keycloak_user_id
    keycloak.choose_password(user_id)
    drain(worker)
    assert invitation_row(kb, "lead", "L-1").status == "accepted"
    assert [e.data["lead_id"] for e in outbox_events(kb, "identity.registered")] == ["L-1"]


# -- expiry ------------------------------------------------------------------------------

def test_an_invitation_expires_when_the_crm_said_and_its_link_ends(client, kb, keycloak, worker, invited, clock):
    assert invited.expires_at - invited.sent_at == timedelta(days=7)
    clock.move(days=6, hours=23)
    drain(worker)
    assert invitation_row(kb, "contact", "C-1").status == "sent"

    clock.move(hours=1, seconds=1)
    drain(worker)
    drain(worker)

    row = invitation_row(kb, "contact", "C-1")
    assert row.status == "expired" and keycloak.pending_invitations("jane@acme.example") == []
    (expired,) = outbox_events(kb, "invitation.expired")
    assert expired.data["contact_id"] == "C-1" and expired.data["expired_at"].startswith(row.expires_at.isoformat()[:19])
    assert lifecycle.revoke_invitation(kb, "contact", "C-1", "test") == "already_expired"


def test_without_expires_in_days_the_default_lifetime_applies_to_contacts_too(client, kb, keycloak, worker, clock):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", JANE)
    row = invitation_row(kb, "contact", "C-1")
    assert row.expires_at - row.sent_at == timedelta(days=kb.settings.invite_expires_in_days)


def test_a_lead_invitation_expires_too(client, kb, keycloak, worker, clock):
    deliver(client, worker, "lead.invite_requested", {**LEE, "expires_in_days": 2})
    (mail,) = keycloak.emails_to("lee@corp.example")
    assert mail["lifespan"] == 2 * 86400
    clock.move(days=2, seconds=1)
    drain(worker)
    row = invitation_row(kb, "lead", "L-1")
    assert row.status == "expired" and keycloak.users[row.keycloak_user_id]["enabled"] is False
    assert len(outbox_events(kb, "invitation.expired")) == 1


def test_an_invitation_sent_again_after_it_expired_is_pending_with_a_new_expiry(client, kb, keycloak, worker, invited, clock):
    clock.move(days=8)
    drain(worker)
    deliver(client, worker, "contact.invite_requested", {**JANE, "expires_in_days": 3})
    row = invitation_row(kb, "contact", "C-1")
    assert row.status == "sent" and row.expires_at > clock() + timedelta(days=2, hours=23)
    assert keycloak.pending_invitations("jane@acme.example")


# -- the one reminder ---------------------------------------------------------------------

def test_one_reminder_before_expiry_even_when_the_scheduler_runs_twice(client, kb, keycloak, worker, invited, clock):
    clock.move(days=5, seconds=1)  # the reminder is due 2 days (KEYBRIDGE_INVITE_REMINDER_DAYS_BEFORE) before
    other = Worker(kb)
    assert worker.schedule() + other.schedule() == 1  # two workers decide: one reminder
    drain(worker)
    drain(other)
    clock.move(hours=12)
    drain(worker)

    assert mails(keycloak, "jane@acme.example") == ["org_invite", "org_invite_resend"]
    (reminded,) = outbox_events(kb, "invitation.reminded")
    assert reminded.data["contact_id"] == "C-1" and reminded.data["expires_at"]
    assert invitation_row(kb, "contact", "C-1").status == "sent"


def test_concurrent_schedulers_decide_one_reminder(client, kb, keycloak, worker, invited, clock):
    clock.move(days=5, seconds=1)
    counts, barrier = [], threading.Barrier(4)

    def decide():
        barrier.wait()
        counts.append(invitation_expiry.schedule_due(kb))

    threads = [threading.Thread(target=decide) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 1 and len(all_jobs(kb, "invitation_reminder")) == 1


def test_no_reminder_for_an_invitation_shorter_lived_than_the_reminder_lead(client, kb, keycloak, worker, clock):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", {**JANE, "expires_in_days": 1})
    clock.move(hours=23)
    drain(worker)
    assert mails(keycloak, "jane@acme.example") == ["org_invite"]


def test_a_lead_reminder_is_a_link_that_lives_until_the_expiry(client, kb, keycloak, worker, clock):
    deliver(client, worker, "lead.invite_requested", {**LEE, "expires_in_days": 7})
    clock.move(days=6)
    drain(worker)
    first, reminder = keycloak.emails_to("lee@corp.example")
    assert reminder["kind"] == "actions" and 86400 - 120 <= reminder["lifespan"] <= 86400
    assert len(outbox_events(kb, "invitation.reminded")) == 1


def test_a_resend_starts_a_new_period_with_one_reminder_and_a_repeat_changes_nothing(client, kb, keycloak, worker, invited, clock):
    clock.move(days=5, seconds=1)
    drain(worker)
    reminded = invitation_row(kb, "contact", "C-1")
    assert reminded.reminded_at is not None

    deliver(client, worker, "contact.invite_requested", {**JANE, "expires_in_days": 7})  # a repeat: nothing sent, nothing reset
    assert invitation_row(kb, "contact", "C-1").reminded_at == reminded.reminded_at
    assert invitation_row(kb, "contact", "C-1").expires_at == reminded.expires_at

    deliver(client, worker, "contact.invite_requested", {**JANE, "expires_in_days": 7, "resend": True})
    row = invitation_row(kb, "contact", "C-1")
    assert row.reminded_at is None and row.expires_at > reminded.expires_at and row.sent_count == 2
    drain(worker)
    assert mails(keycloak, "jane@acme.example") == ["org_invite", "org_invite_resend", "org_invite_resend"]  # no reminder right away

    clock.move(days=5, seconds=1)
    drain(worker)
    assert len(outbox_events(kb, "invitation.reminded")) == 2  # one per period


def test_a_revoked_invitation_gets_no_reminder(client, kb, keycloak, worker, invited, clock):
    deliver(client, worker, "contact.invite_revoked", {"contact_id": "C-1"})
    clock.move(days=5, seconds=1)
    drain(worker)
    clock.move(days=3)
    drain(worker)
    assert mails(keycloak, "jane@acme.example") == ["org_invite"]
    assert outbox_events(kb, "invitation.reminded") == [] and outbox_events(kb, "invitation.expired") == []


# -- resend, list, API and CLI ------------------------------------------------------------

def test_resend_invitation_sends_the_stored_invitation_again(client, kb, keycloak, worker, invited, clock):
    assert lifecycle.resend_invitation(kb, "contact", "C-1", "org admin") == "sent"
    assert mails(keycloak, "jane@acme.example") == ["org_invite", "org_invite_resend"]
    assert lifecycle.resend_invitation(kb, "contact", "C-404", "org admin") == "not_invited"


def test_the_list_per_account_and_per_batch_shows_each_state(client, kb, keycloak, worker, clock):
    deliver(client, worker, "account.upserted", ACCOUNT)
    items = [{"kind": "contact", "contact_id": f"C-{i}", "email": f"p{i}@acme.example", "account_id": "A-1"} for i in range(1, 5)]
    items.append({"kind": "lead", "lead_id": "L-9", "email": "l9@gmail.com"})  # webmail: skipped
    deliver(client, worker, "invitations.batch_requested", {"batch_id": "B-1", "items": items})
    deliver(client, worker, "contact.invite_revoked", {"contact_id": "C-2"})
    keycloak.register_invited_user(invitation_row(kb, "contact", "C-3").keycloak_invitation_id)
    drain(worker)
    deliver(client, worker, "contact.invite_requested", {"contact_id": "C-4", "email": "p4@acme.example", "account_id": "A-1",
                                                         "expires_in_days": 1, "resend": True})
    clock.move(days=1, seconds=1)
    drain(worker)

    by_batch = lifecycle.list_invitations(kb, batch_id="B-1")
    assert [(r["id"], r["state"]) for r in by_batch["invitations"]] == [
        ("C-1", "pending"), ("C-2", "revoked"), ("C-3", "accepted"), ("C-4", "expired"), ("L-9", "skipped")]
    assert by_batch["counts"] == {"pending": 1, "revoked": 1, "accepted": 1, "expired": 1, "skipped": 1}
    by_account = client.get("/api/invitations?account_id=A-1&state=pending", headers=OP)
    assert by_account.status_code == 200
    assert [r["id"] for r in by_account.json["invitations"]] == ["C-1"] and by_account.json["counts"]["revoked"] == 1

    out = CliRunner().invoke(cli.main, ["invitations", "list", "--batch", "B-1"], env={"KEYBRIDGE_DATABASE_URL": kb.settings.database_url})
    assert out.exit_code == 0, out.output
    assert "C-2" in out.output and "revoked" in out.output and "1 expired" in out.output


def test_the_api_asks_and_the_worker_revokes_in_the_records_order(client, kb, keycloak, worker, invited, clock):
    r = client.post("/api/invitations/contact/C-1/revoke", headers=OP)
    assert r.status_code == 202 and r.json["status"] == "queued"
    assert client.post("/api/invitations/contact/C-1/revoke", headers=OP).status_code == 202  # asked twice: queued once
    drain(worker)
    assert invitation_row(kb, "contact", "C-1").status == "revoked" and keycloak.pending_invitations("jane@acme.example") == []
    again = client.post("/api/invitations/contact/C-1/revoke", headers=OP)
    assert again.status_code == 200 and again.json["status"] == "already_revoked"
    assert len(outbox_events(kb, "invitation.revoked")) == 1
    assert client.get("/api/invitations/contact/C-1", headers=OP).json["state"] == "revoked"

    assert client.post("/api/invitations/contact/C-1/resend", headers=OP).status_code == 202
    drain(worker)
    assert invitation_row(kb, "contact", "C-1").status == "sent" and keycloak.pending_invitations("jane@acme.example")


def test_the_api_names_what_is_wrong(client, kb, worker, invited):
    assert client.post("/api/invitations/contact/C-404/revoke", headers=OP).status_code == 404
    r = client.post("/api/invitations/person/C-1/revoke", headers=OP)
    assert r.status_code == 404 and "kind" in r.json["errors"]
    r = client.get("/api/invitations", headers=OP)
    assert r.status_code == 400 and set(r.json["errors"]) == {"account_id", "batch_id"}
    r = client.get("/api/invitations?account_id=A-1&state=lost", headers=OP)
    assert r.status_code == 400 and "state" in r.json["errors"]


def test_the_cli_revokes_and_says_when_it_was_already_accepted(client, kb, keycloak, worker, invited):
    env = {"KEYBRIDGE_DATABASE_URL": kb.settings.database_url}
    keycloak.register_invited_user(invited.keycloak_invitation_id)
    drain(worker)
    out = CliRunner().invoke(cli.main, ["invitations", "revoke", "contact", "C-1"], env=env)
    assert out.exit_code == 3 and "already accepted" in out.output


def test_an_organization_invitation_as_keycloak_lists_it_is_revoked_and_resent(client, kb, keycloak, worker, invited, clock):
    # A CRM contact's: through the record (the CRM hears it); one Keybridge did not send: in Keycloak only.
    org_id = invited.organization_id
    assert lifecycle.resend_organization_invitation(kb, org_id, invited.keycloak_invitation_id, "org admin") == "sent"
    assert invitation_row(kb, "contact", "C-1").sent_count == 2
    pending = keycloak.pending_invitations("jane@acme.example")[0]
    assert lifecycle.revoke_organization_invitation(kb, org_id, pending["id"], "org admin") == "revoked"
    assert invitation_row(kb, "contact", "C-1").status == "revoked" and len(outbox_events(kb, "invitation.revoked")) == 1

    keycloak.invite_new_member(org_id, "guest@acme.example", "Gue", "St")
    (guest,) = keycloak.pending_invitations("guest@acme.example")
    assert lifecycle.revoke_organization_invitation(kb, org_id, guest["id"], "org admin", "guest@acme.example") == "revoked"
    assert keycloak.pending_invitations("guest@acme.example") == []
    assert lifecycle.revoke_organization_invitation(kb, org_id, guest["id"], "org admin") == "already_gone"
    assert len(outbox_events(kb, "invitation.revoked")) == 1


def test_events_take_effect_in_crm_time_order_whatever_order_they_arrive_in(client, kb, keycloak, worker, clock):
    from tests.conftest import signed_post

    def post(event_type, data, at):
        assert signed_post(client, {"type": event_type, "timestamp": at, "data": data}).status_code == 202
        drain(worker)

    deliver(client, worker, "account.upserted", ACCOUNT)
    post("contact.invite_requested", JANE, "2026-11-22T10:00:00Z")
    post("contact.invite_revoked", {"contact_id": "C-1"}, "2026-11-22T12:00:00Z")
    post("contact.invite_requested", {**JANE, "resend": True}, "2026-11-22T11:00:00Z")  # older than the revoke: stale
    assert invitation_row(kb, "contact", "C-1").status == "revoked"
    assert keycloak.pending_invitations("jane@acme.example") == [] and mails(keycloak, "jane@acme.example") == ["org_invite"]

    post("contact.invite_revoked", {"contact_id": "C-1"}, "2026-11-22T09:00:00Z")  # older than everything: changes nothing
    post("contact.invite_requested", JANE, "2026-11-22T13:00:00Z")  # newer: invited again
    assert invitation_row(kb, "contact", "C-1").status == "sent" and len(keycloak.pending_invitations("jane@acme.example")) == 1
    post("contact.invite_revoked", {"contact_id": "C-1"}, "2026-11-22T12:30:00Z")  # arrives late, older than the invite: stale
    assert invitation_row(kb, "contact", "C-1").status == "sent" and len(outbox_events(kb, "invitation.revoked")) == 1


def test_a_link_used_after_its_expiry_but_before_the_expiry_ran_lets_nobody_in(client, kb, keycloak, worker, invited):
    from sqlalchemy import update

    from adapter.models import Invitation

    with kb.db.session() as session:  # the expiry passed a minute ago; the scheduler has not run since
        session.execute(update(Invitation).where(Invitation.id == invited.id).values(expires_at=utcnow() - timedelta(minutes=1)))
    user_id, _ = keycloak.register_invited_user(invited.keycloak_invitation_id)
    keycloak.members[invited.organization_id].add(user_id)
    drain(worker)

    assert not keycloak.is_member(invited.organization_id, user_id)
    assert invitation_row(kb, "contact", "C-1").status == "expired"
    assert outbox_events(kb, "invitation.accepted") == [] and len(outbox_events(kb, "invitation.expired")) == 1
