"""The upgrade from per-user contract cut-offs to access decided by the organization's attributes.

Earlier versions disabled every member of a suspended account and remembered it
(`AccessRevocation`, reason contract_inactive). At worker start, this version gives those
people their `enabled` flag back (Keycloak's extension now refuses them while the contract
is not active) and forgets the rows: only them, never someone an administrator disabled,
never someone Keybridge also disabled because they left.
"""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from adapter.handlers import contracts
from adapter.models import AccessRevocation, AdminAccessDecision, AuditEntry
from adapter.worker import Worker
from tests.unit.fakes import all_jobs, deliver, drain, make_everything_due, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme Corporation", "domains": ["acme.example"], "contract": {"status": "active"}}
SUSPENDED = {**ACCOUNT, "contract": {"status": "suspended"}}


def org_id(keycloak, account_id="A-1") -> str:
    return keycloak.find_organization(account_id)["id"]


def cut_off_by_an_earlier_version(kb, keycloak, contact_id, reasons=("contract_inactive",), enabled=False) -> str:
    """A member the per-user path disabled (and its rows), as a database from before the switch holds them."""
    user_id = keycloak.add_user(f"{contact_id.lower()}@acme.example", password=True, crm_contact_id=[contact_id])
    keycloak.users[user_id]["enabled"] = enabled
    keycloak.members[org_id(keycloak)].add(user_id)
    with kb.db.session() as session:
        for reason in reasons:
            session.add(AccessRevocation(user_id=user_id, reason=reason, account_id="A-1" if reason == "contract_inactive" else None,
                                         contact_id=contact_id, revoked_at=datetime(2026, 11, 1)))
    return user_id


def rows(kb) -> list[tuple[str, str]]:
    with kb.db.session() as session:
        return sorted((r.user_id, r.reason) for r in session.scalars(select(AccessRevocation)))


def start_worker(kb) -> Worker:
    worker = Worker(kb)
    worker.queue_upgrade_steps()
    return worker


@pytest.fixture
def suspended(client, kb, keycloak, worker):
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "account.upserted", SUSPENDED)


def test_members_disabled_for_a_contract_get_their_flag_back_and_stay_refused_while_it_is_not_active(kb, keycloak, suspended):
    ann = cut_off_by_an_earlier_version(kb, keycloak, "C-ANN")
    bob = cut_off_by_an_earlier_version(kb, keycloak, "C-BOB")

    drain(start_worker(kb))

    assert [keycloak.users[u]["enabled"] for u in (ann, bob)] == [True, True]
    assert [keycloak.can_log_in(u) for u in (ann, bob)] == [False, False], "the organization's attributes refuse them"
    assert rows(kb) == []
    assert [e.data for e in outbox_events(kb, "identity.access_changed")] == [], "their access did not change"
    (job,) = all_jobs(kb, contracts.LIFT_JOB)
    assert job.status == "done"


def test_someone_an_administrator_disabled_and_someone_who_left_stay_disabled(kb, keycloak, suspended):
    ann = cut_off_by_an_earlier_version(kb, keycloak, "C-ANN")
    admins = cut_off_by_an_earlier_version(kb, keycloak, "C-ADM")
    gone = cut_off_by_an_earlier_version(kb, keycloak, "C-LEFT", reasons=("contract_inactive", "left_company"))
    with kb.db.session() as session:  # during the suspension an administrator disabled this one (admin event log)
        session.add(AdminAccessDecision(user_id=admins, enabled=False, actor="console: alice", decided_at=datetime(2026, 11, 2),
                                        event_id="adm-1"))

    drain(start_worker(kb))

    assert [keycloak.users[u]["enabled"] for u in (ann, admins, gone)] == [True, False, False]
    assert rows(kb) == [(gone, "left_company")], "why Keybridge disabled the leaver is kept: their return gives access back"
    assert [c[0][0] for c in keycloak.calls_to("set_enabled")] == [ann]
    with kb.db.session() as session:
        (kept,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "access.kept_disabled"))
    assert kept.details["users"] == [admins] and kept.details["by"][admins]["actor"] == "console: alice"


def test_someone_an_administrator_disabled_before_the_cut_off_is_never_touched(kb, keycloak, suspended):
    """The per-user path skipped people already disabled: they have no row, and the upgrade does not see them."""
    admins = keycloak.add_user("before@acme.example", crm_contact_id=["C-BEFORE"])
    keycloak.users[admins]["enabled"] = False
    keycloak.members[org_id(keycloak)].add(admins)

    drain(start_worker(kb))

    assert keycloak.users[admins]["enabled"] is False and keycloak.calls_to("set_enabled") == []
    assert all_jobs(kb, contracts.LIFT_JOB) == [], "nothing to lift: no job"


def test_a_member_whose_contract_is_active_again_is_told_they_have_access(client, kb, keycloak, worker, suspended):
    ann = cut_off_by_an_earlier_version(kb, keycloak, "C-ANN")  # a renewal's restore failed half-way, say
    deliver(client, worker, "account.upserted", ACCOUNT)

    drain(start_worker(kb))

    assert keycloak.can_log_in(ann)
    assert [e.data for e in outbox_events(kb, "identity.access_changed") if e.data["user_id"] == ann] == [
        {"user_id": ann, "contact_id": "C-ANN", "enabled": True, "reason": "contract_active"}]


def test_the_upgrade_is_idempotent_and_a_second_start_queues_nothing(kb, keycloak, suspended):
    ann = cut_off_by_an_earlier_version(kb, keycloak, "C-ANN")
    drain(start_worker(kb))
    calls = len(keycloak.calls)

    drain(start_worker(kb))
    contracts.lift_contract_revocations(kb, cause="again")

    assert len(all_jobs(kb, contracts.LIFT_JOB)) == 1
    assert [n for n, _, _ in keycloak.calls[calls:] if n == "set_enabled"] == []
    assert keycloak.users[ann]["enabled"] is True


def test_nothing_is_lifted_while_keycloak_does_not_enforce_contract_access(kb, keycloak, suspended):
    ann = cut_off_by_an_earlier_version(kb, keycloak, "C-ANN")
    keycloak.enforces_contract_access = False  # the extension is not installed, or the realm not brought in line

    drain(start_worker(kb))

    assert keycloak.users[ann]["enabled"] is False and rows(kb) == [(ann, "contract_inactive")]
    (job,) = all_jobs(kb, contracts.LIFT_JOB)
    assert job.status == "queued" and "keybridge realm apply" in job.last_error

    keycloak.enforces_contract_access = True
    make_everything_due(kb)
    drain(Worker(kb))
    assert keycloak.users[ann]["enabled"] is True and rows(kb) == []


def test_an_identity_deleted_meanwhile_is_forgotten_without_failing(kb, keycloak, suspended):
    ann = cut_off_by_an_earlier_version(kb, keycloak, "C-ANN")
    del keycloak.users[ann]
    keycloak.members[org_id(keycloak)].discard(ann)

    drain(start_worker(kb))

    assert rows(kb) == [] and all_jobs(kb, contracts.LIFT_JOB)[0].status == "done"
