"""Self-registration decisions, profile events and login activity, with Keycloak faked at its boundary."""
from __future__ import annotations

import pytest

from adapter.worker import Worker
from adapter.runtime import Keybridge
from tests.conftest import envelope, signed_post
from tests.unit.fakes import drain, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": {"status": "active"}}


@pytest.fixture
def worker(settings, keycloak):
    kb = Keybridge(settings, keycloak=keycloak)
    yield Worker(kb)
    kb.db.dispose()


def data_of(worker, event_type):
    return [e.data for e in outbox_events(worker.kb, event_type)]


def test_verified_registration_at_an_active_customer_domain_is_approved_without_anyone(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    user_id = keycloak.add_user("sam@acme.example", password=True)
    keycloak.users[user_id]["emailVerified"] = True
    keycloak.add_event("REGISTER", user_id, {"email": "sam@acme.example"})
    drain(worker)
    (registered,) = data_of(worker, "identity.registered")
    assert registered["via"] == "self_service" and registered["account_id"] == "A-1"
    assert keycloak.user_realm_roles(user_id) == {"member"}
    assert keycloak.is_member(keycloak.find_organization("A-1")["id"], user_id)


def test_unverified_email_gets_a_verification_first_then_approval(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    user_id = keycloak.add_user("sam@acme.example", password=True)
    keycloak.add_event("REGISTER", user_id, {"email": "sam@acme.example"})
    drain(worker)
    assert [m["kind"] for m in keycloak.emails_to("sam@acme.example")] == ["verify_email"]
    assert data_of(worker, "identity.registered") == []
    keycloak.users[user_id]["emailVerified"] = True
    keycloak.add_event("VERIFY_EMAIL", user_id, {"email": "sam@acme.example"})
    drain(worker)
    assert data_of(worker, "identity.email_verified") == [{"user_id": user_id}]
    assert [d["via"] for d in data_of(worker, "identity.registered")] == ["self_service"]


def test_a_suspended_customer_domain_waits_for_approval_naming_the_account(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", {**ACCOUNT, "contract": {"status": "suspended"}}))
    drain(worker)
    user_id = keycloak.add_user("sam@acme.example", password=True)
    keycloak.add_event("REGISTER", user_id, {"email": "sam@acme.example"})
    drain(worker)
    assert data_of(worker, "registration.pending_approval") == [
        {"user_id": user_id, "email": "sam@acme.example", "company": None, "matched_account_id": "A-1"}]
    assert keycloak.user_realm_roles(user_id) == set()


def test_approval_without_a_matching_account_needs_an_account_id(client, worker, keycloak):
    user_id = keycloak.add_user("x@nowhere.example", password=True)
    keycloak.add_event("REGISTER", user_id, {"email": "x@nowhere.example"})
    drain(worker)
    signed_post(client, envelope("registration.decided", {"decision": "approved", "user_id": user_id}))
    drain(worker)
    from adapter import dead_letters

    (dead,) = dead_letters.list_all(worker.kb.db)
    assert "needs an account_id" in dead["error"]


def test_rejection_disables_and_a_later_approval_gives_access_back(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    user_id = keycloak.add_user("x@nowhere.example", password=True)
    keycloak.add_event("REGISTER", user_id, {"email": "x@nowhere.example"})
    drain(worker)
    signed_post(client, envelope("registration.decided", {"decision": "rejected", "email": "x@nowhere.example"}))
    drain(worker)
    assert keycloak.users[user_id]["enabled"] is False and user_id in keycloak.sessions_ended
    assert data_of(worker, "identity.access_changed")[-1]["reason"] == "rejected"
    signed_post(client, envelope("registration.decided", {"decision": "approved", "user_id": user_id, "account_id": "A-1"}))
    drain(worker)
    assert keycloak.users[user_id]["enabled"] is True
    assert data_of(worker, "identity.access_changed")[-1] == {"user_id": user_id, "contact_id": None, "enabled": True, "reason": "admin"}


def test_profile_changes_carry_old_and_new_values_and_the_crm_id(worker, keycloak):
    user_id = keycloak.add_user("c@acme.example", crm_contact_id=["C-9"])
    keycloak.add_event("UPDATE_PROFILE", user_id, {"previous_first_name": "Al", "updated_first_name": "Alan", "context": "ACCOUNT"})
    keycloak.add_event("UPDATE_EMAIL", user_id, {"previous_email": "c@acme.example", "updated_email": "alan@acme.example"})
    drain(worker)
    assert data_of(worker, "identity.profile_updated") == [
        {"user_id": user_id, "contact_id": "C-9", "changes": {"first_name": {"old": "Al", "new": "Alan"}}},
        {"user_id": user_id, "contact_id": "C-9", "changes": {"email": {"old": "c@acme.example", "new": "alan@acme.example"}}}]


def test_login_activity_is_summarised_per_interval_without_losing_logins(worker, keycloak):
    lead = keycloak.add_user("lee@corp.example", crm_lead_id=["L-1"])
    for t in (1_000, 2_000, 3_000):
        keycloak.add_event("LOGIN", lead, {}, time_ms=t)
    worker.kb.settings.activity_report_seconds = 1
    drain(worker)
    (report,) = data_of(worker, "identity.activity")
    assert report == {"user_id": lead, "lead_id": "L-1", "last_login_at": "1970-01-01T00:00:03Z", "logins": 3}
    import time

    time.sleep(1.1)  # the next interval
    keycloak.add_event("LOGIN", lead, {}, time_ms=4_000)
    drain(worker)
    assert [d["logins"] for d in data_of(worker, "identity.activity")] == [3, 1]
    drain(worker)
    assert len(data_of(worker, "identity.activity")) == 2, "no logins since: no report"
