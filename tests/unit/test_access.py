"""Contracts drive access: what the members of a CRM account notice when its contract changes or ends.

Signed webhooks go in through the real endpoint, the worker runs, and the in-memory
Keycloak shows who can still log in (`can_log_in`: what Keycloak with keybridge's
extension answers, from the organization's attributes); the CRM hears about it through
identity.access_changed. The cut-off is the organization's attribute write: nobody's
`enabled` flag is touched for a contract.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from adapter.db import utcnow
from adapter.worker import Worker
from adapter.models import Account, AuditEntry
from adapter.runtime import Keybridge
from tests.conftest import envelope, signed_post
from tests.unit.fakes import FakeKeycloak, all_jobs, deliver, drain, invitation_row, make_everything_due, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme Corporation", "domains": ["acme.example"],
           "contract": {"status": "active", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-12-31T23:59:59Z"}}
SUSPENDED = {**ACCOUNT, "contract": {"status": "suspended"}}
RENEWED = {**ACCOUNT, "contract": {"status": "active", "starts_at": "2028-01-01T00:00:00Z", "ends_at": "2028-12-31T23:59:59Z"}}
ADMIN = {"contact_id": "C-ADM", "email": "boss@acme.example", "first_name": "Bo", "last_name": "Boss"}


def org_of(keycloak, account_id):
    (org,) = [o for o in keycloak.organizations.values() if o["attributes"].get("crm_account_id") == [account_id]]
    return org


def add_member(keycloak, account_id, contact_id, enabled=True) -> str:
    """Someone who registered earlier and is a member of the account's organization."""
    user_id = keycloak.add_user(f"{contact_id.lower()}@acme.example", password=True, crm_contact_id=[contact_id])
    keycloak.users[user_id]["enabled"] = enabled
    keycloak.members[org_of(keycloak, account_id)["id"]].add(user_id)
    return user_id


def access_changes(kb) -> list[dict]:
    return [e.data for e in outbox_events(kb, "identity.access_changed")]


def enabled(keycloak, *user_ids) -> list[bool]:
    return [keycloak.users[u]["enabled"] for u in user_ids]


def can_log_in(keycloak, *user_ids) -> list[bool]:
    return [keycloak.can_log_in(u) for u in user_ids]


def organization_writes(keycloak) -> int:
    return len(keycloak.calls_to("update_organization")) + len(keycloak.calls_to("update_organization_attributes"))


def user_writes(keycloak) -> list[str]:
    """Every call that changed a user's flag or attributes (the per-user path's calls)."""
    return [n for n, _, _ in keycloak.calls if n in ("set_enabled", "update_user")]


def audit_entries(kb, action) -> list:
    with kb.db.session() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def end_contract_in_the_past(kb, account_id, ago=timedelta(minutes=5)) -> datetime:
    """Time passes: the end date Keybridge holds for the account is behind us, no webhook sent."""
    ends = utcnow().replace(microsecond=0) - ago
    with kb.db.session() as session:
        session.get(Account, account_id).contract_ends_at = ends
    return ends


@pytest.fixture
def members(client, kb, keycloak, worker):
    """Account A-1 with an active contract and three members, one of them disabled by an administrator."""
    deliver(client, worker, "account.upserted", ACCOUNT)
    return {"ann": add_member(keycloak, "A-1", "C-ANN"), "bob": add_member(keycloak, "A-1", "C-BOB"),
            "eve": add_member(keycloak, "A-1", "C-EVE", enabled=False)}


# -- account.upserted with an active contract -----------------------------------------

