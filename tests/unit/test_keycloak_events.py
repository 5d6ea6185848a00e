"""Registrations seen in Keycloak's event log become CRM facts, once, across re-reads and restarts."""
from __future__ import annotations

import inspect

import pytest

from adapter import keycloak_events
from adapter.worker import Worker
from adapter.keycloak import KeycloakGateway
from adapter.models import Cursor
from adapter.runtime import Keybridge
from tests.unit.fakes import FakeKeycloak, all_jobs, deliver, drain, invitation_row, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": {"status": "none"}}
INVITE = {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "roles": ["Buyer"]}
LEAD = {"lead_id": "L-1", "email": "lee@corp.example", "first_name": "Lee"}


@pytest.fixture
def invited_jane(client, keycloak, worker):
    """Jane was invited to Acme's organization; returns her pending invitation."""
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE)
    (invitation,) = keycloak.pending_invitations("jane@acme.example")
    return invitation


def registration_facts(kb):
    return [(e.type, e.data) for e in outbox_events(kb) if e.type in ("identity.registered", "invitation.accepted")]


# -- the fake is a faithful stand-in --------------------------------------------------

def test_the_fake_keycloak_offers_every_gateway_operation_with_the_same_parameters():
    public = {n for n, f in vars(KeycloakGateway).items() if callable(f) and not n.startswith("_") and n != "from_settings"}
    for name in public:
        assert hasattr(FakeKeycloak, name), name
        assert list(inspect.signature(getattr(FakeKeycloak, name)).parameters) == \
            list(inspect.signature(getattr(KeycloakGateway, name)).parameters), name


def test_the_fake_event_log_is_read_from_date_inclusive_oldest_first_in_pages(keycloak):
    for t in (3000, 1000, 2000, 2000, 4000):
        keycloak.add_event("LOGIN", "u", time_ms=t)
    assert [e["time"] for e in keycloak.user_events(2000, 0, 10)] == [2000, 2000, 3000, 4000]
    assert [e["time"] for e in keycloak.user_events(0, 1, 2)] == [2000, 2000]


# -- contacts registering through their invitation -----------------------------------

def test_a_contact_registering_through_the_invitation_is_linked_given_roles_and_membership(kb, keycloak, worker, invited_jane):
    user_id, _ = keycloak.register_invited_user(invited_jane["id"])

    drain(worker)

    user = keycloak.users[user_id]
    assert user["attributes"]["crm_contact_id"] == ["C-1"]
    assert keycloak.user_roles[user_id] == {"buyer"}
    assert user_id in keycloak.members[invited_jane["organizationId"]]
    row = invitation_row(kb, "contact", "C-1")
    assert (row.status, row.keycloak_user_id) == ("accepted", user_id)


