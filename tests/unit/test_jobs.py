"""The durable job queue and the worker: claim, finish, retry with backoff, dead letters, replay,
and what an operator sees while Keycloak is down."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update

from adapter import dead_letters, jobs
from adapter.db import utcnow
from adapter.worker import Worker
from adapter.models import Job
from adapter.runtime import Keybridge
from tests.conftest import envelope, signed_post
from tests.unit.fakes import all_jobs, make_everything_due

ACCOUNT = {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": {"status": "none"}}
INVITE = {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "roles": ["Buyer"]}
LEAD = {"lead_id": "L-1", "email": "lee@corp.example", "first_name": "Lee"}


@pytest.fixture
def kb(settings, keycloak):
    """The worker's runtime: the same database as the web app, Keycloak faked."""
    kb = Keybridge(settings, keycloak=keycloak)
    yield kb
    kb.db.dispose()


def the_job(kb, kind="inbound_event") -> Job:
    (job,) = all_jobs(kb, kind)
    return job


def seconds_until(when) -> float:
    return (when - utcnow()).total_seconds()


# -- the queue itself -------------------------------------------------------------------

def test_a_queued_job_is_claimed_by_one_worker_and_finished(kb):
    with kb.db.session() as s:
        assert jobs.enqueue(s, "inbound_event", "msg_1")
    with kb.db.session() as s:
        job = jobs.claim(s)
        assert (job.ref, job.status, job.attempts) == ("msg_1", "running", 1)
        assert job.locked_until > utcnow()
    with kb.db.session() as s:
        assert jobs.claim(s) is None  # leased: nobody else takes it
    with kb.db.session() as s:
        jobs.finish(s, s.get(Job, job.id))
    done = the_job(kb)
    assert done.status == "done" and done.finished_at is not None and done.locked_until is None
    with kb.db.session() as s:
        assert jobs.claim(s) is None


def test_enqueuing_the_same_kind_and_ref_twice_adds_one_job(kb):
    with kb.db.session() as s:
        assert jobs.enqueue(s, "inbound_event", "msg_1", {"n": 1}) is True
        assert jobs.enqueue(s, "inbound_event", "msg_1", {"n": 2}) is False
    with kb.db.session() as s:
        assert jobs.enqueue(s, "inbound_event", "msg_1") is False
        assert jobs.enqueue(s, "keycloak_event", "msg_1") is True  # another kind is other work
    assert [(j.kind, j.ref, j.payload) for j in all_jobs(kb)] == [("inbound_event", "msg_1", {"n": 1}), ("keycloak_event", "msg_1", {})]


def test_a_duplicate_enqueue_does_not_undo_the_callers_other_writes(kb):
    from adapter.models import InboundEvent

    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_1")
    with kb.db.session() as s:
        s.add(InboundEvent(id="msg_2", type="lead.invite_requested", payload={}))
        assert jobs.enqueue(s, "inbound_event", "msg_1") is False
    with kb.db.session() as s:
        assert s.get(InboundEvent, "msg_2") is not None


def test_a_job_scheduled_for_later_is_not_claimed_before_its_time(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "later", run_at=utcnow() + timedelta(minutes=1))
    with kb.db.session() as s:
        assert jobs.claim(s) is None


def test_jobs_are_claimed_oldest_due_first(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "second", run_at=utcnow() - timedelta(seconds=1))
        jobs.enqueue(s, "inbound_event", "first", run_at=utcnow() - timedelta(seconds=5))
    with kb.db.session() as s:
        assert jobs.claim(s).ref == "first"
    with kb.db.session() as s:
        assert jobs.claim(s).ref == "second"


