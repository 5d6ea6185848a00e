"""Regressions found by tests before their fix: contracts, departures and audit."""
from __future__ import annotations


from adapter import reports
from tests.unit.fakes import all_jobs, deliver, drain, make_everything_due, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme Corporation", "domains": ["acme.example"],
           "contract": {"status": "active", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-12-31T23:59:59Z"}}
SUSPENDED = {**ACCOUNT, "contract": {"status": "suspended"}}


def org_of(keycloak, account_id):
    (org,) = [o for o in keycloak.organizations.values() if o["attributes"].get("crm_account_id") == [account_id]]
    return org


def add_member(keycloak, account_id, contact_id) -> str:
    user_id = keycloak.add_user(f"{contact_id.lower()}@acme.example", password=True, crm_contact_id=[contact_id])
    keycloak.members[org_of(keycloak, account_id)["id"]].add(user_id)
    return user_id


def access_changes(kb) -> list[dict]:
    return [e.data for e in outbox_events(kb, "identity.access_changed")]


def test_an_active_contract_whose_end_date_passed_already_is_shown_as_expired(client, kb, keycloak, worker):
    """The CRM sends status active with an ends_at in the past (e.g. an upsert sent after the end)."""
    deliver(client, worker, "account.upserted", ACCOUNT)
    ann = add_member(keycloak, "A-1", "C-ANN")

    deliver(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": "active", "ends_at": "2026-01-31T00:00:00Z"}})
    drain(worker)

    assert not keycloak.can_log_in(ann) and keycloak.users[ann]["enabled"] is True
    assert org_of(keycloak, "A-1")["attributes"]["contract_status"] == ["expired"]
    assert reports.account_status(kb, "A-1")["contract_status"] == "expired"


def test_a_member_whose_sessions_could_not_be_ended_is_retried_and_restored_on_renewal(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    people = [add_member(keycloak, "A-1", f"C-{n}") for n in range(5)]
    keycloak.fail_for("logout", people[0])  # Keycloak fails to end this one's sessions

    deliver(client, worker, "account.upserted", SUSPENDED)
    keycloak.heal()
    make_everything_due(kb)
    drain(worker)

    assert {j.status for j in all_jobs(kb)} == {"done"}
    assert [keycloak.can_log_in(p) for p in people] == [False] * 5
    assert people[0] in keycloak.sessions_ended
    assert sorted(d["user_id"] for d in access_changes(kb)) == sorted(people)
    assert reports.account_status(kb, "A-1")["members_cut_off_by_contract"] == 5

    deliver(client, worker, "account.upserted", ACCOUNT)
    assert [keycloak.can_log_in(p) for p in people] == [True] * 5


def test_a_contact_who_registers_while_the_contract_is_suspended_has_no_access(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested",
            {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "roles": ["Buyer"]})
    deliver(client, worker, "account.upserted", SUSPENDED)

    (invitation,) = keycloak.pending_invitations()
    jane, _ = keycloak.register_invited_user(invitation["id"])
    drain(worker)

    assert jane in keycloak.members[org_of(keycloak, "A-1")["id"]]
    assert not keycloak.can_log_in(jane) and keycloak.users[jane]["enabled"] is True
    assert access_changes(kb) == [], "she never had access: nothing changed for her"

    deliver(client, worker, "account.upserted", ACCOUNT)
    assert keycloak.can_log_in(jane)
    assert access_changes(kb) == [{"user_id": jane, "contact_id": "C-1", "enabled": True, "reason": "contract_active"}]


def test_a_contact_moved_from_a_suspended_account_to_an_active_one_gets_access_back(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "account.upserted", {**ACCOUNT, "account_id": "A-2", "name": "Globex", "domains": []})
    jane = add_member(keycloak, "A-1", "C-1")
    deliver(client, worker, "account.upserted", SUSPENDED)
    assert not keycloak.can_log_in(jane)

    deliver(client, worker, "contact.upserted", {"contact_id": "C-1", "email": "c-1@acme.example", "account_id": "A-2"})

    assert jane in keycloak.members[org_of(keycloak, "A-2")["id"]]
    assert keycloak.can_log_in(jane) and keycloak.users[jane]["enabled"] is True
    assert access_changes(kb) == [{"user_id": jane, "contact_id": "C-1", "enabled": False, "reason": "contract_inactive"},
                                  {"user_id": jane, "contact_id": "C-1", "enabled": True, "reason": "contract_active"}]


def test_the_audit_trail_of_account_a1_does_not_list_account_a10(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "account.upserted", {**ACCOUNT, "account_id": "A-10", "name": "Ten", "domains": []})

    assert {e["subject"] for e in reports.audit_trail(kb, "account:A-1")} == {"account:A-1"}


def test_a_renewal_skips_people_whose_identity_was_deleted_meanwhile(client, kb, keycloak, worker):
    """Keycloak 26.7.3 deletes an invited ("managed") member removed from its organization:
    restoring access must not fail forever on the identity that is gone."""
    from tests.unit.fakes import deliver

    account = {"account_id": "A-9", "name": "Gone Ltd", "contract": {"status": "active"}}
    deliver(client, worker, "account.upserted", account)
    org_id = keycloak.find_organization("A-9")["id"]
    stays = keycloak.add_user("stays@gone.example", crm_contact_id=["C-1"])
    goes = keycloak.add_user("goes@gone.example", crm_contact_id=["C-2"])
    keycloak.add_member(org_id, stays)
    keycloak.add_member(org_id, goes)
    deliver(client, worker, "account.upserted", {**account, "contract": {"status": "suspended"}})
    del keycloak.users[goes]
    keycloak.members[org_id].discard(goes)

    deliver(client, worker, "account.upserted", account)
    from adapter import dead_letters

    assert dead_letters.list_all(kb.db) == []
    assert keycloak.can_log_in(stays)
