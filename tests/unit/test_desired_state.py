"""The CRM's state wins: per record the newest state, and Keycloak converges to it whatever the order.

The four sequences of issue 8 at unit level (the real handlers, queue and worker; Keycloak
faked at its boundary), plus what an administrator's enable/disable does and the sweep.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from adapter.models import AuditEntry, Cursor, CrmRecord
from tests.conftest import signed_post
from tests.unit.fakes import FakeKeycloak, drain, invitation_row, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme Corporation", "domains": ["acme.example"], "contract": {"status": "active"}}
INVITE = {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "first_name": "Jane", "last_name": "Doe",
          "roles": ["Buyer"]}
LEFT = {"contact_id": "C-1", "email": "jane@acme.example", "status": "left"}
CONSOLE_ADMIN = "user-master-admin"


def post_at(client, event_type: str, data: dict, timestamp: str, webhook_id: str | None = None):
    r = signed_post(client, {"type": event_type, "timestamp": timestamp, "data": data}, webhook_id=webhook_id)
    assert r.status_code in (200, 202), r.json
    return r


def deliver_at(client, worker, event_type, data, timestamp):
    post_at(client, event_type, data, timestamp)
    drain(worker)


def org_of(keycloak, account_id="A-1") -> dict:
    (org,) = [o for o in keycloak.organizations.values() if o["attributes"].get("crm_account_id") == [account_id]]
    return org


def add_member(keycloak, contact_id: str, enabled: bool = True) -> str:
    user_id = keycloak.add_user(f"{contact_id.lower()}@acme.example", password=True, crm_contact_id=[contact_id])
    keycloak.users[user_id]["enabled"] = enabled
    keycloak.members[org_of(keycloak)["id"]].add(user_id)
    return user_id


def audit(kb, action: str) -> list[AuditEntry]:
    with kb.db.session() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def has_access(keycloak, user_id: str) -> bool:
    """Could this person use the application: a member of the organization whom Keycloak (with keybridge's
    extension: enabled, not left, a contract that is active) lets log in."""
    return user_id in keycloak.members[org_of(keycloak)["id"]] and keycloak.can_log_in(user_id)


@pytest.fixture
def acme(client, worker):
    deliver_at(client, worker, "account.upserted", ACCOUNT, "2026-11-22T09:00:00Z")


# -- 1. the registration completes after the CRM said `left` --------------------------------

def test_a_registration_read_after_the_contact_left_ends_with_no_access(client, kb, keycloak, worker, acme):
    deliver_at(client, worker, "contact.invite_requested", INVITE, "2026-11-22T10:00:00Z")
    (invitation,) = keycloak.pending_invitations()
    user_id, _ = keycloak.register_invited_user(invitation["id"])  # in the log, not read yet
    post_at(client, "contact.upserted", LEFT, "2026-11-22T10:05:00Z")  # its job is older than the event's
    drain(worker)

    assert not has_access(keycloak, user_id)
    user = keycloak.users[user_id]
    assert user["enabled"] is False and user["attributes"]["crm_status"] == ["left"]
    assert user["attributes"]["crm_contact_id"] == ["C-1"]
    assert not keycloak.user_roles[user_id] & {"buyer"}, "no business role was handed out"
    assert outbox_events(kb, "identity.registered") == []
    assert [e.details["reason"] for e in audit(kb, "registration.refused")] == ["contact_left"]
    assert invitation_row(kb, "contact", "C-1").status == "refused"


def test_a_registration_read_while_left_waits_in_the_queue_is_settled_after_it(client, kb, keycloak, worker, acme):
    """A worker thread reads the registration (under the person's key) while `left` is queued under the contact's:
    the registration waits for the contact's events, so `left` is taken first and the CRM hears no registration."""
    from adapter.handlers import registrations

    deliver_at(client, worker, "contact.invite_requested", INVITE, "2026-11-22T10:00:00Z")
    (invitation,) = keycloak.pending_invitations()
    user_id, event = keycloak.register_invited_user(invitation["id"])
    keycloak.events.remove(event)
    post_at(client, "contact.upserted", LEFT, "2026-11-22T10:05:00Z")  # accepted, its job not run yet

    outcome = registrations.handle_keycloak_event(kb, event)  # another thread, at the same moment

    assert outcome == "registration_queued"
    assert outbox_events(kb, "identity.registered") == [] and invitation_row(kb, "contact", "C-1").status != "accepted"
    drain(worker)
    assert not has_access(keycloak, user_id) and keycloak.users[user_id]["enabled"] is False
    assert outbox_events(kb, "identity.registered") == []
    assert [e.details["reason"] for e in audit(kb, "registration.refused")] == ["contact_left"]


def test_a_registration_that_keycloak_already_made_a_member_is_cut_off_when_left_arrives(client, kb, keycloak, worker, acme):
    """The registration happened (Keycloak made the person a member) but is not read yet: `left` finds them anyway."""
    deliver_at(client, worker, "contact.invite_requested", INVITE, "2026-11-22T10:00:00Z")
    (invitation,) = keycloak.pending_invitations()
    user_id, event = keycloak.register_invited_user(invitation["id"])
    keycloak.members[org_of(keycloak)["id"]].add(user_id)
    keycloak.events.remove(event)  # the worker has not read it yet
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T10:05:00Z")
    assert not has_access(keycloak, user_id)
    keycloak.events.append(event)  # read later: nothing is given back
    drain(worker)
    assert not has_access(keycloak, user_id) and keycloak.users[user_id]["enabled"] is False


# -- 2. invited, then left before accepting --------------------------------------------------

def test_left_before_accepting_withdraws_the_invitation_in_keycloak(client, kb, keycloak, worker, acme):
    deliver_at(client, worker, "contact.invite_requested", INVITE, "2026-11-22T10:00:00Z")
    assert len(keycloak.pending_invitations("jane@acme.example")) == 1
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T10:05:00Z")

    assert keycloak.pending_invitations("jane@acme.example") == [], "the link no longer lets anyone in"
    assert [e.data for e in outbox_events(kb, "invitation.revoked")] == [
        {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "reason": "contact_left"}]
    assert invitation_row(kb, "contact", "C-1").status == "revoked"
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T10:06:00Z")  # again: nothing new
    assert len(outbox_events(kb, "invitation.revoked")) == 1


def test_an_invitation_older_than_left_is_refused_and_a_newer_one_is_sent(client, kb, keycloak, worker, acme):
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T10:05:00Z")
    deliver_at(client, worker, "contact.invite_requested", INVITE, "2026-11-22T10:00:00Z")  # a delayed retry
    assert keycloak.pending_invitations() == []
    assert [e.data["reason"] for e in outbox_events(kb, "invitation.skipped")] == ["contact_left"]

    deliver_at(client, worker, "contact.invite_requested", INVITE, "2026-11-23T08:00:00Z")  # rehired
    assert len(keycloak.pending_invitations("jane@acme.example")) == 1
    with kb.db.session() as session:
        assert session.get(CrmRecord, ("contact", "C-1")).state["status"] == "active"


def test_left_ends_an_unused_lead_link_to_the_same_address(client, kb, keycloak, worker, acme):
    deliver_at(client, worker, "lead.invite_requested", {"lead_id": "L-1", "email": "jane@acme.example"}, "2026-11-22T09:30:00Z")
    lead_user = invitation_row(kb, "lead", "L-1").keycloak_user_id
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T10:05:00Z")
    assert keycloak.users[lead_user]["enabled"] is False, "Keycloak refuses the action token of a disabled user"
    assert invitation_row(kb, "lead", "L-1").status == "revoked"
    assert [e.data.get("lead_id") for e in outbox_events(kb, "invitation.revoked")] == ["L-1"]


# -- 3. a delayed older account state --------------------------------------------------------

def test_an_older_account_state_arriving_late_changes_nothing(client, kb, keycloak, worker, acme):
    ann, bob = add_member(keycloak, "C-ANN"), add_member(keycloak, "C-BOB")
    suspended = {**ACCOUNT, "contract": {"status": "suspended"}}
    deliver_at(client, worker, "account.upserted", suspended, "2026-11-22T12:00:00Z")
    assert not has_access(keycloak, ann) and not has_access(keycloak, bob)
    calls = len(keycloak.calls)

    deliver_at(client, worker, "account.upserted", {**ACCOUNT, "name": "Acme Old"}, "2026-11-22T11:00:00Z")

    assert not has_access(keycloak, ann) and not has_access(keycloak, bob)
    assert org_of(keycloak)["attributes"]["contract_status"] == ["suspended"] and org_of(keycloak)["name"] == "Acme Corporation"
    assert [n for n, *_ in keycloak.calls[calls:] if n not in ("user_events", "admin_events")] == [], "not one Keycloak call"
    (stale,) = audit(kb, "state.stale")
    assert (stale.subject, stale.details["event_time"], stale.details["newest_time"]) == (
        "account:A-1", "2026-11-22T11:00:00Z", "2026-11-22T12:00:00Z")


def test_a_stale_contact_state_does_not_bring_a_leaver_back(client, kb, keycloak, worker, acme):
    jane = add_member(keycloak, "C-1")
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T12:00:00Z")
    deliver_at(client, worker, "contact.upserted", {**LEFT, "status": "active", "account_id": "A-1"}, "2026-11-22T11:00:00Z")
    assert not has_access(keycloak, jane)
    assert keycloak.users[jane]["attributes"]["crm_status"] == ["left"]
    assert len(audit(kb, "state.stale")) == 1


def test_the_same_timestamp_again_is_applied_and_changes_nothing_more(client, kb, keycloak, worker, acme):
    jane = add_member(keycloak, "C-1")
    data = {**LEFT, "status": "active", "account_id": "A-1", "first_name": "Jane"}
    deliver_at(client, worker, "contact.upserted", data, "2026-11-22T12:00:00Z")
    calls = len(keycloak.calls_to("update_user"))
    deliver_at(client, worker, "contact.upserted", data, "2026-11-22T12:00:00Z")  # the CRM sends it again
    assert len(keycloak.calls_to("update_user")) == calls and audit(kb, "state.stale") == []
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T12:00:00Z")  # same second, received later: newer
    assert not has_access(keycloak, jane)


# -- 4. an administrator's disable survives a renewal -----------------------------------------

def admin_sets_enabled(keycloak, user_id: str, enabled: bool, actor: str = CONSOLE_ADMIN) -> None:
    """An administrator flips the user's Enabled switch in Keycloak's console."""
    keycloak.users[user_id]["enabled"] = enabled
    keycloak.add_admin_event("UPDATE", "USER", f"users/{user_id}", actor, {**keycloak.users[user_id], "enabled": enabled})


def test_a_renewal_does_not_undo_an_administrators_disable_and_the_audit_says_why(client, kb, keycloak, worker, acme):
    ann, bob = add_member(keycloak, "C-ANN"), add_member(keycloak, "C-BOB")
    deliver_at(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": "suspended"}}, "2026-11-22T12:00:00Z")
    admin_sets_enabled(keycloak, bob, False)
    drain(worker)
    deliver_at(client, worker, "account.upserted", ACCOUNT, "2026-11-22T13:00:00Z")

    assert has_access(keycloak, ann) and not has_access(keycloak, bob)
    assert keycloak.users[bob]["enabled"] is False
    assert [a for a, _ in keycloak.calls_to("set_enabled")] == [], "a contract never touches the flag: nothing to undo"
    (disabled,) = audit(kb, "access.admin_disabled")
    assert disabled.details["by"] == f"keycloak-admin:{CONSOLE_ADMIN}"
    assert {"user_id": bob, "contact_id": "C-BOB", "enabled": False, "reason": "admin"} in [
        e.data for e in outbox_events(kb, "identity.access_changed")]
    deliver_at(client, worker, "account.upserted", ACCOUNT, "2026-11-22T14:00:00Z")  # and again
    assert keycloak.users[bob]["enabled"] is False


def test_an_administrators_enable_does_not_override_the_contract_and_the_sweep_changes_nothing(client, kb, keycloak, worker, settings, acme):
    """The contract is the organization's: Keycloak's extension refuses its members whatever their flag."""
    ann = add_member(keycloak, "C-ANN")
    deliver_at(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": "suspended"}}, "2026-11-22T12:00:00Z")
    admin_sets_enabled(keycloak, ann, True)
    drain(worker)
    calls = len(keycloak.calls_to("set_enabled"))
    sweep_now(kb, settings)
    drain(worker)
    assert keycloak.users[ann]["enabled"] is True and len(keycloak.calls_to("set_enabled")) == calls
    assert not has_access(keycloak, ann)

    deliver_at(client, worker, "account.upserted", ACCOUNT, "2026-11-22T15:00:00Z")
    assert has_access(keycloak, ann)


def test_the_adapters_own_enable_and_disable_are_not_taken_for_an_administrators(client, kb, keycloak, worker, acme):
    ann = add_member(keycloak, "C-ANN")
    deliver_at(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": "suspended"}}, "2026-11-22T12:00:00Z")
    keycloak.add_admin_event("UPDATE", "USER", f"users/{ann}", FakeKeycloak.SERVICE_ACCOUNT_ID, {"enabled": False})
    drain(worker)
    deliver_at(client, worker, "account.upserted", ACCOUNT, "2026-11-22T13:00:00Z")
    assert keycloak.users[ann]["enabled"] is True
    assert audit(kb, "access.kept_disabled") == []


# -- convergence: the sweep, and what is not Keybridge's ----------------------------------------

def sweep_now(kb, settings) -> None:
    """The sweep interval passed."""
    settings.converge_sweep_seconds = 60
    with kb.db.session() as session:
        cursor = session.get(Cursor, "converge_sweep")
        cursor.position = {"last": 0}


def test_the_sweep_takes_access_from_a_leaver_someone_enabled_behind_keybridges_back(client, kb, keycloak, worker, settings, acme):
    jane = add_member(keycloak, "C-1")
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T12:00:00Z")
    keycloak.users[jane]["enabled"] = True  # e.g. a restore from backup: no admin event
    keycloak.members[org_of(keycloak)["id"]].add(jane)
    sweep_now(kb, settings)
    drain(worker)
    assert keycloak.users[jane]["enabled"] is False
    assert jane not in keycloak.members[org_of(keycloak)["id"]]


def test_nothing_the_crm_did_not_ask_for_is_changed(client, kb, keycloak, worker, settings, acme):
    jane = add_member(keycloak, "C-1")
    keycloak.user_roles[jane] = {"buyer", "org_admin", "lead", "offline_access"}
    stranger = keycloak.add_user("someone@elsewhere.example", password=True)  # not Keybridge's
    keycloak.user_roles[stranger] = {"buyer"}
    deliver_at(client, worker, "contact.upserted", {"contact_id": "C-1", "email": "c-1@acme.example", "account_id": "A-1",
                                                    "roles": ["Technical Contact"]}, "2026-11-22T12:00:00Z")
    assert keycloak.user_roles[jane] == {"technical_contact", "org_admin", "lead", "offline_access"}
    admin_sets_enabled(keycloak, stranger, False)
    before = len([c for c in keycloak.calls if c[0] in ("update_user", "set_enabled", "ensure_realm_roles", "remove_member")])
    sweep_now(kb, settings)
    drain(worker)
    after = len([c for c in keycloak.calls if c[0] in ("update_user", "set_enabled", "ensure_realm_roles", "remove_member")])
    assert after == before, "the sweep and the admin event change nothing that is already right or not Keybridge's"
    assert keycloak.users[stranger]["enabled"] is False and keycloak.user_roles[stranger] == {"buyer"}
    assert [e.data["user_id"] for e in outbox_events(kb, "identity.access_changed")] == []
    assert json.dumps(keycloak.users[jane]["attributes"]["crm_status"]) == '["active"]'


def test_an_administrator_adding_a_leaver_back_to_the_organization_does_not_give_access(client, kb, keycloak, worker, acme):
    jane = add_member(keycloak, "C-1")
    deliver_at(client, worker, "contact.upserted", LEFT, "2026-11-22T12:00:00Z")
    keycloak.admin_changes_membership(CONSOLE_ADMIN, org_of(keycloak)["id"], jane)
    drain(worker)
    assert keycloak.users[jane]["enabled"] is False
    assert jane not in keycloak.members[org_of(keycloak)["id"]], "a leaver belongs to no CRM organization"


def test_the_admin_contact_named_by_an_account_is_not_invited_once_they_left(client, kb, keycloak, worker, acme):
    deliver_at(client, worker, "contact.upserted", {"contact_id": "C-ADM", "email": "boss@acme.example", "status": "left"},
               "2026-11-22T12:00:00Z")
    deliver_at(client, worker, "account.upserted", {**ACCOUNT, "admin_contact": {"contact_id": "C-ADM", "email": "boss@acme.example"}},
               "2026-11-22T13:00:00Z")
    assert keycloak.pending_invitations("boss@acme.example") == []
    assert [e.data["reason"] for e in outbox_events(kb, "invitation.skipped")] == ["contact_left"]
    with kb.db.session() as session:
        record = session.get(CrmRecord, ("contact", "C-ADM"))
        assert (record.state["status"], record.crm_time.isoformat()) == ("left", "2026-11-22T12:00:00"), \
            "the account's time says nothing about the contact"


def test_the_sweep_is_queued_once_per_interval_and_not_at_the_first_start(kb, settings):
    from adapter.handlers import records

    assert records.schedule_sweep(kb) == 0, "the first start only starts the clock"
    assert records.schedule_sweep(kb) == 0
    sweep_now(kb, settings)
    assert records.schedule_sweep(kb) == 1
    assert records.schedule_sweep(kb) == 0, "however many workers ask"