def test_a_job_whose_worker_died_is_taken_again_once_its_lease_runs_out(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_1")
    with kb.db.session() as s:
        first = jobs.claim(s)
    with kb.db.session() as s:
        s.execute(update(Job).values(locked_until=utcnow() - timedelta(seconds=1)))
    with kb.db.session() as s:
        again = jobs.claim(s)
    assert again.id == first.id and again.attempts == 2 and again.status == "running"


def test_backoff_doubles_and_is_capped():
    assert [jobs.backoff_seconds(n, 300) for n in (0, 1, 2, 3, 8, 9, 20)] == [2, 2, 4, 8, 256, 300, 300]


# -- the worker: retries, dead letters, replay -----------------------------------------

def test_a_retryable_failure_reschedules_the_job_with_growing_backoff(client, kb, keycloak, worker):
    assert signed_post(client, envelope("lead.invite_requested", LEAD)).status_code == 202
    keycloak.down = True

    worker.run_once()
    job = the_job(kb)
    assert (job.status, job.attempts) == ("queued", 1)
    assert 1 <= seconds_until(job.run_at) <= 2.5
    assert "RetryableError" in job.last_error and "Keycloak" in job.last_error

    worker.run_once()  # not due yet: untouched
    assert the_job(kb).attempts == 1

    make_everything_due(kb)
    worker.run_once()
    job = the_job(kb)
    assert (job.status, job.attempts) == ("queued", 2)
    assert 3 <= seconds_until(job.run_at) <= 4.5


def test_a_remote_retry_after_is_used_instead_of_the_backoff(client, kb, worker):
    # The account has no organization yet: the handler asks to be retried in 30 s.
    signed_post(client, envelope("contact.invite_requested", INVITE))
    worker.run_once()
    job = the_job(kb)
    assert job.status == "queued" and 28 <= seconds_until(job.run_at) <= 30.5
    assert "account.upserted" in job.last_error


def test_a_job_still_failing_after_the_retry_window_is_a_dead_letter(client, settings, keycloak):
    kb = Keybridge(replace(settings, job_retry_window_seconds=3600), keycloak=keycloak)
    signed_post(client, envelope("lead.invite_requested", LEAD), webhook_id="msg_old")
    with kb.db.session() as s:
        s.execute(update(Job).values(created_at=utcnow() - timedelta(hours=2)))
    keycloak.down = True

    Worker(kb).run_once()

    job = the_job(kb)
    assert job.status == "dead" and job.finished_at is not None and "Keycloak" in job.last_error
    listed = dead_letters.list_all(kb.db)
    assert [(d["kind"], d["id"], d["what"]) for d in listed] == [("job", str(job.id), "inbound_event msg_old")]
    kb.db.dispose()


def test_a_permanent_refusal_makes_the_job_dead_at_once(client, kb, keycloak, worker):
    signed_post(client, envelope("lead.invite_requested", LEAD))
    keycloak.fail_next("find_user_by_email", error=jobs.PermanentError("Keycloak refused to find a user by email (400): bad query"))

    worker.run_once()

    job = the_job(kb)
    assert (job.status, job.attempts) == ("dead", 1)
    assert job.last_error.startswith("PermanentError: Keycloak refused")
    assert keycloak.emails == []


def test_a_job_of_unknown_kind_is_dead_at_once_and_the_worker_goes_on(kb, keycloak, worker):
    with kb.db.session() as s:
        jobs.enqueue(s, "mystery", "x", run_at=utcnow() - timedelta(seconds=1))
        jobs.enqueue(s, "keycloak_event", "evt-1", payload={"id": "evt-1", "type": "LOGIN", "userId": "u"})
    worker.run_once()
    assert [(j.kind, j.status) for j in all_jobs(kb)] == [("mystery", "dead"), ("keycloak_event", "done")]


def test_replaying_a_dead_job_runs_it_again_from_scratch(client, kb, keycloak, worker):
    signed_post(client, envelope("lead.invite_requested", LEAD))
    keycloak.fail_next("find_user_by_email", error=jobs.PermanentError("Keycloak refused (403)"))
    worker.run_once()
    dead = the_job(kb)
    assert dead.status == "dead"

    with kb.db.session() as s:
        replayed = jobs.replay(s, dead.id)
        assert (replayed.status, replayed.attempts, replayed.finished_at) == ("queued", 0, None)
    worker.run_once()

    assert the_job(kb).status == "done"
    assert [m["kind"] for m in keycloak.emails_to(LEAD["email"])] == ["actions"]


def test_replay_refuses_a_job_that_is_not_dead_and_an_unknown_one(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_1")
    job = the_job(kb)
    with kb.db.session() as s, pytest.raises(ValueError, match="not dead"):
        jobs.replay(s, job.id)
    assert the_job(kb).status == "queued"
    with kb.db.session() as s, pytest.raises(LookupError, match="dead-letters list"):
        jobs.replay(s, 999)


# -- Keycloak down ----------------------------------------------------------------------

def test_while_keycloak_is_down_webhooks_are_accepted_and_the_invitation_goes_out_once_it_is_back(client, kb, keycloak, worker):
    keycloak.down = True
    assert signed_post(client, envelope("account.upserted", ACCOUNT)).status_code == 202
    assert signed_post(client, envelope("contact.invite_requested", INVITE)).status_code == 202

    worker.run_once()
    assert [(j.status, j.attempts) for j in all_jobs(kb, "inbound_event")] == [("queued", 1), ("queued", 1)]
    assert all(seconds_until(j.run_at) > 0 for j in all_jobs(kb))
    make_everything_due(kb)
    worker.run_once()
    assert [j.attempts for j in all_jobs(kb, "inbound_event")] == [2, 2]
    assert keycloak.emails == []

    keycloak.down = False
    make_everything_due(kb)
    worker.run_once()
    make_everything_due(kb)  # the contact may have run before the account's organization existed
    worker.run_once()
    worker.run_once()

    assert [j.status for j in all_jobs(kb)] == ["done", "done"]
    assert [m["kind"] for m in keycloak.emails] == ["org_invite"]
    assert keycloak.emails[0]["to"] == "jane@acme.example"


def test_keycloak_going_down_right_after_sending_does_not_send_a_second_invitation(client, kb, keycloak, worker):
    keycloak.organizations["org-x"] = {"id": "org-x", "name": "Acme", "alias": "crm-a-1", "attributes": {"crm_account_id": ["A-1"]}, "domains": []}
    keycloak.members["org-x"] = set()
    signed_post(client, envelope("contact.invite_requested", INVITE))
    keycloak.go_down_after("invite_new_member")  # the email left, then the connection dropped

    worker.run_once()
    assert the_job(kb).status == "queued"
    keycloak.down = False
    make_everything_due(kb)
    worker.run_once()

    assert the_job(kb).status == "done"
    assert len(keycloak.emails_to("jane@acme.example")) == 1