def test_an_account_with_an_active_contract_is_stored_and_its_admin_invited_as_org_admin(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", {**ACCOUNT, "admin_contact": ADMIN})

    with kb.db.session() as session:
        account = session.get(Account, "A-1")
    assert (account.name, account.organization_id) == ("Acme Corporation", org_of(keycloak, "A-1")["id"])
    assert (account.contract_status, account.contract_ends_at) == ("active", datetime(2027, 12, 31, 23, 59, 59))
    assert account.access == "active"

    assert [m["kind"] for m in keycloak.emails_to("boss@acme.example")] == ["org_invite"]
    (invitation,) = keycloak.pending_invitations("boss@acme.example")
    assert invitation["organizationId"] == org_of(keycloak, "A-1")["id"]
    assert invitation_row(kb, "contact", "C-ADM").details["org_admin"] is True

    user_id, _ = keycloak.register_invited_user(invitation["id"], "Bo", "Boss")
    drain(worker)
    assert "org_admin" in keycloak.user_roles[user_id]
    assert user_id in keycloak.members[org_of(keycloak, "A-1")["id"]]


def test_the_admin_contact_is_invited_once_however_often_the_account_is_upserted(client, keycloak, worker):
    for _ in range(3):
        deliver(client, worker, "account.upserted", {**ACCOUNT, "admin_contact": ADMIN})
    assert [m["kind"] for m in keycloak.emails_to("boss@acme.example")] == ["org_invite"]


@pytest.mark.parametrize("status", ["suspended", "expired", "none"])
def test_the_admin_contact_of_an_inactive_account_is_invited_only_once_the_contract_is_active(client, keycloak, worker, status):
    deliver(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": status}, "admin_contact": ADMIN})
    assert keycloak.emails == []

    deliver(client, worker, "account.upserted", {**ACCOUNT, "admin_contact": ADMIN})
    assert [m["kind"] for m in keycloak.emails_to("boss@acme.example")] == ["org_invite"]


def test_a_contract_whose_end_date_passed_already_does_not_invite_the_admin(client, keycloak, worker):
    ended = {**ACCOUNT, "contract": {"status": "active", "ends_at": "2020-12-31T23:59:59Z"}, "admin_contact": ADMIN}
    deliver(client, worker, "account.upserted", ended)
    assert keycloak.emails == []


# -- contract not active: one attribute write refuses everyone, renewal is the write back --

@pytest.mark.parametrize("status", ["suspended", "expired", "none"])
def test_an_inactive_contract_refuses_every_member_and_touches_no_ones_enabled_flag(client, kb, keycloak, worker, members, status):
    writes = organization_writes(keycloak)

    deliver(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": status}})

    assert can_log_in(keycloak, *members.values()) == [False, False, False]
    assert org_of(keycloak, "A-1")["attributes"]["contract_status"] == [status]
    assert organization_writes(keycloak) == writes + 1
    assert user_writes(keycloak) == [] and enabled(keycloak, *members.values()) == [True, True, False]
    assert sorted(keycloak.sessions_ended) == sorted([members["ann"], members["bob"]])
    assert sorted(access_changes(kb), key=lambda d: d["contact_id"]) == [
        {"user_id": members["ann"], "contact_id": "C-ANN", "enabled": False, "reason": "contract_inactive"},
        {"user_id": members["bob"], "contact_id": "C-BOB", "enabled": False, "reason": "contract_inactive"},
    ]


def test_the_cut_off_holds_before_the_background_follow_up_has_run(client, kb, keycloak, members):
    one_job_at_a_time = Worker(kb, batch=1)
    assert signed_post(client, envelope("account.upserted", SUSPENDED)).status_code == 202

    one_job_at_a_time.run_jobs()  # the webhook's job only: the attribute write

    assert can_log_in(keycloak, *members.values()) == [False, False, False]
    assert keycloak.sessions_ended == [] and access_changes(kb) == []
    (follow_up,) = all_jobs(kb, "contract_members")
    assert follow_up.status == "queued" and follow_up.payload["state"] == "inactive"

    drain(one_job_at_a_time)
    assert sorted(keycloak.sessions_ended) == sorted([members["ann"], members["bob"]])
    assert len(access_changes(kb)) == 2


def test_a_renewal_gives_access_back_and_leaves_an_administrators_disable_alone(client, kb, keycloak, worker, members):
    deliver(client, worker, "account.upserted", SUSPENDED)
    deliver(client, worker, "account.upserted", RENEWED)

    assert can_log_in(keycloak, members["ann"], members["bob"], members["eve"]) == [True, True, False]
    assert enabled(keycloak, *members.values()) == [True, True, False]
    assert user_writes(keycloak) == []
    restored = [d for d in access_changes(kb) if d["enabled"]]
    assert sorted(restored, key=lambda d: d["contact_id"]) == [
        {"user_id": members["ann"], "contact_id": "C-ANN", "enabled": True, "reason": "contract_active"},
        {"user_id": members["bob"], "contact_id": "C-BOB", "enabled": True, "reason": "contract_active"},
    ]
    assert not [d for d in access_changes(kb) if d["user_id"] == members["eve"]]


def test_a_suspension_undone_before_its_follow_up_ran_ends_no_session_and_tells_the_crm_nothing(client, kb, keycloak, members):
    # Both arrive before the worker gets to them: the renewal's job is older than the suspension's follow-up.
    assert signed_post(client, envelope("account.upserted", SUSPENDED)).status_code == 202
    assert signed_post(client, envelope("account.upserted", RENEWED)).status_code == 202

    drain(Worker(kb))

    assert can_log_in(keycloak, members["ann"], members["bob"]) == [True, True]
    assert keycloak.sessions_ended == [] and access_changes(kb) == []
    (cancelled,) = all_jobs(kb, "contract_members")
    assert cancelled.status == "done" and cancelled.last_error.startswith("cancelled: the contract is active again")


def test_repeating_a_suspension_changes_nothing_more_and_tells_the_crm_nothing_more(client, kb, keycloak, worker, members):
    deliver(client, worker, "account.upserted", SUSPENDED, webhook_id="msg_suspend_1")
    writes, logouts, events = organization_writes(keycloak), len(keycloak.calls_to("logout")), access_changes(kb)

    deliver(client, worker, "account.upserted", SUSPENDED, webhook_id="msg_suspend_2")

    assert (organization_writes(keycloak), len(keycloak.calls_to("logout"))) == (writes, logouts)
    assert access_changes(kb) == events and len(events) == 2
    assert len(all_jobs(kb, "contract_members")) == 1
    assert can_log_in(keycloak, *members.values()) == [False, False, False]


def test_repeating_a_renewal_changes_nothing_more_and_tells_the_crm_nothing_more(client, kb, keycloak, worker, members):
    deliver(client, worker, "account.upserted", SUSPENDED)
    deliver(client, worker, "account.upserted", RENEWED, webhook_id="msg_renew_1")
    writes, events = organization_writes(keycloak), access_changes(kb)

    deliver(client, worker, "account.upserted", RENEWED, webhook_id="msg_renew_2")

    assert organization_writes(keycloak) == writes
    assert access_changes(kb) == events and len(events) == 4
    assert len(audit_entries(kb, "access.contract_restored")) == 1
    assert can_log_in(keycloak, *members.values()) == [True, True, False]


def test_an_upsert_of_an_active_account_does_not_touch_anyones_access(client, kb, keycloak, worker, members):
    deliver(client, worker, "account.upserted", {**ACCOUNT, "name": "Acme Corp."})
    assert user_writes(keycloak) == [] and keycloak.sessions_ended == []
    assert access_changes(kb) == [] and all_jobs(kb, "contract_members") == []
    assert can_log_in(keycloak, *members.values()) == [True, True, False]


def test_suspending_one_account_leaves_the_members_of_another_alone(client, kb, keycloak, worker, members):
    deliver(client, worker, "account.upserted", {**ACCOUNT, "account_id": "A-2", "name": "Other Inc", "domains": []})
    other = add_member(keycloak, "A-2", "C-OTHER")

    deliver(client, worker, "account.upserted", SUSPENDED)

    assert can_log_in(keycloak, other) == [True]
    assert other not in keycloak.sessions_ended


def test_a_member_of_two_accounts_keeps_access_while_either_contract_is_active(client, kb, keycloak, worker, members):
    deliver(client, worker, "account.upserted", {**ACCOUNT, "account_id": "A-2", "name": "Other Inc", "domains": []})
    both = members["ann"]
    keycloak.members[org_of(keycloak, "A-2")["id"]].add(both)

    deliver(client, worker, "account.upserted", SUSPENDED)
    assert can_log_in(keycloak, both, members["bob"]) == [True, False]
    assert both not in keycloak.sessions_ended
    assert [d["user_id"] for d in access_changes(kb)] == [members["bob"]]

    deliver(client, worker, "account.upserted", {**SUSPENDED, "account_id": "A-2", "name": "Other Inc", "domains": []})
    assert can_log_in(keycloak, both) == [False]
    assert keycloak.sessions_ended.count(both) == 1
    assert access_changes(kb)[-1] == {"user_id": both, "contact_id": "C-ANN", "enabled": False, "reason": "contract_inactive"}

    deliver(client, worker, "account.upserted", RENEWED)
    assert can_log_in(keycloak, both, members["bob"]) == [True, True]
    assert sorted((d["user_id"], d["enabled"]) for d in access_changes(kb)[-2:]) == sorted([(both, True), (members["bob"], True)])

    deliver(client, worker, "account.upserted", {**ACCOUNT, "account_id": "A-2", "name": "Other Inc", "domains": []})
    assert len(access_changes(kb)) == 4, "A-1 already gives ann access: A-2's renewal changes nobody's"


def test_a_member_who_left_hears_nothing_about_the_contract(client, kb, keycloak, worker, members):
    keycloak.users[members["bob"]]["attributes"]["crm_status"] = ["left"]
    deliver(client, worker, "account.upserted", SUSPENDED)
    assert [d["user_id"] for d in access_changes(kb)] == [members["ann"]]
    assert members["bob"] not in keycloak.sessions_ended


# -- the end date passes, no webhook --------------------------------------------------

def test_an_end_date_in_the_past_refuses_at_once_and_the_schedule_tells_the_crm(client, kb, keycloak, worker, members):
    deliver(client, worker, "account.upserted", {**ACCOUNT, "contract": {"status": "active", "ends_at": "2027-12-31T23:59:59Z"}})
    later = datetime(2028, 1, 1, tzinfo=timezone.utc)
    assert [keycloak.can_log_in(m, now=later) for m in members.values()] == [False, False, False], \
        "Keycloak's extension compares contract_ends_at with its clock: no write needed"

    ends = end_contract_in_the_past(kb, "A-1")
    worker.run_once()
    drain(worker)

    (job,) = all_jobs(kb, "contract_expiry")
    assert job.status == "done" and job.payload == {"account_id": "A-1"}
    assert org_of(keycloak, "A-1")["attributes"]["contract_status"] == ["expired"]
    assert can_log_in(keycloak, *members.values()) == [False, False, False]
    assert user_writes(keycloak) == [] and enabled(keycloak, *members.values()) == [True, True, False]
    assert sorted(keycloak.sessions_ended) == sorted([members["ann"], members["bob"]])
    assert sorted((d["contact_id"], d["enabled"], d["reason"]) for d in access_changes(kb)) == [
        ("C-ANN", False, "contract_inactive"), ("C-BOB", False, "contract_inactive")]
    with kb.db.session() as session:
        account = session.get(Account, "A-1")
        assert (account.contract_status, account.access) == ("expired", "inactive")
    (ended,) = audit_entries(kb, "access.contract_ended")
    assert ended.cause == f"schedule: contract ended at {ends.isoformat()}Z"


def test_an_ended_contract_is_followed_once_however_many_worker_passes_follow(client, kb, keycloak, worker, members):
    end_contract_in_the_past(kb, "A-1")
    for _ in range(3):
        drain(worker)
    assert len(all_jobs(kb, "contract_expiry")) == 1
    assert len(all_jobs(kb, "contract_members")) == 1
    assert len(access_changes(kb)) == 2
    assert len(keycloak.calls_to("logout")) == 2


def test_a_contract_still_running_is_not_cut_by_the_schedule(client, kb, keycloak, worker, members):
    drain(worker)
    assert all_jobs(kb, "contract_expiry") == []
    assert can_log_in(keycloak, *members.values()) == [True, True, False]


def test_an_end_date_that_passed_while_keybridge_was_down_is_followed_after_a_restart(client, settings, kb, keycloak, members):
    # The first process accepted the account, then stopped before the end date; it never ran again.
    end_contract_in_the_past(kb, "A-1", ago=timedelta(days=3))
    kb.db.dispose()

    restarted = Keybridge(settings, keycloak=keycloak)
    try:
        drain(Worker(restarted))
        assert org_of(keycloak, "A-1")["attributes"]["contract_status"] == ["expired"]
        assert can_log_in(keycloak, *members.values()) == [False, False, False]
        assert len(access_changes(restarted)) == 2
    finally:
        restarted.db.dispose()


def test_a_renewal_after_the_end_date_passed_gives_access_back(client, kb, keycloak, worker, members):
    end_contract_in_the_past(kb, "A-1")
    drain(worker)

    deliver(client, worker, "account.upserted", RENEWED)

    assert can_log_in(keycloak, *members.values()) == [True, True, False]
    org = org_of(keycloak, "A-1")
    assert org["attributes"]["contract_status"] == ["active"]
    assert org["attributes"]["contract_ends_at"] == ["2028-12-31T23:59:59Z"]
    assert sorted((d["contact_id"], d["enabled"], d["reason"]) for d in access_changes(kb) if d["enabled"]) == [
        ("C-ANN", True, "contract_active"), ("C-BOB", True, "contract_active")]
    drain(worker)
    assert len(all_jobs(kb, "contract_expiry")) == 1  # the renewed contract is not due


def test_a_renewal_arriving_while_an_expiry_is_queued_ends_with_access(client, kb, keycloak, worker, members):
    end_contract_in_the_past(kb, "A-1")
    worker.schedule()  # the expiry is queued, the renewal arrives before the worker runs it
    deliver(client, worker, "account.upserted", RENEWED)

    assert can_log_in(keycloak, *members.values()) == [True, True, False]
    assert org_of(keycloak, "A-1")["attributes"]["contract_status"] == ["active"]
    with kb.db.session() as session:
        assert session.get(Account, "A-1").access == "active"


# -- many members: the follow-up in chunks, in parallel, partial failures retried ------

class SlowKeycloak(FakeKeycloak):
    """Each logout takes a moment, so that parallel calls overlap; counts how many at once."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def logout(self, user_id):
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.01)
            return super().logout(user_id)
        finally:
            with self._lock:
                self.in_flight -= 1


def many_members(keycloak, count=50) -> list[str]:
    return [add_member(keycloak, "A-1", f"C-{n:03d}") for n in range(count)]


def test_fifty_members_sessions_end_in_parallel_within_the_configured_concurrency(client, kb, worker):
    slow = SlowKeycloak()
    kb.keycloak = slow
    kb.settings.keycloak_concurrency = 8
    deliver(client, worker, "account.upserted", ACCOUNT)
    people = many_members(slow)

    deliver(client, worker, "account.upserted", SUSPENDED)

    assert can_log_in(slow, *people) == [False] * 50
    assert sorted(slow.sessions_ended) == sorted(people)
    assert sorted(d["user_id"] for d in access_changes(kb)) == sorted(people)
    assert 1 < slow.most_in_flight <= 8


def test_an_organization_larger_than_a_chunk_is_followed_chunk_by_chunk(client, kb, keycloak, worker, monkeypatch):
    from adapter.handlers import contracts

    monkeypatch.setattr(contracts, "CHUNK", 20)
    deliver(client, worker, "account.upserted", ACCOUNT)
    people = many_members(keycloak, 45)

    deliver(client, worker, "account.upserted", SUSPENDED)

    assert [a[1:] for a, _ in keycloak.calls_to("organization_members_page")][-3:] == [(0, 20), (20, 20), (40, 20)]
    assert sorted(keycloak.sessions_ended) == sorted(people)
    assert len(audit_entries(kb, "access.contract_ended")) == 3


def test_members_keycloak_failed_for_are_followed_on_retry_with_one_event_each(client, kb, keycloak, worker):
    kb.settings.keycloak_concurrency = 8
    deliver(client, worker, "account.upserted", ACCOUNT)
    people = many_members(keycloak)
    keycloak.fail_for("logout", *people[::10])

    deliver(client, worker, "account.upserted", SUSPENDED)

    assert can_log_in(keycloak, *people) == [False] * 50, "the cut-off itself does not wait for the follow-up"
    (job,) = all_jobs(kb, "contract_members")
    assert job.status == "queued" and "follow-ups failed" in job.last_error
    assert len(access_changes(kb)) == 45

    keycloak.heal()
    make_everything_due(kb)
    drain(worker)

    assert {j.status for j in all_jobs(kb)} == {"done"}
    assert sorted(d["user_id"] for d in access_changes(kb)) == sorted(people)
    assert all(d == {"user_id": d["user_id"], "contact_id": keycloak.users[d["user_id"]]["attributes"]["crm_contact_id"][0],
                     "enabled": False, "reason": "contract_inactive"} for d in access_changes(kb))
    assert sorted(set(keycloak.sessions_ended)) == sorted(people)

    deliver(client, worker, "account.upserted", RENEWED)
    assert can_log_in(keycloak, *people) == [True] * 50