def test_a_contact_registration_is_reported_to_the_crm_exactly_once(kb, keycloak, worker, invited_jane):
    user_id, _ = keycloak.register_invited_user(invited_jane["id"])
    drain(worker)

    (registered, accepted) = registration_facts(kb)
    assert registered[0] == "identity.registered"
    assert {k: registered[1][k] for k in ("user_id", "email", "contact_id", "account_id", "via")} == \
        {"user_id": user_id, "email": "jane@acme.example", "contact_id": "C-1", "account_id": "A-1", "via": "invitation"}
    assert registered[1]["registered_at"].endswith("Z")
    assert accepted == ("invitation.accepted", {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1"})


def test_an_invited_org_admin_registers_as_organization_admin(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", {**INVITE, "roles": ["Technical Contact"], "org_admin": True})
    (invitation,) = keycloak.pending_invitations()
    user_id, _ = keycloak.register_invited_user(invitation["id"])
    drain(worker)
    assert keycloak.user_roles[user_id] == {"technical_contact", "org_admin"}


def test_registering_with_an_invited_admins_address_without_the_link_gives_no_membership(client, kb, keycloak, worker):
    """Attack: the account's admin contact is invited; a stranger registers with that address on the login
    page (no link, address not verified). They must not become the member holding org_admin: they go the
    self-registration path, and the invitation stays open for its link."""
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", {**INVITE, "org_admin": True})
    org_id = invitation_row(kb, "contact", "C-1").organization_id
    stranger, _ = keycloak.self_register("jane@acme.example")

    drain(worker)

    assert stranger not in keycloak.members[org_id]
    assert keycloak.user_roles[stranger] == set() and "crm_contact_id" not in keycloak.users[stranger]["attributes"]
    assert not any(stranger in g["members"] for g in keycloak.org_groups.values())
    assert invitation_row(kb, "contact", "C-1").status == "sent"
    assert outbox_events(kb, "identity.registered") == [] and outbox_events(kb, "invitation.accepted") == []
    assert [e.data["user_id"] for e in outbox_events(kb, "registration.pending_approval")] == [stranger]


def test_an_identity_made_on_the_login_page_loses_its_sessions_before_it_completes_an_invitation(client, kb, keycloak, worker):
    """After the takeover attempt above, the address's owner resets the password and joins through a new
    join link; the stranger may still hold a session (Keycloak keeps them through a reset): it ends first."""
    from adapter.models import SelfRegistration

    deliver(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": "active"}})
    deliver(client, worker, "contact.invite_requested", {**INVITE, "org_admin": True})
    stranger, _ = keycloak.self_register("jane@acme.example")
    drain(worker)
    (unusable,) = keycloak.pending_invitations("jane@acme.example")
    keycloak.invitations.pop(unusable["id"])  # an operator deletes it; the CRM asks again
    deliver(client, worker, "contact.invite_requested", {**INVITE, "org_admin": True})
    (join,) = keycloak.pending_invitations("jane@acme.example")
    assert keycloak.sessions_ended == []

    keycloak.join_through_link(join["id"])
    drain(worker)

    assert keycloak.sessions_ended == [stranger]
    assert "org_admin" in keycloak.user_roles[stranger] and invitation_row(kb, "contact", "C-1").status == "accepted"
    with kb.db.session() as session:
        assert session.get(SelfRegistration, stranger).status == "invitation"


def test_registering_with_an_invited_address_that_keycloak_verified_completes_the_invitation(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE)
    user_id, _ = keycloak.self_register("jane@acme.example", verified=True)

    drain(worker)

    assert invitation_row(kb, "contact", "C-1").status == "accepted"
    assert keycloak.users[user_id]["attributes"]["crm_contact_id"] == ["C-1"] and keycloak.user_roles[user_id] == {"buyer"}


def test_an_invitation_link_completes_the_invitation_even_when_the_address_was_changed_on_the_form(kb, keycloak, worker, invited_jane):
    """The link (token_id, Keycloak's invitation id) is what proves the invitation; the address only counts verified."""
    invitation = keycloak.invitations[invited_jane["id"]]
    invitation["email"] = "jane.private@else.example"
    user_id, _ = keycloak.register_invited_user(invited_jane["id"])
    drain(worker)
    assert invitation_row(kb, "contact", "C-1").status == "accepted"
    assert keycloak.users[user_id]["attributes"]["crm_contact_id"] == ["C-1"]


def test_rereading_the_same_event_in_the_overlap_creates_nothing_new(kb, keycloak, worker, invited_jane):
    keycloak.register_invited_user(invited_jane["id"])
    drain(worker)
    before = len(keycloak.calls)

    assert keycloak_events.poll(kb) == 0  # the REGISTER event is inside the overlap window and read again
    worker.run_once()

    # the worker pass reads the admin event log too (admin_events.py); nothing else is called
    assert [name for name, *_ in keycloak.calls[before:]] == ["user_events", "user_events", "admin_events"]
    assert len(all_jobs(kb, "keycloak_event")) == 1
    assert len(registration_facts(kb)) == 2


def test_after_a_restart_the_same_event_is_not_taken_again(settings, keycloak, worker, invited_jane):
    keycloak.register_invited_user(invited_jane["id"])
    drain(worker)
    worker.kb.db.dispose()

    restarted = Keybridge(settings, keycloak=keycloak)
    drain(Worker(restarted))

    assert len(all_jobs(restarted, "keycloak_event")) == 1
    assert len(registration_facts(restarted)) == 2
    restarted.db.dispose()


def test_a_registration_is_taken_even_when_the_log_has_more_than_one_page(kb, keycloak, worker, invited_jane):
    for _ in range(keycloak_events.PAGE + 5):
        keycloak.add_event("LOGIN", "someone-else")
    user_id, _ = keycloak.register_invited_user(invited_jane["id"])

    drain(worker)

    assert [e.data["user_id"] for e in outbox_events(kb, "identity.registered")] == [user_id]


def test_logins_are_counted_not_queued_and_other_events_only_move_the_cursor(kb, keycloak):
    keycloak.add_event("LOGIN", "u-1", time_ms=5_000)
    keycloak.add_event("LOGOUT", "u-1", time_ms=6_000)
    assert keycloak_events.poll(kb) == 1  # the login, counted for identity.activity
    assert all_jobs(kb) == []
    with kb.db.session() as s:
        assert s.get(Cursor, keycloak_events.CURSOR).position["time_ms"] == 6_000


def test_with_events_start_now_older_history_is_not_replayed(settings, keycloak):
    from dataclasses import replace

    keycloak.add_event("REGISTER", "old-user", {"email": "old@acme.example"}, time_ms=1_000)
    kb = Keybridge(replace(settings, events_start="now"), keycloak=keycloak)
    assert keycloak_events.poll(kb) == 0
    kb.db.dispose()


def test_a_self_registration_matching_no_invitation_waits_for_approval(kb, keycloak, worker):
    user_id = keycloak.add_user("stranger@else.example", password=True)
    keycloak.add_event("REGISTER", user_id, {"email": "stranger@else.example"})
    drain(worker)
    assert [j.status for j in all_jobs(kb)] == ["done"]
    assert [e.data for e in outbox_events(kb)] == [
        {"user_id": user_id, "email": "stranger@else.example", "company": None, "matched_account_id": None}]
    assert outbox_events(kb)[0].type == "registration.pending_approval"


def test_keycloak_down_while_reading_the_log_loses_no_registration(kb, keycloak, worker, invited_jane):
    user_id, _ = keycloak.register_invited_user(invited_jane["id"])
    keycloak.down = True
    worker.run_once()
    assert all_jobs(kb, "keycloak_event") == []
    keycloak.down = False
    drain(worker)
    assert [e.data["user_id"] for e in outbox_events(kb, "identity.registered")] == [user_id]


# -- leads ---------------------------------------------------------------------------

def test_a_lead_choosing_a_password_is_registered_with_the_lead_id(client, kb, keycloak, worker):
    deliver(client, worker, "lead.invite_requested", LEAD)
    (user_id,) = keycloak.users
    keycloak.choose_password(user_id)

    drain(worker)

    assert invitation_row(kb, "lead", "L-1").status == "accepted"
    (registered,) = outbox_events(kb, "identity.registered")
    assert {k: registered.data[k] for k in ("user_id", "email", "lead_id", "via")} == \
        {"user_id": user_id, "email": "lee@corp.example", "lead_id": "L-1", "via": "invitation"}
    assert "contact_id" not in registered.data
    (accepted,) = outbox_events(kb, "invitation.accepted")
    assert accepted.data["lead_id"] == "L-1"
    assert keycloak.user_roles[user_id] == {"lead"}


def test_a_lead_changing_the_password_later_is_not_registered_again(client, kb, keycloak, worker):
    deliver(client, worker, "lead.invite_requested", LEAD)
    (user_id,) = keycloak.users
    keycloak.choose_password(user_id)
    drain(worker)
    keycloak.choose_password(user_id)
    drain(worker)
    assert len(outbox_events(kb, "identity.registered")) == 1


def test_a_busy_admin_log_does_not_make_the_user_log_count_a_login_twice(kb, keycloak):
    """Both logs share the table of ids already taken: one log's progress must not forget
    ids the other, slower log can still re-read."""
    from adapter import admin_events
    from adapter.models import LoginActivity

    keycloak.add_event("LOGIN", "u-1", time_ms=1_000)
    assert keycloak_events.poll(kb) == 1
    keycloak.add_admin_event("CREATE", "REALM_ROLE_MAPPING", "users/u-2/role-mappings/realm", "someone", time_ms=500_000)
    admin_events.poll(kb)
    keycloak_events.poll(kb)  # re-reads its overlap, which holds the login
    with kb.db.session() as s:
        assert s.get(LoginActivity, "u-1").logins_since_report == 1
