"""The durable job queue and the worker: claim, finish, retry with backoff, dead letters, replay,
and what an operator sees while Keycloak is down."""
from __future__ import annotations

import threading
import time
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
from tests.unit.fakes import all_jobs, drain, make_everything_due, outbox_events

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
    assert again.crashes == 1  # a claim without a finish: its worker died


def test_a_claimed_job_is_leased_for_a_short_time_only(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_1")
    with kb.db.session() as s:
        job = jobs.claim(s)
    assert 25 <= seconds_until(job.locked_until) <= 30.5 and not job.crashes


def crash(kb, job_id: int) -> None:
    """The worker running the job died (SIGKILL): nothing is recorded, the lease runs out."""
    with kb.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(locked_until=utcnow() - timedelta(seconds=1)))


def test_a_job_that_crashed_the_worker_three_times_is_a_dead_letter_and_its_record_goes_on(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_poison", ordering_key="contact:C-1")
        jobs.enqueue(s, "inbound_event", "msg_next", ordering_key="contact:C-1")
    for run in range(3):
        with kb.db.session() as s:
            job = jobs.claim(s)
        assert (job.ref, job.attempts) == ("msg_poison", run + 1)
        crash(kb, job.id)

    with kb.db.session() as s:
        assert jobs.claim(s) is None  # not run a fourth time; its record's next job still waits behind it
    with kb.db.session() as s:
        buried = jobs.bury_crashed(s)
    assert [(j.ref, j.status, j.crashes) for j in buried] == [("msg_poison", "dead", 3)]
    with kb.db.session() as s:
        assert jobs.claim(s).ref == "msg_next"

    (dead,) = [d for d in dead_letters.list_all(kb.db) if d["kind"] == "job"]
    assert dead["what"] == "inbound_event msg_poison"
    assert "Crashed the worker 3 times" in dead["error"] and f"replay job {buried[0].id}" in dead["error"]
    with kb.db.session() as s:
        replayed = jobs.replay(s, buried[0].id)
        assert (replayed.status, replayed.attempts, replayed.crashes) == ("queued", 0, None)


def test_the_crash_limit_is_configurable(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_1")
    with kb.db.session() as s:
        job = jobs.claim(s, max_crashes=1)
    crash(kb, job.id)
    with kb.db.session() as s:
        assert jobs.claim(s, max_crashes=1) is None
        assert [j.crashes for j in jobs.bury_crashed(s, max_crashes=1)] == [1]


def test_a_job_that_failed_or_finished_is_not_counted_as_a_crash(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_1")
    with kb.db.session() as s:
        job = jobs.claim(s)
        jobs.fail(s, job, jobs.RetryableError("Keycloak answered 503"), 3600, 300)
    make_everything_due(kb)
    with kb.db.session() as s:
        again = jobs.claim(s)
        assert (again.attempts, again.crashes) == (2, None)
        assert jobs.bury_crashed(s) == []


def test_a_running_job_keeps_its_lease_while_it_runs_and_loses_it_when_its_worker_stops(kb):
    lease = timedelta(seconds=0.6)
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_long")
    with kb.db.session() as s:
        job = jobs.claim(s, lease=lease)
    with jobs.keep_leased(kb.db, job, lease):
        time.sleep(1.5)  # more than twice the lease
        with kb.db.session() as s:
            assert jobs.claim(s, lease=lease) is None  # nobody else takes a job that is still running
    time.sleep(0.7)  # no heartbeat any more: the lease runs out
    with kb.db.session() as s:
        again = jobs.claim(s, lease=lease)
    assert again.ref == "msg_long" and again.crashes == 1


def test_a_lease_taken_over_by_another_worker_is_not_renewed_by_the_first(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_1")
    with kb.db.session() as s:
        first = jobs.claim(s)
    with kb.db.session() as s:
        assert jobs.renew(s, first) is True
    crash(kb, first.id)
    with kb.db.session() as s:
        second = jobs.claim(s)
    with kb.db.session() as s:
        assert jobs.renew(s, first) is False
        assert jobs.renew(s, second) is True


def test_a_huge_retry_after_is_capped_at_the_retry_maximum(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "inbound_event", "msg_1")
    with kb.db.session() as s:
        job = jobs.claim(s)
        assert jobs.fail(s, job, jobs.RetryableError("429", retry_after=1e12), 3600, 300) == "queued"
    assert 299 <= seconds_until(the_job(kb).run_at) <= 300.5


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


# -- the worker: leases while a job runs, jobs that kill the worker ---------------------

def test_a_long_job_is_not_taken_by_a_second_worker_while_the_first_still_runs_it(client, settings, keycloak):
    short = replace(settings, job_lease_seconds=1.0)
    first, second = Worker(Keybridge(short, keycloak=keycloak)), Worker(Keybridge(short, keycloak=keycloak))
    signed_post(client, envelope("lead.invite_requested", LEAD))
    in_handler, carry_on = threading.Event(), threading.Event()
    lookup = keycloak.find_user_by_email

    def slow_lookup(email):  # Keycloak takes its time answering the first worker
        in_handler.set()
        carry_on.wait(10)
        return lookup(email)

    keycloak.find_user_by_email = slow_lookup
    running = threading.Thread(target=first.run_jobs)
    running.start()
    assert in_handler.wait(10)
    time.sleep(2.5)  # well past the 1 s lease
    assert second.run_jobs() == 0
    carry_on.set()
    running.join(10)

    (job,) = all_jobs(first.kb)
    assert (job.status, job.attempts, job.crashes) == ("done", 1, None)
    assert len(keycloak.emails_to(LEAD["email"])) == 1
    first.kb.db.dispose(), second.kb.db.dispose()


def test_a_batch_item_that_keeps_crashing_the_worker_is_settled_as_failed_and_the_batch_completes(client, kb, keycloak, worker):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    items = [{"kind": "contact", "contact_id": f"C-{n}", "email": f"p{n}@acme.example", "account_id": "A-1"} for n in range(3)]
    kb.settings.batch_chunk_size = 1  # one contact per chunk job
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-1", "items": items}))
    worker.batch = 2
    worker.run_jobs()  # the account and the batch itself: three chunk jobs queued
    poison = [j for j in all_jobs(kb, "batch_chunk") if j.ref == "B-1:chunk:1"][0]
    for _ in range(3):  # the worker dies in it, three times
        with kb.db.session() as s:
            s.execute(update(Job).where(Job.id != poison.id, Job.status == "queued").values(run_at=utcnow() + timedelta(hours=1)))
            assert jobs.claim(s).id == poison.id
        crash(kb, poison.id)
    make_everything_due(kb)
    worker.batch = 50

    drain(worker)

    status = client.get("/api/batches/B-1", headers={"Authorization": "Bearer op-token"}).json
    assert status["status"] == "completed" and status["counts"] == {"sent": 2, "failed": 1}
    (failed,) = [i for i in status["items"] if i["outcome"] == "failed"]
    assert failed["id"] == "C-1" and "Crashed the worker 3 times" in failed["error"]
    assert keycloak.emails_to("p1@acme.example") == []
    assert [e.data["counts"] for e in outbox_events(kb, "invitation.batch_completed")] == [{"sent": 2, "failed": 1}]
    assert [(d["what"], d["attempts"]) for d in dead_letters.list_all(kb.db)] == [("batch_chunk B-1:chunk:1", 3)]


def test_a_batch_item_whose_worker_died_right_after_keycloak_sent_it_counts_as_sent_once(client, kb, keycloak, worker):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    items = [{"kind": "contact", "contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1"}]
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-1", "items": items}))
    keycloak.go_down_after("invite_to_organization")  # the email left, then nothing more was recorded

    worker.run_once()
    keycloak.down = False
    make_everything_due(kb)
    drain(worker)

    assert len(keycloak.emails_to("jane@acme.example")) == 1
    assert [e.data["counts"] for e in outbox_events(kb, "invitation.batch_completed")] == [{"sent": 1}]
    assert len(outbox_events(kb, "invitation.sent")) == 1


def test_a_batch_item_whose_worker_died_after_recording_the_invitation_counts_as_sent_once(client, kb, keycloak, worker):
    from adapter.handlers import invitations

    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    items = [{"kind": "contact", "contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1"}]
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-1", "items": items}))
    worker.batch = 1
    worker.run_jobs()  # the batch: its item is queued
    with kb.db.session() as s:
        job = jobs.claim(s)
    # The dead worker's run got as far as sending and recording the invitation, not to settling the item.
    invitations.invite_contact(kb, {**items[0], "resend": False}, "batch B-1 item 0")
    crash(kb, job.id)
    worker.batch = 50

    drain(worker)

    assert len(keycloak.emails_to("jane@acme.example")) == 1
    assert [e.data["counts"] for e in outbox_events(kb, "invitation.batch_completed")] == [{"sent": 1}]


def test_a_worker_running_several_jobs_at_once_sends_each_invitation_once_and_completes_the_batch_once(client, settings, keycloak):
    worker = Worker(Keybridge(replace(settings, worker_threads=4), keycloak=keycloak))
    assert worker.threads == 4
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    invite, at_once, most = keycloak.invite_to_organization, [0], [0]
    guard = threading.Lock()

    def slow_invite(*args):  # Keycloak sending the email takes a moment: other jobs go on meanwhile
        with guard:
            at_once[0] += 1
            most[0] = max(most[0], at_once[0])
        time.sleep(0.05)
        try:
            return invite(*args)
        finally:
            with guard:
                at_once[0] -= 1

    keycloak.invite_to_organization = slow_invite
    items = [{"kind": "contact", "contact_id": f"C-{n}", "email": f"p{n}@acme.example", "account_id": "A-1"} for n in range(24)]
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-1", "items": items}))

    drain(worker)

    assert most[0] > 1  # jobs did run at the same time
    assert sorted(m["to"] for m in keycloak.emails) == sorted(i["email"] for i in items)
    assert [e.data["counts"] for e in outbox_events(worker.kb, "invitation.batch_completed")] == [{"sent": 24}]
    assert {j.status for j in all_jobs(worker.kb)} == {"done"}
    worker.kb.db.dispose()


def test_one_worker_runs_one_job_at_a_time_on_sqlite_unless_told_otherwise(kb, worker):
    assert worker.threads == 1


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
